//! Reliability of the `otlp` exporter through the real binary, against an
//! in-process OTLP/gRPC sink (tests/support/sink.rs): retries with
//! exponential backoff through an outage (the backend answering
//! `UNAVAILABLE`, or not listening at all), permanent errors and partial
//! successes that are not retried, a full persistent queue that refuses
//! retryably, a persistent queue file damaged on disk, and memory that stays
//! bounded while the backend is down.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::sink::{show, span_ids, Mode, Sink, SpanId};
use support::*;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
const EXPORTER: [(&str, &str); 1] = [("exporter", "otlp")];

/// Fast, deterministic backoff: 100ms, 200ms, 400ms, 800ms, 1s, 1s, ...
const FAST_RETRY: &str = "
    retry_on_failure:
      enabled: true
      initial_interval: 100ms
      randomization_factor: 0
      multiplier: 2
      max_interval: 1s
      max_elapsed_time: 0s";

/// A config: OTLP/HTTP receiver on `http` -> `processors` -> the `otlp`
/// exporter to `sink` with `exporter` (YAML lines indented by 4) -> with
/// `storage`, a `file_storage/q` extension in that directory.
fn config(
    dir: &TestDir,
    http: SocketAddr,
    metrics: SocketAddr,
    sink: &Sink,
    exporter: &str,
    processors: Option<&str>,
    storage: Option<&Path>,
) -> PathBuf {
    let extensions = storage
        .map(|s| {
            format!(
                "extensions:\n  file_storage/q:\n    directory: {}\n    create_directory: true\n",
                s.display()
            )
        })
        .unwrap_or_default();
    let service_extensions = if storage.is_some() {
        "  extensions: [file_storage/q]\n"
    } else {
        ""
    };
    let (processor_section, pipeline_processors) = match processors {
        Some(p) => (
            format!("processors:\n{p}\n"),
            "      processors: [memory_limiter]\n",
        ),
        None => (String::new(), ""),
    };
    dir.write_config(
        "config.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
{extensions}{processor_section}exporters:
  otlp:
    endpoint: {sink}
    tls: {{ insecure: true }}
    timeout: 5s
{exporter}
service:
{service_extensions}  shutdown_timeout: 3s
  pipelines:
    traces:
      receivers: [otlp]
{pipeline_processors}      exporters: [otlp]
  telemetry:
    metrics:
      address: {metrics}
"#,
            sink = sink.endpoint(),
        ),
    )
}

/// Posts one request of `n` fresh spans; returns the response and the keys.
fn post(http: SocketAddr, ids: &IdGen, name: &str, n: usize) -> (HttpResponse, Vec<SpanId>) {
    let spans = make_spans(ids, name, n);
    let body = trace_request_protobuf("reliability-test", &spans);
    let resp = post_traces_protobuf(http, &body, REQUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("POST /v1/traces to {http}: {e}"));
    (resp, span_ids(&spans))
}

/// Posts one request that must be answered 200; returns its span keys.
fn post_ok(http: SocketAddr, ids: &IdGen, name: &str, n: usize) -> Vec<SpanId> {
    let (resp, keys) = post(http, ids, name, n);
    assert_eq!(resp.status, 200, "request {name}: {}", resp.text());
    keys
}

fn metric(metrics: SocketAddr, name: &str) -> Option<f64> {
    metric_value(&scrape_metrics(metrics), name, &EXPORTER)
}

/// Waits until `name{exporter="otlp"}` equals `expected`; asserts it does.
fn expect_metric(metrics: SocketAddr, name: &str, expected: f64, sluice: &Sluice) {
    let got = wait_metric(metrics, name, &EXPORTER, expected, DELIVERY_TIMEOUT);
    assert_eq!(
        got,
        Some(expected),
        "{name}{{exporter=\"otlp\"}}\n{}",
        sluice.describe()
    );
}

/// The gaps between consecutive attempts, in milliseconds.
fn gaps_ms(sink: &Sink) -> Vec<u128> {
    sink.attempts()
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_millis())
        .collect()
}

// ------------------------------------------------------------------ outage

