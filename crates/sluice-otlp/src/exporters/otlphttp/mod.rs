//! The `otlphttp` exporter: sends batches to an OTLP/HTTP backend as
//! `POST`s of binary protobuf (default) or OTLP/JSON.
//!
//! # Guarantees
//!
//! - A batch is sent as one request to the URL of its signal: the
//!   per-signal override (`traces_endpoint`, ...) when set, otherwise
//!   `endpoint` + `/v1/traces`, `/v1/metrics` or `/v1/logs`.
//! - Answers are classified as the OpenTelemetry Collector does: 2xx is
//!   success; 429, 502, 503 and 504 are retryable, with a `Retry-After` of
//!   whole seconds passed on as `retry_after`; every other status is
//!   permanent; a failure to connect or to complete the exchange is
//!   retryable. The backend's `google.rpc.Status` message (protobuf or JSON)
//!   is quoted in the error.
//! - A 2xx answer whose body carries a `partial_success` with rejected items
//!   is logged as a warning.
//! - Configured `headers` are sent on every request.
//!
//! # Limits
//!
//! - No TLS yet: `https://` URLs are configuration errors.
//! - Only gzip compression (or none); responses are read up to 4 MiB
//!   (success) or 64 KiB (errors), the rest is ignored.
//! - Redirects are not followed (a 3xx is a permanent error), so that a
//!   redirect can never turn the `POST` into a body-less `GET`.
//! - `Retry-After` as an HTTP date is ignored (no `retry_after`).
//! - Rejected items of a partial success are not counted as failed yet, and
//!   retries with back-off are not done here (see the exporter helper).

mod client;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;
use serde::Deserialize;
use sluice_core::exporter_helper::{self, QueueSettings, RetrySettings, DEFAULT_TIMEOUT};
use sluice_core::ExtensionRef;
use sluice_core::{
    BuildContext, BuildError, ComponentConfig, Exporter, ExporterFactory, FieldError, Registry,
    Signal, Stability,
};

pub use super::otlp::{Compression, CompressionParams, TlsSettings};
pub(crate) use client::HttpSender;

/// The component type name in configuration.
pub const TYPE_NAME: &str = "otlphttp";

/// Registers the `otlphttp` exporter.
pub fn register(r: &mut Registry) {
    r.exporter(OtlpHttpExporterFactory);
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// Body encoding of the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Binary protobuf, `application/x-protobuf` (the default).
    #[default]
    Proto,
    /// OTLP/JSON, `application/json`.
    Json,
}

impl Encoding {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Configuration of the `otlphttp` exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpExporterConfig {
    /// Base URL, e.g. `http://collector:4318`; the signal paths `/v1/traces`,
    /// `/v1/metrics`, `/v1/logs` are appended. Required unless every signal
    /// in use has its own URL below.
    #[serde(default)]
    pub endpoint: String,
    /// Full URL for traces, used as is (default: from `endpoint`).
    #[serde(default)]
    pub traces_endpoint: String,
    /// Full URL for metrics, used as is (default: from `endpoint`).
    #[serde(default)]
    pub metrics_endpoint: String,
    /// Full URL for logs, used as is (default: from `endpoint`).
    #[serde(default)]
    pub logs_endpoint: String,
    /// Transport security. TLS is not supported yet; `insecure` is accepted
    /// and has no effect on `http://` URLs.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Extra HTTP headers sent with every request (default none).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `gzip` (default), `none` or `""`.
    #[serde(default)]
    pub compression: Compression,
    /// `level`: gzip level 1-9 (default 1, the fastest).
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// `proto` (default) or `json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// Deadline of one request, answer included (default 5s).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The exporter helper's queue (defaults: enabled, 10 consumers, 1000
    /// batches, refuse when full).
    #[serde(default)]
    pub sending_queue: QueueSettings,
    /// Retries of failed sends (defaults: on, 5s first wait growing 1.5x to
    /// 30s, jitter 0.5, give up after 300s).
    #[serde(default)]
    pub retry_on_failure: RetrySettings,
}

impl OtlpHttpExporterConfig {
    /// The configured override for `signal` and its config key.
    fn signal_override(&self, signal: Signal) -> (&'static str, &str) {
        match signal {
            Signal::Traces => ("traces_endpoint", &self.traces_endpoint),
            Signal::Metrics => ("metrics_endpoint", &self.metrics_endpoint),
            Signal::Logs => ("logs_endpoint", &self.logs_endpoint),
        }
    }

