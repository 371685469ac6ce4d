//! Fan-out: one receiver feeding two pipelines, and one exporter shared by
//! both. The receiver is one instance (its counter counts each span once);
//! every pipeline gets every span; the shared exporter gets both copies.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use support::*;

#[test]
fn one_receiver_two_pipelines_shared_exporter() {
    const REQUESTS: usize = 5;
    const SPANS_PER_REQUEST: usize = 6;
    const N: usize = REQUESTS * SPANS_PER_REQUEST;

    let dir = TestDir::new();
    let (grpc, http, metrics) = (free_addr(), free_addr(), free_addr());
    let cfg = dir.write_config(
        "config.yaml",
        &format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {grpc}
      http:
        endpoint: {http}
processors:
  batch/a:
    send_batch_size: 4
    send_batch_max_size: 4
    timeout: 100ms
  batch/b:
    send_batch_size: 7
    send_batch_max_size: 7
    timeout: 150ms
exporters:
  file/a:
    path: {a}
  file/b:
    path: {b}
  file/shared:
    path: {shared}
service:
  pipelines:
    traces/a:
      receivers: [otlp]
      processors: [batch/a]
      exporters: [file/a, file/shared]
    traces/b:
      receivers: [otlp]
      processors: [batch/b]
      exporters: [file/b, file/shared]
  telemetry:
    metrics:
      address: {metrics}
      level: normal
"#,
            a = dir.file("a.jsonl"),
            b = dir.file("b.jsonl"),
            shared = dir.file("shared.jsonl"),
        ),
    );
    let mut sluice = Sluice::run(dir.path(), &[&cfg]);
    assert!(
        wait_for_port(http, STARTUP_TIMEOUT),
        "HTTP port {http} not open"
    );

    let ids = IdGen::new();
    let mut sent = BTreeSet::new();
    for r in 0..REQUESTS {
        let spans = make_spans(&ids, &format!("fanout-{r}"), SPANS_PER_REQUEST);
        sent.extend(spans.iter().map(SpanSpec::key));
        let resp = post_traces_protobuf(
            http,
            &trace_request_protobuf("fanout-test", &spans),
            DELIVERY_TIMEOUT,
        )
        .expect("POST /v1/traces");
        assert_eq!(resp.status, 200, "request {r}: {}", resp.text());
    }
    assert_eq!(sent.len(), N);

    // Delivered while running.
    let (a, b, shared) = (
        dir.join("a.jsonl"),
        dir.join("b.jsonl"),
        dir.join("shared.jsonl"),
    );
    let delivered = wait_until(DELIVERY_TIMEOUT, || {
        spans_in(&a).len() >= N && spans_in(&b).len() >= N && spans_in(&shared).len() >= 2 * N
    });
    assert!(
        delivered,
        "not delivered within {DELIVERY_TIMEOUT:?}: file/a {} file/b {} file/shared {} (want {N}, {N}, {})",
        spans_in(&a).len(),
        spans_in(&b).len(),
        spans_in(&shared).len(),
        2 * N
    );

    // One receiver instance: each span accepted once, whatever the fan-out.
    let accepted = wait_metric(
        metrics,
        "otelcol_receiver_accepted_spans_total",
        &[("receiver", "otlp")],
        N as f64,
        DELIVERY_TIMEOUT,
    );
    assert_eq!(
        accepted,
        Some(N as f64),
        "receiver accepted spans (all transports)"
    );
    let text = scrape_metrics(metrics);
    assert_eq!(
        metric_value(
            &text,
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp"), ("transport", "http")]
        ),
        Some(N as f64),
        "accepted over http\n{text}"
    );
    for (exporter, want) in [("file/a", N), ("file/b", N), ("file/shared", 2 * N)] {
        let v = wait_metric(
            metrics,
            "otelcol_exporter_sent_spans_total",
            &[("exporter", exporter)],
            want as f64,
            DELIVERY_TIMEOUT,
        );
        assert_eq!(
            v,
            Some(want as f64),
            "otelcol_exporter_sent_spans_total{{exporter={exporter}}}"
        );
    }

    sluice.stop();

    let keys = |p: &std::path::Path| -> Vec<String> {
        spans(&read_json_lines(p)).iter().map(span_key).collect()
    };
    for (name, path) in [("file/a", &a), ("file/b", &b)] {
        let got = keys(path);
        let set: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), N, "{name}: span count");
        assert_eq!(set, sent, "{name}: exactly the spans sent, once each");
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for k in keys(&shared) {
        *counts.entry(k).or_default() += 1;
    }
    assert_eq!(
        counts.keys().cloned().collect::<BTreeSet<_>>(),
        sent,
        "file/shared: the spans sent"
    );
    let not_twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, c)| **c != 2).collect();
    assert!(
        not_twice.is_empty(),
        "file/shared must hold every span exactly twice (once per pipeline): {not_twice:?}"
    );
    // Each pipeline has its own batch processor instance with its own
    // limits: no line of file/a exceeds batch/a's max size, none of file/b
    // batch/b's.
    for (name, path, max) in [
        ("file/a", &a, 4),
        ("file/b", &b, 7),
        ("file/shared", &shared, 7),
    ] {
        for (i, line) in read_json_lines(path).iter().enumerate() {
            let n = spans(std::slice::from_ref(line)).len();
            assert!(
                n <= max,
                "{name} line {}: a batch of {n} spans, over the pipeline's send_batch_max_size {max}",
                i + 1
            );
        }
    }
}
