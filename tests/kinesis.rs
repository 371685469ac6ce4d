//! Haystack spans from Kinesis to Kafka through the `sluice` binary, run
//! from examples/haystack-kinesis-to-kafka.yaml against a real Kinesis API
//! server (kinesis-local) and a real Kafka-protocol broker (Tansu):
//!
//! - KPL-aggregated, plain and invalid records in a 2-shard stream: every
//!   valid span reaches `proto-spans` as Haystack protobuf keyed by its
//!   trace id; the invalid ones are counted, not written.
//! - `kill -9` in the middle of a stream and a restart: nothing is lost
//!   (duplicates are counted and printed).
//! - Two instances with shard leases in PostgreSQL take one shard each;
//!   after one is killed with SIGKILL the other takes its shard over when
//!   the lease runs out, from the last checkpoint, losing nothing.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use sluice_kinesis::receivers::kinesis::kpl::aggregate;
use sluice_kinesis::receivers::kinesis::leases::LeaseTable;
use sluice_kinesis::receivers::kinesis::local_server::LocalKinesis;
use sluice_pdata::haystack::{Span, Tag};
use support::kafka::{Broker, Follower};
use support::*;

const STREAM: &str = "haystack-proto-spans";
const TOPIC: &str = "proto-spans";
const WAIT: Duration = Duration::from_secs(120);

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("haystack-kinesis-to-kafka.yaml")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn span(n: u64) -> Span {
    Span {
        trace_id: format!("{:032x}", 0x7ace_0000u64 + n / 2),
        span_id: format!("{:016x}", 0x5a00_0000u64 + n),
        parent_span_id: String::new(),
        service_name: format!("svc-{}", n % 4),
        operation_name: "GET /items".into(),
        start_time: 1_790_000_000_000_000 + n as i64 * 1000,
        duration: 2500,
        logs: vec![],
        tags: vec![
            Tag::string("http.method", "GET"),
            Tag::long("n", n as i64),
            Tag::bool("error", n % 10 == 0),
        ],
    }
}

/// Puts spans as KPL aggregates of `per` (partition key: the first trace id).
async fn put_aggregated(k: &LocalKinesis, spans: &[Span], per: usize) {
    for chunk in spans.chunks(per) {
        let datas: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|s| (s.trace_id.clone(), s.encode_to_vec()))
            .collect();
        let agg = aggregate(datas.iter().map(|(k, d)| (k.as_str(), d.as_slice())));
        k.put(STREAM, &chunk[0].trace_id, agg).await;
    }
}

struct Setup {
    rt: tokio::runtime::Runtime,
    kinesis: LocalKinesis,
    broker: Broker,
    /// kcat following `proto-spans` from the beginning.
    topic: Follower,
    dir: TestDir,
    metrics: SocketAddr,
}

impl Setup {
    fn new() -> Setup {
        let rt = runtime();
        let kinesis = rt.block_on(LocalKinesis::start());
        rt.block_on(kinesis.create_stream(STREAM, 2));
        let broker = Broker::start();
        broker.create_topic(TOPIC, 4);
        let topic = Follower::start(&broker.address(), TOPIC);
        Setup {
            rt,
            kinesis,
            broker,
            topic,
            dir: TestDir::new(),
            metrics: free_addr(),
        }
    }

    fn run(&self) -> Sluice {
        let state = self.dir.join("state");
        let metrics = self.metrics.to_string();
        let brokers = self.broker.address();
        let mut s = Sluice::run_with_env(
            self.dir.path(),
            &[&example()],
            &[
                ("KINESIS_ENDPOINT", self.kinesis.endpoint.as_str()),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "sluice-test"),
                ("AWS_SECRET_ACCESS_KEY", "sluice-test"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("KAFKA_BROKERS", brokers.as_str()),
                ("SLUICE_STATE_DIR", state.to_str().unwrap()),
                ("SLUICE_METRICS", metrics.as_str()),
            ],
        );
        // Both shards have been read once (their iterators exist), so
        // records put from now on are seen even at LATEST.
        let ok = wait_until(WAIT, || {
            parse_prometheus(&scrape_metrics(self.metrics))
                .iter()
                .filter(|m| m.name == "sluice_kinesis_receiver_millis_behind_latest")
                .count()
                == 2
        });
        if !ok {
            s.stop();
            panic!("sluice did not start reading both shards\n{}", s.describe());
        }
        s
    }

