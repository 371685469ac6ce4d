//! Tests of `extra_topics`: matching, routing, config errors, and a real
//! broker receiving exactly the matching spans.

use std::collections::BTreeMap;

use sluice_pdata::haystack::{self, Tag};

use super::super::extra::TagMatch;
use super::*;
use crate::kafka::PropertyValue;

fn hs_span(i: u32, tags: Vec<Tag>) -> haystack::Span {
    haystack::Span {
        trace_id: format!("{:032x}", 0xabc0 + i / 2),
        span_id: format!("{:016x}", 0x100 + i),
        service_name: "checkout".into(),
        operation_name: format!("op-{i}"),
        start_time: 1_700_000_000_000_000 + i64::from(i),
        duration: 1500,
        tags,
        ..Default::default()
    }
}

fn hs_batch(spans: &[haystack::Span]) -> Batch {
    Batch::new(Payload::Traces(haystack::otlp_from_spans(spans)))
}

fn matches(value: PropertyValue, tag: Tag) -> bool {
    let span = hs_span(0, vec![tag]);
    TagMatch::new("k", &value).matches(&span)
}

#[test]
fn tag_values_compare_as_documented() {
    use PropertyValue::{Bool, Float, Int, Str};
    let s = |v: &str| Str(v.to_string());
    // Strings: byte for byte.
    assert!(matches(s("prod"), Tag::string("k", "prod")));
    assert!(!matches(s("prod"), Tag::string("k", "Prod")));
    assert!(!matches(s("prod"), Tag::string("other", "prod")));
    // Bools: `true` / `false`, written as a YAML bool or string.
    assert!(matches(s("true"), Tag::bool("k", true)));
    assert!(matches(Bool(true), Tag::bool("k", true)));
    assert!(matches(Bool(true), Tag::string("k", "true")));
    assert!(!matches(s("true"), Tag::bool("k", false)));
    assert!(!matches(s("True"), Tag::bool("k", true)));
    assert!(matches(Bool(false), Tag::bool("k", false)));
    // Longs: the text read as an integer.
    assert!(matches(Int(500), Tag::long("k", 500)));
    assert!(matches(s("-7"), Tag::long("k", -7)));
    assert!(!matches(Int(500), Tag::long("k", 501)));
    assert!(!matches(s("5e2"), Tag::long("k", 500)));
    // Doubles: the text read as a number.
    assert!(matches(s("0.5"), Tag::double("k", 0.5)));
    assert!(matches(Int(3), Tag::double("k", 3.0)));
    assert!(matches(s("3.0"), Tag::double("k", 3.0)));
    assert!(matches(Float(1e3), Tag::double("k", 1000.0)));
    assert!(!matches(s("NaN"), Tag::double("k", f64::NAN)));
    assert!(!matches(s("0.5"), Tag::double("k", 0.25)));
    // A YAML float is its shortest text: 3.0 is "3".
    assert!(matches(Float(3.0), Tag::string("k", "3")));
    assert!(!matches(Float(3.0), Tag::string("k", "3.0")));
    // Bytes never match; a tag without a value neither.
    assert!(!matches(s(""), Tag::binary("k", Vec::new())));
    assert!(!matches(
        s(""),
        Tag {
            key: "k".into(),
            r#type: 0,
            value: None
        }
    ));
    // Any tag of the key may match.
    let span = hs_span(0, vec![Tag::string("k", "a"), Tag::string("k", "b")]);
    assert!(TagMatch::new("k", &s("b")).matches(&span));
}

