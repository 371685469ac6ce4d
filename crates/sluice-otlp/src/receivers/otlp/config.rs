//! Configuration of the `otlp` receiver, with the OpenTelemetry Collector's
//! keys. See `docs/components/receiver-otlp.md` for the reference.

use serde::{Deserialize, Deserializer};
use sluice_core::config::check_endpoint;
use sluice_core::{ComponentConfig, FieldError, Listen};

/// Default gRPC endpoint (OTLP/gRPC port, loopback only).
pub const DEFAULT_GRPC_ENDPOINT: &str = "127.0.0.1:4317";
/// Default HTTP endpoint (OTLP/HTTP port, loopback only).
pub const DEFAULT_HTTP_ENDPOINT: &str = "127.0.0.1:4318";
/// Default largest gRPC message, in MiB.
pub const DEFAULT_MAX_RECV_MSG_SIZE_MIB: u64 = 4;
/// Largest accepted `max_recv_msg_size_mib`: a gRPC message length is a
/// 32-bit number, so anything above 4 GiB - 1 MiB could never arrive.
pub const MAX_RECV_MSG_SIZE_MIB_LIMIT: u64 = 4095;
/// Default largest HTTP request body after decompression: 20 MiB.
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: u64 = 20 * 1024 * 1024;

const MIB: u64 = 1024 * 1024;

/// `receivers: otlp:`.
///
/// ```yaml
/// otlp:
///   protocols:
///     grpc:            # present (even empty) = enabled
///     http:
///       endpoint: 0.0.0.0:4318
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The transports to serve. At least one is required.
    #[serde(default, deserialize_with = "null_as_default")]
    pub protocols: Protocols,
}

/// `protocols:`. A key present with an empty body (`grpc:`) enables the
/// protocol with its defaults; an absent key leaves it disabled.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    /// OTLP/gRPC. Disabled when absent.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP. Disabled when absent.
    #[serde(default, deserialize_with = "present_means_enabled")]
    pub http: Option<HttpConfig>,
}

/// `protocols: grpc:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// `host:port` to listen on. Default `127.0.0.1:4317`.
    pub endpoint: String,
    /// Largest request message accepted, in MiB, after decompression.
    /// Default 4. Larger messages are answered `RESOURCE_EXHAUSTED`.
    pub max_recv_msg_size_mib: u64,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: DEFAULT_GRPC_ENDPOINT.to_string(),
            max_recv_msg_size_mib: DEFAULT_MAX_RECV_MSG_SIZE_MIB,
        }
    }
}

impl GrpcConfig {
    /// The message size limit in bytes.
    pub fn max_recv_msg_size_bytes(&self) -> usize {
        usize::try_from(self.max_recv_msg_size_mib.saturating_mul(MIB)).unwrap_or(usize::MAX)
    }
}

/// `protocols: http:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on. Default `127.0.0.1:4318`.
    pub endpoint: String,
    /// Path for trace exports. Default `/v1/traces`.
    pub traces_url_path: String,
    /// Path for metric exports. Default `/v1/metrics`.
    pub metrics_url_path: String,
    /// Path for log exports. Default `/v1/logs`.
    pub logs_url_path: String,
    /// Largest request body in bytes, checked both on the body as sent and
    /// after decompression. Default 20 MiB (20971520). Larger bodies are
    /// answered 413.
    pub max_request_body_size: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: DEFAULT_HTTP_ENDPOINT.to_string(),
            traces_url_path: "/v1/traces".to_string(),
            metrics_url_path: "/v1/metrics".to_string(),
            logs_url_path: "/v1/logs".to_string(),
            max_request_body_size: DEFAULT_MAX_REQUEST_BODY_SIZE,
        }
    }
}

impl HttpConfig {
    /// The body size limit in bytes, as a `usize`.
    pub fn max_body_bytes(&self) -> usize {
        usize::try_from(self.max_request_body_size).unwrap_or(usize::MAX)
    }
}

/// `null` (an empty YAML body) reads as the type's default.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A present key enables the protocol, even with an empty (`null`) body.
/// Absent keys never reach this function: `#[serde(default)]` gives `None`.
fn present_means_enabled<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

fn check_url_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| matches!(c, '?' | '#') || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{path:?} must not contain {c:?}"));
    }
    Ok(())
}

impl ComponentConfig for Config {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let p = &self.protocols;
        if p.grpc.is_none() && p.http.is_none() {
            errors.push(FieldError::new(
                "protocols",
                "at least one protocol must be enabled: add `grpc:` and/or `http:`",
            ));
        }
        if let Some(g) = &p.grpc {
            if let Err(m) = check_endpoint(&g.endpoint) {
                errors.push(FieldError::new("protocols::grpc::endpoint", m));
            }
            if !(1..=MAX_RECV_MSG_SIZE_MIB_LIMIT).contains(&g.max_recv_msg_size_mib) {
                errors.push(FieldError::new(
                    "protocols::grpc::max_recv_msg_size_mib",
                    format!(
                        "must be from 1 to {MAX_RECV_MSG_SIZE_MIB_LIMIT}, got {}",
                        g.max_recv_msg_size_mib
                    ),
                ));
            }
        }
        if let Some(h) = &p.http {
            if let Err(m) = check_endpoint(&h.endpoint) {
                errors.push(FieldError::new("protocols::http::endpoint", m));
            }
            let paths = [
                ("traces_url_path", &h.traces_url_path),
                ("metrics_url_path", &h.metrics_url_path),
                ("logs_url_path", &h.logs_url_path),
            ];
            for (i, (key, path)) in paths.iter().enumerate() {
                if let Err(m) = check_url_path(path) {
                    errors.push(FieldError::new(format!("protocols::http::{key}"), m));
                } else if let Some((other, _)) = paths[..i].iter().find(|(_, p)| p == path) {
                    errors.push(FieldError::new(
                        format!("protocols::http::{key}"),
                        format!("{path:?} is already used by {other}"),
                    ));
                }
            }
            if h.max_request_body_size == 0 {
                errors.push(FieldError::new(
                    "protocols::http::max_request_body_size",
                    "must be at least 1 byte",
                ));
            }
        }
        errors
    }

    fn listen_addresses(&self) -> Vec<Listen> {
        let mut out = Vec::new();
        if let Some(g) = &self.protocols.grpc {
            out.push(Listen {
                path: "protocols::grpc::endpoint".to_string(),
                address: g.endpoint.clone(),
            });
        }
        if let Some(h) = &self.protocols.http {
            out.push(Listen {
                path: "protocols::http::endpoint".to_string(),
                address: h.endpoint.clone(),
            });
        }
        out
    }
}
