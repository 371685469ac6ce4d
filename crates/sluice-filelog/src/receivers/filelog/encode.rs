//! Builds the protobuf encoding of an `ExportLogsServiceRequest` directly in
//! one byte buffer: one resource, one scope, one `LogRecord` per line. No
//! per-record structs and no per-record allocation; the nesting lengths are
//! written in front of the records when the batch is finished, into room
//! reserved for them.
//!
//! Field numbers (opentelemetry/proto/logs/v1/logs.proto,
//! common/v1/common.proto, collector/logs/v1/logs_service.proto):
//! `ExportLogsServiceRequest.resource_logs = 1`; `ResourceLogs.resource = 1,
//! scope_logs = 2`; `Resource.attributes = 1`; `ScopeLogs.log_records = 2`;
//! `LogRecord.body = 5, attributes = 6, observed_time_unix_nano = 11
//! (fixed64)`; `KeyValue.key = 1, value = 2`; `AnyValue.string_value = 1,
//! bool_value = 2, int_value = 3, double_value = 4, array_value = 5,
//! kvlist_value = 6, bytes_value = 7`; `ArrayValue.values = 1`;
//! `KeyValueList.values = 1`.

use sluice_pdata::Bytes;

/// Wire types.
const LEN: u8 = 2;
const I64: u8 = 1;
const VARINT: u8 = 0;

