//! Graceful shutdown: on SIGTERM sluice drains what it accepted into the
//! exporters, answers the requests that were waiting, and exits 0.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

fn config(dir: &TestDir, http: SocketAddr, batch: &str) -> std::path::PathBuf {
    dir.write_config(
        "config.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
processors:
  batch:
{batch}
exporters:
  file:
    path: {out}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"#,
            out = dir.file("traces.jsonl"),
        ),
    )
}

#[test]
fn sigterm_drains_requests_waiting_in_the_batch_processor() {
    drain_on_signal(libc::SIGTERM, "SIGTERM", 6);
}

#[test]
fn sigint_drains_requests_waiting_in_the_batch_processor() {
    drain_on_signal(libc::SIGINT, "SIGINT", 2);
}

/// Sends `requests` requests that wait in a batch processor that will not
/// flush by itself, then `signal`: every request must be answered 200, the
/// process must exit 0, and the file must hold exactly their spans.
fn drain_on_signal(signal: i32, signal_name: &str, requests: usize) {
    const SPANS_PER_REQUEST: usize = 5;
    let dir = TestDir::new();
    let http = free_addr();
    // Neither the size nor the timer flushes during the test: only shutdown
    // can send these spans on.
    let cfg = config(&dir, http, "    send_batch_size: 100000\n    timeout: 30s");
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    assert!(
        wait_for_port(http, STARTUP_TIMEOUT),
        "HTTP port {http} not open"
    );

    let ids = IdGen::new();
    let (written_tx, written_rx) = mpsc::channel();
    let mut workers = Vec::new();
    let mut all_sent = BTreeSet::new();
    for r in 0..requests {
        let spans = make_spans(&ids, &format!("drain-{r}"), SPANS_PER_REQUEST);
        all_sent.extend(spans.iter().map(SpanSpec::key));
        let body = trace_request_protobuf("shutdown-test", &spans);
        let written_tx = written_tx.clone();
        workers.push(std::thread::spawn(move || {
            let stream = http_send(
                http,
                "POST",
                "/v1/traces",
                &[("Content-Type", "application/x-protobuf")],
                &body,
                Duration::from_secs(120),
            );
            let stream = match stream {
                Ok(s) => {
                    let _ = written_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = written_tx.send(Err(e.to_string()));
                    return Err(e.to_string());
                }
            };
            http_read_response(stream).map_err(|e| e.to_string())
        }));
    }
    drop(written_tx);
    for _ in 0..requests {
        let w = written_rx
            .recv_timeout(DELIVERY_TIMEOUT)
            .expect("a request was not written in time");
        w.unwrap_or_else(|e| panic!("sending a request failed: {e}"));
    }

    // Every request is fully written. Wait until sluice has read all of them
    // off its sockets (the kernel shows nothing left unread), so the signal
    // comes while they wait inside the pipeline, not in a socket buffer.
    let all_read = wait_until(DELIVERY_TIMEOUT, || {
        let (conns, unread) = server_connections(http.port());
        conns >= requests && unread == 0
    });
    assert!(
        all_read,
        "sluice did not read the {requests} requests: {:?} (connections, unread bytes)",
        server_connections(http.port())
    );
    // Let the handlers hand the decoded requests to the pipeline.
    std::thread::sleep(Duration::from_millis(300));
    let answered_early: Vec<usize> = workers
        .iter()
        .enumerate()
        .filter(|(_, w)| w.is_finished())
        .map(|(i, _)| i)
        .collect();
    assert!(
        answered_early.is_empty(),
        "requests {answered_early:?} were answered before shutdown although the batch \
         processor could not have flushed (size 100000, timeout 30s): sluice acknowledged \
         before the data was exported"
    );
    assert!(
        spans_in(&dir.join("traces.jsonl")).is_empty(),
        "spans reached the file before shutdown"
    );

    sluice.signal(signal);
    let status = sluice.wait_exit(SHUTDOWN_TIMEOUT);

    let mut answers = Vec::new();
    for (i, w) in workers.into_iter().enumerate() {
        let res = w.join().expect("request thread panicked");
        answers.push((i, res));
    }
    for (i, res) in &answers {
        match res {
            Ok(resp) => assert_eq!(
                resp.status,
                200,
                "request {i} got {} after {signal_name}: {}\n{}",
                resp.status,
                resp.text(),
                sluice.describe()
            ),
            Err(e) => panic!(
                "request {i} got no answer after {signal_name}: {e}\n{}",
                sluice.describe()
            ),
        }
    }
    assert!(
        status.success(),
        "sluice exited with {status} after {signal_name}, expected 0\n{}",
        sluice.describe()
    );

    let lines = read_json_lines(&dir.join("traces.jsonl"));
    let got: Vec<String> = spans(&lines).iter().map(span_key).collect();
    let got_set: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(got.len(), got_set.len(), "duplicate spans in the file");
    assert_eq!(
        got_set, all_sent,
        "the file must hold exactly the spans of the {requests} acknowledged requests"
    );
}

/// One request of the load loop.
struct Outcome {
    spans: Vec<String>,
    /// Status code, or the I/O error's text.
    result: Result<u16, String>,
    /// The request started after sluice's exit had been observed.
    after_exit: bool,
    /// The request had its answer (or error) before SIGTERM was sent.
    done_before_sigterm: bool,
}

