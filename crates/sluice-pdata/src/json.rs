//! OTLP/JSON encoding as the OTLP specification defines it: lowerCamelCase
//! field names, trace and span ids as hex strings, 64-bit integers as strings,
//! enums as integers. The mapping itself comes from `opentelemetry-proto`'s
//! serde derives; this module only picks the request type by signal.

use crate::{Payload, Signal};

#[derive(Debug, thiserror::Error)]
#[error("invalid OTLP/JSON {signal} request: {source}")]
pub struct JsonError {
    pub signal: Signal,
    #[source]
    pub source: serde_json::Error,
}

/// Encodes a payload as one OTLP/JSON export request object.
///
/// Absent message fields (`"scope"`, `"status"`, ...) are left out rather
/// than written as `null`, as the OTLP/JSON encoding expects of a sender.
pub fn to_json(payload: &Payload) -> Vec<u8> {
    let value = match payload {
        Payload::Traces(r) => serde_json::to_value(r),
        Payload::Metrics(r) => serde_json::to_value(r),
        Payload::Logs(r) => serde_json::to_value(r),
    };
    // Serialising these plain data types cannot fail: no maps with non-string
    // keys, no failing Serialize impls.
    let mut value = value.unwrap_or_default();
    drop_nulls(&mut value);
    serde_json::to_vec(&value).unwrap_or_default()
}

fn drop_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Decodes an OTLP/JSON export request of `signal`.
pub fn from_json(signal: Signal, bytes: &[u8]) -> Result<Payload, JsonError> {
    let wrap = |source| JsonError { signal, source };
    Ok(match signal {
        Signal::Traces => Payload::Traces(serde_json::from_slice(bytes).map_err(wrap)?),
        Signal::Metrics => Payload::Metrics(serde_json::from_slice(bytes).map_err(wrap)?),
        Signal::Logs => Payload::Logs(serde_json::from_slice(bytes).map_err(wrap)?),
    })
}
