//! Test support shared by the component crates' tests (feature
//! `test-support`): small batches of each signal, a build context, a
//! `tracing` subscriber that records events, and a started `file_storage`
//! over a directory.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sluice_core::{BuildContext, ComponentId, Health, Kind, Telemetry};
use sluice_pdata::{
    Batch, ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest,
    Payload,
};

pub fn string_value(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_string())),
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(string_value(service)),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "test-scope".into(),
        version: "1.0".into(),
        ..Default::default()
    })
}

pub fn span(trace: u8, id: u8, name: &str) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: name.into(),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        ..Default::default()
    }
}

/// Two resources, three spans: `GET /a` (trace 0x01.., span 0x0a..),
/// `db query` (0x01.., 0x0b..) on `frontend`, `handle` (0x02.., 0x0c..) on
/// `backend`.
pub fn traces() -> Batch {
    Batch::new(Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource("frontend"),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans: vec![span(0x01, 0x0a, "GET /a"), span(0x01, 0x0b, "db query")],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: resource("backend"),
                scope_spans: vec![ScopeSpans {
                    scope: scope(),
                    spans: vec![span(0x02, 0x0c, "handle")],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    }))
}

fn point(v: f64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: 1_700_000_000_000_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

/// One resource, two metrics: `requests` (sum, 2 points) and `temperature`
/// (gauge, 1 point): 3 items.
pub fn metrics() -> Batch {
    Batch::new(Payload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("frontend"),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![
                    Metric {
                        name: "requests".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![point(1.0), point(2.0)],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "temperature".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![point(21.5)],
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

/// One resource, two log records: `started` (INFO, text "info") and
/// `disk full` (ERROR, no text).
pub fn logs() -> Batch {
    Batch::new(Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("backend"),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_700_000_000_000_000_000,
                        severity_number: SeverityNumber::Info as i32,
                        severity_text: "info".into(),
                        body: Some(string_value("started")),
                        ..Default::default()
                    },
                    LogRecord {
                        severity_number: SeverityNumber::Error as i32,
                        body: Some(string_value("disk full")),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }))
}

/// A build context for an exporter with id `id`.
pub fn build_context(id: &str) -> (BuildContext, Arc<Telemetry>) {
    let telemetry = Telemetry::new(sluice_core::telemetry::MetricsLevel::Normal);
    let ctx = BuildContext {
        id: ComponentId::parse(id).unwrap_or_else(|_| ComponentId::new("test", None)),
        kind: Kind::Exporter,
        pipeline: None,
        signal: None,
        telemetry: telemetry.clone(),
        health: Health::default(),
        extensions: Default::default(),
        signals: sluice_core::Signal::ALL.to_vec(),
    };
    (ctx, telemetry)
}

/// Parses a YAML component body.
pub fn yaml(s: &str) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(s).expect("test YAML parses")
}

/// One recorded `tracing` event.
#[derive(Debug, Clone)]
pub struct Event {
    pub level: tracing::Level,
    pub target: String,
    pub message: String,
    /// Other fields, `name=value` with values in their `Debug` form.
    pub fields: Vec<(String, String)>,
}

impl Event {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A subscriber that records every event; install it for the current thread
/// with [`capture`].
#[derive(Clone, Default)]
pub struct Capture {
    events: Arc<Mutex<Vec<Event>>>,
    next_span: Arc<AtomicU64>,
}

impl Capture {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

struct Visitor<'a>(&'a mut Event);

impl tracing::field::Visit for Visitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0.message = value.to_string();
        } else {
            self.0
                .fields
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.0.message = text;
        } else {
            self.0.fields.push((field.name().to_string(), text));
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        // Not the transport's trace-level chatter.
        *meta.level() <= tracing::Level::DEBUG
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut e = Event {
            level: *meta.level(),
            target: meta.target().to_string(),
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut Visitor(&mut e));
        if let Ok(mut events) = self.events.lock() {
            events.push(e);
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Records the events emitted on this thread until the guard is dropped.
/// Use with a current-thread runtime (the `#[tokio::test]` default).
pub fn capture() -> (Capture, tracing::subscriber::DefaultGuard) {
    let c = Capture::default();
    let guard = tracing::subscriber::set_default(c.clone());
    (c, guard)
}

/// A started file storage extension (id `file_storage`) keeping its files in
/// `dir`, as the service hands extensions to components: the core's real
/// [`FileStorage`](sluice_core::file_storage::FileStorage), not a stand-in.
pub async fn started_file_storage(dir: &std::path::Path) -> sluice_core::Extensions {
    use sluice_core::file_storage::{FileStorage, FileStorageExtension, FileStorageOptions};
    use sluice_core::Extension;
    let ext: Arc<dyn Extension> = Arc::new(FileStorageExtension::new(FileStorage::new(
        "file_storage",
        FileStorageOptions {
            directory: dir.to_path_buf(),
            create_directory: true,
            fsync: false,
            max_queue_bytes: 1024 * 1024 * 1024,
        },
    )));
    ext.start().await.expect("start file storage");
    let mut map = std::collections::BTreeMap::new();
    map.insert(ComponentId::new("file_storage", None), ext);
    sluice_core::Extensions::new(map)
}
