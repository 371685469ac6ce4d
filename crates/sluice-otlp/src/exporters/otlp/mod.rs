//! The `otlp` exporter: sends batches to an OTLP/gRPC backend (another
//! collector, or any server implementing the OTLP `TraceService`,
//! `MetricsService` and `LogsService`).
//!
//! # Guarantees
//!
//! - A batch is sent as one `Export` call, unchanged, for its signal.
//! - The connection is opened lazily: a backend that is down does not stop
//!   the exporter from starting; sends fail with a retryable error until it is
//!   reachable, and the channel reconnects by itself.
//! - Every failure is classified as the OpenTelemetry Collector does:
//!   `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`,
//!   `UNAVAILABLE` and `DATA_LOSS` are retryable, `RESOURCE_EXHAUSTED` is
//!   retryable only when the server attached a `google.rpc.RetryInfo` (whose
//!   delay becomes `retry_after`), everything else is permanent. A backend
//!   that cannot be reached is `UNAVAILABLE`.
//! - Configured `headers` are sent as gRPC metadata on every call, and the
//!   call carries a `grpc-timeout` equal to `timeout`.
//!
//! # Limits
//!
//! - No TLS yet: `https://` endpoints, and `host:port` endpoints without
//!   `tls.insecure: true`, are configuration errors.
//! - Only gzip compression (or none).
//! - A `partial_success` answer with rejected items is logged as a warning;
//!   the rejected items are not counted as failed yet.
//! - Retries with back-off are not done here: a failed batch is reported to
//!   the exporter helper, which drops it (queued) or hands the error back to
//!   the pipeline (queue disabled).

mod client;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sluice_core::exporter_helper::{self, QueueSettings, RetrySettings, DEFAULT_TIMEOUT};
use sluice_core::ExtensionRef;
use sluice_core::{
    BuildContext, BuildError, ComponentConfig, Exporter, ExporterFactory, FieldError, Registry,
    Signal, Stability,
};
use tonic::codegen::http::uri::Authority;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

#[cfg(test)]
pub(crate) use client::classify_status;
pub(crate) use client::{partial_success, truncate, GrpcSender};

/// The component type name in configuration.
pub const TYPE_NAME: &str = "otlp";

/// Registers the `otlp` exporter.
pub fn register(r: &mut Registry) {
    r.exporter(OtlpExporterFactory);
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// `tls`: only `insecure` is understood until TLS is implemented.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Send in plaintext (default false). With TLS not implemented yet, a
    /// `host:port` gRPC endpoint needs `insecure: true`.
    #[serde(default)]
    pub insecure: bool,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Compression {
    /// gzip (the default).
    #[default]
    #[serde(rename = "gzip")]
    Gzip,
    /// No compression; also spelled as the empty string.
    #[serde(rename = "none", alias = "")]
    None,
}

/// gzip level when none is configured: the fastest. On OTLP data level 1
/// costs about a quarter of the CPU of level 6 for bodies about a fifth
/// larger (`cargo bench -p sluice-bench --bench hot_path`, BENCHMARKS.md);
/// an agent's CPU is usually scarcer than its bandwidth. Set
/// `compression_params.level` for smaller bodies.
pub const DEFAULT_GZIP_LEVEL: u32 = 1;

/// `compression_params`, as in the OpenTelemetry Collector.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// gzip level, 1 (fastest) to 9 (smallest); default 1.
    #[serde(default)]
    pub level: Option<i64>,
}

impl CompressionParams {
    /// The gzip level to use (validated to 1..=9 before use).
    pub fn gzip_level(&self) -> u32 {
        self.level
            .and_then(|l| u32::try_from(l.clamp(1, 9)).ok())
            .unwrap_or(DEFAULT_GZIP_LEVEL)
    }

    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        if let Some(level) = self.level {
            if !(1..=9).contains(&level) {
                errors.push(FieldError::new(
                    "compression_params::level",
                    format!("{level} is not a gzip level: use 1 (fastest) to 9 (smallest)"),
                ));
            }
        }
    }
}

/// Configuration of the `otlp` exporter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// The backend: `host:port` (with `tls.insecure: true`) or
    /// `http://host:port`. Required.
    #[serde(default)]
    pub endpoint: String,
    /// Transport security (default: TLS, which is not supported yet).
    #[serde(default)]
    pub tls: TlsSettings,
    /// Extra gRPC metadata sent with every call (default none).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `gzip` (default), `none` or `""`.
    #[serde(default)]
    pub compression: Compression,
    /// `level`: gzip level 1-9 (default 1, the fastest).
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// Deadline of one export call (default 5s).
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

