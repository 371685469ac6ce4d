//! `include` / `exclude`: which items the actions apply to.
//!
//! Every property that is set must match (an AND); within a list, one entry
//! matching is enough (an OR). Properties are split by where they live, so
//! that resource properties are evaluated once per resource, scope
//! properties once per scope, and only item properties once per item.

use opentelemetry_proto::tonic::common::v1::any_value::Value as Val;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use regex::{Regex, RegexSet};

use super::values::{as_string, inner, match_string};

/// Strings to compare with: equal to one (`strict`), or one pattern
/// matching somewhere in the string (`regexp`).
#[derive(Debug, Clone)]
pub(crate) enum StrSet {
    Strict(Vec<String>),
    Regexp(RegexSet),
}

impl StrSet {
    pub(crate) fn matches(&self, s: &str) -> bool {
        match self {
            StrSet::Strict(items) => items.iter().any(|i| i == s),
            StrSet::Regexp(set) => set.is_match(s),
        }
    }
}

/// What an attribute's value must satisfy.
#[derive(Debug, Clone)]
pub(crate) enum ValueTest {
    /// Only that the key exists.
    Exists,
    /// Same type and value (`strict`).
    Equals(AnyValue),
    /// The value's string form (strings, bools, ints, doubles) matches.
    Regexp(Regex),
}

#[derive(Debug, Clone)]
pub(crate) struct AttributeMatcher {
    pub key: String,
    pub test: ValueTest,
}

impl AttributeMatcher {
    fn matches(&self, attrs: &[KeyValue]) -> bool {
        let Some(kv) = attrs.iter().find(|kv| kv.key == self.key) else {
            return false;
        };
        match &self.test {
            ValueTest::Exists => true,
            ValueTest::Equals(want) => equal(inner(&kv.value), want.value.as_ref()),
            ValueTest::Regexp(re) => {
                match_string(inner(&kv.value)).is_some_and(|s| re.is_match(&s))
            }
        }
    }
}

/// Strict equality: same type, same value (doubles by `==`).
fn equal(have: Option<&Val>, want: Option<&Val>) -> bool {
    match (have, want) {
        (Some(Val::StringValue(a)), Some(Val::StringValue(b))) => a == b,
        (Some(Val::BoolValue(a)), Some(Val::BoolValue(b))) => a == b,
        (Some(Val::IntValue(a)), Some(Val::IntValue(b))) => a == b,
        (Some(Val::DoubleValue(a)), Some(Val::DoubleValue(b))) => a == b,
        (Some(a), Some(b)) => a == b,
        (None, None) => true,
        _ => false,
    }
}

fn all_match(matchers: &[AttributeMatcher], attrs: &[KeyValue]) -> bool {
    matchers.iter().all(|m| m.matches(attrs))
}

#[derive(Debug, Clone)]
pub(crate) struct LibraryMatcher {
    pub name: StrSet,
    /// Unset: any version.
    pub version: Option<StrSet>,
}

/// One compiled `include` or `exclude`.
#[derive(Debug, Clone, Default)]
pub(crate) struct MatchProperties {
    pub services: Option<StrSet>,
    pub span_names: Option<StrSet>,
    pub span_kinds: Option<StrSet>,
    pub log_bodies: Option<StrSet>,
    pub log_severity_texts: Option<StrSet>,
    pub metric_names: Option<StrSet>,
    pub attributes: Vec<AttributeMatcher>,
    pub resources: Vec<AttributeMatcher>,
    pub libraries: Vec<LibraryMatcher>,
}

/// The service name the Collector matches `services` against.
const NO_SERVICE: &str = "<nil-service-name>";

fn opt(s: &Option<StrSet>, value: &str) -> bool {
    s.as_ref().is_none_or(|set| set.matches(value))
}

pub(crate) fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        0 => "SPAN_KIND_UNSPECIFIED",
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "",
    }
}

