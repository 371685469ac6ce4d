//! A persistent on-disk queue: a write-ahead log of segment files plus an
//! ack log, for exporters that must not lose data across a restart.
//!
//! # Layout
//!
//! The queue owns one directory:
//!
//! - `seg-<first seq, 20 digits>.log`: segment files, appended to in order.
//!   Each record is framed as `[magic][len][seq][crc32][payload]` (see
//!   `segment.rs`). A segment is named by its first sequence number, so the
//!   order of the files survives restarts, and it is rolled once it passes
//!   [`QueueConfig::segment_bytes`].
//! - `acks.log`: fixed-size checksummed entries naming acknowledged
//!   sequence numbers (see `acklog.rs`). Acks arrive out of order from
//!   concurrent senders, so it records each one, plus a floor below which
//!   everything is acknowledged. It is compacted on open, and again when it
//!   has grown to twice what still matters.
//! - `LOCK`: an `flock` that keeps a second process (or a second open in
//!   this one) out of the directory.
//!
//! A segment whose records are all acknowledged is deleted, unless it is
//! still being appended to. In memory the queue keeps only an index (sequence
//! number → segment and offset); payloads are read back from the segment
//! when [`PersistentQueue::next`] hands them out, so memory does not grow
//! with `max_bytes`.
//!
//! All writing happens on one writer thread (`writer.rs`). A push hands its
//! payload to that thread and waits; the thread takes every push waiting at
//! that moment, writes them with one `write`, syncs once when
//! [`QueueConfig::fsync`] is set, and only then makes them visible to
//! `next()` and answers the pushers (group commit). Reads for `next()` run on
//! tokio's blocking pool. Neither ever stalls the async runtime on the disk.
//!
//! # Why a segment log rather than an embedded store
//!
//! The workload is a FIFO with out-of-order deletes, which a log fits
//! exactly, and an embedded key-value store or database would only add cost:
//!
//! - **Throughput.** Every push is a sequential append to one open file: no
//!   B-tree or LSM bookkeeping, no write amplification from compaction of
//!   data that is about to be deleted anyway; deleting is unlinking a whole
//!   segment once its last record is acknowledged.
//! - **fsync cost.** With `fsync: true` durability costs one `fdatasync` per
//!   group commit, shared by every push that arrived while the previous one
//!   ran, instead of one or more syncs per transaction. Acks are synced
//!   lazily: a lost ack only means a record is delivered twice, which
//!   at-least-once delivery allows.
//! - **Recovery time.** Segments are deleted as soon as their last record
//!   is acknowledged, so opening reads only segments that still hold
//!   unacknowledged records (plus the one that was being appended to) and
//!   the compacted ack log: proportional to the unacknowledged bytes (up to
//!   one segment's worth of acknowledged neighbours each), not to everything
//!   ever written, with no separate journal to replay first.
//! - **Damage is contained.** Every record carries its own checksum and
//!   sequence number. On open a record that fails its checksum, or a tail
//!   torn by a crash, is skipped and counted in [`Recovery`], and the scan
//!   resumes at the next valid record. The open succeeds; only the damaged
//!   records are lost, where a store whose page or journal fails its own
//!   check would typically refuse to open at all.
//!
//! # Delivery
//!
//! At least once. Records are handed out in push order; a nacked record goes
//! back in front of newer ones. After a restart every record pushed and not
//! acknowledged (handed out or not) is handed out again, in push order.
//! Sequence numbers are not reused across restarts while any file on disk
//! still names them.

mod acklog;
mod lock;
mod recovery;
mod segment;
mod state;
mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::{oneshot, Notify};
use tracing::{debug, error, info, warn};

use self::state::State;
use self::writer::{Cmd, Writer};

/// A record's sequence number: its position in push order.
pub type Seq = u64;

/// Default [`QueueConfig::segment_bytes`].
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Created if missing; the queue owns it exclusively.
    pub dir: PathBuf,
    /// Bound on unacknowledged bytes on disk, records plus framing; a push
    /// beyond it fails with [`QueueError::Full`].
    pub max_bytes: u64,
    /// Roll to a new segment file once the current one would pass this.
    pub segment_bytes: u64,
    /// `true`: a push returns only after its record is fsynced (concurrent
    /// pushes share one fsync). `false`: a push returns once the record is
    /// written to the OS, which survives a process crash but not a power
    /// loss.
    pub fsync: bool,
}

