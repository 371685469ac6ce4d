//! The `my-sluice` binary, run as a user would: it lists the `stamp`
//! processor beside the slim families and nothing else, refuses a config
//! naming a family it was built without (naming the feature), and carries
//! spans from an OTLP/HTTP client through `stamp` into a `file` exporter,
//! stamped. Only std, libc (SIGTERM) and serde_json: the example does not
//! borrow sluice's own test helpers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_my-sluice");

fn my_sluice(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("my-sluice runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

#[test]
fn components_lists_stamp_and_the_slim_families_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = my_sluice(dir.path(), &["components"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let listed: Vec<(String, String)> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect();
    let has = |kind: &str, ty: &str| listed.iter().any(|(k, t)| k == kind && t == ty);
    assert!(has("processor", "stamp"), "{stdout}");
    // The slim families are there ...
    for (kind, ty) in [
        ("receiver", "otlp"),
        ("processor", "batch"),
        ("exporter", "file"),
    ] {
        assert!(has(kind, ty), "{kind} {ty} missing:\n{stdout}");
    }
    // ... and the families left out are not.
    for (kind, ty) in [
        ("receiver", "kafka"),
        ("exporter", "kafka"),
        ("receiver", "kinesis"),
        ("receiver", "filelog"),
    ] {
        assert!(!has(kind, ty), "{kind} {ty} listed:\n{stdout}");
    }
}

#[test]
fn a_config_naming_a_family_left_out_names_its_feature() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kafka.yaml");
    std::fs::write(
        &config,
        "receivers: {kafka: {brokers: [127.0.0.1:9092]}}\n\
         processors: {stamp: {key: env, value: prod}}\n\
         exporters: {debug: {}}\n\
         service: {pipelines: {traces: {receivers: [kafka], processors: [stamp], exporters: [debug]}}}\n",
    )
    .unwrap();
    let out = my_sluice(dir.path(), &["validate", "-c", config.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.contains("receivers::kafka")
            && l.contains("not compiled into this binary")
            && l.contains("cargo feature `kafka`")),
        "{stderr}"
    );
    // The stamp processor itself validated: no complaint names it.
    assert!(!stderr.contains("processors::stamp"), "{stderr}");
}

#[test]
fn a_bad_stamp_config_is_refused_with_its_field_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "receivers: {otlp: {protocols: {http: {endpoint: 127.0.0.1:0}}}}\n\
         processors: {stamp: {value: prod}}\n\
         exporters: {debug: {}}\n\
         service: {pipelines: {traces: {receivers: [otlp], processors: [stamp], exporters: [debug]}}}\n",
    )
    .unwrap();
    let out = my_sluice(dir.path(), &["validate", "-c", config.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("processors::stamp::key"), "{stderr}");
}

/// Kills the collector if a test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts connections on `addr`.
fn wait_listening(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("my-sluice exited before listening: {st}");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr} after 30 s");
}

/// One OTLP/HTTP JSON request; returns the status code and body.
fn post_json(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read the answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    (status, answer)
}

#[test]
fn spans_pass_through_stamp_into_the_file_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out_file = dir.path().join("out/traces.jsonl");
    let config = dir.path().join("my-sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\n\
             processors:\n  stamp:\n    key: deployment.environment\n    value: staging\n\
             exporters:\n  file:\n    path: {}\n\
             service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [stamp]\n      exporters: [file]\n",
            out_file.display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["run", "-c", config.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start my-sluice");
    let mut running = Running(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr, &mut running.0);

    // Two resources: one without attributes, one whose
    // deployment.environment the stamp must replace.
    let body = r#"{"resourceSpans":[
        {"resource":{},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"first","kind":1}]}]},
        {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}},{"key":"deployment.environment","value":{"stringValue":"dev"}}]},
         "scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f11","spanId":"0102030405060709","name":"second","kind":2}]}]}
    ]}"#;
    let (status, answer) = post_json(addr, "/v1/traces", body);
    assert_eq!(status, 200, "{answer}");

    // SIGTERM: the collector drains its pipelines and exits 0.
    let pid = running.0.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = running.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "my-sluice did not stop in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = running.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "{status}\n{stderr}");

    let written = std::fs::read_to_string(&out_file)
        .unwrap_or_else(|e| panic!("{}: {e}\n{stderr}", out_file.display()));
    let mut seen = Vec::new();
    for line in written.lines() {
        let request: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        for rs in request["resourceSpans"].as_array().expect("resourceSpans") {
            let attributes = rs["resource"]["attributes"].as_array().expect("attributes");
            let env: Vec<&serde_json::Value> = attributes
                .iter()
                .filter(|kv| kv["key"] == "deployment.environment")
                .map(|kv| &kv["value"]["stringValue"])
                .collect();
            let name = rs["scopeSpans"][0]["spans"][0]["name"]
                .as_str()
                .expect("a span name")
                .to_string();
            assert_eq!(env, ["staging"], "{name}: {line}");
            seen.push(name);
        }
    }
    seen.sort();
    assert_eq!(seen, ["first", "second"], "{written}");
}
