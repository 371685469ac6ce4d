//! Tests of the running `kinesis` receiver against a real Kinesis API
//! server (kinesis-local, one per test) and, for leases, the machine's
//! PostgreSQL. The pipeline is a recorder in the test.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use prost::Message;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    Batch, BuildContext, ComponentId, ConsumeError, Consumer, ConsumerRef, Extensions, Health,
    Kind, Lifecycle, Payload, Signal, Telemetry,
};
use sluice_pdata::haystack::{spans_from_otlp, Span, Tag};

use super::config::KinesisReceiverConfig;
use super::kpl::aggregate;
use super::leases::LeaseTable;
use super::local_server::LocalKinesis;
use super::receiver::KinesisReceiver;

/// A pipeline that records the span ids it accepts; it can refuse every
/// call while `refusing` is set.
#[derive(Default)]
struct Recorder {
    spans: Mutex<Vec<Span>>,
    calls: AtomicUsize,
    refusing: std::sync::atomic::AtomicBool,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }
    fn ids(&self) -> Vec<String> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.span_id.clone())
            .collect()
    }
    fn distinct(&self) -> HashSet<String> {
        self.ids().into_iter().collect()
    }
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.refusing.load(Ordering::SeqCst) {
            return Err(ConsumeError::overloaded("test pipeline refuses"));
        }
        let Payload::Traces(req) = batch.payload() else {
            panic!("not traces");
        };
        self.spans.lock().unwrap().extend(spans_from_otlp(req));
        Ok(())
    }
}

/// A valid Haystack span with hex ids (so they survive OTLP unchanged).
fn span(n: u64) -> Span {
    Span {
        trace_id: format!("{:032x}", 0xabc0_0000_0000u64 + n),
        span_id: format!("{:016x}", 0x5000_0000u64 + n),
        parent_span_id: String::new(),
        service_name: format!("svc-{}", n % 3),
        operation_name: "GET /x".into(),
        start_time: 1_790_000_000_000_000 + n as i64,
        duration: 1200,
        logs: vec![],
        tags: vec![Tag::string("http.method", "GET"), Tag::long("n", n as i64)],
    }
}

fn ctx(id: &str, telemetry: &Arc<Telemetry>, extensions: Extensions) -> BuildContext {
    BuildContext {
        id: ComponentId::parse(id).unwrap(),
        kind: Kind::Receiver,
        pipeline: None,
        signal: None,
        telemetry: telemetry.clone(),
        health: Health::default(),
        extensions,
        signals: vec![Signal::Traces],
    }
}

fn config(yaml: &str) -> KinesisReceiverConfig {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    sluice_core::factory::parse_config::<KinesisReceiverConfig>(&v)
        .unwrap_or_else(|e| panic!("config errors: {e:?}"));
    serde_yaml_ng::from_value(v).unwrap()
}

/// A started `file_storage` extension in `dir`.
async fn storage(dir: &Path) -> Extensions {
    sluice_shared::test_support::started_file_storage(dir).await
}

struct Running {
    receiver: KinesisReceiver,
    telemetry: Arc<Telemetry>,
}

impl Running {
    async fn start(yaml: &str, pipeline: &Arc<Recorder>, extensions: Extensions) -> Running {
        let telemetry = Telemetry::new(MetricsLevel::Normal);
        let consumer: ConsumerRef = pipeline.clone();
        let receiver = KinesisReceiver::new(
            &ctx("kinesis", &telemetry, extensions),
            &config(yaml),
            consumer,
        )
        .unwrap();
        receiver.start().await.unwrap();
        Running {
            receiver,
            telemetry,
        }
    }

