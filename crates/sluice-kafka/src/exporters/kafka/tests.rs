//! Tests of the `kafka` exporter: config checks and message building on
//! their own, then producing to a real broker (Tansu, started per test) and
//! reading the messages back with a plain librdkafka consumer.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::message::Message as _;
use sluice_core::exporter_helper::{SendError, Sender};
use sluice_core::factory::parse_config;
use sluice_core::{ComponentConfig, Signal};
use sluice_pdata::otlp::common::v1::KeyValue;
use sluice_pdata::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use sluice_pdata::{Batch, ExportTraceServiceRequest, Payload};

use super::messages::{hex, resource_key};
use super::*;
use crate::kafka::test_support::{read_topic, value, Broker};
use sluice_core::ExporterFactory;
use sluice_shared::test_support::{build_context, logs, metrics, span, string_value, traces, yaml};

fn config(body: &str) -> KafkaExporterConfig {
    let parsed: KafkaExporterConfig = serde_yaml_ng::from_value(yaml(body)).unwrap();
    let errors = parsed.validate();
    assert!(errors.is_empty(), "unexpected config errors: {errors:?}");
    parsed
}

fn errors(body: &str) -> Vec<FieldError> {
    match parse_config::<KafkaExporterConfig>(&yaml(body)) {
        Ok(_) => Vec::new(),
        Err(e) => e,
    }
}

fn error_paths(body: &str) -> Vec<String> {
    errors(body).into_iter().map(|e| e.path).collect()
}

// ------------------------------------------------------------------ config

#[test]
fn defaults_are_documented_ones() {
    let c = config("brokers: ['k1:9092, k2:9092', k3:9093]");
    assert_eq!(
        c.client().client_config(&[], &[]).get("bootstrap.servers"),
        Some("k1:9092,k2:9092,k3:9093")
    );
    assert_eq!(c.topic(Signal::Traces), "otlp_spans");
    assert_eq!(c.topic(Signal::Metrics), "otlp_metrics");
    assert_eq!(c.topic(Signal::Logs), "otlp_logs");
    assert_eq!(c.encoding(Signal::Logs).1, Encoding::OtlpProto);
    assert_eq!(c.compression, Compression::None);
    assert_eq!(c.max_message_bytes, 1_000_000);
    assert_eq!(c.timeout, Duration::from_secs(30));
    assert_eq!(c.client_id, "sluice");
    assert!(!c.partition_traces_by_id);
}

#[test]
fn signal_settings_override_the_shared_ones() {
    let c = config(
        "brokers: [k:9092]\ntopic: all\nencoding: otlp_json\nlogs: {topic: only-logs, encoding: otlp_proto}",
    );
    assert_eq!(c.topic(Signal::Traces), "all");
    assert_eq!(c.topic(Signal::Logs), "only-logs");
    assert_eq!(c.encoding(Signal::Traces).1, Encoding::OtlpJson);
    assert_eq!(c.encoding(Signal::Logs).1, Encoding::OtlpProto);
}

