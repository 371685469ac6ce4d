//! `extra_topics`: Haystack's routing of spans to additional topics by tag
//! values.
//!
//! Every span still goes to its own topic; it is written in addition to
//! each extra topic one of whose entries matches it, and an entry matches
//! when **every** `match_tags` pair has a tag of the span with that key and
//! that value (see [`TagMatch`] for how values compare). A span is written
//! at most once to any topic: entries naming the same topic are alternatives
//! (either may match), and an extra topic that is the span's own topic adds
//! nothing.

use std::collections::BTreeMap;

use serde::Deserialize;
use sluice_core::FieldError;
use sluice_pdata::haystack::{Span, TagValue};

use crate::kafka::{check_topic, PropertyValue};

/// One entry of `extra_topics`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraTopic {
    /// The topic the matching spans are also written to (required).
    #[serde(default)]
    pub topic: String,
    /// Tag key -> value; a span matches when it has all of them (required,
    /// at least one). Values may be written as YAML strings, booleans or
    /// numbers.
    #[serde(default)]
    pub match_tags: BTreeMap<String, PropertyValue>,
}

/// Checks `extra_topics`; `traces_topic` is the traces' own topic.
pub(crate) fn validate(entries: &[ExtraTopic], traces_topic: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let path = format!("extra_topics::{i}");
        if e.topic.is_empty() {
            errors.push(FieldError::new(
                format!("{path}::topic"),
                "required: the topic matching spans are also written to",
            ));
        } else if let Err(m) = check_topic(&e.topic) {
            errors.push(FieldError::new(format!("{path}::topic"), m));
        } else if e.topic == traces_topic {
            errors.push(FieldError::new(
                format!("{path}::topic"),
                format!(
                    "{:?} is the traces topic: every span goes there already",
                    e.topic
                ),
            ));
        }
        if e.match_tags.is_empty() {
            errors.push(FieldError::new(
                format!("{path}::match_tags"),
                "must list at least one tag (`key: value`); an entry matching every span would \
                 copy the whole stream",
            ));
        }
        if e.match_tags.contains_key("") {
            errors.push(FieldError::new(
                format!("{path}::match_tags"),
                "a tag key must not be empty",
            ));
        }
    }
    errors
}

/// One `key: value` pair of `match_tags`, ready to compare.
///
/// The configured value is taken as text (`true`, `42`, `0.5` written
/// unquoted in YAML become `"true"`, `"42"`, `"0.5"`), and a tag of the span
/// with the same key matches when its value is:
///
/// - a string: equal to the text, byte for byte;
/// - a bool: `true` for the text `true`, `false` for `false` (lowercase);
/// - a long: equal to the text read as a 64-bit integer (`42`, `-7`);
/// - a double: equal to the text read as a number (`0.5`, `3`, `3.0`, `1e3`;
///   NaN never matches);
/// - bytes: never.
///
/// Any tag of that key may match (a span may repeat a key).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TagMatch {
    key: String,
    text: String,
    long: Option<i64>,
    double: Option<f64>,
    boolean: Option<bool>,
}

impl TagMatch {
    pub(crate) fn new(key: &str, value: &PropertyValue) -> TagMatch {
        let text = value.to_string();
        TagMatch {
            key: key.to_string(),
            long: text.parse().ok(),
            double: text.parse::<f64>().ok().filter(|d| !d.is_nan()),
            boolean: match text.as_str() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
            text,
        }
    }

    /// Whether one tag value matches.
    fn matches_value(&self, value: &TagValue) -> bool {
        match value {
            TagValue::VStr(s) => *s == self.text,
            TagValue::VBool(b) => self.boolean == Some(*b),
            TagValue::VLong(n) => self.long == Some(*n),
            TagValue::VDouble(d) => self.double == Some(*d),
            TagValue::VBytes(_) => false,
        }
    }

    /// Whether a tag of `span` with this key has this value.
    pub(crate) fn matches(&self, span: &Span) -> bool {
        span.tags
            .iter()
            .any(|t| t.key == self.key && t.value.as_ref().is_some_and(|v| self.matches_value(v)))
    }
}

/// The entries of one extra topic.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Route {
    pub(crate) topic: String,
    /// Alternatives: the span matches when all pairs of one of them match.
    rules: Vec<Vec<TagMatch>>,
}

impl Route {
    /// Whether `span` is to be written to this topic.
    pub(crate) fn matches(&self, span: &Span) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.iter().all(|m| m.matches(span)))
    }
}

/// The extra topics of a config, one [`Route`] per distinct topic, in the
/// order of their first entry.
pub(crate) fn routes(entries: &[ExtraTopic]) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
    for e in entries {
        let rule: Vec<TagMatch> = e
            .match_tags
            .iter()
            .map(|(k, v)| TagMatch::new(k, v))
            .collect();
        match routes.iter_mut().find(|r| r.topic == e.topic) {
            Some(r) => r.rules.push(rule),
            None => routes.push(Route {
                topic: e.topic.clone(),
                rules: vec![rule],
            }),
        }
    }
    routes
}
