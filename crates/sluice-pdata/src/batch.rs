use std::fmt;
use std::sync::{Arc, OnceLock};

use prost::bytes::{Bytes, BytesMut};

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

    /// Length of the protobuf encoding, computed without encoding.
    pub fn encoded_len(&self) -> usize {
        use prost::Message;
        match self {
            Payload::Traces(r) => r.encoded_len(),
            Payload::Metrics(r) => r.encoded_len(),
            Payload::Logs(r) => r.encoded_len(),
        }
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
///
/// A batch holds its request in one or both of two forms: the protobuf
/// encoding it arrived in (validated by [`Batch::from_encoded`]) and the
/// decoded [`Payload`]. A batch that only passes through (received, batched,
/// exported or queued on disk) is never decoded: the receiver validates and
/// counts the bytes with one allocation-free walk, the batch processor
/// concatenates encodings, and exporters send them as they are. The first
/// call of [`Batch::payload`] decodes once (shared by every holder); the
/// first mutation drops the encoding, since it no longer matches.
#[derive(Debug, Clone)]
pub struct Batch {
    shared: Arc<Shared>,
    signal: Signal,
    items: usize,
}

#[derive(Debug, Clone)]
struct Shared {
    /// The protobuf export request, when it is known to be current.
    encoded: Option<Bytes>,
    /// The decoded request; filled on first use when only `encoded` is held.
    decoded: OnceLock<Payload>,
}

/// Why [`Batch::from_encoded`] refused bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid protobuf {signal} export request: {reason}")]
pub struct InvalidRequest {
    pub signal: Signal,
    pub reason: String,
}

impl Batch {
    pub fn new(payload: Payload) -> Batch {
        let items = payload.item_count();
        let signal = payload.signal();
        Batch {
            shared: Arc::new(Shared {
                encoded: None,
                decoded: OnceLock::from(payload),
            }),
            signal,
            items,
        }
    }

    /// A batch of a protobuf-encoded export request of `signal`. The bytes
    /// are checked against the OTLP schema as a protobuf decoder would
    /// (wire types, lengths, UTF-8 of strings, nesting depth) and their items
    /// counted, without decoding; bytes that would not decode are refused,
    /// so a batch accepted here can always be decoded later.
    pub fn from_encoded(signal: Signal, bytes: Bytes) -> Result<Batch, InvalidRequest> {
        let items = crate::wire::validate(signal, &bytes).map_err(|reason| InvalidRequest {
            signal,
            reason: reason.to_string(),
        })?;
        Ok(Batch {
            shared: Arc::new(Shared {
                encoded: Some(bytes),
                decoded: OnceLock::new(),
            }),
            signal,
            items,
        })
    }

    /// Concatenates batches of one signal into one, in order. An export
    /// request is one repeated field, so concatenated encodings are the
    /// encoding of the merged request: when every part is decoded and some
    /// part lacks its encoding, the payloads are appended; otherwise the
    /// encodings are joined (parts held only decoded are encoded for it,
    /// which costs less than decoding the others), and nothing is decoded.
    /// Parts of another signal are returned in `Err` untouched.
    pub fn concat(signal: Signal, parts: Vec<Batch>) -> Result<Batch, Vec<Batch>> {
        if parts.iter().any(|b| b.signal != signal) {
            return Err(parts);
        }
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        let items = parts.iter().map(|b| b.items).sum();
        let all_encoded = parts.iter().all(|b| b.shared.encoded.is_some());
        let all_decoded = parts.iter().all(Batch::is_decoded);
        if all_decoded && !all_encoded {
            let mut parts = parts.into_iter();
            let mut merged = parts
                .next()
                .map_or_else(|| Payload::empty(signal), Batch::into_payload);
            for part in parts {
                // Same signal: checked above.
                let _ = merged.append(part.into_payload());
            }
            return Ok(Batch::new(merged));
        }
        let len = parts.iter().map(Batch::encoded_len).sum();
        let mut buf = BytesMut::with_capacity(len);
        for part in &parts {
            match &part.shared.encoded {
                Some(bytes) => buf.extend_from_slice(bytes),
                None => {
                    use prost::Message;
                    match part.payload() {
                        Payload::Traces(r) => r.encode_raw(&mut buf),
                        Payload::Metrics(r) => r.encode_raw(&mut buf),
                        Payload::Logs(r) => r.encode_raw(&mut buf),
                    }
                }
            }
        }
        Ok(Batch {
            shared: Arc::new(Shared {
                encoded: Some(buf.freeze()),
                decoded: OnceLock::new(),
            }),
            signal,
            items,
        })
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Items in the batch (spans, metric points or log records).
    pub fn items(&self) -> usize {
        self.items
    }

    /// The decoded request; decodes the encoding on first use.
    pub fn payload(&self) -> &Payload {
        self.shared.decoded.get_or_init(|| {
            let bytes = self.shared.encoded.as_ref().expect("a batch holds a form");
            Payload::decode_proto(self.signal, bytes)
                .expect("validated by Batch::from_encoded before it was accepted")
        })
    }

    /// The protobuf encoding, when the batch holds it (no encoding is done).
    pub fn encoded(&self) -> Option<&Bytes> {
        self.shared.encoded.as_ref()
    }

    /// The protobuf encoding: the held bytes (a reference count, no copy)
    /// or a fresh encoding of the payload.
    pub fn to_bytes(&self) -> Bytes {
        match &self.shared.encoded {
            Some(b) => b.clone(),
            None => Bytes::from(self.payload().encode_proto()),
        }
    }

    /// Length of the protobuf encoding, computed without encoding.
    pub fn encoded_len(&self) -> usize {
        match &self.shared.encoded {
            Some(b) => b.len(),
            None => self.payload().encoded_len(),
        }
    }

    /// Mutable access; copies the payload first if another consumer shares it.
    /// The cached item count is refreshed when the guard is dropped.
    pub fn make_mut(&mut self) -> BatchMut<'_> {
        self.payload();
        let shared = Arc::make_mut(&mut self.shared);
        shared.encoded = None;
        BatchMut { batch: self }
    }

    /// The payload by value, copying only if it is shared.
    pub fn into_payload(self) -> Payload {
        self.payload();
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared.decoded.into_inner().expect("decoded above"),
            Err(shared) => shared.decoded.get().expect("decoded above").clone(),
        }
    }

    /// True when no other handle shares this batch's payload.
    pub fn is_unique(&self) -> bool {
        Arc::strong_count(&self.shared) == 1
    }

    /// True when the batch has been decoded (for tests and benchmarks).
    pub fn is_decoded(&self) -> bool {
        self.shared.decoded.get().is_some()
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
        self.batch
            .shared
            .decoded
            .get()
            .expect("decoded by make_mut")
    }
}

impl std::ops::DerefMut for BatchMut<'_> {
    fn deref_mut(&mut self) -> &mut Payload {
        Arc::make_mut(&mut self.batch.shared)
            .decoded
            .get_mut()
            .expect("decoded by make_mut")
    }
}

impl Drop for BatchMut<'_> {
    fn drop(&mut self) {
        self.batch.items = self.batch.payload().item_count();
    }
}
