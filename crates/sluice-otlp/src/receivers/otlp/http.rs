//! OTLP/HTTP: `POST` of protobuf or JSON export requests on one path per
//! signal.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use flate2::read::{MultiGzDecoder, ZlibDecoder};
use futures::StreamExt;
use prost::Message;
use sluice_core::{Batch, BuildContext, Bytes, ComponentId, ConsumeError, Signal, Telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sluice_shared::receiver::SignalHandler;
use sluice_shared::status::{code, retry_after_secs, rpc_status, rpc_status_json};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The two OTLP/HTTP body encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => PROTOBUF,
            Format::Json => JSON,
        }
    }

    /// Reads `Content-Type`, ignoring parameters (`; charset=utf-8`) and case.
    fn from_headers(headers: &HeaderMap) -> Result<Format, RequestError> {
        let raw = headers
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let mime = raw.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case(PROTOBUF) {
            Ok(Format::Protobuf)
        } else if mime.eq_ignore_ascii_case(JSON) {
            Ok(Format::Json)
        } else {
            Err(RequestError::UnsupportedMediaType(raw))
        }
    }
}

/// Supported `Content-Encoding`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    /// The zlib format, as HTTP's `deflate` coding specifies.
    Deflate,
}

impl Encoding {
    fn from_headers(headers: &HeaderMap) -> Result<Encoding, RequestError> {
        let Some(v) = headers.get(CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let raw = String::from_utf8_lossy(v.as_bytes());
        let token = raw.trim().to_ascii_lowercase();
        match token.as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "deflate" => Ok(Encoding::Deflate),
            _ => Err(RequestError::UnsupportedEncoding(raw.into_owned())),
        }
    }
}

/// Why a request was answered with an error before reaching the pipeline.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("no OTLP endpoint at {0}")]
    NotFound(String),
    #[error("this receiver takes no {0}: no {0} pipeline lists it")]
    SignalNotServed(Signal),
    #[error("method {0} is not allowed; use POST")]
    MethodNotAllowed(Method),
    #[error("unsupported Content-Type {0:?}; use {PROTOBUF} or {JSON}")]
    UnsupportedMediaType(String),
    #[error("unsupported Content-Encoding {0:?}; use gzip, deflate or none")]
    UnsupportedEncoding(String),
    #[error("request body is larger than max_request_body_size ({limit} bytes)")]
    TooLarge { limit: usize },
    #[error("reading the request body failed: {0}")]
    BodyRead(String),
    #[error("the request body is not valid {encoding}: {reason}")]
    Decompress {
        encoding: &'static str,
        reason: String,
    },
    #[error("invalid OTLP/protobuf {signal} request: {reason}")]
    DecodeProto { signal: Signal, reason: String },
    #[error("{0}")]
    DecodeJson(String),
}

impl RequestError {
    /// A short label for the rejected-requests counter.
    fn reason(&self) -> &'static str {
        match self {
            RequestError::NotFound(_) | RequestError::SignalNotServed(_) => "not_found",
            RequestError::MethodNotAllowed(_) => "method_not_allowed",
            RequestError::UnsupportedMediaType(_) | RequestError::UnsupportedEncoding(_) => {
                "unsupported_media_type"
            }
            RequestError::TooLarge { .. } => "too_large",
            RequestError::BodyRead(_) => "body_read",
            RequestError::Decompress { .. } => "decompress",
            RequestError::DecodeProto { .. } | RequestError::DecodeJson(_) => "decode",
        }
    }

    fn status(&self) -> (StatusCode, i32) {
        match self {
            RequestError::NotFound(_) | RequestError::SignalNotServed(_) => {
                (StatusCode::NOT_FOUND, code::NOT_FOUND)
            }
            RequestError::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, code::UNIMPLEMENTED)
            }
            RequestError::UnsupportedMediaType(_) | RequestError::UnsupportedEncoding(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, code::INVALID_ARGUMENT)
            }
            RequestError::TooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, code::RESOURCE_EXHAUSTED)
            }
            RequestError::BodyRead(_)
            | RequestError::Decompress { .. }
            | RequestError::DecodeProto { .. }
            | RequestError::DecodeJson(_) => (StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT),
        }
    }

    /// The answer, as a `google.rpc.Status` in the request's format when it
    /// is known, as plain text otherwise.
    fn into_response(self, format: Option<Format>) -> Response {
        let (http_status, rpc_code) = self.status();
        let message = self.to_string();
        let mut resp = match format {
            Some(f) => status_body(http_status, f, rpc_code, &message, None),
            None => (
                http_status,
                [(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                )],
                message,
            )
                .into_response(),
        };
        if let RequestError::MethodNotAllowed(_) = self {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
        }
        resp
    }
}

