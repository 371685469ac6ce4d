//! The `batch` processor: merges small batches into larger ones (and cuts
//! oversized ones) before they reach the rest of the pipeline.
//!
//! **What it does.** Each instance (one per pipeline) owns one batcher task
//! and one buffer. Incoming batches travel to that task over a bounded channel
//! together with an acknowledgement handle. The task appends them to its
//! buffer and sends the buffer on when it holds `send_batch_size` items (in
//! chunks of at most `send_batch_max_size` items, cut with
//! [`sluice_pdata::split_off`]) or when `timeout` has passed since the first
//! buffered item.
//!
//! **Guarantees.**
//! - `consume` resolves only when every item of the batch it was given has
//!   been accepted by the next consumer, or with the next consumer's error if
//!   any part of it was refused (a retryable error wins over a permanent one).
//!   A receiver therefore never answers success for data that only sits in
//!   this processor's memory. This is stronger than the OpenTelemetry
//!   Collector's batch processor, which acknowledges on buffering.
//! - Items keep their order: flushes are sent one at a time, in buffer order.
//! - Memory is bounded: the channel holds at most [`CHANNEL_CAPACITY`]
//!   batches and the buffer less than `send_batch_size` items plus the last
//!   batch received; callers beyond that wait (backpressure).
//! - `shutdown` sends everything buffered (and everything already queued in
//!   the channel); afterwards `consume` passes batches straight to the next
//!   consumer.
//!
//! **Limits.** Because an acknowledgement waits for the flush, a client that
//! sends one request at a time and waits for each answer sees up to `timeout`
//! of added latency per request. Flushes are sequential per instance, so a
//! slow next consumer slows the whole instance (that is the backpressure).
//! Batches with no items are acknowledged at once and not forwarded.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use serde::Deserialize;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    BuildContext, BuildError, ComponentConfig, ComponentError, ConsumeError, Consumer, ConsumerRef,
    FieldError, Lifecycle, Processor, ProcessorFactory, Registry, Stability,
};
use sluice_pdata::{split_off, Batch, Signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The configured type name.
pub const TYPE: &str = "batch";

/// Batches (with their acknowledgement) that may wait in the channel between
/// callers and the batcher task before callers have to wait for room.
pub const CHANNEL_CAPACITY: usize = 64;

fn default_send_batch_size() -> usize {
    8192
}

fn default_timeout() -> Duration {
    Duration::from_millis(200)
}

/// Configuration of the `batch` processor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Items (spans, metric data points, log records) that trigger a send
    /// regardless of `timeout`. Default 8192; must be at least 1.
    #[serde(default = "default_send_batch_size")]
    pub send_batch_size: usize,
    /// Upper bound on the items of one sent batch; larger buffers are cut.
    /// Default 0: no bound. When set it must be >= `send_batch_size`.
    #[serde(default)]
    pub send_batch_max_size: usize,
    /// Longest time the first buffered item waits before the buffer is sent,
    /// whatever its size. Default 200ms; 0 sends every batch immediately
    /// (no buffering, cut to `send_batch_max_size` if set).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: default_send_batch_size(),
            send_batch_max_size: 0,
            timeout: default_timeout(),
        }
    }
}

impl ComponentConfig for BatchConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.send_batch_size == 0 {
            errors.push(FieldError::new(
                "send_batch_size",
                "must be at least 1 (use `timeout: 0` to send every batch immediately)",
            ));
        }
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            errors.push(FieldError::new(
                "send_batch_max_size",
                format!(
                    "must be 0 (unlimited) or at least send_batch_size ({}), got {}",
                    self.send_batch_size, self.send_batch_max_size
                ),
            ));
        }
        errors
    }
}

/// Registers the `batch` processor.
pub fn register(r: &mut Registry) {
    r.processor(BatchFactory);
}

/// Factory of the `batch` processor.
pub struct BatchFactory;

impl ProcessorFactory for BatchFactory {
    type Config = BatchConfig;

