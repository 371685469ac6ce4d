//! Validation and item counting of protobuf export requests without decoding.
//!
//! **Why by hand.** A collector that only forwards data should not pay for
//! decoding it into owned structs (one allocation per string, attribute and
//! span) and encoding it again. But it must still refuse a malformed request
//! with an error status instead of accepting it and failing later, when it
//! can no longer tell the client. So a received request is *walked*, not
//! decoded: every field is checked against the OTLP schema exactly as `prost`
//! (the decoder sluice uses whenever it does need the structs) would check it
//! — key and varint form, wire type of every known field, lengths, UTF-8 of
//! strings, packed repeated numbers, groups in unknown fields and the nesting
//! limit — without allocating. No crate validates protobuf against a schema
//! without building messages, hence this module. The contract, "accepted here
//! if and only if `prost` decodes it", is held by a differential test that
//! feeds both thousands of valid, mutated and truncated requests.
//!
//! The schema below lists field numbers and wire types of the OTLP messages
//! of opentelemetry-proto 1.x (collector, common, resource, trace, metrics,
//! logs). Unknown fields are skipped, as a decoder does.

use crate::Signal;

/// prost's default recursion limit: a message nested this deep is refused.
const RECURSION_LIMIT: u32 = 100;

/// Why a request was refused; a static reason keeps the walk allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireError(&'static str);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// int32/int64/uint32/uint64/sint32/bool/enum (any varint).
    Varint,
    Fixed32,
    /// fixed64/sfixed64/double.
    Fixed64,
    Bytes,
    Str,
    Msg(&'static Msg),
    /// `repeated fixed64` / `repeated double`: packed or not.
    RepeatedFixed64,
    /// `repeated uint64`: packed or not.
    RepeatedVarint,
}

struct Msg {
    /// `lookup[tag]` = the field's kind, for tags below 32 (OTLP's largest
    /// is 16); larger tags are unknown fields.
    lookup: [Option<Kind>; 32],
}

const fn msg(fields: &[(u32, Kind)]) -> Msg {
    let mut lookup = [None; 32];
    let mut i = 0;
    while i < fields.len() {
        lookup[fields[i].0 as usize] = Some(fields[i].1);
        i += 1;
    }
    Msg { lookup }
}

use Kind::{Bytes, Fixed32, Fixed64, RepeatedFixed64, RepeatedVarint, Str, Varint};

// common/v1 and resource/v1
static ANY_VALUE: Msg = msg(&[
    (1, Str),
    (2, Varint),
    (3, Varint),
    (4, Fixed64),
    (5, Kind::Msg(&ARRAY_VALUE)),
    (6, Kind::Msg(&KEY_VALUE_LIST)),
    (7, Bytes),
    (8, Varint),
]);
static ARRAY_VALUE: Msg = msg(&[(1, Kind::Msg(&ANY_VALUE))]);
static KEY_VALUE_LIST: Msg = msg(&[(1, Kind::Msg(&KEY_VALUE))]);
static KEY_VALUE: Msg = msg(&[(1, Str), (2, Kind::Msg(&ANY_VALUE)), (3, Varint)]);
static SCOPE: Msg = msg(&[(1, Str), (2, Str), (3, Kind::Msg(&KEY_VALUE)), (4, Varint)]);
static ENTITY_REF: Msg = msg(&[(1, Str), (2, Str), (3, Str), (4, Str)]);
static RESOURCE: Msg = msg(&[
    (1, Kind::Msg(&KEY_VALUE)),
    (2, Varint),
    (3, Kind::Msg(&ENTITY_REF)),
]);

// trace/v1
static TRACE_REQUEST: Msg = msg(&[(1, Kind::Msg(&RESOURCE_SPANS))]);
static RESOURCE_SPANS: Msg = msg(&[
    (1, Kind::Msg(&RESOURCE)),
    (2, Kind::Msg(&SCOPE_SPANS)),
    (3, Str),
]);
static SCOPE_SPANS: Msg = msg(&[(1, Kind::Msg(&SCOPE)), (2, Kind::Msg(&SPAN)), (3, Str)]);
static SPAN: Msg = msg(&[
    (1, Bytes),
    (2, Bytes),
    (3, Str),
    (4, Bytes),
    (5, Str),
    (6, Varint),
    (7, Fixed64),
    (8, Fixed64),
    (9, Kind::Msg(&KEY_VALUE)),
    (10, Varint),
    (11, Kind::Msg(&EVENT)),
    (12, Varint),
    (13, Kind::Msg(&LINK)),
    (14, Varint),
    (15, Kind::Msg(&STATUS)),
    (16, Fixed32),
]);
static EVENT: Msg = msg(&[
    (1, Fixed64),
    (2, Str),
    (3, Kind::Msg(&KEY_VALUE)),
    (4, Varint),
]);
static LINK: Msg = msg(&[
    (1, Bytes),
    (2, Bytes),
    (3, Str),
    (4, Kind::Msg(&KEY_VALUE)),
    (5, Varint),
    (6, Fixed32),
]);
static STATUS: Msg = msg(&[(2, Str), (3, Varint)]);