fn status_body(
    http_status: StatusCode,
    format: Format,
    rpc_code: i32,
    message: &str,
    retry_delay: Option<std::time::Duration>,
) -> Response {
    let body = match format {
        Format::Protobuf => rpc_status(rpc_code, message, retry_delay).encode_to_vec(),
        Format::Json => rpc_status_json(rpc_code, message, retry_delay),
    };
    (
        http_status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response()
}

/// The answer to a request the pipeline refused.
fn refusal_response(err: &ConsumeError, format: Format) -> Response {
    match err {
        ConsumeError::Retryable {
            reason,
            retry_after,
            overloaded,
        } => {
            let http_status = if *overloaded {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut resp =
                status_body(http_status, format, code::UNAVAILABLE, reason, *retry_after);
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(*retry_after)),
            );
            resp
        }
        ConsumeError::Permanent(reason) => status_body(
            StatusCode::BAD_REQUEST,
            format,
            code::INVALID_ARGUMENT,
            reason,
            None,
        ),
    }
}

/// The success answer: an empty `Export*ServiceResponse`.
fn success_response(format: Format) -> Response {
    // An export response with no partial success encodes to zero protobuf
    // bytes and to `{}` in JSON, whatever the signal.
    let body: Vec<u8> = match format {
        Format::Protobuf => Vec::new(),
        Format::Json => b"{}".to_vec(),
    };
    (
        StatusCode::OK,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        )],
        body,
    )
        .into_response()
}

struct HttpState {
    /// (path, handler) for traces, metrics and logs.
    routes: Vec<(String, Arc<SignalHandler>)>,
    max_body: usize,
    id: ComponentId,
    telemetry: Arc<Telemetry>,
}

impl HttpState {
    /// Counts a request refused before its items could be counted (bad
    /// path, media type, size, encoding or body), by reason, so that no bad
    /// input goes unseen.
    fn count_rejected(&self, e: &RequestError) {
        sluice_shared::receiver::rejected_requests(&self.telemetry, &self.id, "http", e.reason())
            .inc();
    }
}

/// Reads at most `limit` bytes of body.
async fn read_body(body: Body, limit: usize, size_hint: usize) -> Result<Vec<u8>, RequestError> {
    let mut stream = body.into_data_stream();
    // Trust the announced length only up to a modest first allocation.
    let mut buf = Vec::with_capacity(size_hint.min(limit).min(1024 * 1024));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RequestError::BodyRead(e.to_string()))?;
        if buf.len().saturating_add(chunk.len()) > limit {
            return Err(RequestError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Decompresses into at most `limit` bytes.
fn decompress(raw: Vec<u8>, encoding: Encoding, limit: usize) -> Result<Vec<u8>, RequestError> {
    fn capped(
        reader: impl Read,
        name: &'static str,
        limit: usize,
    ) -> Result<Vec<u8>, RequestError> {
        let mut out = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        reader
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|e| RequestError::Decompress {
                encoding: name,
                reason: e.to_string(),
            })?;
        if out.len() > limit {
            return Err(RequestError::TooLarge { limit });
        }
        Ok(out)
    }
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => capped(MultiGzDecoder::new(&raw[..]), "gzip", limit),
        Encoding::Deflate => capped(ZlibDecoder::new(&raw[..]), "deflate (zlib)", limit),
    }
}

