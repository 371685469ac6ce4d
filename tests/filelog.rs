//! The `filelog` receiver through the real binary: lines written to files
//! come out of the `file` exporter, and a restart with `file_storage`
//! resumes where the last run stopped, across a rotation that happened while
//! sluice was down (clean stop: exactly once; `kill -9`: at least once).

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

fn config(dir: &TestDir, logs: &Path, out: &Path, state: &Path) -> PathBuf {
    dir.write_config(
        "config.yaml",
        &format!(
            r#"
receivers:
  filelog:
    include: [ "{logs}/app.log*" ]
    start_at: beginning
    poll_interval: 50ms
    storage: file_storage
extensions:
  file_storage:
    directory: {state}
exporters:
  file:
    path: {out}
service:
  extensions: [file_storage]
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [file]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
"#,
            logs = logs.display(),
            state = state.display(),
            out = out.display()
        ),
    )
}

fn append(path: &Path, prefix: &str, range: std::ops::Range<usize>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = range.map(|i| format!("{prefix}-{i}\n")).collect();
    f.write_all(text.as_bytes()).unwrap();
}

/// Body of every log record the file exporter wrote, with its count.
fn bodies(out: &Path) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for req in read_json_lines_opt(out, true) {
        for rl in req["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let body = r["body"]["stringValue"].as_str().unwrap_or_default();
                    *seen.entry(body.to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    seen
}

fn wait_for_lines(out: &Path, n: usize, sluice: &Sluice) {
    assert!(
        wait_until(Duration::from_secs(30), || bodies(out).len() >= n),
        "expected {n} distinct lines, got {}\n{}",
        bodies(out).len(),
        sluice.describe()
    );
}

fn expected(parts: &[(&str, std::ops::Range<usize>)]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|(p, r)| r.clone().map(move |i| format!("{p}-{i}")))
        .collect()
}

#[test]
fn a_clean_restart_resumes_exactly_where_it_stopped_across_a_rotation() {
    let dir = TestDir::new();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.join("out.jsonl");
    let cfg = config(&dir, &logs, &out, &dir.join("state"));
    let log = logs.join("app.log");
    append(&log, "a", 0..1000);

    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    wait_for_lines(&out, 1000, &sluice);
    append(&log, "b", 0..100);
    wait_for_lines(&out, 1100, &sluice);
    sluice.stop();

    // While sluice is down: more lines, then a rotation by rename.
    append(&log, "c", 0..300);
    std::fs::rename(&log, logs.join("app.log.1")).unwrap();
    append(&log, "d", 0..200);

    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    wait_for_lines(&out, 1600, &sluice);
    std::thread::sleep(Duration::from_millis(300));
    sluice.stop();
    let seen = bodies(&out);
    let want = expected(&[("a", 0..1000), ("b", 0..100), ("c", 0..300), ("d", 0..200)]);
    for line in &want {
        assert_eq!(seen.get(line), Some(&1), "{line} must arrive exactly once");
    }
    assert_eq!(seen.len(), want.len(), "nothing else arrived");
}

/// The agent: filelog -> otlphttp with a persistent sending queue, so that
/// what the pipeline accepted survives `kill -9` too.
fn agent_config(dir: &TestDir, logs: &Path, gateway: std::net::SocketAddr) -> PathBuf {
    dir.write_config(
        "agent.yaml",
        &format!(
            r#"
receivers:
  filelog:
    include: [ "{logs}/app.log*" ]
    start_at: beginning
    poll_interval: 50ms
    storage: file_storage
extensions:
  file_storage:
    directory: {state}
exporters:
  otlphttp:
    endpoint: http://{gateway}
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 500ms
      max_elapsed_time: 0s
    sending_queue:
      storage: file_storage
service:
  extensions: [file_storage]
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [otlphttp]
  telemetry:
    metrics:
      level: none
"#,
            logs = logs.display(),
            state = dir.join("agent-state").display(),
        ),
    )
}

/// The gateway: OTLP/HTTP in, the file exporter out.
fn gateway_config(dir: &TestDir, http: std::net::SocketAddr, out: &Path) -> PathBuf {
    dir.write_config(
        "gateway.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
exporters:
  file:
    path: {out}
service:
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"#,
            out = out.display()
        ),
    )
}

#[test]
fn after_kill_9_nothing_is_lost() {
    let dir = TestDir::new();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.join("out.jsonl");
    let http = free_addr();
    let mut gateway = Sluice::run(dir.path(), &[&gateway_config(&dir, http, &out)]);
    let agent_cfg = agent_config(&dir, &logs, http);
    let log = logs.join("app.log");

    let agent = Sluice::run(dir.path(), &[&agent_cfg]);
    append(&log, "a", 0..50_000);
    assert!(
        wait_until(Duration::from_secs(30), || !bodies(&out).is_empty()),
        "{}",
        agent.describe()
    );
    agent.signal(libc::SIGKILL);
    drop(agent);
    append(&log, "b", 0..500);

    let mut agent = Sluice::run(dir.path(), &[&agent_cfg]);
    wait_for_lines(&out, 50_500, &agent);
    agent.stop();
    gateway.stop();
    let seen = bodies(&out);
    for line in expected(&[("a", 0..50_000), ("b", 0..500)]) {
        assert!(seen.contains_key(&line), "{line} was lost");
    }
}
