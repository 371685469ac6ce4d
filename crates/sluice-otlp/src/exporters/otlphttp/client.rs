//! The HTTP sender behind the `otlphttp` exporter and the mapping of HTTP
//! answers to retryable / permanent failures.

use std::error::Error as _;
use std::io::{Read, Write};
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use sluice_core::exporter_helper::{SendError, Sender};
use sluice_pdata::{Batch, Bytes, Signal};

use super::{check_header, Compression, Encoding, OtlpHttpExporterConfig};
use crate::exporters::otlp::truncate;
use sluice_shared::status::RpcStatus;

/// The `User-Agent` sent unless `headers` sets one.
const USER_AGENT: &str = concat!("sluice/", env!("CARGO_PKG_VERSION"));

/// Most bytes read from a successful answer (for `partial_success`).
const MAX_SUCCESS_BODY: usize = 4 << 20;
/// Most bytes read from an error answer (for its message).
const MAX_ERROR_BODY: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("{key}: {message}")]
    Url { key: String, message: String },
    #[error("header {0}")]
    Header(String),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Sends each batch as one `POST` to its signal's URL.
pub(crate) struct HttpSender {
    id: String,
    client: reqwest::Client,
    /// Indexed by `Signal as usize`.
    urls: [Option<Url>; 3],
    compression: Compression,
    /// gzip level (1-9).
    level: u32,
    encoding: Encoding,
}

