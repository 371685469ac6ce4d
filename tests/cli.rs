//! The command line: `--version`, `components`, `validate` and `run` on good
//! and broken configurations. Each error class must exit 2 and name the
//! config path of the problem; several problems are reported at once.

mod support;

use support::*;

/// Status `sluice validate`/`run` exit with on a configuration error.
const CONFIG_ERROR: Option<i32> = Some(2);

/// A complete, valid config with its own ports; `extra_receivers` etc. are
/// spliced in by the error tests.
fn good_config(dir: &TestDir) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {grpc}
      http:
        endpoint: {http}
processors:
  batch:
    send_batch_size: 100
    timeout: 200ms
  memory_limiter:
    check_interval: 1s
    limit_mib: 512
    spike_limit_mib: 128
exporters:
  file:
    path: {traces}
  debug:
    verbosity: basic
extensions:
  health_check:
    endpoint: {health}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file, debug]
  telemetry:
    metrics:
      address: {metrics}
      level: basic
    logs:
      level: info
"#,
        grpc = free_addr(),
        http = free_addr(),
        health = free_addr(),
        metrics = free_addr(),
        traces = dir.file("traces.jsonl"),
    )
}

/// Asserts a configuration error: exit 2, no panic, nothing on stdout that
/// claims the config is valid.
fn assert_config_error(out: &CliOutput) {
    assert_eq!(
        out.code,
        CONFIG_ERROR,
        "expected exit code 2 for an invalid configuration\n{}",
        out.describe()
    );
    assert_no_panic(out);
    assert!(
        !out.stdout.contains("configuration is valid"),
        "an invalid configuration was called valid\n{}",
        out.describe()
    );
}

fn assert_no_panic(out: &CliOutput) {
    let all = format!("{}{}", out.stdout, out.stderr);
    for word in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(
            !all.contains(word),
            "sluice panicked instead of reporting an error ({word:?})\n{}",
            out.describe()
        );
    }
}

/// The stderr lines that contain every one of `needles`.
fn lines_with<'a>(stderr: &'a str, needles: &[&str]) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

/// Asserts that some stderr line contains all of `needles`.
fn assert_line(out: &CliOutput, needles: &[&str]) {
    assert!(
        !lines_with(&out.stderr, needles).is_empty(),
        "expected a stderr line containing all of {needles:?}\n{}",
        out.describe()
    );
}

