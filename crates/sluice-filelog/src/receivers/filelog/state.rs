//! What the reader tells the committer, and what is persisted: per file, its
//! identity (fingerprint), where it was last seen, and how far it has been
//! read *and accepted by the pipeline*.

use serde::{Deserialize, Serialize};
use sluice_core::Batch;

/// FNV-1a, 64 bits: a stable hash of a fingerprint for the stored state
/// (the fingerprint itself, up to `fingerprint_size` bytes, stays in memory).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One tracked file as the committer keeps it and the store holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// Reader-assigned id within this run (not stored).
    #[serde(skip)]
    pub key: u64,
    /// Where the file was last seen (for humans and logs; identity is the
    /// fingerprint).
    pub path: String,
    /// Length of the fingerprint (leading bytes of the file) hashed below.
    pub fingerprint_len: usize,
    /// FNV-1a 64 of those bytes.
    pub fingerprint_hash: u64,
    /// Byte offset of the first byte not yet delivered.
    pub offset: u64,
    /// True when `offset` is inside a line that was cut at `max_log_size`:
    /// the rest of that line is skipped.
    #[serde(default)]
    pub skipping: bool,
}

/// A change to the committed state, applied once everything before it was
/// accepted.
#[derive(Debug, Clone)]
pub enum Update {
    /// File `key` has been delivered up to `offset`.
    Offset {
        key: u64,
        offset: u64,
        skipping: bool,
    },
    /// A file is tracked, or its path, fingerprint or offset changed without
    /// lines (found, renamed, grown past its old fingerprint, truncated).
    Track(FileState),
    /// The file is gone and no longer tracked.
    Forget(u64),
}

/// What the reader sends: a batch (if any lines) and the updates that take
/// effect when it is accepted.
pub struct Msg {
    pub batch: Option<Batch>,
    pub updates: Vec<Update>,
}

/// The stored form.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Stored {
    pub version: u32,
    pub files: Vec<FileState>,
}

/// The key under which the state is stored.
pub const STORE_KEY: &str = "offsets";
pub const STORE_VERSION: u32 = 1;
