//! Configuration of the `haystack_http` and `haystack_grpc` receivers. See
//! `docs/components/receiver-haystack_http.md` and
//! `docs/components/receiver-haystack_grpc.md` for the reference.

use serde::Deserialize;
use sluice_core::{ComponentConfig, FieldError, Listen};

use sluice_core::config::check_endpoint;

/// Default endpoint of `haystack_http`: the port of Haystack's HTTP span
/// collector, loopback only.
pub const DEFAULT_HTTP_ENDPOINT: &str = "127.0.0.1:8080";
/// Default endpoint of `haystack_grpc`: the port of the Haystack agent's
/// span listener, loopback only.
pub const DEFAULT_GRPC_ENDPOINT: &str = "127.0.0.1:35000";
/// Default largest HTTP request body: 4 MiB.
pub const DEFAULT_MAX_REQUEST_BODY_SIZE: u64 = 4 * MIB;
/// Default largest gRPC message, in MiB.
pub const DEFAULT_MAX_RECV_MSG_SIZE_MIB: u64 = 4;
/// Largest accepted `max_recv_msg_size_mib` (a gRPC length is 32 bits).
pub const MAX_RECV_MSG_SIZE_MIB_LIMIT: u64 = 4095;

const MIB: u64 = 1024 * 1024;

/// `receivers: haystack_http:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on. Default `127.0.0.1:8080`.
    pub endpoint: String,
    /// Largest request body in bytes. Default 4 MiB (4194304). Larger
    /// bodies are answered 413.
    pub max_request_body_size: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: DEFAULT_HTTP_ENDPOINT.to_string(),
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

impl ComponentConfig for HttpConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(m) = check_endpoint(&self.endpoint) {
            errors.push(FieldError::new("endpoint", m));
        }
        if self.max_request_body_size == 0 {
            errors.push(FieldError::new(
                "max_request_body_size",
                "must be at least 1 byte",
            ));
        }
        errors
    }

    fn listen_addresses(&self) -> Vec<Listen> {
        vec![Listen {
            path: "endpoint".to_string(),
            address: self.endpoint.clone(),
        }]
    }
}

/// `receivers: haystack_grpc:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// `host:port` to listen on. Default `127.0.0.1:35000`.
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

impl ComponentConfig for GrpcConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(m) = check_endpoint(&self.endpoint) {
            errors.push(FieldError::new("endpoint", m));
        }
        if !(1..=MAX_RECV_MSG_SIZE_MIB_LIMIT).contains(&self.max_recv_msg_size_mib) {
            errors.push(FieldError::new(
                "max_recv_msg_size_mib",
                format!(
                    "must be from 1 to {MAX_RECV_MSG_SIZE_MIB_LIMIT}, got {}",
                    self.max_recv_msg_size_mib
                ),
            ));
        }
        errors
    }

    fn listen_addresses(&self) -> Vec<Listen> {
        vec![Listen {
            path: "endpoint".to_string(),
            address: self.endpoint.clone(),
        }]
    }
}
