//! End to end with real clients: the official OpenTelemetry Python SDK over
//! OTLP/gRPC and OTLP/HTTP, and `curl` with OTLP/HTTP JSON, into
//! otlp receiver -> batch -> file exporters. The files must hold exactly what
//! was sent: same counts, same ids, same attribute values and types.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::*;

struct Setup {
    dir: TestDir,
    grpc: SocketAddr,
    http: SocketAddr,
    metrics: SocketAddr,
    health: SocketAddr,
    config: std::path::PathBuf,
}

/// otlp (gRPC + HTTP) -> memory_limiter -> batch -> one file exporter per
/// signal, the health_check extension, self-metrics on their own port.
fn setup() -> Setup {
    let dir = TestDir::new();
    let (grpc, http, metrics, health) = (free_addr(), free_addr(), free_addr(), free_addr());
    let yaml = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {grpc}
      http:
        endpoint: {http}
processors:
  memory_limiter:
    check_interval: 1s
    limit_mib: 2048
    spike_limit_mib: 512
  batch:
    send_batch_size: 50
    timeout: 200ms
exporters:
  file/traces:
    path: {traces}
  file/metrics:
    path: {metrics_file}
  file/logs:
    path: {logs}
extensions:
  health_check:
    endpoint: {health}
service:
  extensions: [health_check]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file/traces]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file/metrics]
    logs:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [file/logs]
  telemetry:
    metrics:
      address: {metrics}
      level: normal
"#,
        traces = dir.file("traces.jsonl"),
        metrics_file = dir.file("metrics.jsonl"),
        logs = dir.file("logs.jsonl"),
    );
    let config = dir.write_config("config.yaml", &yaml);
    Setup {
        dir,
        grpc,
        http,
        metrics,
        health,
        config,
    }
}

fn by_service(items: Vec<Item>) -> BTreeMap<String, Vec<Item>> {
    let mut out: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for it in items {
        out.entry(it.service_name().unwrap_or_default())
            .or_default()
            .push(it);
    }
    out
}

fn attr_of<'a>(item_attrs: &'a Value, key: &str, what: &str) -> &'a Value {
    attr(item_attrs, key)
        .unwrap_or_else(|| panic!("{what}: attribute {key} missing in {item_attrs}"))
}

