//! Segment files: record framing, naming, the recovery scan and reading one
//! record back.
//!
//! A record on disk is a 20-byte header followed by the payload:
//!
//! ```text
//! offset  size  field
//!      0     4  magic  b"SLQ1"   (lets the scan find the next record after damage)
//!      4     4  len    payload length, little endian
//!      8     8  seq    the record's sequence number, little endian
//!     16     4  crc    CRC-32 of bytes 4..16 (len, seq) followed by the payload
//!     20   len  payload
//! ```
//!
//! The checksum covers the length and the sequence number as well as the
//! payload, so a damaged length is caught instead of sending the scan into
//! the middle of the next record. Storing the sequence number in every
//! record (rather than deriving it from the position) means a damaged record
//! in the middle of a segment does not shift the numbering of the records
//! after it, and tells recovery exactly which sequence numbers were lost.

use std::fs::File;
use std::io;
use std::ops::Range;

use super::Seq;

/// Marks the start of every record.
pub(super) const MAGIC: [u8; 4] = *b"SLQ1";
/// Bytes of framing in front of every payload.
pub(super) const HEADER_LEN: usize = 20;

const FILE_PREFIX: &str = "seg-";
const FILE_SUFFIX: &str = ".log";
/// Digits of the zero-padded first sequence number in a file name, enough for
/// any u64, so that lexical order is numeric order.
const SEQ_DIGITS: usize = 20;

/// Bytes one record of `payload_len` bytes takes on disk.
pub(super) fn frame_len(payload_len: usize) -> u64 {
    HEADER_LEN as u64 + payload_len as u64
}

/// The file name of the segment whose first record is `first`.
pub(super) fn file_name(first: Seq) -> String {
    format!(
        "{FILE_PREFIX}{first:0width$}{FILE_SUFFIX}",
        width = SEQ_DIGITS
    )
}

/// The first sequence number encoded in a segment file name, or `None` when
/// the name is not one of ours.
pub(super) fn parse_file_name(name: &str) -> Option<Seq> {
    let digits = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn checksum(len_and_seq: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len_and_seq);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends the framed record to `buf`. The caller guarantees
/// `payload.len() <= u32::MAX` (push refuses larger items).
pub(super) fn encode_into(buf: &mut Vec<u8>, seq: Seq, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut len_and_seq = [0u8; 12];
    len_and_seq[..4].copy_from_slice(&len.to_le_bytes());
    len_and_seq[4..].copy_from_slice(&seq.to_le_bytes());
    let crc = checksum(&len_and_seq, payload);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&len_and_seq);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(payload);
}

/// The fields of a record header read back from disk.
struct Header {
    len: u32,
    seq: Seq,
    crc: u32,
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(word)
}

/// Parses a header at the start of `bytes`; `None` when there are not
/// enough bytes for one or the magic is missing.
fn parse_header(bytes: &[u8]) -> Option<Header> {
    if bytes.len() < HEADER_LEN || bytes[..4] != MAGIC {
        return None;
    }
    Some(Header {
        len: le_u32(&bytes[4..8]),
        seq: le_u64(&bytes[8..16]),
        crc: le_u32(&bytes[16..20]),
    })
}

/// Where one valid record sits in its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordLoc {
    pub seq: Seq,
    /// Offset of the record's header in the file.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
}

impl RecordLoc {
    pub(super) fn frame_len(&self) -> u64 {
        frame_len(self.len as usize)
    }
}

/// A run of bytes that holds no valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Damage {
    pub bytes: Range<u64>,
    /// Sequence number of the valid record just before the damage, if any.
    pub after: Option<Seq>,
    /// Sequence number of the valid record just after the damage; `None`
    /// when the damage runs to the end of the file.
    pub before: Option<Seq>,
}

/// What a scan of one segment found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub records: Vec<RecordLoc>,
    pub damage: Vec<Damage>,
    /// End of the last valid record: everything after it is damage.
    pub valid_end: u64,
}

/// Decodes the record at `pos` if it is whole, its checksum matches and its
/// sequence number lies in `seqs` (records in a segment have increasing
/// sequence numbers, all below the next segment's first).
fn decode_at(data: &[u8], pos: usize, seqs: &Range<Seq>) -> Option<RecordLoc> {
    let header = parse_header(data.get(pos..)?)?;
    let start = pos.checked_add(HEADER_LEN)?;
    let end = start.checked_add(header.len as usize)?;
    let payload = data.get(start..end)?;
    if !seqs.contains(&header.seq) || checksum(&data[pos + 4..pos + 16], payload) != header.crc {
        return None;
    }
    Some(RecordLoc {
        seq: header.seq,
        offset: pos as u64,
        len: header.len,
    })
}

