//! Opening a queue directory: rebuild the index from the segments and the
//! ack log, count what was damaged, compact the ack log, delete what is
//! fully acknowledged.
//!
//! The order of the steps matters for crash safety: the compacted ack log is
//! durable before any segment is deleted. The next sequence number is
//! derived from what is on disk (segment names, record sequence numbers, the
//! ack log), so it must never fall back to a number an old ack still names,
//! or that ack would swallow a new record.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{debug, warn};

use super::acklog::{self, AckLog, Acks};
use super::segment::{self, Damage, RecordLoc, Scan};
use super::state::State;
use super::{io_error, lock, QueueError, Recovery, Seq};

pub(super) struct Recovered {
    pub state: State,
    pub recovery: Recovery,
    pub acklog: AckLog,
    pub next_seq: Seq,
}

/// One segment file as found on open.
struct Found {
    first: Seq,
    path: PathBuf,
    /// Its records that are not acknowledged.
    live: Vec<RecordLoc>,
    /// Highest valid sequence number in it.
    max_seq: Option<Seq>,
    /// One past the highest sequence number it may hold.
    end: Seq,
}

pub(super) fn recover(dir: &Path) -> Result<Recovered, QueueError> {
    remove_stale_tmp(dir);
    let files = list_segments(dir)?;
    let acks = acklog::read(dir)?;
    if acks.bad_entries > 0 {
        warn!(
            dir = %dir.display(),
            entries = acks.bad_entries,
            "persistent queue: damaged ack log entries skipped; their records may be delivered again"
        );
    }

    let mut recovery = Recovery::default();
    let mut found = Vec::with_capacity(files.len());
    for (i, (first, path)) in files.iter().enumerate() {
        let next = files.get(i + 1).map(|(seq, _)| *seq);
        found.push(recover_segment(*first, path, next, &acks, &mut recovery)?);
    }

    let next_seq = next_seq(&found, &acks);
    let mut state = State::new(next_seq);
    let mut dead = Vec::new();
    for seg in found {
        if seg.live.is_empty() {
            dead.push(seg.path);
            continue;
        }
        let reader = File::open(&seg.path).map_err(|e| io_error(&seg.path, e))?;
        state.add_recovered(seg.first, seg.path, Arc::new(reader), seg.end, &seg.live);
    }

    // The compacted log first, then the deletions: see the module docs.
    let (floor, keep) = state.acks_to_keep();
    let acklog = AckLog::rewrite(dir, floor, &keep)?;
    for path in &dead {
        if let Err(e) = fs::remove_file(path) {
            warn!(segment = %path.display(), error = %e, "persistent queue: could not delete a fully acked segment");
        }
    }

    recovery.records = state.len() as u64;
    recovery.bytes = state.bytes();
    Ok(Recovered {
        state,
        recovery,
        acklog,
        next_seq,
    })
}

/// New records start above everything any file still names.
fn next_seq(found: &[Found], acks: &Acks) -> Seq {
    let after_records = found
        .iter()
        .filter_map(|f| f.max_seq)
        .max()
        .map_or(0, |s| s.saturating_add(1));
    // An empty newest segment still names a sequence number: start past it
    // so the new segment's name cannot collide with it.
    let after_names = found.last().map_or(0, |f| f.first.saturating_add(1));
    acks.next_free().max(after_records).max(after_names)
}

/// Scans one segment, counts its damage and keeps its unacknowledged
/// records. `next` is the following segment's first sequence number (`None`
/// for the newest segment, the only one a crash can have left half-written).
fn recover_segment(
    first: Seq,
    path: &Path,
    next: Option<Seq>,
    acks: &Acks,
    recovery: &mut Recovery,
) -> Result<Found, QueueError> {
    let data = fs::read(path).map_err(|e| io_error(path, e))?;
    let scan = segment::scan(&data, first, next.unwrap_or(Seq::MAX));
    for damage in &scan.damage {
        let lost = lost_records(damage, first, next, acks);
        recovery.corrupted_records += lost;
        recovery.corrupted_bytes += damage.bytes.end - damage.bytes.start;
        warn!(
            segment = %path.display(),
            offset = damage.bytes.start,
            bytes = damage.bytes.end - damage.bytes.start,
            records = lost,
            "persistent queue: damaged data skipped"
        );
    }
    if next.is_none() {
        truncate_torn_tail(path, &scan, data.len() as u64);
    }
    let max_seq = scan.records.last().map(|r| r.seq);
    let end = next.unwrap_or_else(|| max_seq.map_or(first, |s| s.saturating_add(1)));
    let live: Vec<RecordLoc> = scan
        .records
        .into_iter()
        .filter(|r| !acks.is_acked(r.seq))
        .collect();
    debug!(segment = %path.display(), live = live.len(), "persistent queue: segment recovered");
    Ok(Found {
        first,
        path: path.to_path_buf(),
        live,
        max_seq,
        end,
    })
}

/// How many unacknowledged records a damaged run destroyed. Between two
/// valid records (or a segment boundary) that is exactly the sequence
/// numbers missing there; at the end of the newest segment nothing bounds
/// it, so it counts as the one record that was being written.
fn lost_records(damage: &Damage, first: Seq, next: Option<Seq>, acks: &Acks) -> u64 {
    let low = damage.after.map_or(first, |s| s.saturating_add(1));
    let Some(high) = damage.before.or(next) else {
        return 1;
    };
    let low = low.max(acks.floor);
    if high <= low {
        return 0;
    }
    let acked = acks.acked.range(low..high).count() as u64;
    (high - low).saturating_sub(acked)
}

/// Cuts damage off the end of the newest segment. It is what a crash in the
/// middle of a write leaves; once gone it is not counted again on the next
/// open. Failing to cut is harmless (it is skipped again), so only logged.
fn truncate_torn_tail(path: &Path, scan: &Scan, file_len: u64) {
    if scan.valid_end >= file_len {
        return;
    }
    let cut = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(scan.valid_end).and_then(|()| f.sync_all()));
    if let Err(e) = cut {
        warn!(segment = %path.display(), error = %e, "persistent queue: could not truncate a torn tail");
    }
}

/// The segment files in `dir`, oldest first.
fn list_segments(dir: &Path) -> Result<Vec<(Seq, PathBuf)>, QueueError> {
    let mut segments = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(first) = segment::parse_file_name(&name) {
            segments.push((first, entry.path()));
        } else if ![lock::FILE_NAME, acklog::FILE_NAME, acklog::TMP_NAME].contains(&&*name) {
            warn!(file = %entry.path().display(), "persistent queue: ignoring a file it does not own");
        }
    }
    segments.sort_unstable_by_key(|(first, _)| *first);
    Ok(segments)
}

/// A compaction that crashed before its rename leaves this behind.
fn remove_stale_tmp(dir: &Path) {
    let tmp = dir.join(acklog::TMP_NAME);
    if tmp.exists() {
        if let Err(e) = fs::remove_file(&tmp) {
            warn!(file = %tmp.display(), error = %e, "persistent queue: could not remove a stale temporary file");
        }
    }
}
