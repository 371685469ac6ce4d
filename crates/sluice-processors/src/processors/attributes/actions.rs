//! The compiled actions and how they change one attribute list.

use opentelemetry_proto::tonic::common::v1::any_value::Value as Val;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use regex::{CaptureLocations, Regex};

use super::values::{as_string, hash_in_place, inner, parse_double};

/// Where insert/update/upsert take their value from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A configured value.
    Value(AnyValue),
    /// Another attribute of the same item; `default` when it is missing
    /// (without a default, the action does nothing then).
    Attribute {
        key: String,
        default: Option<AnyValue>,
    },
}

/// The target type of `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conversion {
    String,
    Int,
    Double,
}

/// One compiled action.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Insert {
        key: String,
        source: Source,
    },
    Update {
        key: String,
        source: Source,
    },
    Upsert {
        key: String,
        source: Source,
    },
    Delete {
        key: Option<String>,
        pattern: Option<Regex>,
    },
    Hash {
        key: Option<String>,
        pattern: Option<Regex>,
    },
    Extract {
        key: String,
        regex: Regex,
        /// The group names, group 1 first.
        names: Vec<String>,
    },
    Convert {
        key: String,
        to: Conversion,
    },
}

impl Action {
    /// A key without which this action can change nothing, if there is one:
    /// when no attribute anywhere has this key, the action is a no-op.
    pub(crate) fn gate(&self) -> Option<&str> {
        match self {
            Action::Insert { source, .. } | Action::Upsert { source, .. } => match source {
                Source::Attribute { key, default: None } => Some(key),
                _ => None,
            },
            Action::Update { key, .. }
            | Action::Extract { key, .. }
            | Action::Convert { key, .. } => Some(key),
            Action::Delete { key, pattern } | Action::Hash { key, pattern } => match pattern {
                Some(_) => None,
                None => key.as_deref(),
            },
        }
    }
}

/// Per-batch working memory, so that no item allocates it again.
pub(crate) struct Scratch {
    /// Capture slots of each `extract` action, by action index.
    locations: Vec<Option<CaptureLocations>>,
    /// Values `convert` could not convert (left as they were).
    pub convert_failed: u64,
}

impl Scratch {
    pub(crate) fn new(actions: &[Action]) -> Scratch {
        Scratch {
            locations: actions
                .iter()
                .map(|a| match a {
                    Action::Extract { regex, .. } => Some(regex.capture_locations()),
                    _ => None,
                })
                .collect(),
            convert_failed: 0,
        }
    }
}

fn find(attrs: &[KeyValue], key: &str) -> Option<usize> {
    attrs.iter().position(|kv| kv.key == key)
}

/// Sets `slot` to `src`, reusing the slot's string buffer when both are
/// strings.
fn assign(slot: &mut Option<AnyValue>, src: &AnyValue) {
    if let (
        Some(AnyValue {
            value: Some(Val::StringValue(dst)),
        }),
        Some(Val::StringValue(s)),
    ) = (slot.as_mut(), src.value.as_ref())
    {
        dst.clear();
        dst.push_str(s);
        return;
    }
    *slot = Some(src.clone());
}

fn push(attrs: &mut Vec<KeyValue>, key: &str, value: Option<AnyValue>) {
    attrs.push(KeyValue {
        key: key.to_string(),
        value,
        ..Default::default()
    });
}

/// Sets `key` to the string `s` (inserting it when missing).
fn put_str(attrs: &mut Vec<KeyValue>, key: &str, s: String) {
    let value = Some(AnyValue {
        value: Some(Val::StringValue(s)),
    });
    match find(attrs, key) {
        Some(i) => attrs[i].value = value,
        None => push(attrs, key, value),
    }
}

/// What insert/update/upsert should write.
enum Resolved<'a> {
    Configured(&'a AnyValue),
    Copied(Option<AnyValue>),
}

fn resolve<'a>(source: &'a Source, attrs: &[KeyValue]) -> Option<Resolved<'a>> {
    match source {
        Source::Value(v) => Some(Resolved::Configured(v)),
        Source::Attribute { key, default } => match find(attrs, key) {
            Some(i) => Some(Resolved::Copied(attrs[i].value.clone())),
            None => default.as_ref().map(Resolved::Configured),
        },
    }
}

fn write(slot: &mut Option<AnyValue>, value: Resolved<'_>) {
    match value {
        Resolved::Configured(v) => assign(slot, v),
        Resolved::Copied(v) => *slot = v,
    }
}

fn into_value(value: Resolved<'_>) -> Option<AnyValue> {
    match value {
        Resolved::Configured(v) => Some(v.clone()),
        Resolved::Copied(v) => v,
    }
}

