//! The Kafka two-tier topology, run from the configs in examples/: an agent
//! (examples/kafka-agent.yaml: OTLP in, Kafka out keyed by trace id, a
//! persistent queue) -> a broker (Tansu, 12 partitions) -> three gateways in
//! one consumer group (examples/kafka-gateway.yaml: Kafka in, batch, file
//! out written before the pipeline answers).
//!
//! Each trace's spans are sent in separate requests, far enough apart to
//! travel in separate Kafka messages. Checked: every acknowledged span
//! arrives; while the three run, each trace's spans are all at one gateway;
//! after one gateway is killed with SIGKILL in the middle of a stream, its
//! partitions move to the other two, nothing is lost (duplicates are counted
//! and printed), and no trace is split between the two survivors.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::kafka::Broker;
use support::*;

const FINAL_TIMEOUT: Duration = Duration::from_secs(120);
const SPANS_PER_TRACE: usize = 4;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn owned_partitions(metrics: SocketAddr) -> usize {
    parse_prometheus(&scrape_metrics(metrics))
        .iter()
        .filter(|s| s.name == "sluice_kafka_receiver_lag")
        .count()
}

/// `traces` traces of SPANS_PER_TRACE spans; span i of every trace goes in
/// request i, the requests `pause` apart. Returns the spans acknowledged.
fn send_traces(
    http: SocketAddr,
    ids: &IdGen,
    prefix: &str,
    traces: usize,
    pause: Duration,
    mut between: impl FnMut(usize),
) -> Vec<SpanSpec> {
    let roots = make_spans(ids, prefix, traces);
    let mut acked = Vec::new();
    for i in 0..SPANS_PER_TRACE {
        let spans: Vec<SpanSpec> = roots
            .iter()
            .enumerate()
            .map(|(t, root)| SpanSpec {
                trace_id: root.trace_id,
                span_id: {
                    let mut s = root.span_id;
                    s[0] ^= (i as u8 + 1) << 4;
                    s
                },
                name: format!("{prefix}-{t}-{i}"),
            })
            .collect();
        let body = trace_request_protobuf("two-tier", &spans);
        let resp = post_traces_protobuf(http, &body, Duration::from_secs(10));
        if matches!(resp, Ok(r) if r.status == 200) {
            acked.extend(spans);
        }
        between(i);
        std::thread::sleep(pause);
    }
    acked
}

/// trace id -> the gateways (indexes) holding its spans, and every span key
/// with how often it was written.
fn where_traces_are(
    files: &[PathBuf],
) -> (HashMap<String, HashSet<usize>>, HashMap<String, usize>) {
    let mut traces: HashMap<String, HashSet<usize>> = HashMap::new();
    let mut spans: HashMap<String, usize> = HashMap::new();
    for (g, f) in files.iter().enumerate() {
        for item in spans_in(f) {
            let key = span_key(&item);
            let trace = key.split(':').next().unwrap_or_default().to_string();
            traces.entry(trace).or_default().insert(g);
            *spans.entry(key).or_default() += 1;
        }
    }
    (traces, spans)
}

fn trace_hex(s: &SpanSpec) -> String {
    hex(&s.trace_id)
}