// logs/v1
static LOGS_REQUEST: Msg = msg(&[(1, Kind::Msg(&RESOURCE_LOGS))]);
static RESOURCE_LOGS: Msg = msg(&[
    (1, Kind::Msg(&RESOURCE)),
    (2, Kind::Msg(&SCOPE_LOGS)),
    (3, Str),
]);
static SCOPE_LOGS: Msg = msg(&[
    (1, Kind::Msg(&SCOPE)),
    (2, Kind::Msg(&LOG_RECORD)),
    (3, Str),
]);
static LOG_RECORD: Msg = msg(&[
    (1, Fixed64),
    (2, Varint),
    (3, Str),
    (5, Kind::Msg(&ANY_VALUE)),
    (6, Kind::Msg(&KEY_VALUE)),
    (7, Varint),
    (8, Fixed32),
    (9, Bytes),
    (10, Bytes),
    (11, Fixed64),
    (12, Str),
]);

// metrics/v1
static METRICS_REQUEST: Msg = msg(&[(1, Kind::Msg(&RESOURCE_METRICS))]);
static RESOURCE_METRICS: Msg = msg(&[
    (1, Kind::Msg(&RESOURCE)),
    (2, Kind::Msg(&SCOPE_METRICS)),
    (3, Str),
]);
static SCOPE_METRICS: Msg = msg(&[(1, Kind::Msg(&SCOPE)), (2, Kind::Msg(&METRIC)), (3, Str)]);
static METRIC: Msg = msg(&[
    (1, Str),
    (2, Str),
    (3, Str),
    (5, Kind::Msg(&GAUGE)),
    (7, Kind::Msg(&SUM)),
    (9, Kind::Msg(&HISTOGRAM)),
    (10, Kind::Msg(&EXP_HISTOGRAM)),
    (11, Kind::Msg(&SUMMARY)),
    (12, Kind::Msg(&KEY_VALUE)),
]);
static GAUGE: Msg = msg(&[(1, Kind::Msg(&NUMBER_POINT))]);
static SUM: Msg = msg(&[(1, Kind::Msg(&NUMBER_POINT)), (2, Varint), (3, Varint)]);
static HISTOGRAM: Msg = msg(&[(1, Kind::Msg(&HISTOGRAM_POINT)), (2, Varint)]);
static EXP_HISTOGRAM: Msg = msg(&[(1, Kind::Msg(&EXP_HISTOGRAM_POINT)), (2, Varint)]);
static SUMMARY: Msg = msg(&[(1, Kind::Msg(&SUMMARY_POINT))]);
static NUMBER_POINT: Msg = msg(&[
    (2, Fixed64),
    (3, Fixed64),
    (4, Fixed64),
    (5, Kind::Msg(&EXEMPLAR)),
    (6, Fixed64),
    (7, Kind::Msg(&KEY_VALUE)),
    (8, Varint),
]);
static HISTOGRAM_POINT: Msg = msg(&[
    (2, Fixed64),
    (3, Fixed64),
    (4, Fixed64),
    (5, Fixed64),
    (6, RepeatedFixed64),
    (7, RepeatedFixed64),
    (8, Kind::Msg(&EXEMPLAR)),
    (9, Kind::Msg(&KEY_VALUE)),
    (10, Varint),
    (11, Fixed64),
    (12, Fixed64),
]);
static EXP_HISTOGRAM_POINT: Msg = msg(&[
    (1, Kind::Msg(&KEY_VALUE)),
    (2, Fixed64),
    (3, Fixed64),
    (4, Fixed64),
    (5, Fixed64),
    (6, Varint),
    (7, Fixed64),
    (8, Kind::Msg(&BUCKETS)),
    (9, Kind::Msg(&BUCKETS)),
    (10, Varint),
    (11, Kind::Msg(&EXEMPLAR)),
    (12, Fixed64),
    (13, Fixed64),
    (14, Fixed64),
]);
static BUCKETS: Msg = msg(&[(1, Varint), (2, RepeatedVarint)]);
static SUMMARY_POINT: Msg = msg(&[
    (2, Fixed64),
    (3, Fixed64),
    (4, Fixed64),
    (5, Fixed64),
    (6, Kind::Msg(&QUANTILE)),
    (7, Kind::Msg(&KEY_VALUE)),
    (8, Varint),
]);
static QUANTILE: Msg = msg(&[(1, Fixed64), (2, Fixed64)]);
static EXEMPLAR: Msg = msg(&[
    (2, Fixed64),
    (3, Fixed64),
    (4, Bytes),
    (5, Bytes),
    (6, Fixed64),
    (7, Kind::Msg(&KEY_VALUE)),
]);

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

