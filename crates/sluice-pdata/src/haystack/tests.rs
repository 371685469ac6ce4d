use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan, Status};
use prost::Message;
use serde_json::json;

use super::*;
use crate::ExportTraceServiceRequest;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A span using every field, every tag type and a log.
fn fixture_span() -> Span {
    Span {
        trace_id: "ab".into(),
        span_id: "c".into(),
        parent_span_id: "p".into(),
        service_name: "s".into(),
        operation_name: "op".into(),
        start_time: 1,
        duration: 300,
        logs: vec![Log {
            timestamp: 2,
            fields: vec![Tag::string("e", "x")],
        }],
        tags: vec![
            Tag::long("k", -1),
            Tag::double("d", 1.0),
            Tag::bool("b", true),
            Tag::binary("y", vec![0x00, 0xff]),
        ],
    }
}

/// The fixture's encoding, worked out by hand from the field numbers:
/// key byte = field number << 3 | wire type (0 varint, 1 fixed64, 2 length).
const FIXTURE_HEX: &str = "
    0a 02 61 62                          # 1 traceId 'ab'
    12 01 63                             # 2 spanId 'c'
    1a 01 70                             # 3 parentSpanId 'p'
    22 01 73                             # 4 serviceName 's'
    2a 02 6f 70                          # 5 operationName 'op'
    30 01                                # 6 startTime 1
    38 ac 02                             # 7 duration 300 (varint 0xac 0x02)
    42 0a  08 02  12 06 0a 01 65 1a 01 78   # 8 log: 1 timestamp 2, 2 field {1 key 'e', 3 vStr 'x'} (type STRING=0 not written)
    4a 10  0a 01 6b  10 03  20 ff ff ff ff ff ff ff ff ff 01   # 9 tag: key 'k', type 3 LONG, 4 vLong -1 (10-byte varint)
    4a 0e  0a 01 64  10 01  29 00 00 00 00 00 00 f0 3f         # 9 tag: key 'd', type 1 DOUBLE, 5 vDouble 1.0 (fixed64 LE)
    4a 07  0a 01 62  10 02  30 01                              # 9 tag: key 'b', type 2 BOOL, 6 vBool true
    4a 09  0a 01 79  10 04  3a 02 00 ff                        # 9 tag: key 'y', type 4 BINARY, 7 vBytes 00 ff
";

fn fixture_bytes() -> Vec<u8> {
    let stripped: String = FIXTURE_HEX
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    unhex(&stripped)
}

#[test]
fn span_encodes_to_the_hand_computed_bytes_and_decodes_back() {
    let span = fixture_span();
    assert_eq!(span.encode_to_vec(), fixture_bytes());
    assert_eq!(Span::decode(&fixture_bytes()[..]).unwrap(), span);
}

#[test]
fn decoding_accepts_explicit_defaults_reordered_fields_and_unknown_fields() {
    // Tag with an explicit type 0 (STRING) before its key, then unknown
    // field 15 (varint 1); span with tags before traceId.
    let bytes = unhex("4a 08 10 00 1a 01 76 0a 01 6b  78 01  0a 01 74");
    let span = Span::decode(&bytes[..]).unwrap();
    assert_eq!(
        span,
        Span {
            trace_id: "t".into(),
            tags: vec![Tag::string("k", "v")],
            ..Default::default()
        }
    );
}

#[test]
fn batch_and_dispatch_result_use_their_field_numbers() {
    let batch = SpanBatch {
        spans: vec![Span {
            trace_id: "ab".into(),
            ..Default::default()
        }],
    };
    assert_eq!(batch.encode_to_vec(), unhex("0a 04 0a 02 61 62"));
    let result = DispatchResult {
        code: ResultCode::RateLimitError as i32,
        error_message: "x".into(),
    };
    assert_eq!(result.encode_to_vec(), unhex("08 02 12 01 78"));
    assert_eq!(
        DispatchResult::decode(&unhex("08 02 12 01 78")[..]).unwrap(),
        result
    );
    assert_eq!(ResultCode::UnknownError as i32, 1);
    assert!(
        Span::decode(&unhex("0a 05 61")[..]).is_err(),
        "truncated input must fail"
    );
}