#[test]
fn unavailable_backend_is_retried_with_exponential_backoff() {
    let sink = Sink::start();
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let exporter = format!("{FAST_RETRY}\n    sending_queue:\n      num_consumers: 1");
    let cfg = config(&dir, http, metrics, &sink, &exporter, None, None);
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);

    let ids = IdGen::new();
    let outage = Duration::from_secs(2);
    sink.unavailable(None);
    let keys: HashSet<SpanId> = post_ok(http, &ids, "outage", 20).into_iter().collect();
    // The outage lasts 2 s from the first attempt the sink sees.
    assert!(
        sink.wait_for_attempts(1, DELIVERY_TIMEOUT),
        "no export attempt: {}\n{}",
        sink.describe(),
        sluice.describe()
    );
    sink.unavailable_until(sink.attempts()[0].at + outage, None);

    assert!(
        sink.wait_for_spans(&keys, DELIVERY_TIMEOUT),
        "the spans were not delivered after the outage: {}\n{}",
        sink.describe(),
        sluice.describe()
    );
    expect_metric(metrics, "otelcol_exporter_sent_spans_total", 20.0, &sluice);
    let attempts = sink.attempt_count();
    eprintln!("outage: attempts={attempts} gaps_ms={:?}", gaps_ms(&sink));
    // With 100ms * 2^n waits capped at 1s, a 2s outage takes about 6
    // attempts: far fewer than a retry loop without backoff would make.
    assert!(
        (3..=8).contains(&attempts),
        "{attempts} attempts for a {outage:?} outage with backoff 100ms*2^n (max 1s); \
         gaps {:?} ms",
        gaps_ms(&sink)
    );
    expect_metric(
        metrics,
        "sluice_exporter_retries_total",
        (attempts - 1) as f64,
        &sluice,
    );
    // Each wait is at least (half) the configured backoff: the attempts do
    // not come back to back.
    let expected = [100u128, 200, 400, 800, 1000, 1000, 1000];
    for (i, gap) in gaps_ms(&sink).iter().enumerate() {
        assert!(
            *gap >= expected[i.min(expected.len() - 1)] / 2,
            "attempt {} came {gap} ms after the previous one, backoff is {} ms; gaps {:?}",
            i + 2,
            expected[i.min(expected.len() - 1)],
            gaps_ms(&sink)
        );
    }
    let received = sink.received();
    assert_eq!(received.len(), 20);
    assert!(
        received.values().all(|&n| n == 1),
        "spans accepted more than once"
    );
    // Delivered: nothing more is sent.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.attempt_count(), attempts, "attempts after success");
    expect_metric(
        metrics,
        "otelcol_exporter_send_failed_spans_total",
        0.0,
        &sluice,
    );
    sluice.stop();
}

#[test]
fn retry_info_from_the_backend_is_honoured() {
    let sink = Sink::start();
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let exporter = format!("{FAST_RETRY}\n    sending_queue:\n      num_consumers: 1");
    let cfg = config(&dir, http, metrics, &sink, &exporter, None, None);
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);

    let ids = IdGen::new();
    let hint = Duration::from_millis(800);
    sink.unavailable(Some(hint));
    let keys: HashSet<SpanId> = post_ok(http, &ids, "hint", 5).into_iter().collect();
    // Three refusals, then the sink accepts.
    assert!(
        sink.wait_for_attempts(3, DELIVERY_TIMEOUT),
        "fewer than 3 attempts: {}\n{}",
        sink.describe(),
        sluice.describe()
    );
    sink.accept();
    assert!(
        sink.wait_for_spans(&keys, DELIVERY_TIMEOUT),
        "the spans were not delivered after the outage: {}",
        sink.describe()
    );
    let attempts = sink.attempt_count();
    let gaps = gaps_ms(&sink);
    eprintln!("retry info: attempts={attempts} gaps_ms={gaps:?}");
    // The sink asks for 800ms; the own backoff (100ms, 200ms, 400ms) is
    // shorter, so the hint decides every wait.
    assert!(
        (3..=4).contains(&attempts),
        "{attempts} attempts: 3 refused, then one accepted; gaps {gaps:?} ms"
    );
    assert!(
        gaps.iter().all(|&g| g >= 700),
        "a retry came sooner than the RetryInfo delay of {hint:?}: gaps {gaps:?} ms"
    );
    expect_metric(
        metrics,
        "sluice_exporter_retries_total",
        (attempts - 1) as f64,
        &sluice,
    );
    sluice.stop();
}