impl QueueConfig {
    /// `max_bytes` in `dir`, default segment size, no fsync per push.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> QueueConfig {
        QueueConfig {
            dir: dir.into(),
            max_bytes,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: false,
        }
    }
}

/// What [`PersistentQueue::open`] found on disk.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovery {
    /// Unacknowledged records that will be handed out again.
    pub records: u64,
    /// Their bytes as counted against `max_bytes` (payload plus framing).
    pub bytes: u64,
    /// Unacknowledged records lost to damage (bad checksum, torn tail). A
    /// damaged tail of the newest segment counts as one record.
    pub corrupted_records: u64,
    /// Bytes skipped as damaged.
    pub corrupted_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("persistent queue: {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("persistent queue is full ({max_bytes} bytes)")]
    Full { max_bytes: u64 },
    #[error("persistent queue is closed")]
    Closed,
    #[error("persistent queue directory {} is already open ({holder} holds its lock)", .dir.display())]
    Locked { dir: PathBuf, holder: String },
    #[error("an item of {len} bytes can never fit in a persistent queue of {max_bytes} bytes")]
    TooLarge { len: usize, max_bytes: u64 },
    #[error("invalid persistent queue config: {0}")]
    Config(String),
}

impl QueueError {
    /// The same error again, for answering every push of a group commit
    /// that failed as one (`io::Error` is not `Clone`).
    fn share(&self) -> QueueError {
        match self {
            QueueError::Io { path, source } => QueueError::Io {
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            QueueError::Full { max_bytes } => QueueError::Full {
                max_bytes: *max_bytes,
            },
            QueueError::Closed => QueueError::Closed,
            QueueError::Locked { dir, holder } => QueueError::Locked {
                dir: dir.clone(),
                holder: holder.clone(),
            },
            QueueError::TooLarge { len, max_bytes } => QueueError::TooLarge {
                len: *len,
                max_bytes: *max_bytes,
            },
            QueueError::Config(msg) => QueueError::Config(msg.clone()),
        }
    }
}

fn io_error(path: &Path, source: io::Error) -> QueueError {
    QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the queue handles and the writer thread share.
struct Shared {
    cfg: QueueConfig,
    state: Mutex<State>,
    /// Records became ready, or the queue closed.
    ready: Notify,
    /// Bytes were freed, or the queue closed.
    space: Notify,
}

impl Shared {
    /// The index lock. Never held across I/O or an await. A panic while
    /// holding it cannot leave the index half-updated in a way that matters
    /// more than stopping would, so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Inner {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Cmd>>,
    writer: Option<JoinHandle<()>>,
    /// Released only after the writer thread has finished (field order).
    _lock: lock::DirLock,
}

impl Drop for Inner {
    /// The last handle is gone: let the writer finish what it has (write the
    /// remaining acks, sync) and wait for it, so the directory is quiet and
    /// unlocked when this returns and can be opened again at once.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                error!(dir = %self.shared.cfg.dir.display(), "persistent queue: writer thread panicked");
            }
        }
    }
}