const CONFIG: &str = "brokers: [k:9092]
traces: {topic: proto-spans, encoding: haystack_proto}
extra_topics:
  - topic: errors-only
    match_tags: {error: \"true\", env: prod}
  - topic: slow
    match_tags: {slow: true}
  - topic: errors-only
    match_tags: {team: payments}";

#[test]
fn matching_spans_are_copied_once_per_topic_with_the_same_key_and_value() {
    let spans = vec![
        hs_span(
            0,
            vec![Tag::bool("error", true), Tag::string("env", "prod")],
        ),
        hs_span(1, vec![Tag::bool("error", true), Tag::string("env", "dev")]),
        hs_span(2, vec![Tag::string("env", "prod")]),
        hs_span(
            3,
            vec![
                Tag::string("error", "true"),
                Tag::string("env", "prod"),
                Tag::bool("slow", true),
            ],
        ),
        hs_span(4, vec![Tag::string("team", "payments")]),
        hs_span(
            5,
            vec![
                Tag::string("team", "payments"),
                Tag::bool("error", true),
                Tag::string("env", "prod"),
            ],
        ),
    ];
    let plan = Plan::new(&config(CONFIG));
    assert_eq!(
        plan.extra_topics().collect::<Vec<_>>(),
        vec!["errors-only", "slow"]
    );
    let built = plan.build(&hs_batch(&spans));
    assert_eq!(built.rejected, 0);
    let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut own_value = HashMap::new();
    for m in &built.messages {
        let span = crate::kafka::decode_haystack(Encoding::HaystackProto, &m.value).unwrap();
        assert_eq!(m.key.as_deref(), Some(span.trace_id.as_bytes()));
        assert_eq!(m.items, 1);
        let expected_extra = match m.topic.as_str() {
            "proto-spans" => None,
            "errors-only" => Some(0),
            "slow" => Some(1),
            t => panic!("unexpected topic {t}"),
        };
        assert_eq!(m.extra, expected_extra, "{}", m.topic);
        if m.extra.is_none() {
            own_value.insert(span.span_id.clone(), m.value.clone());
        } else {
            assert_eq!(
                own_value.get(&span.span_id),
                Some(&m.value),
                "a copy follows its span's own message and carries the same bytes"
            );
        }
        by_topic
            .entry(m.topic.as_str())
            .or_default()
            .push(span.operation_name);
    }
    let ops = |v: &[u32]| v.iter().map(|i| format!("op-{i}")).collect::<Vec<_>>();
    assert_eq!(by_topic["proto-spans"], ops(&[0, 1, 2, 3, 4, 5]));
    assert_eq!(by_topic["errors-only"], ops(&[0, 3, 4, 5]));
    assert_eq!(by_topic["slow"], ops(&[3]));
}

#[test]
fn spans_from_otlp_match_on_their_haystack_tags() {
    // An OTLP error status becomes the bool tag `error`, a string
    // attribute a string tag.
    let mut batch = traces();
    if let Payload::Traces(r) = &mut *batch.make_mut() {
        let s = &mut r.resource_spans[0].scope_spans[0].spans[1];
        s.status = Some(sluice_pdata::otlp::trace::v1::Status {
            code: sluice_pdata::otlp::trace::v1::status::StatusCode::Error as i32,
            ..Default::default()
        });
        s.attributes.push(KeyValue {
            key: "env".into(),
            value: Some(string_value("prod")),
            ..Default::default()
        });
    }
    let built = Plan::new(&config(CONFIG)).build(&batch);
    let copies: Vec<(&str, String)> = built
        .messages
        .iter()
        .filter(|m| m.extra.is_some())
        .map(|m| {
            let span = crate::kafka::decode_haystack(Encoding::HaystackProto, &m.value).unwrap();
            (m.topic.as_str(), span.operation_name)
        })
        .collect();
    assert_eq!(copies, vec![("errors-only", "db query".to_string())]);
    assert_eq!(built.messages.len(), 4);
}

#[test]
fn a_span_routed_to_an_extra_topic_by_attribute_is_not_written_twice() {
    let c = config(&format!("{CONFIG}\ntopic_from_attribute: kafka.topic"));
    let spans = vec![hs_span(
        0,
        vec![
            Tag::string("otel.resource.kafka.topic", "slow"),
            Tag::bool("slow", true),
            Tag::string("team", "payments"),
        ],
    )];
    let built = Plan::new(&c).build(&hs_batch(&spans));
    let topics: Vec<&str> = built.messages.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(topics, vec!["slow", "errors-only"]);
}

#[test]
fn config_errors_name_the_extra_topics_field() {
    let hs = "brokers: [k:9092]\ntraces: {encoding: haystack_json}\n";
    // OTLP encodings carry many spans per message: refused.
    let e = errors("brokers: [k:9092]\nextra_topics: [{topic: x, match_tags: {a: b}}]");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "extra_topics");
    assert!(e[0].message.contains("otlp_proto"), "{}", e[0].message);
    assert_eq!(
        error_paths(&format!(
            "{hs}encoding: otlp_json\nextra_topics: [{{topic: x, match_tags: {{a: b}}}}]"
        ))
        .len(),
        0,
        "the traces' own encoding counts"
    );
    assert_eq!(
            error_paths(&format!(
                "{hs}extra_topics: [{{topic: ok, match_tags: {{a: b}}}}, {{topic: x, match_tags: {{}}}}]"
            )),
            vec!["extra_topics::1::match_tags"]
        );
    assert_eq!(
        error_paths(&format!("{hs}extra_topics: [{{topic: x}}]")),
        vec!["extra_topics::0::match_tags"]
    );
    assert_eq!(
        error_paths(&format!(
            "{hs}extra_topics: [{{topic: 'a/b', match_tags: {{a: b}}}}]"
        )),
        vec!["extra_topics::0::topic"]
    );
    assert_eq!(
        error_paths(&format!("{hs}extra_topics: [{{match_tags: {{a: b}}}}]")),
        vec!["extra_topics::0::topic"]
    );
    assert_eq!(
        error_paths(&format!(
            "{hs}extra_topics: [{{topic: otlp_spans, match_tags: {{a: b}}}}]"
        )),
        vec!["extra_topics::0::topic"]
    );
    assert_eq!(
        error_paths(&format!(
            "{hs}extra_topics: [{{topic: x, match_tags: {{'': b}}}}]"
        )),
        vec!["extra_topics::0::match_tags"]
    );
    let e = errors(&format!(
        "{hs}extra_topics: [{{topic: x, match_tag: {{a: b}}}}]"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].path.starts_with("extra_topics"), "{e:?}");
    let e = errors(&format!(
        "{hs}extra_topics: [{{topic: x, match_tags: {{a: [1, 2]}}}}]"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].path.starts_with("extra_topics"), "{e:?}");
}

