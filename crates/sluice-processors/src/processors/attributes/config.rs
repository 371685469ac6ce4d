//! Configuration of the `attributes` processor, its validation and its
//! compilation into [`Action`]s and [`MatchProperties`] (regexes compiled,
//! values typed) — done once, when the configuration is read.

use opentelemetry_proto::tonic::common::v1::any_value::Value as Val;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use regex::{Regex, RegexSet};
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value as Yaml;
use sluice_core::{ComponentConfig, FieldError};
use sluice_pdata::Signal;

use super::actions::{Action, Conversion, Source};
use super::matcher::{AttributeMatcher, LibraryMatcher, MatchProperties, StrSet, ValueTest};

/// Configuration of the `attributes` processor.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// The actions, applied in order to every item's attributes. Required
    /// (at least one).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub actions: Vec<ActionConfig>,
    /// Only items matching these properties are processed (default: all).
    #[serde(default)]
    pub include: Option<MatchConfig>,
    /// Items matching these properties are not processed (default: none).
    /// Checked after `include`.
    #[serde(default)]
    pub exclude: Option<MatchConfig>,
}

/// One entry of `actions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The attribute acted upon. Required, except for `delete` and `hash`
    /// with a `pattern`.
    #[serde(default)]
    pub key: String,
    /// `insert`, `update`, `upsert`, `delete`, `hash`, `extract` or
    /// `convert` (any letter case). Required.
    #[serde(default)]
    pub action: String,
    /// The value for `insert`/`update`/`upsert`; its type comes from the
    /// YAML (string, int, double, bool, list, map).
    #[serde(default)]
    pub value: Option<Yaml>,
    /// For `insert`/`update`/`upsert`: the attribute whose value is copied.
    #[serde(default)]
    pub from_attribute: String,
    /// Not supported (sluice does not hand request metadata to processors).
    #[serde(default)]
    pub from_context: String,
    /// For `insert`/`update`/`upsert`: used when `from_attribute` names an
    /// attribute the item does not have (or alone, as a value).
    #[serde(default)]
    pub default_value: Option<Yaml>,
    /// A regular expression: attribute keys for `delete`/`hash`; the value
    /// of `key`, with named groups, for `extract`.
    #[serde(default)]
    pub pattern: String,
    /// For `convert`: `string`, `int` or `double`.
    #[serde(default)]
    pub converted_type: String,
}

/// `include` / `exclude`: properties an item must all have to match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `strict` (equality) or `regexp` (the pattern matches anywhere in the
    /// string, as Go's `MatchString`; anchor with `^...$`). Required.
    #[serde(default)]
    pub match_type: String,
    /// The Collector's regexp match cache; not supported.
    #[serde(default)]
    pub regexp: Option<Yaml>,
    /// Traces: the resource's `service.name` matches one of these.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub services: Vec<String>,
    /// Traces: the span name matches one of these.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub span_names: Vec<String>,
    /// Traces: the span kind (`SPAN_KIND_SERVER`, ...) matches one of these.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub span_kinds: Vec<String>,
    /// Logs: the body (as a string) matches one of these.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub log_bodies: Vec<String>,
    /// Logs: the severity text matches one of these.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub log_severity_texts: Vec<String>,
    /// Not supported.
    #[serde(default)]
    pub log_severity_number: Option<Yaml>,
    /// Metrics: the metric name matches one of these.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub metric_names: Vec<String>,
    /// Traces and logs: the item has every one of these attributes.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub attributes: Vec<AttributeConfig>,
    /// The resource has every one of these attributes.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub resources: Vec<AttributeConfig>,
    /// Traces and logs: the instrumentation scope matches every entry.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub libraries: Vec<LibraryConfig>,
}

/// An attribute to match: the key must exist; with `value`, the value must
/// equal it (`strict`) or match it as a regular expression (`regexp`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: Option<Yaml>,
}

/// An instrumentation scope to match: `name`, and `version` when set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryConfig {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

/// `field:` with no value reads as an empty list, as in the Collector.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// The configuration, compiled.
pub(crate) struct Compiled {
    pub actions: Vec<Action>,
    pub include: Option<MatchProperties>,
    pub exclude: Option<MatchProperties>,
}

