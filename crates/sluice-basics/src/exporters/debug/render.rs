//! Rendering of a batch as log lines, one function per verbosity. Pure, so
//! tests assert on the exact text.

use std::fmt::Write;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{metric, Metric};
use opentelemetry_proto::tonic::trace::v1::Span;
use sluice_pdata::Payload;

use super::Verbosity;

/// Nesting shown of array and map values before eliding with `…`.
const MAX_DEPTH: usize = 8;

/// The lines written for one batch. Each line is free of line breaks.
pub fn render(payload: &Payload, verbosity: Verbosity) -> Vec<String> {
    let mut lines = vec![summary(payload)];
    match verbosity {
        Verbosity::Basic => {}
        Verbosity::Normal => items(payload, &mut lines),
        Verbosity::Detailed => {
            lines.push(String::from_utf8_lossy(&sluice_pdata::to_json(payload)).into_owned())
        }
    }
    lines
}

/// `traces: 2 resource spans, 3 spans` and the like.
fn summary(payload: &Payload) -> String {
    let items = payload.item_count();
    match payload {
        Payload::Traces(r) => format!(
            "traces: {} resource spans, {items} spans",
            r.resource_spans.len()
        ),
        Payload::Metrics(r) => {
            let metrics: usize = r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .map(|sm| sm.metrics.len())
                .sum();
            format!(
                "metrics: {} resource metrics, {metrics} metrics, {items} data points",
                r.resource_metrics.len()
            )
        }
        Payload::Logs(r) => format!(
            "logs: {} resource logs, {items} log records",
            r.resource_logs.len()
        ),
    }
}

fn items(payload: &Payload, lines: &mut Vec<String>) {
    match payload {
        Payload::Traces(r) => lines.extend(
            r.resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(span_line),
        ),
        Payload::Metrics(r) => lines.extend(
            r.resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(metric_line),
        ),
        Payload::Logs(r) => lines.extend(
            r.resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .flat_map(|sl| &sl.log_records)
                .map(log_line),
        ),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn span_line(span: &Span) -> String {
    format!(
        "span trace_id={} span_id={} name={:?}",
        hex(&span.trace_id),
        hex(&span.span_id),
        span.name
    )
}

fn metric_line(m: &Metric) -> String {
    let (kind, points) = match &m.data {
        Some(metric::Data::Gauge(g)) => ("gauge", g.data_points.len()),
        Some(metric::Data::Sum(s)) => ("sum", s.data_points.len()),
        Some(metric::Data::Histogram(h)) => ("histogram", h.data_points.len()),
        Some(metric::Data::ExponentialHistogram(h)) => {
            ("exponential_histogram", h.data_points.len())
        }
        Some(metric::Data::Summary(s)) => ("summary", s.data_points.len()),
        None => ("empty", 0),
    };
    format!("metric name={:?} type={kind} points={points}", m.name)
}

/// The severity text when set, else the name of the severity number
/// (`INFO`, `ERROR2`, ...), else the number.
fn severity(r: &LogRecord) -> String {
    if !r.severity_text.is_empty() {
        return r.severity_text.escape_debug().to_string();
    }
    match SeverityNumber::try_from(r.severity_number) {
        Ok(n) => n
            .as_str_name()
            .trim_start_matches("SEVERITY_NUMBER_")
            .to_string(),
        Err(_) => r.severity_number.to_string(),
    }
}

fn log_line(r: &LogRecord) -> String {
    let body = r
        .body
        .as_ref()
        .map(|v| value(v, 0))
        .unwrap_or_else(|| "\"\"".to_string());
    format!("log severity={} body={body}", severity(r))
}

/// An attribute value or body as one line: strings quoted and escaped,
/// arrays as `[a, b]`, maps as `{k: v}`, bytes as hex.
fn value(v: &AnyValue, depth: usize) -> String {
    let Some(v) = &v.value else {
        return "\"\"".to_string();
    };
    match v {
        any_value::Value::StringValue(s) => format!("{s:?}"),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BytesValue(b) => format!("0x{}", hex(b)),
        any_value::Value::StringValueStrindex(i) => format!("strindex:{i}"),
        any_value::Value::ArrayValue(a) => {
            if depth >= MAX_DEPTH {
                return "[…]".to_string();
            }
            let inner: Vec<String> = a.values.iter().map(|v| value(v, depth + 1)).collect();
            format!("[{}]", inner.join(", "))
        }
        any_value::Value::KvlistValue(kv) => {
            if depth >= MAX_DEPTH {
                return "{…}".to_string();
            }
            let inner: Vec<String> = kv
                .values
                .iter()
                .map(|kv| {
                    let v = kv
                        .value
                        .as_ref()
                        .map(|v| value(v, depth + 1))
                        .unwrap_or_else(|| "\"\"".to_string());
                    format!("{:?}: {v}", kv.key)
                })
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}