#[test]
fn agent_kafka_three_gateways_keep_traces_together_and_survive_a_kill() {
    let broker = Broker::start();
    broker.create_topic("otlp_spans", 12);
    let dir = TestDir::new();
    let brokers = broker.address();

    let gateway_metrics: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let files: Vec<PathBuf> = (0..3)
        .map(|g| dir.join(&format!("gateway-{g}.jsonl")))
        .collect();
    let mut gateways: Vec<Sluice> = (0..3)
        .map(|g| {
            let out = files[g].to_string_lossy().to_string();
            let metrics = gateway_metrics[g].to_string();
            Sluice::run_with_env(
                dir.path(),
                &[&example("kafka-gateway.yaml")],
                &[
                    ("KAFKA_BROKERS", brokers.as_str()),
                    ("GATEWAY_OUT", out.as_str()),
                    ("GATEWAY_METRICS", metrics.as_str()),
                    ("KAFKA_SESSION_TIMEOUT_MS", "3000"),
                    ("KAFKA_HEARTBEAT_MS", "300"),
                ],
            )
        })
        .collect();
    let split_evenly = wait_until(FINAL_TIMEOUT, || {
        gateway_metrics.iter().all(|m| owned_partitions(*m) == 4)
    });
    let owned: Vec<usize> = gateway_metrics
        .iter()
        .map(|m| owned_partitions(*m))
        .collect();
    assert!(
        split_evenly,
        "the group splits 12 partitions 4/4/4: {owned:?}"
    );

    let (grpc, http, agent_metrics) = (free_addr(), free_addr(), free_addr());
    let queue = dir.file("agent-queue");
    let (grpc_s, http_s, metrics_s) = (
        grpc.to_string(),
        http.to_string(),
        agent_metrics.to_string(),
    );
    let _agent = Sluice::run_with_env(
        dir.path(),
        &[&example("kafka-agent.yaml")],
        &[
            ("KAFKA_BROKERS", brokers.as_str()),
            ("AGENT_OTLP_GRPC", grpc_s.as_str()),
            ("AGENT_OTLP_HTTP", http_s.as_str()),
            ("AGENT_QUEUE_DIR", queue.as_str()),
            ("AGENT_METRICS", metrics_s.as_str()),
        ],
    );
    let ids = IdGen::new();

    // Phase 1: all three gateways up.
    let phase1 = send_traces(http, &ids, "p1", 40, Duration::from_millis(400), |_| {});
    assert_eq!(
        phase1.len(),
        40 * SPANS_PER_TRACE,
        "the agent accepted phase 1"
    );
    let want1: HashSet<String> = phase1.iter().map(SpanSpec::key).collect();
    assert!(
        wait_until(FINAL_TIMEOUT, || {
            let (_, spans) = where_traces_are(&files);
            want1.iter().all(|k| spans.contains_key(k))
        }),
        "every phase-1 span reached a gateway"
    );
    let (traces, _) = where_traces_are(&files);
    for s in &phase1 {
        let at = &traces[&trace_hex(s)];
        assert_eq!(
            at.len(),
            1,
            "trace {} is at one gateway, not {at:?}",
            trace_hex(s)
        );
    }
    let used: HashSet<usize> = traces.values().flatten().copied().collect();
    assert_eq!(used.len(), 3, "all three gateways took traces");

    // Phase 2: kill gateway 2 in the middle of a stream.
    let victim = 2;
    let phase2 = send_traces(http, &ids, "p2", 40, Duration::from_millis(400), |i| {
        if i == 1 {
            gateways[victim].signal(libc::SIGKILL);
        }
    });
    gateways[victim].wait_exit(Duration::from_secs(10));
    assert!(
        wait_until(FINAL_TIMEOUT, || {
            owned_partitions(gateway_metrics[0]) + owned_partitions(gateway_metrics[1]) == 12
        }),
        "the survivors took the dead gateway's partitions"
    );

    // Phase 3: after the hand-over.
    let phase3 = send_traces(http, &ids, "p3", 40, Duration::from_millis(400), |_| {});

    let acked: Vec<&SpanSpec> = phase1.iter().chain(&phase2).chain(&phase3).collect();
    let want: HashSet<String> = acked.iter().map(|s| s.key()).collect();
    let delivered = wait_until(FINAL_TIMEOUT, || {
        let (_, spans) = where_traces_are(&files);
        want.iter().all(|k| spans.contains_key(k))
    });
    let (traces, spans) = where_traces_are(&files);
    let lost = want.iter().filter(|k| !spans.contains_key(*k)).count();
    let duplicates: usize = spans.values().map(|n| n - 1).sum();
    println!(
        "acked={} delivered={} lost={lost} duplicates={duplicates}",
        want.len(),
        spans.len()
    );
    assert!(
        delivered && lost == 0,
        "{lost} acknowledged spans never reached a gateway"
    );
    for s in &acked {
        let at = &traces[&trace_hex(s)];
        let survivors: Vec<&usize> = at.iter().filter(|g| **g != victim).collect();
        assert!(
            survivors.len() <= 1,
            "trace {} split between the surviving gateways: {at:?}",
            trace_hex(s)
        );
    }
    for s in &phase3 {
        let at = &traces[&trace_hex(s)];
        assert!(
            at.len() == 1 && !at.contains(&victim),
            "after the hand-over, trace {} is at one live gateway, not {at:?}",
            trace_hex(s)
        );
    }
}