impl HttpSender {
    pub(crate) fn new(id: &str, config: &OtlpHttpExporterConfig) -> Result<HttpSender, SetupError> {
        let mut urls = [None, None, None];
        for signal in Signal::ALL {
            urls[signal as usize] = config
                .signal_url(signal)
                .map_err(|(key, message)| SetupError::Url { key, message })?;
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        for (name, value) in &config.headers {
            let (n, v) = check_header(name, value).map_err(SetupError::Header)?;
            headers.insert(n, v);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .build()?;
        Ok(HttpSender {
            id: id.to_string(),
            client,
            urls,
            compression: config.compression,
            level: config.compression_params.gzip_level(),
            encoding: config.encoding,
        })
    }

    /// The request body. A batch that holds its protobuf encoding is sent
    /// as it is (no copy without compression).
    fn body(&self, batch: &Batch) -> Result<Bytes, SendError> {
        let raw = match self.encoding {
            Encoding::Proto => batch.to_bytes(),
            Encoding::Json => Bytes::from(sluice_pdata::to_json(batch.payload())),
        };
        match self.compression {
            Compression::None => Ok(raw),
            Compression::Gzip => gzip(&raw, self.level)
                .map(Bytes::from)
                .map_err(|e| SendError::Permanent(format!("gzip compression failed: {e}"))),
        }
    }
}

#[async_trait]
impl Sender for HttpSender {
    async fn send(&self, batch: &Batch) -> Result<(), SendError> {
        let signal = batch.signal();
        let Some(url) = &self.urls[signal as usize] else {
            return Err(SendError::Permanent(format!(
                "no URL for {signal}: set `endpoint` or `{signal}_endpoint`"
            )));
        };
        let mut request = self
            .client
            .post(url.clone())
            .header(header::CONTENT_TYPE, self.encoding.content_type())
            .body(self.body(batch)?);
        if self.compression == Compression::Gzip {
            request = request.header(header::CONTENT_ENCODING, "gzip");
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        if status.is_success() {
            let body = read_body(response, &headers, MAX_SUCCESS_BODY).await;
            if let Some((rejected, message)) =
                parse_partial_success(signal, &headers, self.encoding, &body)
            {
                return crate::exporters::otlp::partial_success(
                    &self.id, signal, rejected, &message,
                );
            }
            return Ok(());
        }
        let retry_after = parse_retry_after(&headers);
        let body = read_body(response, &headers, MAX_ERROR_BODY).await;
        Err(classify_http(
            status,
            retry_after,
            error_detail(&headers, &body).as_deref(),
        ))
    }
}

/// Maps a non-2xx answer to a send error.
pub(crate) fn classify_http(
    status: StatusCode,
    retry_after: Option<Duration>,
    detail: Option<&str>,
) -> SendError {
    let mut message = format!("backend answered HTTP {status}");
    if let Some(d) = detail.filter(|d| !d.is_empty()) {
        message.push_str(": ");
        message.push_str(truncate(d));
    }
    match status.as_u16() {
        429 | 502 | 503 | 504 => SendError::Retryable {
            message,
            retry_after,
        },
        _ => SendError::Permanent(message),
    }
}

/// A request that got no answer: retryable unless it could not even be
/// built.
fn transport_error(e: reqwest::Error) -> SendError {
    let mut message = format!("request failed: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_builder() {
        SendError::Permanent(message)
    } else {
        SendError::retryable(message)
    }
}

/// `Retry-After` as a number of seconds; an HTTP date is ignored.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn gzip(data: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::new(level),
    );
    enc.write_all(data)?;
    enc.finish()
}

/// Reads at most `limit` bytes of the answer, decoding gzip; a broken body
/// yields what was read.
async fn read_body(mut response: reqwest::Response, headers: &HeaderMap, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - out.len();
                out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if gzipped && !out.is_empty() {
        let mut decoded = Vec::new();
        let reader = flate2::read::GzDecoder::new(out.as_slice());
        if reader.take(limit as u64).read_to_end(&mut decoded).is_err() {
            return Vec::new();
        }
        return decoded;
    }
    out
}

/// The media type of the answer (lower case, no parameters).
fn content_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = v.split(';').next().unwrap_or("").trim();
    Some(media.to_ascii_lowercase())
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

fn is_proto(media: &str) -> bool {
    matches!(
        media,
        "application/x-protobuf" | "application/protobuf" | "application/vnd.google.protobuf"
    )
}

/// A JSON integer that OTLP/JSON may also write as a string.
fn json_i64(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `(rejected, error_message)` of a success answer's `partial_success`,
/// decoded by the answer's content type (the request's encoding when it has
/// none). An empty or undecodable body has none.
pub(crate) fn parse_partial_success(
    signal: Signal,
    headers: &HeaderMap,
    request_encoding: Encoding,
    body: &[u8],
) -> Option<(i64, String)> {
    if body.is_empty() {
        return None;
    }
    let media = content_type(headers);
    let json = match media.as_deref() {
        Some(m) if is_json(m) => true,
        Some(m) if is_proto(m) => false,
        Some(_) => return None,
        None => request_encoding == Encoding::Json,
    };
    if json {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let p = v
            .get("partialSuccess")
            .or_else(|| v.get("partial_success"))?;
        let key = match signal {
            Signal::Traces => ["rejectedSpans", "rejected_spans"],
            Signal::Metrics => ["rejectedDataPoints", "rejected_data_points"],
            Signal::Logs => ["rejectedLogRecords", "rejected_log_records"],
        };
        let rejected = key
            .iter()
            .find_map(|k| p.get(*k).and_then(json_i64))
            .unwrap_or(0);
        let message = ["errorMessage", "error_message"]
            .iter()
            .find_map(|k| p.get(*k).and_then(|m| m.as_str()))
            .unwrap_or("")
            .to_string();
        return Some((rejected, message));
    }
    match signal {
        Signal::Traces => ExportTraceServiceResponse::decode(body)
            .ok()?
            .partial_success
            .map(|p| (p.rejected_spans, p.error_message)),
        Signal::Metrics => ExportMetricsServiceResponse::decode(body)
            .ok()?
            .partial_success
            .map(|p| (p.rejected_data_points, p.error_message)),
        Signal::Logs => ExportLogsServiceResponse::decode(body)
            .ok()?
            .partial_success
            .map(|p| (p.rejected_log_records, p.error_message)),
    }
}

/// The message of an error answer: a `google.rpc.Status` (protobuf or
/// JSON) when the body is one, else the body as text.
pub(crate) fn error_detail(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let media = content_type(headers).unwrap_or_default();
    if is_proto(&media) {
        return RpcStatus::decode(body).ok().map(|s| s.message);
    }
    if is_json(&media) {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
            if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
                return Some(m.to_string());
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text.trim().replace(['\r', '\n'], " ");
    Some(truncate(&line).to_string())
}
