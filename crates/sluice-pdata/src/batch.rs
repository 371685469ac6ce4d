use std::fmt;
use std::sync::Arc;

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::Metric;

use crate::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest};

/// The three telemetry signals a pipeline can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The pipeline type name used in configuration (`traces`, `metrics`, `logs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The item name used in self-telemetry metric names, as the OpenTelemetry
    /// Collector spells it (`otelcol_receiver_accepted_spans`, ...).
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "metric_points",
            Signal::Logs => "log_records",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        match s {
            "traces" => Some(Signal::Traces),
            "metrics" => Some(Signal::Metrics),
            "logs" => Some(Signal::Logs),
            _ => None,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One OTLP export request of one signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Payload {
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) => Signal::Traces,
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Logs(_) => Signal::Logs,
        }
    }

    /// An empty request of `signal`.
    pub fn empty(signal: Signal) -> Payload {
        match signal {
            Signal::Traces => Payload::Traces(Default::default()),
            Signal::Metrics => Payload::Metrics(Default::default()),
            Signal::Logs => Payload::Logs(Default::default()),
        }
    }

    /// Number of items: spans, metric data points or log records.
    pub fn item_count(&self) -> usize {
        match self {
            Payload::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum(),
            Payload::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(data_point_count)
                .sum(),
            Payload::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum(),
        }
    }

    /// Appends `other`'s resources to this request. Both must be of one signal;
    /// a mismatch leaves `self` unchanged and returns `other` back.
    pub fn append(&mut self, other: Payload) -> Result<(), Payload> {
        match (self, other) {
            (Payload::Traces(a), Payload::Traces(b)) => a.resource_spans.extend(b.resource_spans),
            (Payload::Metrics(a), Payload::Metrics(b)) => {
                a.resource_metrics.extend(b.resource_metrics)
            }
            (Payload::Logs(a), Payload::Logs(b)) => a.resource_logs.extend(b.resource_logs),
            (_, other) => return Err(other),
        }
        Ok(())
    }

    /// Protobuf encoding of the export request.
    pub fn encode_proto(&self) -> Vec<u8> {
        use prost::Message;
        match self {
            Payload::Traces(r) => r.encode_to_vec(),
            Payload::Metrics(r) => r.encode_to_vec(),
            Payload::Logs(r) => r.encode_to_vec(),
        }
    }

    /// Decodes a protobuf export request of `signal`.
    pub fn decode_proto(signal: Signal, bytes: &[u8]) -> Result<Payload, prost::DecodeError> {
        use prost::Message;
        Ok(match signal {
            Signal::Traces => Payload::Traces(ExportTraceServiceRequest::decode(bytes)?),
            Signal::Metrics => Payload::Metrics(ExportMetricsServiceRequest::decode(bytes)?),
            Signal::Logs => Payload::Logs(ExportLogsServiceRequest::decode(bytes)?),
        })
    }
}

/// Number of data points in one metric, whatever its type.
pub(crate) fn data_point_count(metric: &Metric) -> usize {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// A batch of telemetry as it crosses component boundaries: shared, copied on
/// write, with its item count computed once.
#[derive(Debug, Clone)]
pub struct Batch {
    payload: Arc<Payload>,
    items: usize,
}

impl Batch {
    pub fn new(payload: Payload) -> Batch {
        let items = payload.item_count();
        Batch {
            payload: Arc::new(payload),
            items,
        }
    }

    pub fn signal(&self) -> Signal {
        self.payload.signal()
    }

    /// Items in the batch (spans, metric points or log records).
    pub fn items(&self) -> usize {
        self.items
    }

    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Mutable access; copies the payload first if another consumer shares it.
    /// The cached item count is refreshed when the guard is dropped.
    pub fn make_mut(&mut self) -> BatchMut<'_> {
        BatchMut { batch: self }
    }

    /// The payload by value, copying only if it is shared.
    pub fn into_payload(self) -> Payload {
        Arc::try_unwrap(self.payload).unwrap_or_else(|shared| (*shared).clone())
    }

    /// True when no other handle shares this batch's payload.
    pub fn is_unique(&self) -> bool {
        Arc::strong_count(&self.payload) == 1
    }
}

impl From<Payload> for Batch {
    fn from(p: Payload) -> Batch {
        Batch::new(p)
    }
}

/// Guard returned by [`Batch::make_mut`].
pub struct BatchMut<'a> {
    batch: &'a mut Batch,
}

impl std::ops::Deref for BatchMut<'_> {
    type Target = Payload;
    fn deref(&self) -> &Payload {
        &self.batch.payload
    }
}

impl std::ops::DerefMut for BatchMut<'_> {
    fn deref_mut(&mut self) -> &mut Payload {
        Arc::make_mut(&mut self.batch.payload)
    }
}

impl Drop for BatchMut<'_> {
    fn drop(&mut self) {
        self.batch.items = self.batch.payload.item_count();
    }
}
