//! The `health_check` extension: an HTTP endpoint that says whether the
//! service is running, for load balancers and orchestrators (Kubernetes
//! liveness/readiness probes).
//!
//! **What it does.** `GET <path>` (and `HEAD`) answers `200
//! {"status":"Server available"}` while the service state is `Running`, and
//! `503 {"status":"Server not available"}` while it is starting or stopping.
//! Other paths answer 404, other methods on the path 405.
//!
//! **Guarantees.** The listener is bound in `start`, so a port in use fails
//! the start with an error naming the endpoint. Accepted connections use
//! `TCP_NODELAY`. `shutdown` stops accepting and returns once the server has
//! stopped.
//!
//! **Limits.** Plain HTTP only (no TLS); the answer reflects the whole
//! service, not individual pipelines or exporters.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use axum::serve::ListenerExt;
use serde::Deserialize;
use sluice_core::config::check_endpoint;
use sluice_core::{
    BuildContext, BuildError, ComponentConfig, ComponentError, Extension, ExtensionFactory,
    FieldError, Health, Listen, Registry, ServiceState, Stability,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The configured type name.
pub const TYPE: &str = "health_check";

fn default_endpoint() -> String {
    "127.0.0.1:13133".to_string()
}

fn default_path() -> String {
    "/".to_string()
}

/// Configuration of the `health_check` extension.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `host:port` to listen on. Default `127.0.0.1:13133`.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// URL path that answers. Default `/`.
    #[serde(default = "default_path")]
    pub path: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            endpoint: default_endpoint(),
            path: default_path(),
        }
    }
}

impl ComponentConfig for HealthCheckConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Err(e) = check_endpoint(&self.endpoint) {
            errors.push(FieldError::new("endpoint", e));
        }
        if !self.path.starts_with('/') {
            errors.push(FieldError::new(
                "path",
                format!("must start with '/', got {:?}", self.path),
            ));
        } else if self.path.contains(['?', '#']) {
            errors.push(FieldError::new(
                "path",
                format!(
                    "must be a plain path without '?' or '#', got {:?}",
                    self.path
                ),
            ));
        }
        errors
    }

    fn listen_addresses(&self) -> Vec<Listen> {
        vec![Listen {
            path: "endpoint".into(),
            address: self.endpoint.clone(),
        }]
    }
}

/// Registers the `health_check` extension.
pub fn register(r: &mut Registry) {
    r.extension(HealthCheckFactory);
}

/// Factory of the `health_check` extension.
pub struct HealthCheckFactory;

impl ExtensionFactory for HealthCheckFactory {
    type Config = HealthCheckConfig;

    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn stability(&self) -> Stability {
        Stability::Beta
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &HealthCheckConfig,
    ) -> Result<Arc<dyn Extension>, BuildError> {
        Ok(Arc::new(HealthCheck::new(&ctx, config)))
    }
}

fn json(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Answers one request.
fn answer(health: &Health, path: &str, req: &Request<Body>) -> Response<Body> {
    if req.uri().path() != path {
        return json(StatusCode::NOT_FOUND, r#"{"status":"Not found"}"#);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"status":"Method not allowed"}"#,
        );
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match health.get() {
        ServiceState::Running => json(StatusCode::OK, r#"{"status":"Server available"}"#),
        ServiceState::Starting | ServiceState::Stopping => json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"Server not available"}"#,
        ),
    }
}

/// The running extension.
pub struct HealthCheck {
    id: String,
    config: HealthCheckConfig,
    health: Health,
    stop: CancellationToken,
    server: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    local_addr: std::sync::Mutex<Option<SocketAddr>>,
}

impl HealthCheck {
    pub(crate) fn new(ctx: &BuildContext, config: &HealthCheckConfig) -> HealthCheck {
        HealthCheck {
            id: ctx.id.to_string(),
            config: config.clone(),
            health: ctx.health.clone(),
            stop: CancellationToken::new(),
            server: tokio::sync::Mutex::new(None),
            local_addr: std::sync::Mutex::new(None),
        }
    }

    /// The bound address, once started (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.local_addr.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Extension for HealthCheck {}

#[async_trait]
impl sluice_core::Lifecycle for HealthCheck {
    async fn start(&self) -> Result<(), ComponentError> {
        let mut server = self.server.lock().await;
        if server.is_some() {
            return Err(ComponentError::new(format!(
                "extension {} started twice",
                self.id
            )));
        }
        let listener = tokio::net::TcpListener::bind(&self.config.endpoint)
            .await
            .map_err(|e| {
                ComponentError::new(format!(
                    "extension {}: cannot listen on {}: {e}",
                    self.id, self.config.endpoint
                ))
            })?;
        let local = listener.local_addr().ok();
        *self.local_addr.lock().unwrap_or_else(|p| p.into_inner()) = local;
        let listener = listener.tap_io(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });

        let health = self.health.clone();
        let path: Arc<str> = Arc::from(self.config.path.as_str());
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let health = health.clone();
            let path = path.clone();
            async move { answer(&health, &path, &req) }
        });
        let stop = self.stop.clone();
        let id = self.id.clone();
        tracing::info!(extension = %id, address = ?local, path = %self.config.path, "health check listening");
        *server = Some(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(extension = %id, error = %e, "health check server failed");
            }
        }));
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.stop.cancel();
        if let Some(handle) = self.server.lock().await.take() {
            handle.await.map_err(|e| {
                ComponentError::new(format!("extension {}: server task failed: {e}", self.id))
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
