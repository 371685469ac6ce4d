//! The Haystack span format: its protobuf messages, its JSON form, and the
//! translation to and from OTLP traces.
//!
//! Haystack (Expedia's tracing system) carries one span per message: string
//! ids, a service name, microsecond times, typed tags and logs. The messages
//! here are written by hand with `prost` derives and use Haystack's field
//! numbers, so their protobuf encoding is the one Haystack agents and Kafka
//! topics carry:
//!
//! | message | fields |
//! | --- | --- |
//! | [`Span`] | 1 traceId, 2 spanId, 3 parentSpanId, 4 serviceName, 5 operationName, 6 startTime (µs), 7 duration (µs), 8 logs, 9 tags |
//! | [`Log`] | 1 timestamp (µs), 2 fields (tags) |
//! | [`Tag`] | 1 key, 2 type, value oneof: 3 vStr, 4 vLong, 5 vDouble, 6 vBool, 7 vBytes |
//! | [`SpanBatch`] | 1 spans |
//! | [`DispatchResult`] | 1 code, 2 error_message (the answer of the agent's `SpanAgent.dispatch`) |
//!
//! [`to_json`] and [`from_json`] write and read one span in the protobuf JSON
//! mapping (see [`json`](self#json)).
//!
//! [`otlp_from_spans`] and [`spans_from_otlp`] translate between Haystack and
//! OTLP. The translation is lossless in both directions for what both formats
//! can express: Haystack → OTLP → Haystack gives back every span exactly (up
//! to the order of spans in a batch, see [`otlp_from_spans`]), and OTLP →
//! Haystack → OTLP gives back every request in the restricted form described
//! in `docs/design/haystack.md`. The rules, in short:
//!
//! - Ids: a Haystack id that is 32 (trace) / 16 (span) hex digits becomes
//!   those bytes, a UUID trace id its 16 bytes, anything else a 128/64-bit
//!   FNV-1a hash of the string. When lowercase hex of the OTLP id would not
//!   spell the Haystack string exactly, the string is kept in the span
//!   attribute `haystack.trace_id` / `haystack.span_id` /
//!   `haystack.parent_span_id`, and the reverse translation restores it.
//! - Times: µs × 1000. Times OTLP cannot hold (negative, or past year 2554)
//!   are clamped in OTLP and kept exactly in `haystack.start_time` /
//!   `haystack.duration` (`haystack.timestamp` on events).
//! - `serviceName` ↔ resource attribute `service.name`; other resource
//!   attributes ↔ tags `otel.resource.<key>`. Scope name/version ↔ tags
//!   `otel.scope.name` / `otel.scope.version`.
//! - Span kind ↔ tag `span.kind` (`client`, `server`, `producer`, `consumer`,
//!   `internal`); status ↔ tags `error` (bool `true` = ERROR),
//!   `otel.status_code` (`OK`), `otel.status_description`; trace state ↔
//!   `w3c.tracestate`; dropped counts ↔ `otel.dropped_{attributes,events,links}_count`.
//! - Logs ↔ events; the event name ↔ the log field `event`.
//!
//! A tag is turned into an OTLP field only when doing so loses nothing: a
//! Haystack tag that would not come back exactly (a second `span.kind` tag,
//! `span.kind=SERVER` in capitals, a `span.kind` tag in the middle of the tag
//! list) still sets the OTLP field but is also kept as an attribute.
//!
//! # JSON
//!
//! The protobuf JSON mapping: field names as in the `.proto` (`traceId`,
//! `startTime`, `vLong`, ...), 64-bit integers as strings, enums by name,
//! bytes in base64, fields with default values left out. The reader also
//! accepts numbers for 64-bit integers, enum numbers, URL-safe and unpadded
//! base64, `null` for "not set", and ignores unknown fields (as the protobuf
//! decoder does).

mod ids;
mod json;
mod otlp;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

pub use ids::{otlp_span_id, otlp_trace_id};
pub use json::{from_json, to_json, JsonError};
pub use otlp::{otlp_from_owned_spans, otlp_from_spans, spans_from_otlp};

