//! The OTLP-only distribution (`--no-default-features --features slim`):
//! it lists exactly its families' components, tells a config naming a
//! component it was built without which feature builds it, and runs the
//! built-in default config end to end. scripts/test builds it and sets `SLUICE_SLIM_BIN`;
//! without it these tests fail with instructions (never skip).

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use support::*;

fn slim_bin() -> PathBuf {
    let Some(p) = std::env::var_os("SLUICE_SLIM_BIN") else {
        panic!(
            "SLUICE_SLIM_BIN is not set. Run the tests with scripts/test, which builds \
             `cargo build --no-default-features --features slim` and sets it."
        );
    };
    let p = PathBuf::from(p);
    assert!(p.exists(), "SLUICE_SLIM_BIN={} does not exist", p.display());
    p
}

fn slim_cli(dir: &TestDir, args: &[&str]) -> (Option<i32>, String, String) {
    let mut s = Sluice::spawn_program(&slim_bin(), dir.path(), args, &[]);
    let st = s.wait_exit(Duration::from_secs(30));
    (st.code(), s.stdout(), s.stderr())
}

#[test]
fn slim_lists_exactly_the_otlp_processor_and_basic_components() {
    let dir = TestDir::new();
    let (code, stdout, stderr) = slim_cli(&dir, &["components"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let got: BTreeSet<(String, String)> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("receiver", "otlp"),
        ("processor", "attributes"),
        ("processor", "batch"),
        ("processor", "memory_limiter"),
        ("exporter", "debug"),
        ("exporter", "file"),
        ("exporter", "otlp"),
        ("exporter", "otlphttp"),
        ("extension", "file_storage"),
        ("extension", "health_check"),
    ]
    .into_iter()
    .map(|(k, t)| (k.to_string(), t.to_string()))
    .collect();
    assert_eq!(got, want, "{stdout}");
}

#[test]
fn slim_names_the_feature_that_builds_a_missing_component() {
    let dir = TestDir::new();
    let yaml =
        "receivers: {kafka: {brokers: [127.0.0.1:9092]}, filelog: {include: [/tmp/x.log]}}\n\
                exporters: {debug: {}}\n\
                service: {pipelines: {logs: {receivers: [kafka, filelog], exporters: [debug]}}}\n";
    let config = dir.write_config("kafka.yaml", yaml);
    let (code, stdout, stderr) = slim_cli(&dir, &["validate", "-c", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    for (path, feature) in [
        ("receivers::kafka", "kafka"),
        ("receivers::filelog", "filelog"),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains(path)
                && l.contains("is not compiled into this binary")
                && l.contains(&format!("cargo feature `{feature}`"))),
            "no line names {path} and feature {feature}:\n{stderr}"
        );
    }
}

/// The built-in default config (OTLP on 127.0.0.1:4317/4318, `batch`, one
/// `file` exporter per signal under ./sluice-data) runs on the slim build:
/// the README's first command works on it.
#[test]
fn slim_runs_the_default_config() {
    let dir = TestDir::new();
    let mut sluice = Sluice::spawn_program(&slim_bin(), dir.path(), &["run"], &[]);
    sluice.wait_running();
    let ids = IdGen::new();
    let sent = make_spans(&ids, "slim", 5);
    let body = trace_request_protobuf("slim-test", &sent);
    let http: std::net::SocketAddr = "127.0.0.1:4318".parse().unwrap();
    let stream = http_send(
        http,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &body,
        Duration::from_secs(30),
    )
    .expect("send to the default config's OTLP/HTTP port");
    let resp = http_read_response(stream).expect("answer");
    assert_eq!(resp.status, 200, "{}", resp.text());
    sluice.terminate();
    let st = sluice.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "{}", sluice.describe());
    let got: BTreeSet<String> = spans(&read_json_lines(&dir.join("sluice-data/traces.jsonl")))
        .iter()
        .map(|s| s.str_field("name"))
        .collect();
    let want: BTreeSet<String> = sent.iter().map(|s| s.name.clone()).collect();
    assert_eq!(got, want);
}
