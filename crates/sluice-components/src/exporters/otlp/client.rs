//! The gRPC sender behind the `otlp` exporter and the mapping of gRPC
//! statuses to retryable / permanent failures.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use sluice_core::exporter_helper::{SendError, Sender};
use sluice_core::ComponentError;
use sluice_pdata::{Batch, Payload, Signal};
use tonic::client::Grpc;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::{parse_grpc_endpoint, Compression, OtlpExporterConfig, Scheme, TLS_UNSUPPORTED};

/// The `User-Agent` sluice announces (tonic appends its own).
const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

/// Longest server message copied into an error.
const MAX_MESSAGE: usize = 512;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("endpoint: {0}")]
    Endpoint(String),
    #[error("endpoint: {TLS_UNSUPPORTED}; use `http://host:port` or `tls.insecure: true`")]
    Tls,
    #[error("header {name:?}: {message}")]
    Header { name: String, message: String },
    #[error("gRPC channel: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// An export request encoded straight from the shared batch. The generated
/// clients take their request by value, which would mean a deep copy of
/// every batch per send (and per retry); this wrapper lets tonic's prost
/// codec encode from the `Arc` instead.
#[derive(Debug)]
struct SharedRequest(Batch);

impl prost::Message for SharedRequest {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        if let Some(bytes) = self.0.encoded() {
            // Received encoded and not changed since: sent as it came.
            buf.put_slice(bytes);
            return;
        }
        match self.0.payload() {
            Payload::Traces(r) => r.encode_raw(buf),
            Payload::Metrics(r) => r.encode_raw(buf),
            Payload::Logs(r) => r.encode_raw(buf),
        }
    }

    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }

    // Only ever encoded: decoding skips whatever it is given.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn clear(&mut self) {
        self.0 = Batch::new(Payload::empty(self.0.signal()));
    }
}

/// The `Export` method of each collector service.
fn export_path(signal: Signal) -> tonic::codegen::http::uri::PathAndQuery {
    tonic::codegen::http::uri::PathAndQuery::from_static(match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    })
}

/// Sends each batch as one OTLP/gRPC `Export` call.
pub(crate) struct GrpcSender {
    id: String,
    endpoint: Endpoint,
    grpc: OnceLock<Grpc<Channel>>,
    metadata: MetadataMap,
    compression: Compression,
    timeout: Duration,
}

impl GrpcSender {
    /// Builds the sender; no connection is made until the first send.
    pub(crate) fn new(id: &str, config: &OtlpExporterConfig) -> Result<GrpcSender, SetupError> {
        let (scheme, authority) =
            parse_grpc_endpoint(&config.endpoint).map_err(SetupError::Endpoint)?;
        if scheme == Scheme::Https || (scheme == Scheme::Bare && !config.tls.insecure) {
            return Err(SetupError::Tls);
        }
        let mut user_agent = USER_AGENT.to_string();
        let mut metadata = MetadataMap::new();
        for (name, value) in &config.headers {
            let header_err = |message: &str| SetupError::Header {
                name: name.clone(),
                message: message.to_string(),
            };
            super::check_metadata(name, value).map_err(|m| header_err(&m))?;
            if name.eq_ignore_ascii_case("user-agent") {
                // tonic sets the User-Agent itself; the configured one goes
                // in front of its own.
                user_agent = value.clone();
                continue;
            }
            let key = AsciiMetadataKey::from_bytes(name.as_bytes())
                .map_err(|_| header_err("invalid name"))?;
            let value = AsciiMetadataValue::try_from(value.as_str())
                .map_err(|_| header_err("invalid value"))?;
            metadata.insert(key, value);
        }
        let endpoint = Endpoint::from_shared(format!("http://{authority}"))?
            .user_agent(user_agent)?
            .connect_timeout(config.timeout);
        Ok(GrpcSender {
            id: id.to_string(),
            endpoint,
            grpc: OnceLock::new(),
            metadata,
            compression: config.compression,
            timeout: config.timeout,
        })
    }

    /// The gRPC client over one lazily connected channel. Must be called
    /// inside the runtime (the channel spawns its worker).
    fn grpc(&self) -> &Grpc<Channel> {
        self.grpc.get_or_init(|| {
            let grpc = Grpc::new(self.endpoint.connect_lazy())
                .accept_compressed(CompressionEncoding::Gzip);
            if self.compression == Compression::Gzip {
                grpc.send_compressed(CompressionEncoding::Gzip)
            } else {
                grpc
            }
        })
    }

