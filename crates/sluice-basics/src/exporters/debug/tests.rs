//! Tests of the `debug` exporter: rendering at each verbosity, sampling,
//! the output through `tracing`, and configuration.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sluice_core::factory::parse_config;
use sluice_core::{ExporterFactory, Signal};
use sluice_pdata::{Batch, ExportLogsServiceRequest, Payload};

use super::*;
use sluice_shared::test_support::{self, build_context, capture, string_value, yaml};

#[test]
fn basic_is_one_summary_line_per_batch() {
    assert_eq!(
        render(test_support::traces().payload(), Verbosity::Basic),
        vec!["traces: 2 resource spans, 3 spans"]
    );
    assert_eq!(
        render(test_support::metrics().payload(), Verbosity::Basic),
        vec!["metrics: 1 resource metrics, 2 metrics, 3 data points"]
    );
    assert_eq!(
        render(test_support::logs().payload(), Verbosity::Basic),
        vec!["logs: 1 resource logs, 2 log records"]
    );
}

#[test]
fn normal_adds_one_line_per_item() {
    assert_eq!(
        render(test_support::traces().payload(), Verbosity::Normal),
        vec![
            "traces: 2 resource spans, 3 spans",
            "span trace_id=01010101010101010101010101010101 span_id=0a0a0a0a0a0a0a0a name=\"GET /a\"",
            "span trace_id=01010101010101010101010101010101 span_id=0b0b0b0b0b0b0b0b name=\"db query\"",
            "span trace_id=02020202020202020202020202020202 span_id=0c0c0c0c0c0c0c0c name=\"handle\"",
        ]
    );
    assert_eq!(
        render(test_support::metrics().payload(), Verbosity::Normal),
        vec![
            "metrics: 1 resource metrics, 2 metrics, 3 data points",
            "metric name=\"requests\" type=sum points=2",
            "metric name=\"temperature\" type=gauge points=1",
        ]
    );
    assert_eq!(
        render(test_support::logs().payload(), Verbosity::Normal),
        vec![
            "logs: 1 resource logs, 2 log records",
            "log severity=info body=\"started\"",
            "log severity=ERROR body=\"disk full\"",
        ]
    );
}

fn logs_with_bodies(bodies: Vec<Option<AnyValue>>) -> Batch {
    Batch::new(Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .into_iter()
                    .map(|body| LogRecord {
                        body,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

fn v(value: any_value::Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

#[test]
fn log_bodies_of_every_type_stay_on_one_line() {
    let nested = v(any_value::Value::KvlistValue(KeyValueList {
        values: vec![
            KeyValue {
                key: "user".into(),
                value: Some(string_value("ann")),
                ..Default::default()
            },
            KeyValue {
                key: "ids".into(),
                value: Some(v(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![
                        v(any_value::Value::IntValue(1)),
                        v(any_value::Value::BoolValue(true)),
                    ],
                }))),
                ..Default::default()
            },
        ],
    }));
    let batch = logs_with_bodies(vec![
        Some(string_value("line one\nline \"two\"")),
        Some(v(any_value::Value::IntValue(42))),
        Some(v(any_value::Value::DoubleValue(1.5))),
        Some(v(any_value::Value::BytesValue(vec![0xde, 0xad]))),
        Some(nested),
        None,
    ]);
    let lines = render(batch.payload(), Verbosity::Normal);
    assert_eq!(
        lines[1..],
        [
            "log severity=UNSPECIFIED body=\"line one\\nline \\\"two\\\"\"",
            "log severity=UNSPECIFIED body=42",
            "log severity=UNSPECIFIED body=1.5",
            "log severity=UNSPECIFIED body=0xdead",
            "log severity=UNSPECIFIED body={\"user\": \"ann\", \"ids\": [1, true]}",
            "log severity=UNSPECIFIED body=\"\"",
        ]
    );
    assert!(lines.iter().all(|l| !l.contains('\n')));
}

#[test]
fn deeply_nested_values_are_cut() {
    let mut value = string_value("leaf");
    for _ in 0..50 {
        value = v(any_value::Value::ArrayValue(ArrayValue {
            values: vec![value],
        }));
    }
    let lines = render(
        logs_with_bodies(vec![Some(value)]).payload(),
        Verbosity::Normal,
    );
    assert!(lines[1].contains("[…]"), "{}", lines[1]);
    assert!(!lines[1].contains("leaf"));
}

#[test]
fn detailed_adds_the_batch_as_otlp_json() {
    for batch in [
        test_support::traces(),
        test_support::metrics(),
        test_support::logs(),
    ] {
        let lines = render(batch.payload(), Verbosity::Detailed);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], render(batch.payload(), Verbosity::Basic)[0]);
        assert!(!lines[1].contains('\n'));
        let back = sluice_pdata::from_json(batch.signal(), lines[1].as_bytes()).unwrap();
        assert_eq!(&back, batch.payload(), "the JSON holds the whole batch");
    }
    let lines = render(test_support::traces().payload(), Verbosity::Detailed);
    // OTLP/JSON spells ids as hex.
    assert!(lines[1].contains("\"0c0c0c0c0c0c0c0c\""), "{}", lines[1]);
}

#[test]
fn empty_batches_render() {
    for signal in Signal::ALL {
        let p = Payload::empty(signal);
        assert_eq!(render(&p, Verbosity::Normal).len(), 1);
        assert_eq!(render(&p, Verbosity::Detailed).len(), 2);
    }
}

#[test]
fn sampling_follows_the_collector() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);

    // Defaults: 2 then every 1st, i.e. everything.
    let s = Sampler::new(2, 1);
    assert!((0..10).all(|i| s.sample(at(i))));

    // 2 per second, then every 3rd.
    let s = Sampler::new(2, 3);
    let got: Vec<bool> = (0..9).map(|i| s.sample(at(i * 10))).collect();
    assert_eq!(
        got,
        vec![true, true, false, false, true, false, false, true, false]
    );
    // A new second starts over.
    assert!(s.sample(at(1_100)));
    assert!(s.sample(at(1_200)));
    assert!(!s.sample(at(1_300)));

    // thereafter 0: only the first ones of each second.
    let s = Sampler::new(1, 0);
    assert!(s.sample(at(0)));
    assert!(!s.sample(at(1)));
    assert!(!s.sample(at(999)));
    assert!(s.sample(at(1_000)));

    // initial 0: every thereafter-th from the start.
    let s = Sampler::new(0, 2);
    let got: Vec<bool> = (0..4).map(|i| s.sample(at(i))).collect();
    assert_eq!(got, vec![false, true, false, true]);
}

