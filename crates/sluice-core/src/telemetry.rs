//! Self-telemetry: per-component counters with the OpenTelemetry Collector's
//! metric names, exposed in the Prometheus text format.
//!
//! Counters are looked up once, when a component is built, and then updated
//! with a single atomic add on the hot path. Counter names are registered
//! without the `_total` suffix; the Prometheus encoder appends it, as the
//! OpenTelemetry Collector's Prometheus endpoint does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use sluice_pdata::Signal;

use crate::component::ComponentId;

pub type Labels = Vec<(String, String)>;

/// `service.telemetry.metrics.level`, as in the OpenTelemetry Collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    /// No metrics endpoint.
    None,
    /// Component counters.
    Basic,
    /// As basic, plus histograms of batch sizes (as the OpenTelemetry
    /// Collector shows them at `normal`).
    #[default]
    Normal,
    /// As normal (reserved for finer per-component detail).
    Detailed,
}

/// Bucket bounds for batch-size histograms (items per batch), the
/// OpenTelemetry Collector's batch processor bounds.
const SIZE_BUCKETS: [f64; 20] = [
    10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0,
    6000.0, 7000.0, 8000.0, 9000.0, 10000.0, 20000.0, 100000.0,
];

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

#[derive(Default)]
struct Families {
    counters: HashMap<String, Family<Labels, Counter>>,
    gauges: HashMap<String, Family<Labels, Gauge>>,
    histograms: HashMap<String, HistogramFamily>,
}

/// The process's metric registry.
pub struct Telemetry {
    level: MetricsLevel,
    registry: Mutex<Registry>,
    families: Mutex<Families>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Telemetry {
    pub fn new(level: MetricsLevel) -> Arc<Telemetry> {
        Arc::new(Telemetry {
            level,
            registry: Mutex::new(Registry::default()),
            families: Mutex::new(Families::default()),
        })
    }

    pub fn level(&self) -> MetricsLevel {
        self.level
    }

    /// A counter `name` (without `_total`) with these labels.
    pub fn counter(&self, name: &str, help: &str, pairs: &[(&str, &str)]) -> Counter {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams.counters.entry(name.to_string()).or_insert_with(|| {
            let f = Family::<Labels, Counter>::default();
            self.register(name, help, f.clone());
            f
        });
        let m = fam.get_or_create(&labels(pairs)).clone();
        m
    }

    pub fn gauge(&self, name: &str, help: &str, pairs: &[(&str, &str)]) -> Gauge {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams.gauges.entry(name.to_string()).or_insert_with(|| {
            let f = Family::<Labels, Gauge>::default();
            self.register(name, help, f.clone());
            f
        });
        let m = fam.get_or_create(&labels(pairs)).clone();
        m
    }

    /// Removes the series of gauge `name` with these labels, for a series
    /// that no longer applies (a partition this process no longer reads).
    pub fn remove_gauge(&self, name: &str, pairs: &[(&str, &str)]) {
        let fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fam) = fams.gauges.get(name) {
            fam.remove(&labels(pairs));
        }
    }

    /// A histogram of item counts (batch sizes).
    pub fn size_histogram(&self, name: &str, help: &str, pairs: &[(&str, &str)]) -> Histogram {
        let mut fams = self.families.lock().unwrap_or_else(|p| p.into_inner());
        let fam = fams.histograms.entry(name.to_string()).or_insert_with(|| {
            let f = HistogramFamily::new_with_constructor(size_histogram);
            self.register(name, help, f.clone());
            f
        });
        let m = fam.get_or_create(&labels(pairs)).clone();
        m
    }

    fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register(name, help, metric);
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &reg);
        out
    }

    /// Counters every receiver keeps, per transport and signal.
    pub fn receiver(&self, id: &ComponentId, transport: &str, signal: Signal) -> ReceiverMetrics {
        let id = id.to_string();
        let l = [("receiver", id.as_str()), ("transport", transport)];
        let item = signal.item_name();
        ReceiverMetrics {
            accepted: self.counter(
                &format!("otelcol_receiver_accepted_{item}"),
                &format!("Number of {item} successfully pushed into the pipeline"),
                &l,
            ),
            refused: self.counter(
                &format!("otelcol_receiver_refused_{item}"),
                &format!("Number of {item} that could not be pushed into the pipeline"),
                &l,
            ),
        }
    }

    /// Counters every exporter keeps, per signal.
    pub fn exporter(&self, id: &ComponentId, signal: Signal) -> ExporterMetrics {
        let id = id.to_string();
        let l = [("exporter", id.as_str())];
        let item = signal.item_name();
        ExporterMetrics {
            sent: self.counter(
                &format!("otelcol_exporter_sent_{item}"),
                &format!("Number of {item} successfully sent to destination"),
                &l,
            ),
            send_failed: self.counter(
                &format!("otelcol_exporter_send_failed_{item}"),
                &format!("Number of {item} in failed attempts to send to destination"),
                &l,
            ),
            enqueue_failed: self.counter(
                &format!("otelcol_exporter_enqueue_failed_{item}"),
                &format!("Number of {item} failed to be added to the sending queue"),
                &l,
            ),
            rejected: self.counter(
                &format!("sluice_exporter_rejected_{item}"),
                &format!("Number of {item} the backend rejected in a partial-success answer"),
                &l,
            ),
        }
    }
}

/// See [`Telemetry::receiver`].
#[derive(Clone)]
pub struct ReceiverMetrics {
    pub accepted: Counter,
    pub refused: Counter,
}

/// See [`Telemetry::exporter`].
#[derive(Clone)]
pub struct ExporterMetrics {
    pub sent: Counter,
    pub send_failed: Counter,
    pub enqueue_failed: Counter,
    pub rejected: Counter,
}

impl ExporterMetrics {
    /// Counters registered nowhere, for a signal a component never carries.
    pub fn detached() -> Self {
        ExporterMetrics {
            sent: Counter::default(),
            send_failed: Counter::default(),
            enqueue_failed: Counter::default(),
            rejected: Counter::default(),
        }
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown` fires.
pub async fn serve_metrics(
    telemetry: Arc<Telemetry>,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let t = telemetry.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    t.encode(),
                )
            }
        }),
    );
    let local: Option<SocketAddr> = listener.local_addr().ok();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(address = ?local, error = %e, "metrics endpoint failed");
    }
}
