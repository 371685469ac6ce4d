//! The running receiver, shared by both transports: binds the endpoint on
//! `start`, serves until `shutdown`, then waits for in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sluice_core::{ComponentError, ComponentId, Lifecycle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A server future: serves `listener` until the token fires, then returns
/// once every open connection has answered its requests.
pub(crate) type ServeFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a transport provides: how to serve one bound listener.
pub(crate) trait Serve: Send + Sync + 'static {
    fn serve(&self, id: ComponentId, listener: TcpListener, stop: CancellationToken)
        -> ServeFuture;
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
    addr: Option<SocketAddr>,
}

/// A `haystack_http` or `haystack_grpc` receiver. Built by the factories;
/// usable directly when the bound address is needed (endpoint port 0).
pub struct HaystackReceiver {
    id: ComponentId,
    endpoint: String,
    /// For logs: `Haystack/HTTP` or `Haystack/gRPC`.
    label: &'static str,
    server: Arc<dyn Serve>,
    running: Mutex<Option<Running>>,
}

impl HaystackReceiver {
    pub(crate) fn new(
        id: ComponentId,
        endpoint: String,
        label: &'static str,
        server: Arc<dyn Serve>,
    ) -> HaystackReceiver {
        HaystackReceiver {
            id,
            endpoint,
            label,
            server,
            running: Mutex::new(None),
        }
    }

    fn with_running<T>(&self, f: impl FnOnce(&mut Option<Running>) -> T) -> T {
        let mut guard = self.running.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The address the listener is bound to, while running.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.with_running(|r| r.as_ref().and_then(|r| r.addr))
    }
}

#[async_trait]
impl Lifecycle for HaystackReceiver {
    async fn start(&self) -> Result<(), ComponentError> {
        if self.with_running(|r| r.is_some()) {
            return Err(ComponentError::new(format!(
                "receiver {} is already running",
                self.id
            )));
        }
        let listener = TcpListener::bind(&self.endpoint).await.map_err(|e| {
            ComponentError::new(format!(
                "receiver {}: cannot listen on {} (endpoint): {e}",
                self.id, self.endpoint
            ))
        })?;
        let addr = listener.local_addr().ok();
        let stop = CancellationToken::new();
        tracing::info!(receiver = %self.id, address = ?addr, "{} listening", self.label);
        let task = tokio::spawn(self.server.serve(self.id.clone(), listener, stop.clone()));
        let lost_race = self.with_running(|r| {
            if r.is_some() {
                true
            } else {
                *r = Some(Running {
                    stop: stop.clone(),
                    task,
                    addr,
                });
                false
            }
        });
        if lost_race {
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
        running.stop.cancel();
        let result = running.task.await.map_err(|e| {
            ComponentError::new(format!("receiver {}: the server task failed: {e}", self.id))
        });
        tracing::info!(receiver = %self.id, "{} receiver stopped", self.label);
        result
    }
}
