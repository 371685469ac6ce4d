//! The committer: hands the reader's batches to the pipeline (several in
//! flight), retries refused ones with backoff, and advances the committed
//! offsets strictly in order, each only once its batch and every batch
//! before it was accepted. A persister writes the committed offsets to the
//! storage extension, coalescing writes when commits come faster than the
//! disk takes them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use prometheus_client::metrics::counter::Counter;
use sluice_core::telemetry::ReceiverMetrics;
use sluice_core::{Batch, ComponentId, ConsumeError, ConsumerRef, KeyValueStore};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::config::RetryConfig;
use super::state::{FileState, Msg, Stored, Update, STORE_KEY, STORE_VERSION};

/// The committed state, shared with the persister.
pub type Committed = Arc<Mutex<BTreeMap<u64, FileState>>>;

/// One message from the reader, waiting for its turn to take effect.
struct Entry {
    batch: Option<Batch>,
    updates: Vec<Update>,
    /// Accepted (or given up on): its updates may be applied.
    done: bool,
    /// When the first refusal came, for `max_elapsed_time`.
    refused_since: Option<Instant>,
}

pub struct Committer {
    pub id: ComponentId,
    pub consumer: ConsumerRef,
    pub metrics: ReceiverMetrics,
    /// Log records given up on (permanent refusal, retries exhausted or
    /// disabled).
    pub dropped: Counter,
    pub retry: RetryConfig,
    pub max_in_flight: usize,
    pub committed: Committed,
    /// Bumped after each change of `committed`; the persister watches it.
    pub changed: watch::Sender<u64>,
}

/// One attempt's outcome: sequence number, whether it was the retry
/// attempt, result.
type Attempt = (u64, bool, Result<(), ConsumeError>);

async fn attempt(
    consumer: ConsumerRef,
    seq: u64,
    is_retry: bool,
    batch: Batch,
    delay: Duration,
) -> Attempt {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    (seq, is_retry, consumer.consume(batch).await)
}

fn apply(state: &mut BTreeMap<u64, FileState>, updates: Vec<Update>) {
    for u in updates {
        match u {
            Update::Offset {
                key,
                offset,
                skipping,
            } => {
                if let Some(f) = state.get_mut(&key) {
                    f.offset = offset;
                    f.skipping = skipping;
                }
            }
            Update::Track(f) => {
                state.insert(f.key, f);
            }
            Update::Forget(key) => {
                state.remove(&key);
            }
        }
    }
}

/// What an attempt's outcome asks for.
enum Outcome {
    Done,
    Retry(Option<Duration>),
}

/// The committer's bookkeeping of batches between the reader and the
/// pipeline.
///
/// While nothing is refused, batches are sent as they come (up to
/// `max_in_flight` outstanding). Once one is refused, it and every later
/// batch wait in `waiting`; only the oldest waiting batch is tried again
/// (after the backoff), and when it is accepted the others are sent, in
/// order. So a refusal does not reorder lines, except for batches that were
/// already in flight when it came.
struct Flow {
    pending: VecDeque<Entry>,
    /// Sequence number of `pending[0]`.
    front: u64,
    waiting: std::collections::BTreeSet<u64>,
    /// The retry attempt is in flight (or sleeping its backoff).
    retrying: bool,
    backoff: Duration,
    /// Batches not yet settled (in flight or waiting).
    outstanding: usize,
}