/// Protobuf is validated and kept encoded (see `Batch::from_encoded`); JSON
/// is decoded.
fn decode(signal: Signal, format: Format, bytes: Vec<u8>) -> Result<Batch, RequestError> {
    match format {
        Format::Protobuf => {
            Batch::from_encoded(signal, Bytes::from(bytes)).map_err(|e| RequestError::DecodeProto {
                signal,
                reason: e.reason,
            })
        }
        Format::Json => sluice_pdata::from_json(signal, &bytes)
            .map(Batch::new)
            .map_err(|e| RequestError::DecodeJson(e.to_string())),
    }
}

async fn handle(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    match route(&state, req).await {
        Ok(response) => response,
        Err((e, format)) => {
            state.count_rejected(&e);
            e.into_response(format)
        }
    }
}

/// Answers a request, or returns the error to answer with and the format
/// to write it in.
async fn route(
    state: &HttpState,
    req: Request,
) -> Result<Response, (RequestError, Option<Format>)> {
    let path = req.uri().path();
    let Some(handler) = state
        .routes
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, h)| h.clone())
    else {
        return Err((RequestError::NotFound(path.to_string()), None));
    };
    if !handler.is_served() {
        return Err((RequestError::SignalNotServed(handler.signal()), None));
    }
    if req.method() != Method::POST {
        return Err((RequestError::MethodNotAllowed(req.method().clone()), None));
    }
    let format = Format::from_headers(req.headers()).map_err(|e| (e, None))?;
    match export(state, &handler, format, req).await {
        Ok(()) => Ok(success_response(format)),
        Err(Answer::Request(e)) => Err((e, Some(format))),
        Err(Answer::Refused(e)) => Ok(refusal_response(&e, format)),
    }
}

enum Answer {
    Request(RequestError),
    Refused(ConsumeError),
}

impl From<RequestError> for Answer {
    fn from(e: RequestError) -> Self {
        Answer::Request(e)
    }
}

async fn export(
    state: &HttpState,
    handler: &SignalHandler,
    format: Format,
    req: Request,
) -> Result<(), Answer> {
    let encoding = Encoding::from_headers(req.headers())?;
    let limit = state.max_body;
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(RequestError::TooLarge { limit }.into());
    }
    let hint = announced.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let raw = read_body(req.into_body(), limit, hint).await?;
    let bytes = decompress(raw, encoding, limit)?;
    let batch = decode(handler.signal(), format, bytes)?;
    handler.deliver(batch).await.map_err(Answer::Refused)
}

/// What the HTTP server needs, fixed at build time.
pub(crate) struct HttpServer {
    state: Arc<HttpState>,
}

impl HttpServer {
    /// `routes` pairs each configured path with its signal's handler.
    pub(crate) fn new(
        ctx: &BuildContext,
        routes: Vec<(String, Arc<SignalHandler>)>,
        max_body: usize,
    ) -> HttpServer {
        HttpServer {
            state: Arc::new(HttpState {
                routes,
                max_body,
                id: ctx.id.clone(),
                telemetry: ctx.telemetry.clone(),
            }),
        }
    }

    /// Serves on `listener` until `stop` fires, then stops accepting and
    /// returns once every open connection has answered its requests.
    pub(crate) async fn serve(
        &self,
        id: ComponentId,
        listener: TcpListener,
        stop: CancellationToken,
    ) {
        let local: Option<SocketAddr> = listener.local_addr().ok();
        let log_id = id.clone();
        let listener = listener.tap_io(move |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(receiver = %log_id, error = %e, "cannot set TCP_NODELAY");
            }
        });
        // One handler for every path: the configured paths are matched
        // literally, so no path can be misread as a route pattern.
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(self.state.clone());
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(receiver = %id, address = ?local, error = %e, "OTLP/HTTP server failed");
        }
    }
}
