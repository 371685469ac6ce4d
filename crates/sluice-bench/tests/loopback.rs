//! sluice-loadgen against sluice-sink on 127.0.0.1, every signal over gRPC
//! and HTTP: nothing fails and the sink counts exactly what the load
//! generator says was accepted. No timing is asserted.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Sink {
    child: Child,
    grpc: String,
    http: String,
}

impl Sink {
    fn start() -> Sink {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-sink"))
            .args(["--threads", "1", "--max-run", "60s"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start sluice-sink");
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        let v: Value = serde_json::from_str(&first).expect("sink prints its addresses");
        Sink {
            grpc: v["grpc"].as_str().unwrap().to_string(),
            http: v["http"].as_str().unwrap().to_string(),
            child,
        }
    }

    fn stats(&self) -> Value {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                &format!("http://{}/stats", self.http),
            ])
            .output()
            .expect("run curl");
        serde_json::from_slice(&out.stdout).expect("stats are JSON")
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn loadgen(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-loadgen"))
        .args(args)
        .output()
        .expect("run sluice-loadgen");
    assert!(
        out.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("loadgen prints one JSON line")
}

#[test]
fn the_sink_counts_what_the_loadgen_sent() {
    let sink = Sink::start();
    let mut expected = [0u64; 3];
    for (i, signal) in ["traces", "metrics", "logs"].into_iter().enumerate() {
        for (protocol, endpoint) in [
            ("grpc", sink.grpc.clone()),
            ("http", format!("http://{}", sink.http)),
        ] {
            let r = loadgen(&[
                "--signal",
                signal,
                "--protocol",
                protocol,
                "--endpoint",
                &endpoint,
                "--batch",
                "100",
                "--concurrency",
                "2",
                "--duration",
                "300ms",
                "--warmup",
                "100ms",
                "--rate",
                "4000",
                "--pool",
                "3",
                "--threads",
                "1",
            ]);
            assert_eq!(
                r["errors"],
                Value::Array(vec![]),
                "{signal} {protocol}: {r}"
            );
            assert_eq!(r["total"]["requests_failed"], 0);
            let total = r["total"]["items_accepted"].as_u64().unwrap();
            assert!(total > 0, "{signal} {protocol} sent nothing: {r}");
            assert_eq!(total % 100, 0);
            assert!(r["items_accepted"].as_u64().unwrap() <= total);
            expected[i] += total;
        }
    }
    // The loadgen has its answers, so the sink has counted: no waiting.
    let stats = sink.stats();
    for (i, signal) in ["traces", "metrics", "logs"].into_iter().enumerate() {
        assert_eq!(
            stats[signal]["items"].as_u64(),
            Some(expected[i]),
            "{stats}"
        );
        assert_eq!(stats[signal]["errors"].as_u64(), Some(0));
    }
}

#[test]
fn refused_requests_are_counted_as_failed() {
    // Nothing listens on the sink's HTTP port for gRPC: every call fails.
    let sink = Sink::start();
    let started = Instant::now();
    let r = loadgen(&[
        "--signal",
        "logs",
        "--protocol",
        "grpc",
        "--endpoint",
        &sink.http,
        "--batch",
        "10",
        "--concurrency",
        "1",
        "--duration",
        "200ms",
        "--warmup",
        "0s",
        "--timeout",
        "2s",
        "--threads",
        "1",
    ]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(r["total"]["items_accepted"], 0);
    assert!(r["total"]["requests_failed"].as_u64().unwrap() >= 1, "{r}");
    assert!(!r["errors"].as_array().unwrap().is_empty());
}