    fn type_name(&self) -> &'static str {
        TYPE
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
        config: &BatchConfig,
        next: ConsumerRef,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        Ok(Arc::new(BatchProcessor::new(&ctx, config, next)))
    }
}

/// Self-telemetry of one instance.
struct Metrics {
    /// Present at metrics level `detailed` only.
    send_size: Option<Histogram>,
    size_trigger: Counter,
    timeout_trigger: Counter,
}

impl Metrics {
    fn new(ctx: &BuildContext) -> Metrics {
        let id = ctx.id.to_string();
        let pipeline = ctx.pipeline.clone().unwrap_or_default();
        let labels = [("processor", id.as_str()), ("pipeline", pipeline.as_str())];
        let t = &ctx.telemetry;
        Metrics {
            send_size: (t.level() >= MetricsLevel::Normal).then(|| {
                t.size_histogram(
                    "otelcol_processor_batch_batch_send_size",
                    "Number of items in the batches sent by the batch processor",
                    &labels,
                )
            }),
            size_trigger: t.counter(
                "otelcol_processor_batch_batch_size_trigger_send",
                "Number of times a batch was sent because it reached send_batch_size",
                &labels,
            ),
            timeout_trigger: t.counter(
                "otelcol_processor_batch_timeout_trigger_send",
                "Number of times a batch was sent because its timeout elapsed",
                &labels,
            ),
        }
    }

    fn sent(&self, items: usize, trigger: Trigger) {
        if let Some(h) = &self.send_size {
            h.observe(items as f64);
        }
        match trigger {
            Trigger::Size => {
                self.size_trigger.inc();
            }
            Trigger::Timeout => {
                self.timeout_trigger.inc();
            }
            Trigger::Drain => {}
        }
    }
}

/// Why a flush happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The buffer reached `send_batch_size` (or `timeout` is 0).
    Size,
    /// `timeout` elapsed since the first buffered item.
    Timeout,
    /// Shutdown, or a batch of another signal arrived; counted in neither
    /// trigger counter.
    Drain,
}

type Ack = oneshot::Sender<Result<(), ConsumeError>>;

/// One batch on its way to the batcher task.
struct Request {
    batch: Batch,
    ack: Ack,
}

/// Keeps the more useful of two refusals: a retryable error wins, because the
/// client will then send again and nothing is lost.
fn merge_error(slot: &mut Option<ConsumeError>, e: &ConsumeError) {
    match slot {
        None => *slot = Some(e.clone()),
        Some(ConsumeError::Permanent(_)) if e.is_retryable() => *slot = Some(e.clone()),
        Some(_) => {}
    }
}

/// A caller waiting for its items to be flushed.
struct Waiter {
    /// Items of this caller still in the buffer.
    remaining: usize,
    error: Option<ConsumeError>,
    ack: Ack,
}

impl Waiter {
    fn answer(self) {
        // The caller may have gone away; its data is still sent.
        let _ = self.ack.send(self.error.map_or(Ok(()), Err));
    }
}

/// The state owned by the batcher task.
struct Batcher {
    id: String,
    pipeline: String,
    next: ConsumerRef,
    send_batch_size: usize,
    send_batch_max_size: usize,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// The batches buffered, whole or (the first) partly sent, all of one
    /// signal. They are concatenated when sent ([`Batch::concat`]): batches
    /// that arrived encoded are joined as bytes, never decoded.
    buffer: VecDeque<Batch>,
    buffered: usize,
    /// Callers whose items are in the buffer, in buffer order.
    waiting: VecDeque<Waiter>,
    /// When the buffer must be sent whatever its size.
    deadline: Option<Instant>,
}