/// Applies every action, in order, to one item's attributes.
pub(crate) fn apply(actions: &[Action], attrs: &mut Vec<KeyValue>, scratch: &mut Scratch) {
    for (index, action) in actions.iter().enumerate() {
        match action {
            Action::Insert { key, source } => {
                if find(attrs, key).is_some() {
                    continue;
                }
                if let Some(v) = resolve(source, attrs) {
                    push(attrs, key, into_value(v));
                }
            }
            Action::Update { key, source } => {
                let Some(i) = find(attrs, key) else { continue };
                if let Some(v) = resolve(source, attrs) {
                    write(&mut attrs[i].value, v);
                }
            }
            Action::Upsert { key, source } => {
                let Some(v) = resolve(source, attrs) else {
                    continue;
                };
                match find(attrs, key) {
                    Some(i) => write(&mut attrs[i].value, v),
                    None => push(attrs, key, into_value(v)),
                }
            }
            Action::Delete { key, pattern } => {
                attrs.retain(|kv| {
                    key.as_deref() != Some(kv.key.as_str())
                        && !pattern.as_ref().is_some_and(|p| p.is_match(&kv.key))
                });
            }
            Action::Hash { key, pattern } => {
                for kv in attrs.iter_mut() {
                    if key.as_deref() == Some(kv.key.as_str())
                        || pattern.as_ref().is_some_and(|p| p.is_match(&kv.key))
                    {
                        hash_in_place(&mut kv.value);
                    }
                }
            }
            Action::Extract { key, regex, names } => {
                let Some(locations) = scratch.locations.get_mut(index).and_then(Option::as_mut)
                else {
                    continue;
                };
                extract(attrs, key, regex, names, locations);
            }
            Action::Convert { key, to } => {
                if let Some(i) = find(attrs, key) {
                    if !convert(&mut attrs[i].value, *to) {
                        scratch.convert_failed += 1;
                        tracing::debug!(
                            key = %key,
                            to = ?to,
                            "attribute value cannot be converted; left as it is"
                        );
                    }
                }
            }
        }
    }
}

/// Sets one string attribute per named group of `regex` matched against
/// the string value of `key` (a group that did not take part gives "").
/// Non-string values and values that do not match are left alone.
fn extract(
    attrs: &mut Vec<KeyValue>,
    key: &str,
    regex: &Regex,
    names: &[String],
    locations: &mut CaptureLocations,
) {
    let Some(i) = find(attrs, key) else { return };
    let Some(AnyValue {
        value: Some(Val::StringValue(slot)),
    }) = attrs[i].value.as_mut()
    else {
        return;
    };
    if regex.captures_read(locations, slot).is_none() {
        return;
    }
    // Take the source string out (no copy) while the groups are written.
    let source = std::mem::take(slot);
    let mut source_overwritten = false;
    for (g, name) in names.iter().enumerate() {
        let part = locations
            .get(g + 1)
            .map_or_else(String::new, |(a, b)| source[a..b].to_string());
        if name == key {
            source_overwritten = true;
        }
        put_str(attrs, name, part);
    }
    if !source_overwritten {
        if let Some(AnyValue {
            value: Some(Val::StringValue(slot)),
        }) = attrs[i].value.as_mut()
        {
            *slot = source;
        }
    }
}

/// Converts in place; false when the value cannot be converted (it is left
/// as it was). A missing value (the key exists, the value is empty) cannot
/// be converted to a number; to a string it becomes "".
fn convert(slot: &mut Option<AnyValue>, to: Conversion) -> bool {
    let current = inner(slot);
    let new = match (to, current) {
        (Conversion::String, Some(Val::StringValue(_))) => return true,
        (Conversion::String, v) => Val::StringValue(as_string(v).into_owned()),
        (Conversion::Int, Some(Val::IntValue(_))) => return true,
        // Truncates toward zero; out-of-range values saturate, NaN gives 0.
        (Conversion::Int, Some(Val::DoubleValue(d))) => Val::IntValue(*d as i64),
        (Conversion::Int, Some(Val::BoolValue(b))) => Val::IntValue(i64::from(*b)),
        (Conversion::Int, Some(Val::StringValue(s))) => match s.parse::<i64>() {
            Ok(n) => Val::IntValue(n),
            Err(_) => return false,
        },
        (Conversion::Double, Some(Val::DoubleValue(_))) => return true,
        (Conversion::Double, Some(Val::IntValue(i))) => Val::DoubleValue(*i as f64),
        (Conversion::Double, Some(Val::BoolValue(b))) => {
            Val::DoubleValue(if *b { 1.0 } else { 0.0 })
        }
        (Conversion::Double, Some(Val::StringValue(s))) => match parse_double(s) {
            Some(f) => Val::DoubleValue(f),
            None => return false,
        },
        (Conversion::Int | Conversion::Double, _) => return false,
    };
    *slot = Some(AnyValue { value: Some(new) });
    true
}