#[test]
fn sigterm_under_load_keeps_every_acknowledged_span() {
    const WORKERS: usize = 4;
    const SPANS_PER_REQUEST: usize = 3;
    let dir = TestDir::new();
    let http = free_addr();
    let cfg = config(&dir, http, "    send_batch_size: 20\n    timeout: 100ms");
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    assert!(
        wait_for_port(http, STARTUP_TIMEOUT),
        "HTTP port {http} not open"
    );

    let ids = Arc::new(IdGen::new());
    let stop = Arc::new(AtomicBool::new(false));
    let exited = Arc::new(AtomicBool::new(false));
    let terminating = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let after_exit_per_worker: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();

    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (ids, stop, exited, terminating, outcomes, after) = (
            ids.clone(),
            stop.clone(),
            exited.clone(),
            terminating.clone(),
            outcomes.clone(),
            after_exit_per_worker.clone(),
        );
        workers.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let after_exit = exited.load(Ordering::SeqCst);
                let spans = make_spans(&ids, &format!("load-{w}-{n}"), SPANS_PER_REQUEST);
                n += 1;
                let body = trace_request_protobuf("load-test", &spans);
                let result = post_traces_protobuf(http, &body, Duration::from_secs(60))
                    .map(|r| r.status)
                    .map_err(|e| e.to_string());
                let done_before_sigterm = !terminating.load(Ordering::SeqCst);
                let failed = result.is_err();
                outcomes.lock().unwrap().push(Outcome {
                    spans: spans.iter().map(SpanSpec::key).collect(),
                    result,
                    after_exit,
                    done_before_sigterm,
                });
                if failed && !after_exit {
                    // Shutting down: don't spin on refused connections.
                    std::thread::sleep(Duration::from_millis(5));
                }
                if after_exit {
                    *after.lock().unwrap().entry(w).or_default() += 1;
                    // No server any more: don't spin.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }));
    }

    // Let the load run for about a second with requests being acknowledged.
    let acked = |o: &Mutex<Vec<Outcome>>| {
        o.lock()
            .unwrap()
            .iter()
            .filter(|o| o.result == Ok(200))
            .count()
    };
    let warmed = wait_until(DELIVERY_TIMEOUT, || {
        started.elapsed() >= Duration::from_secs(1) && acked(&outcomes) >= 10
    });
    assert!(
        warmed,
        "fewer than 10 requests were acknowledged under load: {}",
        acked(&outcomes)
    );

    terminating.store(true, Ordering::SeqCst);
    sluice.terminate();
    let status = sluice.wait_exit(SHUTDOWN_TIMEOUT);
    exited.store(true, Ordering::SeqCst);
    // The loop goes on to about 2 s in all, and every worker makes at least
    // two requests after the exit.
    let _ = wait_until(Duration::from_secs(10), || {
        let after = after_exit_per_worker.lock().unwrap();
        started.elapsed() >= Duration::from_secs(2)
            && (0..WORKERS).all(|w| after.get(&w).copied().unwrap_or(0) >= 2)
    });
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("load worker panicked");
    }
    assert!(
        status.success(),
        "sluice exited with {status} after SIGTERM under load, expected 0\n{}",
        sluice.describe()
    );

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let acked_spans: BTreeSet<String> = outcomes
        .iter()
        .filter(|o| o.result == Ok(200))
        .flat_map(|o| o.spans.iter().cloned())
        .collect();
    let all_sent: BTreeSet<String> = outcomes
        .iter()
        .flat_map(|o| o.spans.iter().cloned())
        .collect();

    // Before the signal, under load, every request succeeds.
    let failed_while_running: Vec<&Result<u16, String>> = outcomes
        .iter()
        .filter(|o| o.done_before_sigterm && o.result != Ok(200))
        .map(|o| &o.result)
        .collect();
    assert!(
        failed_while_running.is_empty(),
        "{} requests failed before SIGTERM was sent: {:?}",
        failed_while_running.len(),
        failed_while_running.iter().take(5).collect::<Vec<_>>()
    );

    // After the process is gone, requests fail to connect: never a 200.
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.after_exit).collect();
    assert!(!after.is_empty(), "no request was made after sluice exited");
    for o in &after {
        assert!(
            o.result.is_err(),
            "a request made after sluice exited got an HTTP answer: {:?}",
            o.result
        );
    }

    let errors_during_shutdown = outcomes
        .iter()
        .filter(|o| !o.done_before_sigterm && !o.after_exit && o.result != Ok(200))
        .count();
    eprintln!(
        "load: {} requests, {} answered 200, {} not answered 200 during shutdown, \
         {} made after the exit",
        outcomes.len(),
        outcomes.iter().filter(|o| o.result == Ok(200)).count(),
        errors_during_shutdown,
        after.len()
    );

    let file_spans: Vec<String> = spans(&read_json_lines(&dir.join("traces.jsonl")))
        .iter()
        .map(span_key)
        .collect();
    let file_set: BTreeSet<String> = file_spans.iter().cloned().collect();
    assert_eq!(
        file_spans.len(),
        file_set.len(),
        "duplicate spans in the file"
    );
    let unknown: Vec<&String> = file_set.difference(&all_sent).collect();
    assert!(
        unknown.is_empty(),
        "spans in the file that were never sent: {unknown:?}"
    );
    let lost: Vec<&String> = acked_spans.difference(&file_set).collect();
    let answered_200 = outcomes.iter().filter(|o| o.result == Ok(200)).count();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged spans ({answered_200} requests answered 200) are missing \
         from the file, e.g. {:?}",
        lost.len(),
        acked_spans.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        file_set.len() >= acked_spans.len(),
        "file holds {} spans, {} were acknowledged",
        file_set.len(),
        acked_spans.len()
    );
}