    /// Span id -> (times written, key, decoded span) from the topic.
    fn written(&self) -> HashMap<String, (usize, Vec<u8>, Span)> {
        let mut out: HashMap<String, (usize, Vec<u8>, Span)> = HashMap::new();
        for (_, key, value) in self.topic.messages() {
            let s = Span::decode(value.as_slice()).expect("a Haystack span in proto-spans");
            out.entry(s.span_id.clone())
                .and_modify(|e| e.0 += 1)
                .or_insert((1, key, s));
        }
        out
    }

    fn wait_written(&self, n: usize) -> HashMap<String, (usize, Vec<u8>, Span)> {
        let mut last = HashMap::new();
        wait_until(WAIT, || {
            last = self.written();
            last.len() >= n
        });
        last
    }
}

#[test]
fn haystack_spans_from_kinesis_reach_kafka_keyed_by_trace_id() {
    let t = Setup::new();
    let mut sluice = t.run();
    let spans: Vec<Span> = (0..300).map(span).collect();
    t.rt.block_on(async {
        put_aggregated(&t.kinesis, &spans[..250], 25).await;
        for s in &spans[250..] {
            t.kinesis.put(STREAM, &s.trace_id, s.encode_to_vec()).await;
        }
        let mut no_service = span(1000);
        no_service.service_name.clear();
        t.kinesis.put(STREAM, "x", no_service.encode_to_vec()).await;
        let mut millis = span(1001);
        millis.start_time /= 1000;
        t.kinesis.put(STREAM, "y", millis.encode_to_vec()).await;
        t.kinesis.put(STREAM, "z", b"not a span".to_vec()).await;
    });
    let written = t.wait_written(300);
    assert_eq!(written.len(), 300, "{}", sluice.describe());
    for want in &spans {
        let (times, key, got) = &written[&want.span_id];
        assert_eq!(*times, 1, "span {} written once", want.span_id);
        assert_eq!(key, want.trace_id.as_bytes(), "key is the trace id");
        assert_eq!(got, want, "span unchanged through Kinesis, OTLP and Kafka");
    }
    // The invalid records were put last; they may be read after the last
    // valid span was written.
    for (name, want) in [
        ("sluice_kinesis_receiver_invalid_spans_total", 2.0),
        ("sluice_kinesis_receiver_invalid_records_total", 1.0),
        ("sluice_kinesis_receiver_aggregated_records_total", 10.0),
    ] {
        let got = wait_metric(t.metrics, name, &[], want, WAIT);
        assert_eq!(got, Some(want), "{name}");
    }
    let m = scrape_metrics(t.metrics);
    assert!(metric_value(
        &m,
        "sluice_kinesis_receiver_processing_lag_milliseconds",
        &[]
    )
    .is_some());
    sluice.stop();
}

#[test]
fn kill_9_in_the_middle_of_a_stream_and_a_restart_lose_nothing() {
    let t = Setup::new();
    let mut first = t.run();
    let total = 600u64;
    let done = Arc::new(AtomicBool::new(false));
    // A producer puts 5-span aggregates steadily, before, during and after
    // the kill.
    let writer = {
        let endpoint = t.kinesis.endpoint.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let rt = runtime();
            rt.block_on(async {
                let k = LocalKinesis::attach(&endpoint);
                let spans: Vec<Span> = (0..total).map(span).collect();
                for chunk in spans.chunks(5) {
                    put_aggregated(&k, chunk, 5).await;
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
            });
            done.store(true, Ordering::SeqCst);
        })
    };
    let seen_some = wait_until(WAIT, || t.written().len() >= 100);
    assert!(seen_some, "{}", first.describe());
    assert!(
        !done.load(Ordering::SeqCst),
        "the writer finished before the kill; the test would not kill mid-stream"
    );
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    let before_restart = t.written().len();
    std::thread::sleep(Duration::from_secs(1));
    let mut second = t.run();
    writer.join().unwrap();
    let written = t.wait_written(total as usize);
    let duplicates: usize = written.values().map(|(n, _, _)| n - 1).sum();
    println!(
        "kill -9 after {before_restart} spans in Kafka: {} of {total} spans written, {duplicates} duplicates",
        written.len()
    );
    let missing: Vec<u64> = (0..total)
        .filter(|n| !written.contains_key(&span(*n).span_id))
        .collect();
    assert!(
        missing.is_empty(),
        "lost spans {missing:?}\n{}",
        second.describe()
    );
    second.stop();
}

