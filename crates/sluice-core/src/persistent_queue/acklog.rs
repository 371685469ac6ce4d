//! The ack log: which records are done, so a restart does not replay them.
//!
//! Acks arrive out of order, so "everything below N" is not enough; the log
//! is a list of fixed-size entries, each an acknowledged sequence number or a
//! floor ("every sequence number below this one is acknowledged"). Fixed-size
//! entries with their own checksum mean a torn or damaged entry costs only
//! itself: the worst a lost ack can do is replay one record twice.
//!
//! ```text
//! offset  size  field
//!      0     4  tag    b"ACK1" (one record) or b"FLR1" (floor)
//!      4     8  seq    little endian
//!     12     4  crc    CRC-32 of bytes 0..12
//! ```
//!
//! The log is appended to while the queue runs and rewritten (compacted) on
//! open and whenever it has grown well past what still matters: acks for
//! records in segments that were deleted are dropped, and the floor stands
//! in for every ack below the oldest unacknowledged record.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

use super::{io_error, QueueError, Seq};

/// The ack log's file name inside the queue directory.
pub(super) const FILE_NAME: &str = "acks.log";
/// Where a compaction writes before it atomically replaces the log.
pub(super) const TMP_NAME: &str = "acks.log.tmp";

const ENTRY_LEN: usize = 16;
const TAG_ACK: [u8; 4] = *b"ACK1";
const TAG_FLOOR: [u8; 4] = *b"FLR1";

/// Compact while running only once the log holds at least this many entries
/// (1 MiB) and twice as many as the last compaction kept: rewriting costs
/// about as much as what it keeps, so this keeps the cost per ack constant.
#[cfg(not(test))]
pub(super) const COMPACT_MIN_ENTRIES: u64 = 1 << 16;
/// Small in tests, so that compaction while running is exercised.
#[cfg(test)]
pub(super) const COMPACT_MIN_ENTRIES: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Ack(Seq),
    Floor(Seq),
}

fn encode(entry: Entry, buf: &mut Vec<u8>) {
    let (tag, seq) = match entry {
        Entry::Ack(seq) => (TAG_ACK, seq),
        Entry::Floor(seq) => (TAG_FLOOR, seq),
    };
    let start = buf.len();
    buf.extend_from_slice(&tag);
    buf.extend_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&buf[start..]);
    buf.extend_from_slice(&crc.to_le_bytes());
}

fn decode(chunk: &[u8]) -> Option<Entry> {
    if chunk.len() != ENTRY_LEN {
        return None;
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&chunk[12..16]);
    if crc32fast::hash(&chunk[..12]) != u32::from_le_bytes(crc) {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&chunk[4..12]);
    let seq = Seq::from_le_bytes(seq);
    match [chunk[0], chunk[1], chunk[2], chunk[3]] {
        TAG_ACK => Some(Entry::Ack(seq)),
        TAG_FLOOR => Some(Entry::Floor(seq)),
        _ => None,
    }
}

/// Everything the ack log says, as read on open.
#[derive(Debug, Default)]
pub(super) struct Acks {
    /// Every sequence number below this is acknowledged.
    pub floor: Seq,
    /// Acknowledged sequence numbers at or above the floor.
    pub acked: BTreeSet<Seq>,
    /// Entries that failed their checksum (or a torn last entry).
    pub bad_entries: u64,
}

impl Acks {
    pub(super) fn is_acked(&self, seq: Seq) -> bool {
        seq < self.floor || self.acked.contains(&seq)
    }

    /// The lowest sequence number that no entry mentions and that is above
    /// every entry: new records must start at or above it, or an old ack
    /// would swallow them.
    pub(super) fn next_free(&self) -> Seq {
        let after_acks = self.acked.last().map_or(0, |s| s.saturating_add(1));
        self.floor.max(after_acks)
    }
}

