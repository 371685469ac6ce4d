//! Tests of the `stamp` processor: its configuration as the validator reads
//! it, and batches of each signal driven through a real processor into a
//! consumer that records what it was handed.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_yaml_ng::Value as Yaml;
use sluice_core::factory::parse_config;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    BuildContext, ComponentId, ConsumeError, Consumer, FieldError, Health, Kind, Processor,
    ProcessorFactory, Registry, Telemetry,
};
use sluice_pdata::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sluice_pdata::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sluice_pdata::otlp::metrics::v1::{metric, Gauge, Metric, NumberDataPoint, ResourceMetrics};
use sluice_pdata::otlp::metrics::v1::{number_data_point, ScopeMetrics};
use sluice_pdata::otlp::resource::v1::Resource;
use sluice_pdata::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sluice_pdata::{
    Batch, Bytes, ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
    Payload, Signal,
};

use super::{register, StampConfig, StampFactory, TYPE};

// ------------------------------------------------------------ configuration

/// Parses `yaml` as the validator does: deserialization (with
/// `deny_unknown_fields`), then `validate`.
fn parse(yaml: &str) -> Result<StampConfig, Vec<FieldError>> {
    let raw: Yaml = serde_yaml_ng::from_str(yaml).expect("test YAML is YAML");
    parse_config::<StampConfig>(&raw)?;
    // `ParsedConfig` is type-erased; read the typed config directly too.
    Ok(serde_yaml_ng::from_value(raw).expect("parsed above"))
}

fn paths(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn a_complete_config_is_valid() {
    let cfg = parse("key: deployment.environment\nvalue: production\n").expect("valid");
    assert_eq!(cfg.key, "deployment.environment");
    assert_eq!(cfg.value.as_deref(), Some("production"));
}

#[test]
fn an_empty_value_is_valid() {
    let cfg = parse("key: team\nvalue: \"\"\n").expect("valid");
    assert_eq!(cfg.value.as_deref(), Some(""));
}

#[test]
fn a_missing_or_empty_key_is_named() {
    for yaml in ["value: production\n", "key: \"\"\nvalue: production\n"] {
        let errors = parse(yaml).expect_err("invalid");
        assert_eq!(paths(&errors), ["key"], "{yaml:?}: {errors:?}");
    }
}

#[test]
fn an_empty_body_names_both_fields() {
    // `stamp:` with nothing after it reaches the config as null.
    let errors = parse("").expect_err("invalid");
    assert_eq!(paths(&errors), ["key", "value"], "{errors:?}");
}

#[test]
fn an_unknown_field_is_refused() {
    let errors = parse("key: team\nvalue: a\nvalu: b\n").expect_err("invalid");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("valu"), "{errors:?}");
}

#[test]
fn a_value_that_is_not_a_string_is_named() {
    let errors = parse("key: build\nvalue: 42\n").expect_err("invalid");
    assert_eq!(paths(&errors), ["value"], "{errors:?}");
}

#[test]
fn register_adds_the_processor_for_every_signal() {
    let mut r = Registry::new();
    register(&mut r);
    let list = r.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].kind, Kind::Processor);
    assert_eq!(list[0].type_name, TYPE);
    assert_eq!(list[0].signals, Signal::ALL);
}

// ---------------------------------------------------------------- processing

/// The next stage of the pipeline: records every batch it accepts.
#[derive(Default)]
struct Recorder {
    got: Mutex<Vec<Batch>>,
}

impl Recorder {
    fn take(&self) -> Vec<Batch> {
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.got.lock().unwrap().push(batch);
        Ok(())
    }
}

/// What the service hands a processor's factory for a pipeline of `signal`
/// named after it.
fn context(signal: Signal) -> BuildContext {
    BuildContext {
        id: ComponentId::new(TYPE, None),
        kind: Kind::Processor,
        pipeline: Some(signal.as_str().to_string()),
        signal: Some(signal),
        signals: vec![signal],
        telemetry: Telemetry::new(MetricsLevel::None),
        health: Health::default(),
        extensions: Default::default(),
    }
}

