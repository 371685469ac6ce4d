//! A minimal protobuf wire-format walker, enough to count the items of an
//! encoded OTLP export request and to find the byte offsets of its trace and
//! span ids without decoding it into structs.
//!
//! The sink counts every request it receives with it (a tag walk costs a
//! fraction of a full decode, so the sink stays far from being the
//! bottleneck), and the load generator uses it once per template to find the
//! ids it rewrites per request.

use std::ops::Range;

use thiserror::Error;

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The gRPC method path of the signal's `Export` call.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }

    /// The OTLP/HTTP path of the signal.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Signal::Traces => 0,
            Signal::Metrics => 1,
            Signal::Logs => 2,
        }
    }
}

impl std::str::FromStr for Signal {
    type Err = String;

    fn from_str(s: &str) -> Result<Signal, String> {
        match s {
            "traces" => Ok(Signal::Traces),
            "metrics" => Ok(Signal::Metrics),
            "logs" => Ok(Signal::Logs),
            other => Err(format!(
                "unknown signal {other:?}: expected traces, metrics or logs"
            )),
        }
    }
}

/// Why a buffer is not valid protobuf.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated varint at byte {0}")]
    TruncatedVarint(usize),
    #[error("field at byte {at} runs past the end of its message ({len} bytes)")]
    Truncated { at: usize, len: usize },
    #[error("unsupported wire type {wire_type} at byte {at}")]
    WireType { wire_type: u8, at: usize },
    #[error("field number 0 at byte {0}")]
    FieldZero(usize),
}

/// The protobuf wire types this walker understands (groups are rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

/// One field of a message: its number, wire type and the byte range of its
/// value within the buffer walked (for `Len`, the payload without its length
/// prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub number: u32,
    pub wire_type: WireType,
    pub value: Range<usize>,
}

/// Reads a varint at `*pos`, advancing it.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*pos) else {
            return Err(WireError::TruncatedVarint(start));
        };
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(WireError::TruncatedVarint(start))
}

/// Iterates over the fields of the message in `buf[range]`; value ranges are
/// absolute offsets into `buf`.
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    failed: bool,
}

/// The fields of the message that fills `buf`.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    fields_in(buf, 0..buf.len())
}

/// The fields of the message at `buf[range]`.
pub fn fields_in(buf: &[u8], range: Range<usize>) -> Fields<'_> {
    Fields {
        buf,
        pos: range.start,
        end: range.end.min(buf.len()),
        failed: false,
    }
}

impl Fields<'_> {
    fn next_field(&mut self) -> Result<Field, WireError> {
        let at = self.pos;
        let key = read_varint(&self.buf[..self.end], &mut self.pos)?;
        let number = (key >> 3) as u32;
        if number == 0 {
            return Err(WireError::FieldZero(at));
        }
        let truncated = WireError::Truncated {
            at,
            len: self.end - at,
        };
        let (wire_type, value) = match key & 7 {
            0 => {
                let start = self.pos;
                read_varint(&self.buf[..self.end], &mut self.pos)?;
                (WireType::Varint, start..self.pos)
            }
            1 => (WireType::Fixed64, self.pos..self.pos + 8),
            2 => {
                let len = read_varint(&self.buf[..self.end], &mut self.pos)?;
                let len = usize::try_from(len).map_err(|_| truncated.clone())?;
                let end = self.pos.checked_add(len).ok_or(truncated.clone())?;
                (WireType::Len, self.pos..end)
            }
            5 => (WireType::Fixed32, self.pos..self.pos + 4),
            other => {
                return Err(WireError::WireType {
                    wire_type: other as u8,
                    at,
                })
            }
        };
        if value.end > self.end {
            return Err(truncated);
        }
        self.pos = value.end;
        Ok(Field {
            number,
            wire_type,
            value,
        })
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.end {
            return None;
        }
        let field = self.next_field();
        if field.is_err() {
            self.failed = true;
        }
        Some(field)
    }
}

/// Calls `f` with the range of every length-delimited field numbered
/// `number` of the message at `buf[range]`.
fn each_len(
    buf: &[u8],
    range: Range<usize>,
    number: u32,
    mut f: impl FnMut(Range<usize>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    for field in fields_in(buf, range) {
        let field = field?;
        if field.number == number && field.wire_type == WireType::Len {
            f(field.value)?;
        }
    }
    Ok(())
}

/// Calls `f` with the range of every item message of an export request:
/// spans, log records, or metrics (not data points) for metrics; the three
/// signals nest alike.
fn each_item(
    buf: &[u8],
    mut f: impl FnMut(Range<usize>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    // ExportXServiceRequest.resource_x = 1; ResourceX.scope_x = 2;
    // ScopeX.{spans,metrics,log_records} = 2 for all three signals.
    each_len(buf, 0..buf.len(), 1, |resource| {
        each_len(buf, resource, 2, |scope| each_len(buf, scope, 2, &mut f))
    })
}

/// Metric fields holding data: gauge 5, sum 7, histogram 9,
/// exponential_histogram 10, summary 11; each keeps its points in field 1.
const METRIC_DATA_FIELDS: [u32; 5] = [5, 7, 9, 10, 11];

/// The number of items in an encoded export request of `signal`: spans, log
/// records, or metric data points (as the OpenTelemetry Collector counts
/// them).
pub fn count_items(signal: Signal, buf: &[u8]) -> Result<u64, WireError> {
    let mut n = 0u64;
    match signal {
        Signal::Traces | Signal::Logs => each_item(buf, |_| {
            n += 1;
            Ok(())
        })?,
        Signal::Metrics => each_item(buf, |metric| {
            for field in fields_in(buf, metric) {
                let field = field?;
                if field.wire_type == WireType::Len && METRIC_DATA_FIELDS.contains(&field.number) {
                    each_len(buf, field.value, 1, |_| {
                        n += 1;
                        Ok(())
                    })?;
                }
            }
            Ok(())
        })?,
    }
    Ok(n)
}

/// Which id a byte range of a request holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// 16 bytes.
    Trace,
    /// 8 bytes (span ids and parent span ids).
    Span,
}

impl IdKind {
    pub fn byte_len(self) -> usize {
        match self {
            IdKind::Trace => 16,
            IdKind::Span => 8,
        }
    }
}

/// The offsets (start of the value) of every non-empty trace id, span id and
/// parent span id of the spans (traces) or log records (logs) of an encoded
/// request, in increasing order. Metrics have none.
pub fn id_offsets(signal: Signal, buf: &[u8]) -> Result<Vec<(usize, IdKind)>, WireError> {
    // Span: trace_id 1, span_id 2, parent_span_id 4.
    // LogRecord: trace_id 9, span_id 10.
    let (trace_field, span_fields): (u32, &[u32]) = match signal {
        Signal::Traces => (1, &[2, 4]),
        Signal::Logs => (9, &[10]),
        Signal::Metrics => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    each_item(buf, |item| {
        for field in fields_in(buf, item) {
            let field = field?;
            if field.wire_type != WireType::Len {
                continue;
            }
            let len = field.value.len();
            if field.number == trace_field && len == IdKind::Trace.byte_len() {
                out.push((field.value.start, IdKind::Trace));
            } else if span_fields.contains(&field.number) && len == IdKind::Span.byte_len() {
                out.push((field.value.start, IdKind::Span));
            }
        }
        Ok(())
    })?;
    out.sort_by_key(|(at, _)| *at);
    Ok(out)
}
