//! The running receiver: binds the enabled transports on `start`, drains
//! them on `shutdown`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sluice_core::{BuildContext, ComponentError, ComponentId, Lifecycle, Signal, SignalConsumers};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::grpc::GrpcServer;
use super::http::HttpServer;
use sluice_shared::receiver::SignalHandler;

struct Running {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    grpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
}

/// The `otlp` receiver. Built by the factory; usable directly when the bound
/// addresses are needed (endpoints with port 0).
pub struct OtlpReceiver {
    id: ComponentId,
    grpc: Option<(String, Arc<GrpcServer>)>,
    http: Option<(String, Arc<HttpServer>)>,
    running: Mutex<Option<Running>>,
}

fn handlers(
    ctx: &BuildContext,
    transport: &'static str,
    consumers: &SignalConsumers,
) -> [Arc<SignalHandler>; 3] {
    Signal::ALL.map(|signal| {
        Arc::new(SignalHandler::new(
            &ctx.id,
            &ctx.telemetry,
            transport,
            signal,
            consumers.get(signal).cloned(),
        ))
    })
}

impl OtlpReceiver {
    /// Builds the receiver from a validated config. Nothing is bound until
    /// [`Lifecycle::start`].
    pub fn new(ctx: &BuildContext, config: &Config, consumers: &SignalConsumers) -> OtlpReceiver {
        let grpc = config.protocols.grpc.as_ref().map(|g| {
            let server = GrpcServer::new(
                &ctx.id,
                &ctx.telemetry,
                handlers(ctx, "grpc", consumers),
                g.max_recv_msg_size_bytes(),
            );
            (g.endpoint.clone(), Arc::new(server))
        });
        let http = config.protocols.http.as_ref().map(|h| {
            let [traces, metrics, logs] = handlers(ctx, "http", consumers);
            let routes = vec![
                (h.traces_url_path.clone(), traces),
                (h.metrics_url_path.clone(), metrics),
                (h.logs_url_path.clone(), logs),
            ];
            (
                h.endpoint.clone(),
                Arc::new(HttpServer::new(ctx, routes, h.max_body_bytes())),
            )
        });
        OtlpReceiver {
            id: ctx.id.clone(),
            grpc,
            http,
            running: Mutex::new(None),
        }
    }

    fn with_running<T>(&self, f: impl FnOnce(&mut Option<Running>) -> T) -> T {
        let mut guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The address the gRPC listener is bound to, while running.
    pub fn grpc_local_addr(&self) -> Option<SocketAddr> {
        self.with_running(|r| r.as_ref().and_then(|r| r.grpc_addr))
    }

    /// The address the HTTP listener is bound to, while running.
    pub fn http_local_addr(&self) -> Option<SocketAddr> {
        self.with_running(|r| r.as_ref().and_then(|r| r.http_addr))
    }

    async fn bind(&self, endpoint: &str, key: &str) -> Result<TcpListener, ComponentError> {
        TcpListener::bind(endpoint).await.map_err(|e| {
            ComponentError::new(format!(
                "receiver {}: cannot listen on {endpoint} (protocols::{key}::endpoint): {e}",
                self.id
            ))
        })
    }
}

#[async_trait]
impl Lifecycle for OtlpReceiver {
    async fn start(&self) -> Result<(), ComponentError> {
        if self.with_running(|r| r.is_some()) {
            return Err(ComponentError::new(format!(
                "receiver {} is already running",
                self.id
            )));
        }
        // Bind everything before serving anything, so a failed bind leaves
        // nothing behind (the listeners bound so far close when dropped).
        let grpc = match &self.grpc {
            Some((endpoint, server)) => {
                Some((self.bind(endpoint, "grpc").await?, Arc::clone(server)))
            }
            None => None,
        };
        let http = match &self.http {
            Some((endpoint, server)) => {
                Some((self.bind(endpoint, "http").await?, Arc::clone(server)))
            }
            None => None,
        };

        let stop = CancellationToken::new();
        let mut running = Running {
            stop: stop.clone(),
            tasks: Vec::new(),
            grpc_addr: None,
            http_addr: None,
        };
        if let Some((listener, server)) = grpc {
            running.grpc_addr = listener.local_addr().ok();
            tracing::info!(receiver = %self.id, address = ?running.grpc_addr, "OTLP/gRPC listening");
            let (id, stop) = (self.id.clone(), stop.clone());
            running.tasks.push(tokio::spawn(async move {
                server.serve(id, listener, stop).await
            }));
        }
        if let Some((listener, server)) = http {
            running.http_addr = listener.local_addr().ok();
            tracing::info!(receiver = %self.id, address = ?running.http_addr, "OTLP/HTTP listening");
            let (id, stop) = (self.id.clone(), stop.clone());
            running.tasks.push(tokio::spawn(async move {
                server.serve(id, listener, stop).await
            }));
        }

        let lost_race = self.with_running(|r| {
            if r.is_some() {
                true
            } else {
                *r = Some(running);
                false
            }
        });
        if lost_race {
            // A concurrent `start` won; our servers were never announced.
            stop.cancel();
            return Err(ComponentError::new(format!(
                "receiver {} is already running",
                self.id
            )));
        }
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let Some(running) = self.with_running(Option::take) else {
            return Ok(());
        };
        // Stops accepting at once; the servers return when every open
        // connection has answered its in-flight requests.
        running.stop.cancel();
        let mut failure = None;
        for task in running.tasks {
            if let Err(e) = task.await {
                failure = Some(ComponentError::new(format!(
                    "receiver {}: a server task failed: {e}",
                    self.id
                )));
            }
        }
        tracing::info!(receiver = %self.id, "OTLP receiver stopped");
        failure.map_or(Ok(()), Err)
    }
}