/// A persistent FIFO of byte records with at-least-once hand-out. Cheap to
/// clone; all clones are the same queue.
#[derive(Clone)]
pub struct PersistentQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PersistentQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentQueue")
            .field("dir", &self.shared().cfg.dir)
            .field("len", &self.len())
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl PersistentQueue {
    /// Opens (or creates) the queue in `cfg.dir` and replays what was not
    /// acknowledged. Damaged records are skipped and counted in the returned
    /// [`Recovery`], never an error; errors are I/O failures, a directory
    /// another queue holds, or a bad config.
    ///
    /// Blocking: it reads the unacknowledged segments. Call it at startup or
    /// from `spawn_blocking`.
    pub fn open(cfg: QueueConfig) -> Result<(PersistentQueue, Recovery), QueueError> {
        validate(&cfg)?;
        std::fs::create_dir_all(&cfg.dir).map_err(|e| io_error(&cfg.dir, e))?;
        let dir_lock = lock::DirLock::acquire(&cfg.dir)?;
        let recovered = recovery::recover(&cfg.dir)?;
        let recovery = recovered.recovery;
        log_recovery(&cfg, &recovery);

        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(recovered.state),
            ready: Notify::new(),
            space: Notify::new(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer::new(
            Arc::clone(&shared),
            rx,
            recovered.acklog,
            recovered.next_seq,
        );
        let handle = std::thread::Builder::new()
            .name("sluice-queue-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| io_error(&shared.cfg.dir, e))?;
        let inner = Inner {
            shared,
            tx: Some(tx),
            writer: Some(handle),
            _lock: dir_lock,
        };
        Ok((
            PersistentQueue {
                inner: Arc::new(inner),
            },
            recovery,
        ))
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    fn send(&self, cmd: Cmd) -> Result<(), QueueError> {
        let tx = self.inner.tx.as_ref().ok_or(QueueError::Closed)?;
        tx.send(cmd).map_err(|_| QueueError::Closed)
    }

    /// Appends a record. When it returns `Ok` the record is on disk (fsynced
    /// if [`QueueConfig::fsync`]) and will be handed out by `next()`.
    /// [`QueueError::Full`] when it would take the queue past `max_bytes`,
    /// [`QueueError::Closed`] after [`PersistentQueue::close`].
    ///
    /// Cancelling the future after the record was handed to the writer does
    /// not withdraw it: it is still written and handed out.
    pub async fn push(&self, item: &[u8]) -> Result<Seq, QueueError> {
        let shared = self.shared();
        let max_bytes = shared.cfg.max_bytes;
        let frame = segment::frame_len(item.len());
        if u32::try_from(item.len()).is_err() || frame > max_bytes {
            return Err(QueueError::TooLarge {
                len: item.len(),
                max_bytes,
            });
        }
        shared.lock().reserve(frame, max_bytes)?;
        let (reply, answer) = oneshot::channel();
        let cmd = Cmd::Push {
            payload: item.to_vec(),
            reply,
        };
        if let Err(e) = self.send(cmd) {
            shared.lock().unreserve(frame);
            shared.space.notify_waiters();
            return Err(e);
        }
        // The writer answers every push; no answer means it is gone.
        answer.await.unwrap_or(Err(QueueError::Closed))
    }

    /// Resolves when a push of a typical item may fit again: the item most
    /// recently refused as full, or else one of the average size queued. Also
    /// resolves once the queue is closed (the push will then say so). A
    /// block-on-overflow caller loops: push, on `Full` wait here, push again.
    pub async fn wait_for_space(&self) {
        let shared = self.shared();
        loop {
            let freed = shared.space.notified();
            tokio::pin!(freed);
            // Register before checking, so a release in between is not missed.
            freed.as_mut().enable();
            if shared.lock().has_room(shared.cfg.max_bytes) {
                return;
            }
            freed.await;
        }
    }

    /// The oldest record not handed out yet (nacked ones first, in order),
    /// waiting for one if there is none. `None` once the queue is closed.
    ///
    /// Cancel-safe: a record taken off the queue by a `next()` that is
    /// dropped before returning goes back to the front.
    pub async fn next(&self) -> Option<(Seq, Vec<u8>)> {
        loop {
            let handout = self.take_ready().await?;
            let seq = handout.seq;
            let mut guard = HandoutGuard {
                queue: self,
                seq: Some(seq),
            };
            let read = tokio::task::spawn_blocking(move || {
                segment::read_record(&handout.reader, handout.rec)
            })
            .await;
            guard.seq = None;
            match read {
                Ok(Ok(payload)) => return Some((seq, payload)),
                Ok(Err(e)) => self.discard_unreadable(seq, &e),
                Err(e) => {
                    // The blocking pool is gone (runtime shutting down).
                    warn!(seq, error = %e, "persistent queue: read did not run");
                    self.nack(seq);
                    return None;
                }
            }
        }
    }

    async fn take_ready(&self) -> Option<state::Handout> {
        let shared = self.shared();
        loop {
            let ready = shared.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut state = shared.lock();
                if state.is_closed() {
                    return None;
                }
                if let Some(handout) = state.take_ready() {
                    return Some(handout);
                }
            }
            ready.await;
        }
    }

    /// A record that no longer reads back as written (the disk changed under
    /// the queue) cannot be delivered; retrying would fail forever, so it is
    /// dropped, loudly.
    fn discard_unreadable(&self, seq: Seq, e: &io::Error) {
        error!(seq, error = %e, dir = %self.shared().cfg.dir.display(), "persistent queue: dropping an unreadable record");
        self.ack(seq);
    }

    /// Done with a record: it is never handed out again, not even after a
    /// restart (once the ack is on disk, which happens within about a
    /// second, or at [`PersistentQueue::flush`] or shutdown). Unknown or
    /// repeated acks are ignored.
    pub fn ack(&self, seq: Seq) {
        let shared = self.shared();
        let Some(delete) = shared.lock().ack(seq) else {
            debug!(seq, "persistent queue: ack for an unknown record ignored");
            return;
        };
        shared.space.notify_waiters();
        // If the writer is gone the ack is lost: the record is replayed once
        // more after a restart.
        let _ = self.send(Cmd::Acked { seq, delete });
    }

    /// Hands a record out again, before every newer record.
    pub fn nack(&self, seq: Seq) {
        let shared = self.shared();
        if shared.lock().nack(seq) {
            shared.ready.notify_waiters();
        }
    }

    /// Stops handing out: pending and future `next()` calls return `None`,
    /// pushes fail with [`QueueError::Closed`]. Acks and nacks still work, and
    /// everything unacknowledged stays on disk for the next open. The
    /// directory stays locked until the last handle is dropped.
    pub fn close(&self) {
        let shared = self.shared();
        shared.lock().close();
        shared.ready.notify_waiters();
        shared.space.notify_waiters();
        let _ = self.send(Cmd::Sync { reply: None });
    }

    /// Waits until every ack so far is written and fsynced, and every fully
    /// acknowledged segment is deleted.
    pub async fn flush(&self) -> Result<(), QueueError> {
        let (reply, answer) = oneshot::channel();
        self.send(Cmd::Sync { reply: Some(reply) })?;
        answer.await.unwrap_or(Err(QueueError::Closed))
    }

    /// Records pushed and not acknowledged, including handed-out ones.
    pub fn len(&self) -> usize {
        self.shared().lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Unacknowledged bytes on disk (payload plus framing), plus pushes being
    /// written: what counts against `max_bytes`.
    pub fn bytes(&self) -> u64 {
        self.shared().lock().bytes()
    }
}

/// Puts a record back if `next()` is dropped while reading it.
struct HandoutGuard<'a> {
    queue: &'a PersistentQueue,
    seq: Option<Seq>,
}

impl Drop for HandoutGuard<'_> {
    fn drop(&mut self) {
        if let Some(seq) = self.seq.take() {
            self.queue.nack(seq);
        }
    }
}

fn validate(cfg: &QueueConfig) -> Result<(), QueueError> {
    let min = segment::frame_len(1);
    if cfg.max_bytes < min {
        return Err(QueueError::Config(format!(
            "max_bytes must be at least {min} (one record of one byte)"
        )));
    }
    if cfg.segment_bytes == 0 {
        return Err(QueueError::Config("segment_bytes must be positive".into()));
    }
    Ok(())
}

fn log_recovery(cfg: &QueueConfig, recovery: &Recovery) {
    let dir = cfg.dir.display();
    if recovery.corrupted_records > 0 || recovery.corrupted_bytes > 0 {
        warn!(
            %dir,
            corrupted_records = recovery.corrupted_records,
            corrupted_bytes = recovery.corrupted_bytes,
            "persistent queue: damaged records were skipped"
        );
    }
    if recovery.bytes > cfg.max_bytes {
        warn!(%dir, bytes = recovery.bytes, max_bytes = cfg.max_bytes, "persistent queue: recovered more than max_bytes; pushes are refused until it drains");
    }
    info!(
        %dir,
        records = recovery.records,
        bytes = recovery.bytes,
        "persistent queue opened"
    );
}
