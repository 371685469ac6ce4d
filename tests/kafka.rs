//! Kafka end to end, through the real binary and a real Kafka-protocol
//! broker (Tansu, in memory, one per test): every encoding from OTLP through
//! the broker back into sluice; Haystack messages read by kcat; two
//! receivers of one group sharing 16 partitions while one is killed with
//! SIGKILL; a broker restart under export. The two-tier topology is in
//! tests/kafka_two_tier.rs.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use support::kafka::{kcat_read_all, Broker, Follower, FAST_GROUP_PROPERTIES};
use support::*;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const FINAL_TIMEOUT: Duration = Duration::from_secs(90);

/// Posts `spans` to the OTLP/HTTP receiver at `addr`; true when answered 200.
fn post(addr: SocketAddr, spans: &[SpanSpec]) -> bool {
    let body = trace_request_protobuf("kafka-test", spans);
    matches!(post_traces_protobuf(addr, &body, REQUEST_TIMEOUT), Ok(r) if r.status == 200)
}

/// The span keys (`trace:span`) in the complete lines of JSON files.
fn keys_in(paths: &[&Path]) -> Vec<String> {
    paths
        .iter()
        .flat_map(|p| spans_in(p))
        .map(|i| span_key(&i))
        .collect()
}

/// Number of lag series (= partitions owned) a receiver reports.
fn owned_partitions(metrics: SocketAddr) -> usize {
    parse_prometheus(&scrape_metrics(metrics))
        .iter()
        .filter(|s| s.name == "sluice_kafka_receiver_lag")
        .count()
}

fn agent_config(
    dir: &TestDir,
    http: SocketAddr,
    metrics: SocketAddr,
    exporters: &str,
    names: &[&str],
) -> std::path::PathBuf {
    dir.write_config(
        "agent.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
exporters:
{exporters}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [{}]
  telemetry:
    metrics:
      address: {metrics}
"#,
            names.join(", ")
        ),
    )
}