// ---------- JSON ----------

#[test]
fn json_of_the_fixture_follows_the_protobuf_json_mapping() {
    let written: serde_json::Value = serde_json::from_slice(&to_json(&fixture_span())).unwrap();
    assert_eq!(
        written,
        json!({
            "traceId": "ab", "spanId": "c", "parentSpanId": "p", "serviceName": "s",
            "operationName": "op", "startTime": "1", "duration": "300",
            "logs": [{"timestamp": "2", "fields": [{"key": "e", "vStr": "x"}]}],
            "tags": [
                {"key": "k", "type": "LONG", "vLong": "-1"},
                {"key": "d", "type": "DOUBLE", "vDouble": 1.0},
                {"key": "b", "type": "BOOL", "vBool": true},
                {"key": "y", "type": "BINARY", "vBytes": "AP8="}
            ]
        })
    );
    assert_eq!(
        from_json(&to_json(&fixture_span())).unwrap(),
        fixture_span()
    );
}

#[test]
fn json_writes_set_zero_values_of_a_tag_and_special_doubles() {
    let span = Span {
        tags: vec![
            Tag::long("zero", 0),
            Tag::string("empty", ""),
            Tag::double("nan", f64::NAN),
            Tag::double("inf", f64::INFINITY),
            Tag::double("ninf", f64::NEG_INFINITY),
            Tag {
                key: "odd".into(),
                r#type: 9,
                value: None,
            },
        ],
        ..Default::default()
    };
    let written: serde_json::Value = serde_json::from_slice(&to_json(&span)).unwrap();
    assert_eq!(
        written,
        json!({"tags": [
            {"key": "zero", "type": "LONG", "vLong": "0"},
            {"key": "empty", "vStr": ""},
            {"key": "nan", "type": "DOUBLE", "vDouble": "NaN"},
            {"key": "inf", "type": "DOUBLE", "vDouble": "Infinity"},
            {"key": "ninf", "type": "DOUBLE", "vDouble": "-Infinity"},
            {"key": "odd", "type": 9}
        ]})
    );
    let back = from_json(&to_json(&span)).unwrap();
    assert_eq!(back.encode_to_vec(), span.encode_to_vec());
}

#[test]
fn json_reader_accepts_the_lenient_forms() {
    let text = br#"{
        "traceId": "t", "spanId": null, "startTime": 5, "duration": "7",
        "parentSpanId": "p", "somethingNew": {"x": 1},
        "logs": [{"timestamp": 1.5e1, "fields": null}],
        "tags": [
            {"key": "a", "type": 3, "vLong": 10},
            {"key": "b", "type": "LONG", "vLong": "-9223372036854775808"},
            {"key": "c", "type": "DOUBLE", "vDouble": "2.5"},
            {"key": "d", "type": "BINARY", "vBytes": "AP8"},
            {"key": "e", "type": "BINARY", "vBytes": "_-8="},
            {"key": "f", "vStr": "x", "vLong": null},
            {"key": "g", "type": null, "vBool": false},
            {"key": "h", "vLong": "1e3"}
        ]
    }"#;
    let span = from_json(text).unwrap();
    assert_eq!(
        span,
        Span {
            trace_id: "t".into(),
            parent_span_id: "p".into(),
            start_time: 5,
            duration: 7,
            logs: vec![Log {
                timestamp: 15,
                fields: vec![],
            }],
            tags: vec![
                Tag::long("a", 10),
                Tag::long("b", i64::MIN),
                Tag::double("c", 2.5),
                Tag::binary("d", vec![0x00, 0xff]),
                Tag::binary("e", vec![0xff, 0xef]),
                Tag::string("f", "x"),
                Tag {
                    key: "g".into(),
                    r#type: 0,
                    value: Some(TagValue::VBool(false)),
                },
                Tag {
                    key: "h".into(),
                    r#type: 0,
                    value: Some(TagValue::VLong(1000)),
                },
            ],
            ..Default::default()
        }
    );
}

