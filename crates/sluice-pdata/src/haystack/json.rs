//! One Haystack span in the protobuf JSON mapping.
//!
//! Written: field names as in Haystack's `.proto` (`traceId`, `startTime`,
//! `vLong`, ...), `int64` as decimal strings, the tag type by name (its
//! number when it has no name), bytes as standard padded base64, NaN and the
//! infinities as `"NaN"`, `"Infinity"`, `"-Infinity"`; fields holding their
//! default value (empty string, zero, empty list, `STRING` type) are left
//! out, and a tag's value is written whenever it is set, zero or not.
//!
//! Read: everything above, and also `int64` as JSON numbers, the tag type by
//! number, doubles as numeric strings, base64 URL-safe and/or unpadded,
//! `null` for "not set". Unknown fields are ignored, as the protobuf decoder
//! skips unknown fields. A tag with two values is an error.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use serde_json::{Map, Number, Value};

use super::{Log, Span, Tag, TagType, TagValue};

/// Why a JSON document is not a Haystack span.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("invalid Haystack span JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("invalid Haystack span JSON at {path}: {message}")]
    Field { path: String, message: String },
}

/// Encodes one span as a JSON object.
pub fn to_json(span: &Span) -> Vec<u8> {
    let mut m = Map::new();
    put_str(&mut m, "traceId", &span.trace_id);
    put_str(&mut m, "spanId", &span.span_id);
    put_str(&mut m, "parentSpanId", &span.parent_span_id);
    put_str(&mut m, "serviceName", &span.service_name);
    put_str(&mut m, "operationName", &span.operation_name);
    put_i64(&mut m, "startTime", span.start_time);
    put_i64(&mut m, "duration", span.duration);
    if !span.logs.is_empty() {
        let logs = span.logs.iter().map(log_to_value).collect();
        m.insert("logs".into(), Value::Array(logs));
    }
    put_tags(&mut m, "tags", &span.tags);
    // A Value tree of strings, numbers, arrays and string-keyed objects
    // always serialises.
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

fn log_to_value(log: &Log) -> Value {
    let mut m = Map::new();
    put_i64(&mut m, "timestamp", log.timestamp);
    put_tags(&mut m, "fields", &log.fields);
    Value::Object(m)
}

fn tag_to_value(tag: &Tag) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "key", &tag.key);
    if tag.r#type != 0 {
        let name = TagType::try_from(tag.r#type).map(TagType::as_str_name);
        let value = match name {
            Ok(name) => Value::String(name.into()),
            Err(_) => Value::Number(tag.r#type.into()),
        };
        m.insert("type".into(), value);
    }
    if let Some(value) = &tag.value {
        let (field, value) = match value {
            TagValue::VStr(s) => ("vStr", Value::String(s.clone())),
            TagValue::VLong(n) => ("vLong", Value::String(n.to_string())),
            TagValue::VDouble(d) => ("vDouble", double_to_value(*d)),
            TagValue::VBool(b) => ("vBool", Value::Bool(*b)),
            TagValue::VBytes(b) => ("vBytes", Value::String(STANDARD.encode(b))),
        };
        m.insert(field.into(), value);
    }
    Value::Object(m)
}