impl Batcher {
    /// Receives until stopped, then drains the channel and flushes all.
    async fn run(mut self, mut rx: mpsc::Receiver<Request>, stop: CancellationToken) {
        let mut stopping = false;
        loop {
            let deadline = self.deadline;
            let msg = tokio::select! {
                biased;
                _ = stop.cancelled(), if !stopping => {
                    // Refuse new requests (callers then pass through) and take
                    // the ones already queued.
                    rx.close();
                    stopping = true;
                    continue;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() && !stopping =>
                {
                    self.flush_all(Trigger::Timeout).await;
                    continue;
                }
                msg = rx.recv() => msg,
            };
            match msg {
                Some(req) => self.add(req).await,
                None => break,
            }
        }
        self.flush_all(Trigger::Drain).await;
        tracing::debug!(processor = %self.id, pipeline = %self.pipeline, "batcher stopped");
    }

    async fn add(&mut self, req: Request) {
        let items = req.batch.items();
        if items == 0 {
            let _ = req.ack.send(Ok(()));
            return;
        }
        if self
            .buffer
            .front()
            .is_some_and(|b| b.signal() != req.batch.signal())
        {
            // A batch of another signal: send what we hold first.
            self.flush_all(Trigger::Drain).await;
        }
        self.buffer.push_back(req.batch);
        self.buffered += items;
        self.waiting.push_back(Waiter {
            remaining: items,
            error: None,
            ack: req.ack,
        });
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.timeout);
        }
        while self.buffered >= self.send_batch_size {
            let n = self.chunk_len();
            self.flush(n, Trigger::Size).await;
        }
    }

    /// Removes the first `n` buffered items as one batch. Whole batches are
    /// taken as they are; only a batch that straddles the cut is decoded
    /// and split.
    fn take(&mut self, n: usize) -> Option<Batch> {
        let signal = self.buffer.front()?.signal();
        let mut parts = Vec::new();
        let mut left = n;
        while left > 0 {
            let Some(front) = self.buffer.front_mut() else {
                break;
            };
            if front.items() <= left {
                left -= front.items();
                parts.extend(self.buffer.pop_front());
            } else {
                let head = split_off(&mut front.make_mut(), left);
                parts.push(Batch::new(head));
                left = 0;
            }
        }
        // Batches with no items are never buffered, so one part at least.
        Batch::concat(signal, parts).ok()
    }

    /// Items of the next chunk to send.
    fn chunk_len(&self) -> usize {
        if self.send_batch_max_size > 0 {
            self.buffered.min(self.send_batch_max_size)
        } else {
            self.buffered
        }
    }

    async fn flush_all(&mut self, trigger: Trigger) {
        while !self.buffer.is_empty() {
            let n = self.chunk_len();
            self.flush(n, trigger).await;
        }
    }

    /// Sends the first `n` buffered items and answers the callers whose last
    /// items were among them.
    async fn flush(&mut self, n: usize, trigger: Trigger) {
        let Some(batch) = self.take(n) else {
            return;
        };
        let sent = batch.items();
        self.buffered -= sent.min(self.buffered);

        // Which callers does this chunk finish, and which one does it touch?
        let mut done = Vec::new();
        let mut left = sent;
        let mut touched_front = false;
        while left > 0 {
            let Some(front) = self.waiting.front_mut() else {
                break;
            };
            if front.remaining <= left {
                left -= front.remaining;
                if let Some(w) = self.waiting.pop_front() {
                    done.push(w);
                }
            } else {
                front.remaining -= left;
                left = 0;
                touched_front = true;
            }
        }
        if self.buffer.is_empty() {
            // Nothing left buffered: nobody can still be waiting for a part.
            done.extend(self.waiting.drain(..));
            touched_front = false;
        }

        self.metrics.sent(sent, trigger);
        let result = self.next.consume(batch).await;
        if let Err(e) = &result {
            tracing::debug!(
                processor = %self.id,
                pipeline = %self.pipeline,
                items = sent,
                error = %e,
                "next consumer refused a batch"
            );
            for w in &mut done {
                merge_error(&mut w.error, e);
            }
            if touched_front {
                if let Some(front) = self.waiting.front_mut() {
                    merge_error(&mut front.error, e);
                }
            }
        }
        for w in done {
            w.answer();
        }

        self.deadline = match (!self.buffer.is_empty(), trigger) {
            (false, _) => None,
            // What is left after a size-triggered send starts a new batch.
            (true, Trigger::Size) => Some(Instant::now() + self.timeout),
            (true, _) => self.deadline,
        };
    }
}