fn validate(dir: &TestDir, configs: &[&std::path::Path]) -> CliOutput {
    let mut args = vec!["validate".to_string()];
    for c in configs {
        args.push("-c".into());
        args.push(c.to_str().unwrap().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sluice_cli(dir.path(), &args)
}

fn validate_yaml(yaml: &str) -> (TestDir, CliOutput) {
    let dir = TestDir::new();
    let path = dir.write_config("config.yaml", yaml);
    let out = validate(&dir, &[&path]);
    (dir, out)
}

#[test]
fn version_prints_name_and_version() {
    let dir = TestDir::new();
    let out = sluice_cli(dir.path(), &["--version"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_eq!(
        out.stdout.trim(),
        format!("sluice {}", env!("CARGO_PKG_VERSION")),
        "{}",
        out.describe()
    );
}

#[test]
fn components_lists_every_registered_type() {
    let dir = TestDir::new();
    let out = sluice_cli(dir.path(), &["components"]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert_no_panic(&out);
    let expected = [
        ("receiver", "otlp", &["traces", "metrics", "logs"][..]),
        ("receiver", "kafka", &["traces", "metrics", "logs"][..]),
        ("processor", "batch", &["traces", "metrics", "logs"][..]),
        (
            "processor",
            "memory_limiter",
            &["traces", "metrics", "logs"][..],
        ),
        ("exporter", "otlp", &["traces", "metrics", "logs"][..]),
        ("exporter", "otlphttp", &["traces", "metrics", "logs"][..]),
        ("exporter", "debug", &["traces", "metrics", "logs"][..]),
        ("exporter", "file", &["traces", "metrics", "logs"][..]),
        ("exporter", "kafka", &["traces", "metrics", "logs"][..]),
        ("extension", "health_check", &[][..]),
    ];
    let stabilities = [
        "development",
        "alpha",
        "beta",
        "stable",
        "deprecated",
        "unmaintained",
    ];
    for (kind, type_name, signals) in expected {
        // A row is the line naming the kind and the type as a whole word.
        let row = out.stdout.lines().find(|l| {
            let lower = l.to_ascii_lowercase();
            lower.contains(kind)
                && lower
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .any(|w| w == type_name)
        });
        let Some(row) = row else {
            panic!(
                "`sluice components` has no row for {kind} {type_name}\n{}",
                out.describe()
            );
        };
        let lower = row.to_ascii_lowercase();
        for s in signals {
            assert!(
                lower.contains(s),
                "row for {kind} {type_name} does not list signal {s}: {row:?}"
            );
        }
        assert!(
            stabilities.iter().any(|s| lower.contains(s)),
            "row for {kind} {type_name} shows no stability level: {row:?}"
        );
    }
}

#[test]
fn validate_accepts_a_good_config() {
    let dir = TestDir::new();
    let path = dir.write_config("good.yaml", &good_config(&dir));
    let out = validate(&dir, &[&path]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("configuration is valid"),
        "{}",
        out.describe()
    );
    assert_no_panic(&out);
    // validate must not start anything or write exporter files.
    assert!(
        !dir.join("traces.jsonl").exists(),
        "validate created the exporter's file"
    );
}

#[test]
fn validate_merges_several_files_and_expands_env() {
    // The first file lacks the pipeline's exporter; the second supplies it
    // through an environment variable with a default.
    let dir = TestDir::new();
    let base = dir.write_config(
        "base.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${{env:SLUICE_CLI_TEST_UNSET_VAR:-{http}}}
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
"#,
            http = free_addr()
        ),
    );
    let extra = dir.write_config(
        "extra.yaml",
        &format!(
            r#"
exporters:
  file:
    path: {}
service:
  pipelines:
    traces:
      exporters: [file]
"#,
            dir.file("out.jsonl")
        ),
    );
    let out = validate(&dir, &[&base, &extra]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("configuration is valid"),
        "{}",
        out.describe()
    );

    // Each file alone: the second has no receivers at all.
    let out = validate(&dir, &[&extra]);
    assert_config_error(&out);
}

#[test]
fn unknown_component_type_is_reported_with_its_path() {
    let (_d, out) = validate_yaml(&format!(
        r#"
receivers:
  nope:
    endpoint: {http}
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [nope]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
"#,
        http = free_addr()
    ));
    assert_config_error(&out);
    assert_line(&out, &["receivers::nope", "unknown"]);
}

#[test]
fn unknown_field_inside_a_component_is_reported() {
    let (_d, out) = validate_yaml(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
    bogus_field: 3
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
"#,
        http = free_addr()
    ));
    assert_config_error(&out);
    assert_line(&out, &["receivers::otlp", "bogus_field"]);
}

#[test]
fn pipeline_naming_an_undefined_component_is_reported() {
    let (_d, out) = validate_yaml(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug, file/missing]
  telemetry:
    metrics:
      level: none
"#,
        http = free_addr()
    ));
    assert_config_error(&out);
    assert_line(
        &out,
        &["service::pipelines::traces::exporters", "file/missing"],
    );
}

#[test]
fn empty_receivers_list_is_reported() {
    let (_d, out) = validate_yaml(
        r#"
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: []
      exporters: [debug]
  telemetry:
    metrics:
      level: none
"#,
    );
    assert_config_error(&out);
    assert_line(&out, &["service::pipelines::traces::receivers"]);
}

#[test]
fn empty_exporters_list_is_reported() {
    let (_d, out) = validate_yaml(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: []
  telemetry:
    metrics:
      level: none
"#,
        http = free_addr()
    ));
    assert_config_error(&out);
    assert_line(&out, &["service::pipelines::traces::exporters"]);
}

/// Asserts that a port conflict on `shared` between components `a` and `b`
/// is reported naming the address, or both components.
fn assert_port_conflict(out: &CliOutput, shared: std::net::SocketAddr, a: &str, b: &str) {
    assert_config_error(out);
    let names_address = out.stderr.contains(&shared.to_string())
        || out.stderr.contains(&format!(":{}", shared.port()));
    let names_both = out.stderr.contains(&format!("{a}:")) && out.stderr.contains(&format!("{b}:"))
        || lines_with(&out.stderr, &[a, b]).len() == 1;
    assert!(
        names_address || names_both,
        "the port conflict on {shared} between {a} and {b} is reported without the address \
         or both components\n{}",
        out.describe()
    );
}