#[test]
fn config_errors_name_their_field() {
    assert_eq!(error_paths("topic: x"), vec!["brokers"]);
    assert_eq!(error_paths("brokers: [nohost]"), vec!["brokers::0"]);
    assert_eq!(
        error_paths("brokers: [k:9092, 'k:notaport']"),
        vec!["brokers::1"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\ntopic: 'bad topic'"),
        vec!["topic"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\nmetrics: {topic: 'a/b'}"),
        vec!["metrics::topic"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\nmax_message_bytes: 10"),
        vec!["max_message_bytes"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\nlogs: {encoding: haystack_json}"),
        vec!["logs::encoding"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\ncompression: brotli"),
        vec!["compression"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\nauth: {tls: {cert_file: /c.pem}}"),
        vec!["auth::tls::key_file"]
    );
    assert_eq!(
        error_paths(
            "brokers: [k:9092]\nauth: {sasl: {mechanism: PLAIN, username: u, password: ''}}"
        ),
        vec!["auth::sasl::password"]
    );
    assert_eq!(
        error_paths(
            "brokers: [k:9092]\nauth: {sasl: {mechanism: GSSAPI, username: u, password: p}}"
        ),
        vec!["auth::sasl::mechanism"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\nbrokerz: 1"),
        vec!["brokerz"]
    );
}

#[test]
fn properties_are_checked_by_librdkafka_and_reserved_ones_refused() {
    assert!(errors("brokers: [k:9092]\nproperties: {linger.ms: 20, batch.num.messages: 5000, socket.keepalive.enable: true}").is_empty());
    let e = errors("brokers: [k:9092]\nproperties: {no.such.thing: 1}");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "properties::no.such.thing");
    assert!(e[0].message.contains("no.such.thing"), "{}", e[0].message);
    let e = errors("brokers: [k:9092]\nproperties: {linger.ms: lots}");
    assert_eq!(e[0].path, "properties::linger.ms");
    let e = errors("brokers: [k:9092]\nproperties: {acks: 1}");
    assert_eq!(e[0].path, "properties::acks");
    assert!(e[0].message.contains("always `all`"), "{}", e[0].message);
    let e = errors("brokers: [k:9092]\nproperties: {bootstrap.servers: x:1}");
    assert!(e[0].message.contains("brokers"), "{}", e[0].message);
    let e = errors("brokers: [k:9092]\nproperties: {enable.idempotence: false}");
    assert_eq!(e[0].path, "properties::enable.idempotence");
}

#[test]
fn tls_and_sasl_settle_the_security_protocol() {
    let c = config(
        "brokers: [k:9093]\nauth: {sasl: {mechanism: SCRAM-SHA-512, username: u, password: p}, tls: {insecure_skip_verify: true}}",
    );
    let rd = c.client().client_config(&[], &[]);
    assert_eq!(rd.get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(rd.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    assert_eq!(rd.get("sasl.username"), Some("u"));
    assert_eq!(rd.get("enable.ssl.certificate.verification"), Some("false"));
    // `tls:` with no body turns TLS on with defaults.
    let c = config("brokers: [k:9093]\nauth:\n  tls:\n");
    assert_eq!(
        c.client().client_config(&[], &[]).get("security.protocol"),
        Some("ssl")
    );
    let c = config("brokers: [k:9092]");
    assert_eq!(
        c.client().client_config(&[], &[]).get("security.protocol"),
        Some("plaintext")
    );
}

// ---------------------------------------------------------------- messages

fn many_spans(traces: u8, per_trace: u8) -> Batch {
    let mut spans = Vec::new();
    for t in 0..traces {
        for s in 0..per_trace {
            spans.push(span(
                t + 1,
                t.wrapping_mul(16).wrapping_add(s),
                &format!("span-{t}-{s}"),
            ));
        }
    }
    Batch::new(Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

fn span_names(p: &Payload) -> Vec<String> {
    let Payload::Traces(r) = p else {
        panic!("not traces")
    };
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.name.clone())
        .collect()
}

#[test]
fn an_encoded_batch_is_produced_from_its_own_bytes() {
    let bytes = traces().to_bytes();
    let batch = Batch::from_encoded(Signal::Traces, bytes.clone()).unwrap();
    let built = Plan::new(&config("brokers: [k:9092]")).build(&batch);
    assert_eq!(built.messages.len(), 1);
    let m = &built.messages[0];
    assert_eq!(
        m.value.as_ptr(),
        bytes.as_ptr(),
        "the value is the batch's buffer"
    );
    assert!(!batch.is_decoded(), "nothing was decoded");
    assert_eq!(
        (m.topic.as_str(), m.key.as_ref(), m.items),
        ("otlp_spans", None, 3)
    );
}

#[test]
fn batches_over_max_message_bytes_are_split_with_every_item_kept() {
    for encoding in ["otlp_proto", "otlp_json"] {
        let c = config(&format!(
            "brokers: [k:9092]\nmax_message_bytes: 1500\nencoding: {encoding}"
        ));
        let batch = many_spans(10, 10);
        let built = Plan::new(&c).build(&batch);
        assert!(built.messages.len() > 1, "{encoding}: split");
        assert_eq!(built.rejected, 0);
        let mut names = Vec::new();
        for m in &built.messages {
            assert!(m.value.len() <= 1500, "{encoding}: {} bytes", m.value.len());
            let p = crate::kafka::decode(
                Signal::Traces,
                c.encoding(Signal::Traces).1,
                m.value.clone(),
            )
            .unwrap()
            .into_payload();
            assert_eq!(p.item_count(), m.items);
            names.extend(span_names(&p));
        }
        assert_eq!(names, span_names(batch.payload()), "{encoding}: order kept");
    }
}

#[test]
fn an_item_too_large_on_its_own_is_rejected_and_counted_not_sent() {
    let mut batch = many_spans(1, 3);
    if let Payload::Traces(r) = &mut *batch.make_mut() {
        r.resource_spans[0].scope_spans[0].spans[1].name = "x".repeat(5000);
    }
    let built = Plan::new(&config("brokers: [k:9092]\nmax_message_bytes: 1000")).build(&batch);
    assert_eq!(built.rejected, 1);
    let sent: usize = built.messages.iter().map(|m| m.items).sum();
    assert_eq!(sent, 2);
}

#[test]
fn partition_traces_by_id_makes_one_message_per_trace_keyed_by_its_id() {
    let c = config("brokers: [k:9092]\npartition_traces_by_id: true");
    // Two resources; trace 1 spans both.
    let batch = traces();
    let built = Plan::new(&c).build(&batch);
    let mut by_key: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    for m in &built.messages {
        let p = Payload::decode_proto(Signal::Traces, &m.value).unwrap();
        let Payload::Traces(r) = &p else {
            unreachable!()
        };
        for rs in &r.resource_spans {
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    assert_eq!(m.key.as_deref(), Some(hex(&s.trace_id).as_slice()));
                }
            }
        }
        by_key
            .entry(m.key.clone().unwrap())
            .or_default()
            .extend(span_names(&p));
    }
    assert_eq!(built.messages.len(), 2);
    assert_eq!(
        by_key[&b"01010101010101010101010101010101".to_vec()],
        vec!["GET /a", "db query"]
    );
    assert_eq!(
        by_key[&b"02020202020202020202020202020202".to_vec()],
        vec!["handle"]
    );
}

#[test]
fn partitioning_by_trace_keeps_resources_and_scopes() {
    // Trace 1 has spans under two resources: both resources are in its message.
    let mut batch = traces();
    if let Payload::Traces(r) = &mut *batch.make_mut() {
        r.resource_spans[1].scope_spans[0].spans[0].trace_id = vec![1; 16];
    }
    let c = config("brokers: [k:9092]\npartition_traces_by_id: true");
    let built = Plan::new(&c).build(&batch);
    assert_eq!(built.messages.len(), 1);
    let Payload::Traces(r) =
        Payload::decode_proto(Signal::Traces, &built.messages[0].value).unwrap()
    else {
        unreachable!()
    };
    let Payload::Traces(orig) = batch.payload() else {
        unreachable!()
    };
    assert_eq!(&r, orig, "one trace: the request is unchanged");
}

#[test]
fn resource_keys_ignore_attribute_order_and_differ_by_value() {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(string_value(v)),
        ..Default::default()
    };
    let r1 = sluice_pdata::otlp::resource::v1::Resource {
        attributes: vec![kv("a", "1"), kv("b", "2")],
        ..Default::default()
    };
    let r2 = sluice_pdata::otlp::resource::v1::Resource {
        attributes: vec![kv("b", "2"), kv("a", "1")],
        ..Default::default()
    };
    let r3 = sluice_pdata::otlp::resource::v1::Resource {
        attributes: vec![kv("a", "1"), kv("b", "3")],
        ..Default::default()
    };
    assert_eq!(resource_key(Some(&r1)), resource_key(Some(&r2)));
    assert_ne!(resource_key(Some(&r1)), resource_key(Some(&r3)));
    assert_eq!(resource_key(Some(&r1)).len(), 16);
}

#[test]
fn topic_from_attribute_routes_each_resource() {
    let mut batch = logs();
    if let Payload::Logs(r) = &mut *batch.make_mut() {
        let mut second = r.resource_logs[0].clone();
        second.resource.as_mut().unwrap().attributes.push(KeyValue {
            key: "kafka.topic".into(),
            value: Some(string_value("team-a-logs")),
            ..Default::default()
        });
        r.resource_logs.push(second);
    }
    let c = config(
        "brokers: [k:9092]\ntopic_from_attribute: kafka.topic\npartition_logs_by_resource_attributes: true",
    );
    let built = Plan::new(&c).build(&batch);
    let topics: Vec<&str> = built.messages.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(topics, vec!["otlp_logs", "team-a-logs"]);
    assert!(built
        .messages
        .iter()
        .all(|m| m.key.as_ref().is_some_and(|k| k.len() == 16)));
    assert_ne!(built.messages[0].key, built.messages[1].key);
    assert_eq!(built.messages.iter().map(|m| m.items).sum::<usize>(), 4);
}

// ------------------------------------------------------------ with a broker

async fn started_sender(body: &str) -> KafkaSender {
    let (ctx, _t) = build_context("kafka");
    let s = KafkaSender::new(&ctx, &config(body)).unwrap();
    s.start().await.unwrap();
    s
}

async fn read(broker: &Broker, topic: &str, want: usize) -> Vec<rdkafka::message::OwnedMessage> {
    let (b, t) = (broker.address(), topic.to_string());
    tokio::task::spawn_blocking(move || read_topic(&b, &t, want, Duration::from_secs(30)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_and_encoding_is_produced_and_reads_back_equal() {
    let broker = Broker::start();
    for encoding in [Encoding::OtlpProto, Encoding::OtlpJson] {
        let suffix = encoding.as_str();
        let sender = started_sender(&format!(
            "brokers: [{}]\nencoding: {suffix}\ntraces: {{topic: t-{suffix}}}\nmetrics: {{topic: m-{suffix}}}\nlogs: {{topic: l-{suffix}}}",
            broker.address()
        ))
        .await;
        for (batch, topic) in [
            (traces(), format!("t-{suffix}")),
            (metrics(), format!("m-{suffix}")),
            (logs(), format!("l-{suffix}")),
        ] {
            broker.create_topic(&topic, 1).await;
            sender.send(&batch).await.unwrap();
            let got = read(&broker, &topic, 1).await;
            assert_eq!(got.len(), 1, "{topic}");
            let back =
                crate::kafka::decode(batch.signal(), encoding, value(&got[0]).to_vec().into())
                    .unwrap();
            assert_eq!(back.payload(), batch.payload(), "{topic}");
        }
        sender.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_is_accepted_by_the_broker_and_reads_back() {
    let broker = Broker::start();
    for compression in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("c-{compression}");
        broker.create_topic(&topic, 1).await;
        let sender = started_sender(&format!(
            "brokers: [{}]\ntopic: {topic}\ncompression: {compression}",
            broker.address()
        ))
        .await;
        sender.send(&many_spans(5, 20)).await.unwrap();
        let got = read(&broker, &topic, 1).await;
        assert_eq!(got.len(), 1, "{compression}");
        let back = Payload::decode_proto(Signal::Traces, value(&got[0])).unwrap();
        assert_eq!(back.item_count(), 100, "{compression}");
        sender.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_stays_on_one_partition() {
    let broker = Broker::start();
    broker.create_topic("by-trace", 8).await;
    let sender = started_sender(&format!(
        "brokers: [{}]\ntopic: by-trace\npartition_traces_by_id: true",
        broker.address()
    ))
    .await;
    // The same 40 traces in three batches: each batch makes 40 messages.
    for _ in 0..3 {
        sender.send(&many_spans(40, 3)).await.unwrap();
    }
    let got = read(&broker, "by-trace", 120).await;
    assert_eq!(got.len(), 120);
    let mut partitions_of: HashMap<Vec<u8>, HashSet<i32>> = HashMap::new();
    for m in &got {
        let key = m.key().expect("every message has a key").to_vec();
        let p = Payload::decode_proto(Signal::Traces, value(m)).unwrap();
        let Payload::Traces(r) = &p else {
            unreachable!()
        };
        let span = &r.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(key, hex(&span.trace_id));
        partitions_of.entry(key).or_default().insert(m.partition());
    }
    assert_eq!(partitions_of.len(), 40);
    assert!(
        partitions_of.values().all(|p| p.len() == 1),
        "{partitions_of:?}"
    );
    let used: HashSet<i32> = partitions_of.values().flatten().copied().collect();
    assert!(
        used.len() > 1,
        "40 keys spread over the partitions: {used:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_retryable_failure_counted_per_message() {
    let mut broker = Broker::start();
    let address = broker.address();
    broker.kill();
    let (ctx, telemetry) = build_context("kafka/down");
    let sender =
        KafkaSender::new(&ctx, &config(&format!("brokers: [{address}]\ntimeout: 1s"))).unwrap();
    sender.start().await.unwrap();
    match sender.send(&traces()).await {
        Err(SendError::Retryable { message, .. }) => {
            assert!(
                message.contains("1 of 1 messages (3 items) not delivered"),
                "{message}"
            )
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    let text = telemetry.encode();
    assert!(
        text.contains("sluice_kafka_exporter_messages_failed_total{exporter=\"kafka/down\"} 1"),
        "{text}"
    );
    sender.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_batches_all_arrive_within_the_size_limit() {
    let broker = Broker::start();
    broker.create_topic("split", 1).await;
    let (ctx, telemetry) = build_context("kafka/split");
    let sender = KafkaSender::new(
        &ctx,
        &config(&format!(
            "brokers: [{}]\ntopic: split\nmax_message_bytes: 2000",
            broker.address()
        )),
    )
    .unwrap();
    sender.start().await.unwrap();
    let batch = many_spans(20, 10);
    sender.send(&batch).await.unwrap();
    let text = telemetry.encode();
    let sent: u64 = text
        .lines()
        .find(|l| l.starts_with("sluice_kafka_exporter_messages_sent_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("messages_sent counter");
    assert!(sent > 1);
    let got = read(&broker, "split", sent as usize).await;
    assert_eq!(got.len() as u64, sent);
    let mut spans = 0;
    for m in &got {
        assert!(value(m).len() <= 2000);
        spans += Payload::decode_proto(Signal::Traces, value(m))
            .unwrap()
            .item_count();
    }
    assert_eq!(spans, 200);
    sender.shutdown().await.unwrap();
}

#[tokio::test]
async fn batches_accepted_while_the_broker_restarts_are_sent_from_the_queue() {
    let mut broker = Broker::start();
    broker.create_topic("restart", 1).await;
    let (ctx, _t) = build_context("kafka/restart");
    let exporter = KafkaExporterFactory
        .create(
            ctx,
            &config(&format!(
                "brokers: [{}]\ntopic: restart\ntimeout: 2s\nretry_on_failure: {{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0s}}",
                broker.address()
            )),
        )
        .unwrap();
    exporter.start().await.unwrap();
    exporter.consume(many_spans(1, 10)).await.unwrap();
    assert_eq!(read(&broker, "restart", 1).await.len(), 1);
    // The broker goes away (with its in-memory data); the pipeline keeps
    // handing batches to the exporter's queue meanwhile.
    broker.kill();
    for _ in 0..5 {
        exporter.consume(many_spans(2, 10)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A new, empty broker on the same port.
    broker.restart();
    broker.create_topic("restart", 1).await;
    let got = read(&broker, "restart", 5).await;
    let spans: usize = got
        .iter()
        .map(|m| {
            Payload::decode_proto(Signal::Traces, value(m))
                .unwrap()
                .item_count()
        })
        .sum();
    if spans < 100 {
        eprintln!("{}", _t.encode());
    }
    assert!(
        spans >= 100,
        "every batch accepted during the outage arrived ({spans} spans)"
    );
    exporter.shutdown().await.unwrap();
}

#[test]
fn haystack_encodings_make_one_message_per_span_keyed_by_trace_id() {
    for encoding in [Encoding::HaystackProto, Encoding::HaystackJson] {
        let c = config(&format!(
            "brokers: [k:9092]\ntraces: {{encoding: {}}}",
            encoding.as_str()
        ));
        let built = Plan::new(&c).build(&traces());
        assert_eq!(built.messages.len(), 3, "{encoding:?}");
        let mut names = Vec::new();
        for m in &built.messages {
            let span = crate::kafka::decode_haystack(encoding, &m.value).unwrap();
            assert_eq!(m.key.as_deref(), Some(span.trace_id.as_bytes()));
            assert_eq!(m.items, 1);
            names.push((span.service_name, span.operation_name));
        }
        assert_eq!(
            names,
            vec![
                ("frontend".to_string(), "GET /a".to_string()),
                ("frontend".to_string(), "db query".to_string()),
                ("backend".to_string(), "handle".to_string()),
            ]
        );
        assert_eq!(
            built.messages[0].key.as_deref(),
            Some(&b"01010101010101010101010101010101"[..])
        );
    }
}

#[test]
fn haystack_is_refused_for_metrics_and_logs_even_when_shared() {
    use sluice_core::{BuildContext, ExporterFactory};
    let (mut ctx, _t) = build_context("kafka");
    ctx.signals = vec![Signal::Logs];
    let err = KafkaExporterFactory
        .create(
            ctx.clone(),
            &config("brokers: [k:9092]\nencoding: haystack_proto"),
        )
        .err()
        .expect("refused");
    assert!(err.to_string().contains("encoding"), "{err}");
    ctx.signals = vec![Signal::Traces];
    let _: &BuildContext = &ctx;
    assert!(KafkaExporterFactory
        .create(ctx, &config("brokers: [k:9092]\nencoding: haystack_proto"))
        .is_ok());
}

// ------------------------------------------------------------ extra_topics

mod extra_topics;