/// One Haystack span.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    #[prost(string, tag = "1")]
    pub trace_id: String,
    #[prost(string, tag = "2")]
    pub span_id: String,
    /// Empty for a root span.
    #[prost(string, tag = "3")]
    pub parent_span_id: String,
    #[prost(string, tag = "4")]
    pub service_name: String,
    #[prost(string, tag = "5")]
    pub operation_name: String,
    /// Microseconds since the Unix epoch.
    #[prost(int64, tag = "6")]
    pub start_time: i64,
    /// Microseconds.
    #[prost(int64, tag = "7")]
    pub duration: i64,
    #[prost(message, repeated, tag = "8")]
    pub logs: Vec<Log>,
    #[prost(message, repeated, tag = "9")]
    pub tags: Vec<Tag>,
}

/// A timestamped set of fields attached to a span.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Log {
    /// Microseconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    #[prost(message, repeated, tag = "2")]
    pub fields: Vec<Tag>,
}

/// A typed key/value pair.
///
/// `type` and the value are separate fields in the protobuf message, so they
/// can disagree; the translation to OTLP goes by the value (see
/// `docs/design/haystack.md`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Tag {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(enumeration = "TagType", tag = "2")]
    pub r#type: i32,
    #[prost(oneof = "TagValue", tags = "3, 4, 5, 6, 7")]
    pub value: Option<TagValue>,
}

/// The value of a [`Tag`] (the `myvalue` oneof).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum TagValue {
    #[prost(string, tag = "3")]
    VStr(String),
    #[prost(int64, tag = "4")]
    VLong(i64),
    #[prost(double, tag = "5")]
    VDouble(f64),
    #[prost(bool, tag = "6")]
    VBool(bool),
    #[prost(bytes = "vec", tag = "7")]
    VBytes(Vec<u8>),
}

/// The `type` field of a [`Tag`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum TagType {
    String = 0,
    Double = 1,
    Bool = 2,
    Long = 3,
    Binary = 4,
}

impl TagType {
    /// The name the protobuf JSON mapping uses (`STRING`, `LONG`, ...).
    pub fn as_str_name(self) -> &'static str {
        match self {
            TagType::String => "STRING",
            TagType::Double => "DOUBLE",
            TagType::Bool => "BOOL",
            TagType::Long => "LONG",
            TagType::Binary => "BINARY",
        }
    }

    pub fn from_str_name(name: &str) -> Option<TagType> {
        Some(match name {
            "STRING" => TagType::String,
            "DOUBLE" => TagType::Double,
            "BOOL" => TagType::Bool,
            "LONG" => TagType::Long,
            "BINARY" => TagType::Binary,
            _ => return None,
        })
    }
}

impl TagValue {
    /// The [`TagType`] that names this kind of value.
    pub fn tag_type(&self) -> TagType {
        match self {
            TagValue::VStr(_) => TagType::String,
            TagValue::VLong(_) => TagType::Long,
            TagValue::VDouble(_) => TagType::Double,
            TagValue::VBool(_) => TagType::Bool,
            TagValue::VBytes(_) => TagType::Binary,
        }
    }
}

impl Tag {
    /// A tag whose `type` matches its value.
    pub fn new(key: impl Into<String>, value: TagValue) -> Tag {
        Tag {
            key: key.into(),
            r#type: value.tag_type() as i32,
            value: Some(value),
        }
    }

    pub fn string(key: impl Into<String>, value: impl Into<String>) -> Tag {
        Tag::new(key, TagValue::VStr(value.into()))
    }

    pub fn long(key: impl Into<String>, value: i64) -> Tag {
        Tag::new(key, TagValue::VLong(value))
    }

    pub fn double(key: impl Into<String>, value: f64) -> Tag {
        Tag::new(key, TagValue::VDouble(value))
    }

    pub fn bool(key: impl Into<String>, value: bool) -> Tag {
        Tag::new(key, TagValue::VBool(value))
    }

    pub fn binary(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Tag {
        Tag::new(key, TagValue::VBytes(value.into()))
    }
}

/// Haystack's `Batch` message: several spans in one message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SpanBatch {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<Span>,
}

/// The answer of the Haystack agent's `SpanAgent.dispatch(Span)` call.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DispatchResult {
    #[prost(enumeration = "ResultCode", tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// The `code` of a [`DispatchResult`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResultCode {
    Success = 0,
    UnknownError = 1,
    RateLimitError = 2,
}