const ACTIONS: &str = "insert, update, upsert, delete, hash, extract or convert";

impl ComponentConfig for AttributesConfig {
    fn validate(&self) -> Vec<FieldError> {
        self.compile().err().unwrap_or_default()
    }

    fn validate_for_signal(&self, signal: Signal) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (name, m) in [("include", &self.include), ("exclude", &self.exclude)] {
            if let Some(m) = m {
                m.check_signal(name, signal, &mut errors);
            }
        }
        errors
    }
}

impl AttributesConfig {
    /// Checks everything and compiles; every problem is reported with its
    /// path (`actions[2]::pattern`).
    pub(crate) fn compile(&self) -> Result<Compiled, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.actions.is_empty() {
            errors.push(FieldError::new(
                "actions",
                "at least one action is required (the processor would do nothing)",
            ));
        }
        let mut actions = Vec::with_capacity(self.actions.len());
        for (i, a) in self.actions.iter().enumerate() {
            let path = format!("actions[{i}]");
            if let Some(action) = a.compile(&path, &mut errors) {
                actions.push(action);
            }
        }
        let include = self
            .include
            .as_ref()
            .and_then(|m| m.compile("include", &mut errors));
        let exclude = self
            .exclude
            .as_ref()
            .and_then(|m| m.compile("exclude", &mut errors));
        if errors.is_empty() {
            Ok(Compiled {
                actions,
                include,
                exclude,
            })
        } else {
            Err(errors)
        }
    }
}

fn field(path: &str, name: &str) -> String {
    format!("{path}::{name}")
}

/// Compiles a regular expression, reporting a failure at `path`.
fn regex_at(pattern: &str, path: &str, errors: &mut Vec<FieldError>) -> Option<Regex> {
    match Regex::new(pattern) {
        Ok(r) => Some(r),
        Err(e) => {
            errors.push(FieldError::new(
                path,
                format!("invalid regular expression {pattern:?}: {e}"),
            ));
            None
        }
    }
}