impl MatchProperties {
    /// The resource-level properties: `services` and `resources`.
    pub(crate) fn resource(&self, resource: Option<&Resource>) -> bool {
        let attrs: &[KeyValue] = resource.map_or(&[], |r| &r.attributes);
        if let Some(services) = &self.services {
            let name = attrs
                .iter()
                .find(|kv| kv.key == "service.name")
                .map_or(std::borrow::Cow::Borrowed(NO_SERVICE), |kv| {
                    as_string(inner(&kv.value))
                });
            if !services.matches(&name) {
                return false;
            }
        }
        all_match(&self.resources, attrs)
    }

    /// The scope-level property: `libraries` (every entry must match).
    pub(crate) fn scope(&self, scope: Option<&InstrumentationScope>) -> bool {
        let (name, version) = scope.map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
        self.libraries
            .iter()
            .all(|l| l.name.matches(name) && l.version.as_ref().is_none_or(|v| v.matches(version)))
    }

    pub(crate) fn span(&self, span: &Span) -> bool {
        opt(&self.span_names, &span.name)
            && opt(&self.span_kinds, span_kind_name(span.kind))
            && all_match(&self.attributes, &span.attributes)
    }

    pub(crate) fn log(&self, log: &LogRecord) -> bool {
        if let Some(bodies) = &self.log_bodies {
            let body = log.body.as_ref().and_then(|b| b.value.as_ref());
            let body = match body {
                Some(Val::StringValueStrindex(_)) => None,
                other => other,
            };
            if !bodies.matches(&as_string(body)) {
                return false;
            }
        }
        opt(&self.log_severity_texts, &log.severity_text)
            && all_match(&self.attributes, &log.attributes)
    }

    pub(crate) fn metric(&self, metric: &Metric) -> bool {
        opt(&self.metric_names, &metric.name)
    }

    /// Keys every matching item has (in its own or its resource's
    /// attributes): a request in which one of them appears nowhere holds
    /// no matching item.
    pub(crate) fn required_keys(&self) -> impl Iterator<Item = &str> {
        self.attributes
            .iter()
            .chain(&self.resources)
            .map(|m| m.key.as_str())
    }
}

/// `include` and `exclude` together, evaluated level by level.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub include: Option<MatchProperties>,
    pub exclude: Option<MatchProperties>,
}

/// The state of include/exclude after the resource and scope levels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Level {
    /// `None`: no include (everything is included). `Some(false)`: nothing
    /// below can be included.
    include: Option<bool>,
    /// `None`: no exclude, or it cannot match anything below.
    exclude: Option<bool>,
}

impl Level {
    /// Nothing below this level is processed.
    pub(crate) fn none(&self) -> bool {
        self.include == Some(false)
    }
}

impl Filter {
    pub(crate) fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    pub(crate) fn resource(&self, resource: Option<&Resource>) -> Level {
        Level {
            include: self.include.as_ref().map(|m| m.resource(resource)),
            exclude: self
                .exclude
                .as_ref()
                .map(|m| m.resource(resource))
                .filter(|&b| b),
        }
    }

    pub(crate) fn scope(&self, level: Level, scope: Option<&InstrumentationScope>) -> Level {
        Level {
            include: level
                .include
                .map(|ok| ok && self.include.as_ref().is_some_and(|m| m.scope(scope))),
            exclude: level
                .exclude
                .filter(|_| self.exclude.as_ref().is_some_and(|m| m.scope(scope))),
        }
    }

    /// Whether an item is processed, given its level and its own test.
    pub(crate) fn item(&self, level: Level, test: impl Fn(&MatchProperties) -> bool) -> bool {
        let included = match level.include {
            None => true,
            Some(false) => false,
            Some(true) => self.include.as_ref().is_some_and(&test),
        };
        if !included {
            return false;
        }
        let excluded = level.exclude.is_some() && self.exclude.as_ref().is_some_and(&test);
        !excluded
    }
}
