//! Round-trip properties of the Haystack ↔ OTLP translation and of the JSON
//! form, over generated data.
//!
//! Spans are compared by their protobuf encoding, which is exact (a NaN tag
//! value equals itself there, unlike with `==`).

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use prost::Message;

use super::ids::hex;
use super::*;
use crate::ExportTraceServiceRequest;

// ---------- Haystack spans: anything the format allows ----------

fn uuid(bytes: &[u8]) -> String {
    let h = hex(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Id strings of every kind the translation tells apart.
fn id_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        vec(any::<u8>(), 16).prop_map(|b| hex(&b)),
        vec(any::<u8>(), 16).prop_map(|b| hex(&b).to_uppercase()),
        vec(any::<u8>(), 8).prop_map(|b| hex(&b)),
        vec(any::<u8>(), 8).prop_map(|b| hex(&b).to_uppercase()),
        vec(any::<u8>(), 16).prop_map(|b| uuid(&b)),
        vec(any::<u8>(), 16).prop_map(|b| uuid(&b).to_uppercase()),
        "[0-9]{1,19}",
        "[0-9a-fA-F-]{1,40}",
        ".{0,40}",
    ]
}

/// Keys the translation gives a meaning to, in Haystack or in OTLP.
const SPECIAL_KEYS: &[&str] = &[
    "span.kind",
    "error",
    "otel.status_code",
    "otel.status_description",
    "otel.scope.name",
    "otel.scope.version",
    "w3c.tracestate",
    "otel.dropped_attributes_count",
    "otel.dropped_events_count",
    "otel.dropped_links_count",
    "otel.resource.host.name",
    "otel.resource.service.name",
    "otel.resource.",
    "haystack.trace_id",
    "haystack.span_id",
    "haystack.parent_span_id",
    "haystack.start_time",
    "haystack.duration",
    "haystack.timestamp",
    "event",
    "service.name",
];

const SPECIAL_STRINGS: &[&str] = &[
    "server", "client", "producer", "consumer", "internal", "SERVER", "Client", "OK", "ok",
    "ERROR", "true", "TRUE", "false", "",
];

fn tag_key() -> impl Strategy<Value = String> {
    prop_oneof![
        select(SPECIAL_KEYS).prop_map(str::to_owned),
        "[a-z.]{0,12}",
        ".{0,8}",
    ]
}

fn tag_value() -> impl Strategy<Value = TagValue> {
    prop_oneof![
        select(SPECIAL_STRINGS).prop_map(|s| TagValue::VStr(s.into())),
        ".{0,10}".prop_map(TagValue::VStr),
        prop_oneof![
            0i64..5,
            Just(i64::from(u32::MAX)),
            Just(i64::from(u32::MAX) + 1),
            any::<i64>()
        ]
        .prop_map(TagValue::VLong),
        any::<f64>().prop_map(TagValue::VDouble),
        any::<bool>().prop_map(TagValue::VBool),
        vec(any::<u8>(), 0..6).prop_map(TagValue::VBytes),
    ]
}

fn tag() -> impl Strategy<Value = Tag> {
    (tag_key(), proptest::option::weighted(0.9, tag_value())).prop_map(|(key, value)| Tag {
        key,
        r#type: value.as_ref().map_or(TagType::String, TagValue::tag_type) as i32,
        value,
    })
}

