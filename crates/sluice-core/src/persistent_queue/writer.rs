//! The writer thread: the only code that writes files while the queue runs.
//!
//! Every push, ack and sync request goes through one channel to this thread.
//! Each turn of its loop takes everything waiting in the channel, so pushes
//! that arrive while it is busy are written together with one `write` and
//! (with `fsync`) one `fdatasync`: group commit, the cost of a sync shared by
//! every concurrent push. Only then are the records made visible to `next()`
//! and the pushers answered.
//!
//! A dedicated thread rather than `spawn_blocking` per push: the file and
//! the batching state live in one place, no lock is held across I/O, and
//! the async runtime's threads never wait on the disk.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{debug, error, warn};

use super::acklog::{sync_dir, AckLog};
use super::segment::{self, RecordLoc};
use super::{io_error, QueueError, Seq, Shared};

/// How long acks may sit written but not fsynced. A lost ack only replays a
/// record twice, so this trades a little duplication after a power loss for
/// not syncing on every ack.
const ACK_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Upper bounds on one group commit, so a flood of pushes still gets
/// answered in steady steps.
const MAX_BATCH_RECORDS: usize = 4096;
const MAX_BATCH_BYTES: u64 = 16 << 20;

pub(super) type PushReply = oneshot::Sender<Result<Seq, QueueError>>;

pub(super) enum Cmd {
    /// Write a record; the reply carries its sequence number.
    Push { payload: Vec<u8>, reply: PushReply },
    /// A record was acknowledged; `delete` is its segment's file if that
    /// segment has nothing live left.
    Acked { seq: Seq, delete: Option<PathBuf> },
    /// Write and fsync every ack received so far, then reply.
    Sync {
        reply: Option<oneshot::Sender<Result<(), QueueError>>>,
    },
}

struct PushReq {
    payload: Vec<u8>,
    reply: PushReply,
}

/// Everything taken from the channel in one turn.
#[derive(Default)]
struct Turn {
    pushes: Vec<PushReq>,
    push_bytes: u64,
    acks: Vec<Seq>,
    deletes: Vec<PathBuf>,
    syncs: Vec<Option<oneshot::Sender<Result<(), QueueError>>>>,
}

impl Turn {
    fn add(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Push { payload, reply } => {
                self.push_bytes += segment::frame_len(payload.len());
                self.pushes.push(PushReq { payload, reply });
            }
            Cmd::Acked { seq, delete } => {
                self.acks.push(seq);
                self.deletes.extend(delete);
            }
            Cmd::Sync { reply } => self.syncs.push(reply),
        }
    }

    fn is_full(&self) -> bool {
        self.pushes.len() >= MAX_BATCH_RECORDS || self.push_bytes >= MAX_BATCH_BYTES
    }
}

/// The segment being appended to.
struct Active {
    first: Seq,
    path: PathBuf,
    file: File,
    len: u64,
}

pub(super) struct Writer {
    shared: Arc<Shared>,
    rx: Receiver<Cmd>,
    active: Option<Active>,
    acklog: AckLog,
    next_seq: Seq,
    last_ack_sync: Instant,
}

impl Writer {
    pub(super) fn new(
        shared: Arc<Shared>,
        rx: Receiver<Cmd>,
        acklog: AckLog,
        next_seq: Seq,
    ) -> Writer {
        Writer {
            shared,
            rx,
            active: None,
            acklog,
            next_seq,
            last_ack_sync: Instant::now(),
        }
    }

