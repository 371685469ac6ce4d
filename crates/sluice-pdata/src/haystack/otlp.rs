//! Translation between Haystack spans and OTLP traces.
//!
//! The mapping table and the reasons behind it are in
//! `docs/design/haystack.md`. Two mechanisms make it lossless:
//!
//! **Haystack tags that stand for OTLP fields** (`span.kind`, `error`,
//! `otel.status_code`, ... — a *tag group* each). Haystack → OTLP reads the
//! field from the tags (first matching tag wins). The tags themselves are
//! dropped only when they are exactly the tags OTLP → Haystack would write
//! for that field, at the front of the tag list in the fixed group order, and
//! the remaining tags would not already say the same; otherwise they stay as
//! attributes too. OTLP → Haystack writes a group's tags at the front unless
//! the attributes already say the same. Together: tags dropped one way are
//! exactly the tags written back the other way.
//!
//! **OTLP attributes that keep Haystack values OTLP cannot hold**
//! (`haystack.trace_id`, `haystack.start_time`, ...). Haystack → OTLP puts
//! them first in the attribute list when the OTLP field alone would not give
//! the value back exactly, or when a tag of the same key is present (so that
//! the first attribute of that key is always the translation's own). OTLP →
//! Haystack takes them from the front, and only when they still agree with
//! the OTLP field (a processor may have changed the id or times since).

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status};
use prost::Message;

use super::ids::{hex, is_hex_of, otlp_span_id, otlp_trace_id};
use super::{Log, Span, Tag, TagType, TagValue};
use crate::ExportTraceServiceRequest;

const SERVICE_NAME: &str = "service.name";

// Haystack tags standing for OTLP fields.
const SPAN_KIND: &str = "span.kind";
const ERROR: &str = "error";
const STATUS_CODE: &str = "otel.status_code";
const STATUS_DESCRIPTION: &str = "otel.status_description";
const SCOPE_NAME: &str = "otel.scope.name";
const SCOPE_VERSION: &str = "otel.scope.version";
const TRACE_STATE: &str = "w3c.tracestate";
const DROPPED_ATTRIBUTES: &str = "otel.dropped_attributes_count";
const DROPPED_EVENTS: &str = "otel.dropped_events_count";
const DROPPED_LINKS: &str = "otel.dropped_links_count";
const RESOURCE_PREFIX: &str = "otel.resource.";
const EVENT_NAME: &str = "event";

// OTLP attributes keeping Haystack values.
const TRACE_ID: &str = "haystack.trace_id";
const SPAN_ID: &str = "haystack.span_id";
const PARENT_SPAN_ID: &str = "haystack.parent_span_id";
const START_TIME: &str = "haystack.start_time";
const DURATION: &str = "haystack.duration";
const TIMESTAMP: &str = "haystack.timestamp";

const KINDS: [(&str, SpanKind); 5] = [
    ("client", SpanKind::Client),
    ("server", SpanKind::Server),
    ("producer", SpanKind::Producer),
    ("consumer", SpanKind::Consumer),
    ("internal", SpanKind::Internal),
];

/// Translates Haystack spans into one OTLP request.
///
/// Spans are grouped by resource (`serviceName` plus `otel.resource.*`
/// tags) and, within it, by scope (`otel.scope.*` tags). Groups appear in
/// the order of their first span and spans keep their order within a group,
/// so spans of different services that were interleaved come out grouped.
pub fn otlp_from_spans(spans: &[Span]) -> ExportTraceServiceRequest {
    otlp_from_owned_spans(spans.to_vec())
}

/// As [`otlp_from_spans`], taking the spans: their strings move into the
/// request instead of being copied (what a receiver that decoded the spans
/// itself wants).
pub fn otlp_from_owned_spans(spans: Vec<Span>) -> ExportTraceServiceRequest {
    let mut out: Vec<ResourceSpans> = Vec::new();
    let mut resources: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut scopes: HashMap<(usize, Vec<u8>), usize> = HashMap::new();
    for span in spans {
        let (service_name, extras, scope, span) = span_to_otlp(span);
        // The resource is a function of the service name and the extra
        // resource attributes; the key says both without building it. The
        // first byte keeps the two forms apart.
        let key = if extras.is_empty() {
            let mut k = Vec::with_capacity(service_name.len() + 1);
            k.push(0);
            k.extend_from_slice(service_name.as_bytes());
            k
        } else {
            let mut k = vec![1];
            k.extend(resource_of(&service_name, extras.clone()).encode_to_vec());
            k
        };
        let r = *resources.entry(key).or_insert_with(|| {
            out.push(ResourceSpans {
                resource: Some(resource_of(&service_name, extras)),
                ..Default::default()
            });
            out.len() - 1
        });
        let scope_spans = &mut out[r].scope_spans;
        let key = scope
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default();
        let s = *scopes.entry((r, key)).or_insert_with(|| {
            scope_spans.push(ScopeSpans {
                scope,
                ..Default::default()
            });
            scope_spans.len() - 1
        });
        scope_spans[s].spans.push(span);
    }
    ExportTraceServiceRequest {
        resource_spans: out,
    }
}