/// Reads the ack log in `dir`; a missing log means nothing is acknowledged.
/// Damaged entries are skipped and counted, never an error.
pub(super) fn read(dir: &Path) -> Result<Acks, QueueError> {
    let path = dir.join(FILE_NAME);
    let data = match fs::read(&path) {
        Ok(data) => data,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Acks::default()),
        Err(e) => return Err(io_error(&path, e)),
    };
    let mut acks = Acks::default();
    for chunk in data.chunks(ENTRY_LEN) {
        match decode(chunk) {
            Some(Entry::Ack(seq)) => {
                acks.acked.insert(seq);
            }
            Some(Entry::Floor(seq)) => acks.floor = acks.floor.max(seq),
            None => acks.bad_entries += 1,
        }
    }
    // Entries written before a later floor are implied by it.
    let floor = acks.floor;
    acks.acked.retain(|&seq| seq >= floor);
    Ok(acks)
}

/// The open ack log, owned by the writer thread.
#[derive(Debug)]
pub(super) struct AckLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Entries in the file now.
    entries: u64,
    /// Entries the last compaction wrote.
    kept: u64,
    /// Appended to since the last fsync.
    dirty: bool,
}

impl AckLog {
    /// Atomically replaces the log in `dir` with one holding only `floor`
    /// and `acks`, durably (the new log is fsynced before the rename, the
    /// directory after it), and opens it for appending.
    pub(super) fn rewrite(dir: &Path, floor: Seq, acks: &[Seq]) -> Result<AckLog, QueueError> {
        let path = dir.join(FILE_NAME);
        let tmp = dir.join(TMP_NAME);
        let mut buf = Vec::with_capacity((acks.len() + 1) * ENTRY_LEN);
        encode(Entry::Floor(floor), &mut buf);
        for &seq in acks {
            encode(Entry::Ack(seq), &mut buf);
        }
        // The handle written here stays valid across the rename, and its
        // cursor is at the end: appends continue right after the entries.
        let file = write_synced(&tmp, &buf).map_err(|e| io_error(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
        if let Err(e) = sync_dir(dir) {
            // The rename itself happened; only its durability is in doubt,
            // and the old log it replaced said no less.
            warn!(error = %e, "persistent queue: could not sync the directory after compacting the ack log");
        }
        let entries = acks.len() as u64 + 1;
        Ok(AckLog {
            dir: dir.to_path_buf(),
            path,
            file,
            entries,
            kept: entries,
            dirty: false,
        })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends acks, written to the OS but not fsynced (see [`AckLog::sync`]).
    pub(super) fn append(&mut self, seqs: &[Seq]) -> Result<(), QueueError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(seqs.len() * ENTRY_LEN);
        for &seq in seqs {
            encode(Entry::Ack(seq), &mut buf);
        }
        self.file
            .write_all(&buf)
            .map_err(|e| io_error(&self.path, e))?;
        self.entries += seqs.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Whether anything was appended since the last fsync.
    pub(super) fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub(super) fn sync(&mut self) -> Result<(), QueueError> {
        if self.dirty {
            self.file.sync_data().map_err(|e| io_error(&self.path, e))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Whether the log has grown enough that rewriting it pays off.
    pub(super) fn wants_compaction(&self) -> bool {
        self.entries >= COMPACT_MIN_ENTRIES && self.entries >= self.kept.saturating_mul(2)
    }
}

fn write_synced(path: &Path, data: &[u8]) -> io::Result<File> {
    let mut file = File::create(path)?;
    file.write_all(data)?;
    file.sync_all()?;
    Ok(file)
}

/// Makes file creations, renames and deletions in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let mut buf = Vec::new();
        encode(Entry::Ack(7), &mut buf);
        encode(Entry::Floor(3), &mut buf);
        assert_eq!(decode(&buf[..16]), Some(Entry::Ack(7)));
        assert_eq!(decode(&buf[16..]), Some(Entry::Floor(3)));
        buf[5] ^= 0x40;
        assert_eq!(decode(&buf[..16]), None);
        assert_eq!(decode(&buf[16..20]), None, "a torn entry is not an entry");
    }
}