#[test]
fn json_reader_names_the_place_of_an_error() {
    let cases: [(&[u8], &str); 9] = [
        (br#"[]"#, "at $: expected an object"),
        (br#"{"traceId": 1}"#, "at traceId: expected a string"),
        (
            br#"{"startTime": "12x"}"#,
            "at startTime: expected a 64-bit integer",
        ),
        (
            br#"{"duration": 9223372036854775808}"#,
            "at duration: expected a 64-bit integer",
        ),
        (
            br#"{"tags": [{"key": "a", "type": "NOPE"}]}"#,
            "at tags[0].type: unknown tag type",
        ),
        (
            br#"{"tags": [{}, {"key": "a", "vStr": "x", "vBool": true}]}"#,
            "at tags[1].vStr",
        ),
        (
            br#"{"logs": [{"fields": [{"vBytes": "@@"}]}]}"#,
            "at logs[0].fields[0].vBytes: invalid base64",
        ),
        (
            br#"{"tags": [{"vDouble": "inf"}]}"#,
            "at tags[0].vDouble: expected a number",
        ),
        (br#"{"tags": {}}"#, "at tags: expected an array"),
    ];
    for (text, expected) in cases {
        let err = from_json(text).unwrap_err().to_string();
        // The second value of a tag is reported at whichever of the two the
        // reader meets second (serde_json orders object keys).
        let expected = if expected == "at tags[1].vStr" {
            if err.contains("tags[1].vBool") {
                "at tags[1].vBool: a tag holds one value"
            } else {
                "at tags[1].vStr: a tag holds one value"
            }
        } else {
            expected
        };
        assert!(
            err.contains(expected),
            "{err:?} should contain {expected:?}"
        );
    }
    assert!(matches!(from_json(b"{"), Err(JsonError::Syntax(_))));
}

// ---------- Haystack -> OTLP ----------

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

fn only_span(req: &ExportTraceServiceRequest) -> &OtlpSpan {
    assert_eq!(req.resource_spans.len(), 1);
    assert_eq!(req.resource_spans[0].scope_spans.len(), 1);
    assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 1);
    &req.resource_spans[0].scope_spans[0].spans[0]
}

fn back(span: &Span) -> Span {
    let mut spans = spans_from_otlp(&otlp_from_spans(std::slice::from_ref(span)));
    assert_eq!(spans.len(), 1);
    spans.remove(0)
}

#[test]
fn typical_span_maps_to_native_otlp_fields_without_extra_attributes() {
    let span = Span {
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        span_id: "b7ad6b7169203331".into(),
        parent_span_id: "00f067aa0ba902b7".into(),
        service_name: "checkout".into(),
        operation_name: "GET /cart".into(),
        start_time: 1_700_000_000_000_001,
        duration: 2_500,
        logs: vec![Log {
            timestamp: 1_700_000_000_000_100,
            fields: vec![Tag::string("event", "retry"), Tag::long("attempt", 2)],
        }],
        tags: vec![
            Tag::string("span.kind", "server"),
            Tag::bool("error", true),
            Tag::string("http.method", "GET"),
            Tag::long("http.status_code", 503),
            Tag::double("ratio", 0.5),
            Tag::binary("blob", vec![1, 2]),
        ],
    };
    let req = otlp_from_spans(std::slice::from_ref(&span));
    assert_eq!(
        req.resource_spans[0].resource.as_ref().unwrap().attributes,
        vec![kv("service.name", s("checkout"))]
    );
    assert_eq!(req.resource_spans[0].scope_spans[0].scope, None);
    let o = only_span(&req);
    assert_eq!(o.trace_id, unhex("0af7651916cd43dd8448eb211c80319c"));
    assert_eq!(o.span_id, unhex("b7ad6b7169203331"));
    assert_eq!(o.parent_span_id, unhex("00f067aa0ba902b7"));
    assert_eq!(o.name, "GET /cart");
    assert_eq!(o.kind, SpanKind::Server as i32);
    assert_eq!(o.status.as_ref().unwrap().code, StatusCode::Error as i32);
    assert_eq!(o.start_time_unix_nano, 1_700_000_000_000_001_000);
    assert_eq!(o.end_time_unix_nano, 1_700_000_000_002_501_000);
    assert_eq!(
        o.attributes,
        vec![
            kv("http.method", s("GET")),
            kv("http.status_code", i(503)),
            kv("ratio", any_value::Value::DoubleValue(0.5)),
            kv("blob", any_value::Value::BytesValue(vec![1, 2])),
        ]
    );
    assert_eq!(
        o.events,
        vec![Event {
            time_unix_nano: 1_700_000_000_000_100_000,
            name: "retry".into(),
            attributes: vec![kv("attempt", i(2))],
            dropped_attributes_count: 0,
        }]
    );
    assert_eq!(back(&span), span);
}

#[test]
fn non_hex_ids_keep_their_spelling_in_attributes() {
    let uuid = "0AF76519-16CD-43DD-8448-EB211C80319C";
    let span = Span {
        trace_id: uuid.into(),
        span_id: "span-1".into(),
        parent_span_id: "B7AD6B7169203331".into(),
        ..Default::default()
    };
    let req = otlp_from_spans(std::slice::from_ref(&span));
    let o = only_span(&req);
    assert_eq!(o.trace_id, unhex("0af7651916cd43dd8448eb211c80319c"));
    assert_eq!(o.span_id, otlp_span_id("span-1"));
    assert_eq!(o.span_id.len(), 8);
    assert_eq!(o.parent_span_id, unhex("b7ad6b7169203331"));
    assert_eq!(
        o.attributes,
        vec![
            kv("haystack.trace_id", s(uuid)),
            kv("haystack.span_id", s("span-1")),
            kv("haystack.parent_span_id", s("B7AD6B7169203331")),
        ]
    );
    assert_eq!(back(&span), span);

    // A child names its parent by the same string: the OTLP ids link up.
    let child = Span {
        parent_span_id: "span-1".into(),
        ..Default::default()
    };
    let child_req = otlp_from_spans(&[child]);
    assert_eq!(only_span(&child_req).parent_span_id, o.span_id);
}

#[test]
fn a_stale_id_attribute_is_not_trusted() {
    let span = Span {
        span_id: "span-1".into(),
        ..Default::default()
    };
    let mut req = otlp_from_spans(&[span]);
    // Something rewrote the OTLP span id after the translation.
    req.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1; 8];
    let spans = spans_from_otlp(&req);
    assert_eq!(spans[0].span_id, "0101010101010101");
    assert_eq!(
        spans[0].tags,
        vec![Tag::string("haystack.span_id", "span-1")]
    );
}

#[test]
fn times_otlp_cannot_hold_are_clamped_and_kept() {
    let span = Span {
        start_time: -5,
        duration: i64::MAX,
        logs: vec![Log {
            timestamp: i64::MAX,
            fields: vec![],
        }],
        ..Default::default()
    };
    let req = otlp_from_spans(std::slice::from_ref(&span));
    let o = only_span(&req);
    assert_eq!(o.start_time_unix_nano, 0);
    assert_eq!(o.end_time_unix_nano, u64::MAX);
    assert_eq!(
        o.attributes,
        vec![
            kv("haystack.start_time", i(-5)),
            kv("haystack.duration", i(i64::MAX))
        ]
    );
    assert_eq!(o.events[0].time_unix_nano, u64::MAX);
    assert_eq!(
        o.events[0].attributes,
        vec![kv("haystack.timestamp", i(i64::MAX))]
    );
    assert_eq!(back(&span), span);

    // A negative duration that still ends at or after the epoch is plain OTLP.
    let span = Span {
        start_time: 10,
        duration: -3,
        ..Default::default()
    };
    let req = otlp_from_spans(std::slice::from_ref(&span));
    let o = only_span(&req);
    assert_eq!(
        (o.start_time_unix_nano, o.end_time_unix_nano),
        (10_000, 7_000)
    );
    assert!(o.attributes.is_empty());
    assert_eq!(back(&span), span);
}

#[test]
fn tags_that_would_not_come_back_exactly_stay_as_attributes() {
    let span = Span {
        tags: vec![
            Tag::string("http.url", "/x"),
            Tag::string("span.kind", "SERVER"),
            Tag::string("error", "true"),
        ],
        ..Default::default()
    };
    let req = otlp_from_spans(std::slice::from_ref(&span));
    let o = only_span(&req);
    // The fields are set ...
    assert_eq!(o.kind, SpanKind::Server as i32);
    assert_eq!(o.status.as_ref().unwrap().code, StatusCode::Error as i32);
    // ... and the tags kept, since the reverse would spell them differently.
    assert_eq!(
        o.attributes,
        vec![
            kv("http.url", s("/x")),
            kv("span.kind", s("SERVER")),
            kv("error", s("true"))
        ]
    );
    assert_eq!(back(&span), span);

    // Two span.kind tags: the first decides and, being in front in the
    // canonical form, is the one dropped; the second stays.
    let span = Span {
        tags: vec![
            Tag::string("span.kind", "client"),
            Tag::string("span.kind", "server"),
        ],
        ..Default::default()
    };
    let req = otlp_from_spans(std::slice::from_ref(&span));
    assert_eq!(only_span(&req).kind, SpanKind::Client as i32);
    assert_eq!(
        only_span(&req).attributes,
        vec![kv("span.kind", s("server"))]
    );
    assert_eq!(back(&span), span);
    // Behind another tag neither is in front: both stay, the first decides.
    let span = Span {
        tags: vec![
            Tag::string("x", "y"),
            Tag::string("span.kind", "server"),
            Tag::string("span.kind", "client"),
        ],
        ..Default::default()
    };
    let req = otlp_from_spans(std::slice::from_ref(&span));
    assert_eq!(only_span(&req).kind, SpanKind::Server as i32);
    assert_eq!(only_span(&req).attributes.len(), 3);
    assert_eq!(back(&span), span);
}

#[test]
fn tag_type_follows_the_value_and_valueless_tags_survive() {
    let span = Span {
        tags: vec![
            Tag {
                key: "mislabelled".into(),
                r#type: TagType::Long as i32,
                value: Some(TagValue::VStr("7".into())),
            },
            Tag {
                key: "empty".into(),
                r#type: TagType::String as i32,
                value: None,
            },
        ],
        ..Default::default()
    };
    let req = otlp_from_spans(std::slice::from_ref(&span));
    assert_eq!(
        only_span(&req).attributes,
        vec![
            kv("mislabelled", s("7")),
            KeyValue {
                key: "empty".into(),
                value: None,
                ..Default::default()
            }
        ]
    );
    let tags = back(&span).tags;
    assert_eq!(tags[0], Tag::string("mislabelled", "7"));
    assert_eq!(tags[1], span.tags[1]);
}

#[test]
fn spans_are_grouped_by_service_and_scope_in_order_of_first_appearance() {
    let span = |svc: &str, id: &str, scope: Option<&str>| Span {
        service_name: svc.into(),
        span_id: id.into(),
        tags: scope
            .map(|n| vec![Tag::string("otel.scope.name", n)])
            .unwrap_or_default(),
        ..Default::default()
    };
    let spans = [
        span("a", "1", None),
        span("b", "2", None),
        span("a", "3", Some("lib")),
        span("a", "4", None),
        span("", "5", None),
    ];
    let req = otlp_from_spans(&spans);
    let services: Vec<_> = req
        .resource_spans
        .iter()
        .map(|rs| rs.resource.as_ref().unwrap().attributes.clone())
        .collect();
    assert_eq!(
        services,
        vec![
            vec![kv("service.name", s("a"))],
            vec![kv("service.name", s("b"))],
            vec![]
        ]
    );
    let a = &req.resource_spans[0].scope_spans;
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].scope, None);
    assert_eq!(a[0].spans.len(), 2);
    assert_eq!(a[1].scope.as_ref().unwrap().name, "lib");
    assert!(a[1].spans[0]
        .attributes
        .iter()
        .all(|kv| kv.key != "otel.scope.name"));
    let order: Vec<_> = spans_from_otlp(&req)
        .into_iter()
        .map(|s| s.span_id)
        .collect();
    assert_eq!(order, ["1", "4", "3", "2", "5"]);
}

