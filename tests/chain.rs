//! Two sluice processes in a chain: the first forwards with its `otlp`
//! (gRPC) and `otlphttp` exporters to the second, which writes what each
//! of its receivers got to its own file.

mod support;

use std::collections::BTreeSet;

use support::*;

#[test]
fn otlp_and_otlphttp_exporters_deliver_to_another_sluice() {
    const N: usize = 12;
    let dir = TestDir::new();

    // Downstream: one gRPC-only and one HTTP-only receiver, each with its
    // own pipeline and file.
    let (down_grpc, down_http) = (free_addr(), free_addr());
    let down = dir.write_config(
        "downstream.yaml",
        &format!(
            r#"
receivers:
  otlp/grpc_in:
    protocols:
      grpc:
        endpoint: {down_grpc}
  otlp/http_in:
    protocols:
      http:
        endpoint: {down_http}
exporters:
  file/from_grpc:
    path: {from_grpc}
  file/from_http:
    path: {from_http}
service:
  pipelines:
    traces/grpc:
      receivers: [otlp/grpc_in]
      exporters: [file/from_grpc]
    traces/http:
      receivers: [otlp/http_in]
      exporters: [file/from_http]
  telemetry:
    metrics:
      level: none
"#,
            from_grpc = dir.file("from-grpc.jsonl"),
            from_http = dir.file("from-http.jsonl"),
        ),
    );

    // Upstream: OTLP/HTTP in, batch, both exporters.
    let (up_http, up_metrics) = (free_addr(), free_addr());
    let up = dir.write_config(
        "upstream.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: {up_http}
processors:
  batch:
    send_batch_size: 5
    timeout: 100ms
exporters:
  otlp:
    endpoint: {down_grpc}
    tls:
      insecure: true
  otlphttp:
    endpoint: http://{down_http}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlp, otlphttp]
  telemetry:
    metrics:
      address: {up_metrics}
"#
        ),
    );

    let mut downstream = Sluice::run(dir.path(), &[&down]);
    let mut upstream = Sluice::run(dir.path(), &[&up]);
    assert!(
        wait_for_port(up_http, STARTUP_TIMEOUT),
        "upstream HTTP port {up_http} not open"
    );

    let ids = IdGen::new();
    let sent = make_spans(&ids, "chain", N);
    for chunk in sent.chunks(4) {
        let resp = post_traces_protobuf(
            up_http,
            &trace_request_protobuf("chain-test", chunk),
            DELIVERY_TIMEOUT,
        )
        .expect("POST /v1/traces to upstream");
        assert_eq!(
            resp.status,
            200,
            "upstream answered {}: {}",
            resp.status,
            resp.text()
        );
    }
    let want: BTreeSet<String> = sent.iter().map(SpanSpec::key).collect();

    let (from_grpc, from_http) = (dir.join("from-grpc.jsonl"), dir.join("from-http.jsonl"));
    let arrived = wait_until(DELIVERY_TIMEOUT, || {
        spans_in(&from_grpc).len() >= N && spans_in(&from_http).len() >= N
    });
    assert!(
        arrived,
        "downstream got {} spans over gRPC and {} over HTTP within {DELIVERY_TIMEOUT:?}, want {N} each",
        spans_in(&from_grpc).len(),
        spans_in(&from_http).len()
    );
    for exporter in ["otlp", "otlphttp"] {
        let v = wait_metric(
            up_metrics,
            "otelcol_exporter_sent_spans_total",
            &[("exporter", exporter)],
            N as f64,
            DELIVERY_TIMEOUT,
        );
        assert_eq!(
            v,
            Some(N as f64),
            "upstream otelcol_exporter_sent_spans_total{{exporter={exporter}}}"
        );
    }

    upstream.stop();
    downstream.stop();

    for (name, path) in [("otlp (gRPC)", &from_grpc), ("otlphttp", &from_http)] {
        let items = spans(&read_json_lines(path));
        let keys: Vec<String> = items.iter().map(span_key).collect();
        let set: BTreeSet<String> = keys.iter().cloned().collect();
        assert_eq!(keys.len(), N, "{name}: span count downstream");
        assert_eq!(set, want, "{name}: exactly the spans sent upstream");
        for it in &items {
            assert_eq!(
                it.service_name().as_deref(),
                Some("chain-test"),
                "{name}: resource kept"
            );
            assert_eq!(
                attr(&it.record["attributes"], "test.name").and_then(|v| v["stringValue"].as_str()),
                it.record["name"].as_str(),
                "{name}: span attribute kept"
            );
        }
    }
}