/// One `batch` processor instance (one per pipeline).
pub struct BatchProcessor {
    id: String,
    next: ConsumerRef,
    send_batch_max_size: usize,
    immediate: bool,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Request>,
    /// The batcher and its receiving end until `start` spawns it.
    pending: std::sync::Mutex<Option<(Batcher, mpsc::Receiver<Request>)>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    stop: CancellationToken,
    closed: AtomicBool,
}

impl BatchProcessor {
    fn new(ctx: &BuildContext, config: &BatchConfig, next: ConsumerRef) -> BatchProcessor {
        let metrics = Arc::new(Metrics::new(ctx));
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let batcher = Batcher {
            id: ctx.id.to_string(),
            pipeline: ctx.pipeline.clone().unwrap_or_default(),
            next: next.clone(),
            send_batch_size: config.send_batch_size.max(1),
            send_batch_max_size: config.send_batch_max_size,
            timeout: config.timeout,
            metrics: metrics.clone(),
            buffer: VecDeque::new(),
            buffered: 0,
            waiting: VecDeque::new(),
            deadline: None,
        };
        BatchProcessor {
            id: ctx.id.to_string(),
            next,
            send_batch_max_size: config.send_batch_max_size,
            immediate: config.timeout.is_zero(),
            metrics,
            tx,
            pending: std::sync::Mutex::new(Some((batcher, rx))),
            task: tokio::sync::Mutex::new(None),
            stop: CancellationToken::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn take_pending(&self) -> Option<(Batcher, mpsc::Receiver<Request>)> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// `timeout: 0`: send now, cut to `send_batch_max_size`.
    async fn send_now(&self, batch: Batch) -> Result<(), ConsumeError> {
        if batch.items() == 0 {
            return Ok(());
        }
        if self.send_batch_max_size == 0 || batch.items() <= self.send_batch_max_size {
            self.metrics.sent(batch.items(), Trigger::Size);
            return self.next.consume(batch).await;
        }
        let mut rest = batch.into_payload();
        let mut error = None;
        while rest.item_count() > 0 {
            let chunk = Batch::new(split_off(&mut rest, self.send_batch_max_size));
            self.metrics.sent(chunk.items(), Trigger::Size);
            if let Err(e) = self.next.consume(chunk).await {
                merge_error(&mut error, &e);
            }
        }
        error.map_or(Ok(()), Err)
    }
}

#[async_trait]
impl Lifecycle for BatchProcessor {
    async fn start(&self) -> Result<(), ComponentError> {
        if self.immediate {
            return Ok(());
        }
        let (batcher, rx) = self
            .take_pending()
            .ok_or_else(|| ComponentError::new(format!("processor {} started twice", self.id)))?;
        let handle = tokio::spawn(batcher.run(rx, self.stop.clone()));
        *self.task.lock().await = Some(handle);
        Ok(())
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.closed.store(true, Ordering::Release);
        self.stop.cancel();
        if let Some(handle) = self.task.lock().await.take() {
            handle.await.map_err(|e| {
                ComponentError::new(format!("processor {}: batcher task failed: {e}", self.id))
            })?;
        } else if let Some((batcher, rx)) = self.take_pending() {
            // Never started: flush whatever callers queued meanwhile.
            batcher.run(rx, self.stop.clone()).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for BatchProcessor {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        if self.closed.load(Ordering::Acquire) {
            return self.next.consume(batch).await;
        }
        if self.immediate {
            return self.send_now(batch).await;
        }
        let (ack, answer) = oneshot::channel();
        match self.tx.send(Request { batch, ack }).await {
            Ok(()) => answer.await.unwrap_or_else(|_| {
                Err(ConsumeError::unavailable(format!(
                    "processor {} stopped before sending the batch",
                    self.id
                )))
            }),
            // The batcher closed its channel: we are shutting down.
            Err(mpsc::error::SendError(req)) => self.next.consume(req.batch).await,
        }
    }
}

#[cfg(test)]
mod tests;
