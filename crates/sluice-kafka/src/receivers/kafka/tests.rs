//! Tests of the `kafka` receiver against a real broker (Tansu, one per
//! test): the `kafka` exporter (or a plain librdkafka producer) writes, the
//! receiver reads into a recording pipeline.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sluice_core::exporter_helper::Sender;
use sluice_core::factory::parse_config;
use sluice_core::{
    Batch, BuildContext, ComponentConfig, ComponentId, ConsumeError, Consumer, ConsumerRef,
    FieldError, Health, Kind, Lifecycle, Payload, Signal, SignalConsumers, Telemetry,
};
use tokio::sync::Notify;

use super::*;
use crate::exporters::kafka::{KafkaExporterConfig, KafkaSender};
use crate::kafka::test_support::Broker;
use crate::kafka::Encoding;
use sluice_shared::test_support::{build_context, logs, metrics, traces, yaml};

/// Settings every test consumer uses: short sessions, so that joining and
/// leaving a group takes a second or two on Tansu.
const FAST_GROUP: &str =
    "properties: {session.timeout.ms: 3000, heartbeat.interval.ms: 300, topic.metadata.refresh.interval.ms: 1000}";

/// A pipeline that records what it accepts; it can refuse the first
/// `refuse_first` calls, or hold every call until released.
#[derive(Default)]
struct Recorder {
    accepted: Mutex<Vec<Batch>>,
    calls: AtomicUsize,
    refuse_first: AtomicUsize,
    blocked: AtomicBool,
    released: Notify,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    fn batches(&self) -> Vec<Batch> {
        self.accepted.lock().unwrap().clone()
    }

    fn items(&self) -> usize {
        self.batches().iter().map(Batch::items).sum()
    }

    fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
    }

    fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
        self.released.notify_waiters();
    }
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        loop {
            let released = self.released.notified();
            if !self.blocked.load(Ordering::SeqCst) {
                break;
            }
            released.await;
        }
        if self
            .refuse_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(ConsumeError::overloaded("test pipeline is full"));
        }
        self.accepted.lock().unwrap().push(batch);
        Ok(())
    }
}

fn consumers(r: &Arc<Recorder>, signals: &[Signal]) -> SignalConsumers {
    let c: ConsumerRef = r.clone();
    let mut s = SignalConsumers::default();
    for &signal in signals {
        s.set(signal, c.clone());
    }
    s
}

fn ctx(id: &str, telemetry: &Arc<Telemetry>) -> BuildContext {
    BuildContext {
        id: ComponentId::parse(id).unwrap(),
        kind: Kind::Receiver,
        pipeline: None,
        signal: None,
        telemetry: telemetry.clone(),
        health: Health::default(),
        extensions: Default::default(),
        signals: Signal::ALL.to_vec(),
    }
}

fn config(body: &str) -> KafkaReceiverConfig {
    let parsed: KafkaReceiverConfig = serde_yaml_ng::from_value(yaml(body)).unwrap();
    let errors = parsed.validate();
    assert!(errors.is_empty(), "unexpected config errors: {errors:?}");
    parsed
}

fn error_paths(body: &str) -> Vec<String> {
    match parse_config::<KafkaReceiverConfig>(&yaml(body)) {
        Ok(_) => Vec::new(),
        Err(e) => e.into_iter().map(|e: FieldError| e.path).collect(),
    }
}

/// A started receiver with its telemetry.
struct Running {
    receiver: KafkaReceiver,
    telemetry: Arc<Telemetry>,
}

impl Running {
    async fn start(id: &str, body: &str, pipeline: &Arc<Recorder>, signals: &[Signal]) -> Running {
        let telemetry = Telemetry::new(sluice_core::telemetry::MetricsLevel::Normal);
        let receiver = KafkaReceiver::new(
            &ctx(id, &telemetry),
            &config(body),
            &consumers(pipeline, signals),
        )
        .unwrap();
        receiver.start().await.unwrap();
        Running {
            receiver,
            telemetry,
        }
    }

