//! Message encodings: how one Kafka message's value carries telemetry.

use serde::Deserialize;
use sluice_pdata::{from_json, haystack, to_json, Batch, Bytes, Payload, Signal};

/// The `encoding` of a topic's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One OTLP protobuf export request per message (default).
    #[default]
    OtlpProto,
    /// One OTLP/JSON export request per message.
    OtlpJson,
    /// One Haystack `Span` protobuf per message (traces only).
    HaystackProto,
    /// One Haystack span as JSON per message (traces only).
    HaystackJson,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::OtlpProto => "otlp_proto",
            Encoding::OtlpJson => "otlp_json",
            Encoding::HaystackProto => "haystack_proto",
            Encoding::HaystackJson => "haystack_json",
        }
    }

    /// True for the encodings that carry one span per message.
    pub fn is_haystack(self) -> bool {
        matches!(self, Encoding::HaystackProto | Encoding::HaystackJson)
    }

    /// Why this encoding cannot carry `signal`, if it cannot.
    pub fn check(self, signal: Signal) -> Result<(), String> {
        if self.is_haystack() && signal != Signal::Traces {
            return Err(format!(
                "{} carries spans only; {signal} need otlp_proto or otlp_json",
                self.as_str()
            ));
        }
        Ok(())
    }
}

/// Why a message's value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a valid OTLP protobuf {signal} export request: {reason}")]
    Proto { signal: Signal, reason: String },
    #[error("not a valid OTLP/JSON {signal} export request: {reason}")]
    Json { signal: Signal, reason: String },
    #[error("not a valid Haystack span ({encoding}): {reason}")]
    Haystack {
        encoding: &'static str,
        reason: String,
    },
}

/// Reads one message's value as a batch of `signal`.
pub fn decode(signal: Signal, encoding: Encoding, value: Bytes) -> Result<Batch, DecodeError> {
    match encoding {
        Encoding::OtlpProto => Batch::from_encoded(signal, value).map_err(|e| DecodeError::Proto {
            signal,
            reason: e.reason,
        }),
        Encoding::OtlpJson => {
            from_json(signal, &value)
                .map(Batch::new)
                .map_err(|e| DecodeError::Json {
                    signal,
                    reason: e.to_string(),
                })
        }
        Encoding::HaystackProto | Encoding::HaystackJson => {
            if signal != Signal::Traces {
                return Err(DecodeError::Haystack {
                    encoding: encoding.as_str(),
                    reason: format!("Haystack carries spans, not {signal}"),
                });
            }
            let span = decode_haystack(encoding, &value)?;
            Ok(Batch::new(Payload::Traces(haystack::otlp_from_spans(
                std::slice::from_ref(&span),
            ))))
        }
    }
}

/// Reads one message's value as a Haystack span.
pub fn decode_haystack(encoding: Encoding, value: &[u8]) -> Result<haystack::Span, DecodeError> {
    let result = match encoding {
        Encoding::HaystackJson => haystack::from_json(value).map_err(|e| e.to_string()),
        _ => <haystack::Span as prost::Message>::decode(value).map_err(|e| e.to_string()),
    };
    result.map_err(|reason| DecodeError::Haystack {
        encoding: encoding.as_str(),
        reason,
    })
}

/// The encoded value of one Haystack span.
pub fn encode_haystack(span: &haystack::Span, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::HaystackJson => haystack::to_json(span),
        _ => prost::Message::encode_to_vec(span),
    }
}

/// The encoded value of one OTLP payload (`otlp_proto` or `otlp_json`).
pub fn encode_otlp(payload: &Payload, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::OtlpJson => to_json(payload),
        _ => payload.encode_proto(),
    }
}