impl ActionConfig {
    fn compile(&self, path: &str, errors: &mut Vec<FieldError>) -> Option<Action> {
        let before = errors.len();
        let kind = self.action.to_ascii_lowercase();
        let err = |errors: &mut Vec<FieldError>, name: &str, msg: String| {
            errors.push(FieldError::new(field(path, name), msg))
        };
        if !self.from_context.is_empty() {
            err(
                errors,
                "from_context",
                "is not supported: sluice does not pass request metadata (headers, auth) to \
                 processors; use value or from_attribute"
                    .into(),
            );
        }
        // Fields an action does not use are refused, naming the action.
        let unused = |errors: &mut Vec<FieldError>, names: &[&str]| {
            for name in names {
                let set = match *name {
                    "value" => self.value.is_some(),
                    "from_attribute" => !self.from_attribute.is_empty(),
                    "default_value" => self.default_value.is_some(),
                    "pattern" => !self.pattern.is_empty(),
                    "converted_type" => !self.converted_type.is_empty(),
                    _ => false,
                };
                if set {
                    err(
                        errors,
                        name,
                        format!("is not used by action {kind}; remove it"),
                    );
                }
            }
        };
        let key_required = |errors: &mut Vec<FieldError>| {
            if self.key.is_empty() {
                err(errors, "key", format!("is required for action {kind}"));
            }
        };
        let action = match kind.as_str() {
            "insert" | "update" | "upsert" => {
                key_required(errors);
                unused(errors, &["pattern", "converted_type"]);
                let source = self.source(path, &kind, errors);
                let key = self.key.clone();
                source.map(|source| match kind.as_str() {
                    "insert" => Action::Insert { key, source },
                    "update" => Action::Update { key, source },
                    _ => Action::Upsert { key, source },
                })
            }
            "delete" | "hash" => {
                unused(
                    errors,
                    &["value", "from_attribute", "default_value", "converted_type"],
                );
                if self.key.is_empty() && self.pattern.is_empty() {
                    err(
                        errors,
                        "key",
                        format!("action {kind} needs key, pattern or both"),
                    );
                }
                let pattern = if self.pattern.is_empty() {
                    None
                } else {
                    regex_at(&self.pattern, &field(path, "pattern"), errors)
                };
                let key = (!self.key.is_empty()).then(|| self.key.clone());
                Some(if kind == "delete" {
                    Action::Delete { key, pattern }
                } else {
                    Action::Hash { key, pattern }
                })
            }
            "extract" => {
                key_required(errors);
                unused(
                    errors,
                    &["value", "from_attribute", "default_value", "converted_type"],
                );
                let ppath = field(path, "pattern");
                if self.pattern.is_empty() {
                    errors.push(FieldError::new(
                        &ppath,
                        "is required for action extract (a regular expression with named groups)",
                    ));
                    None
                } else {
                    regex_at(&self.pattern, &ppath, errors).and_then(|regex| {
                        let names: Vec<Option<&str>> = regex.capture_names().skip(1).collect();
                        if names.is_empty() {
                            errors.push(FieldError::new(
                                &ppath,
                                "has no named groups such as (?P<name>...): nothing to extract",
                            ));
                            return None;
                        }
                        if names.iter().any(Option::is_none) {
                            errors.push(FieldError::new(
                                &ppath,
                                "has an unnamed group; every group must be named (use (?:...) \
                                 for grouping only)",
                            ));
                            return None;
                        }
                        let names = names.into_iter().flatten().map(str::to_string).collect();
                        Some(Action::Extract {
                            key: self.key.clone(),
                            regex,
                            names,
                        })
                    })
                }
            }
            "convert" => {
                key_required(errors);
                unused(
                    errors,
                    &["value", "from_attribute", "default_value", "pattern"],
                );
                let to = match self.converted_type.as_str() {
                    "string" => Some(Conversion::String),
                    "int" => Some(Conversion::Int),
                    "double" => Some(Conversion::Double),
                    "" => {
                        err(
                            errors,
                            "converted_type",
                            "is required for action convert (string, int or double)".into(),
                        );
                        None
                    }
                    other => {
                        err(
                            errors,
                            "converted_type",
                            format!("unknown type {other:?} (expected string, int or double)"),
                        );
                        None
                    }
                };
                to.map(|to| Action::Convert {
                    key: self.key.clone(),
                    to,
                })
            }
            "" => {
                err(errors, "action", format!("is required (one of {ACTIONS})"));
                None
            }
            other => {
                err(
                    errors,
                    "action",
                    format!("unknown action {other:?} (expected {ACTIONS})"),
                );
                None
            }
        };
        if errors.len() > before {
            return None;
        }
        action
    }

    /// The value source of insert/update/upsert.
    fn source(&self, path: &str, kind: &str, errors: &mut Vec<FieldError>) -> Option<Source> {
        let value = self
            .value
            .as_ref()
            .and_then(|v| any_value_at(v, &field(path, "value"), errors));
        let default = self
            .default_value
            .as_ref()
            .and_then(|v| any_value_at(v, &field(path, "default_value"), errors));
        let has_attr = !self.from_attribute.is_empty();
        match (self.value.is_some(), has_attr, self.default_value.is_some()) {
            (true, true, _) => {
                errors.push(FieldError::new(
                    path,
                    format!(
                        "action {kind} takes one value source: value or from_attribute, not both"
                    ),
                ));
                None
            }
            (true, false, true) => {
                errors.push(FieldError::new(
                    field(path, "default_value"),
                    "has no effect together with value (value always applies); remove one",
                ));
                None
            }
            (true, false, false) => value.map(Source::Value),
            (false, true, _) => Some(Source::Attribute {
                key: self.from_attribute.clone(),
                default,
            }),
            (false, false, true) => default.map(Source::Value),
            (false, false, false) => {
                if self.from_context.is_empty() {
                    errors.push(FieldError::new(
                        path,
                        format!(
                            "action {kind} needs a value source: value, from_attribute or \
                             default_value"
                        ),
                    ));
                }
                None
            }
        }
    }
}

