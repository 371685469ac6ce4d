//! The exporter helper: every exporter implements only [`Sender`] ("send one
//! batch"); this module adds the sending queue (in memory, or persistent on
//! disk through a storage extension), concurrent senders, the per-request
//! timeout, retries with backoff, partial-success accounting and the
//! standard exporter counters.
//!
//! Acceptance into the queue is what the pipeline waits for, so a receiver's
//! success answer means "in every exporter's queue": in memory (lost if the
//! process dies: at-most-once) or written to disk before the answer
//! (at-least-once: replayed after a crash, removed only once the backend
//! acknowledged it). A full queue either refuses (retryable, counted as
//! `enqueue_failed`) or, with `block_on_overflow`, makes the pipeline wait.
//! See docs/reliability.md for the guarantees per configuration.

mod queue;
mod retry;
#[cfg(test)]
mod tests;

pub use queue::Sizer;
pub use retry::{Backoff, RetrySettings};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use sluice_pdata::{Batch, Bytes, Signal};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, ComponentError, ComponentId, Exporter, Lifecycle, Storage};
use crate::consumer::{ConsumeError, Consumer};
use crate::factory::{BuildError, ExtensionRef, FieldError};
use crate::persistent_queue::{PersistentQueue, QueueError, Seq};
use crate::telemetry::ExporterMetrics;
use queue::MemoryQueue;

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
    /// The backend took the batch but rejected `rejected` items of it (OTLP
    /// `partial_success`). Those items are counted as rejected, not retried.
    #[error("{rejected} items rejected: {message}")]
    PartialSuccess { rejected: u64, message: String },
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
    /// When false the pipeline waits for each send, retries included.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Concurrent sends (default 10).
    #[serde(default = "default_num_consumers")]
    pub num_consumers: usize,
    /// Capacity, counted in `sizer` units (default 1000).
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// `requests` (default: batches), `items` or `bytes`.
    #[serde(default)]
    pub sizer: Sizer,
    /// When full: wait for room (true) or refuse with a retryable error
    /// (false, default).
    #[serde(default)]
    pub block_on_overflow: bool,
    /// A storage extension id (`file_storage/x`): the queue lives on disk,
    /// written before the pipeline is answered and replayed on start.
    #[serde(default)]
    pub storage: Option<String>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            enabled: true,
            num_consumers: default_num_consumers(),
            queue_size: default_queue_size(),
            sizer: Sizer::Requests,
            block_on_overflow: false,
            storage: None,
        }
    }
}

impl QueueSettings {
    /// Checks for use under `prefix` (e.g. `sending_queue`).
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !self.enabled {
            return errors;
        }
        if self.queue_size == 0 {
            errors.push(FieldError::new(
                format!("{prefix}::queue_size"),
                "must be at least 1",
            ));
        }
        if self.num_consumers == 0 {
            errors.push(FieldError::new(
                format!("{prefix}::num_consumers"),
                "must be at least 1",
            ));
        }
        if self.storage.is_some() && self.sizer != Sizer::Requests {
            errors.push(FieldError::new(
                format!("{prefix}::sizer"),
                "a persistent queue (storage) counts requests; use sizer: requests",
            ));
        }
        errors
    }

    /// The storage extension this queue uses, for the validator.
    pub fn extension_refs(&self, prefix: &str) -> Vec<ExtensionRef> {
        match (&self.storage, self.enabled) {
            (Some(id), true) => vec![ExtensionRef {
                path: format!("{prefix}::storage"),
                id: id.clone(),
            }],
            _ => Vec::new(),
        }
    }
}

/// Default per-request timeout (the OpenTelemetry Collector's 5 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The checks every queued network exporter's config shares: `timeout`,
/// `sending_queue` and `retry_on_failure` under their usual keys.
pub fn validate_settings(
    timeout: Duration,
    queue: &QueueSettings,
    retry: &RetrySettings,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if timeout.is_zero() {
        errors.push(FieldError::new("timeout", "must be greater than 0"));
    }
    errors.extend(queue.validate("sending_queue"));
    errors.extend(retry.validate("retry_on_failure"));
    errors
}

