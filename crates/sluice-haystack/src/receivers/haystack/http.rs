//! `haystack_http`: Haystack's HTTP span collector interface.
//!
//! * `POST /span`: one `Span`, protobuf or JSON.
//! * `POST /spans`: a `SpanBatch` (Haystack's `Batch`), protobuf, or JSON
//!   as `{"spans": [...]}` or a bare array of spans.
//! * `GET /isActive`: `200 ACTIVE`, for load balancer health checks.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    HeaderValue, ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use futures::StreamExt;
use prost::Message;
use sluice_core::{Batch, ComponentId, ConsumeError, Payload, Telemetry};
use sluice_pdata::haystack::{self, Span, SpanBatch};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::receiver::{Serve, ServeFuture};
use sluice_shared::receiver::SignalHandler;
use sluice_shared::status::retry_after_secs;

const OCTET_STREAM: &str = "application/octet-stream";
const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

pub(crate) const SPAN_PATH: &str = "/span";
pub(crate) const SPANS_PATH: &str = "/spans";
pub(crate) const IS_ACTIVE_PATH: &str = "/isActive";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    /// Reads `Content-Type`, ignoring parameters (`; charset=utf-8`) and case.
    fn from_headers(headers: &HeaderMap) -> Result<Format, RequestError> {
        let raw = headers
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let mime = raw.split(';').next().unwrap_or("").trim();
        if mime.eq_ignore_ascii_case(OCTET_STREAM) || mime.eq_ignore_ascii_case(PROTOBUF) {
            Ok(Format::Protobuf)
        } else if mime.eq_ignore_ascii_case(JSON) {
            Ok(Format::Json)
        } else {
            Err(RequestError::UnsupportedMediaType(raw))
        }
    }
}

/// What a path takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    /// One `Span` (`/span`).
    Span,
    /// A `SpanBatch` (`/spans`).
    Batch,
}

/// Why a request was answered with an error before reaching the pipeline.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("no Haystack endpoint at {0}; use POST /span, POST /spans or GET /isActive")]
    NotFound(String),
    #[error("this receiver takes no traces: no traces pipeline lists it")]
    NotServed,
    #[error("method {method} is not allowed on {path}; use {allow}")]
    MethodNotAllowed {
        method: Method,
        path: &'static str,
        allow: &'static str,
    },
    #[error("unsupported Content-Type {0:?}; use {OCTET_STREAM}, {PROTOBUF} or {JSON}")]
    UnsupportedMediaType(String),
    #[error("unsupported Content-Encoding {0:?}; send the body uncompressed")]
    UnsupportedEncoding(String),
    #[error("request body is larger than max_request_body_size ({limit} bytes)")]
    TooLarge { limit: usize },
    #[error("reading the request body failed: {0}")]
    BodyRead(String),
    #[error("empty request body: POST /span takes one Haystack span")]
    Empty,
    #[error("invalid Haystack {what} protobuf: {reason}")]
    DecodeProto { what: &'static str, reason: String },
    #[error("{0}")]
    DecodeJson(String),
}