/// The resource of a span's service name and `otel.resource.*` tags.
fn resource_of(service_name: &str, extras: Vec<KeyValue>) -> Resource {
    let mut attributes = Vec::with_capacity(extras.len() + 1);
    // `service.name` is written when there is one, and also when an
    // `otel.resource.service.name` tag would otherwise be read back as it.
    if !service_name.is_empty() || extras.iter().any(|kv| kv.key == SERVICE_NAME) {
        attributes.push(key_value(
            SERVICE_NAME,
            any_value::Value::StringValue(service_name.to_owned()),
        ));
    }
    attributes.extend(extras);
    Resource {
        attributes,
        ..Default::default()
    }
}

/// Translates an OTLP request into Haystack spans, in the request's order.
///
/// What Haystack cannot express (see `docs/design/haystack.md`): links
/// (counted in the `otel.dropped_links_count` tag), span flags, schema URLs,
/// scope attributes, sub-microsecond times; array and map attribute values
/// become string tags holding their OTLP/JSON form.
pub fn spans_from_otlp(request: &ExportTraceServiceRequest) -> Vec<Span> {
    let mut spans = Vec::new();
    for rs in &request.resource_spans {
        let attrs = rs
            .resource
            .as_ref()
            .map(|r| &r.attributes[..])
            .unwrap_or(&[]);
        let (service_name, extras) = match attrs.split_first() {
            Some((first, rest)) if first.key == SERVICE_NAME => match value_of(first) {
                Some(any_value::Value::StringValue(name)) => (name.clone(), rest),
                _ => (String::new(), attrs),
            },
            _ => (String::new(), attrs),
        };
        for ss in &rs.scope_spans {
            let (scope_name, scope_version) = ss
                .scope
                .as_ref()
                .map(|s| (s.name.clone(), s.version.clone()))
                .unwrap_or_default();
            let context = Context {
                service_name: &service_name,
                resource: extras.to_vec(),
                scope_name,
                scope_version,
            };
            spans.extend(ss.spans.iter().map(|s| span_from_otlp(s, &context)));
        }
    }
    spans
}

/// What a span takes from its ResourceSpans and ScopeSpans.
struct Context<'a> {
    service_name: &'a str,
    resource: Vec<KeyValue>,
    scope_name: String,
    scope_version: String,
}