#[tokio::test]
async fn the_exporter_writes_to_tracing_without_a_queue() {
    let (ctx, telemetry) = build_context("debug/look");
    let config: DebugExporterConfig = serde_yaml_ng::from_value(yaml("verbosity: normal")).unwrap();
    assert!(config.validate().is_empty());
    let exporter = DebugExporterFactory.create(ctx, &config).unwrap();
    exporter.start().await.unwrap();
    let (log, guard) = capture();
    exporter.consume(test_support::logs()).await.unwrap();
    // Written before `consume` returned: the queue is off.
    let ours: Vec<_> = log
        .events()
        .into_iter()
        .filter(|e| e.target == TARGET)
        .collect();
    drop(guard);
    exporter.shutdown().await.unwrap();
    let messages: Vec<&str> = ours.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        render(test_support::logs().payload(), Verbosity::Normal)
    );
    assert!(ours.iter().all(|e| e.level == tracing::Level::INFO));
    assert!(ours
        .iter()
        .all(|e| e.field("exporter") == Some("debug/look")));
    let text = telemetry.encode();
    assert!(
        text.contains("otelcol_exporter_sent_log_records_total{exporter=\"debug/look\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_dropped_sample_is_still_a_success() {
    let config = DebugExporterConfig {
        sampling_initial: 0,
        sampling_thereafter: 0,
        ..DebugExporterConfig::default()
    };
    let sender = DebugSender::new("debug", &config);
    let (log, _guard) = capture();
    sluice_core::exporter_helper::Sender::send(&sender, &test_support::traces())
        .await
        .unwrap();
    assert!(log.events().iter().all(|e| e.target != TARGET));
}

// ---- configuration ----

fn errors(body: &str) -> Vec<FieldError> {
    match parse_config::<DebugExporterConfig>(&yaml(body)) {
        Ok(_) => Vec::new(),
        Err(e) => e,
    }
}

#[test]
fn defaults() {
    // `debug:` with no body.
    assert!(errors("").is_empty());
    let c: DebugExporterConfig = serde_yaml_ng::from_value(yaml("{}")).unwrap();
    assert_eq!(c.verbosity, Verbosity::Basic);
    assert_eq!(c.sampling_initial, 2);
    assert_eq!(c.sampling_thereafter, 1);
    assert!(
        !c.sending_queue.enabled,
        "the queue is off unless configured"
    );
}

#[test]
fn verbosity_is_case_insensitive() {
    for (text, want) in [
        ("basic", Verbosity::Basic),
        ("Normal", Verbosity::Normal),
        ("DETAILED", Verbosity::Detailed),
    ] {
        let c: DebugExporterConfig =
            serde_yaml_ng::from_value(yaml(&format!("verbosity: {text}"))).unwrap();
        assert_eq!(c.verbosity, want);
    }
}

#[test]
fn bad_configs_are_errors() {
    let e = errors("verbosity: loud");
    assert!(
        e.iter()
            .any(|e| e.path == "verbosity" && e.message.contains("unknown verbosity")),
        "{e:?}"
    );
    let e = errors("use_internal_logger: false");
    assert!(
        e.iter()
            .any(|e| e.message.contains("unknown field `use_internal_logger`")),
        "{e:?}"
    );
    let e = errors("sampling_initial: -1");
    assert!(e.iter().any(|e| e.path == "sampling_initial"), "{e:?}");
    let e = errors("sending_queue:\n  queue_size: 0");
    assert!(
        e.iter().any(|e| e.path == "sending_queue::queue_size"),
        "{e:?}"
    );
    let c: DebugExporterConfig =
        serde_yaml_ng::from_value(yaml("sending_queue:\n  queue_size: 5")).unwrap();
    assert!(
        c.sending_queue.enabled,
        "a configured queue is on by default"
    );
}

#[test]
fn factory_metadata() {
    let f = DebugExporterFactory;
    assert_eq!(f.type_name(), "debug");
    assert_eq!(f.signals(), &Signal::ALL);
    assert_eq!(f.stability(), sluice_core::Stability::Development);
}