    /// Sum of the samples of a metric family (by name prefix).
    fn metric(&self, name: &str) -> f64 {
        self.telemetry
            .encode()
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    fn series(&self, name: &str) -> usize {
        self.telemetry
            .encode()
            .lines()
            .filter(|l| l.starts_with(name))
            .count()
    }

    async fn stop(self) {
        self.receiver.shutdown().await.unwrap();
    }
}

async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put(k: &LocalKinesis, stream: &str, key: &str, data: Vec<u8>) {
    k.client()
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(Blob::new(data))
        .send()
        .await
        .expect("PutRecord");
}

/// Puts spans `range` as KPL aggregates of `per` spans each, with spread
/// partition keys.
async fn put_aggregated(k: &LocalKinesis, stream: &str, range: std::ops::Range<u64>, per: usize) {
    let spans: Vec<Span> = range.map(span).collect();
    for chunk in spans.chunks(per) {
        let datas: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|s| (s.trace_id.clone(), s.encode_to_vec()))
            .collect();
        let agg = aggregate(datas.iter().map(|(k, d)| (k.as_str(), d.as_slice())));
        put(k, stream, &chunk[0].trace_id, agg).await;
    }
}

async fn put_plain(k: &LocalKinesis, stream: &str, range: std::ops::Range<u64>) {
    for n in range {
        let s = span(n);
        put(k, stream, &s.trace_id, s.encode_to_vec()).await;
    }
}

fn ids(range: std::ops::Range<u64>) -> HashSet<String> {
    range.map(|n| span(n).span_id).collect()
}