/// A configured YAML value as an attribute value, typed as the Collector
/// types it: int, double, bool, string, list, map; `null` inside a list or
/// map is an empty value.
pub(crate) fn any_value(y: &Yaml) -> Result<AnyValue, String> {
    let value = match y {
        Yaml::Null => None,
        Yaml::Bool(b) => Some(Val::BoolValue(*b)),
        Yaml::Number(n) => Some(if let Some(i) = n.as_i64() {
            Val::IntValue(i)
        } else if n.is_u64() {
            return Err(format!("integer {n} is out of range (64-bit signed)"));
        } else {
            Val::DoubleValue(n.as_f64().unwrap_or(f64::NAN))
        }),
        Yaml::String(s) => Some(Val::StringValue(s.clone())),
        Yaml::Sequence(items) => Some(Val::ArrayValue(ArrayValue {
            values: items.iter().map(any_value).collect::<Result<_, _>>()?,
        })),
        Yaml::Mapping(m) => {
            let mut values = Vec::with_capacity(m.len());
            for (k, v) in m {
                let Yaml::String(key) = k else {
                    return Err(format!("map keys must be strings, found {k:?}"));
                };
                values.push(KeyValue {
                    key: key.clone(),
                    value: Some(any_value(v)?),
                    ..Default::default()
                });
            }
            Some(Val::KvlistValue(KeyValueList { values }))
        }
        Yaml::Tagged(t) => return Err(format!("tagged YAML values ({}) are not supported", t.tag)),
    };
    Ok(AnyValue { value })
}

fn any_value_at(y: &Yaml, path: &str, errors: &mut Vec<FieldError>) -> Option<AnyValue> {
    match any_value(y) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(FieldError::new(path, e));
            None
        }
    }
}

/// The span kinds a strict `span_kinds` entry may name.
const SPAN_KINDS: [&str; 5] = [
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_CONSUMER",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_SERVER",
];

impl MatchConfig {
    /// The string lists, by field name.
    fn lists(&self) -> [(&'static str, &Vec<String>); 6] {
        [
            ("services", &self.services),
            ("span_names", &self.span_names),
            ("span_kinds", &self.span_kinds),
            ("log_bodies", &self.log_bodies),
            ("log_severity_texts", &self.log_severity_texts),
            ("metric_names", &self.metric_names),
        ]
    }

    /// The properties that are set, by field name.
    fn set_fields(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self
            .lists()
            .into_iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(n, _)| n)
            .collect();
        if !self.attributes.is_empty() {
            out.push("attributes");
        }
        if !self.resources.is_empty() {
            out.push("resources");
        }
        if !self.libraries.is_empty() {
            out.push("libraries");
        }
        out
    }

    fn compile(&self, path: &str, errors: &mut Vec<FieldError>) -> Option<MatchProperties> {
        let before = errors.len();
        let regexp = match self.match_type.as_str() {
            "strict" => false,
            "regexp" => true,
            "" => {
                errors.push(FieldError::new(
                    field(path, "match_type"),
                    "is required (strict or regexp)",
                ));
                return None;
            }
            "expr" => {
                errors.push(FieldError::new(
                    field(path, "match_type"),
                    "expr is not supported (use strict or regexp)",
                ));
                return None;
            }
            other => {
                errors.push(FieldError::new(
                    field(path, "match_type"),
                    format!("unknown match type {other:?} (expected strict or regexp)"),
                ));
                return None;
            }
        };
        if self.regexp.is_some() {
            errors.push(FieldError::new(
                field(path, "regexp"),
                "is not supported (sluice keeps no regexp match cache); remove it",
            ));
        }
        if self.log_severity_number.is_some() {
            errors.push(FieldError::new(
                field(path, "log_severity_number"),
                "is not supported; match log_severity_texts or attributes instead",
            ));
        }
        if self.set_fields().is_empty() {
            errors.push(FieldError::new(
                path,
                "sets no property to match: set services, span_names, span_kinds, attributes, \
                 resources or libraries (traces); log_bodies, log_severity_texts, attributes, \
                 resources or libraries (logs); metric_names or resources (metrics)",
            ));
        }
        let set = |name: &str, items: &[String], errors: &mut Vec<FieldError>| -> Option<StrSet> {
            if items.is_empty() {
                return None;
            }
            str_set(items, regexp, &field(path, name), true, errors)
        };
        if !regexp {
            for (i, k) in self.span_kinds.iter().enumerate() {
                if !SPAN_KINDS.contains(&k.as_str()) {
                    errors.push(FieldError::new(
                        format!("{path}::span_kinds[{i}]"),
                        format!(
                            "unknown span kind {k:?} (expected one of {})",
                            SPAN_KINDS.join(", ")
                        ),
                    ));
                }
            }
        }
        let props = MatchProperties {
            services: set("services", &self.services, errors),
            span_names: set("span_names", &self.span_names, errors),
            span_kinds: set("span_kinds", &self.span_kinds, errors),
            log_bodies: set("log_bodies", &self.log_bodies, errors),
            log_severity_texts: set("log_severity_texts", &self.log_severity_texts, errors),
            metric_names: set("metric_names", &self.metric_names, errors),
            attributes: attribute_matchers(
                &self.attributes,
                regexp,
                &field(path, "attributes"),
                errors,
            ),
            resources: attribute_matchers(
                &self.resources,
                regexp,
                &field(path, "resources"),
                errors,
            ),
            libraries: self
                .libraries
                .iter()
                .enumerate()
                .filter_map(|(i, l)| {
                    let lpath = format!("{path}::libraries[{i}]");
                    let name = str_set(
                        std::slice::from_ref(&l.name),
                        regexp,
                        &field(&lpath, "name"),
                        false,
                        errors,
                    )?;
                    let version = match &l.version {
                        None => None,
                        Some(v) => Some(str_set(
                            std::slice::from_ref(v),
                            regexp,
                            &field(&lpath, "version"),
                            false,
                            errors,
                        )?),
                    };
                    Some(LibraryMatcher { name, version })
                })
                .collect(),
        };
        (errors.len() == before).then_some(props)
    }