#[test]
fn extra_topics_without_a_traces_pipeline_fail_the_build() {
    let (mut ctx, _t) = build_context("kafka");
    ctx.signals = vec![Signal::Logs];
    let c = config(
            "brokers: [k:9092]\ntraces: {encoding: haystack_proto}\nextra_topics: [{topic: x, match_tags: {a: b}}]",
        );
    let err = KafkaExporterFactory
        .create(ctx.clone(), &c)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("extra_topics"), "{err}");
    ctx.signals = vec![Signal::Traces, Signal::Logs];
    assert!(KafkaExporterFactory.create(ctx, &c).is_ok());
}

fn counter_value(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_topic_receives_exactly_the_matching_spans_keyed_by_trace_id() {
    let broker = Broker::start();
    broker.create_topic("proto-spans", 2).await;
    broker.create_topic("errors-only", 2).await;
    broker.create_topic("slow", 1).await;
    let (ctx, telemetry) = build_context("kafka/hs");
    let sender =
        KafkaSender::new(&ctx, &config(&CONFIG.replace("k:9092", &broker.address()))).unwrap();
    sender.start().await.unwrap();
    // 30 spans over 15 traces; every third is an error in prod, every
    // fifth an error elsewhere, every seventh a prod span without error.
    let mut spans = Vec::new();
    let mut want_errors = HashSet::new();
    for i in 0..30u32 {
        let mut tags = vec![
            Tag::string("component", "http"),
            Tag::long("http.status_code", 200),
        ];
        if i % 3 == 0 {
            tags.push(Tag::bool("error", true));
            tags.push(Tag::string("env", "prod"));
        } else if i % 5 == 0 {
            tags.push(Tag::bool("error", true));
            tags.push(Tag::string("env", "staging"));
        } else if i % 7 == 0 {
            tags.push(Tag::string("env", "prod"));
        }
        let span = hs_span(i, tags);
        if i % 3 == 0 {
            want_errors.insert(span.span_id.clone());
        }
        spans.push(span);
    }
    // Acknowledged only when every message, copies included, is.
    sender.send(&hs_batch(&spans)).await.unwrap();

    let all = read(&broker, "proto-spans", 30).await;
    assert_eq!(all.len(), 30);
    let b = broker.address();
    let extra = tokio::task::spawn_blocking(move || {
        // Everything was acknowledged: what is there now is all there is.
        read_topic(&b, "errors-only", 100, Duration::from_secs(5))
    })
    .await
    .unwrap();
    let mut got = HashSet::new();
    for m in &extra {
        let span = crate::kafka::decode_haystack(Encoding::HaystackProto, value(m)).unwrap();
        assert_eq!(
            m.key(),
            Some(span.trace_id.as_bytes()),
            "keyed by the trace id"
        );
        assert_eq!(
            span.tags
                .iter()
                .find(|t| t.key == "env")
                .and_then(|t| t.value.clone()),
            Some(haystack::TagValue::VStr("prod".into()))
        );
        assert!(got.insert(span.span_id), "each span once");
    }
    assert_eq!(got, want_errors);
    assert_eq!(extra.len(), 10);
    let text = telemetry.encode();
    assert_eq!(
            counter_value(
                &text,
                "sluice_kafka_exporter_extra_topic_messages_sent_total{exporter=\"kafka/hs\",topic=\"errors-only\"}"
            ),
            Some(10),
            "{text}"
        );
    assert_eq!(
            counter_value(
                &text,
                "sluice_kafka_exporter_extra_topic_messages_sent_total{exporter=\"kafka/hs\",topic=\"slow\"}"
            ),
            Some(0),
            "{text}"
        );
    assert_eq!(
        counter_value(&text, "sluice_kafka_exporter_messages_sent_total"),
        Some(40),
        "{text}"
    );
    sender.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_copy_fails_the_batch() {
    let mut broker = Broker::start();
    let address = broker.address();
    broker.kill();
    let (ctx, telemetry) = build_context("kafka/down");
    let sender = KafkaSender::new(
        &ctx,
        &config(&format!(
            "{}\ntimeout: 1s",
            CONFIG.replace("k:9092", &address)
        )),
    )
    .unwrap();
    sender.start().await.unwrap();
    let spans = [hs_span(0, vec![Tag::bool("slow", true)])];
    match sender.send(&hs_batch(&spans)).await {
        Err(SendError::Retryable { message, .. }) => {
            assert!(message.contains("2 of 2 messages"), "{message}")
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    let text = telemetry.encode();
    assert_eq!(
        counter_value(&text, "sluice_kafka_exporter_messages_failed_total"),
        Some(2),
        "{text}"
    );
    sender.shutdown().await.unwrap();
}