/// The offset of the next magic at or after `from`, or the end of `data`.
fn next_magic(data: &[u8], from: usize) -> usize {
    data.get(from..)
        .and_then(|rest| rest.windows(MAGIC.len()).position(|w| w == MAGIC))
        .map_or(data.len(), |i| from + i)
}

/// Walks a whole segment, collecting its valid records and the damaged runs
/// between them. After damage the scan resumes at the next magic that starts
/// a record with a good checksum, so one bad record costs only itself.
///
/// `first` is the segment's first sequence number (from its name); `upper`
/// the first sequence number of the next segment (`Seq::MAX` for the newest).
pub(super) fn scan(data: &[u8], first: Seq, upper: Seq) -> Scan {
    let mut out = Scan::default();
    let mut pos = 0usize;
    let mut min_seq = first;
    let mut damage_start: Option<usize> = None;
    let mut last: Option<Seq> = None;
    while pos < data.len() {
        match decode_at(data, pos, &(min_seq..upper)) {
            Some(rec) => {
                if let Some(start) = damage_start.take() {
                    out.damage.push(Damage {
                        bytes: start as u64..pos as u64,
                        after: last,
                        before: Some(rec.seq),
                    });
                }
                pos += HEADER_LEN + rec.len as usize;
                out.valid_end = pos as u64;
                min_seq = rec.seq.saturating_add(1);
                last = Some(rec.seq);
                out.records.push(rec);
            }
            None => {
                damage_start.get_or_insert(pos);
                pos = next_magic(data, pos + 1);
            }
        }
    }
    if let Some(start) = damage_start {
        out.damage.push(Damage {
            bytes: start as u64..data.len() as u64,
            after: last,
            before: None,
        });
    }
    out
}

/// Reads the payload of the record at `loc`, checking that the bytes still
/// hold that very record. Damage found here (the disk changed after
/// recovery) is reported as `InvalidData`.
pub(super) fn read_record(file: &File, loc: RecordLoc) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; HEADER_LEN + loc.len as usize];
    read_exact_at(file, &mut buf, loc.offset)?;
    let record = decode_at(&buf, 0, &(loc.seq..loc.seq.saturating_add(1)));
    match record {
        Some(found) if found.len == loc.len => {
            buf.drain(..HEADER_LEN);
            Ok(buf)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "record {} at offset {} no longer matches its checksum",
                loc.seq, loc.offset
            ),
        )),
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    // Positional read: segment files are shared by concurrent readers, so no
    // reader may move a file cursor.
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(test)]
mod unit {
    use super::*;

    fn records(seqs: &[Seq]) -> Vec<u8> {
        let mut buf = Vec::new();
        for &seq in seqs {
            encode_into(&mut buf, seq, format!("payload {seq}").as_bytes());
        }
        buf
    }

    #[test]
    fn names_round_trip_and_foreign_names_are_rejected() {
        assert_eq!(file_name(42), "seg-00000000000000000042.log");
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name(&file_name(Seq::MAX)), Some(Seq::MAX));
        for foreign in [
            "seg-42.log",
            "seg-0000000000000000004x.log",
            "acks.log",
            "LOCK",
        ] {
            assert_eq!(parse_file_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn a_clean_segment_scans_to_its_records() {
        let data = records(&[5, 6, 7]);
        let scan = scan(&data, 5, 8);
        let seqs: Vec<Seq> = scan.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![5, 6, 7]);
        assert!(scan.damage.is_empty());
        assert_eq!(scan.valid_end, data.len() as u64);
    }

    #[test]
    fn records_outside_the_segments_range_are_damage() {
        // A record that repeats an earlier number, and one that belongs to
        // the next segment, cannot be trusted where they stand.
        let data = records(&[5, 6, 6, 9]);
        let scan = scan(&data, 5, 9);
        let seqs: Vec<Seq> = scan.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![5, 6]);
        assert_eq!(scan.damage.len(), 1);
        assert_eq!(scan.damage[0].after, Some(6));
        assert_eq!(scan.damage[0].before, None);
        assert_eq!(scan.valid_end, scan.damage[0].bytes.start);
    }

    #[test]
    fn zeros_after_the_records_are_a_torn_tail() {
        let mut data = records(&[0, 1]);
        let valid = data.len() as u64;
        data.resize(data.len() + 100, 0);
        let scan = scan(&data, 0, Seq::MAX);
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.damage.len(), 1);
        assert_eq!(scan.damage[0].bytes, valid..valid + 100);
        assert_eq!(scan.valid_end, valid);
    }
}