#[test]
fn every_encoding_round_trips_from_otlp_through_the_broker_into_sluice() {
    let broker = Broker::start();
    let encodings = ["otlp_proto", "otlp_json", "haystack_proto", "haystack_json"];
    for e in encodings {
        broker.create_topic(&format!("spans-{e}"), 3);
    }
    let dir = TestDir::new();
    let (agent_http, agent_metrics, gw_metrics) = (free_addr(), free_addr(), free_addr());
    let exporters: String = encodings
        .iter()
        .map(|e| {
            format!(
                "  kafka/{e}:\n    brokers: [{}]\n    traces: {{topic: spans-{e}, encoding: {e}}}\n",
                broker.address()
            )
        })
        .collect();
    let names: Vec<String> = encodings.iter().map(|e| format!("kafka/{e}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let agent = agent_config(&dir, agent_http, agent_metrics, &exporters, &names);

    let mut receivers = String::new();
    let mut file_exporters = String::new();
    let mut pipelines = String::new();
    for e in encodings {
        receivers.push_str(&format!(
            "  kafka/{e}:\n    brokers: [{}]\n    group_id: g-{e}\n    initial_offset: earliest\n    traces: {{topics: [spans-{e}], encoding: {e}}}\n    properties: {FAST_GROUP_PROPERTIES}\n",
            broker.address()
        ));
        file_exporters.push_str(&format!(
            "  file/{e}:\n    path: {}\n",
            dir.file(&format!("{e}.jsonl"))
        ));
        pipelines.push_str(&format!(
            "    traces/{e}:\n      receivers: [kafka/{e}]\n      exporters: [file/{e}]\n"
        ));
    }
    let gateway = dir.write_config(
        "gateway.yaml",
        &format!(
            "receivers:\n{receivers}exporters:\n{file_exporters}service:\n  pipelines:\n{pipelines}  telemetry:\n    metrics:\n      address: {gw_metrics}\n"
        ),
    );
    let _gw = Sluice::run(dir.path(), &[&gateway]);
    let _agent = Sluice::run(dir.path(), &[&agent]);

    let ids = IdGen::new();
    let spans = make_spans(&ids, "round-trip", 30);
    for chunk in spans.chunks(10) {
        assert!(post(agent_http, chunk), "the agent accepted the request");
    }
    let want: HashSet<String> = spans.iter().map(SpanSpec::key).collect();
    for e in encodings {
        let path = dir.join(&format!("{e}.jsonl"));
        let arrived = wait_until(FINAL_TIMEOUT, || {
            keys_in(&[&path]).into_iter().collect::<HashSet<_>>() == want
        });
        assert!(
            arrived,
            "{e}: every span came back through Kafka ({} of {})",
            keys_in(&[&path]).len(),
            want.len()
        );
        let names: HashSet<String> = spans_in(&path)
            .iter()
            .map(|i| i.str_field("name"))
            .collect();
        assert!(names.contains("round-trip-7"), "{e}: names kept: {names:?}");
        let services: HashSet<Option<String>> =
            spans_in(&path).iter().map(|i| i.service_name()).collect();
        assert_eq!(
            services,
            HashSet::from([Some("kafka-test".to_string())]),
            "{e}"
        );
    }
}

#[test]
fn haystack_proto_messages_are_read_by_kcat_with_trace_id_keys() {
    let broker = Broker::start();
    broker.create_topic("haystack-spans", 4);
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let agent = agent_config(
        &dir,
        http,
        metrics,
        &format!(
            "  kafka:\n    brokers: [{}]\n    traces: {{topic: haystack-spans, encoding: haystack_proto}}\n",
            broker.address()
        ),
        &["kafka"],
    );
    let _agent = Sluice::run(dir.path(), &[&agent]);
    let ids = IdGen::new();
    let spans = make_spans(&ids, "hay", 20);
    assert!(post(http, &spans));
    assert_eq!(
        wait_metric(
            metrics,
            "sluice_kafka_exporter_messages_sent_total",
            &[],
            20.0,
            DELIVERY_TIMEOUT
        ),
        Some(20.0),
        "one message per span"
    );
    let messages = kcat_read_all(&broker.address(), "haystack-spans");
    assert_eq!(messages.len(), 20);
    let mut seen = HashSet::new();
    let mut partitions_of: HashMap<String, HashSet<i32>> = HashMap::new();
    for (partition, key, value) in &messages {
        let span = sluice_pdata::haystack::Span::decode(value.as_slice())
            .expect("the value is a Haystack Span protobuf");
        let key = String::from_utf8(key.clone()).expect("the key is text");
        assert_eq!(key, span.trace_id, "the key is the span's trace id");
        assert_eq!(span.service_name, "kafka-test");
        partitions_of.entry(key).or_default().insert(*partition);
        seen.insert(format!("{}:{}", span.trace_id, span.span_id));
    }
    let want: HashSet<String> = spans.iter().map(SpanSpec::key).collect();
    assert_eq!(
        seen, want,
        "every span, with OTLP ids spelled as 32/16 hex digits"
    );
    assert!(partitions_of.values().all(|p| p.len() == 1));
}

/// Sends `requests` requests of `per_request` fresh spans to `http` from one
/// thread, pausing `pause` between them; returns the spans of the requests
/// answered 200. `progress` counts answered requests as they happen.
fn send_stream(
    http: SocketAddr,
    requests: usize,
    per_request: usize,
    pause: Duration,
    progress: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<SpanSpec>> {
    std::thread::spawn(move || {
        let ids = IdGen::new();
        let mut acked = Vec::new();
        for i in 0..requests {
            let spans = make_spans(&ids, &format!("stream-{i}"), per_request);
            if post(http, &spans) {
                acked.extend(spans);
                progress.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(pause);
        }
        acked
    })
}

#[test]
fn two_receivers_share_16_partitions_and_a_sigkill_loses_nothing() {
    let broker = Broker::start();
    broker.create_topic("spans16", 16);
    let dir = TestDir::new();
    let (http, agent_metrics) = (free_addr(), free_addr());
    let agent = agent_config(
        &dir,
        http,
        agent_metrics,
        &format!(
            "  kafka:\n    brokers: [{}]\n    topic: spans16\n    partition_traces_by_id: true\n",
            broker.address()
        ),
        &["kafka"],
    );
    let receiver = |name: &str, metrics: SocketAddr| {
        dir.write_config(
            &format!("{name}.yaml"),
            &format!(
                r#"
receivers:
  kafka:
    brokers: [{}]
    group_id: pair
    topics: [spans16]
    initial_offset: earliest
    properties: {FAST_GROUP_PROPERTIES}
exporters:
  file:
    path: {}
    sending_queue: {{enabled: false}}
service:
  pipelines:
    traces:
      receivers: [kafka]
      exporters: [file]
  telemetry:
    metrics:
      address: {metrics}
"#,
                broker.address(),
                dir.file(&format!("{name}.jsonl"))
            ),
        )
    };
    let (ma, mb) = (free_addr(), free_addr());
    let (ca, cb) = (receiver("a", ma), receiver("b", mb));
    let mut a = Sluice::run(dir.path(), &[&ca]);
    assert!(
        wait_until(FINAL_TIMEOUT, || owned_partitions(ma) == 16),
        "a owns all 16 partitions alone"
    );
    let _b = Sluice::run(dir.path(), &[&cb]);
    assert!(
        wait_until(FINAL_TIMEOUT, || owned_partitions(ma) == 8
            && owned_partitions(mb) == 8),
        "the group splits 8 and 8 (a={}, b={})",
        owned_partitions(ma),
        owned_partitions(mb)
    );
    let _agent = Sluice::run(dir.path(), &[&agent]);

    let progress = Arc::new(AtomicUsize::new(0));
    let sender = send_stream(http, 300, 10, Duration::from_millis(10), progress.clone());
    // Mid-stream: once a third is acknowledged and a has written some.
    let (fa, fb) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    assert!(wait_until(FINAL_TIMEOUT, || progress
        .load(Ordering::SeqCst)
        >= 100
        && !spans_in(&fa).is_empty()
        && !spans_in(&fb).is_empty()));
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10));
    let before_kill_a = keys_in(&[&fa]).len();
    let acked = sender.join().expect("sender thread");
    assert!(
        acked.len() >= 2900,
        "the agent acknowledged the stream ({})",
        acked.len()
    );

    assert!(
        wait_until(FINAL_TIMEOUT, || owned_partitions(mb) == 16),
        "b took over a's partitions ({} owned)",
        owned_partitions(mb)
    );
    let want: HashSet<String> = acked.iter().map(SpanSpec::key).collect();
    let delivered = wait_until(FINAL_TIMEOUT, || {
        let got: HashSet<String> = keys_in(&[&fa, &fb]).into_iter().collect();
        want.is_subset(&got)
    });
    let all = keys_in(&[&fa, &fb]);
    let unique: HashSet<&String> = all.iter().collect();
    let lost = want.iter().filter(|k| !unique.contains(k)).count();
    println!(
        "acked={} delivered={} lost={lost} duplicates={} a_before_kill={before_kill_a}",
        want.len(),
        unique.len(),
        all.len() - unique.len()
    );
    assert!(
        delivered && lost == 0,
        "{lost} acknowledged spans never reached a receiver's file"
    );
    assert!(
        before_kill_a > 0 && !keys_in(&[&fb]).is_empty(),
        "both receivers took part"
    );
}

#[test]
fn a_broker_restart_during_export_loses_nothing_acknowledged() {
    let mut broker = Broker::start();
    broker.create_topic("restarts", 2);
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let agent = agent_config(
        &dir,
        http,
        metrics,
        &format!(
            "  kafka:\n    brokers: [{}]\n    topic: restarts\n    encoding: otlp_json\n    partition_traces_by_id: true\n    timeout: 2s\n    retry_on_failure: {{initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 0s}}\n",
            broker.address()
        ),
        &["kafka"],
    );
    let agent_process = Arc::new(Mutex::new(Sluice::run(dir.path(), &[&agent])));
    // Everything the old broker holds is read as it arrives: an in-memory
    // broker takes its data with it when it dies.
    let follower = Follower::start(&broker.address(), "restarts");

    let progress = Arc::new(AtomicUsize::new(0));
    let sender = send_stream(http, 80, 5, Duration::from_millis(40), progress.clone());
    assert!(wait_until(DELIVERY_TIMEOUT, || progress
        .load(Ordering::SeqCst)
        >= 15
        && follower.bytes() > 0));
    // Freeze sluice so that the follower can catch up with what the broker
    // acknowledged, then kill the broker with sends in flight.
    agent_process.lock().unwrap().signal(libc::SIGSTOP);
    let mut last = follower.bytes();
    let mut stable_since = Instant::now();
    assert!(wait_until(DELIVERY_TIMEOUT, || {
        let now = follower.bytes();
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        stable_since.elapsed() >= Duration::from_secs(1)
    }));
    broker.kill();
    let on_old_broker = follower.stop();
    agent_process.lock().unwrap().signal(libc::SIGCONT);

    // Down for two seconds: sluice keeps accepting into its queue while
    // its sends fail.
    assert!(wait_until(DELIVERY_TIMEOUT, || metric_value(
        &scrape_metrics(metrics),
        "sluice_kafka_exporter_messages_failed_total",
        &[]
    )
    .unwrap_or(0.0)
        > 0.0));
    std::thread::sleep(Duration::from_secs(2));
    // Back, empty; the queue is sent again.
    broker.restart();
    broker.create_topic("restarts", 2);
    let mut acked = sender.join().expect("sender");
    let after = make_spans(&IdGen::new(), "after", 20);
    assert!(post(http, &after));
    acked.extend(after);

    let old: Vec<String> = on_old_broker
        .iter()
        .flat_map(|(_, _, v)| json_span_keys(v))
        .collect();
    let want: HashSet<String> = acked.iter().map(SpanSpec::key).collect();
    let new_broker = Follower::start(&broker.address(), "restarts");
    let mut got_all = Vec::new();
    let ok = wait_until(FINAL_TIMEOUT, || {
        got_all = old.clone();
        got_all.extend(
            new_broker
                .messages()
                .iter()
                .flat_map(|(_, _, v)| json_span_keys(v)),
        );
        let got: HashSet<&String> = got_all.iter().collect();
        want.iter().all(|k| got.contains(k))
    });
    let got: HashSet<&String> = got_all.iter().collect();
    let lost = want.iter().filter(|k| !got.contains(k)).count();
    println!(
        "acked={} on_old_broker={} delivered={} lost={lost} duplicates={}",
        want.len(),
        old.len(),
        got.len(),
        got_all.len() - got.len()
    );
    assert!(
        ok && lost == 0,
        "{lost} acknowledged spans were lost across the broker restart"
    );
    assert!(
        !old.is_empty(),
        "some spans reached the broker before it died"
    );
}

/// The span keys of one OTLP/JSON message.
fn json_span_keys(value: &[u8]) -> Vec<String> {
    let line: serde_json::Value = serde_json::from_slice(value).expect("an OTLP/JSON message");
    spans(&[line]).iter().map(span_key).collect()
}