/// Checks the spans of one send.py run against its summary.
fn check_spans(service: &str, spans: &[Item], summary: &Value) {
    let sent = summary["spans"].as_array().expect("summary.spans");
    assert_eq!(
        spans.len(),
        sent.len(),
        "{service}: the traces file has {} spans, send.py sent {}",
        spans.len(),
        sent.len()
    );
    let got: BTreeMap<String, &Item> = spans.iter().map(|s| (span_key(s), s)).collect();
    assert_eq!(
        got.len(),
        spans.len(),
        "{service}: duplicate spans in the file"
    );
    for s in sent {
        let key = format!(
            "{}:{}",
            s["trace_id"].as_str().unwrap(),
            s["span_id"].as_str().unwrap()
        );
        let i = s["index"].as_i64().unwrap();
        let what = format!("{service} span {key} ({})", s["name"]);
        let item = got
            .get(&key)
            .unwrap_or_else(|| panic!("{what} is not in the file"));
        let rec = &item.record;
        assert_eq!(rec["name"], s["name"], "{what}: name");
        let parent = rec
            .get("parentSpanId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert_eq!(
            parent,
            s["parent_span_id"].as_str().unwrap(),
            "{what}: parentSpanId"
        );
        assert_eq!(item.scope["name"], "sluice.test.send", "{what}: scope name");
        assert_eq!(
            attr_of(&item.resource["attributes"], "sluice.test.protocol", &what)["stringValue"],
            summary["protocol"],
            "{what}: resource attribute"
        );

        let attrs = &rec["attributes"];
        assert_eq!(
            attr_of(attrs, "test.string", &what)["stringValue"],
            format!("value-{i}"),
            "{what}: string attribute"
        );
        assert_eq!(
            json_i64(&attr_of(attrs, "test.int", &what)["intValue"]),
            Some(i * 1000 + 7),
            "{what}: int attribute (must stay an intValue)"
        );
        assert_eq!(
            json_i64(&attr_of(attrs, "test.index", &what)["intValue"]),
            Some(i),
            "{what}: index attribute"
        );
        assert_eq!(
            json_f64(&attr_of(attrs, "test.double", &what)["doubleValue"]),
            Some(i as f64 + 0.25),
            "{what}: double attribute (must stay a doubleValue)"
        );
        assert_eq!(
            attr_of(attrs, "test.bool", &what)["boolValue"],
            Value::Bool(i % 2 == 0),
            "{what}: bool attribute (must stay a boolValue)"
        );
        assert_eq!(
            attrs.as_array().map(Vec::len),
            Some(5),
            "{what}: exactly the 5 attributes sent: {attrs}"
        );

        let events = rec["events"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(
            events.len(),
            1,
            "{what}: one event expected: {}",
            rec["events"]
        );
        assert_eq!(events[0]["name"], "checkpoint", "{what}: event name");
        assert_eq!(
            json_i64(&attr_of(&events[0]["attributes"], "event.index", &what)["intValue"]),
            Some(i),
            "{what}: event attribute"
        );
        let start = json_i64(&rec["startTimeUnixNano"]).unwrap_or(0);
        let end = json_i64(&rec["endTimeUnixNano"]).unwrap_or(0);
        assert!(
            start > 0 && end >= start,
            "{what}: timestamps {start}..{end}"
        );
    }
}

/// Checks the metrics of one send.py run: exactly the counter and the
/// histogram, each with one point per index and the recorded values.
fn check_metrics(service: &str, metrics: &[Item], summary: &Value) {
    let counter_name = summary["metrics"]["counter"]["name"].as_str().unwrap();
    let hist_name = summary["metrics"]["histogram"]["name"].as_str().unwrap();
    let n = summary["count"].as_u64().unwrap() as usize;

    let names: BTreeSet<&str> = metrics
        .iter()
        .filter_map(|m| m.record["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([counter_name, hist_name]),
        "{service}: metric names in the file"
    );

    let index_of = |p: &Value| {
        json_i64(&attr(&p["attributes"], "index").expect("index attribute")["intValue"])
    };

    // The counter: a monotonic sum, one point per index with value i + 1.
    let mut counter_points = BTreeMap::new();
    for m in metrics.iter().filter(|m| m.record["name"] == counter_name) {
        let sum = &m.record["sum"];
        assert!(
            sum.is_object(),
            "{service}: {counter_name} is not a sum: {}",
            m.record
        );
        assert_eq!(
            sum["isMonotonic"], true,
            "{service}: {counter_name} monotonic"
        );
        for p in sum["dataPoints"].as_array().expect("dataPoints") {
            let i = index_of(p).expect("integer index");
            let v = json_i64(&p["asInt"])
                .unwrap_or_else(|| panic!("{service}: counter point without asInt: {p}"));
            assert!(
                counter_points.insert(i, v).is_none(),
                "{service}: counter index {i} twice"
            );
        }
    }
    let want: BTreeMap<i64, i64> = (0..n as i64).map(|i| (i, i + 1)).collect();
    assert_eq!(
        counter_points, want,
        "{service}: counter points (index -> value)"
    );

    // The histogram: one point per index, count 1, sum i * 1.5.
    let mut hist_points = BTreeMap::new();
    for m in metrics.iter().filter(|m| m.record["name"] == hist_name) {
        let h = &m.record["histogram"];
        assert!(
            h.is_object(),
            "{service}: {hist_name} is not a histogram: {}",
            m.record
        );
        for p in h["dataPoints"].as_array().expect("dataPoints") {
            let i = index_of(p).expect("integer index");
            let count = json_i64(&p["count"]).expect("histogram count");
            let sum = json_f64(&p["sum"]).expect("histogram sum");
            let buckets: i64 = p["bucketCounts"]
                .as_array()
                .map(|b| b.iter().filter_map(json_i64).sum())
                .unwrap_or(-1);
            assert_eq!(
                buckets, count,
                "{service}: histogram bucket counts add up to count: {p}"
            );
            assert!(
                hist_points.insert(i, (count, sum)).is_none(),
                "{service}: histogram index {i} twice"
            );
        }
    }
    let want: BTreeMap<i64, (i64, f64)> = (0..n as i64).map(|i| (i, (1, i as f64 * 1.5))).collect();
    assert_eq!(
        hist_points, want,
        "{service}: histogram points (index -> (count, sum))"
    );
}

/// Checks the log records of one send.py run.
fn check_logs(service: &str, logs: &[Item], summary: &Value) {
    let sent = summary["logs"].as_array().expect("summary.logs");
    assert_eq!(
        logs.len(),
        sent.len(),
        "{service}: the logs file has {} records, send.py sent {}",
        logs.len(),
        sent.len()
    );
    let mut got: BTreeMap<String, &Item> = BTreeMap::new();
    for l in logs {
        let body = l.record["body"]["stringValue"]
            .as_str()
            .unwrap_or_else(|| panic!("{service}: log body is not a string: {}", l.record))
            .to_string();
        assert!(
            got.insert(body.clone(), l).is_none(),
            "{service}: log {body:?} twice"
        );
    }
    for s in sent {
        let body = s["body"].as_str().unwrap();
        let i = s["index"].as_i64().unwrap();
        let item = got
            .get(body)
            .unwrap_or_else(|| panic!("{service}: log {body:?} is not in the file"));
        let rec = &item.record;
        assert_eq!(
            rec["traceId"], s["trace_id"],
            "{service} log {body:?}: traceId"
        );
        assert_eq!(
            rec["spanId"], s["span_id"],
            "{service} log {body:?}: spanId"
        );
        assert_eq!(
            json_i64(&rec["severityNumber"]),
            Some(9),
            "{service} log {body:?}: severity"
        );
        assert_eq!(
            rec["severityText"], "INFO",
            "{service} log {body:?}: severityText"
        );
        assert_eq!(
            json_i64(&attr(&rec["attributes"], "log.index").expect("log.index")["intValue"]),
            Some(i),
            "{service} log {body:?}: int attribute"
        );
        assert_eq!(
            attr(&rec["attributes"], "log.kind").expect("log.kind")["stringValue"],
            "e2e",
            "{service} log {body:?}: string attribute"
        );
    }
}

#[test]
fn python_sdk_over_grpc_and_http_lands_exactly_in_the_files() {
    const N: usize = 40;
    let s = setup();
    let mut sluice = Sluice::run(s.dir.path(), &[&s.config]);
    assert!(
        wait_for_port(s.grpc, STARTUP_TIMEOUT),
        "gRPC port {} not open",
        s.grpc
    );
    assert!(
        wait_for_port(s.http, STARTUP_TIMEOUT),
        "HTTP port {} not open",
        s.http
    );

    // health_check answers 200 while running.
    let health = http_get(s.health, "/").expect("GET health_check");
    assert_eq!(health.status, 200, "health_check: {}", health.text());

    let grpc_summary = run_send_py("grpc", &s.grpc.to_string(), "e2e-grpc", N);
    let http_summary = run_send_py("http", &format!("http://{}", s.http), "e2e-http", N);

    // Receiver counters, per transport: every span was accepted once.
    let accepted = "otelcol_receiver_accepted_spans_total";
    for transport in ["grpc", "http"] {
        let labels = [("receiver", "otlp"), ("transport", transport)];
        let v = wait_metric(s.metrics, accepted, &labels, N as f64, DELIVERY_TIMEOUT);
        assert_eq!(v, Some(N as f64), "{accepted}{{transport={transport}}}");
    }
    for (name, transport_total) in [
        ("otelcol_receiver_accepted_metric_points_total", 2 * N),
        ("otelcol_receiver_accepted_log_records_total", N),
    ] {
        for transport in ["grpc", "http"] {
            let labels = [("receiver", "otlp"), ("transport", transport)];
            let v = wait_metric(
                s.metrics,
                name,
                &labels,
                transport_total as f64,
                DELIVERY_TIMEOUT,
            );
            assert_eq!(
                v,
                Some(transport_total as f64),
                "{name}{{transport={transport}}}"
            );
        }
    }
    let sent = wait_metric(
        s.metrics,
        "otelcol_exporter_sent_spans_total",
        &[("exporter", "file/traces")],
        (2 * N) as f64,
        DELIVERY_TIMEOUT,
    );
    assert_eq!(
        sent,
        Some((2 * N) as f64),
        "otelcol_exporter_sent_spans_total{{exporter=file/traces}}"
    );

    sluice.stop();

    let traces = by_service(spans(&read_json_lines(&s.dir.join("traces.jsonl"))));
    let metrics = by_service(support::metrics(&read_json_lines(
        &s.dir.join("metrics.jsonl"),
    )));
    let logs = by_service(log_records(&read_json_lines(&s.dir.join("logs.jsonl"))));
    let services = BTreeSet::from(["e2e-grpc".to_string(), "e2e-http".to_string()]);
    assert_eq!(
        traces.keys().cloned().collect::<BTreeSet<_>>(),
        services,
        "services in traces"
    );
    assert_eq!(
        metrics.keys().cloned().collect::<BTreeSet<_>>(),
        services,
        "services in metrics"
    );
    assert_eq!(
        logs.keys().cloned().collect::<BTreeSet<_>>(),
        services,
        "services in logs"
    );

    for (service, summary) in [("e2e-grpc", &grpc_summary), ("e2e-http", &http_summary)] {
        check_spans(service, &traces[service], summary);
        check_metrics(service, &metrics[service], summary);
        check_logs(service, &logs[service], summary);
    }
}

#[test]
fn python_sdk_with_gzip_lands_exactly_in_the_files() {
    const N: usize = 8;
    let s = setup();
    let mut sluice = Sluice::run(s.dir.path(), &[&s.config]);
    assert!(
        wait_for_port(s.grpc, STARTUP_TIMEOUT),
        "gRPC port {} not open",
        s.grpc
    );
    assert!(
        wait_for_port(s.http, STARTUP_TIMEOUT),
        "HTTP port {} not open",
        s.http
    );

    let grpc_summary = run_send_py_with("grpc", &s.grpc.to_string(), "gzip-grpc", N, "gzip");
    let http_summary = run_send_py_with(
        "http",
        &format!("http://{}", s.http),
        "gzip-http",
        N,
        "gzip",
    );
    sluice.stop();

    let traces = by_service(spans(&read_json_lines(&s.dir.join("traces.jsonl"))));
    let metrics = by_service(support::metrics(&read_json_lines(
        &s.dir.join("metrics.jsonl"),
    )));
    let logs = by_service(log_records(&read_json_lines(&s.dir.join("logs.jsonl"))));
    let services = BTreeSet::from(["gzip-grpc".to_string(), "gzip-http".to_string()]);
    assert_eq!(
        traces.keys().cloned().collect::<BTreeSet<_>>(),
        services,
        "services in traces"
    );
    assert_eq!(
        metrics.keys().cloned().collect::<BTreeSet<_>>(),
        services,
        "services in metrics"
    );
    assert_eq!(
        logs.keys().cloned().collect::<BTreeSet<_>>(),
        services,
        "services in logs"
    );
    for (service, summary) in [("gzip-grpc", &grpc_summary), ("gzip-http", &http_summary)] {
        assert_eq!(summary["compression"], "gzip");
        check_spans(service, &traces[service], summary);
        check_metrics(service, &metrics[service], summary);
        check_logs(service, &logs[service], summary);
    }
}

/// Runs `curl` posting `body` as OTLP/HTTP JSON; returns the HTTP status.
fn curl_post_json(url: &str, body_file: &Path) -> u16 {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "60"])
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", "Content-Type: application/json"])
        .arg("--data-binary")
        .arg(format!("@{}", body_file.display()))
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run curl ({e}): install curl (.ci/run does) and run scripts/test")
        });
    assert!(
        out.status.success(),
        "curl {url} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("curl's %{http_code}")
}