/// A `stamp` processor for a pipeline of `signal`, built by its factory as
/// the service would, passing to `next`.
fn processor(signal: Signal, key: &str, value: &str, next: Arc<Recorder>) -> Arc<dyn Processor> {
    let ctx = context(signal);
    let config = StampConfig {
        key: key.to_string(),
        value: Some(value.to_string()),
    };
    StampFactory
        .create(ctx, &config, next)
        .expect("a valid config builds")
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The resources a request of `signal` starts with: one absent, one with
/// other attributes only, and one that already has `env` twice (an int and
/// a string) between other attributes.
fn resources() -> Vec<Option<Resource>> {
    let with = |attributes| {
        Some(Resource {
            attributes,
            ..Default::default()
        })
    };
    vec![
        None,
        with(vec![string("service.name", "checkout")]),
        with(vec![
            string("service.name", "cart"),
            int("env", 7),
            string("host.name", "h1"),
            string("env", "old"),
        ]),
    ]
}

/// A request of `signal` with one item under each of [`resources`].
fn request(signal: Signal) -> Payload {
    let resources = resources().into_iter();
    match signal {
        Signal::Traces => Payload::Traces(ExportTraceServiceRequest {
            resource_spans: resources
                .map(|resource| ResourceSpans {
                    resource,
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            name: "GET /cart".into(),
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }),
        Signal::Metrics => Payload::Metrics(ExportMetricsServiceRequest {
            resource_metrics: resources
                .map(|resource| ResourceMetrics {
                    resource,
                    scope_metrics: vec![ScopeMetrics {
                        metrics: vec![Metric {
                            name: "queue.depth".into(),
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: vec![NumberDataPoint {
                                    value: Some(number_data_point::Value::AsInt(3)),
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }),
        Signal::Logs => Payload::Logs(ExportLogsServiceRequest {
            resource_logs: resources
                .map(|resource| ResourceLogs {
                    resource,
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![LogRecord {
                            severity_text: "INFO".into(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        }),
    }
}

/// The resources of a request, in order.
fn resources_of(payload: &Payload) -> Vec<Option<Resource>> {
    match payload {
        Payload::Traces(r) => r
            .resource_spans
            .iter()
            .map(|x| x.resource.clone())
            .collect(),
        Payload::Metrics(r) => r
            .resource_metrics
            .iter()
            .map(|x| x.resource.clone())
            .collect(),
        Payload::Logs(r) => r.resource_logs.iter().map(|x| x.resource.clone()).collect(),
    }
}

/// The attributes of each resource, as (key, value) with values shown as
/// `s:<string>` or `i:<int>`.
fn attributes(payload: &Payload) -> Vec<Vec<(String, String)>> {
    resources_of(payload)
        .into_iter()
        .map(|r| {
            r.map(|r| r.attributes)
                .unwrap_or_default()
                .into_iter()
                .map(|kv| {
                    let v = match kv.value.and_then(|v| v.value) {
                        Some(any_value::Value::StringValue(s)) => format!("s:{s}"),
                        Some(any_value::Value::IntValue(i)) => format!("i:{i}"),
                        other => format!("{other:?}"),
                    };
                    (kv.key, v)
                })
                .collect()
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What every request of [`request`] looks like once `env` is stamped
/// `prod`: added where missing, replaced in place (once) where present.
fn stamped() -> Vec<Vec<(String, String)>> {
    vec![
        pairs(&[("env", "s:prod")]),
        pairs(&[("service.name", "s:checkout"), ("env", "s:prod")]),
        pairs(&[
            ("service.name", "s:cart"),
            ("env", "s:prod"),
            ("host.name", "s:h1"),
        ]),
    ]
}

#[tokio::test]
async fn every_resource_of_every_signal_is_stamped() {
    for signal in Signal::ALL {
        let next = Arc::new(Recorder::default());
        let stamp = processor(signal, "env", "prod", next.clone());
        stamp
            .consume(Batch::new(request(signal)))
            .await
            .expect("the recorder accepts");
        let got = next.take();
        assert_eq!(got.len(), 1, "{signal}: one batch passed on");
        assert_eq!(got[0].signal(), signal);
        assert_eq!(got[0].items(), 3, "{signal}: no item dropped");
        assert_eq!(attributes(got[0].payload()), stamped(), "{signal}");
    }
}

#[tokio::test]
async fn a_batch_that_arrived_encoded_is_stamped() {
    for signal in Signal::ALL {
        let bytes = Bytes::from(request(signal).encode_proto());
        let batch = Batch::from_encoded(signal, bytes).expect("valid protobuf");
        let next = Arc::new(Recorder::default());
        let stamp = processor(signal, "env", "prod", next.clone());
        stamp.consume(batch).await.expect("the recorder accepts");
        let got = next.take();
        assert_eq!(got.len(), 1);
        assert!(
            got[0].encoded().is_none(),
            "{signal}: the stale encoding is dropped"
        );
        assert_eq!(attributes(got[0].payload()), stamped(), "{signal}");
        // Re-encoding (as an exporter would) carries the stamp.
        let again = Payload::decode_proto(signal, &got[0].to_bytes()).expect("decodes");
        assert_eq!(attributes(&again), stamped(), "{signal}");
    }
}

#[tokio::test]
async fn a_shared_batch_is_copied_not_changed() {
    let next = Arc::new(Recorder::default());
    let stamp = processor(Signal::Logs, "env", "prod", next.clone());
    let original = Batch::new(request(Signal::Logs));
    // Another pipeline of a fan-out holds the same batch.
    let other_holder = original.clone();
    stamp.consume(original).await.expect("the recorder accepts");
    assert_eq!(attributes(next.take()[0].payload()), stamped());
    assert_eq!(
        resources_of(other_holder.payload()),
        resources(),
        "the other holder's batch is unchanged"
    );
}

#[tokio::test]
async fn the_next_stages_refusal_is_passed_back() {
    struct Refuse;
    #[async_trait]
    impl Consumer for Refuse {
        async fn consume(&self, _batch: Batch) -> Result<(), ConsumeError> {
            Err(ConsumeError::overloaded("full"))
        }
    }
    let config = StampConfig {
        key: "env".into(),
        value: Some("prod".into()),
    };
    let stamp = StampFactory
        .create(context(Signal::Traces), &config, Arc::new(Refuse))
        .expect("builds");
    let err = stamp
        .consume(Batch::new(request(Signal::Traces)))
        .await
        .expect_err("refused");
    assert!(err.is_retryable(), "{err:?}");
}

#[test]
fn an_unvalidated_config_fails_to_build_without_panicking() {
    let next: Arc<Recorder> = Arc::default();
    for config in [
        StampConfig::default(),
        StampConfig {
            key: "env".into(),
            value: None,
        },
    ] {
        assert!(StampFactory
            .create(context(Signal::Traces), &config, next.clone())
            .is_err());
    }
}