/// How a batch's delivery ended.
enum Outcome {
    /// Sent, or failed for good (counted either way): remove it.
    Done,
    /// Shutdown came while it waited to retry: it was not sent.
    Interrupted,
}

struct Shared {
    id: ComponentId,
    sender: Arc<dyn Sender>,
    timeout: Duration,
    retry: RetrySettings,
    metrics: [ExporterMetrics; 3],
    retries: Counter,
    queue_size: Gauge,
}

impl Shared {
    fn metrics(&self, signal: Signal) -> &ExporterMetrics {
        &self.metrics[signal as usize]
    }

    async fn attempt(&self, batch: &Batch) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout, self.sender.send(batch)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retryable(format!(
                "request timed out after {:?}",
                self.timeout
            ))),
        }
    }

    /// Sends with retries and counts the result: `Ok` sent (partial success
    /// included), `Err(Some(e))` failed for good (counted), `Err(None)`
    /// interrupted by shutdown while waiting to retry (not counted here).
    async fn deliver(
        &self,
        batch: &Batch,
        abort: &CancellationToken,
    ) -> Result<(), Option<SendError>> {
        let m = self.metrics(batch.signal());
        let items = batch.items() as u64;
        let mut backoff = self.retry.backoff();
        loop {
            let err = match self.attempt(batch).await {
                Ok(()) => {
                    m.sent.inc_by(items);
                    return Ok(());
                }
                Err(SendError::PartialSuccess { rejected, message }) => {
                    let rejected = rejected.min(items);
                    m.rejected.inc_by(rejected);
                    m.sent.inc_by(items - rejected);
                    tracing::warn!(
                        exporter = %self.id,
                        signal = %batch.signal(),
                        rejected,
                        message = %message,
                        "the backend rejected part of a batch; those items are not retried"
                    );
                    return Ok(());
                }
                Err(e @ SendError::Permanent(_)) => e,
                Err(e @ SendError::Retryable { .. }) => {
                    let hint = match &e {
                        SendError::Retryable { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    match backoff.next_delay(hint) {
                        Some(delay) => {
                            self.retries.inc();
                            tracing::debug!(exporter = %self.id, error = %e, ?delay, "send failed; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => continue,
                                _ = abort.cancelled() => return Err(None),
                            }
                        }
                        None => e,
                    }
                }
            };
            m.send_failed.inc_by(items);
            tracing::error!(
                exporter = %self.id,
                signal = %batch.signal(),
                items,
                error = %err,
                "send failed for good; the batch is dropped"
            );
            return Err(Some(err));
        }
    }

    async fn deliver_queued(&self, batch: &Batch, abort: &CancellationToken) -> Outcome {
        match self.deliver(batch, abort).await {
            Ok(()) | Err(Some(_)) => Outcome::Done,
            Err(None) => Outcome::Interrupted,
        }
    }
}

/// The queue behind an exporter.
enum Queue {
    Memory(MemoryQueue),
    /// Opened at start (it is I/O); `storage` is the extension's handle.
    Disk {
        storage: Arc<dyn Storage>,
        name: String,
        limit: usize,
        queue: std::sync::OnceLock<PersistentQueue>,
        bytes: Gauge,
        corrupted: Counter,
        /// Woken when a record is acknowledged: room under `limit` again.
        acked: tokio::sync::Notify,
    },
}

/// An exporter built from a [`Sender`] by [`build`].
pub struct QueuedExporter {
    shared: Arc<Shared>,
    settings: QueueSettings,
    queue: Arc<Queue>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    /// Stop taking batches; the memory queue drains, the disk queue stops.
    closing: CancellationToken,
    /// Cut retry waits short (persistent queue: the batch stays on disk).
    abort: CancellationToken,
}

/// Wraps `sender` in the queue, workers, timeout, retries and counters.
/// Fails if `sending_queue.storage` names no usable storage extension.
pub fn build(
    ctx: &BuildContext,
    sender: Arc<dyn Sender>,
    queue: &QueueSettings,
    retry: &RetrySettings,
    timeout: Duration,
) -> Result<Arc<dyn Exporter>, BuildError> {
    let id = ctx.id.to_string();
    let t = &ctx.telemetry;
    let labels = [("exporter", id.as_str())];
    let capacity = t.gauge(
        "otelcol_exporter_queue_capacity",
        "Fixed capacity of the sending queue, in its sizer's unit",
        &labels,
    );
    capacity.set(if queue.enabled {
        queue.queue_size as i64
    } else {
        0
    });
    let queue_size = t.gauge(
        "otelcol_exporter_queue_size",
        "Current size of the sending queue, in its sizer's unit",
        &labels,
    );
    let q =
        match (&queue.storage, queue.enabled) {
            (Some(storage_id), true) => {
                let ext = crate::component::ComponentId::parse(storage_id)
                    .map_err(|e| BuildError::new(format!("sending_queue::storage: {e}")))?;
                let storage = ctx
                    .extensions
                    .storage(&ext)
                    .map_err(|e| BuildError::new(format!("sending_queue::storage: {e}")))?;
                Queue::Disk {
                storage,
                name: id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_' && c != '-', "_"),
                limit: queue.queue_size,
                queue: std::sync::OnceLock::new(),
                bytes: t.gauge(
                    "sluice_exporter_persistent_queue_bytes",
                    "Bytes of unacknowledged batches in the persistent queue",
                    &labels,
                ),
                corrupted: t.counter(
                    "sluice_exporter_persistent_queue_corrupted_records",
                    "Records of the persistent queue skipped at start because they were damaged",
                    &labels,
                ),
                acked: tokio::sync::Notify::new(),
            }
            }
            _ => Queue::Memory(MemoryQueue::new(queue.queue_size.max(1), queue.sizer)),
        };
    Ok(Arc::new(QueuedExporter {
        shared: Arc::new(Shared {
            id: ctx.id.clone(),
            sender,
            timeout,
            retry: retry.clone(),
            // Counters appear only for the signals this exporter carries.
            metrics: Signal::ALL.map(|s| {
                if ctx.signals.contains(&s) {
                    t.exporter(&ctx.id, s)
                } else {
                    ExporterMetrics::detached()
                }
            }),
            retries: t.counter(
                "sluice_exporter_retries",
                "Send attempts that repeated a failed one",
                &labels,
            ),
            queue_size,
        }),
        settings: queue.clone(),
        queue: Arc::new(q),
        dispatcher: Mutex::new(None),
        closing: CancellationToken::new(),
        abort: CancellationToken::new(),
    }))
}

/// On-disk form of a batch: one signal byte, then the protobuf request.
fn encode(batch: &Batch) -> Vec<u8> {
    let bytes = batch.to_bytes();
    let mut out = Vec::with_capacity(1 + bytes.len());
    out.push(batch.signal() as u8);
    out.extend_from_slice(&bytes);
    out
}

fn decode(bytes: &[u8]) -> Option<Batch> {
    let (&tag, body) = bytes.split_first()?;
    let signal = *Signal::ALL.get(tag as usize)?;
    // Kept encoded: a batch read back is sent without being decoded. The
    // record's CRC already passed; validation still guards against a file
    // written by another version.
    Batch::from_encoded(signal, Bytes::copy_from_slice(body)).ok()
}

impl Queue {
    fn disk(&self) -> Option<&PersistentQueue> {
        match self {
            Queue::Disk { queue, .. } => queue.get(),
            Queue::Memory(_) => None,
        }
    }

    fn update_gauges(&self, size: &Gauge) {
        match self {
            Queue::Memory(q) => {
                size.set(q.size() as i64);
            }
            Queue::Disk { queue, bytes, .. } => {
                if let Some(q) = queue.get() {
                    size.set(q.len() as i64);
                    bytes.set(q.bytes() as i64);
                }
            }
        }
    }
}

/// One batch taken from the queue, with its disk position if any.
struct Taken {
    batch: Batch,
    seq: Option<Seq>,
}

async fn next(queue: &Queue, closing: &CancellationToken) -> Option<Taken> {
    match queue {
        Queue::Memory(q) => q.pop().await.map(|batch| Taken { batch, seq: None }),
        Queue::Disk {
            queue, corrupted, ..
        } => {
            let q = queue.get()?;
            loop {
                let (seq, bytes) = tokio::select! {
                    biased;
                    _ = closing.cancelled() => return None,
                    item = q.next() => item?,
                };
                match decode(&bytes) {
                    Some(batch) => {
                        return Some(Taken {
                            batch,
                            seq: Some(seq),
                        })
                    }
                    None => {
                        // The checksum matched but the content is not a
                        // batch: written by something else. Skip it, counted.
                        corrupted.inc();
                        q.ack(seq);
                    }
                }
            }
        }
    }
}

async fn dispatch(
    shared: Arc<Shared>,
    queue: Arc<Queue>,
    workers: usize,
    closing: CancellationToken,
    abort: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(workers));
    loop {
        // Take a sender slot first, so a batch waits in the queue (counted,
        // on disk) rather than in this task.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let Some(taken) = next(&queue, &closing).await else {
            break;
        };
        queue.update_gauges(&shared.queue_size);
        let (s, q, abort) = (shared.clone(), queue.clone(), abort.clone());
        tokio::spawn(async move {
            let outcome = s.deliver_queued(&taken.batch, &abort).await;
            match (outcome, taken.seq, q.disk()) {
                (Outcome::Done, Some(seq), Some(disk)) => {
                    disk.ack(seq);
                    if let Queue::Disk { acked, .. } = &*q {
                        acked.notify_waiters();
                    }
                }
                (Outcome::Interrupted, Some(seq), Some(disk)) => disk.nack(seq),
                (Outcome::Interrupted, _, _) => {
                    s.metrics(taken.batch.signal())
                        .send_failed
                        .inc_by(taken.batch.items() as u64);
                    tracing::error!(
                        exporter = %s.id,
                        items = taken.batch.items(),
                        "shutdown interrupted the retries of an in-memory batch; it is lost"
                    );
                }
                (Outcome::Done, _, _) => {}
            }
            q.update_gauges(&s.queue_size);
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
        if !self.settings.enabled {
            return Ok(());
        }
        if let Queue::Disk {
            storage,
            name,
            queue,
            corrupted,
            ..
        } = &*self.queue
        {
            let (q, recovery) = storage.open_queue(name)?;
            if recovery.corrupted_records > 0 {
                corrupted.inc_by(recovery.corrupted_records);
                tracing::error!(
                    exporter = %self.shared.id,
                    records = recovery.corrupted_records,
                    bytes = recovery.corrupted_bytes,
                    "damaged records in the persistent queue were skipped"
                );
            }
            if recovery.records > 0 {
                tracing::info!(
                    exporter = %self.shared.id,
                    records = recovery.records,
                    bytes = recovery.bytes,
                    "replaying the persistent queue"
                );
            }
            let _ = queue.set(q);
        }
        self.queue.update_gauges(&self.shared.queue_size);
        let handle = tokio::spawn(dispatch(
            self.shared.clone(),
            self.queue.clone(),
            self.settings.num_consumers,
            self.closing.clone(),
            self.abort.clone(),
        ));
        *self.dispatcher.lock().await = Some(handle);
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.closing.cancel();
        match &*self.queue {
            // Memory: send what is queued (within the service's deadline).
            Queue::Memory(q) => q.close(),
            // Disk: what is not sent stays on disk for the next start; do
            // not wait out retry delays.
            Queue::Disk { queue, .. } => {
                self.abort.cancel();
                if let Some(q) = queue.get() {
                    q.close();
                }
            }
        }
        if let Some(h) = self.dispatcher.lock().await.take() {
            if let Err(e) = h.await {
                tracing::error!(exporter = %self.shared.id, error = %e, "queue worker failed");
            }
        }
        if let Queue::Memory(q) = &*self.queue {
            let (batches, items) = q.remaining();
            if items > 0 {
                tracing::error!(exporter = %self.shared.id, batches, items, "in-memory queue not drained at shutdown; lost");
            }
        }
        self.shared.sender.shutdown().await
    }
}

impl QueuedExporter {
    fn refuse(&self, batch: &Batch, why: String) -> ConsumeError {
        self.shared
            .metrics(batch.signal())
            .enqueue_failed
            .inc_by(batch.items() as u64);
        ConsumeError::overloaded(why)
    }

    /// Queue disabled: send now, retries included, and answer with the result.
    async fn send_now(&self, batch: Batch) -> Result<(), ConsumeError> {
        let id = &self.shared.id;
        match self.shared.deliver(&batch, &self.abort).await {
            Ok(()) => Ok(()),
            Err(Some(SendError::Permanent(m))) => {
                Err(ConsumeError::Permanent(format!("exporter {id}: {m}")))
            }
            Err(Some(SendError::Retryable {
                message,
                retry_after,
            })) => Err(ConsumeError::Retryable {
                reason: format!("exporter {id}: {message}"),
                retry_after,
                overloaded: false,
            }),
            Err(Some(e)) => Err(ConsumeError::unavailable(format!("exporter {id}: {e}"))),
            Err(None) => Err(ConsumeError::unavailable(format!(
                "exporter {id} is shutting down"
            ))),
        }
    }
}

#[async_trait]
impl Consumer for QueuedExporter {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if !self.settings.enabled {
            return self.send_now(batch).await;
        }
        let id = &self.shared.id;
        if self.closing.is_cancelled() {
            return Err(ConsumeError::unavailable(format!(
                "exporter {id} is shutting down"
            )));
        }
        let result = match &*self.queue {
            Queue::Memory(q) => {
                let pushed = if self.settings.block_on_overflow {
                    q.push_wait(batch).await
                } else {
                    q.try_push(batch)
                };
                pushed
                    .map_err(|b| self.refuse(&b, format!("sending queue of exporter {id} is full")))
            }
            Queue::Disk {
                queue,
                limit,
                acked,
                ..
            } => {
                let Some(q) = queue.get() else {
                    return Err(ConsumeError::unavailable(format!(
                        "exporter {id} is not started"
                    )));
                };
                self.push_disk(q, *limit, acked, &batch).await
            }
        };
        self.queue.update_gauges(&self.shared.queue_size);
        result
    }
}

