//! Tests of the `attributes` processor: each action (actions.rs), include /
//! exclude per signal (matching.rs), the undecoded pass-through (gate.rs)
//! and configuration errors with their paths (config.rs). They build the
//! processor through its factory from YAML and pass real batches through it
//! to a recording consumer.

mod actions;
mod config;
mod gate;
mod matching;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Val;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    BuildContext, ComponentId, ConsumeError, Consumer, Health, Kind, Processor, ProcessorFactory,
    Telemetry,
};
use sluice_pdata::{Batch, Payload, Signal};

use super::{AttributesConfig, AttributesFactory};

/// Keeps every batch it is given.
#[derive(Default)]
pub(super) struct Recorder {
    pub batches: Mutex<Vec<Batch>>,
}

#[async_trait]
impl Consumer for Recorder {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        self.batches.lock().unwrap().push(batch);
        Ok(())
    }
}

/// A processor built from YAML for a pipeline of `signal`.
pub(super) struct Harness {
    pub processor: Arc<dyn Processor>,
    pub recorder: Arc<Recorder>,
    pub telemetry: Arc<Telemetry>,
}

impl Harness {
    pub fn new(yaml: &str, signal: Signal) -> Harness {
        let config: AttributesConfig = serde_yaml_ng::from_str(yaml).expect("config parses");
        let telemetry = Telemetry::new(MetricsLevel::Normal);
        let recorder = Arc::new(Recorder::default());
        let ctx = BuildContext {
            id: ComponentId::new("attributes", None),
            kind: Kind::Processor,
            pipeline: Some(signal.as_str().into()),
            signal: Some(signal),
            signals: vec![signal],
            telemetry: telemetry.clone(),
            health: Health::default(),
            extensions: Default::default(),
        };
        let processor = AttributesFactory
            .create(ctx, &config, recorder.clone())
            .expect("processor builds");
        Harness {
            processor,
            recorder,
            telemetry,
        }
    }

    /// Passes `batch` through and returns what came out.
    pub async fn run(&self, batch: Batch) -> Batch {
        self.processor.consume(batch).await.expect("consume");
        self.recorder
            .batches
            .lock()
            .unwrap()
            .pop()
            .expect("the batch was passed on")
    }

    pub async fn run_payload(&self, payload: Payload) -> Payload {
        self.run(Batch::new(payload)).await.into_payload()
    }

    /// One series of this processor's telemetry, if present.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let series = format!(
            r#"{name}{{processor="attributes",pipeline="{}"}}"#,
            "traces"
        );
        self.telemetry.encode().lines().find_map(|l| {
            l.strip_prefix(&series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }
}

pub(super) fn s(v: &str) -> Val {
    Val::StringValue(v.to_string())
}

pub(super) fn kv(key: &str, v: Val) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// An attribute list from (key, value) pairs.
pub(super) fn attrs(pairs: &[(&str, Val)]) -> Vec<KeyValue> {
    pairs.iter().map(|(k, v)| kv(k, v.clone())).collect()
}

pub(super) fn resource(pairs: &[(&str, Val)]) -> Option<Resource> {
    Some(Resource {
        attributes: attrs(pairs),
        ..Default::default()
    })
}

pub(super) fn scope(name: &str, version: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: version.into(),
        ..Default::default()
    })
}

pub(super) fn span(name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        name: name.into(),
        kind: 2,
        attributes,
        ..Default::default()
    }
}

/// A traces payload: one resource per `(service, spans)`, one scope each.
pub(super) fn traces(resources: Vec<(&str, Vec<Span>)>) -> Payload {
    Payload::Traces(ExportTraceServiceRequest {
        resource_spans: resources
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: resource(&[("service.name", s(service))]),
                scope_spans: vec![ScopeSpans {
                    scope: scope("lib", "1.0"),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    })
}

/// A traces payload of one span with these attributes.
pub(super) fn one_span(attributes: Vec<KeyValue>) -> Payload {
    traces(vec![("svc", vec![span("op", attributes)])])
}

/// Every span of a traces payload, in order.
pub(super) fn spans_of(p: &Payload) -> Vec<&Span> {
    let Payload::Traces(r) = p else {
        panic!("not traces")
    };
    r.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect()
}

/// The attributes of the only span.
pub(super) fn only_attrs(p: &Payload) -> &Vec<KeyValue> {
    let spans = spans_of(p);
    assert_eq!(spans.len(), 1);
    &spans[0].attributes
}

/// The value of `key`, if present.
pub(super) fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Val> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The keys, in order.
pub(super) fn keys(attrs: &[KeyValue]) -> Vec<&str> {
    attrs.iter().map(|kv| kv.key.as_str()).collect()
}

pub(super) fn log(body: &str, severity: &str, attributes: Vec<KeyValue>) -> LogRecord {
    LogRecord {
        body: Some(AnyValue {
            value: Some(s(body)),
        }),
        severity_text: severity.into(),
        attributes,
        ..Default::default()
    }
}

pub(super) fn logs(service: &str, records: Vec<LogRecord>) -> Payload {
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(&[("service.name", s(service))]),
            scope_logs: vec![ScopeLogs {
                scope: scope("lib", "1.0"),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

pub(super) fn log_records_of(p: &Payload) -> Vec<&LogRecord> {
    let Payload::Logs(r) = p else {
        panic!("not logs")
    };
    r.resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .collect()
}

pub(super) fn metrics(env: &str, list: Vec<Metric>) -> Payload {
    Payload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(&[("service.name", s("svc")), ("env", s(env))]),
            scope_metrics: vec![ScopeMetrics {
                scope: scope("lib", "1.0"),
                metrics: list,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

pub(super) fn metrics_of(p: &Payload) -> Vec<&Metric> {
    let Payload::Metrics(r) = p else {
        panic!("not metrics")
    };
    r.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .collect()
}