    /// The URL `signal` is sent to, `None` when neither `endpoint` nor the
    /// signal's override is set. `Err` holds the config key and the problem.
    pub(crate) fn signal_url(&self, signal: Signal) -> Result<Option<Url>, (String, String)> {
        let (key, url) = self.signal_override(signal);
        if !url.is_empty() {
            return check_url(url).map(Some).map_err(|m| (key.to_string(), m));
        }
        if self.endpoint.is_empty() {
            return Ok(None);
        }
        // The base must be valid on its own; its errors belong to `endpoint`.
        check_base_url(&self.endpoint).map_err(|m| ("endpoint".to_string(), m))?;
        let path = format!("v1/{}", signal.as_str());
        let joined = if self.endpoint.ends_with('/') {
            format!("{}{path}", self.endpoint)
        } else {
            format!("{}/{path}", self.endpoint)
        };
        check_url(&joined)
            .map(Some)
            .map_err(|m| ("endpoint".to_string(), m))
    }
}

/// Parses a configured URL; only `http://` with a host is accepted.
pub(crate) fn check_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| {
        format!("{s:?} is not a valid URL ({e}); write it as `http://host:port[/path]`")
    })?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(format!(
                "{}: use an `http://` URL to send in plaintext \
                 (`tls.insecure: true` does not turn `https://` into plaintext)",
                super::otlp::TLS_UNSUPPORTED
            ))
        }
        _ => {
            return Err(format!(
                "{s:?}: the URL must start with `http://`, e.g. `http://collector:4318`"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{s:?}: credentials in the URL are not supported; use `headers`"
        ));
    }
    Ok(url)
}

/// Parses `endpoint`: a URL the signal paths can be appended to.
fn check_base_url(s: &str) -> Result<Url, String> {
    let url = check_url(s)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{s:?}: the base URL takes no query or fragment (`/v1/<signal>` is appended to it)"
        ));
    }
    Ok(url)
}

/// Headers the exporter sets itself; configuring them is an error.
fn reserved_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-type"
            | "content-encoding"
            | "content-length"
            | "transfer-encoding"
            | "host"
            | "connection"
    )
}

/// Checks one configured header.
pub(crate) fn check_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid HTTP header name"))?;
    if reserved_header(&n) {
        return Err(format!(
            "{name:?} is set by the exporter and cannot be configured"
        ));
    }
    let v = HeaderValue::from_str(value).map_err(|_| {
        format!("the value of {name:?} must be printable ASCII without line breaks")
    })?;
    Ok((n, v))
}

impl ComponentConfig for OtlpHttpExporterConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        self.compression_params.validate(&mut errors);
        let any_url = !self.endpoint.is_empty()
            || Signal::ALL
                .iter()
                .any(|s| !self.signal_override(*s).1.is_empty());
        if !any_url {
            errors.push(FieldError::new(
                "endpoint",
                "required: the backend's base URL, e.g. `http://collector:4318` \
                 (or `traces_endpoint`, `metrics_endpoint`, `logs_endpoint`)",
            ));
        }
        if !self.endpoint.is_empty() {
            if let Err(m) = check_base_url(&self.endpoint) {
                errors.push(FieldError::new("endpoint", m));
            }
        }
        for signal in Signal::ALL {
            let (key, url) = self.signal_override(signal);
            if !url.is_empty() {
                if let Err(m) = check_url(url) {
                    errors.push(FieldError::new(key, m));
                }
            }
        }
        for (name, value) in &self.headers {
            if let Err(m) = check_header(name, value) {
                errors.push(FieldError::new(format!("headers::{name}"), m));
            }
        }
        super::otlp::check_duplicate_headers(self.headers.keys(), &mut errors);
        errors.extend(exporter_helper::validate_settings(
            self.timeout,
            &self.sending_queue,
            &self.retry_on_failure,
        ));
        errors
    }

    fn extension_refs(&self) -> Vec<ExtensionRef> {
        self.sending_queue.extension_refs("sending_queue")
    }
}

/// Factory of the `otlphttp` exporter.
pub struct OtlpHttpExporterFactory;

impl ExporterFactory for OtlpHttpExporterFactory {
    type Config = OtlpHttpExporterConfig;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &OtlpHttpExporterConfig,
    ) -> Result<Arc<dyn Exporter>, BuildError> {
        let sender = HttpSender::new(&ctx.id.to_string(), config)
            .map_err(|e| BuildError::new(format!("exporter {}: {e}", ctx.id)))?;
        exporter_helper::build(
            &ctx,
            Arc::new(sender),
            &config.sending_queue,
            &config.retry_on_failure,
            config.timeout,
        )
    }
}