#[test]
fn the_same_port_for_two_receivers_is_reported() {
    let shared = free_addr();
    let (_d, out) = validate_yaml(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {shared}
  otlp/second:
    protocols:
      http:
        endpoint: {shared}
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp, otlp/second]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
"#
    ));
    assert_port_conflict(&out, shared, "receivers::otlp", "receivers::otlp/second");
}

#[test]
fn the_same_port_for_a_receiver_and_an_extension_is_reported() {
    let shared = free_addr();
    let (_d, out) = validate_yaml(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {shared}
exporters:
  debug:
extensions:
  health_check:
    endpoint: {shared}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
"#
    ));
    assert_port_conflict(&out, shared, "receivers::otlp", "extensions::health_check");
}

#[test]
fn the_same_port_for_a_receiver_and_the_metrics_endpoint_is_reported() {
    let shared = free_addr();
    let (_d, out) = validate_yaml(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {shared}
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      address: {shared}
"#
    ));
    assert_port_conflict(
        &out,
        shared,
        "receivers::otlp",
        "service::telemetry::metrics",
    );
}

#[test]
fn bad_pipeline_id_type_is_reported() {
    let (_d, out) = validate_yaml(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
exporters:
  debug:
service:
  pipelines:
    bogus:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
"#,
        http = free_addr()
    ));
    assert_config_error(&out);
    assert_line(&out, &["service::pipelines::bogus"]);
}

#[test]
fn yaml_syntax_error_names_the_file_and_line() {
    let dir = TestDir::new();
    // Line 5 opens a flow sequence that is never closed.
    let yaml = "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: [127.0.0.1:4318\nexporters:\n  debug:\n";
    let path = dir.write_config("broken-syntax.yaml", yaml);
    let out = validate(&dir, &[&path]);
    assert_config_error(&out);
    assert!(
        out.stderr.contains("broken-syntax.yaml"),
        "the YAML error does not name the file\n{}",
        out.describe()
    );
    let mentions_a_line = (5..=8).any(|n| {
        out.stderr.contains(&format!("line {n}"))
            || out.stderr.contains(&format!(":{n}:"))
            || out.stderr.contains(&format!(":{n} "))
    });
    assert!(
        mentions_a_line,
        "the YAML error does not give the line (5..8) of the problem\n{}",
        out.describe()
    );
}

#[test]
fn several_errors_are_reported_at_once() {
    let dir = TestDir::new();
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
  nope:
exporters:
  file:
    path: {path}
    not_a_file_option: true
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file, debug/absent]
    bogus:
      receivers: [otlp]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"#,
        http = free_addr(),
        path = dir.file("out.jsonl")
    );
    let path = dir.write_config("many.yaml", &yaml);
    let out = validate(&dir, &[&path]);
    assert_config_error(&out);
    let expected: [&[&str]; 4] = [
        &["receivers::nope", "unknown"],
        &["exporters::file", "not_a_file_option"],
        &["service::pipelines::traces::exporters", "debug/absent"],
        &["service::pipelines::bogus"],
    ];
    let mut lines_used = std::collections::HashSet::new();
    for needles in expected {
        let lines = lines_with(&out.stderr, needles);
        assert!(
            !lines.is_empty(),
            "error {needles:?} was not reported together with the others\n{}",
            out.describe()
        );
        lines_used.extend(lines);
    }
    assert!(
        lines_used.len() >= 4,
        "expected the 4 problems on 4 separate lines, found {}: {lines_used:?}\n{}",
        lines_used.len(),
        out.describe()
    );
}

#[test]
fn run_with_a_broken_config_exits_2_with_the_same_message() {
    let dir = TestDir::new();
    let http = free_addr();
    let path = dir.write_config(
        "broken.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug, file/missing]
  telemetry:
    metrics:
      level: none
"#
        ),
    );
    let out = sluice_cli(dir.path(), &["run", "-c", path.to_str().unwrap()]);
    assert_config_error(&out);
    assert_line(
        &out,
        &["service::pipelines::traces::exporters", "file/missing"],
    );
    assert!(
        !out.stderr.contains(RUNNING_LINE),
        "sluice claimed to be running on a broken config\n{}",
        out.describe()
    );
    // Nothing may have started: the receiver's port is still free.
    assert!(
        std::net::TcpListener::bind(http).is_ok(),
        "port {http} is taken after a failed `run`"
    );
}

