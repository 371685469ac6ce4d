//! The exporter helper: every exporter implements only [`Sender`] ("send one
//! batch"); this module adds the bounded sending queue, the concurrent
//! senders, the per-request timeout and the standard exporter counters.
//!
//! Acceptance into the queue is what the pipeline waits for. A full queue
//! either refuses (retryable, counted as `enqueue_failed`) or, with
//! `block_on_overflow`, makes the pipeline wait: backpressure up to the
//! receiver's client. Retries and the persistent queue build on this module.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use sluice_pdata::{Batch, Signal};
use tokio::sync::{mpsc, Mutex, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, ComponentError, ComponentId, Exporter, Lifecycle};
use crate::consumer::{ConsumeError, Consumer};
use crate::factory::FieldError;
use crate::telemetry::ExporterMetrics;

/// Why one send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again (backend unavailable, throttled, timed out).
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The backend rejected the data for good (bad request, auth).
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// The one thing a concrete exporter implements.
#[async_trait]
pub trait Sender: Send + Sync + 'static {
    async fn start(&self) -> Result<(), ComponentError> {
        Ok(())
    }
    async fn send(&self, batch: &Batch) -> Result<(), SendError>;
    async fn shutdown(&self) -> Result<(), ComponentError> {
        Ok(())
    }
}

fn default_true() -> bool {
    true
}
fn default_num_consumers() -> usize {
    10
}
fn default_queue_size() -> usize {
    1000
}

/// `sending_queue`, with the OpenTelemetry Collector's keys and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Queue batches and send them from background workers (default true).
    /// When false the pipeline waits for each send.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Concurrent sends (default 10).
    #[serde(default = "default_num_consumers")]
    pub num_consumers: usize,
    /// Capacity in batches (default 1000).
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// When full: wait for room (true) or refuse with a retryable error
    /// (false, default).
    #[serde(default)]
    pub block_on_overflow: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            enabled: true,
            num_consumers: default_num_consumers(),
            queue_size: default_queue_size(),
            block_on_overflow: false,
        }
    }
}

impl QueueSettings {
    /// Checks for use under `prefix` (e.g. `sending_queue`).
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.enabled && self.queue_size == 0 {
            errors.push(FieldError::new(
                format!("{prefix}::queue_size"),
                "must be at least 1",
            ));
        }
        if self.enabled && self.num_consumers == 0 {
            errors.push(FieldError::new(
                format!("{prefix}::num_consumers"),
                "must be at least 1",
            ));
        }
        errors
    }
}

/// Default per-request timeout (the OpenTelemetry Collector's 5 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

struct Shared {
    id: ComponentId,
    sender: Arc<dyn Sender>,
    timeout: Duration,
    metrics: [ExporterMetrics; 3],
    queue_size: Gauge,
}

impl Shared {
    fn metrics(&self, signal: Signal) -> &ExporterMetrics {
        &self.metrics[signal as usize]
    }

    async fn send(&self, batch: &Batch) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.sender.send(batch)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retryable(format!(
                "request timed out after {:?}",
                self.timeout
            ))),
        }
    }

    /// Sends and counts; used by the queue workers.
    async fn send_counted(&self, batch: Batch) {
        let m = self.metrics(batch.signal());
        match self.send(&batch).await {
            Ok(()) => {
                m.sent.inc_by(batch.items() as u64);
            }
            Err(e) => {
                m.send_failed.inc_by(batch.items() as u64);
                tracing::error!(
                    exporter = %self.id,
                    signal = %batch.signal(),
                    items = batch.items(),
                    error = %e,
                    "send failed; the batch is dropped"
                );
            }
        }
    }
}

/// An exporter built from a [`Sender`] by [`build`].
pub struct QueuedExporter {
    shared: Arc<Shared>,
    settings: QueueSettings,
    tx: mpsc::Sender<Batch>,
    rx: Mutex<Option<mpsc::Receiver<Batch>>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    closing: CancellationToken,
}