const E_VARINT: WireError = WireError("invalid varint");
const E_UNDERFLOW: WireError = WireError("buffer underflow");
const E_WIRE_TYPE: WireError = WireError("invalid wire type for a known field");
const E_KEY: WireError = WireError("invalid field key");
const E_UTF8: WireError = WireError("string field is not valid UTF-8");
const E_DEPTH: WireError = WireError("message nested too deeply");
const E_GROUP: WireError = WireError("unexpected end group tag");
const E_PACKED: WireError = WireError("packed field length does not match its values");

/// Reads a varint at `*pos`, with prost's rules (at most 10 bytes, the tenth
/// at most 1).
#[inline(always)]
fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut value: u64 = 0;
    let mut shift = 0;
    let mut i = *pos;
    loop {
        let Some(&b) = buf.get(i) else {
            return Err(if i - *pos >= 10 {
                E_VARINT
            } else {
                E_UNDERFLOW
            });
        };
        i += 1;
        if shift == 63 {
            // The tenth byte: only its lowest bit fits.
            if b > 1 {
                return Err(E_VARINT);
            }
            value |= u64::from(b) << 63;
            *pos = i;
            return Ok(value);
        }
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            *pos = i;
            return Ok(value);
        }
        shift += 7;
    }
}

/// Reads a field key: (tag, wire type).
#[inline(always)]
fn key(buf: &[u8], pos: &mut usize) -> Result<(u32, u8), WireError> {
    let k = varint(buf, pos)?;
    if k > u64::from(u32::MAX) {
        return Err(E_KEY);
    }
    let wire = (k & 7) as u8;
    if wire > 5 {
        return Err(E_KEY);
    }
    let tag = (k as u32) >> 3;
    if tag == 0 {
        return Err(E_KEY);
    }
    Ok((tag, wire))
}

/// Advances over a length-delimited payload and returns its bounds.
#[inline(always)]
fn delimited(buf: &[u8], pos: &mut usize) -> Result<(usize, usize), WireError> {
    let len = varint(buf, pos)?;
    let start = *pos;
    if len > (buf.len() - start) as u64 {
        return Err(E_UNDERFLOW);
    }
    *pos = start + len as usize;
    Ok((start, *pos))
}

#[inline(always)]
fn fixed(buf: &[u8], pos: &mut usize, n: usize) -> Result<(), WireError> {
    if buf.len() - *pos < n {
        return Err(E_UNDERFLOW);
    }
    *pos += n;
    Ok(())
}

/// Validates the fields of one message in `buf` (the message's own bytes).
/// `ctx` is prost's remaining recursion budget for these fields.
fn message(buf: &[u8], schema: &Msg, ctx: u32) -> Result<(), WireError> {
    let mut pos = 0;
    while pos < buf.len() {
        let (tag, wire) = key(buf, &mut pos)?;
        let kind = if (tag as usize) < schema.lookup.len() {
            schema.lookup[tag as usize]
        } else {
            None
        };
        match kind {
            None => skip(buf, &mut pos, tag, wire, ctx)?,
            Some(Varint) => {
                expect(wire, VARINT)?;
                varint(buf, &mut pos)?;
            }
            Some(Fixed32) => {
                expect(wire, I32)?;
                fixed(buf, &mut pos, 4)?;
            }
            Some(Fixed64) => {
                expect(wire, I64)?;
                fixed(buf, &mut pos, 8)?;
            }
            Some(Bytes) => {
                expect(wire, LEN)?;
                delimited(buf, &mut pos)?;
            }
            Some(Str) => {
                expect(wire, LEN)?;
                let (s, e) = delimited(buf, &mut pos)?;
                if std::str::from_utf8(&buf[s..e]).is_err() {
                    return Err(E_UTF8);
                }
            }
            Some(Kind::Msg(inner)) => {
                expect(wire, LEN)?;
                if ctx == 0 {
                    return Err(E_DEPTH);
                }
                let (s, e) = delimited(buf, &mut pos)?;
                message(&buf[s..e], inner, ctx - 1)?;
            }
            Some(RepeatedFixed64) => {
                if wire == LEN {
                    let (s, e) = delimited(buf, &mut pos)?;
                    if (e - s) % 8 != 0 {
                        return Err(E_PACKED);
                    }
                } else {
                    expect(wire, I64)?;
                    fixed(buf, &mut pos, 8)?;
                }
            }
            Some(RepeatedVarint) => {
                if wire == LEN {
                    let (s, e) = delimited(buf, &mut pos)?;
                    let packed = &buf[s..e];
                    let mut p = 0;
                    while p < packed.len() {
                        varint(packed, &mut p).map_err(|_| E_PACKED)?;
                    }
                } else {
                    expect(wire, VARINT)?;
                    varint(buf, &mut pos)?;
                }
            }
        }
    }
    Ok(())
}