#[test]
fn curl_otlp_http_json_lands_in_the_file() {
    let s = setup();
    let mut sluice = Sluice::run(s.dir.path(), &[&s.config]);
    assert!(
        wait_for_port(s.http, STARTUP_TIMEOUT),
        "HTTP port {} not open",
        s.http
    );

    let trace_id = format!("{:016x}{:016x}", random_u64() | 1, random_u64());
    let span_id = format!("{:016x}", random_u64() | 1);
    let traces = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "curl-client"}}
            ]},
            "scopeSpans": [{
                "scope": {"name": "curl"},
                "spans": [{
                    "traceId": trace_id,
                    "spanId": span_id,
                    "name": "from-curl",
                    "kind": 2,
                    "startTimeUnixNano": "1700000000000000000",
                    "endTimeUnixNano": "1700000000500000000",
                    "attributes": [
                        {"key": "http.method", "value": {"stringValue": "GET"}},
                        {"key": "http.status_code", "value": {"intValue": "200"}},
                        {"key": "ratio", "value": {"doubleValue": 0.5}},
                        {"key": "cached", "value": {"boolValue": true}}
                    ]
                }]
            }]
        }]
    });
    let logs = serde_json::json!({
        "resourceLogs": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "curl-client"}}
            ]},
            "scopeLogs": [{
                "scope": {"name": "curl"},
                "logRecords": [{
                    "timeUnixNano": "1700000000000000000",
                    "severityNumber": 17,
                    "severityText": "ERROR",
                    "body": {"stringValue": "hello from curl"},
                    "traceId": trace_id,
                    "spanId": span_id
                }]
            }]
        }]
    });
    let traces_file = s.dir.write_config("traces-body.json", &traces.to_string());
    let logs_file = s.dir.write_config("logs-body.json", &logs.to_string());

    let status = curl_post_json(&format!("http://{}/v1/traces", s.http), &traces_file);
    assert_eq!(status, 200, "POST /v1/traces (JSON)");
    let status = curl_post_json(&format!("http://{}/v1/logs", s.http), &logs_file);
    assert_eq!(status, 200, "POST /v1/logs (JSON)");

    // Lands while sluice runs (no shutdown needed to see it).
    let traces_path = s.dir.join("traces.jsonl");
    let logs_path = s.dir.join("logs.jsonl");
    let arrived = wait_until(DELIVERY_TIMEOUT, || {
        !spans_in(&traces_path).is_empty()
            && !log_records(&read_json_lines_opt(&logs_path, true)).is_empty()
    });
    assert!(
        arrived,
        "the curl data did not reach the files within {DELIVERY_TIMEOUT:?}"
    );

    let accepted = wait_metric(
        s.metrics,
        "otelcol_receiver_accepted_spans_total",
        &[("receiver", "otlp"), ("transport", "http")],
        1.0,
        DELIVERY_TIMEOUT,
    );
    assert_eq!(accepted, Some(1.0), "accepted spans over http");

    sluice.stop();

    let got = spans(&read_json_lines(&traces_path));
    assert_eq!(got.len(), 1, "exactly the one span sent: {got:?}");
    let span = &got[0];
    assert_eq!(span.service_name().as_deref(), Some("curl-client"));
    assert_eq!(span.record["traceId"], trace_id.as_str());
    assert_eq!(span.record["spanId"], span_id.as_str());
    assert_eq!(span.record["name"], "from-curl");
    assert_eq!(json_i64(&span.record["kind"]), Some(2), "span kind");
    assert_eq!(
        json_i64(&span.record["startTimeUnixNano"]),
        Some(1_700_000_000_000_000_000)
    );
    assert_eq!(
        json_i64(&span.record["endTimeUnixNano"]),
        Some(1_700_000_000_500_000_000)
    );
    let a = &span.record["attributes"];
    assert_eq!(attr(a, "http.method").unwrap()["stringValue"], "GET");
    assert_eq!(
        json_i64(&attr(a, "http.status_code").unwrap()["intValue"]),
        Some(200)
    );
    assert_eq!(
        json_f64(&attr(a, "ratio").unwrap()["doubleValue"]),
        Some(0.5)
    );
    assert_eq!(attr(a, "cached").unwrap()["boolValue"], true);

    let got = log_records(&read_json_lines(&logs_path));
    assert_eq!(got.len(), 1, "exactly the one log record sent: {got:?}");
    let rec = &got[0].record;
    assert_eq!(rec["body"]["stringValue"], "hello from curl");
    assert_eq!(json_i64(&rec["severityNumber"]), Some(17));
    assert_eq!(rec["traceId"], trace_id.as_str());
    assert_eq!(rec["spanId"], span_id.as_str());

    // Nothing was sent for metrics: the metrics file holds no data points.
    let m = support::metrics(&read_json_lines(&s.dir.join("metrics.jsonl")));
    assert!(m.is_empty(), "unexpected metrics: {m:?}");
}