/// Tags in the exact form OTLP → Haystack writes at the front, so that the
/// "drop the tag, set the field" path is taken often.
fn canonical_prefix() -> impl Strategy<Value = Vec<Tag>> {
    let kind = select(&["client", "server", "producer", "consumer", "internal"][..]);
    let status = prop_oneof![
        Just(Tag::bool("error", true)),
        Just(Tag::string("otel.status_code", "OK"))
    ];
    let count = || 1..=u32::MAX;
    (
        proptest::option::of(kind),
        proptest::option::of(status),
        proptest::option::of(".{1,6}"),
        proptest::option::of(".{1,6}"),
        proptest::option::of(".{1,6}"),
        proptest::option::of(".{1,6}"),
        proptest::option::of(count()),
        proptest::option::of(count()),
        proptest::option::of(count()),
        vec(("[a-z.]{0,10}", tag_value()), 0..3),
    )
        .prop_map(
            |(kind, status, desc, scope, version, state, da, de, dl, resource)| {
                let mut tags = Vec::new();
                tags.extend(kind.map(|k| Tag::string("span.kind", k)));
                tags.extend(status);
                tags.extend(desc.map(|d| Tag::string("otel.status_description", d)));
                tags.extend(scope.map(|d| Tag::string("otel.scope.name", d)));
                tags.extend(version.map(|d| Tag::string("otel.scope.version", d)));
                tags.extend(state.map(|d| Tag::string("w3c.tracestate", d)));
                tags.extend(da.map(|n| Tag::long("otel.dropped_attributes_count", n.into())));
                tags.extend(de.map(|n| Tag::long("otel.dropped_events_count", n.into())));
                tags.extend(dl.map(|n| Tag::long("otel.dropped_links_count", n.into())));
                tags.extend(
                    resource
                        .into_iter()
                        .map(|(k, v)| Tag::new(format!("otel.resource.{k}"), v)),
                );
                tags
            },
        )
}

fn tags() -> impl Strategy<Value = Vec<Tag>> {
    prop_oneof![
        vec(tag(), 0..8),
        (canonical_prefix(), vec(tag(), 0..4)).prop_map(|(mut a, b)| {
            a.extend(b);
            a
        }),
    ]
}

fn micros() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        0i64..4_000_000_000_000_000,
        Just(0),
        Just(i64::MAX),
        Just(i64::MIN),
        Just(i64::try_from(u64::MAX / 1000).unwrap_or(0)),
    ]
}

fn log() -> impl Strategy<Value = Log> {
    let fields = prop_oneof![
        vec(tag(), 0..5),
        (".{0,6}", 0..3u32, vec(tag(), 0..3)).prop_map(|(name, dropped, rest)| {
            let mut fields = vec![Tag::string("event", name)];
            if dropped > 0 {
                fields.push(Tag::long("otel.dropped_attributes_count", dropped.into()));
            }
            fields.extend(rest);
            fields
        }),
    ];
    (micros(), fields).prop_map(|(timestamp, fields)| Log { timestamp, fields })
}

/// Which of a span's own values to repeat as `haystack.*` tags, spelled as
/// the translation's own attributes would be (or in capitals), at `at`.
#[derive(Debug, Clone)]
struct Echo {
    ids: [bool; 3],
    times: bool,
    upper: bool,
    at: proptest::sample::Index,
}

fn echo() -> impl Strategy<Value = Option<Echo>> {
    proptest::option::weighted(
        0.3,
        (
            any::<[bool; 3]>(),
            any::<bool>(),
            any::<bool>(),
            any::<proptest::sample::Index>(),
        )
            .prop_map(|(ids, times, upper, at)| Echo {
                ids,
                times,
                upper,
                at,
            }),
    )
}

fn with_echo(mut span: Span, echo: Option<Echo>) -> Span {
    let Some(echo) = echo else { return span };
    let mut tags = Vec::new();
    let ids = [
        ("haystack.trace_id", &span.trace_id),
        ("haystack.span_id", &span.span_id),
        ("haystack.parent_span_id", &span.parent_span_id),
    ];
    for ((key, id), on) in ids.into_iter().zip(echo.ids) {
        if on {
            let id = if echo.upper {
                id.to_uppercase()
            } else {
                id.clone()
            };
            tags.push(Tag::string(key, id));
        }
    }
    if echo.times {
        tags.push(Tag::long("haystack.start_time", span.start_time));
        tags.push(Tag::long("haystack.duration", span.duration));
    }
    let at = echo.at.index(span.tags.len() + 1);
    span.tags.splice(at..at, tags);
    if let Some(log) = span.logs.first_mut() {
        log.fields
            .insert(0, Tag::long("haystack.timestamp", log.timestamp));
    }
    span
}