#[inline(always)]
fn expect(wire: u8, want: u8) -> Result<(), WireError> {
    if wire == want {
        Ok(())
    } else {
        Err(E_WIRE_TYPE)
    }
}

/// Skips an unknown field as prost's `skip_field` does, groups included.
fn skip(buf: &[u8], pos: &mut usize, tag: u32, wire: u8, ctx: u32) -> Result<(), WireError> {
    if ctx == 0 {
        return Err(E_DEPTH);
    }
    match wire {
        VARINT => {
            varint(buf, pos)?;
        }
        I64 => fixed(buf, pos, 8)?,
        I32 => fixed(buf, pos, 4)?,
        LEN => {
            delimited(buf, pos)?;
        }
        SGROUP => loop {
            let (inner_tag, inner_wire) = key(buf, pos)?;
            if inner_wire == EGROUP {
                if inner_tag != tag {
                    return Err(E_GROUP);
                }
                break;
            }
            skip(buf, pos, inner_tag, inner_wire, ctx - 1)?;
        },
        _ => return Err(E_GROUP),
    }
    Ok(())
}

/// Checks that `bytes` decode as an export request of `signal` and returns
/// its item count (spans, metric data points, log records).
pub(crate) fn validate(signal: Signal, bytes: &[u8]) -> Result<usize, WireError> {
    let schema = match signal {
        Signal::Traces => &TRACE_REQUEST,
        Signal::Metrics => &METRICS_REQUEST,
        Signal::Logs => &LOGS_REQUEST,
    };
    message(bytes, schema, RECURSION_LIMIT)?;
    // The bytes are valid: counting only walks the structure above the items.
    Ok(count(signal, bytes))
}

/// Iterates over the length-delimited occurrences of field `want` in a
/// message already known to be valid.
fn each_field(buf: &[u8], want: u32, mut f: impl FnMut(&[u8])) {
    let mut pos = 0;
    while pos < buf.len() {
        let Ok((tag, wire)) = key(buf, &mut pos) else {
            return;
        };
        if tag == want && wire == LEN {
            let Ok((s, e)) = delimited(buf, &mut pos) else {
                return;
            };
            f(&buf[s..e]);
        } else if skip(buf, &mut pos, tag, wire, RECURSION_LIMIT).is_err() {
            return;
        }
    }
}

/// Items in a valid request, counted the way the decoded request counts them.
fn count(signal: Signal, bytes: &[u8]) -> usize {
    let mut n = 0;
    match signal {
        // ExportTraceServiceRequest.resource_spans(1) -> scope_spans(2) ->
        // spans(2); logs: resource_logs(1) -> scope_logs(2) -> log_records(2).
        Signal::Traces | Signal::Logs => each_field(bytes, 1, |resource| {
            each_field(resource, 2, |scope| each_field(scope, 2, |_| n += 1))
        }),
        Signal::Metrics => each_field(bytes, 1, |resource| {
            each_field(resource, 2, |scope| {
                each_field(scope, 2, |metric| n += metric_points(metric))
            })
        }),
    }
    n
}

/// Data points of one metric. `data` is a oneof: a later variant replaces an
/// earlier one, a repeated variant merges (its points add up).
fn metric_points(metric: &[u8]) -> usize {
    let mut variant = 0;
    let mut points = 0;
    let mut pos = 0;
    while pos < metric.len() {
        let Ok((tag, wire)) = key(metric, &mut pos) else {
            break;
        };
        if matches!(tag, 5 | 7 | 9 | 10 | 11) && wire == LEN {
            let Ok((s, e)) = delimited(metric, &mut pos) else {
                break;
            };
            let mut here = 0;
            each_field(&metric[s..e], 1, |_| here += 1);
            if tag == variant {
                points += here;
            } else {
                variant = tag;
                points = here;
            }
        } else if skip(metric, &mut pos, tag, wire, RECURSION_LIMIT).is_err() {
            break;
        }
    }
    points
}

#[cfg(test)]
mod tests;
