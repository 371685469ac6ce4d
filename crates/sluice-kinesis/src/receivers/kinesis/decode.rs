//! Decoding of one user record (a Kinesis record, or one record out of a
//! KPL aggregate) according to the receiver's `encoding`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Deserialize;
use sluice_pdata::haystack::{Span, SpanBatch};
use sluice_pdata::{from_json, Payload, Signal};

/// What a user record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One Haystack `Span` in protobuf (the default, as Haystack's
    /// producers write).
    #[default]
    HaystackProto,
    /// A Haystack `Batch` of spans in protobuf.
    HaystackBatch,
    /// An OTLP `ExportTraceServiceRequest` in protobuf.
    OtlpProto,
    /// An OTLP `ExportTraceServiceRequest` in OTLP/JSON.
    OtlpJson,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::HaystackProto => "haystack_proto",
            Encoding::HaystackBatch => "haystack_batch",
            Encoding::OtlpProto => "otlp_proto",
            Encoding::OtlpJson => "otlp_json",
        }
    }

    /// Whether the records carry Haystack spans (and are validated).
    pub fn is_haystack(self) -> bool {
        matches!(self, Encoding::HaystackProto | Encoding::HaystackBatch)
    }
}

/// A user record that is not valid for the encoding.
#[derive(Debug, thiserror::Error)]
#[error("record is not valid {encoding}: {reason}")]
pub struct DecodeError {
    pub encoding: &'static str,
    pub reason: String,
}

/// The content of one user record.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Spans(Vec<Span>),
    Otlp(ExportTraceServiceRequest),
}

/// Decodes one user record.
pub fn decode(encoding: Encoding, data: &[u8]) -> Result<Decoded, DecodeError> {
    let err = |reason: String| DecodeError {
        encoding: encoding.as_str(),
        reason,
    };
    match encoding {
        Encoding::HaystackProto => Span::decode(data)
            .map(|s| Decoded::Spans(vec![s]))
            .map_err(|e| err(e.to_string())),
        Encoding::HaystackBatch => SpanBatch::decode(data)
            .map(|b| Decoded::Spans(b.spans))
            .map_err(|e| err(e.to_string())),
        Encoding::OtlpProto => ExportTraceServiceRequest::decode(data)
            .map(Decoded::Otlp)
            .map_err(|e| err(e.to_string())),
        Encoding::OtlpJson => match from_json(Signal::Traces, data) {
            Ok(Payload::Traces(r)) => Ok(Decoded::Otlp(r)),
            Ok(_) => Err(err("not traces".to_string())),
            Err(e) => Err(err(e.to_string())),
        },
    }
}