impl QueuedExporter {
    async fn push_disk(
        &self,
        q: &PersistentQueue,
        limit: usize,
        acked: &tokio::sync::Notify,
        batch: &Batch,
    ) -> Result<(), ConsumeError> {
        let id = &self.shared.id;
        let bytes = encode(batch);
        loop {
            // Registered before the check, so an ack in between is not missed.
            let room = acked.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let count_full = q.len() >= limit;
            let pushed = if count_full {
                Err(QueueError::Full { max_bytes: 0 })
            } else {
                q.push(&bytes).await.map(|_| ())
            };
            match pushed {
                Ok(()) => return Ok(()),
                Err(QueueError::Full { .. }) if self.settings.block_on_overflow => {
                    // Full by count: wait for an ack. Full by bytes: wait for
                    // the queue to say a record fits again.
                    tokio::select! {
                        _ = &mut room, if count_full => continue,
                        _ = q.wait_for_space(), if !count_full => continue,
                        _ = self.closing.cancelled() => {
                            return Err(ConsumeError::unavailable(format!("exporter {id} is shutting down")))
                        }
                    }
                }
                Err(QueueError::Full { .. }) => {
                    return Err(self.refuse(
                        batch,
                        format!("persistent sending queue of exporter {id} is full"),
                    ))
                }
                Err(e) => {
                    self.shared
                        .metrics(batch.signal())
                        .enqueue_failed
                        .inc_by(batch.items() as u64);
                    tracing::error!(exporter = %id, error = %e, "cannot write to the persistent queue");
                    return Err(ConsumeError::unavailable(format!(
                        "exporter {id}: cannot write to the persistent queue: {e}"
                    )));
                }
            }
        }
    }
}
