use sluice_pdata::otlp::collector::trace::v1::ExportTraceServiceRequest;
use sluice_pdata::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sluice_pdata::{Batch, Payload, Signal};

use super::Service;
use crate::config::{expand, load, validate, Source};
use crate::testkit;

const THREE_PIPELINES: &str = r#"
receivers:
  testrecv:
processors:
  rename/x: { suffix: "-x" }
  rename/y: { suffix: "-y" }
exporters:
  collect/a:
  collect/b:
  collect/c:
  collect/shared:
service:
  telemetry: { metrics: { level: none } }
  pipelines:
    traces/a: { receivers: [testrecv], processors: [rename/x], exporters: [collect/a, collect/shared] }
    traces/b: { receivers: [testrecv], processors: [rename/x, rename/y], exporters: [collect/b, collect/shared] }
    traces/c: { receivers: [testrecv], exporters: [collect/c] }
"#;

fn spans(names: &[&str]) -> Batch {
    Batch::new(Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: names
                    .iter()
                    .map(|n| Span {
                        name: n.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

fn build(text: &str) -> (Service, testkit::Shared) {
    let (registry, log) = testkit::registry();
    let mut v = load(&[Source {
        name: "t".into(),
        text: text.into(),
    }])
    .unwrap();
    expand(&mut v, &|_| None).unwrap();
    let cfg = validate(&v, &registry).unwrap();
    (Service::build(&cfg, &registry).unwrap(), log)
}

fn exported(log: &testkit::Shared, id: &str) -> Vec<Vec<String>> {
    log.lock()
        .unwrap()
        .exported
        .iter()
        .filter(|(e, _)| e == id)
        .map(|(_, names)| names.clone())
        .collect()
}

#[tokio::test]
async fn one_receiver_fans_out_to_every_pipeline_with_per_pipeline_processors() {
    let (mut service, log) = build(THREE_PIPELINES);
    service.start().await.unwrap();

    let receivers = log.lock().unwrap().receivers.clone();
    assert_eq!(
        receivers.len(),
        1,
        "a receiver in three pipelines is one instance"
    );
    let consumers = &receivers[0].1;
    assert!(
        consumers.get(Signal::Metrics).is_none(),
        "no metrics pipeline lists it"
    );
    let traces = consumers
        .get(Signal::Traces)
        .expect("traces consumer")
        .clone();

    traces.consume(spans(&["s"])).await.unwrap();
    traces.consume(spans(&["t", "u"])).await.unwrap();

    // Each pipeline's processors saw and changed only their own copy.
    assert_eq!(
        exported(&log, "collect/a"),
        vec![vec!["s-x"], vec!["t-x", "u-x"]]
    );
    assert_eq!(
        exported(&log, "collect/b"),
        vec![vec!["s-x-y"], vec!["t-x-y", "u-x-y"]]
    );
    assert_eq!(exported(&log, "collect/c"), vec![vec!["s"], vec!["t", "u"]]);
    // The shared exporter is one instance fed by both pipelines.
    let mut shared: Vec<String> = exported(&log, "collect/shared").concat();
    shared.sort();
    assert_eq!(shared, vec!["s-x", "s-x-y", "t-x", "t-x-y", "u-x", "u-x-y"]);

    let built = log.lock().unwrap().processors_built.clone();
    assert_eq!(
        built,
        vec![
            "processor rename/x in traces/a",
            "processor rename/y in traces/b",
            "processor rename/x in traces/b",
        ],
        "one instance per pipeline, built back to front"
    );

    service.shutdown().await;
    let events = log.lock().unwrap().events.clone();
    // Per-pipeline state: each rename/x instance counted its own 3 spans.
    assert!(
        events.contains(&"stop processor rename/x in traces/a seen=3".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"stop processor rename/x in traces/b seen=3".to_string()),
        "{events:?}"
    );
    let exporter_starts = events
        .iter()
        .filter(|e| e.starts_with("start exporter"))
        .count();
    assert_eq!(
        exporter_starts, 4,
        "four exporters, each started once: {events:?}"
    );
}

#[tokio::test]
async fn start_and_stop_in_order() {
    let (mut service, log) = build(THREE_PIPELINES);
    service.start().await.unwrap();
    service.shutdown().await;
    let events = log.lock().unwrap().events.clone();
    let pos = |prefix: &str, last: bool| {
        let mut it = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.starts_with(prefix))
            .map(|(i, _)| i);
        if last { it.next_back() } else { it.next() }
            .unwrap_or_else(|| panic!("no {prefix} in {events:?}"))
    };
    assert!(
        pos("start exporter", true) < pos("start processor", false),
        "{events:?}"
    );
    assert!(
        pos("start processor", true) < pos("start receiver", false),
        "{events:?}"
    );
    assert!(
        pos("stop receiver", true) < pos("stop exporter", false),
        "{events:?}"
    );
    assert!(
        pos("stop processor", true) < pos("stop exporter", false),
        "{events:?}"
    );
}