fn backend_down_then_up(storage: bool) {
    let sink = Sink::down();
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let queue_dir = dir.join("queue");
    let mut exporter = format!("{FAST_RETRY}\n    sending_queue:\n      num_consumers: 2");
    if storage {
        exporter.push_str("\n      storage: file_storage/q");
    }
    let cfg = config(
        &dir,
        http,
        metrics,
        &sink,
        &exporter,
        None,
        storage.then_some(queue_dir.as_path()),
    );
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);

    let ids = IdGen::new();
    const REQUESTS: usize = 6;
    const SPANS: usize = 10;
    let down_since = Instant::now();
    let mut keys = HashSet::new();
    for i in 0..REQUESTS {
        keys.extend(post_ok(http, &ids, &format!("down-{i}"), SPANS));
    }
    // The backend stays down about 2 s; sluice keeps retrying meanwhile.
    let retried = wait_until(DELIVERY_TIMEOUT, || {
        down_since.elapsed() >= Duration::from_secs(2)
            && metric(metrics, "sluice_exporter_retries_total").unwrap_or(0.0) >= 1.0
    });
    assert!(
        retried,
        "no retry counted while the backend was down: sluice_exporter_retries_total = {:?}",
        metric(metrics, "sluice_exporter_retries_total")
    );
    assert_eq!(sink.unique(), 0);
    let queued = metric(metrics, "otelcol_exporter_queue_size").unwrap_or(0.0);
    assert!(
        queued >= 1.0,
        "nothing queued while the backend is down (otelcol_exporter_queue_size = {queued})"
    );
    if storage {
        let bytes = metric(metrics, "sluice_exporter_persistent_queue_bytes").unwrap_or(0.0);
        assert!(
            bytes > 0.0,
            "sluice_exporter_persistent_queue_bytes = {bytes} with {queued} batches queued"
        );
    }

    sink.up();
    assert!(
        sink.wait_for_spans(&keys, DELIVERY_TIMEOUT),
        "{} of {} acknowledged spans missing after the backend came back: {}\n{}",
        sink.missing_of(&keys),
        keys.len(),
        sink.describe(),
        sluice.describe()
    );
    expect_metric(metrics, "otelcol_exporter_queue_size", 0.0, &sluice);
    expect_metric(
        metrics,
        "otelcol_exporter_sent_spans_total",
        (REQUESTS * SPANS) as f64,
        &sluice,
    );
    expect_metric(
        metrics,
        "otelcol_exporter_send_failed_spans_total",
        0.0,
        &sluice,
    );
    assert!(sink.unknown(&keys).is_empty());
    sluice.stop();
}

#[test]
fn backend_not_listening_is_retried_until_it_is_back() {
    backend_down_then_up(false);
}

#[test]
fn backend_not_listening_is_retried_until_it_is_back_with_persistent_queue() {
    backend_down_then_up(true);
}

// --------------------------------------------------- permanent and partial

#[test]
fn invalid_argument_is_permanent_and_not_retried() {
    let sink = Sink::start();
    sink.set_mode(Mode::InvalidArgument);
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let exporter = format!("{FAST_RETRY}\n    sending_queue:\n      num_consumers: 1");
    let cfg = config(&dir, http, metrics, &sink, &exporter, None, None);
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);

    let ids = IdGen::new();
    const REQUESTS: usize = 3;
    const SPANS: usize = 5;
    for i in 0..REQUESTS {
        post_ok(http, &ids, &format!("bad-{i}"), SPANS);
    }
    expect_metric(
        metrics,
        "otelcol_exporter_send_failed_spans_total",
        (REQUESTS * SPANS) as f64,
        &sluice,
    );
    // Several backoff intervals (100ms, 200ms, 400ms) pass: a retry would
    // show up as a fourth attempt.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        sink.attempt_count(),
        REQUESTS,
        "INVALID_ARGUMENT must be tried exactly once per batch: {}",
        sink.describe()
    );
    let text = scrape_metrics(metrics);
    assert_eq!(
        metric_value(&text, "sluice_exporter_retries_total", &EXPORTER),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "otelcol_exporter_sent_spans_total", &EXPORTER),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sink.unique(), 0);
    sluice.stop();
}

