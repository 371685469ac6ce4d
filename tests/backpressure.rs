//! Backpressure through the real binary: when the pipeline cannot take more
//! (memory above the limiter's soft limit, an exporter queue full behind a
//! backend that does not answer), clients get retryable answers with
//! `Retry-After`, nothing is written, and every refused item is counted.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn memory_limiter_refusal_is_429_with_retry_after_and_counted() {
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    let out = dir.join("traces.jsonl");
    let cfg = dir.write_config(
        "config.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
processors:
  memory_limiter:
    check_interval: 100ms
    limit_mib: 1
exporters:
  file:
    path: {out}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [file]
  telemetry:
    metrics:
      address: {metrics}
"#,
            out = out.display()
        ),
    );
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    sluice.wait_running();

    let ids = IdGen::new();
    const REQUESTS: usize = 3;
    const SPANS: usize = 5;
    for i in 0..REQUESTS {
        let body = trace_request_protobuf("svc", &make_spans(&ids, &format!("r{i}"), SPANS));
        let resp = post_traces_protobuf(http, &body, REQUEST_TIMEOUT).expect("an answer");
        assert_eq!(resp.status, 429, "{}", resp.text());
        let retry_after: u64 = resp
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After header in seconds");
        assert!(retry_after >= 1);
        assert!(resp.text().contains("memory"), "{}", resp.text());
    }

    let refused = (REQUESTS * SPANS) as f64;
    let text = scrape_metrics(metrics);
    assert_eq!(
        metric_value(
            &text,
            "otelcol_receiver_refused_spans_total",
            &[("receiver", "otlp"), ("transport", "http")]
        ),
        Some(refused),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp")]
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "otelcol_processor_refused_spans_total",
            &[("processor", "memory_limiter"), ("pipeline", "traces")]
        ),
        Some(refused),
        "{text}"
    );
    sluice.stop();
    assert!(
        spans_in(&out).is_empty(),
        "refused data must not be exported"
    );
}

/// A TCP server that accepts connections and never answers: a backend that
/// hangs. Holds the connections until dropped.
struct BlackHole {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Ok((conn, _)) = listener.accept() {
                    held.push(conn);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        BlackHole {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn full_exporter_queue_refuses_retryably_and_counts_every_item() {
    let backend = BlackHole::start();
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
    const QUEUE: usize = 2;
    let cfg = dir.write_config(
        "config.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
exporters:
  otlp:
    endpoint: {backend}
    tls: {{ insecure: true }}
    timeout: 60s
    sending_queue:
      queue_size: {QUEUE}
      num_consumers: 1
service:
  shutdown_timeout: 2s
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
  telemetry:
    metrics:
      address: {metrics}
"#,
            backend = backend.addr
        ),
    );
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    sluice.wait_running();

    // One batch is stuck in the hung send (the only sender slot), QUEUE sit
    // in the queue; the next is refused. Send until a refusal, bounded.
    let ids = IdGen::new();
    const SPANS: usize = 3;
    let mut accepted = 0;
    let mut refused = 0;
    for i in 0..(QUEUE + 8) {
        let body = trace_request_protobuf("svc", &make_spans(&ids, &format!("q{i}"), SPANS));
        let resp = post_traces_protobuf(http, &body, REQUEST_TIMEOUT).expect("an answer");
        match resp.status {
            200 => {
                assert_eq!(
                    refused,
                    0,
                    "no success after the queue filled: {}",
                    resp.text()
                );
                accepted += 1;
            }
            429 => {
                assert!(
                    resp.header("retry-after").is_some(),
                    "429 without Retry-After"
                );
                assert!(resp.text().contains("queue"), "{}", resp.text());
                refused += 1;
            }
            other => panic!("unexpected status {other}: {}", resp.text()),
        }
    }
    assert_eq!(accepted, QUEUE + 1, "accepted until the queue was full");
    assert_eq!(refused, 7);

    let text = scrape_metrics(metrics);
    let exporter = [("exporter", "otlp")];
    assert_eq!(
        metric_value(
            &text,
            "otelcol_exporter_enqueue_failed_spans_total",
            &exporter
        ),
        Some((refused * SPANS) as f64),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            "otelcol_receiver_refused_spans_total",
            &[("receiver", "otlp")]
        ),
        Some((refused * SPANS) as f64),
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "otelcol_exporter_queue_capacity", &exporter),
        Some(QUEUE as f64)
    );
    assert_eq!(
        metric_value(&text, "otelcol_exporter_queue_size", &exporter),
        Some(QUEUE as f64)
    );
    assert_eq!(
        metric_value(&text, "otelcol_exporter_sent_spans_total", &exporter),
        Some(0.0)
    );

    // Shutdown cannot drain into a hung backend: it stops at the deadline,
    // says so, and still exits cleanly.
    sluice.terminate();
    let status = sluice.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{}", sluice.describe());
    assert!(
        sluice
            .stderr()
            .contains("did not stop before the shutdown deadline"),
        "{}",
        sluice.describe()
    );
}