    /// One `Export` call; `U` is the signal's response type.
    async fn export<U>(&self, batch: &Batch) -> Result<U, SendError>
    where
        U: prost::Message + Default + Send + 'static,
    {
        let mut grpc = self.grpc().clone();
        grpc.ready()
            .await
            .map_err(|e| SendError::retryable(format!("backend not reachable: {e}")))?;
        let codec = tonic_prost::ProstCodec::<SharedRequest, U>::default();
        let answer = grpc
            .unary(
                self.request(SharedRequest(batch.clone())),
                export_path(batch.signal()),
                codec,
            )
            .await
            .map_err(|s| classify_status(&s))?;
        Ok(answer.into_inner())
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        // After the metadata: this adds `grpc-timeout` to it.
        request.set_timeout(self.timeout);
        request
    }
}

#[async_trait]
impl Sender for GrpcSender {
    async fn start(&self) -> Result<(), ComponentError> {
        // Creates the channel (no connection yet) inside the runtime.
        self.grpc();
        Ok(())
    }

    async fn send(&self, batch: &Batch) -> Result<(), SendError> {
        let (rejected, message) = match batch.signal() {
            Signal::Traces => self
                .export::<ExportTraceServiceResponse>(batch)
                .await?
                .partial_success
                .map(|p| (p.rejected_spans, p.error_message)),
            Signal::Metrics => self
                .export::<ExportMetricsServiceResponse>(batch)
                .await?
                .partial_success
                .map(|p| (p.rejected_data_points, p.error_message)),
            Signal::Logs => self
                .export::<ExportLogsServiceResponse>(batch)
                .await?
                .partial_success
                .map(|p| (p.rejected_log_records, p.error_message)),
        }
        .unwrap_or_default();
        partial_success(&self.id, batch.signal(), rejected, &message)
    }
}

/// Turns an OTLP `partial_success` answer into the helper's outcome: items
/// rejected are a [`SendError::PartialSuccess`] (counted, not retried); a
/// message alone is only logged. Both OTLP exporters use this.
pub(crate) fn partial_success(
    exporter: &str,
    signal: Signal,
    rejected: i64,
    message: &str,
) -> Result<(), SendError> {
    if rejected > 0 {
        return Err(SendError::PartialSuccess {
            rejected: u64::try_from(rejected).unwrap_or(0),
            message: truncate(message).to_string(),
        });
    }
    if !message.is_empty() {
        tracing::debug!(
            exporter,
            signal = %signal,
            error_message = %truncate(message),
            "the backend accepted the batch with a message"
        );
    }
    Ok(())
}

/// Cuts a server-provided message to a loggable length.
pub(crate) fn truncate(s: &str) -> &str {
    if s.len() <= MAX_MESSAGE {
        return s;
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The canonical upper-case name of a gRPC code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Maps a failed call's status to a send error (see the module doc).
pub(crate) fn classify_status(status: &Status) -> SendError {
    let retry_after = retry_info_delay(status.details());
    let message = format!(
        "backend answered {}: {}",
        code_name(status.code()),
        truncate(status.message())
    );
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendError::Retryable {
            message,
            retry_after,
        },
        Code::ResourceExhausted if retry_after.is_some() => SendError::Retryable {
            message,
            retry_after,
        },
        _ => SendError::Permanent(message),
    }
}

/// The `google.rpc.Status` carried in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub(crate) const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The delay of the first `google.rpc.RetryInfo` in a status's details, if
/// any and well formed. Undecodable details count as absent.
pub(crate) fn retry_info_delay(details: &[u8]) -> Option<Duration> {
    use prost::Message;
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .filter(|any| {
            any.type_url == RETRY_INFO_TYPE || any.type_url.ends_with("/google.rpc.RetryInfo")
        })
        .find_map(|any| {
            let info = RetryInfo::decode(any.value.as_slice()).ok()?;
            let d = info.retry_delay?;
            let seconds = u64::try_from(d.seconds).ok()?;
            let nanos = u32::try_from(d.nanos).ok().filter(|n| *n < 1_000_000_000)?;
            Some(Duration::new(seconds, nanos))
        })
}