/// The machine's PostgreSQL (`SLUICE_TEST_POSTGRES_URL` overrides).
fn postgres_url() -> String {
    std::env::var("SLUICE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A config for one of several instances sharing the stream through
/// leases in PostgreSQL.
fn leased_config(t: &Setup, table: &str, metrics: SocketAddr) -> PathBuf {
    let url = postgres_url();
    t.dir.write_config(
        &format!("leased-{}.yaml", metrics.port()),
        &format!(
            r#"
receivers:
  kinesis:
    stream_name: {STREAM}
    region: us-east-1
    endpoint: {endpoint}
    initial_position: TRIM_HORIZON
    idle_time_between_reads: 100ms
    checkpoint_interval: 500ms
    shard_sync_interval: 1s
    leases:
      postgres: "{url}"
      table: {table}
      lease_duration: 3s
processors:
  batch:
    timeout: 100ms
exporters:
  kafka:
    brokers: ["{brokers}"]
    encoding: haystack_proto
    traces: {{topic: {TOPIC}}}
    sending_queue: {{enabled: false}}
service:
  pipelines:
    traces:
      receivers: [kinesis]
      processors: [batch]
      exporters: [kafka]
  telemetry:
    metrics:
      address: {metrics}
"#,
            endpoint = t.kinesis.endpoint,
            brokers = t.broker.address(),
        ),
    )
}

fn shards_reading(metrics: SocketAddr) -> Option<f64> {
    metric_value(
        &scrape_metrics(metrics),
        "sluice_kinesis_receiver_shards_reading",
        &[],
    )
}

#[test]
fn two_instances_share_the_shards_and_a_killed_instances_shard_is_taken_over() {
    let t = Setup::new();
    let table = format!(
        "e2e_leases_{}_{}",
        std::process::id(),
        random_u64() % 1_000_000
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", "sluice-test"),
        ("AWS_SECRET_ACCESS_KEY", "sluice-test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let (ma, mb) = (free_addr(), free_addr());
    let mut a = Sluice::run_with_env(t.dir.path(), &[&leased_config(&t, &table, ma)], &env);
    let mut b = Sluice::run_with_env(t.dir.path(), &[&leased_config(&t, &table, mb)], &env);
    let even = wait_until(WAIT, || {
        shards_reading(ma) == Some(1.0) && shards_reading(mb) == Some(1.0)
    });
    assert!(
        even,
        "the two shards were not split one each\n{}\n{}",
        a.describe(),
        b.describe()
    );
    let spans: Vec<Span> = (0..400).map(span).collect();
    t.rt.block_on(put_aggregated(&t.kinesis, &spans[..200], 10));
    assert!(t.wait_written(200).len() >= 200);
    // a dies without releasing its lease: b takes its shard once the lease
    // runs out (3 s), from a's last checkpoint.
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10));
    t.rt.block_on(put_aggregated(&t.kinesis, &spans[200..], 10));
    let took_over = wait_until(WAIT, || shards_reading(mb) == Some(2.0));
    assert!(took_over, "b did not take a's shard\n{}", b.describe());
    let written = t.wait_written(400);
    let duplicates: usize = written.values().map(|(n, _, _)| n - 1).sum();
    println!(
        "two instances, one killed: {} of 400 spans written, {duplicates} duplicates",
        written.len()
    );
    let missing: Vec<&str> = spans
        .iter()
        .filter(|s| !written.contains_key(&s.span_id))
        .map(|s| s.span_id.as_str())
        .collect();
    assert!(missing.is_empty(), "lost {missing:?}\n{}", b.describe());
    b.stop();
    t.rt.block_on(async {
        let leases = LeaseTable::connect(&postgres_url(), &table, "x", "x", Duration::from_secs(1))
            .await
            .unwrap();
        leases.drop_table().await.unwrap();
    });
}