    /// Runs until every queue handle is gone, then syncs what it wrote.
    pub(super) fn run(mut self) {
        loop {
            let mut turn = Turn::default();
            match self.rx.recv_timeout(ACK_SYNC_INTERVAL) {
                Ok(cmd) => turn.add(cmd),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while !turn.is_full() {
                match self.rx.try_recv() {
                    Ok(cmd) => turn.add(cmd),
                    Err(_) => break,
                }
            }
            self.take_turn(turn);
        }
        self.finish();
    }

    fn take_turn(&mut self, turn: Turn) {
        self.write_pushes(turn.pushes);
        self.persist_acks(&turn.acks);
        for path in &turn.deletes {
            delete_segment(path);
        }
        let due = self.acklog.is_dirty() && self.last_ack_sync.elapsed() >= ACK_SYNC_INTERVAL;
        if !turn.syncs.is_empty() || due {
            let result = self.sync_acks();
            for reply in turn.syncs.into_iter().flatten() {
                let _ = reply.send(result.as_ref().map_err(QueueError::share).copied());
            }
        }
        self.compact_if_due();
    }

    /// Writes the pushes of one turn, in order, rolling segments as they
    /// fill. Each run of records that lands in one segment is one write and
    /// at most one fsync.
    fn write_pushes(&mut self, pushes: Vec<PushReq>) {
        let mut pending = pushes.into_iter().peekable();
        while let Some(first) = pending.peek() {
            let first_frame = segment::frame_len(first.payload.len());
            let active_first = match self.ensure_room(first_frame) {
                Ok(seg) => seg,
                Err(e) => {
                    self.fail(pending.collect(), &e);
                    return;
                }
            };
            let mut offset = self.active.as_ref().map_or(0, |a| a.len);
            let mut buf = Vec::new();
            let mut locs = Vec::new();
            let mut replies = Vec::new();
            while let Some(next) = pending.peek() {
                let frame = segment::frame_len(next.payload.len());
                if !locs.is_empty() && offset + frame > self.shared.cfg.segment_bytes {
                    break; // the rest goes to the next segment
                }
                let Some(req) = pending.next() else { break };
                let seq = self.next_seq;
                self.next_seq += 1;
                segment::encode_into(&mut buf, seq, &req.payload);
                locs.push(RecordLoc {
                    seq,
                    offset,
                    len: req.payload.len() as u32,
                });
                replies.push(req.reply);
                offset += frame;
            }
            self.append_run(active_first, &buf, &locs, replies);
        }
    }

    /// Makes sure there is an active segment that can take a record of
    /// `frame` bytes (an oversized record gets an empty segment of its own);
    /// returns its first sequence number.
    fn ensure_room(&mut self, frame: u64) -> Result<Seq, QueueError> {
        match &self.active {
            Some(a) if a.len == 0 || a.len + frame <= self.shared.cfg.segment_bytes => Ok(a.first),
            _ => self.roll(),
        }
    }

    /// Starts a new segment named by the next sequence number.
    fn roll(&mut self) -> Result<Seq, QueueError> {
        let first = self.next_seq;
        let dir = &self.shared.cfg.dir;
        let path = dir.join(segment::file_name(first));
        let (file, reader) = create_segment(&path)?;
        if self.shared.cfg.fsync {
            // The new file's directory entry must survive a power loss too.
            sync_dir(dir)?;
        }
        let retired = self
            .shared
            .lock()
            .start_segment(first, path.clone(), Arc::new(reader));
        if let Some(old) = retired {
            delete_segment(&old);
        }
        debug!(segment = %path.display(), "persistent queue: new segment");
        self.active = Some(Active {
            first,
            path,
            file,
            len: 0,
        });
        Ok(first)
    }

    /// Writes one run of framed records to the active segment, syncs it if
    /// configured, then publishes the records and answers their pushers.
    fn append_run(
        &mut self,
        segment: Seq,
        buf: &[u8],
        locs: &[RecordLoc],
        replies: Vec<PushReply>,
    ) {
        let fsync = self.shared.cfg.fsync;
        let Some(active) = self.active.as_mut() else {
            return; // ensure_room just made one; unreachable in practice
        };
        let written = active
            .file
            .write_all(buf)
            .and_then(|()| {
                if fsync {
                    active.file.sync_data()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| io_error(&active.path, e));
        match written {
            Ok(()) => {
                active.len += buf.len() as u64;
                self.shared.lock().commit(segment, locs, self.next_seq);
                self.shared.ready.notify_waiters();
                for (reply, loc) in replies.into_iter().zip(locs) {
                    let _ = reply.send(Ok(loc.seq));
                }
            }
            Err(e) => {
                error!(error = %e, "persistent queue: write failed; sealing the segment");
                self.seal_after_error();
                let frames = locs.iter().map(RecordLoc::frame_len).sum();
                self.release(frames);
                for reply in replies {
                    let _ = reply.send(Err(e.share()));
                }
            }
        }
    }

    /// After a failed write or fsync the segment's tail is unknown (a
    /// partial record, or pages the kernel dropped): never append to it
    /// again. Its valid records stay readable; recovery skips the rest.
    fn seal_after_error(&mut self) {
        self.active = None;
        let mut state = self.shared.lock();
        state.advance(self.next_seq);
        let retired = state.seal_active();
        drop(state);
        if let Some(path) = retired {
            delete_segment(&path);
        }
    }

    /// Refuses pushes that could not even get a segment.
    fn fail(&mut self, pushes: Vec<PushReq>, e: &QueueError) {
        error!(error = %e, "persistent queue: cannot start a segment");
        let frames = pushes
            .iter()
            .map(|p| segment::frame_len(p.payload.len()))
            .sum();
        self.release(frames);
        for p in pushes {
            let _ = p.reply.send(Err(e.share()));
        }
    }

    fn release(&self, frames: u64) {
        self.shared.lock().unreserve(frames);
        self.shared.space.notify_waiters();
    }

    fn persist_acks(&mut self, acks: &[Seq]) {
        if let Err(e) = self.acklog.append(acks) {
            // Not fatal: the records will be replayed once more after a
            // restart, which at-least-once delivery allows.
            error!(error = %e, acks = acks.len(), "persistent queue: could not write acks");
        }
    }

    fn sync_acks(&mut self) -> Result<(), QueueError> {
        self.last_ack_sync = Instant::now();
        self.acklog.sync().inspect_err(|e| {
            error!(error = %e, "persistent queue: could not sync the ack log");
        })
    }

    /// Rewrites the ack log once it has grown well past what still matters,
    /// so a long-running queue's log stays proportional to its live
    /// segments. Everything received so far is already appended, and the
    /// snapshot comes from the index, which is ahead of the log: acks still
    /// in the channel are appended again afterwards, which is harmless.
    fn compact_if_due(&mut self) {
        if !self.acklog.wants_compaction() {
            return;
        }
        let (floor, keep) = self.shared.lock().acks_to_keep();
        match AckLog::rewrite(self.acklog.dir(), floor, &keep) {
            Ok(log) => {
                debug!(kept = keep.len(), "persistent queue: compacted the ack log");
                self.acklog = log;
            }
            Err(e) => warn!(error = %e, "persistent queue: ack log compaction failed"),
        }
    }

    /// Last turn: make what was written durable, so a clean shutdown
    /// survives a power loss even with `fsync: false`.
    fn finish(&mut self) {
        let _ = self.sync_acks();
        if let Some(active) = &self.active {
            if let Err(e) = active.file.sync_data() {
                warn!(segment = %active.path.display(), error = %e, "persistent queue: final sync failed");
            }
        }
    }
}

/// Creates a segment file (never reusing a name) and a read handle for it.
fn create_segment(path: &Path) -> Result<(File, File), QueueError> {
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    match File::open(path) {
        Ok(reader) => Ok((file, reader)),
        Err(e) => {
            // Leave no empty file behind whose name a retry would collide with.
            let _ = fs::remove_file(path);
            Err(io_error(path, e))
        }
    }
}

fn delete_segment(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {
            debug!(segment = %path.display(), "persistent queue: segment fully acked, deleted")
        }
        Err(e) => {
            warn!(segment = %path.display(), error = %e, "persistent queue: could not delete a fully acked segment")
        }
    }
}