// ---------- OTLP -> Haystack ----------

#[test]
fn otlp_fields_without_a_haystack_field_become_tags_and_come_back() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("cart")), kv("host.name", s("h1"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.lib".into(),
                    version: "1.2".into(),
                    ..Default::default()
                }),
                spans: vec![OtlpSpan {
                    trace_id: vec![0xab; 16],
                    span_id: vec![0xcd; 8],
                    trace_state: "k=v".into(),
                    name: "op".into(),
                    kind: SpanKind::Internal as i32,
                    start_time_unix_nano: 1_000_000,
                    end_time_unix_nano: 3_000_000,
                    attributes: vec![kv("a", i(1))],
                    dropped_attributes_count: 4,
                    dropped_events_count: 5,
                    dropped_links_count: 6,
                    status: Some(Status {
                        code: StatusCode::Ok as i32,
                        message: "fine".into(),
                    }),
                    events: vec![Event {
                        time_unix_nano: 2_000_000,
                        name: "exception".into(),
                        attributes: vec![kv("message", s("boom"))],
                        dropped_attributes_count: 1,
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let spans = spans_from_otlp(&req);
    assert_eq!(
        spans,
        vec![Span {
            trace_id: "ab".repeat(16),
            span_id: "cd".repeat(8),
            parent_span_id: String::new(),
            service_name: "cart".into(),
            operation_name: "op".into(),
            start_time: 1_000,
            duration: 2_000,
            logs: vec![Log {
                timestamp: 2_000,
                fields: vec![
                    Tag::string("event", "exception"),
                    Tag::long("otel.dropped_attributes_count", 1),
                    Tag::string("message", "boom"),
                ],
            }],
            tags: vec![
                Tag::string("span.kind", "internal"),
                Tag::string("otel.status_code", "OK"),
                Tag::string("otel.status_description", "fine"),
                Tag::string("otel.scope.name", "io.lib"),
                Tag::string("otel.scope.version", "1.2"),
                Tag::string("w3c.tracestate", "k=v"),
                Tag::long("otel.dropped_attributes_count", 4),
                Tag::long("otel.dropped_events_count", 5),
                Tag::long("otel.dropped_links_count", 6),
                Tag::string("otel.resource.host.name", "h1"),
                Tag::long("a", 1),
            ],
        }]
    );
    assert_eq!(otlp_from_spans(&spans), req);
}

#[test]
fn what_haystack_cannot_express_is_counted_or_stringified() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans: vec![OtlpSpan {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    start_time_unix_nano: 1_999,
                    end_time_unix_nano: 5_001,
                    flags: 0x101,
                    dropped_links_count: 1,
                    links: vec![Link::default(), Link::default()],
                    attributes: vec![kv(
                        "list",
                        any_value::Value::ArrayValue(ArrayValue {
                            values: vec![AnyValue { value: Some(i(1)) }],
                        }),
                    )],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let span = &spans_from_otlp(&req)[0];
    // Sub-microsecond parts are cut: start 1 µs, end 5 µs.
    assert_eq!((span.start_time, span.duration), (1, 4));
    assert_eq!(span.service_name, "");
    assert_eq!(
        span.tags,
        vec![
            Tag::long("otel.dropped_links_count", 3),
            Tag::string("list", r#"{"arrayValue":{"values":[{"intValue":"1"}]}}"#),
        ]
    );
}