#[test]
fn partial_success_is_counted_as_rejected_and_not_retried() {
    let sink = Sink::start();
    const REJECTED: i64 = 4;
    sink.set_mode(Mode::PartialReject(REJECTED));
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let exporter = format!("{FAST_RETRY}\n    sending_queue:\n      num_consumers: 1");
    let cfg = config(&dir, http, metrics, &sink, &exporter, None, None);
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);

    let ids = IdGen::new();
    let keys: HashSet<SpanId> = post_ok(http, &ids, "partial", 10).into_iter().collect();
    assert!(sink.wait_for_spans(&keys, DELIVERY_TIMEOUT));
    expect_metric(
        metrics,
        "sluice_exporter_rejected_spans_total",
        REJECTED as f64,
        &sluice,
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        sink.attempt_count(),
        1,
        "a partial success must not be retried: {}",
        sink.describe()
    );
    assert_eq!(
        metric(metrics, "sluice_exporter_retries_total"),
        Some(0.0),
        "retries counted for a partial success"
    );
    assert_eq!(sink.duplicates(), 0);
    sluice.stop();
}

// -------------------------------------------------------- persistent queue

#[test]
fn full_persistent_queue_refuses_with_429_and_keeps_what_it_accepted() {
    let sink = Sink::down();
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let queue_dir = dir.join("queue");
    const QUEUE: usize = 3;
    const SPANS: usize = 4;
    let exporter = format!(
        "{FAST_RETRY}\n    sending_queue:\n      num_consumers: 1\n      queue_size: {QUEUE}\n      \
         storage: file_storage/q"
    );
    let cfg = config(
        &dir,
        http,
        metrics,
        &sink,
        &exporter,
        None,
        Some(&queue_dir),
    );
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);

    let ids = IdGen::new();
    let mut accepted = HashSet::new();
    let mut statuses = Vec::new();
    const REQUESTS: usize = QUEUE + 5;
    for i in 0..REQUESTS {
        let (resp, keys) = post(http, &ids, &format!("full-{i}"), SPANS);
        statuses.push(resp.status);
        match resp.status {
            200 => accepted.extend(keys),
            429 => {
                let retry_after = resp.header("retry-after");
                assert!(
                    retry_after.is_some_and(|v| v.trim().parse::<u64>().is_ok()),
                    "429 without a Retry-After in seconds: {retry_after:?}"
                );
            }
            other => panic!("request {i}: unexpected status {other}: {}", resp.text()),
        }
    }
    let mut expected = vec![200u16; QUEUE];
    expected.resize(REQUESTS, 429);
    assert_eq!(
        statuses, expected,
        "a persistent queue of {QUEUE} requests takes the first {QUEUE} and refuses the rest"
    );
    let refused = REQUESTS - QUEUE;
    let text = scrape_metrics(metrics);
    assert_eq!(
        metric_value(
            &text,
            "otelcol_exporter_enqueue_failed_spans_total",
            &EXPORTER
        ),
        Some((refused * SPANS) as f64),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "otelcol_exporter_queue_capacity", &EXPORTER),
        Some(QUEUE as f64),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "otelcol_exporter_queue_size", &EXPORTER),
        Some(QUEUE as f64),
        "{text}"
    );

    sink.up();
    assert!(
        sink.wait_for_spans(&accepted, DELIVERY_TIMEOUT),
        "{} of {} accepted spans missing: {}\n{}",
        sink.missing_of(&accepted),
        accepted.len(),
        sink.describe(),
        sluice.describe()
    );
    expect_metric(metrics, "otelcol_exporter_queue_size", 0.0, &sluice);
    let unknown = sink.unknown(&accepted);
    assert!(
        unknown.is_empty(),
        "spans of refused requests reached the backend: {:?}",
        unknown.iter().map(show).collect::<Vec<_>>()
    );
    // Room again: the next request is taken and delivered.
    let more: HashSet<SpanId> = post_ok(http, &ids, "after", SPANS).into_iter().collect();
    assert!(sink.wait_for_spans(&more, DELIVERY_TIMEOUT));
    sluice.stop();
}

