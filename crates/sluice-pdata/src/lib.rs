//! sluice's telemetry data model.
//!
//! Data crosses component boundaries as a [`Batch`]: one OTLP export request of
//! one [`Signal`], behind an `Arc` so that a fan-out to several consumers shares
//! it and copies only when a consumer mutates it (`Batch::make_mut`).
//!
//! The payload types are the `opentelemetry-proto` request messages, so a batch
//! received over OTLP is forwarded without translation. Item counts follow the
//! OpenTelemetry Collector: spans, metric data points, log records.
//!
//! [`haystack`] holds the Haystack span format and its lossless translation
//! to and from OTLP traces, for the Haystack receivers and Kafka encodings.

mod batch;
pub mod haystack;
mod json;
mod split;
mod wire;

pub use batch::{Batch, InvalidRequest, Payload, Signal};
pub use json::{from_json, to_json, JsonError};
pub use prost::bytes::Bytes;
pub use split::split_off;

/// Re-export of the OTLP message types sluice carries.
pub use opentelemetry_proto::tonic as otlp;

pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