/// One span: its service name and extra resource attributes (the resource,
/// built by the caller once per distinct value), its scope and the OTLP span.
fn span_to_otlp(
    span: Span,
) -> (
    String,
    Vec<KeyValue>,
    Option<InstrumentationScope>,
    OtlpSpan,
) {
    let Span {
        trace_id: haystack_trace_id,
        span_id: haystack_span_id,
        parent_span_id: haystack_parent_span_id,
        service_name,
        operation_name,
        start_time,
        duration,
        logs,
        mut tags,
    } = span;
    let kind = take(&KindTag, &mut tags);
    let status_code = take(&StatusTag, &mut tags);
    let status_message = take(&StrTag(STATUS_DESCRIPTION), &mut tags);
    let scope_name = take(&StrTag(SCOPE_NAME), &mut tags);
    let scope_version = take(&StrTag(SCOPE_VERSION), &mut tags);
    let trace_state = take(&StrTag(TRACE_STATE), &mut tags);
    let dropped_attributes_count = take(&CountTag(DROPPED_ATTRIBUTES), &mut tags);
    let dropped_events_count = take(&CountTag(DROPPED_EVENTS), &mut tags);
    let dropped_links_count = take(&CountTag(DROPPED_LINKS), &mut tags);
    let extras = take(&ResourceTags, &mut tags);

    let has = |key: &str| tags.iter().any(|t| t.key == key);
    let mut attributes = Vec::with_capacity(tags.len());
    let trace_id = otlp_trace_id(&haystack_trace_id);
    let span_id = otlp_span_id(&haystack_span_id);
    let parent_span_id = otlp_span_id(&haystack_parent_span_id);
    for (key, original, bytes) in [
        (TRACE_ID, haystack_trace_id, &trace_id),
        (SPAN_ID, haystack_span_id, &span_id),
        (PARENT_SPAN_ID, haystack_parent_span_id, &parent_span_id),
    ] {
        if !is_hex_of(bytes, &original) || has(key) {
            attributes.push(key_value(key, any_value::Value::StringValue(original)));
        }
    }
    let (start_time_unix_nano, end_time_unix_nano) = match exact_times(start_time, duration) {
        Some(times) if !has(START_TIME) && !has(DURATION) => times,
        _ => {
            attributes.push(key_value(
                START_TIME,
                any_value::Value::IntValue(start_time),
            ));
            attributes.push(key_value(DURATION, any_value::Value::IntValue(duration)));
            clamped_times(start_time, duration)
        }
    };
    attributes.extend(tags.into_iter().map(tag_into_attribute));

    let status = (status_code != 0 || !status_message.is_empty()).then_some(Status {
        code: status_code,
        message: status_message,
    });
    let otlp = OtlpSpan {
        trace_id,
        span_id,
        trace_state,
        parent_span_id,
        flags: 0,
        name: operation_name,
        kind,
        start_time_unix_nano,
        end_time_unix_nano,
        attributes,
        dropped_attributes_count,
        events: logs.into_iter().map(log_to_event).collect(),
        dropped_events_count,
        links: Vec::new(),
        dropped_links_count,
        status,
    };

    let scope =
        (!scope_name.is_empty() || !scope_version.is_empty()).then(|| InstrumentationScope {
            name: scope_name,
            version: scope_version,
            ..Default::default()
        });
    (service_name, extras, scope, otlp)
}

fn span_from_otlp(span: &OtlpSpan, context: &Context<'_>) -> Span {
    let mut tags: Vec<Tag> = span.attributes.iter().map(attribute_to_tag).collect();
    let trace_id = take_id(&mut tags, TRACE_ID, &span.trace_id, otlp_trace_id);
    let span_id = take_id(&mut tags, SPAN_ID, &span.span_id, otlp_span_id);
    let parent_span_id = take_id(
        &mut tags,
        PARENT_SPAN_ID,
        &span.parent_span_id,
        otlp_span_id,
    );
    let (start_time, duration) = take_times(
        &mut tags,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
    );

    let (status_code, status_message) = span
        .status
        .as_ref()
        .map(|s| (s.code, s.message.clone()))
        .unwrap_or_default();
    let dropped_links = span
        .dropped_links_count
        .saturating_add(u32::try_from(span.links.len()).unwrap_or(u32::MAX));
    let mut prefix = Vec::new();
    give(&KindTag, &span.kind, &tags, &mut prefix);
    give(&StatusTag, &status_code, &tags, &mut prefix);
    give(
        &StrTag(STATUS_DESCRIPTION),
        &status_message,
        &tags,
        &mut prefix,
    );
    give(&StrTag(SCOPE_NAME), &context.scope_name, &tags, &mut prefix);
    give(
        &StrTag(SCOPE_VERSION),
        &context.scope_version,
        &tags,
        &mut prefix,
    );
    give(&StrTag(TRACE_STATE), &span.trace_state, &tags, &mut prefix);
    give(
        &CountTag(DROPPED_ATTRIBUTES),
        &span.dropped_attributes_count,
        &tags,
        &mut prefix,
    );
    give(
        &CountTag(DROPPED_EVENTS),
        &span.dropped_events_count,
        &tags,
        &mut prefix,
    );
    give(&CountTag(DROPPED_LINKS), &dropped_links, &tags, &mut prefix);
    give(&ResourceTags, &context.resource, &tags, &mut prefix);
    prefix.extend(tags);

    Span {
        trace_id,
        span_id,
        parent_span_id,
        service_name: context.service_name.to_owned(),
        operation_name: span.name.clone(),
        start_time,
        duration,
        logs: span.events.iter().map(event_to_log).collect(),
        tags: prefix,
    }
}