const fn tag(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

/// Bytes of the varint encoding of `v`.
#[inline]
pub fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least 1.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends `field` as a length-delimited field holding `bytes`.
fn put_bytes_field(buf: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    buf.push(tag(field, LEN));
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// `KeyValue{key, value: AnyValue{string_value}}` encoded as the field
/// `field` of its parent (6 for `LogRecord.attributes`, 1 for
/// `Resource.attributes`).
pub fn string_attribute(field: u8, key: &str, value: &str) -> Vec<u8> {
    let mut any = Vec::with_capacity(value.len() + 6);
    put_bytes_field(&mut any, 1, value.as_bytes());
    let mut kv = Vec::with_capacity(key.len() + any.len() + 12);
    put_bytes_field(&mut kv, 1, key.as_bytes());
    put_bytes_field(&mut kv, 2, &any);
    let mut out = Vec::with_capacity(kv.len() + 6);
    put_bytes_field(&mut out, field, &kv);
    out
}

/// `LogRecord.attributes` field tag number.
pub const RECORD_ATTRIBUTES: u8 = 6;
/// `Resource.attributes` field tag number.
pub const RESOURCE_ATTRIBUTES: u8 = 1;

/// Room kept in front of the records for the request, resource-logs and
/// scope-logs headers (tags and varint lengths), plus the resource.
fn header_room(resource: &[u8]) -> usize {
    1 + 10 + resource.len() + 1 + 10
}

/// Accumulates log records of one batch.
pub struct LogsBuilder {
    /// `ResourceLogs.resource` field, encoded (empty: no resource).
    resource: Vec<u8>,
    /// Attributes every record carries (config `attributes`), encoded.
    common_attrs: Vec<u8>,
    /// Bodies are `bytes_value` instead of `string_value`.
    bytes_body: bool,
    buf: Vec<u8>,
    start: usize,
    records: usize,
}

impl LogsBuilder {
    pub fn new(resource_attrs: &[u8], common_attrs: Vec<u8>, bytes_body: bool) -> LogsBuilder {
        let resource = if resource_attrs.is_empty() {
            Vec::new()
        } else {
            let mut r = Vec::new();
            put_bytes_field(&mut r, 1, resource_attrs);
            r
        };
        let start = header_room(&resource);
        let mut b = LogsBuilder {
            resource,
            common_attrs,
            bytes_body,
            buf: Vec::new(),
            start,
            records: 0,
        };
        b.reset(64 * 1024);
        b
    }

    fn reset(&mut self, capacity: usize) {
        self.buf = Vec::with_capacity(capacity.max(self.start + 1024));
        self.buf.resize(self.start, 0);
        self.records = 0;
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes of records so far.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Appends one record. `body` must be valid UTF-8 unless bodies are bytes
    /// (the caller checks). `file_attrs` and `extra_attrs` are encoded
    /// `LogRecord.attributes` fields.
    #[inline]
    pub fn push(&mut self, body: &[u8], file_attrs: &[u8], extra_attrs: &[u8], observed: u64) {
        let any_len = 1 + varint_len(body.len() as u64) + body.len();
        let rec_len = 1
            + varint_len(any_len as u64)
            + any_len
            + file_attrs.len()
            + self.common_attrs.len()
            + extra_attrs.len()
            + 9;
        let buf = &mut self.buf;
        buf.reserve(rec_len + 6);
        buf.push(tag(2, LEN)); // ScopeLogs.log_records
        put_varint(buf, rec_len as u64);
        buf.push(tag(5, LEN)); // LogRecord.body
        put_varint(buf, any_len as u64);
        buf.push(if self.bytes_body {
            tag(7, LEN)
        } else {
            tag(1, LEN)
        });
        put_varint(buf, body.len() as u64);
        buf.extend_from_slice(body);
        buf.extend_from_slice(file_attrs);
        buf.extend_from_slice(&self.common_attrs);
        buf.extend_from_slice(extra_attrs);
        buf.push(tag(11, I64)); // LogRecord.observed_time_unix_nano
        buf.extend_from_slice(&observed.to_le_bytes());
        self.records += 1;
    }

    /// The finished request and its record count; the builder starts over.
    pub fn finish(&mut self) -> (Bytes, usize) {
        let records_len = (self.buf.len() - self.start) as u64;
        let mut head = Vec::with_capacity(self.start);
        let scope_len = records_len;
        let rl_len = self.resource.len() as u64 + 1 + varint_len(scope_len) as u64 + scope_len;
        head.push(tag(1, LEN)); // ExportLogsServiceRequest.resource_logs
        put_varint(&mut head, rl_len);
        head.extend_from_slice(&self.resource);
        head.push(tag(2, LEN)); // ResourceLogs.scope_logs (no scope)
        put_varint(&mut head, scope_len);
        let at = self.start - head.len();
        self.buf[at..self.start].copy_from_slice(&head);
        let records = self.records;
        let next_capacity = self.buf.capacity();
        let buf = std::mem::take(&mut self.buf);
        self.reset(next_capacity);
        (Bytes::from(buf).slice(at..), records)
    }
}

/// Encodes a JSON object's fields as `LogRecord.attributes` (parsed by the
/// `json_parser` operator). Numbers become doubles as in the Collector's
/// `json_parser`, nested objects `kvlist_value`, arrays `array_value`,
/// `null` an empty value.
pub fn json_attributes(obj: &serde_json::Map<String, serde_json::Value>, out: &mut Vec<u8>) {
    for (k, v) in obj {
        let kv_len = key_value_len(k, v);
        out.push(tag(RECORD_ATTRIBUTES, LEN));
        put_varint(out, kv_len as u64);
        put_key_value(out, k, v);
    }
}

fn field_len(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

fn any_value_len(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::Null => 0,
        Value::Bool(_) => 2,
        Value::Number(_) => 9,
        Value::String(s) => field_len(s.len()),
        Value::Array(a) => field_len(a.iter().map(|x| field_len(any_value_len(x))).sum()),
        Value::Object(o) => field_len(o.iter().map(|(k, x)| field_len(key_value_len(k, x))).sum()),
    }
}

fn key_value_len(k: &str, v: &serde_json::Value) -> usize {
    field_len(k.len()) + field_len(any_value_len(v))
}

fn put_key_value(out: &mut Vec<u8>, k: &str, v: &serde_json::Value) {
    put_bytes_field(out, 1, k.as_bytes());
    out.push(tag(2, LEN));
    put_varint(out, any_value_len(v) as u64);
    put_any_value(out, v);
}

fn put_any_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Null => {}
        Value::Bool(b) => {
            out.push(tag(2, VARINT));
            out.push(u8::from(*b));
        }
        Value::Number(n) => {
            out.push(tag(4, I64));
            out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_le_bytes());
        }
        Value::String(s) => put_bytes_field(out, 1, s.as_bytes()),
        Value::Array(a) => {
            out.push(tag(5, LEN));
            put_varint(
                out,
                a.iter().map(|x| field_len(any_value_len(x))).sum::<usize>() as u64,
            );
            for x in a {
                out.push(tag(1, LEN));
                put_varint(out, any_value_len(x) as u64);
                put_any_value(out, x);
            }
        }
        Value::Object(o) => {
            out.push(tag(6, LEN));
            put_varint(
                out,
                o.iter()
                    .map(|(k, x)| field_len(key_value_len(k, x)))
                    .sum::<usize>() as u64,
            );
            for (k, x) in o {
                out.push(tag(1, LEN));
                put_varint(out, key_value_len(k, x) as u64);
                put_key_value(out, k, x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use sluice_pdata::{Batch, Payload, Signal};

    fn decode(bytes: Bytes) -> sluice_pdata::ExportLogsServiceRequest {
        match Batch::from_encoded(Signal::Logs, bytes).unwrap().payload() {
            Payload::Logs(r) => r.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn records_decode_as_the_proto_types() {
        let file = string_attribute(RECORD_ATTRIBUTES, "log.file.name", "app.log");
        let common = string_attribute(RECORD_ATTRIBUTES, "env", "prod");
        let res = string_attribute(RESOURCE_ATTRIBUTES, "host.name", "h1");
        let mut b = LogsBuilder::new(&res, common, false);
        let long = "x".repeat(300);
        b.push(b"hello", &file, &[], 42);
        b.push(long.as_bytes(), &file, &[], 43);
        let mut extra = Vec::new();
        let obj: serde_json::Value =
            serde_json::from_str(r#"{"a":1,"b":"s","c":[true,null],"d":{"e":2.5}}"#).unwrap();
        json_attributes(obj.as_object().unwrap(), &mut extra);
        b.push(b"{}", &file, &extra, 44);
        let (bytes, n) = b.finish();
        assert_eq!(n, 3);
        let req = decode(bytes);
        assert_eq!(req.resource_logs.len(), 1);
        let rl = &req.resource_logs[0];
        assert_eq!(rl.resource.as_ref().unwrap().attributes[0].key, "host.name");
        let recs = &rl.scope_logs[0].log_records;
        assert_eq!(recs.len(), 3);
        let body = |i: usize| recs[i].body.as_ref().unwrap().value.clone().unwrap();
        assert_eq!(body(0), Value::StringValue("hello".into()));
        assert_eq!(body(1), Value::StringValue(long.clone()));
        assert_eq!(recs[1].observed_time_unix_nano, 43);
        assert_eq!(recs[0].attributes[0].key, "log.file.name");
        assert_eq!(recs[0].attributes[1].key, "env");
        let attrs = &recs[2].attributes;
        assert_eq!(attrs.len(), 6);
        assert_eq!(attrs[2].key, "a");
        assert_eq!(
            attrs[2].value.as_ref().unwrap().value,
            Some(Value::DoubleValue(1.0))
        );
        match &attrs[4].value.as_ref().unwrap().value {
            Some(Value::ArrayValue(a)) => {
                assert_eq!(a.values.len(), 2);
                assert_eq!(a.values[0].value, Some(Value::BoolValue(true)));
                assert_eq!(a.values[1].value, None);
            }
            other => panic!("{other:?}"),
        }
        match &attrs[5].value.as_ref().unwrap().value {
            Some(Value::KvlistValue(kv)) => {
                assert_eq!(kv.values[0].key, "e");
                assert_eq!(
                    kv.values[0].value.as_ref().unwrap().value,
                    Some(Value::DoubleValue(2.5))
                );
            }
            other => panic!("{other:?}"),
        }

        // The builder starts over after finish, without the resource.
        let mut b = LogsBuilder::new(&[], Vec::new(), true);
        b.push(&[0xff, 0xfe], &[], &[], 1);
        let req = decode(b.finish().0);
        assert!(req.resource_logs[0].resource.is_none());
        assert_eq!(
            req.resource_logs[0].scope_logs[0].log_records[0]
                .body
                .as_ref()
                .unwrap()
                .value,
            Some(Value::BytesValue(vec![0xff, 0xfe]))
        );
        b.push(b"again", &[], &[], 2);
        assert_eq!(
            decode(b.finish().0).resource_logs[0].scope_logs[0]
                .log_records
                .len(),
            1
        );
    }
}