/// Every regular file under `dir`, recursively, with its size.
fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                todo.push(e.path());
            } else if meta.is_file() {
                out.push((e.path(), meta.len()));
            }
        }
    }
    out
}

#[test]
fn corrupted_persistent_queue_file_skips_the_damaged_record_only() {
    let sink = Sink::down();
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let queue_dir = dir.join("queue");
    let exporter = format!(
        "{FAST_RETRY}\n    sending_queue:\n      num_consumers: 1\n      storage: file_storage/q"
    );
    let cfg = config(
        &dir,
        http,
        metrics,
        &sink,
        &exporter,
        None,
        Some(&queue_dir),
    );
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);

    // An odd number of equal requests: the middle of the data falls inside
    // a record, not on the boundary between two.
    const K: usize = 9;
    const SPANS: usize = 20;
    let ids = IdGen::new();
    let requests: Vec<Vec<SpanId>> = (0..K)
        .map(|i| post_ok(http, &ids, &format!("stored-{i}"), SPANS))
        .collect();
    let sent: HashSet<SpanId> = requests.iter().flatten().copied().collect();
    // The backend is down: SIGTERM leaves the data on disk.
    sluice.stop();
    assert_eq!(sink.unique(), 0);

    let files = files_under(&queue_dir);
    let (largest, size) = files
        .iter()
        .max_by_key(|(_, len)| *len)
        .cloned()
        .unwrap_or_else(|| panic!("no file under {}", queue_dir.display()));
    assert!(
        size > 64,
        "the largest queue file {} has {size} bytes; files: {files:?}",
        largest.display()
    );
    let mut data = std::fs::read(&largest).expect("read the queue file");
    let middle = data.len() / 2;
    for b in &mut data[middle - 4..middle + 4] {
        *b ^= 0xA5;
    }
    std::fs::write(&largest, &data).expect("write the damaged queue file");

    sink.up();
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    let corrupted = wait_until(DELIVERY_TIMEOUT, || {
        metric(
            metrics,
            "sluice_exporter_persistent_queue_corrupted_records_total",
        )
        .unwrap_or(0.0)
            >= 1.0
    });
    assert!(
        corrupted,
        "no corrupted record counted after damaging bytes {}..{} of {} ({size} bytes): \
         sluice_exporter_persistent_queue_corrupted_records_total = {:?}\n{}",
        middle - 4,
        middle + 4,
        largest.display(),
        metric(
            metrics,
            "sluice_exporter_persistent_queue_corrupted_records_total"
        ),
        sluice.describe()
    );
    let complete = |sink: &Sink| {
        let got = sink.received();
        requests
            .iter()
            .filter(|r| r.iter().all(|k| got.contains_key(k)))
            .count()
    };
    let enough = wait_until(DELIVERY_TIMEOUT, || complete(&sink) >= K - 1);
    let drained = wait_metric(
        metrics,
        "otelcol_exporter_queue_size",
        &EXPORTER,
        0.0,
        DELIVERY_TIMEOUT,
    );
    assert!(
        enough,
        "only {} of {K} requests arrived complete after one damaged record: {}\n{}",
        complete(&sink),
        sink.describe(),
        sluice.describe()
    );
    assert_eq!(drained, Some(0.0), "the queue did not drain");
    let unknown = sink.unknown(&sent);
    assert!(
        unknown.is_empty(),
        "the backend received spans that were never sent (invented from damaged bytes): {:?}",
        unknown.iter().take(5).map(show).collect::<Vec<_>>()
    );
    // The queue goes on working after skipping the damaged record.
    let more: HashSet<SpanId> = post_ok(http, &ids, "after", 5).into_iter().collect();
    assert!(sink.wait_for_spans(&more, DELIVERY_TIMEOUT));
    sluice.stop();
}

// ------------------------------------------------------------------ memory