fn log_to_event(log: Log) -> Event {
    let mut fields = log.fields;
    let name = take(&StrTag(EVENT_NAME), &mut fields);
    let dropped_attributes_count = take(&CountTag(DROPPED_ATTRIBUTES), &mut fields);
    let mut attributes = Vec::with_capacity(fields.len());
    let exact = micros_to_nanos(i128::from(log.timestamp));
    let time_unix_nano = match exact {
        Some(t) if !fields.iter().any(|f| f.key == TIMESTAMP) => t,
        _ => {
            attributes.push(key_value(
                TIMESTAMP,
                any_value::Value::IntValue(log.timestamp),
            ));
            clamp_nanos(i128::from(log.timestamp) * 1000)
        }
    };
    attributes.extend(fields.into_iter().map(tag_into_attribute));
    Event {
        time_unix_nano,
        name,
        attributes,
        dropped_attributes_count,
    }
}

fn event_to_log(event: &Event) -> Log {
    let mut fields: Vec<Tag> = event.attributes.iter().map(attribute_to_tag).collect();
    let timestamp = match fields.first() {
        Some(Tag {
            key,
            value: Some(TagValue::VLong(t)),
            ..
        }) if key == TIMESTAMP && clamp_nanos(i128::from(*t) * 1000) == event.time_unix_nano => {
            let t = *t;
            fields.remove(0);
            t
        }
        _ => nanos_to_micros(event.time_unix_nano),
    };
    let mut prefix = Vec::new();
    give(&StrTag(EVENT_NAME), &event.name, &fields, &mut prefix);
    give(
        &CountTag(DROPPED_ATTRIBUTES),
        &event.dropped_attributes_count,
        &fields,
        &mut prefix,
    );
    prefix.extend(fields);
    Log {
        timestamp,
        fields: prefix,
    }
}

/// The original Haystack id if the first tag keeps one that still names
/// `bytes`; lowercase hex of `bytes` otherwise.
fn take_id(tags: &mut Vec<Tag>, key: &str, bytes: &[u8], derive: fn(&str) -> Vec<u8>) -> String {
    if let Some(Tag {
        key: k,
        value: Some(TagValue::VStr(original)),
        ..
    }) = tags.first()
    {
        if k == key && derive(original) == bytes {
            let original = original.clone();
            tags.remove(0);
            return original;
        }
    }
    hex(bytes)
}

/// Haystack start time and duration: from the two first tags when they keep
/// them and still agree with the OTLP times, from the OTLP times otherwise.
fn take_times(tags: &mut Vec<Tag>, start_ns: u64, end_ns: u64) -> (i64, i64) {
    if let [Tag {
        key: k1,
        value: Some(TagValue::VLong(start)),
        ..
    }, Tag {
        key: k2,
        value: Some(TagValue::VLong(duration)),
        ..
    }, ..] = &tags[..]
    {
        if k1 == START_TIME
            && k2 == DURATION
            && clamped_times(*start, *duration) == (start_ns, end_ns)
        {
            let kept = (*start, *duration);
            tags.drain(..2);
            return kept;
        }
    }
    let start = nanos_to_micros(start_ns);
    let end = nanos_to_micros(end_ns);
    // Both are at most u64::MAX / 1000, far inside i64.
    (start, end - start)
}

fn micros_to_nanos(micros: i128) -> Option<u64> {
    u64::try_from(micros * 1000).ok()
}

fn clamp_nanos(nanos: i128) -> u64 {
    u64::try_from(nanos.max(0)).unwrap_or(u64::MAX)
}

fn nanos_to_micros(nanos: u64) -> i64 {
    // u64::MAX / 1000 < i64::MAX.
    i64::try_from(nanos / 1000).unwrap_or(i64::MAX)
}

/// OTLP start and end for a Haystack start and duration, if both fit.
fn exact_times(start: i64, duration: i64) -> Option<(u64, u64)> {
    let start = i128::from(start);
    let end = start + i128::from(duration);
    Some((micros_to_nanos(start)?, micros_to_nanos(end)?))
}

fn clamped_times(start: i64, duration: i64) -> (u64, u64) {
    let start = i128::from(start) * 1000;
    let end = start + i128::from(duration) * 1000;
    (clamp_nanos(start), clamp_nanos(end))
}