    /// Refuses properties that have no meaning for `signal`, and a match
    /// that sets none that has.
    fn check_signal(&self, path: &str, signal: Signal, errors: &mut Vec<FieldError>) {
        let applies: &[&str] = match signal {
            Signal::Traces => &[
                "services",
                "span_names",
                "span_kinds",
                "attributes",
                "resources",
                "libraries",
            ],
            Signal::Logs => &[
                "log_bodies",
                "log_severity_texts",
                "attributes",
                "resources",
                "libraries",
            ],
            Signal::Metrics => &["metric_names", "resources"],
        };
        let set = self.set_fields();
        for name in &set {
            if !applies.contains(name) {
                errors.push(FieldError::new(
                    field(path, name),
                    format!(
                        "does not apply to {signal} (for {signal} use: {})",
                        applies.join(", ")
                    ),
                ));
            }
        }
    }
}

/// A list of strings or patterns; `path` names the list (`indexed`: its
/// entries are reported as `path[i]`) or the single field holding it.
fn str_set(
    items: &[String],
    regexp: bool,
    path: &str,
    indexed: bool,
    errors: &mut Vec<FieldError>,
) -> Option<StrSet> {
    if !regexp {
        return Some(StrSet::Strict(items.to_vec()));
    }
    match RegexSet::new(items) {
        Ok(s) => Some(StrSet::Regexp(s)),
        Err(_) => {
            // Name the entry that does not compile.
            for (i, p) in items.iter().enumerate() {
                let at = if indexed {
                    format!("{path}[{i}]")
                } else {
                    path.to_string()
                };
                regex_at(p, &at, errors);
            }
            None
        }
    }
}

fn attribute_matchers(
    items: &[AttributeConfig],
    regexp: bool,
    path: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<AttributeMatcher> {
    let mut out = Vec::with_capacity(items.len());
    for (i, a) in items.iter().enumerate() {
        let apath = format!("{path}[{i}]");
        if a.key.is_empty() {
            errors.push(FieldError::new(field(&apath, "key"), "is required"));
            continue;
        }
        let test = match &a.value {
            None => ValueTest::Exists,
            Some(v) if regexp => match v {
                Yaml::String(p) => match regex_at(p, &field(&apath, "value"), errors) {
                    Some(r) => ValueTest::Regexp(r),
                    None => continue,
                },
                _ => {
                    errors.push(FieldError::new(
                        field(&apath, "value"),
                        "with match_type regexp the value must be a string (a regular expression)",
                    ));
                    continue;
                }
            },
            Some(v) => match any_value_at(v, &field(&apath, "value"), errors) {
                Some(av) => ValueTest::Equals(av),
                None => continue,
            },
        };
        out.push(AttributeMatcher {
            key: a.key.clone(),
            test,
        });
    }
    out
}