#[test]
fn a_missing_config_file_exits_2_naming_it() {
    let dir = TestDir::new();
    let missing = dir.join("does-not-exist.yaml");
    let missing = missing.to_str().unwrap();
    for sub in ["run", "validate"] {
        let out = sluice_cli(dir.path(), &[sub, "-c", missing]);
        assert_config_error(&out);
        assert!(
            out.stderr.contains("does-not-exist.yaml"),
            "`sluice {sub}` does not name the missing file\n{}",
            out.describe()
        );
    }
    // The long form, with the path from the brief.
    let out = sluice_cli(dir.path(), &["run", "--config", "/nonexistent.yaml"]);
    assert_config_error(&out);
    assert!(
        out.stderr.contains("/nonexistent.yaml"),
        "{}",
        out.describe()
    );
}

#[test]
fn run_with_a_port_taken_by_another_process_fails_naming_it() {
    // A valid config whose receiver port is already bound: not a config
    // error (exit 2) but a failure to start (exit 1), reported, no panic.
    let dir = TestDir::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
    let addr = taken.local_addr().unwrap();
    let path = dir.write_config(
        "taken.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {addr}
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
"#
        ),
    );
    let out = sluice_cli(dir.path(), &["run", "-c", path.to_str().unwrap()]);
    assert_eq!(
        out.code,
        Some(1),
        "expected exit 1 for a port in use\n{}",
        out.describe()
    );
    assert_no_panic(&out);
    assert!(
        out.stderr.contains(&addr.to_string()),
        "the error does not name the address {addr}\n{}",
        out.describe()
    );
    assert!(!out.stderr.contains(RUNNING_LINE), "{}", out.describe());
    drop(taken);
}

/// An OTLP/HTTP -> debug pipeline on a free port, logging at info in
/// `encoding`, without a metrics endpoint.
fn debug_pipeline_with_logs(dir: &TestDir, encoding: &str) -> std::path::PathBuf {
    let http = free_addr();
    dir.write_config(
        &format!("{encoding}-logs.yaml"),
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {http}
exporters:
  debug:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
      encoding: {encoding}
"#
        ),
    )
}

#[test]
fn run_logs_json_lines_when_configured() {
    let dir = TestDir::new();
    let path = debug_pipeline_with_logs(&dir, "json");
    let mut sluice = Sluice::run(dir.path(), &[&path]);
    sluice.stop();
    let stderr = sluice.stderr();
    let mut running = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}\n{stderr}"));
        assert!(v.is_object(), "stderr line is not a JSON object: {line}");
        if line.contains(RUNNING_LINE) {
            running += 1;
        }
    }
    assert_eq!(
        running, 1,
        "one JSON log line says {RUNNING_LINE:?}\n{stderr}"
    );
}

#[test]
fn console_logs_to_a_pipe_have_no_color_codes() {
    // stderr is a pipe here, as under systemd, docker or `2> file`: the
    // console encoding must not write ANSI escape sequences into it.
    let dir = TestDir::new();
    let path = debug_pipeline_with_logs(&dir, "console");
    let mut sluice = Sluice::run(dir.path(), &[&path]);
    sluice.stop();
    let stderr = sluice.stderr();
    assert!(
        !stderr.contains('\u{1b}'),
        "console logs written to a pipe contain ANSI escape codes:\n{}",
        stderr.escape_debug()
    );
}

#[test]
fn a_queue_storage_must_name_a_running_storage_extension() {
    let dir = TestDir::new();
    let base = |ext_section: &str, service_ext: &str| {
        format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:0
exporters:
  otlp:
    endpoint: 127.0.0.1:4317
    tls: {{ insecure: true }}
    sending_queue:
      storage: file_storage/q
{ext_section}
service:
  {service_ext}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
  telemetry:
    metrics:
      level: none
"#
        )
    };
    let missing = dir.write_config("missing.yaml", &base("", ""));
    let out = sluice_cli(dir.path(), &["validate", "-c", missing.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr
            .contains("exporters::otlp::sending_queue::storage")
            && out.stderr.contains("file_storage/q is not configured"),
        "{}",
        out.describe()
    );

    let unlisted = dir.write_config(
        "unlisted.yaml",
        &base("extensions:\n  file_storage/q:\n    directory: /tmp/x", ""),
    );
    let out = sluice_cli(dir.path(), &["validate", "-c", unlisted.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("not listed in service::extensions"),
        "{}",
        out.describe()
    );

    let good = dir.write_config(
        "good.yaml",
        &base(
            "extensions:\n  file_storage/q:\n    directory: /tmp/x",
            "extensions: [file_storage/q]",
        ),
    );
    let out = sluice_cli(dir.path(), &["validate", "-c", good.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{}", out.describe());
}
