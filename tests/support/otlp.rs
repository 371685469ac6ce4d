//! OTLP data on both sides of sluice: reading the OTLP/JSON lines the file
//! exporter writes, and building OTLP protobuf requests to send.

use super::*;

// ------------------------------------------------------------ OTLP/JSON files

/// Reads a JSON-lines file. A missing file reads as no lines. With
/// `complete_only`, a last line without its newline (still being written)
/// is ignored; otherwise every line must parse.
pub fn read_json_lines_opt(path: &Path, complete_only: bool) -> Vec<Value> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    let text =
        String::from_utf8(data).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()));
    let mut lines: Vec<&str> = text.split('\n').collect();
    // split leaves "" after a final newline, or the unterminated last line.
    let last = lines.pop().unwrap_or_default();
    if !complete_only && !last.trim().is_empty() {
        lines.push(last);
    }
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "{} line {}: not JSON ({e}): {}",
                    path.display(),
                    i + 1,
                    truncate(l, 400)
                )
            })
        })
        .collect()
}

/// Reads a whole JSON-lines file; every line must be a JSON object.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    read_json_lines_opt(path, false)
}

pub fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// One span, metric or log record of an OTLP/JSON export request, with the
/// resource and scope it came under.
#[derive(Debug, Clone)]
pub struct Item {
    pub resource: Value,
    pub scope: Value,
    pub record: Value,
}

impl Item {
    /// The resource's `service.name`, if it is a string attribute.
    pub fn service_name(&self) -> Option<String> {
        attr(&self.resource["attributes"], "service.name")
            .and_then(|v| v["stringValue"].as_str())
            .map(str::to_string)
    }

    pub fn str_field(&self, name: &str) -> String {
        self.record[name].as_str().unwrap_or_default().to_string()
    }
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn flatten(lines: &[Value], resource_key: &str, scope_key: &str, record_key: &str) -> Vec<Item> {
    let mut out = Vec::new();
    for line in lines {
        for rs in array(line, resource_key) {
            let resource = rs.get("resource").cloned().unwrap_or(Value::Null);
            for ss in array(rs, scope_key) {
                let scope = ss.get("scope").cloned().unwrap_or(Value::Null);
                for rec in array(ss, record_key) {
                    out.push(Item {
                        resource: resource.clone(),
                        scope: scope.clone(),
                        record: rec.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Every span in these OTLP/JSON `ExportTraceServiceRequest` lines.
pub fn spans(lines: &[Value]) -> Vec<Item> {
    flatten(lines, "resourceSpans", "scopeSpans", "spans")
}

/// Every metric in these OTLP/JSON `ExportMetricsServiceRequest` lines.
pub fn metrics(lines: &[Value]) -> Vec<Item> {
    flatten(lines, "resourceMetrics", "scopeMetrics", "metrics")
}

/// Every log record in these OTLP/JSON `ExportLogsServiceRequest` lines.
pub fn log_records(lines: &[Value]) -> Vec<Item> {
    flatten(lines, "resourceLogs", "scopeLogs", "logRecords")
}

/// The spans in a traces file (only complete lines, for polling).
pub fn spans_in(path: &Path) -> Vec<Item> {
    spans(&read_json_lines_opt(path, true))
}

/// The value of attribute `key` in an OTLP/JSON attribute list.
pub fn attr<'a>(attributes: &'a Value, key: &str) -> Option<&'a Value> {
    attributes
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// An OTLP/JSON int64: a JSON string of digits (the spec's form) or a number.
pub fn json_i64(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// An OTLP/JSON double (a number; the spec also allows strings for
/// NaN/Infinity, and some encoders quote).
pub fn json_f64(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

// ----------------------------------------------------------- OTLP protobuf

/// Unique trace and span ids for the spans one test builds.
pub struct IdGen {
    prefix: u64,
    next: AtomicU64,
}

impl IdGen {
    pub fn new() -> IdGen {
        IdGen {
            prefix: random_u64() | 1,
            next: AtomicU64::new(1),
        }
    }

    /// A fresh (trace id, span id) pair, both non-zero.
    pub fn next(&self) -> ([u8; 16], [u8; 8]) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&self.prefix.to_be_bytes());
        trace[8..].copy_from_slice(&n.to_be_bytes());
        let span = (self.prefix.rotate_left(17) ^ n).max(1).to_be_bytes();
        (trace, span)
    }
}

impl Default for IdGen {
    fn default() -> Self {
        IdGen::new()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One span to put into a request: ids and name.
#[derive(Debug, Clone)]
pub struct SpanSpec {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub name: String,
}

impl SpanSpec {
    /// `trace_id:span_id` in hex, the key the tests compare files by.
    pub fn key(&self) -> String {
        format!("{}:{}", hex(&self.trace_id), hex(&self.span_id))
    }
}

/// `traceId:spanId` of a span read back from a file.
pub fn span_key(item: &Item) -> String {
    format!(
        "{}:{}",
        item.record["traceId"].as_str().unwrap_or_default(),
        item.record["spanId"].as_str().unwrap_or_default()
    )
}

/// `n` fresh spans named `<prefix>-<i>`.
pub fn make_spans(ids: &IdGen, prefix: &str, n: usize) -> Vec<SpanSpec> {
    (0..n)
        .map(|i| {
            let (trace_id, span_id) = ids.next();
            SpanSpec {
                trace_id,
                span_id,
                name: format!("{prefix}-{i}"),
            }
        })
        .collect()
}

/// A protobuf-encoded OTLP `ExportTraceServiceRequest` carrying `spans`
/// under one resource with `service.name = service`.
pub fn trace_request_protobuf(service: &str, spans: &[SpanSpec]) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64;
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue(service.to_string()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "sluice-tests".to_string(),
                    ..Default::default()
                }),
                spans: spans
                    .iter()
                    .map(|s| Span {
                        trace_id: s.trace_id.to_vec(),
                        span_id: s.span_id.to_vec(),
                        name: s.name.clone(),
                        kind: 2,
                        start_time_unix_nano: now,
                        end_time_unix_nano: now + 1_000,
                        attributes: vec![kv(
                            "test.name",
                            any_value::Value::StringValue(s.name.clone()),
                        )],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

/// POSTs a protobuf traces request to `http://addr/v1/traces`.
pub fn post_traces_protobuf(
    addr: SocketAddr,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    http_request(
        addr,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        body,
        timeout,
    )
}