fn double_to_value(d: f64) -> Value {
    match Number::from_f64(d) {
        Some(n) => Value::Number(n),
        None if d.is_nan() => Value::String("NaN".into()),
        None if d > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

fn put_str(m: &mut Map<String, Value>, name: &str, s: &str) {
    if !s.is_empty() {
        m.insert(name.into(), Value::String(s.into()));
    }
}

fn put_i64(m: &mut Map<String, Value>, name: &str, n: i64) {
    if n != 0 {
        m.insert(name.into(), Value::String(n.to_string()));
    }
}

fn put_tags(m: &mut Map<String, Value>, name: &str, tags: &[Tag]) {
    if !tags.is_empty() {
        m.insert(
            name.into(),
            Value::Array(tags.iter().map(tag_to_value).collect()),
        );
    }
}

/// Decodes one span from a JSON object.
pub fn from_json(bytes: &[u8]) -> Result<Span, JsonError> {
    let value: Value = serde_json::from_slice(bytes)?;
    let m = object(&value, "$")?;
    let mut span = Span::default();
    for (name, v) in m {
        let path = name.as_str();
        match path {
            "traceId" => span.trace_id = string(v, path)?,
            "spanId" => span.span_id = string(v, path)?,
            "parentSpanId" => span.parent_span_id = string(v, path)?,
            "serviceName" => span.service_name = string(v, path)?,
            "operationName" => span.operation_name = string(v, path)?,
            "startTime" => span.start_time = int64(v, path)?,
            "duration" => span.duration = int64(v, path)?,
            "logs" => span.logs = list(v, "logs", log_from_value)?,
            "tags" => span.tags = list(v, "tags", tag_from_value)?,
            _ => {}
        }
    }
    Ok(span)
}

fn log_from_value(v: &Value, path: &str) -> Result<Log, JsonError> {
    let mut log = Log::default();
    for (name, v) in object(v, path)? {
        let path = format!("{path}.{name}");
        match name.as_str() {
            "timestamp" => log.timestamp = int64(v, &path)?,
            "fields" => log.fields = list(v, &path, tag_from_value)?,
            _ => {}
        }
    }
    Ok(log)
}

fn tag_from_value(v: &Value, path: &str) -> Result<Tag, JsonError> {
    let mut tag = Tag::default();
    for (name, v) in object(v, path)? {
        let path = format!("{path}.{name}");
        let value = match name.as_str() {
            "key" => {
                tag.key = string(v, &path)?;
                None
            }
            "type" => {
                tag.r#type = tag_type(v, &path)?;
                None
            }
            _ if v.is_null() => None,
            "vStr" => Some(TagValue::VStr(string(v, &path)?)),
            "vLong" => Some(TagValue::VLong(int64(v, &path)?)),
            "vDouble" => Some(TagValue::VDouble(double(v, &path)?)),
            "vBool" => Some(TagValue::VBool(boolean(v, &path)?)),
            "vBytes" => Some(TagValue::VBytes(bytes(v, &path)?)),
            _ => None,
        };
        if let Some(value) = value {
            if tag.value.is_some() {
                return Err(error(&path, "a tag holds one value; this is its second"));
            }
            tag.value = Some(value);
        }
    }
    Ok(tag)
}

fn error(path: &str, message: impl Into<String>) -> JsonError {
    JsonError::Field {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, JsonError> {
    v.as_object()
        .ok_or_else(|| error(path, format!("expected an object, found {}", kind(v))))
}

fn list<T>(
    v: &Value,
    path: &str,
    item: fn(&Value, &str) -> Result<T, JsonError>,
) -> Result<Vec<T>, JsonError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| item(v, &format!("{path}[{i}]")))
            .collect(),
        other => Err(error(
            path,
            format!("expected an array, found {}", kind(other)),
        )),
    }
}

fn string(v: &Value, path: &str) -> Result<String, JsonError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        other => Err(error(
            path,
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn boolean(v: &Value, path: &str) -> Result<bool, JsonError> {
    v.as_bool()
        .ok_or_else(|| error(path, format!("expected true or false, found {}", kind(v))))
}

/// An `int64`: a decimal string or a JSON number, either without a
/// fractional part and within range.
fn int64(v: &Value, path: &str) -> Result<i64, JsonError> {
    let parsed = match v {
        Value::Null => Some(0),
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(integral)),
        Value::String(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().and_then(integral)),
        _ => None,
    };
    parsed.ok_or_else(|| {
        error(
            path,
            format!("expected a 64-bit integer (string or number), found {v}"),
        )
    })
}

fn integral(f: f64) -> Option<i64> {
    // i64::MIN is -2^63 exactly; 2^63 itself is out of range.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

fn double(v: &Value, path: &str) -> Result<f64, JsonError> {
    let parsed = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            s => s.parse::<f64>().ok().filter(|f| f.is_finite()),
        },
        _ => None,
    };
    parsed.ok_or_else(|| {
        error(
            path,
            format!("expected a number, \"NaN\", \"Infinity\" or \"-Infinity\", found {v}"),
        )
    })
}

fn bytes(v: &Value, path: &str) -> Result<Vec<u8>, JsonError> {
    const CONFIG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD_ANY: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
    const URL_SAFE_ANY: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);
    let Value::String(s) = v else {
        return Err(error(
            path,
            format!("expected a base64 string, found {}", kind(v)),
        ));
    };
    STANDARD_ANY
        .decode(s)
        .or_else(|_| URL_SAFE_ANY.decode(s))
        .map_err(|e| error(path, format!("invalid base64: {e}")))
}

fn tag_type(v: &Value, path: &str) -> Result<i32, JsonError> {
    match v {
        Value::Null => Ok(0),
        Value::String(name) => TagType::from_str_name(name)
            .map(|t| t as i32)
            .ok_or_else(|| {
                error(
                    path,
                    format!(
                        "unknown tag type {name:?} (expected STRING, DOUBLE, BOOL, LONG or BINARY)"
                    ),
                )
            }),
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| error(path, format!("tag type {n} is not a 32-bit integer"))),
        other => Err(error(
            path,
            format!("expected a tag type name or number, found {}", kind(other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