/// VmRSS of `pid` in KiB, from /proc/<pid>/status.
fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn memory_stays_bounded_while_the_backend_is_down() {
    let seconds = std::env::var("SLUICE_OUTAGE_SECONDS")
        .ok()
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("SLUICE_OUTAGE_SECONDS={v:?} is not an integer"))
        })
        .unwrap_or(15)
        .max(1);
    const LIMIT_MIB: u64 = 150;
    const QUEUE: usize = 20;
    const CONSUMERS: usize = 2;
    const SPANS: usize = 100;

    let sink = Sink::down();
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let exporter = format!(
        "{FAST_RETRY}\n    sending_queue:\n      num_consumers: {CONSUMERS}\n      queue_size: {QUEUE}"
    );
    let limiter =
        format!("  memory_limiter:\n    check_interval: 100ms\n    limit_mib: {LIMIT_MIB}");
    let cfg = config(&dir, http, metrics, &sink, &exporter, Some(&limiter), None);
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    let pid = sluice.pid();

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicUsize; 4]> = Arc::new(Default::default()); // requests, ok, refused, other
    let ids = Arc::new(IdGen::new());
    let end = Instant::now() + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let (stop, counts, ids) = (stop.clone(), counts.clone(), ids.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                let mut others = Vec::new();
                // Bounded by `end` (and a margin) even if the test thread died.
                while !stop.load(Ordering::SeqCst) && Instant::now() < end + Duration::from_secs(60)
                {
                    let spans = make_spans(&ids, &format!("mem-{t}-{n}"), SPANS);
                    n += 1;
                    let body = trace_request_protobuf("memory-test", &spans);
                    counts[0].fetch_add(1, Ordering::SeqCst);
                    match post_traces_protobuf(http, &body, REQUEST_TIMEOUT) {
                        Ok(r) if r.status == 200 => {
                            counts[1].fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) if r.status == 429 || r.status == 503 => {
                            counts[2].fetch_add(1, Ordering::SeqCst);
                        }
                        other => {
                            counts[3].fetch_add(1, Ordering::SeqCst);
                            if others.len() < 3 {
                                others.push(format!("{:?}", other.map(|r| (r.status, r.text()))));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                others
            })
        })
        .collect();

    let mut max_kib = 0u64;
    let mut samples = 0usize;
    while Instant::now() < end {
        if let Some(kib) = rss_kib(pid) {
            max_kib = max_kib.max(kib);
            samples += 1;
        }
        if sluice.has_exited() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    let mut others = Vec::new();
    for w in workers {
        others.extend(w.join().expect("load thread panicked"));
    }
    assert!(
        !sluice.has_exited(),
        "sluice exited during the outage\n{}",
        sluice.describe()
    );
    let (requests, ok, refused, other) = (
        counts[0].load(Ordering::SeqCst),
        counts[1].load(Ordering::SeqCst),
        counts[2].load(Ordering::SeqCst),
        counts[3].load(Ordering::SeqCst),
    );
    let max_mib = max_kib / 1024;
    println!("outage_seconds={seconds} max_rss_mib={max_mib} requests={requests} ok={ok} refused={refused}");
    let enqueue_failed = metric(metrics, "otelcol_exporter_enqueue_failed_spans_total");
    sluice.stop();

    assert!(samples > 0, "no VmRSS sample of pid {pid}");
    assert!(
        max_kib < LIMIT_MIB * 1024,
        "sluice's resident memory reached {max_mib} MiB during a {seconds}s outage \
         (limit {LIMIT_MIB} MiB)"
    );
    assert_eq!(
        other, 0,
        "answers other than 200/429/503 (or no answer): {others:?}"
    );
    assert!(
        ok >= QUEUE,
        "only {ok} requests accepted: the queue of {QUEUE} never filled"
    );
    assert!(
        refused > 0,
        "{requests} requests, none refused: the queue ({QUEUE}) never pushed back"
    );
    // Retries never give up (max_elapsed_time 0s), so nothing leaves the
    // exporter: it can hold the queue plus one batch per consumer (and one
    // between them), no more.
    assert!(
        ok <= QUEUE + CONSUMERS + 3,
        "{ok} requests accepted by a queue of {QUEUE} with {CONSUMERS} consumers while the \
         backend was down: the queue does not bound what sluice holds"
    );
    assert!(
        enqueue_failed.unwrap_or(0.0) >= 1.0,
        "otelcol_exporter_enqueue_failed_spans_total = {enqueue_failed:?} after {refused} refusals"
    );
}
