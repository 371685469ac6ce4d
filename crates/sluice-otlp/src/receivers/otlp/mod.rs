//! The `otlp` receiver: accepts OTLP export requests for traces, metrics and
//! logs over gRPC and over HTTP, and hands each request to the pipelines of
//! its signal as one [`Batch`](sluice_core::Batch).
//!
//! # Transports
//!
//! * **gRPC** (`protocols.grpc`, default `127.0.0.1:4317`): the
//!   `opentelemetry.proto.collector.{trace,metrics,logs}.v1` `Export`
//!   services. Requests may be gzip-compressed. TCP_NODELAY is set.
//! * **HTTP** (`protocols.http`, default `127.0.0.1:4318`): `POST` on
//!   `/v1/traces`, `/v1/metrics`, `/v1/logs` (configurable), with
//!   `Content-Type: application/x-protobuf` or `application/json` (OTLP/JSON:
//!   hex trace and span ids), optionally `Content-Encoding: gzip` or
//!   `deflate`. The answer uses the request's content type. HTTP/1.1 and
//!   cleartext HTTP/2 are served. TCP_NODELAY is set.
//!
//! # Guarantees
//!
//! * A request is answered with success only after the whole pipeline
//!   accepted its batch (the consumer's `consume` resolved `Ok`). Nothing is
//!   buffered in the receiver: pipeline backpressure reaches the client.
//! * A refusal is passed on so the client can act on it: retryable refusals
//!   become gRPC `UNAVAILABLE` (with a `google.rpc.RetryInfo` detail when the
//!   pipeline gave a delay) or HTTP 503 / 429 (when overloaded) with a
//!   `Retry-After` header; permanent refusals become `INVALID_ARGUMENT` /
//!   HTTP 400.
//! * A request holding no items (spans, data points, log records) is answered
//!   with success without reaching the pipeline.
//! * `shutdown` closes the listeners at once, then returns when every request
//!   already accepted by a connection has been answered.
//! * Signals no pipeline takes are answered gRPC `UNIMPLEMENTED` / HTTP 404.
//! * `otelcol_receiver_{accepted,refused}_{spans,metric_points,log_records}`
//!   count items per transport (`grpc`, `http`) for served signals.
//!
//! # Limits
//!
//! * gRPC messages are limited to `max_recv_msg_size_mib` after
//!   decompression (`RESOURCE_EXHAUSTED` beyond).
//! * HTTP bodies are limited to `max_request_body_size` bytes, both as sent
//!   and after decompression (413 beyond); an announced `Content-Length`
//!   above the limit is refused before the body is read.
//! * Decoding and decompression run on the async worker that received the
//!   request, as tonic's own decoding does.
//! * No TLS, authentication, CORS or partial-success answers yet; gRPC
//!   answers are not compressed. If a client disconnects while its batch is
//!   in the pipeline, the pipeline call is dropped (the client, having no
//!   answer, is expected to send again).

mod config;
mod grpc;
mod http;
mod receiver;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use sluice_core::{
    BuildContext, BuildError, Receiver, ReceiverFactory, Registry, Signal, SignalConsumers,
    Stability,
};

pub use config::{Config, GrpcConfig, HttpConfig, Protocols};
pub use receiver::OtlpReceiver;

/// Factory of the `otlp` receiver.
pub struct OtlpReceiverFactory;

impl ReceiverFactory for OtlpReceiverFactory {
    type Config = Config;

    fn type_name(&self) -> &'static str {
        "otlp"
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &Config,
        consumers: SignalConsumers,
    ) -> Result<Arc<dyn Receiver>, BuildError> {
        if config.protocols.grpc.is_none() && config.protocols.http.is_none() {
            return Err(BuildError::new(format!(
                "receiver {}: no protocol enabled",
                ctx.id
            )));
        }
        Ok(Arc::new(OtlpReceiver::new(&ctx, config, &consumers)))
    }
}

/// Registers the `otlp` receiver.
pub fn register(r: &mut Registry) {
    r.receiver(OtlpReceiverFactory);
}