/// The message for configurations that would need TLS.
pub(crate) const TLS_UNSUPPORTED: &str = "TLS is not supported yet";

/// How the configured endpoint names its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `host:port`: TLS unless `tls.insecure`.
    Bare,
    Http,
    Https,
}

/// Splits a gRPC endpoint into its scheme and `host:port`.
pub(crate) fn parse_grpc_endpoint(endpoint: &str) -> Result<(Scheme, Authority), String> {
    let (scheme, rest) = match endpoint.split_once("://") {
        None => (Scheme::Bare, endpoint),
        Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
            "http" => (Scheme::Http, rest),
            "https" => (Scheme::Https, rest),
            other => {
                return Err(format!(
                    "unsupported scheme {other:?}: use `host:port` or `http://host:port`"
                ))
            }
        },
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err(format!(
            "{endpoint:?}: a gRPC endpoint is `host:port` and takes no path"
        ));
    }
    if rest.contains('@') {
        return Err(format!(
            "{endpoint:?}: credentials in the endpoint are not supported; use `headers`"
        ));
    }
    let authority: Authority = rest
        .parse()
        .map_err(|_| format!("{endpoint:?} is not a valid `host:port`"))?;
    if authority.host().is_empty() {
        return Err(format!("{endpoint:?} has no host"));
    }
    if authority.port_u16().is_none() {
        return Err(format!(
            "{endpoint:?} has no port: write `host:port`, e.g. `collector:4317`"
        ));
    }
    Ok((scheme, authority))
}

/// gRPC metadata the transport sets itself; configuring them is an error.
fn reserved_metadata(name: &str) -> bool {
    matches!(name, "te" | "content-type" | "content-length") || name.starts_with("grpc-")
}

/// Checks one configured header for use as gRPC metadata.
pub(crate) fn check_metadata(name: &str, value: &str) -> Result<(), String> {
    let key = AsciiMetadataKey::from_bytes(name.as_bytes()).map_err(|_| {
        if name.to_ascii_lowercase().ends_with("-bin") {
            format!("{name:?}: binary (`-bin`) metadata is not supported")
        } else {
            format!("{name:?} is not a valid gRPC metadata name")
        }
    })?;
    if reserved_metadata(key.as_str()) {
        return Err(format!(
            "{name:?} is set by the gRPC transport and cannot be configured"
        ));
    }
    AsciiMetadataValue::try_from(value).map_err(|_| {
        format!("the value of {name:?} must be printable ASCII without line breaks")
    })?;
    Ok(())
}

/// Checks `headers`; shared by both OTLP exporters for duplicate detection.
pub(crate) fn check_duplicate_headers<'a>(
    names: impl Iterator<Item = &'a String>,
    errors: &mut Vec<FieldError>,
) {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name.to_ascii_lowercase()) {
            errors.push(FieldError::new(
                format!("headers::{name}"),
                "given twice (header names are case-insensitive)",
            ));
        }
    }
}

impl ComponentConfig for OtlpExporterConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.endpoint.is_empty() {
            errors.push(FieldError::new(
                "endpoint",
                "required: the backend's address, `host:port` or `http://host:port`",
            ));
        } else {
            match parse_grpc_endpoint(&self.endpoint) {
                Err(m) => errors.push(FieldError::new("endpoint", m)),
                Ok((Scheme::Https, _)) => errors.push(FieldError::new(
                    "endpoint",
                    format!(
                        "{TLS_UNSUPPORTED}: for plaintext use `http://host:port`, \
                         or `host:port` with `tls.insecure: true`"
                    ),
                )),
                Ok((Scheme::Bare, _)) if !self.tls.insecure => errors.push(FieldError::new(
                    "tls::insecure",
                    format!(
                        "{TLS_UNSUPPORTED}: set `tls.insecure: true` to send in plaintext \
                         (or write the endpoint as `http://host:port`)"
                    ),
                )),
                Ok(_) => {}
            }
        }
        self.compression_params.validate(&mut errors);
        for (name, value) in &self.headers {
            if let Err(m) = check_metadata(name, value) {
                errors.push(FieldError::new(format!("headers::{name}"), m));
            }
        }
        check_duplicate_headers(self.headers.keys(), &mut errors);
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

/// Factory of the `otlp` exporter.
pub struct OtlpExporterFactory;

impl ExporterFactory for OtlpExporterFactory {
    type Config = OtlpExporterConfig;

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
        config: &OtlpExporterConfig,
    ) -> Result<Arc<dyn Exporter>, BuildError> {
        let sender = GrpcSender::new(&ctx.id.to_string(), config)
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