    fn metric(&self, prefix: &str) -> Vec<(String, f64)> {
        self.telemetry
            .encode()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| {
                let (name, v) = l.rsplit_once(' ')?;
                Some((name.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    fn counter(&self, prefix: &str) -> f64 {
        self.metric(prefix).iter().map(|(_, v)| v).sum()
    }

    async fn stop(self) {
        self.receiver.shutdown().await.unwrap();
    }
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sender(broker: &Broker, extra: &str) -> KafkaSender {
    let (ctx, _) = build_context("kafka");
    let c: KafkaExporterConfig =
        serde_yaml_ng::from_value(yaml(&format!("brokers: [{}]\n{extra}", broker.address())))
            .unwrap();
    let s = KafkaSender::new(&ctx, &c).unwrap();
    s.start().await.unwrap();
    s
}

fn producer(broker: &Broker) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .create()
        .unwrap()
}

async fn produce(
    p: &FutureProducer,
    topic: &str,
    partition: i32,
    value: &[u8],
    headers: Option<OwnedHeaders>,
) {
    let mut r = FutureRecord::<[u8], [u8]>::to(topic)
        .payload(value)
        .partition(partition);
    if let Some(h) = headers {
        r = r.headers(h);
    }
    p.send(r, Duration::from_secs(10))
        .await
        .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
}

fn span_names(batches: &[Batch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        if let Payload::Traces(r) = b.payload() {
            for rs in &r.resource_spans {
                for ss in &rs.scope_spans {
                    out.extend(ss.spans.iter().map(|s| s.name.clone()));
                }
            }
        }
    }
    out
}

// ------------------------------------------------------------------ config

#[test]
fn defaults_are_documented_ones() {
    let c = config("brokers: [k:9092]");
    assert_eq!(c.group_id, "sluice");
    assert_eq!(c.initial_offset, InitialOffset::Latest);
    assert_eq!(
        c.group_rebalance_strategy,
        RebalanceStrategy::CooperativeSticky
    );
    assert_eq!(c.topics(Signal::Traces).1, vec!["otlp_spans"]);
    assert_eq!(c.topics(Signal::Metrics).1, vec!["otlp_metrics"]);
    assert_eq!(c.topics(Signal::Logs).1, vec!["otlp_logs"]);
    assert_eq!(c.encoding(Signal::Traces).1, Encoding::OtlpProto);
    assert_eq!(c.commit_interval, Duration::from_secs(1));
    assert_eq!(c.max_in_flight_mib, 64);
}

#[test]
fn config_errors_name_their_field() {
    assert_eq!(error_paths("group_id: g"), vec!["brokers"]);
    assert_eq!(error_paths("brokers: [k:9092]\ntopics: []"), vec!["topics"]);
    assert_eq!(
        error_paths("brokers: [k:9092]\ntraces: {topics: [ok, 'not ok']}"),
        vec!["traces::topics::1"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\ntopics: ['^spans-(']"),
        vec!["topics::0"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\nproperties: {enable.auto.commit: true}"),
        vec!["properties::enable.auto.commit"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\nproperties: {group.id: x}"),
        vec!["properties::group.id"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\ninitial_offset: oldest"),
        vec!["initial_offset"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\ngroup_rebalance_strategy: sticky"),
        vec!["group_rebalance_strategy"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\nheader_extraction: {extract_headers: true}"),
        vec!["header_extraction::headers"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\nmetrics: {encoding: haystack_proto}"),
        vec!["metrics::encoding"]
    );
    assert_eq!(
        error_paths("brokers: [k:9092]\nmax_in_flight_mib: 0"),
        vec!["max_in_flight_mib"]
    );
}

#[test]
fn a_topic_for_two_signals_is_refused_at_build() {
    let telemetry = Telemetry::new(sluice_core::telemetry::MetricsLevel::Normal);
    let r = Recorder::new();
    let err = KafkaReceiver::new(
        &ctx("kafka", &telemetry),
        &config("brokers: [k:9092]\ntopics: [shared]"),
        &consumers(&r, &[Signal::Traces, Signal::Logs]),
    )
    .err()
    .expect("refused");
    assert!(
        err.contains("\"shared\"") && err.contains("one signal"),
        "{err}"
    );
    // One signal: fine.
    assert!(KafkaReceiver::new(
        &ctx("kafka", &telemetry),
        &config("brokers: [k:9092]\ntopics: [shared]"),
        &consumers(&r, &[Signal::Traces]),
    )
    .is_ok());
}

// ------------------------------------------------------------ with a broker

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signal_and_encoding_round_trips_through_the_broker() {
    let broker = Broker::start();
    for encoding in [Encoding::OtlpProto, Encoding::OtlpJson] {
        let e = encoding.as_str();
        for topic in ["t", "m", "l"] {
            broker.create_topic(&format!("{topic}-{e}"), 2).await;
        }
        let topics = format!(
            "encoding: {e}\ntraces: {{topic: t-{e}}}\nmetrics: {{topic: m-{e}}}\nlogs: {{topic: l-{e}}}"
        );
        let s = sender(&broker, &topics).await;
        let originals = [traces(), metrics(), logs()];
        for b in &originals {
            s.send(b).await.unwrap();
        }
        let pipeline = Recorder::new();
        let r = Running::start(
            "kafka",
            &format!(
                "brokers: [{}]\ngroup_id: g-{e}\ninitial_offset: earliest\nencoding: {e}\ntraces: {{topics: [t-{e}]}}\nmetrics: {{topics: [m-{e}]}}\nlogs: {{topics: [l-{e}]}}\n{FAST_GROUP}",
                broker.address()
            ),
            &pipeline,
            &Signal::ALL,
        )
        .await;
        wait_until("three batches", Duration::from_secs(30), || {
            pipeline.batches().len() >= 3
        })
        .await;
        let got = pipeline.batches();
        for b in &originals {
            let back = got
                .iter()
                .find(|g| g.signal() == b.signal())
                .unwrap_or_else(|| panic!("{e}: no {} came back", b.signal()));
            assert_eq!(back.payload(), b.payload(), "{e} {}", b.signal());
        }
        assert_eq!(r.counter("otelcol_receiver_accepted_spans_total"), 3.0);
        assert_eq!(
            r.counter("otelcol_receiver_accepted_metric_points_total"),
            3.0
        );
        assert_eq!(
            r.counter("otelcol_receiver_accepted_log_records_total"),
            2.0
        );
        r.stop().await;
        s.shutdown().await.unwrap();
    }
}

/// (service, trace id, span id, name, start, end) of one span.
type SpanFacts = (String, Vec<u8>, Vec<u8>, String, u64, u64);

/// The [`SpanFacts`] of every span, sorted.
fn span_facts(batches: &[Batch]) -> Vec<SpanFacts> {
    let mut out = Vec::new();
    for b in batches {
        let Payload::Traces(r) = b.payload() else {
            continue;
        };
        for rs in &r.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|res| res.attributes.iter().find(|kv| kv.key == "service.name"))
                .map(|kv| format!("{:?}", kv.value))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for sp in &ss.spans {
                    out.push((
                        service.clone(),
                        sp.trace_id.clone(),
                        sp.span_id.clone(),
                        sp.name.clone(),
                        sp.start_time_unix_nano,
                        sp.end_time_unix_nano,
                    ));
                }
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haystack_spans_round_trip_through_the_broker() {
    let broker = Broker::start();
    for encoding in [Encoding::HaystackProto, Encoding::HaystackJson] {
        let e = encoding.as_str();
        broker.create_topic(&format!("h-{e}"), 3).await;
        let s = sender(&broker, &format!("traces: {{topic: h-{e}, encoding: {e}}}")).await;
        let original = traces();
        s.send(&original).await.unwrap();
        let pipeline = Recorder::new();
        let r = Running::start(
            "kafka",
            &format!(
                "brokers: [{}]\ngroup_id: g-{e}\ninitial_offset: earliest\ntraces: {{topics: [h-{e}], encoding: {e}}}\n{FAST_GROUP}",
                broker.address()
            ),
            &pipeline,
            &[Signal::Traces],
        )
        .await;
        wait_until("three spans", Duration::from_secs(30), || {
            pipeline.items() >= 3
        })
        .await;
        assert_eq!(
            span_facts(&pipeline.batches()),
            span_facts(std::slice::from_ref(&original)),
            "{e}"
        );
        assert_eq!(
            r.counter("sluice_kafka_receiver_messages_total"),
            3.0,
            "{e}: one message per span"
        );
        r.stop().await;
        s.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_are_retried_and_offsets_wait_for_acceptance() {
    let broker = Broker::start();
    broker.create_topic("retry", 1).await;
    let p = producer(&broker);
    let one = traces().to_bytes();
    for _ in 0..5 {
        produce(&p, "retry", 0, &one, None).await;
    }
    let body = format!(
        "brokers: [{}]\ngroup_id: g\ninitial_offset: earliest\ntopics: [retry]\n{FAST_GROUP}",
        broker.address()
    );
    // First run: the pipeline refuses everything; nothing is committed.
    let pipeline = Recorder::new();
    pipeline.refuse_first.store(usize::MAX, Ordering::SeqCst);
    let r = Running::start("kafka", &body, &pipeline, &[Signal::Traces]).await;
    wait_until("refusals", Duration::from_secs(30), || {
        pipeline.calls.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert!(r.counter("otelcol_receiver_refused_spans_total") >= 9.0);
    r.stop().await;
    assert!(pipeline.batches().is_empty());

    // Second run in the same group: everything is read again; the pipeline
    // refuses twice, then accepts.
    let pipeline = Recorder::new();
    pipeline.refuse_first.store(2, Ordering::SeqCst);
    let r = Running::start("kafka", &body, &pipeline, &[Signal::Traces]).await;
    wait_until("all 15 spans", Duration::from_secs(30), || {
        pipeline.items() >= 15
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.stop().await;
    assert_eq!(pipeline.items(), 15, "each message once in this run");

    // Third run: everything was committed, nothing comes again.
    produce(&p, "retry", 0, &one, None).await;
    let pipeline = Recorder::new();
    let r = Running::start("kafka", &body, &pipeline, &[Signal::Traces]).await;
    wait_until("the new message", Duration::from_secs(30), || {
        pipeline.items() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        pipeline.items(),
        3,
        "only the message after the committed offset"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_pipeline_pauses_consumption_within_the_budget() {
    let broker = Broker::start();
    broker.create_topic("stall", 1).await;
    let p = producer(&broker);
    // 40 messages of about 100 KiB: 4 MiB, four times the 1 MiB budget.
    let mut big = traces();
    if let Payload::Traces(req) = &mut *big.make_mut() {
        req.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(100 * 1024);
    }
    let value = big.to_bytes();
    for _ in 0..40 {
        produce(&p, "stall", 0, &value, None).await;
    }
    let pipeline = Recorder::new();
    pipeline.block();
    let r = Running::start(
        "kafka",
        &format!(
            "brokers: [{}]\ninitial_offset: earliest\ntopics: [stall]\nmax_in_flight_mib: 1\n{FAST_GROUP}",
            broker.address()
        ),
        &pipeline,
        &[Signal::Traces],
    )
    .await;
    wait_until("the first message", Duration::from_secs(30), || {
        r.counter("sluice_kafka_receiver_messages_total") >= 1.0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let taken = r.counter("sluice_kafka_receiver_messages_total");
    assert!(
        (1.0..=10.0).contains(&taken),
        "at most 1 MiB (10 messages) taken while the pipeline is stalled, took {taken}"
    );
    pipeline.unblock();
    wait_until("all 40 messages", Duration::from_secs(30), || {
        pipeline.items() >= 120
    })
    .await;
    assert_eq!(r.counter("sluice_kafka_receiver_messages_total"), 40.0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_counted_and_skipped_and_headers_become_attributes() {
    let broker = Broker::start();
    broker.create_topic("mixed", 1).await;
    let p = producer(&broker);
    produce(&p, "mixed", 0, b"\xff\xff not protobuf", None).await;
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "tenant",
            value: Some("acme"),
        })
        .insert(Header {
            key: "ignored",
            value: Some("x"),
        });
    produce(&p, "mixed", 0, &traces().to_bytes(), Some(headers)).await;
    let pipeline = Recorder::new();
    let r = Running::start(
        "kafka",
        &format!(
            "brokers: [{}]\ninitial_offset: earliest\ntopics: [mixed]\nheader_extraction: {{extract_headers: true, headers: [tenant]}}\n{FAST_GROUP}",
            broker.address()
        ),
        &pipeline,
        &[Signal::Traces],
    )
    .await;
    wait_until("the valid message", Duration::from_secs(30), || {
        pipeline.items() >= 3
    })
    .await;
    assert_eq!(
        r.counter("sluice_kafka_receiver_invalid_messages_total"),
        1.0
    );
    let b = &pipeline.batches()[0];
    let Payload::Traces(req) = b.payload() else {
        unreachable!()
    };
    for rs in &req.resource_spans {
        let attrs = &rs.resource.as_ref().unwrap().attributes;
        let tenant = attrs
            .iter()
            .find(|kv| kv.key == "kafka.header.tenant")
            .expect("tenant header extracted");
        assert_eq!(
            tenant.value,
            Some(sluice_shared::test_support::string_value("acme"))
        );
        assert!(!attrs.iter().any(|kv| kv.key == "kafka.header.ignored"));
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_reported_per_partition_and_falls_to_zero() {
    let broker = Broker::start();
    broker.create_topic("lagging", 2).await;
    let p = producer(&broker);
    let one = traces().to_bytes();
    for i in 0..10 {
        produce(&p, "lagging", i % 2, &one, None).await;
    }
    let pipeline = Recorder::new();
    pipeline.block();
    let r = Running::start(
        "kafka/lag",
        &format!(
            "brokers: [{}]\ninitial_offset: earliest\ntopics: [lagging]\n{FAST_GROUP}",
            broker.address()
        ),
        &pipeline,
        &[Signal::Traces],
    )
    .await;
    wait_until(
        "lag of 5 on both partitions",
        Duration::from_secs(30),
        || {
            let lag = r.metric("sluice_kafka_receiver_lag");
            lag.len() == 2 && lag.iter().all(|(_, v)| *v == 5.0)
        },
    )
    .await;
    let names: HashSet<String> = r
        .metric("sluice_kafka_receiver_lag")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.contains(
            "sluice_kafka_receiver_lag{receiver=\"kafka/lag\",topic=\"lagging\",partition=\"0\"}"
        ),
        "{names:?}"
    );
    pipeline.unblock();
    wait_until("lag 0", Duration::from_secs(30), || {
        let lag = r.metric("sluice_kafka_receiver_lag");
        lag.len() == 2 && lag.iter().all(|(_, v)| *v == 0.0)
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_receivers_in_a_group_share_partitions_and_take_over_on_leave() {
    let broker = Broker::start();
    broker.create_topic("shared", 4).await;
    let body = format!(
        "brokers: [{}]\ngroup_id: pair\ninitial_offset: earliest\ntopics: [shared]\n{FAST_GROUP}",
        broker.address()
    );
    let (pa, pb) = (Recorder::new(), Recorder::new());
    let a = Running::start("kafka/a", &body, &pa, &[Signal::Traces]).await;
    wait_until("a owns 4 partitions", Duration::from_secs(30), || {
        a.metric("sluice_kafka_receiver_lag").len() == 4
    })
    .await;
    let b = Running::start("kafka/b", &body, &pb, &[Signal::Traces]).await;
    wait_until(
        "the partitions split 2 and 2",
        Duration::from_secs(30),
        || {
            a.metric("sluice_kafka_receiver_lag").len() == 2
                && b.metric("sluice_kafka_receiver_lag").len() == 2
        },
    )
    .await;
    let p = producer(&broker);
    let one = traces().to_bytes();
    for i in 0..8 {
        produce(&p, "shared", i % 4, &one, None).await;
    }
    wait_until("24 spans between them", Duration::from_secs(30), || {
        pa.items() + pb.items() >= 24
    })
    .await;
    assert_eq!(pa.items(), 12, "a reads its two partitions");
    assert_eq!(pb.items(), 12, "b reads its two partitions");
    b.stop().await;
    wait_until("a owns all 4 again", Duration::from_secs(30), || {
        a.metric("sluice_kafka_receiver_lag").len() == 4
    })
    .await;
    for i in 0..4 {
        produce(&p, "shared", i, &one, None).await;
    }
    wait_until("a reads every partition", Duration::from_secs(30), || {
        pa.items() >= 24
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        pa.items() + pb.items(),
        36,
        "nothing read twice after clean hand-overs"
    );
    assert_eq!(span_names(&pa.batches()).len(), 24);
    a.stop().await;
}
