//! The gRPC sender behind the `otlp` exporter and the mapping of gRPC
//! statuses to retryable / permanent failures.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::bytes::{BufMut, BytesMut};
use sluice_core::exporter_helper::{SendError, Sender};
use sluice_core::ComponentError;
use sluice_pdata::{Batch, Bytes, Signal};
use sluice_shared::status::retry_info_delay;
use tonic::codegen::http;
use tonic::codegen::Service;
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

/// The `Export` method of each collector service.
fn export_path(signal: Signal) -> tonic::codegen::http::uri::PathAndQuery {
    tonic::codegen::http::uri::PathAndQuery::from_static(match signal {
        Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    })
}

/// Sends each batch as one OTLP/gRPC `Export` call.
///
/// The call is framed here rather than by tonic's generated client: the
/// batch's protobuf bytes (usually the bytes it was received as) go out
/// without being re-encoded, and gzip runs at the configured level (tonic's
/// codec compresses at a fixed level 6, about four times the CPU of level 1
/// on OTLP data; see BENCHMARKS.md). tonic's channel still does connection
/// handling and HTTP/2; tonic parses the answer's status.
pub(crate) struct GrpcSender {
    id: String,
    endpoint: Endpoint,
    channel: OnceLock<Channel>,
    metadata: http::HeaderMap,
    compression: Compression,
    level: u32,
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
        let mut metadata = http::HeaderMap::new();
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
            let key = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| header_err("invalid name"))?;
            let value = http::HeaderValue::try_from(value.as_str())
                .map_err(|_| header_err("invalid value"))?;
            metadata.insert(key, value);
        }
        let endpoint = Endpoint::from_shared(format!("http://{authority}"))?
            .user_agent(user_agent)?
            .connect_timeout(config.timeout);
        Ok(GrpcSender {
            id: id.to_string(),
            endpoint,
            channel: OnceLock::new(),
            metadata,
            compression: config.compression,
            level: config.compression_params.gzip_level(),
            timeout: config.timeout,
        })
    }

    /// One lazily connected channel. Must be called inside the runtime
    /// (the channel spawns its worker).
    fn channel(&self) -> &Channel {
        self.channel.get_or_init(|| self.endpoint.connect_lazy())
    }

    /// One `Export` call; `U` is the signal's response type.
    async fn export<U>(&self, batch: &Batch) -> Result<U, SendError>
    where
        U: prost::Message + Default,
    {
        let mut channel = self.channel().clone();
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .map_err(unreachable)?;
        let request = self.request(batch)?;
        let response = channel.call(request).await.map_err(unreachable)?;
        let message = read_response(response).await?;
        U::decode(message).map_err(|e| {
            SendError::Permanent(format!("backend answered an undecodable response: {e}"))
        })
    }

    /// The HTTP/2 request of one call: gRPC headers, the configured
    /// metadata, and the batch as one length-prefixed message.
    fn request(&self, batch: &Batch) -> Result<http::Request<tonic::body::Body>, SendError> {
        let raw = batch.to_bytes();
        let (flag, message) = match self.compression {
            Compression::Gzip => (1u8, Bytes::from(gzip(&raw, self.level)?)),
            Compression::None => (0u8, raw),
        };
        let len = u32::try_from(message.len()).map_err(|_| {
            SendError::Permanent(format!(
                "a request of {} bytes is too large for gRPC",
                message.len()
            ))
        })?;
        let mut frame = BytesMut::with_capacity(5 + message.len());
        frame.put_u8(flag);
        frame.put_u32(len);
        frame.put_slice(&message);
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(export_path(batch.signal()))
            .version(http::Version::HTTP_2)
            .body(tonic::body::Body::new(http_body_util::Full::new(
                frame.freeze(),
            )))
            .map_err(|e| SendError::Permanent(format!("building the request failed: {e}")))?;
        let headers = request.headers_mut();
        headers.extend(self.metadata.clone());
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        headers.insert(
            "grpc-accept-encoding",
            http::HeaderValue::from_static("gzip"),
        );
        if flag == 1 {
            headers.insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
        }
        // gRPC allows at most 8 digits per unit.
        let millis = self.timeout.as_millis().clamp(1, 99_999_999);
        if let Ok(v) = http::HeaderValue::try_from(format!("{millis}m")) {
            headers.insert("grpc-timeout", v);
        }
        Ok(request)
    }
}

/// A call that reached no server: UNAVAILABLE, as gRPC clients report it,
/// with the cause chain (e.g. "connection refused").
fn unreachable(e: impl std::error::Error) -> SendError {
    let mut message = format!("backend UNAVAILABLE (not reachable): {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    SendError::retryable(message)
}

/// gzip at `level` (1 fastest .. 9 smallest).
fn gzip(data: &[u8], level: u32) -> Result<Vec<u8>, SendError> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::new(level),
    );
    enc.write_all(data)
        .and_then(|()| enc.finish())
        .map_err(|e| SendError::Permanent(format!("gzip compression failed: {e}")))
}

/// Largest response message read back (answers are tiny).
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// Reads a unary call's answer: the status from the headers (a
/// trailers-only answer) or the trailers, and on `OK` the one message,
/// decompressed if the server compressed it.
async fn read_response(response: http::Response<tonic::body::Body>) -> Result<Bytes, SendError> {
    use http_body_util::BodyExt;
    let (parts, body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(classify_status(&status_for_http(parts.status)));
    }
    if let Some(status) = Status::from_header_map(&parts.headers) {
        if status.code() != Code::Ok {
            return Err(classify_status(&status));
        }
    }
    let collected = body
        .collect()
        .await
        .map_err(|e| SendError::retryable(format!("reading the answer failed: {e}")))?;
    let trailers = collected.trailers().cloned();
    let data = collected.to_bytes();
    let status = trailers
        .as_ref()
        .and_then(Status::from_header_map)
        .or_else(|| Status::from_header_map(&parts.headers));
    match status {
        Some(s) if s.code() == Code::Ok => {}
        Some(s) => return Err(classify_status(&s)),
        None => {
            return Err(SendError::retryable(
                "the backend's answer carried no grpc-status".to_string(),
            ))
        }
    }
    if data.len() < 5 {
        // No message: an empty answer.
        return Ok(Bytes::new());
    }
    let compressed = data[0] == 1;
    let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    let Some(message) = data.get(5..5 + len) else {
        return Err(SendError::retryable(
            "the backend's answer was cut short".to_string(),
        ));
    };
    if !compressed {
        return Ok(Bytes::copy_from_slice(message));
    }
    let gzip = parts
        .headers
        .get("grpc-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if !gzip {
        return Err(SendError::Permanent(
            "the backend compressed its answer with an encoding other than gzip".to_string(),
        ));
    }
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(message)
        .take(MAX_RESPONSE as u64)
        .read_to_end(&mut out)
        .map_err(|e| {
            SendError::Permanent(format!("the backend's answer is not valid gzip: {e}"))
        })?;
    Ok(Bytes::from(out))
}

/// The gRPC status an HTTP error status stands for (gRPC's HTTP mapping),
/// for answers from proxies that never reached a gRPC server.
fn status_for_http(status: http::StatusCode) -> Status {
    let code = match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("HTTP status {status}"))
}

#[async_trait]
impl Sender for GrpcSender {
    async fn start(&self) -> Result<(), ComponentError> {
        // Creates the channel (no connection yet) inside the runtime.
        self.channel();
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