fn key_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn value_of(kv: &KeyValue) -> Option<&any_value::Value> {
    kv.value.as_ref().and_then(|v| v.value.as_ref())
}

/// A tag as an attribute; the value decides the OTLP type (a tag whose
/// `type` disagrees with its value is translated by its value), and a tag
/// without a value becomes an attribute without one.
fn tag_to_attribute(tag: &Tag) -> KeyValue {
    KeyValue {
        key: tag.key.clone(),
        value: tag.value.as_ref().map(|v| AnyValue {
            value: Some(match v {
                TagValue::VStr(s) => any_value::Value::StringValue(s.clone()),
                TagValue::VLong(n) => any_value::Value::IntValue(*n),
                TagValue::VDouble(d) => any_value::Value::DoubleValue(*d),
                TagValue::VBool(b) => any_value::Value::BoolValue(*b),
                TagValue::VBytes(b) => any_value::Value::BytesValue(b.clone()),
            }),
        }),
        ..Default::default()
    }
}

/// As [`tag_to_attribute`], moving the strings.
fn tag_into_attribute(tag: Tag) -> KeyValue {
    KeyValue {
        key: tag.key,
        value: tag.value.map(|v| AnyValue {
            value: Some(match v {
                TagValue::VStr(s) => any_value::Value::StringValue(s),
                TagValue::VLong(n) => any_value::Value::IntValue(n),
                TagValue::VDouble(d) => any_value::Value::DoubleValue(d),
                TagValue::VBool(b) => any_value::Value::BoolValue(b),
                TagValue::VBytes(b) => any_value::Value::BytesValue(b),
            }),
        }),
        ..Default::default()
    }
}

/// An attribute as a tag. Arrays and maps, which Haystack has no type for,
/// become string tags holding their OTLP/JSON `AnyValue` form.
fn attribute_to_tag(kv: &KeyValue) -> Tag {
    let value = value_of(kv).map(|v| match v {
        any_value::Value::StringValue(s) => TagValue::VStr(s.clone()),
        any_value::Value::IntValue(n) => TagValue::VLong(*n),
        any_value::Value::DoubleValue(d) => TagValue::VDouble(*d),
        any_value::Value::BoolValue(b) => TagValue::VBool(*b),
        any_value::Value::BytesValue(b) => TagValue::VBytes(b.clone()),
        other => TagValue::VStr(
            serde_json::to_string(&AnyValue {
                value: Some(other.clone()),
            })
            .unwrap_or_default(),
        ),
    });
    Tag {
        key: kv.key.clone(),
        r#type: value.as_ref().map_or(TagType::String, TagValue::tag_type) as i32,
        value,
    }
}

/// Tags standing for one OTLP field.
trait TagGroup {
    type Value;
    /// The field's value as the tags say it; the default when they don't.
    fn read(&self, tags: &[Tag]) -> Self::Value;
    /// The tags OTLP → Haystack writes for a value; none for the default.
    fn render(&self, value: &Self::Value) -> Vec<Tag>;
}

/// Haystack → OTLP: the group's value, with its tags removed from the front
/// of `tags` when `give` would write them back exactly.
fn take<G: TagGroup>(group: &G, tags: &mut Vec<Tag>) -> G::Value {
    let value = group.read(tags);
    let canonical = group.render(&value);
    let n = canonical.len();
    if n > 0
        && tags.len() >= n
        && same_tags(&tags[..n], &canonical)
        && !same_tags(&group.render(&group.read(&tags[n..])), &canonical)
    {
        tags.drain(..n);
    }
    value
}

/// OTLP → Haystack: adds the group's tags for `value` to `prefix` unless the
/// other tags (`rest`) already say it.
fn give<G: TagGroup>(group: &G, value: &G::Value, rest: &[Tag], prefix: &mut Vec<Tag>) {
    let canonical = group.render(value);
    if !same_tags(&group.render(&group.read(rest)), &canonical) {
        prefix.extend(canonical);
    }
}

/// Tag equality that compares doubles by their bits, so NaN equals itself.
fn same_tags(a: &[Tag], b: &[Tag]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.key == y.key
                && x.r#type == y.r#type
                && match (&x.value, &y.value) {
                    (Some(TagValue::VDouble(p)), Some(TagValue::VDouble(q))) => {
                        p.to_bits() == q.to_bits()
                    }
                    (p, q) => p == q,
                }
        })
}

