//! The crash test: acknowledged data survives `kill -9`.
//!
//! sluice runs an OTLP/HTTP receiver feeding an `otlp` exporter with retries
//! that never give up and a persistent sending queue, in front of an
//! in-process OTLP/gRPC sink. Two load threads post trace requests with
//! unique span ids and remember which requests were answered 200. While the
//! load runs, sluice is killed with SIGKILL at a random point of each round
//! and started again on the same ports and storage directory; the sink
//! answers `UNAVAILABLE` for a random first part of each round, so that the
//! queue holds a backlog when the kill comes. At the end
//! every acknowledged span must have reached the sink at least once
//! (duplicates are allowed: the guarantee is at-least-once).
//!
//! `SLUICE_SOAK_ROUNDS` (default 5) sets the number of kills and
//! `SLUICE_SOAK_ROUND_MS` (default 1500) the length of a round; scripts/soak
//! runs this test with many rounds. The test prints one summary line:
//! `rounds=N acked=N delivered=N lost=N duplicates=N` (spans).

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::sink::{show, span_ids, Sink, SpanId};
use support::*;

const LOAD_THREADS: usize = 2;
const SPANS_PER_REQUEST: usize = 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the sink may take to hold every acknowledged span at the end.
const FINAL_DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a round waits for its first acknowledged request.
const ROUND_ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The most sluice stays down between a kill and the next start.
const MAX_DOWN: Duration = Duration::from_millis(250);

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a non-negative integer")),
        Err(_) => default,
    }
}

fn config(
    dir: &TestDir,
    http: SocketAddr,
    metrics: SocketAddr,
    sink: &Sink,
    storage: &Path,
) -> PathBuf {
    dir.write_config(
        "config.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
extensions:
  file_storage/q:
    directory: {storage}
    create_directory: true
exporters:
  otlp:
    endpoint: {sink}
    tls: {{ insecure: true }}
    timeout: 2s
    retry_on_failure:
      enabled: true
      initial_interval: 50ms
      randomization_factor: 0
      multiplier: 2
      max_interval: 500ms
      max_elapsed_time: 0s
    sending_queue:
      enabled: true
      num_consumers: 2
      queue_size: 5000
      storage: file_storage/q
service:
  extensions: [file_storage/q]
  shutdown_timeout: 5s
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
  telemetry:
    metrics:
      address: {metrics}
"#,
            storage = storage.display(),
            sink = sink.endpoint(),
        ),
    )
}

/// What the load threads share with the test.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    /// Spans of requests answered 200.
    acked: Mutex<Vec<SpanId>>,
    acked_requests: AtomicUsize,
    /// Spans of every request sent, whatever the answer.
    sent: Mutex<Vec<SpanId>>,
    requests: AtomicUsize,
    /// Answers other than 200 (e.g. 503 while starting or stopping).
    other_status: AtomicUsize,
    /// Requests that got no HTTP answer (sluice down or killed mid-request).
    io_errors: AtomicUsize,
}

fn start_load(http: SocketAddr, load: &Arc<Load>, hard_deadline: Instant) -> Vec<JoinHandle<()>> {
    let ids = Arc::new(IdGen::new());
    (0..LOAD_THREADS)
        .map(|t| {
            let (ids, load) = (ids.clone(), load.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !load.stop.load(Ordering::SeqCst) && Instant::now() < hard_deadline {
                    let spans = make_spans(&ids, &format!("crash-{t}-{n}"), SPANS_PER_REQUEST);
                    n += 1;
                    let keys = span_ids(&spans);
                    let body = trace_request_protobuf("crash-test", &spans);
                    load.sent.lock().unwrap().extend_from_slice(&keys);
                    load.requests.fetch_add(1, Ordering::SeqCst);
                    match post_traces_protobuf(http, &body, REQUEST_TIMEOUT) {
                        Ok(resp) if resp.status == 200 => {
                            load.acked.lock().unwrap().extend(keys);
                            load.acked_requests.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Ok(_) => {
                            load.other_status.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20 + random_u64() % 31));
                        }
                        Err(_) => {
                            // sluice is down: wait a little, go on with new ids.
                            load.io_errors.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20 + random_u64() % 31));
                        }
                    }
                }
            })
        })
        .collect()
}

fn assert_no_panic(sluice: &Sluice, what: &str) {
    assert!(
        !sluice.stderr().contains("panicked"),
        "sluice panicked ({what})\n{}",
        sluice.describe()
    );
}