fn span() -> impl Strategy<Value = Span> {
    (
        (id_string(), id_string(), id_string()),
        prop_oneof![
            select(&["svc-a", "svc-b", ""][..]).prop_map(str::to_owned),
            ".{0,8}"
        ],
        ".{0,10}",
        (
            micros(),
            prop_oneof![any::<i64>(), 0i64..10_000_000, -1000i64..0],
        ),
        vec(log(), 0..3),
        tags(),
        echo(),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id),
                service_name,
                operation_name,
                (start_time, duration),
                logs,
                tags,
                echo,
            )| {
                let span = Span {
                    trace_id,
                    span_id,
                    parent_span_id,
                    service_name,
                    operation_name,
                    start_time,
                    duration,
                    logs,
                    tags,
                };
                with_echo(span, echo)
            },
        )
}

fn encoded(spans: &[Span]) -> Vec<Vec<u8>> {
    spans.iter().map(Message::encode_to_vec).collect()
}

/// The order `otlp_from_spans` groups spans in: resources by first
/// appearance, scopes within a resource by first appearance, spans in order.
/// A span's resource and scope are taken from translating it alone.
fn grouped(spans: &[Span]) -> Vec<Span> {
    let keys: Vec<(Vec<u8>, Vec<u8>)> = spans
        .iter()
        .map(|s| {
            let req = otlp_from_spans(std::slice::from_ref(s));
            let rs = &req.resource_spans[0];
            (
                rs.resource
                    .as_ref()
                    .map(Message::encode_to_vec)
                    .unwrap_or_default(),
                rs.scope_spans[0]
                    .scope
                    .as_ref()
                    .map(Message::encode_to_vec)
                    .unwrap_or_default(),
            )
        })
        .collect();
    let mut resources: Vec<&Vec<u8>> = Vec::new();
    for (r, _) in &keys {
        if !resources.contains(&r) {
            resources.push(r);
        }
    }
    let mut out = Vec::new();
    for r in resources {
        let mut scopes: Vec<&Vec<u8>> = Vec::new();
        for (kr, ks) in &keys {
            if kr == r && !scopes.contains(&ks) {
                scopes.push(ks);
            }
        }
        for sc in scopes {
            for (i, (kr, ks)) in keys.iter().enumerate() {
                if kr == r && ks == sc {
                    out.push(spans[i].clone());
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn haystack_to_otlp_and_back_is_identity(span in span()) {
        let req = otlp_from_spans(std::slice::from_ref(&span));
        let back = spans_from_otlp(&req);
        prop_assert_eq!(encoded(&back), encoded(std::slice::from_ref(&span)), "via {:?}", req);
    }

    #[test]
    fn haystack_batches_come_back_grouped(spans in vec(span(), 0..6)) {
        let back = spans_from_otlp(&otlp_from_spans(&spans));
        prop_assert_eq!(encoded(&back), encoded(&grouped(&spans)));
    }

    #[test]
    fn haystack_json_and_protobuf_round_trip(span in span()) {
        let from_json = from_json(&to_json(&span)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(from_json.encode_to_vec(), span.encode_to_vec());
        let decoded = Span::decode(&span.encode_to_vec()[..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded.encode_to_vec(), span.encode_to_vec());
    }
}

// ---------- OTLP requests: the part Haystack can express ----------

/// Attribute keys without a meaning in the translation.
fn plain_key() -> impl Strategy<Value = String> {
    "[a-z]{1,6}(\\.[a-z]{1,6})?".prop_filter("reserved key", |k| {
        !(k.starts_with("haystack.")
            || k.starts_with("otel.")
            || [
                "span.kind",
                "error",
                "w3c.tracestate",
                "event",
                "service.name",
            ]
            .contains(&k.as_str()))
    })
}

fn attribute() -> impl Strategy<Value = KeyValue> {
    let value = prop_oneof![
        ".{0,8}".prop_map(any_value::Value::StringValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        any::<f64>().prop_map(any_value::Value::DoubleValue),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        vec(any::<u8>(), 0..5).prop_map(any_value::Value::BytesValue),
    ];
    (plain_key(), proptest::option::weighted(0.9, value)).prop_map(|(key, value)| KeyValue {
        key,
        value: value.map(|v| AnyValue { value: Some(v) }),
        ..Default::default()
    })
}

/// Nanoseconds on whole microseconds.
fn nanos() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..=u64::MAX / 1000,
        1_600_000_000_000_000..1_800_000_000_000_000u64
    ]
    .prop_map(|us| us * 1000)
}

fn otlp_span() -> impl Strategy<Value = OtlpSpan> {
    let id = |n: usize| prop_oneof![Just(Vec::new()), vec(any::<u8>(), n)];
    let status = prop_oneof![
        Just(None),
        (0..=2i32, ".{0,6}").prop_filter_map("empty status", |(code, message)| {
            (code != 0 || !message.is_empty()).then_some(Some(Status { code, message }))
        }),
    ];
    let event = (nanos(), ".{0,6}", vec(attribute(), 0..3), any::<u32>()).prop_map(
        |(time_unix_nano, name, attributes, dropped_attributes_count)| Event {
            time_unix_nano,
            name,
            attributes,
            dropped_attributes_count,
        },
    );
    (
        (id(16), id(8), id(8)),
        (".{0,8}", ".{0,8}", 0..=5i32),
        (nanos(), nanos()),
        vec(attribute(), 0..5),
        (any::<u32>(), any::<u32>(), any::<u32>()),
        vec(event, 0..3),
        status,
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id),
                (trace_state, name, kind),
                (start, end),
                attributes,
                (da, de, dl),
                events,
                status,
            )| {
                OtlpSpan {
                    trace_id,
                    span_id,
                    trace_state,
                    parent_span_id,
                    flags: 0,
                    name,
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes,
                    dropped_attributes_count: da,
                    events,
                    dropped_events_count: de,
                    links: Vec::new(),
                    dropped_links_count: dl,
                    status,
                }
            },
        )
}

/// A request in the form `otlp_from_spans` writes: distinct resources (an
/// `idx` attribute tells them apart), distinct scopes within each, no empty
/// lists, `service.name` (non-empty) first when present.
fn otlp_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let scope_spans = vec((0..3u8, ".{0,4}", vec(otlp_span(), 1..4)), 1..4);
    let resource = (
        proptest::option::of(".{1,8}"),
        vec(attribute(), 0..3),
        scope_spans,
    );
    vec(resource, 0..3).prop_map(|resources| ExportTraceServiceRequest {
        resource_spans: resources
            .into_iter()
            .enumerate()
            .map(|(i, (service, extras, scopes))| {
                let mut attributes = Vec::new();
                attributes.extend(service.map(|s| KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(s)),
                    }),
                    ..Default::default()
                }));
                attributes.push(KeyValue {
                    key: "idx".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(i as i64)),
                    }),
                    ..Default::default()
                });
                attributes.extend(extras);
                ResourceSpans {
                    resource: Some(Resource {
                        attributes,
                        ..Default::default()
                    }),
                    scope_spans: scopes
                        .into_iter()
                        .enumerate()
                        .map(|(j, (variant, version, spans))| {
                            let scope = match (j, variant) {
                                (0, 0) => None,
                                (0, 1) => Some(("".to_owned(), format!("v{version}"))),
                                _ => Some((format!("lib{j}"), version)),
                            };
                            ScopeSpans {
                                scope: scope.map(|(name, version)| InstrumentationScope {
                                    name,
                                    version,
                                    ..Default::default()
                                }),
                                spans,
                                ..Default::default()
                            }
                        })
                        .collect(),
                    ..Default::default()
                }
            })
            .collect(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn otlp_to_haystack_and_back_is_identity(req in otlp_request()) {
        let spans = spans_from_otlp(&req);
        let back = otlp_from_spans(&spans);
        prop_assert_eq!(back.encode_to_vec(), req.encode_to_vec(), "via {:?}", spans);
    }
}