fn first<'a>(tags: &'a [Tag], key: &str) -> Option<&'a Tag> {
    tags.iter().find(|t| t.key == key)
}

fn first_str<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    match first(tags, key)?.value.as_ref()? {
        TagValue::VStr(s) => Some(s),
        _ => None,
    }
}

/// `span.kind` ↔ `Span.kind`. Read case-insensitively; written lowercase.
struct KindTag;

impl TagGroup for KindTag {
    type Value = i32;

    fn read(&self, tags: &[Tag]) -> i32 {
        first_str(tags, SPAN_KIND)
            .and_then(|s| KINDS.iter().find(|(name, _)| s.eq_ignore_ascii_case(name)))
            .map_or(SpanKind::Unspecified as i32, |(_, kind)| *kind as i32)
    }

    fn render(&self, kind: &i32) -> Vec<Tag> {
        KINDS
            .iter()
            .find(|(_, k)| *k as i32 == *kind)
            .map(|(name, _)| vec![Tag::string(SPAN_KIND, *name)])
            .unwrap_or_default()
    }
}

/// `error` / `otel.status_code` ↔ `Status.code`. ERROR is `error=true`
/// (bool; the string "true" is read too), OK is `otel.status_code=OK`;
/// `otel.status_code=ERROR` is read as ERROR.
struct StatusTag;

impl TagGroup for StatusTag {
    type Value = i32;

    fn read(&self, tags: &[Tag]) -> i32 {
        let error = first(tags, ERROR).and_then(|t| t.value.as_ref());
        let code = match error {
            Some(TagValue::VBool(true)) => StatusCode::Error,
            Some(TagValue::VStr(s)) if s.eq_ignore_ascii_case("true") => StatusCode::Error,
            _ => match first_str(tags, STATUS_CODE) {
                Some(s) if s.eq_ignore_ascii_case("error") => StatusCode::Error,
                Some(s) if s.eq_ignore_ascii_case("ok") => StatusCode::Ok,
                _ => StatusCode::Unset,
            },
        };
        code as i32
    }

    fn render(&self, code: &i32) -> Vec<Tag> {
        match StatusCode::try_from(*code) {
            Ok(StatusCode::Error) => vec![Tag::bool(ERROR, true)],
            Ok(StatusCode::Ok) => vec![Tag::string(STATUS_CODE, "OK")],
            _ => Vec::new(),
        }
    }
}

/// A string tag ↔ a string field; the empty string is the default.
struct StrTag(&'static str);

impl TagGroup for StrTag {
    type Value = String;

    fn read(&self, tags: &[Tag]) -> String {
        first_str(tags, self.0).unwrap_or_default().to_owned()
    }

    fn render(&self, value: &String) -> Vec<Tag> {
        if value.is_empty() {
            Vec::new()
        } else {
            vec![Tag::string(self.0, value.clone())]
        }
    }
}

/// A long tag ↔ a `uint32` count; zero is the default.
struct CountTag(&'static str);

impl TagGroup for CountTag {
    type Value = u32;

    fn read(&self, tags: &[Tag]) -> u32 {
        match first(tags, self.0).and_then(|t| t.value.as_ref()) {
            Some(TagValue::VLong(n)) => u32::try_from(*n).unwrap_or(0),
            _ => 0,
        }
    }

    fn render(&self, value: &u32) -> Vec<Tag> {
        if *value == 0 {
            Vec::new()
        } else {
            vec![Tag::long(self.0, i64::from(*value))]
        }
    }
}

/// `otel.resource.<key>` tags ↔ resource attributes other than the leading
/// `service.name`.
struct ResourceTags;

impl TagGroup for ResourceTags {
    type Value = Vec<KeyValue>;

    fn read(&self, tags: &[Tag]) -> Vec<KeyValue> {
        tags.iter()
            .filter_map(|t| {
                let key = t.key.strip_prefix(RESOURCE_PREFIX)?;
                let mut kv = tag_to_attribute(t);
                kv.key = key.to_owned();
                Some(kv)
            })
            .collect()
    }

    fn render(&self, attributes: &Vec<KeyValue>) -> Vec<Tag> {
        attributes
            .iter()
            .map(|kv| {
                let mut tag = attribute_to_tag(kv);
                tag.key = format!("{RESOURCE_PREFIX}{}", kv.key);
                tag
            })
            .collect()
    }
}
