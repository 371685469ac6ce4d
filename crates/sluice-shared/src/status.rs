//! `google.rpc.Status` and `google.rpc.RetryInfo`, the error shapes OTLP
//! uses: the gRPC status details, and the body of an OTLP/HTTP error answer.
//! Receivers build them from a refusal; exporters read a backend's retry
//! hint out of them.
//!
//! Field numbers follow `google/rpc/status.proto`, `google/rpc/error_details.proto`,
//! `google/protobuf/any.proto` and `google/protobuf/duration.proto`.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use sluice_core::ConsumeError;

/// `type_url` of a packed `google.rpc.RetryInfo`.
pub const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// Retry-After (seconds) when the pipeline gave no hint.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl From<Duration> for ProtoDuration {
    fn from(d: Duration) -> Self {
        ProtoDuration {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            // subsec_nanos is below 10^9, so it fits in an i32.
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        }
    }
}

/// gRPC status codes used here (`google.rpc.Code`).
pub mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const NOT_FOUND: i32 = 5;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const UNAVAILABLE: i32 = 14;
}

/// Whole seconds for a `Retry-After` header: the hint rounded up, at least 1.
pub fn retry_after_secs(hint: Option<Duration>) -> u64 {
    match hint {
        None => DEFAULT_RETRY_AFTER_SECS,
        Some(d) => {
            let up = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
            up.max(1)
        }
    }
}

/// A `google.rpc.Status`, with a `RetryInfo` detail when `retry_delay` is set.
pub fn rpc_status(code: i32, message: &str, retry_delay: Option<Duration>) -> RpcStatus {
    let details = retry_delay
        .map(|d| ProtoAny {
            type_url: RETRY_INFO_TYPE_URL.to_string(),
            value: RetryInfo {
                retry_delay: Some(d.into()),
            }
            .encode_to_vec(),
        })
        .into_iter()
        .collect();
    RpcStatus {
        code,
        message: message.to_string(),
        details,
    }
}

/// Proto3 JSON spelling of a duration: seconds with an `s` suffix.
fn duration_json(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => format!("{}s", d.as_secs()),
        n => format!("{}.{:09}s", d.as_secs(), n),
    }
}

/// The OTLP/JSON (proto3 JSON) encoding of [`rpc_status`].
pub fn rpc_status_json(code: i32, message: &str, retry_delay: Option<Duration>) -> Vec<u8> {
    let mut obj = serde_json::json!({ "code": code, "message": message });
    if let Some(d) = retry_delay {
        obj["details"] = serde_json::json!([{
            "@type": RETRY_INFO_TYPE_URL,
            "retryDelay": duration_json(d),
        }]);
    }
    serde_json::to_vec(&obj).unwrap_or_default()
}

/// The gRPC answer to a refused export.
pub fn grpc_status_for(err: &ConsumeError) -> tonic::Status {
    match err {
        ConsumeError::Retryable {
            reason,
            retry_after,
            ..
        } => match retry_after {
            Some(d) => {
                let detail = rpc_status(code::UNAVAILABLE, reason, Some(*d));
                tonic::Status::with_details(
                    tonic::Code::Unavailable,
                    reason.clone(),
                    Bytes::from(detail.encode_to_vec()),
                )
            }
            None => tonic::Status::unavailable(reason.clone()),
        },
        ConsumeError::Permanent(reason) => tonic::Status::invalid_argument(reason.clone()),
    }
}

/// The delay of the first `google.rpc.RetryInfo` in a status's details, if
/// any and well formed. Undecodable details count as absent.
pub fn retry_info_delay(details: &[u8]) -> Option<Duration> {
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .filter(|any| {
            any.type_url == RETRY_INFO_TYPE_URL || any.type_url.ends_with("/google.rpc.RetryInfo")
        })
        .find_map(|any| {
            let info = RetryInfo::decode(any.value.as_slice()).ok()?;
            let d = info.retry_delay?;
            let seconds = u64::try_from(d.seconds).ok()?;
            let nanos = u32::try_from(d.nanos).ok().filter(|n| *n < 1_000_000_000)?;
            Some(Duration::new(seconds, nanos))
        })
}