impl RequestError {
    /// A short label for the rejected-requests counter.
    fn reason(&self) -> &'static str {
        match self {
            RequestError::NotFound(_) | RequestError::NotServed => "not_found",
            RequestError::MethodNotAllowed { .. } => "method_not_allowed",
            RequestError::UnsupportedMediaType(_) | RequestError::UnsupportedEncoding(_) => {
                "unsupported_media_type"
            }
            RequestError::TooLarge { .. } => "too_large",
            RequestError::BodyRead(_) => "body_read",
            RequestError::Empty => "empty",
            RequestError::DecodeProto { .. } | RequestError::DecodeJson(_) => "decode",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            RequestError::NotFound(_) | RequestError::NotServed => StatusCode::NOT_FOUND,
            RequestError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::UnsupportedMediaType(_) | RequestError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            RequestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BodyRead(_)
            | RequestError::Empty
            | RequestError::DecodeProto { .. }
            | RequestError::DecodeJson(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn into_response(self) -> Response {
        let mut resp = text(self.status(), self.to_string());
        if let RequestError::MethodNotAllowed { allow, .. } = self {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// The answer to spans the pipeline refused: 429 (overloaded) or 503 with
/// `Retry-After` when retrying may help, 400 when it cannot.
fn refusal_response(err: &ConsumeError) -> Response {
    match err {
        ConsumeError::Retryable {
            reason,
            retry_after,
            overloaded,
        } => {
            let status = if *overloaded {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut resp = text(status, format!("spans refused by the pipeline: {reason}"));
            resp.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(retry_after_secs(*retry_after)),
            );
            resp
        }
        ConsumeError::Permanent(reason) => text(
            StatusCode::BAD_REQUEST,
            format!("spans refused by the pipeline: {reason}"),
        ),
    }
}

/// Reads at most `limit` bytes of body.
async fn read_body(body: Body, limit: usize, size_hint: usize) -> Result<Vec<u8>, RequestError> {
    let mut stream = body.into_data_stream();
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

/// Decodes a body into Haystack spans.
fn decode(kind: BodyKind, format: Format, bytes: &[u8]) -> Result<Vec<Span>, RequestError> {
    match (kind, format) {
        (BodyKind::Span, _) if bytes.is_empty() => Err(RequestError::Empty),
        (BodyKind::Span, Format::Protobuf) => {
            Span::decode(bytes)
                .map(|s| vec![s])
                .map_err(|e| RequestError::DecodeProto {
                    what: "Span",
                    reason: e.to_string(),
                })
        }
        (BodyKind::Span, Format::Json) => haystack::from_json(bytes)
            .map(|s| vec![s])
            .map_err(|e| RequestError::DecodeJson(e.to_string())),
        (BodyKind::Batch, Format::Protobuf) => {
            SpanBatch::decode(bytes)
                .map(|b| b.spans)
                .map_err(|e| RequestError::DecodeProto {
                    what: "Batch",
                    reason: e.to_string(),
                })
        }
        (BodyKind::Batch, Format::Json) => batch_from_json(bytes),
    }
}

/// A JSON batch: `{"spans": [...]}` (the protobuf JSON mapping of `Batch`)
/// or a bare array of spans.
fn batch_from_json(bytes: &[u8]) -> Result<Vec<Span>, RequestError> {
    let bad = |m: String| RequestError::DecodeJson(format!("invalid Haystack batch JSON: {m}"));
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let (items, prefix) = match &value {
        serde_json::Value::Array(items) => (items.as_slice(), ""),
        serde_json::Value::Object(m) => match m.get("spans") {
            Some(serde_json::Value::Array(items)) => (items.as_slice(), "spans"),
            None | Some(serde_json::Value::Null) => (&[][..], "spans"),
            Some(_) => return Err(bad("at spans: expected an array of spans".to_string())),
        },
        _ => {
            return Err(bad(
                "expected an object {\"spans\": [...]} or an array of spans".to_string(),
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            // Each element goes through the one-span reader, which names
            // the field; this adds where in the batch it is.
            let raw = serde_json::to_vec(item).map_err(|e| bad(e.to_string()))?;
            haystack::from_json(&raw)
                .map_err(|e| RequestError::DecodeJson(format!("{prefix}[{i}]: {e}")))
        })
        .collect()
}

struct HttpState {
    handler: SignalHandler,
    max_body: usize,
    id: ComponentId,
    telemetry: Arc<Telemetry>,
}

impl HttpState {
    /// Counts a request refused before its spans reached the pipeline.
    fn count_rejected(&self, e: &RequestError) {
        sluice_shared::receiver::rejected_requests(&self.telemetry, &self.id, "http", e.reason())
            .inc();
    }
}

async fn handle(State(state): State<Arc<HttpState>>, req: Request) -> Response {
    match route(&state, req).await {
        Ok(response) => response,
        Err(e) => {
            state.count_rejected(&e);
            e.into_response()
        }
    }
}

async fn route(state: &HttpState, req: Request) -> Result<Response, RequestError> {
    let kind = match req.uri().path() {
        SPAN_PATH => BodyKind::Span,
        SPANS_PATH => BodyKind::Batch,
        IS_ACTIVE_PATH => {
            return if req.method() == Method::GET || req.method() == Method::HEAD {
                Ok(text(StatusCode::OK, "ACTIVE".to_string()))
            } else {
                Err(RequestError::MethodNotAllowed {
                    method: req.method().clone(),
                    path: IS_ACTIVE_PATH,
                    allow: "GET",
                })
            };
        }
        other => return Err(RequestError::NotFound(other.to_string())),
    };
    if req.method() != Method::POST {
        return Err(RequestError::MethodNotAllowed {
            method: req.method().clone(),
            path: if kind == BodyKind::Span {
                SPAN_PATH
            } else {
                SPANS_PATH
            },
            allow: "POST",
        });
    }
    if !state.handler.is_served() {
        return Err(RequestError::NotServed);
    }
    let format = Format::from_headers(req.headers())?;
    if let Some(v) = req.headers().get(CONTENT_ENCODING) {
        let raw = String::from_utf8_lossy(v.as_bytes());
        let token = raw.trim();
        if !(token.is_empty() || token.eq_ignore_ascii_case("identity")) {
            return Err(RequestError::UnsupportedEncoding(raw.into_owned()));
        }
    }
    let limit = state.max_body;
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(RequestError::TooLarge { limit });
    }
    let hint = announced.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let bytes = read_body(req.into_body(), limit, hint).await?;
    let spans = decode(kind, format, &bytes)?;
    let batch = Batch::new(Payload::Traces(haystack::otlp_from_owned_spans(spans)));
    Ok(match state.handler.deliver(batch).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => refusal_response(&e),
    })
}

/// What the HTTP server needs, fixed at build time.
pub(crate) struct HttpServer {
    state: Arc<HttpState>,
}

impl HttpServer {
    pub(crate) fn new(
        id: &ComponentId,
        telemetry: &Arc<Telemetry>,
        handler: SignalHandler,
        max_body: usize,
    ) -> HttpServer {
        HttpServer {
            state: Arc::new(HttpState {
                handler,
                max_body,
                id: id.clone(),
                telemetry: telemetry.clone(),
            }),
        }
    }
}

impl Serve for HttpServer {
    fn serve(
        &self,
        id: ComponentId,
        listener: TcpListener,
        stop: CancellationToken,
    ) -> ServeFuture {
        let state = self.state.clone();
        Box::pin(async move {
            let local: Option<SocketAddr> = listener.local_addr().ok();
            let log_id = id.clone();
            let listener = listener.tap_io(move |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(receiver = %log_id, error = %e, "cannot set TCP_NODELAY");
                }
            });
            let app = axum::Router::new().fallback(handle).with_state(state);
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(receiver = %id, address = ?local, error = %e, "Haystack/HTTP server failed");
            }
        })
    }
}