#[test]
fn acknowledged_spans_survive_repeated_kill_9() {
    let rounds = env_u64("SLUICE_SOAK_ROUNDS", 5).max(1);
    let round_ms = env_u64("SLUICE_SOAK_ROUND_MS", 1500).max(100);
    let round = Duration::from_millis(round_ms);

    let sink = Sink::start();
    let dir = TestDir::new();
    let storage = dir.join("queue");
    let (http, metrics) = (free_addr(), free_addr());
    let cfg = config(&dir, http, metrics, &sink, &storage);

    let load = Arc::new(Load::default());
    // Generous: every wait below has its own, shorter deadline.
    let hard_deadline =
        Instant::now() + (round + ROUND_ACK_TIMEOUT + MAX_DOWN + STARTUP_TIMEOUT) * rounds as u32;
    let mut acked_per_round = Vec::new();
    let mut queued_at_kill = Vec::new();

    // Round r covers [t0 + r*R, t0 + (r+1)*R) and has one kill, at a random
    // point of it; sluice is started again right after each kill (after a
    // pause of up to MAX_DOWN, during which clients get connection errors).
    // A kill waits until the running incarnation has acknowledged at least
    // one request, so that every round exercises the path: replay of what
    // the previous one left on disk together with new data.
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    let workers = start_load(http, &load, hard_deadline);
    let t0 = Instant::now();
    for r in 0..rounds {
        // The sink refuses (UNAVAILABLE) for a random first part of each
        // round, so that a backlog of acknowledged, unsent requests sits in
        // the queue when the kill comes.
        sink.unavailable_until(
            Instant::now() + Duration::from_millis(random_u64() % (round_ms / 2 + 1)),
            None,
        );
        let incarnation_started = Instant::now();
        let acks_at_start = load.acked_requests.load(Ordering::SeqCst);
        let kill_at = t0 + round * r as u32 + Duration::from_millis(random_u64() % round_ms);
        let ready = wait_until(
            kill_at.saturating_duration_since(Instant::now()) + ROUND_ACK_TIMEOUT,
            || {
                Instant::now() >= kill_at
                    && load.acked_requests.load(Ordering::SeqCst) > acks_at_start
            },
        );
        let acked_now = load.acked_requests.load(Ordering::SeqCst) - acks_at_start;
        if !ready {
            load.stop.store(true, Ordering::SeqCst);
            panic!(
                "round {}: no request was acknowledged within {:?} of the start \
                 ({} requests, {} non-200 answers, {} without an answer so far)\n{}",
                r + 1,
                incarnation_started.elapsed(),
                load.requests.load(Ordering::SeqCst),
                load.other_status.load(Ordering::SeqCst),
                load.io_errors.load(Ordering::SeqCst),
                sluice.describe()
            );
        }
        // What the queue holds at the kill (a scrape is quick; best effort).
        let queued = http_get(metrics, "/metrics").ok().and_then(|r| {
            metric_value(
                &r.text(),
                "otelcol_exporter_queue_size",
                &[("exporter", "otlp")],
            )
        });
        queued_at_kill.push(queued.map_or(-1, |q| q as i64));
        sluice.signal(libc::SIGKILL);
        let status = sluice.wait_exit(SHUTDOWN_TIMEOUT);
        assert_no_panic(&sluice, &format!("round {}", r + 1));
        assert!(
            !status.success(),
            "round {}: sluice exited successfully before it was killed\n{}",
            r + 1,
            sluice.describe()
        );
        acked_per_round.push(acked_now);
        if r + 1 == rounds {
            break;
        }
        std::thread::sleep(Duration::from_millis(
            random_u64() % (MAX_DOWN.as_millis() as u64 + 1),
        ));
        sluice = Sluice::run(dir.path(), &[&cfg]);
    }

    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("load thread panicked");
    }

    // The last start: sluice replays what is on disk and drains it.
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    let acked: HashSet<SpanId> = load.acked.lock().unwrap().iter().copied().collect();
    let sent: HashSet<SpanId> = load.sent.lock().unwrap().iter().copied().collect();
    let all_arrived = sink.wait_for_spans(&acked, FINAL_DELIVERY_TIMEOUT);
    let queue_left = wait_metric(
        metrics,
        "otelcol_exporter_queue_size",
        &[("exporter", "otlp")],
        0.0,
        DELIVERY_TIMEOUT,
    );
    let corrupted = metric_value(
        &scrape_metrics(metrics),
        "sluice_exporter_persistent_queue_corrupted_records_total",
        &[("exporter", "otlp")],
    );
    sluice.stop();
    assert_no_panic(&sluice, "last start");

    let lost = sink.missing_of(&acked);
    let delivered = sink.unique();
    let duplicates = sink.duplicates();
    println!(
        "rounds={rounds} acked={} delivered={delivered} lost={lost} duplicates={duplicates}",
        acked.len()
    );
    eprintln!(
        "crash test: requests={} acked_requests={} non_200={} io_errors={} \
         acked_per_round={acked_per_round:?} queued_at_kill={queued_at_kill:?} corrupted_records_at_last_start={corrupted:?} \
         queue_size_at_end={queue_left:?} {}",
        load.requests.load(Ordering::SeqCst),
        load.acked_requests.load(Ordering::SeqCst),
        load.other_status.load(Ordering::SeqCst),
        load.io_errors.load(Ordering::SeqCst),
        sink.describe()
    );

    assert_eq!(
        lost,
        0,
        "{lost} of {} acknowledged spans never reached the sink within {FINAL_DELIVERY_TIMEOUT:?} \
         (all arrived: {all_arrived})",
        acked.len()
    );
    assert_eq!(acked_per_round.len() as u64, rounds);
    assert!(
        acked_per_round.iter().all(|&n| n > 0),
        "a round acknowledged nothing: {acked_per_round:?}"
    );
    let unknown = sink.unknown(&sent);
    assert!(
        unknown.is_empty(),
        "the sink received {} spans that were never sent, e.g. {:?}",
        unknown.len(),
        unknown.iter().take(3).map(show).collect::<Vec<_>>()
    );
    assert_eq!(
        queue_left,
        Some(0.0),
        "the exporter queue did not drain after every span arrived"
    );
}