/// Wraps `sender` in the queue, workers, timeout and counters.
pub fn build(
    ctx: &BuildContext,
    sender: Arc<dyn Sender>,
    queue: &QueueSettings,
    timeout: Duration,
) -> Arc<dyn Exporter> {
    let id = ctx.id.to_string();
    let t = &ctx.telemetry;
    let labels = [("exporter", id.as_str())];
    let capacity = t.gauge(
        "otelcol_exporter_queue_capacity",
        "Fixed capacity of the sending queue, in batches",
        &labels,
    );
    capacity.set(if queue.enabled {
        queue.queue_size as i64
    } else {
        0
    });
    let queue_size = t.gauge(
        "otelcol_exporter_queue_size",
        "Current size of the sending queue, in batches",
        &labels,
    );
    let (tx, rx) = mpsc::channel(queue.queue_size.max(1));
    Arc::new(QueuedExporter {
        shared: Arc::new(Shared {
            id: ctx.id.clone(),
            sender,
            timeout,
            // Counters appear only for the signals this exporter carries.
            metrics: Signal::ALL.map(|s| {
                if ctx.signals.contains(&s) {
                    t.exporter(&ctx.id, s)
                } else {
                    ExporterMetrics::detached()
                }
            }),
            queue_size,
        }),
        settings: queue.clone(),
        tx,
        rx: Mutex::new(Some(rx)),
        dispatcher: Mutex::new(None),
        closing: CancellationToken::new(),
    })
}

impl QueuedExporter {
    fn update_queue_gauge(&self) {
        let len = self.tx.max_capacity() - self.tx.capacity();
        self.shared.queue_size.set(len as i64);
    }
}

async fn dispatch(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Batch>,
    workers: usize,
    closing: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(workers));
    let mut closed = false;
    loop {
        let next = if closed {
            rx.recv().await
        } else {
            tokio::select! {
                biased;
                b = rx.recv() => b,
                _ = closing.cancelled() => {
                    // Refuse new batches and drain the ones already queued.
                    rx.close();
                    closed = true;
                    continue;
                }
            }
        };
        let Some(batch) = next else { break };
        shared.queue_size.set(rx.len() as i64);
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let s = shared.clone();
        tokio::spawn(async move {
            s.send_counted(batch).await;
            drop(permit);
        });
    }
    // Wait for the sends in flight.
    let _ = permits.acquire_many(workers as u32).await;
}

#[async_trait]
impl Lifecycle for QueuedExporter {
    async fn start(&self) -> Result<(), ComponentError> {
        self.shared.sender.start().await?;
        if self.settings.enabled {
            let rx = self
                .rx
                .lock()
                .await
                .take()
                .ok_or_else(|| ComponentError::new("exporter started twice"))?;
            let handle = tokio::spawn(dispatch(
                self.shared.clone(),
                rx,
                self.settings.num_consumers,
                self.closing.clone(),
            ));
            *self.dispatcher.lock().await = Some(handle);
        }
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.closing.cancel();
        if let Some(h) = self.dispatcher.lock().await.take() {
            if let Err(e) = h.await {
                tracing::error!(exporter = %self.shared.id, error = %e, "queue worker failed");
            }
        }
        self.shared.sender.shutdown().await
    }
}

#[async_trait]
impl Consumer for QueuedExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if !self.settings.enabled {
            let m = self.shared.metrics(batch.signal());
            return match self.shared.send(&batch).await {
                Ok(()) => {
                    m.sent.inc_by(batch.items() as u64);
                    Ok(())
                }
                Err(e) => {
                    m.send_failed.inc_by(batch.items() as u64);
                    Err(match e {
                        SendError::Retryable {
                            message,
                            retry_after,
                        } => ConsumeError::Retryable {
                            reason: format!("exporter {}: {message}", self.shared.id),
                            retry_after,
                            overloaded: false,
                        },
                        SendError::Permanent(m) => {
                            ConsumeError::Permanent(format!("exporter {}: {m}", self.shared.id))
                        }
                    })
                }
            };
        }
        if self.closing.is_cancelled() {
            return Err(ConsumeError::unavailable(format!(
                "exporter {} is shutting down",
                self.shared.id
            )));
        }
        let signal = batch.signal();
        let items = batch.items() as u64;
        let result = match self.tx.try_send(batch) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(batch)) if self.settings.block_on_overflow => {
                self.tx.send(batch).await.map_err(|_| ())
            }
            Err(_) => Err(()),
        };
        self.update_queue_gauge();
        result.map_err(|()| {
            self.shared.metrics(signal).enqueue_failed.inc_by(items);
            ConsumeError::overloaded(format!(
                "sending queue of exporter {} is full",
                self.shared.id
            ))
        })
    }
}