impl Committer {
    /// Runs until the reader is gone and everything it sent is settled, or
    /// until `abort`. `stop` closes the channel (the reader then stops).
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<Msg>,
        stop: CancellationToken,
        abort: CancellationToken,
    ) {
        let mut f = Flow {
            pending: VecDeque::new(),
            front: 0,
            waiting: Default::default(),
            retrying: false,
            backoff: Duration::ZERO,
            outstanding: 0,
        };
        let mut inflight = FuturesUnordered::new();
        let mut closed = false;
        let mut rx_done = false;
        let mut version = 0u64;
        loop {
            let room = f.outstanding < self.max_in_flight
                && f.pending.len() < self.max_in_flight.saturating_mul(4);
            tokio::select! {
                biased;
                _ = abort.cancelled() => break,
                _ = stop.cancelled(), if !closed => {
                    // The reader's next send fails; what is queued is taken.
                    rx.close();
                    closed = true;
                }
                Some((seq, is_retry, result)) = inflight.next(), if !inflight.is_empty() => {
                    let i = (seq - f.front) as usize;
                    let outcome = self.settle(&mut f.pending[i], result);
                    if is_retry {
                        f.retrying = false;
                    }
                    match outcome {
                        Outcome::Done => {
                            f.outstanding -= 1;
                            if is_retry {
                                // The head of the line went through: send
                                // what waited behind it.
                                f.backoff = Duration::ZERO;
                                for w in std::mem::take(&mut f.waiting) {
                                    let j = (w - f.front) as usize;
                                    let batch = f.pending[j].batch.clone().expect("waiting batches are held");
                                    inflight.push(attempt(self.consumer.clone(), w, false, batch, Duration::ZERO));
                                }
                            }
                        }
                        Outcome::Retry(hint) => {
                            f.backoff = if f.backoff.is_zero() {
                                self.retry.initial_interval
                            } else {
                                (f.backoff * 2).min(self.retry.max_interval)
                            };
                            if let Some(h) = hint {
                                f.backoff = f.backoff.max(h.min(self.retry.max_interval));
                            }
                            f.waiting.insert(seq);
                        }
                    }
                    if !f.retrying {
                        if let Some(&head) = f.waiting.iter().next() {
                            f.waiting.remove(&head);
                            f.retrying = true;
                            let j = (head - f.front) as usize;
                            let batch = f.pending[j].batch.clone().expect("waiting batches are held");
                            inflight.push(attempt(self.consumer.clone(), head, true, batch, f.backoff));
                        }
                    }
                }
                msg = rx.recv(), if !rx_done && room => match msg {
                    Some(msg) => {
                        let seq = f.front + f.pending.len() as u64;
                        let done = msg.batch.is_none();
                        if let Some(batch) = &msg.batch {
                            f.outstanding += 1;
                            if f.retrying || !f.waiting.is_empty() {
                                f.waiting.insert(seq);
                            } else {
                                inflight.push(attempt(self.consumer.clone(), seq, false, batch.clone(), Duration::ZERO));
                            }
                        }
                        f.pending.push_back(Entry {
                            batch: msg.batch,
                            updates: msg.updates,
                            done,
                            refused_since: None,
                        });
                    }
                    None => rx_done = true,
                },
            }
            // Apply, in order, everything settled at the front.
            let mut changed = false;
            while f.pending.front().is_some_and(|e| e.done) {
                let Some(e) = f.pending.pop_front() else {
                    break;
                };
                f.front += 1;
                let mut state = self.committed.lock().unwrap_or_else(|p| p.into_inner());
                apply(&mut state, e.updates);
                changed = true;
            }
            if changed {
                version += 1;
                self.changed.send_replace(version);
            }
            if rx_done && f.pending.is_empty() {
                break;
            }
        }
    }

    /// Records the outcome of one attempt.
    fn settle(&self, e: &mut Entry, result: Result<(), ConsumeError>) -> Outcome {
        let items = e.batch.as_ref().map_or(0, Batch::items);
        let count = u64::try_from(items).unwrap_or(u64::MAX);
        match result {
            Ok(()) => {
                self.metrics.accepted.inc_by(count);
                e.done = true;
                e.batch = None;
                Outcome::Done
            }
            Err(err) => {
                self.metrics.refused.inc_by(count);
                let give_up = match &err {
                    ConsumeError::Permanent(_) => true,
                    ConsumeError::Retryable { .. } => {
                        let since = *e.refused_since.get_or_insert_with(Instant::now);
                        !self.retry.enabled
                            || (!self.retry.max_elapsed_time.is_zero()
                                && since.elapsed() >= self.retry.max_elapsed_time)
                    }
                };
                if give_up {
                    self.dropped.inc_by(count);
                    tracing::error!(
                        receiver = %self.id,
                        log_records = items,
                        error = %err,
                        "the pipeline refused a batch; its lines are dropped"
                    );
                    e.done = true;
                    e.batch = None;
                    return Outcome::Done;
                }
                tracing::warn!(
                    receiver = %self.id,
                    log_records = items,
                    error = %err,
                    "the pipeline refused a batch; reading pauses and the batch is sent again"
                );
                match err {
                    ConsumeError::Retryable { retry_after, .. } => Outcome::Retry(retry_after),
                    ConsumeError::Permanent(_) => Outcome::Retry(None),
                }
            }
        }
    }
}

/// Serializes the committed state.
pub fn snapshot(committed: &Committed) -> Vec<u8> {
    let files: Vec<FileState> = committed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    let stored = Stored {
        version: STORE_VERSION,
        files,
    };
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// Writes the committed state each time it changes (the latest version
/// only), and once more when the committer is gone.
pub async fn persist(
    id: ComponentId,
    store: Arc<dyn KeyValueStore>,
    committed: Committed,
    mut changed: watch::Receiver<u64>,
    errors: Counter,
) {
    let write = |store: Arc<dyn KeyValueStore>| {
        let bytes = snapshot(&committed);
        let id = id.clone();
        let errors = errors.clone();
        async move {
            let r = tokio::task::spawn_blocking(move || store.set(STORE_KEY, &bytes)).await;
            if let Err(e) = r.unwrap_or_else(|e| Err(sluice_core::ComponentError::new(e))) {
                errors.inc();
                tracing::error!(receiver = %id, error = %e, "cannot store the read offsets");
            }
        }
    };
    // Version 0 is the state loaded at start, already on disk. (Not the
    // version current when this task first runs: under load the committer
    // may have moved on, or even finished, before then.)
    let mut written = 0u64;
    loop {
        let version = *changed.borrow_and_update();
        if version != written {
            written = version;
            write(store.clone()).await;
            continue;
        }
        if changed.changed().await.is_err() {
            // The committer is gone: write its last state if not yet done.
            if *changed.borrow() != written {
                write(store.clone()).await;
            }
            break;
        }
    }
}

/// Reads the stored state; a damaged one is reported and ignored.
pub fn load(id: &ComponentId, store: &dyn KeyValueStore) -> Result<Vec<FileState>, String> {
    match store.get(STORE_KEY).map_err(|e| e.to_string())? {
        None => Ok(Vec::new()),
        Some(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
            Ok(s) if s.version == STORE_VERSION => Ok(s.files),
            Ok(s) => Err(format!(
                "stored offsets have version {}, expected {STORE_VERSION}",
                s.version
            )),
            Err(e) => {
                tracing::error!(receiver = %id, error = %e, "the stored read offsets are damaged; starting without them");
                Ok(Vec::new())
            }
        },
    }
}