fn base(endpoint: &str, stream: &str, extra: &str) -> String {
    format!(
        "stream_name: {stream}\nregion: us-east-1\nendpoint: {endpoint}\nidle_time_between_reads: 100ms\nshard_sync_interval: 1s\n{extra}"
    )
}

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_aggregated_plain_and_invalid_records_from_two_shards() {
    let k = LocalKinesis::start().await;
    k.create_stream("spans", 2).await;
    put_aggregated(&k, "spans", 0..200, 25).await;
    put_plain(&k, "spans", 200..230).await;
    // Invalid: no service name, a start time in ms, and bytes that are no
    // span at all.
    let mut no_service = span(900);
    no_service.service_name.clear();
    put(&k, "spans", "a", no_service.encode_to_vec()).await;
    let mut millis = span(901);
    millis.start_time = 1_790_000_000_000;
    put(&k, "spans", "b", millis.encode_to_vec()).await;
    put(&k, "spans", "c", vec![0xff, 0xff, 0xff]).await;

    let rec = Recorder::new();
    let r = Running::start(
        &base(
            &k.endpoint,
            "spans",
            "initial_position: TRIM_HORIZON\nvalidation: {extra_tags: {source: kinesis}}",
        ),
        &rec,
        Extensions::default(),
    )
    .await;
    wait_until("230 spans", WAIT, || rec.distinct().len() >= 230).await;
    assert_eq!(rec.distinct(), ids(0..230));
    assert_eq!(rec.ids().len(), 230, "no duplicates in a plain run");
    for s in rec.spans.lock().unwrap().iter() {
        assert!(
            s.tags
                .iter()
                .any(|t| t.key == "source" && t == &Tag::string("source", "kinesis")),
            "extra tag added to {}",
            s.span_id
        );
    }
    // The invalid records were put last, maybe into the other shard: wait
    // for every count rather than for one of them.
    for (name, want) in [
        ("sluice_kinesis_receiver_invalid_records_total", 1.0),
        ("sluice_kinesis_receiver_invalid_spans_total", 2.0),
        ("sluice_kinesis_receiver_aggregated_records_total", 8.0),
        ("sluice_kinesis_receiver_user_records_total", 233.0),
    ] {
        wait_until(name, WAIT, || r.metric(name) == want).await;
    }
    // Counted when consume returns, just after the recorder saw them.
    wait_until("accepted counted", WAIT, || {
        r.metric("otelcol_receiver_accepted_spans_total") == 230.0
    })
    .await;
    // Both shards report how far behind they are and the processing lag.
    assert_eq!(r.series("sluice_kinesis_receiver_millis_behind_latest{"), 2);
    assert_eq!(
        r.series("sluice_kinesis_receiver_processing_lag_milliseconds{"),
        2
    );
    assert_eq!(r.metric("sluice_kinesis_receiver_shards_reading"), 2.0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_reads_only_new_records_and_checkpoints_survive_a_restart() {
    let k = LocalKinesis::start().await;
    k.create_stream("spans", 2).await;
    put_plain(&k, "spans", 0..10).await; // before the start: not read
    let tmp = tempfile::tempdir().unwrap();
    let ext = storage(&tmp.path().join("state")).await;
    let cfg = base(
        &k.endpoint,
        "spans",
        "storage: file_storage\ncheckpoint_interval: 200ms",
    );
    let rec = Recorder::new();
    let r = Running::start(&cfg, &rec, ext.clone()).await;
    wait_until("readers", WAIT, || {
        r.series("sluice_kinesis_receiver_millis_behind_latest{") == 2
    })
    .await;
    // Both shards were read once: their LATEST iterators exist.
    put_plain(&k, "spans", 10..60).await;
    wait_until("50 spans", WAIT, || rec.distinct().len() >= 50).await;
    assert_eq!(rec.distinct(), ids(10..60));
    r.stop().await;

    // Written while stopped, read after the restart from the checkpoints;
    // nothing read twice.
    put_plain(&k, "spans", 60..90).await;
    let rec2 = Recorder::new();
    let r2 = Running::start(&cfg, &rec2, ext).await;
    wait_until("30 more spans", WAIT, || rec2.distinct().len() >= 30).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rec2.distinct(), ids(60..90));
    assert_eq!(rec2.ids().len(), 30);
    r2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_are_not_checkpointed_and_are_read_again() {
    let k = LocalKinesis::start().await;
    k.create_stream("spans", 1).await;
    let tmp = tempfile::tempdir().unwrap();
    let ext = storage(&tmp.path().join("state")).await;
    let cfg = base(
        &k.endpoint,
        "spans",
        "initial_position: TRIM_HORIZON\nstorage: file_storage\ncheckpoint_interval: 100ms",
    );
    put_plain(&k, "spans", 0..20).await;
    let rec = Recorder::new();
    let r = Running::start(&cfg, &rec, ext.clone()).await;
    wait_until("20 spans", WAIT, || rec.distinct().len() >= 20).await;
    // Now the pipeline refuses: new records are read, refused and retried,
    // never accepted.
    rec.refusing.store(true, Ordering::SeqCst);
    let calls = rec.calls.load(Ordering::SeqCst);
    put_plain(&k, "spans", 20..40).await;
    wait_until("retries", WAIT, || {
        rec.calls.load(Ordering::SeqCst) >= calls + 3
    })
    .await;
    wait_until("refusals counted", WAIT, || {
        r.metric("otelcol_receiver_refused_spans_total") >= 20.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.stop().await;
    assert_eq!(rec.distinct(), ids(0..20));

    // The checkpoint stayed after span 19: a new run gets 20..40, once.
    let rec2 = Recorder::new();
    let r2 = Running::start(&cfg, &rec2, ext).await;
    wait_until("20 refused spans", WAIT, || rec2.distinct().len() >= 20).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(rec2.distinct(), ids(20..40));
    assert_eq!(rec2.ids().len(), 20);
    r2.stop().await;
}

async fn shard_ids(k: &LocalKinesis, stream: &str) -> Vec<(String, Option<String>, bool)> {
    let out = k
        .client()
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    out.shards()
        .iter()
        .map(|s| {
            (
                s.shard_id().to_string(),
                s.parent_shard_id().map(str::to_string),
                s.sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_during_the_run_loses_nothing_and_children_follow_their_parent() {
    let k = LocalKinesis::start().await;
    k.create_stream("spans", 1).await;
    let tmp = tempfile::tempdir().unwrap();
    let ext = storage(&tmp.path().join("state")).await;
    let rec = Recorder::new();
    let r = Running::start(
        &base(
            &k.endpoint,
            "spans",
            "storage: file_storage\ncheckpoint_interval: 200ms",
        ),
        &rec,
        ext,
    )
    .await;
    wait_until("reader", WAIT, || {
        r.series("sluice_kinesis_receiver_millis_behind_latest{") == 1
    })
    .await;
    // The shard was read once: its LATEST iterator exists.
    put_plain(&k, "spans", 0..40).await;
    let parent = shard_ids(&k, "spans").await[0].0.clone();
    // Split at the middle of the hash key range.
    k.client()
        .split_shard()
        .stream_name("spans")
        .shard_to_split(&parent)
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .expect("SplitShard");
    let deadline = Instant::now() + WAIT;
    loop {
        let s = shard_ids(&k, "spans").await;
        if s.len() == 3 && s.iter().any(|(id, _, closed)| *id == parent && *closed) {
            break;
        }
        assert!(Instant::now() < deadline, "split did not finish: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Written during and after the split: into the children.
    put_plain(&k, "spans", 40..100).await;
    wait_until("100 spans", WAIT, || rec.distinct().len() >= 100).await;
    assert_eq!(rec.distinct(), ids(0..100));
    // The parent was read to its end, then both children were read.
    wait_until("children read", WAIT, || {
        r.metric("sluice_kinesis_receiver_shards_reading") == 2.0
    })
    .await;
    assert_eq!(r.series("sluice_kinesis_receiver_millis_behind_latest{"), 2);
    // The children came from the parent's last GetRecords (ChildShards).
    assert_eq!(r.metric("sluice_kinesis_receiver_child_shards_total"), 2.0);
    // Per partition key, order is kept across the split: each trace here
    // has one span, so check the parent's spans came before the
    // children's.
    let order = rec.ids();
    let pos = |n: u64| order.iter().position(|s| *s == span(n).span_id).unwrap();
    let last_parent = (0..40).map(pos).max().unwrap();
    let first_child = (40..100).map(pos).min().unwrap();
    assert!(
        last_parent < first_child,
        "children were read before their parent was done"
    );
    r.stop().await;
}

fn postgres_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn unique_table(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}_{}_{}", std::process::id(), n % 1_000_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_fence_a_previous_owner_and_expire() {
    let table = unique_table("fence");
    let url = postgres_url();
    let a = LeaseTable::connect(&url, &table, "app", "a", Duration::from_secs(1))
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (database test)");
    let b = LeaseTable::connect(&url, &table, "app", "b", Duration::from_secs(1))
        .await
        .unwrap();
    a.ensure(&["s1".to_string()]).await.unwrap();
    let row = &a.snapshot().await.unwrap()[0];
    assert_eq!((row.owner.as_deref(), row.live), (None, false));
    let (ca, _) = a.acquire("s1", row.counter).await.unwrap().unwrap();
    assert!(a.save("s1", ca, "seq:10").await.unwrap());
    // b saw the old counter: it cannot take the lease.
    assert!(b.acquire("s1", row.counter).await.unwrap().is_none());
    // a stops renewing; after the lease runs out b takes it, with a's
    // checkpoint.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let row = &b.snapshot().await.unwrap()[0];
    assert!(!row.live);
    let (cb, cp) = b.acquire("s1", row.counter).await.unwrap().unwrap();
    assert_eq!(cp.as_deref(), Some("seq:10"));
    // a is fenced: its renewals and checkpoints no longer apply.
    assert!(!a.renew("s1", ca).await.unwrap());
    assert!(!a.save("s1", ca, "seq:99").await.unwrap());
    assert!(b.save("s1", cb, "seq:20").await.unwrap());
    assert_eq!(
        b.snapshot().await.unwrap()[0].checkpoint.as_deref(),
        Some("seq:20")
    );
    b.drop_table().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_the_shards_and_one_takes_over_when_the_other_stops() {
    let k = LocalKinesis::start().await;
    k.create_stream("spans", 4).await;
    let table = unique_table("two");
    let cfg = base(
        &k.endpoint,
        "spans",
        &format!(
            "initial_position: TRIM_HORIZON\ncheckpoint_interval: 200ms\nleases: {{postgres: \"{}\", table: {table}, lease_duration: 2s}}",
            postgres_url()
        ),
    );
    let rec_a = Recorder::new();
    let rec_b = Recorder::new();
    let a = Running::start(&cfg, &rec_a, Extensions::default()).await;
    wait_until("a reads 4", WAIT, || {
        a.metric("sluice_kinesis_receiver_shards_reading") == 4.0
    })
    .await;
    let b = Running::start(&cfg, &rec_b, Extensions::default()).await;
    wait_until("2 and 2", WAIT, || {
        a.metric("sluice_kinesis_receiver_shards_reading") == 2.0
            && b.metric("sluice_kinesis_receiver_shards_reading") == 2.0
    })
    .await;
    // Let a notice the stolen leases and stop those readers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    put_plain(&k, "spans", 0..80).await;
    wait_until("80 spans", WAIT, || {
        rec_a.distinct().union(&rec_b.distinct()).count() >= 80
    })
    .await;
    let (sa, sb) = (rec_a.distinct(), rec_b.distinct());
    assert!(!sa.is_empty() && !sb.is_empty(), "both instances read");
    assert!(
        sa.is_disjoint(&sb),
        "a shard had two readers in steady state"
    );
    assert_eq!(sa.union(&sb).cloned().collect::<HashSet<_>>(), ids(0..80));

    // a stops (releasing its leases): b reads every shard, from a's
    // checkpoints.
    a.stop().await;
    wait_until("b reads 4", WAIT, || {
        b.metric("sluice_kinesis_receiver_shards_reading") == 4.0
    })
    .await;
    put_plain(&k, "spans", 80..120).await;
    wait_until("40 more at b", WAIT, || {
        ids(80..120).is_subset(&rec_b.distinct())
    })
    .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in rec_a.ids().into_iter().chain(rec_b.ids()) {
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(seen.len(), 120);
    assert!(
        seen.values().all(|&n| n == 1),
        "nothing read twice after a clean hand-over"
    );
    b.stop().await;
    let t = LeaseTable::connect(&postgres_url(), &table, "x", "x", Duration::from_secs(1))
        .await
        .unwrap();
    t.drop_table().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_timestamp_starts_at_the_given_time() {
    let k = LocalKinesis::start().await;
    k.create_stream("spans", 1).await;
    put_plain(&k, "spans", 0..10).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = aws_sdk_kinesis::primitives::DateTime::from(std::time::SystemTime::now());
    tokio::time::sleep(Duration::from_millis(500)).await;
    put_plain(&k, "spans", 10..20).await;
    let stamp = t
        .fmt(aws_sdk_kinesis::primitives::DateTimeFormat::DateTime)
        .unwrap();
    let rec = Recorder::new();
    let r = Running::start(
        &base(
            &k.endpoint,
            "spans",
            &format!("initial_position: AT_TIMESTAMP\ninitial_timestamp: \"{stamp}\""),
        ),
        &rec,
        Extensions::default(),
    )
    .await;
    wait_until("10 spans", WAIT, || rec.distinct().len() >= 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rec.distinct(), ids(10..20));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_stops_the_start_naming_stream_name() {
    let k = LocalKinesis::start().await;
    let telemetry = Telemetry::new(MetricsLevel::Normal);
    let rec: ConsumerRef = Recorder::new();
    let receiver = KinesisReceiver::new(
        &ctx("kinesis", &telemetry, Extensions::default()),
        &config(&base(&k.endpoint, "no-such-stream", "")),
        rec,
    )
    .unwrap();
    let err = receiver.start().await.expect_err("no such stream");
    let msg = err.to_string();
    assert!(
        msg.contains("stream_name") && msg.contains("no-such-stream"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_lease_database_stops_the_start_naming_leases() {
    let k = LocalKinesis::start().await;
    k.create_stream("spans", 1).await;
    let telemetry = Telemetry::new(MetricsLevel::Normal);
    let rec: ConsumerRef = Recorder::new();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let receiver = KinesisReceiver::new(
        &ctx("kinesis", &telemetry, Extensions::default()),
        &config(&base(
            &k.endpoint,
            "spans",
            &format!("leases: {{postgres: \"postgres://postgres@127.0.0.1:{port}/test\"}}"),
        )),
        rec,
    )
    .unwrap();
    let msg = receiver.start().await.expect_err("no database").to_string();
    assert!(msg.contains("leases::postgres"), "{msg}");
}

fn config_errors(yaml: &str) -> Vec<String> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    match sluice_core::factory::parse_config::<KinesisReceiverConfig>(&v) {
        Ok(_) => Vec::new(),
        Err(e) => e.into_iter().map(|e| e.path).collect(),
    }
}

#[test]
fn config_defaults_are_haystacks() {
    let c = config("stream_name: haystack-proto-spans");
    assert_eq!(c.max_records, 2000);
    assert_eq!(c.idle_time_between_reads, Duration::from_millis(500));
    assert_eq!(c.checkpoint_interval, Duration::from_secs(15));
    assert_eq!(c.initial_position, super::InitialPosition::Latest);
    assert_eq!(c.encoding, super::decode::Encoding::HaystackProto);
    assert_eq!(c.endpoint(), None);
    let c = config("stream_name: s\nendpoint: \"\"\ninitial_position: trim_horizon");
    assert_eq!(c.endpoint(), None);
    assert_eq!(c.initial_position, super::InitialPosition::TrimHorizon);
}

#[test]
fn config_errors_name_their_fields() {
    let cases: &[(&str, &str)] = &[
        ("stream_name: \"a b\"", "stream_name"),
        ("stream_name: s\nregion: \"\"", "region"),
        ("stream_name: s\nendpoint: localhost:4567", "endpoint"),
        ("stream_name: s\nrole_arn: reader", "role_arn"),
        (
            "stream_name: s\ninitial_position: AT_TIMESTAMP",
            "initial_timestamp",
        ),
        (
            "stream_name: s\ninitial_position: AT_TIMESTAMP\ninitial_timestamp: yesterday",
            "initial_timestamp",
        ),
        (
            "stream_name: s\ninitial_timestamp: \"2026-01-01T00:00:00Z\"",
            "initial_timestamp",
        ),
        ("stream_name: s\nmax_records: 0", "max_records"),
        ("stream_name: s\nmax_records: 10001", "max_records"),
        (
            "stream_name: s\ncheckpoint_interval: 0s",
            "checkpoint_interval",
        ),
        ("stream_name: s\nmax_in_flight: 0", "max_in_flight"),
        (
            "stream_name: s\nencoding: otlp_proto\nvalidation: {max_span_size: 10}",
            "validation",
        ),
        (
            "stream_name: s\nstorage: file_storage\nleases: {postgres: \"postgres://h/db\"}",
            "storage",
        ),
        (
            "stream_name: s\nleases: {postgres: \"mysql://h/db\"}",
            "leases::postgres",
        ),
        (
            "stream_name: s\nleases: {postgres: \"postgres://h/db\", table: \"x; drop\"}",
            "leases::table",
        ),
        (
            "stream_name: s\nleases: {postgres: \"postgres://h/db\", lease_duration: 100ms}",
            "leases::lease_duration",
        ),
    ];
    for (yaml, path) in cases {
        let errors = config_errors(yaml);
        assert!(
            errors.iter().any(|p| p.ends_with(path)),
            "{yaml:?}: expected an error at {path}, got {errors:?}"
        );
    }
    let v: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("stream_name: s\nshard_count: 2").unwrap();
    let errors = sluice_core::factory::parse_config::<KinesisReceiverConfig>(&v)
        .err()
        .expect("unknown field refused");
    assert!(
        errors[0].message.contains("unknown field `shard_count`"),
        "{errors:?}"
    );
}
