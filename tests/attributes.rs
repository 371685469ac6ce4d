//! The `attributes` processor in the real binary: OTLP/HTTP in, attributes
//! (include by service; insert, hash, extract, convert, upsert, delete),
//! file exporter out. The file shows the changed attributes for the
//! included service and the untouched ones for another, and the convert
//! failures are counted on the metrics endpoint.

mod support;

use support::*;

/// SHA-256 hex of "item-0", "item-1", "item-2" (computed with Python's
/// hashlib).
const HASHES: [&str; 3] = [
    "69b65bbed30ca00a0c4bbebbfd780cbd0d20cf36422420b8093fd92e47f3f9e9",
    "59908df50572502ceeabbcc669a28bcc5343d7564a581b9c9648479580f5b773",
    "77ef1951f02f9226505a221e159a2aaf6ca86d961e273ea34bf3f3da801c9b98",
];

#[test]
fn otlp_in_attributes_file_out_shows_the_changed_attributes() {
    let dir = TestDir::new();
    let (http, metrics) = (free_addr(), free_addr());
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
  attributes/redact:
    include:
      match_type: strict
      services: [shop]
    actions:
      - key: original.name
        action: insert
        from_attribute: test.name
      - key: test.name
        action: hash
      - key: original.name
        action: extract
        pattern: '^(?P<prefix>[a-z]+)-(?P<index>\d+)$'
      - key: index
        action: convert
        converted_type: int
      - key: prefix
        action: convert
        converted_type: int
      - key: deployment
        action: upsert
        value: e2e
      - key: original.name
        action: delete
exporters:
  file:
    path: {out}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [attributes/redact]
      exporters: [file]
  telemetry:
    metrics:
      address: {metrics}
"#,
            out = dir.file("out.jsonl"),
        ),
    );
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    assert!(
        wait_for_port(http, STARTUP_TIMEOUT),
        "HTTP port {http} not open"
    );

    let ids = IdGen::new();
    let shop = make_spans(&ids, "item", 3);
    let other = make_spans(&ids, "other", 2);
    for (service, spans) in [("shop", &shop), ("other", &other)] {
        let resp = post_traces_protobuf(
            http,
            &trace_request_protobuf(service, spans),
            DELIVERY_TIMEOUT,
        )
        .expect("POST /v1/traces");
        assert_eq!(resp.status, 200, "{}", resp.text());
    }

    let out = dir.join("out.jsonl");
    assert!(
        wait_until(DELIVERY_TIMEOUT, || spans_in(&out).len() >= 5),
        "the file got {} of 5 spans; {}",
        spans_in(&out).len(),
        sluice.describe()
    );
    let failed = wait_metric(
        metrics,
        "sluice_processor_attributes_convert_failed_total",
        &[("processor", "attributes/redact"), ("pipeline", "traces")],
        3.0,
        DELIVERY_TIMEOUT,
    );
    assert_eq!(
        failed,
        Some(3.0),
        "\"item\" to int failed once per shop span"
    );
    sluice.stop();

    let items = spans(&read_json_lines(&out));
    assert_eq!(items.len(), 5);
    for item in &items {
        let a = &item.record["attributes"];
        let name = item.str_field("name");
        match item.service_name().as_deref() {
            Some("shop") => {
                let i: usize = name
                    .strip_prefix("item-")
                    .and_then(|n| n.parse().ok())
                    .expect("item-<i>");
                assert_eq!(
                    attr(a, "test.name").and_then(|v| v["stringValue"].as_str()),
                    Some(HASHES[i]),
                    "{name}: test.name hashed"
                );
                assert_eq!(
                    attr(a, "index").and_then(|v| json_i64(&v["intValue"])),
                    Some(i as i64),
                    "{name}: extracted and converted to int: {a}"
                );
                assert_eq!(
                    attr(a, "prefix").and_then(|v| v["stringValue"].as_str()),
                    Some("item"),
                    "{name}: a failed conversion leaves the string"
                );
                assert_eq!(
                    attr(a, "deployment").and_then(|v| v["stringValue"].as_str()),
                    Some("e2e")
                );
                assert!(attr(a, "original.name").is_none(), "{name}: deleted");
            }
            Some("other") => {
                assert_eq!(
                    attr(a, "test.name").and_then(|v| v["stringValue"].as_str()),
                    Some(name.as_str()),
                    "{name}: not included, untouched"
                );
                assert!(attr(a, "deployment").is_none());
                assert_eq!(a.as_array().map(Vec::len), Some(1), "{a}");
            }
            s => panic!("unexpected service {s:?}"),
        }
    }
}

#[test]
fn validate_names_the_action_field_at_fault() {
    let dir = TestDir::new();
    let cfg = dir.write_config(
        "config.yaml",
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  attributes/x:
    actions:
      - key: a
        action: extract
        pattern: "(?P<b>.)(c)"
exporters:
  debug:
service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [attributes/x]
      exporters: [debug]
"#,
    );
    let out = sluice_cli(dir.path(), &["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    for needle in [
        "processors::attributes/x::actions[0]::pattern",
        "unnamed group",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.describe());
    }
}

#[test]
fn validate_names_a_property_of_another_signal() {
    let dir = TestDir::new();
    let cfg = dir.write_config(
        "config.yaml",
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  attributes/x:
    include:
      match_type: strict
      span_names: [GET]
    actions:
      - { key: a, action: delete }
exporters:
  debug:
service:
  pipelines:
    logs:
      receivers: [otlp]
      processors: [attributes/x]
      exporters: [debug]
"#,
    );
    let out = sluice_cli(dir.path(), &["validate", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    for needle in [
        "processors::attributes/x::include::span_names",
        "does not apply to logs",
        "service::pipelines::logs",
    ] {
        assert!(out.stderr.contains(needle), "{needle}: {}", out.describe());
    }
}
