//! Attribute values as the Collector's `pcommon.Value` treats them: their
//! string forms (`AsString`, and the form regexp matching uses) and the
//! SHA-256 hash of the `hash` action.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Val;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use sha2::{Digest, Sha256};

/// The value inside an attribute's optional `AnyValue`; `None` is the empty
/// value (also for the profiles-only `string_value_strindex`).
pub(crate) fn inner(v: &Option<AnyValue>) -> Option<&Val> {
    match v.as_ref().and_then(|a| a.value.as_ref()) {
        Some(Val::StringValueStrindex(_)) => None,
        other => other,
    }
}

/// A double as the Collector's `AsString` writes it (ECMAScript number to
/// string: fixed notation, exponent below 1e-6 and from 1e21).
pub(crate) fn write_double(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("json: unsupported value: NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 {
            "json: unsupported value: +Inf"
        } else {
            "json: unsupported value: -Inf"
        });
        return;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let start = out.len();
        let _ = write!(out, "{f:e}");
        // Rust writes `1e21`; Go writes `1e+21`.
        if let Some(e) = out[start..].find('e') {
            let at = start + e + 1;
            if out.as_bytes().get(at) != Some(&b'-') {
                out.insert(at, '+');
            }
        }
    } else {
        let _ = write!(out, "{f}");
    }
}

/// The value as a string, as the Collector's `AsString`: strings as they
/// are, bools `true`/`false`, ints in decimal, doubles as [`write_double`],
/// bytes in standard base64, lists and maps as JSON (map keys sorted), the
/// empty value as `""`.
pub(crate) fn as_string(v: Option<&Val>) -> Cow<'_, str> {
    match v {
        None => Cow::Borrowed(""),
        Some(Val::StringValue(s)) => Cow::Borrowed(s),
        Some(Val::BoolValue(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Some(Val::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(Val::DoubleValue(d)) => {
            let mut s = String::new();
            write_double(&mut s, *d);
            Cow::Owned(s)
        }
        Some(Val::BytesValue(b)) => Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b)),
        Some(Val::ArrayValue(_)) | Some(Val::KvlistValue(_)) => {
            let mut s = String::new();
            // A NaN or infinity makes Go's JSON encoder fail: the empty string.
            if write_json(&mut s, v).is_err() {
                s.clear();
            }
            Cow::Owned(s)
        }
        Some(Val::StringValueStrindex(_)) => Cow::Borrowed(""),
    }
}

/// A non-finite double, which JSON cannot hold.
struct Unsupported;

fn write_json(out: &mut String, v: Option<&Val>) -> Result<(), Unsupported> {
    match v {
        None | Some(Val::StringValueStrindex(_)) => out.push_str("null"),
        Some(Val::StringValue(s)) => write_json_string(out, s),
        Some(Val::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Val::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Val::DoubleValue(d)) => {
            if !d.is_finite() {
                return Err(Unsupported);
            }
            write_double(out, *d);
        }
        Some(Val::BytesValue(b)) => {
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push('"');
        }
        Some(Val::ArrayValue(a)) => {
            out.push('[');
            for (i, item) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item.value.as_ref())?;
            }
            out.push(']');
        }
        Some(Val::KvlistValue(kv)) => {
            // Sorted keys; a repeated key keeps its last value (as a Go map).
            let sorted: BTreeMap<&str, Option<&Val>> = kv
                .values
                .iter()
                .map(|e| (e.key.as_str(), inner(&e.value)))
                .collect();
            out.push('{');
            for (i, (k, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(out, k);
                out.push(':');
                write_json(out, item)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_json_string(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

/// The string a `match_type: regexp` attribute value is matched against:
/// strings, bools, ints and doubles (fixed notation); `None` for other
/// types, which never match.
pub(crate) fn match_string(v: Option<&Val>) -> Option<Cow<'_, str>> {
    Some(match v? {
        Val::StringValue(s) => Cow::Borrowed(s.as_str()),
        Val::BoolValue(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Val::IntValue(i) => Cow::Owned(i.to_string()),
        Val::DoubleValue(d) => Cow::Owned(if d.is_nan() {
            "NaN".to_string()
        } else if d.is_infinite() {
            if *d > 0.0 { "+Inf" } else { "-Inf" }.to_string()
        } else {
            d.to_string()
        }),
        _ => return None,
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Replaces the value with the lowercase hex SHA-256 of its bytes, as the
/// Collector does: a string's UTF-8 bytes, a bool as one byte 1/0, an int
/// or a double (its IEEE bits) as 8 little-endian bytes. Every other value,
/// and the empty string, becomes the empty string. Writes into the existing
/// string's buffer when the value is a string.
pub(crate) fn hash_in_place(v: &mut Option<AnyValue>) {
    let digest = match inner(v) {
        Some(Val::StringValue(s)) if !s.is_empty() => Some(Sha256::digest(s.as_bytes())),
        Some(Val::BoolValue(b)) => Some(Sha256::digest([u8::from(*b)])),
        Some(Val::IntValue(i)) => Some(Sha256::digest(i.to_le_bytes())),
        Some(Val::DoubleValue(d)) => Some(Sha256::digest(d.to_bits().to_le_bytes())),
        _ => None,
    };
    let slot = v.get_or_insert_with(AnyValue::default);
    let mut s = match slot.value.take() {
        Some(Val::StringValue(mut s)) => {
            s.clear();
            s
        }
        _ => String::with_capacity(if digest.is_some() { 64 } else { 0 }),
    };
    if let Some(d) = digest {
        s.reserve(64);
        for b in d.iter() {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
    slot.value = Some(Val::StringValue(s));
}

/// Go's `strconv.ParseFloat`: out-of-range numbers are failures, not
/// infinities; `inf`/`infinity`/`nan` (any case, signed) are accepted.
pub(crate) fn parse_double(s: &str) -> Option<f64> {
    let f: f64 = s.parse().ok()?;
    if f.is_infinite() {
        let unsigned = s.trim_start_matches(['+', '-']);
        if !unsigned.to_ascii_lowercase().starts_with("inf") {
            return None;
        }
    }
    Some(f)
}