#[test]
fn merged_configs_and_env_expansion_pick_the_later_values() {
    // base.yaml sends to file path A; override.yaml (later) replaces the
    // exporter's path with B and takes the receiver endpoint from the
    // environment. Data must land in B only.
    let dir = TestDir::new();
    let http = free_addr();
    let base = dir.write_config(
        "base.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {unused}
processors:
  batch:
    timeout: 100ms
exporters:
  file:
    path: {a}
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
            unused = free_addr(),
            a = dir.file("a.jsonl"),
        ),
    );
    let over = dir.write_config(
        "override.yaml",
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:SLUICE_TEST_HTTP_ENDPOINT}
exporters:
  file:
    path: ${SLUICE_TEST_OUT_DIR}/b.jsonl
"#,
    );
    let http_s = http.to_string();
    let out_dir = dir.path().to_str().unwrap().to_string();
    let mut sluice = Sluice::run_with_env(
        dir.path(),
        &[&base, &over],
        &[
            ("SLUICE_TEST_HTTP_ENDPOINT", http_s.as_str()),
            ("SLUICE_TEST_OUT_DIR", out_dir.as_str()),
        ],
    );
    assert!(
        wait_for_port(http, STARTUP_TIMEOUT),
        "receiver not on the env endpoint {http}"
    );

    let ids = IdGen::new();
    let sent = make_spans(&ids, "merged", 3);
    let resp = post_traces_protobuf(
        http,
        &trace_request_protobuf("merge-test", &sent),
        DELIVERY_TIMEOUT,
    )
    .expect("POST /v1/traces");
    assert_eq!(resp.status, 200, "POST /v1/traces: {}", resp.text());
    sluice.stop();

    let got: BTreeSet<String> = spans(&read_json_lines(&dir.join("b.jsonl")))
        .iter()
        .map(span_key)
        .collect();
    let want: BTreeSet<String> = sent.iter().map(SpanSpec::key).collect();
    assert_eq!(got, want, "spans in the overriding file path");
    assert!(
        spans(&read_json_lines(&dir.join("a.jsonl"))).is_empty(),
        "the base config's file path received data although it was overridden"
    );
}
