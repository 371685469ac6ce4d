//! The in-memory index of the queue: which records exist, which are waiting
//! to be handed out, which segment holds each, and the byte accounting
//! against `max_bytes`. Pure bookkeeping, no I/O: callers hold the lock only
//! for these few operations and do file work outside it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::segment::{RecordLoc, HEADER_LEN};
use super::{QueueError, Seq};

/// Where an unacknowledged record lives.
#[derive(Debug, Clone, Copy)]
pub(super) struct Loc {
    /// The first sequence number of its segment (the segment's key).
    pub segment: Seq,
    pub rec: RecordLoc,
}

/// One segment file that still holds unacknowledged records (or is the one
/// being appended to).
#[derive(Debug)]
pub(super) struct Segment {
    pub path: PathBuf,
    /// A read-only handle shared by concurrent `next()` reads.
    pub reader: Arc<File>,
    /// Unacknowledged records in it; at zero a sealed segment is deleted.
    pub live: u64,
    /// One past the highest sequence number it may hold.
    pub end: Seq,
}

/// A record taken off the ready set, with what is needed to read it.
pub(super) struct Handout {
    pub seq: Seq,
    pub rec: RecordLoc,
    pub reader: Arc<File>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// Every record pushed and not yet acknowledged, handed out or not.
    records: BTreeMap<Seq, Loc>,
    /// Records waiting to be handed out. Ordered, so a nacked record goes
    /// back in front of every newer one.
    ready: BTreeSet<Seq>,
    segments: BTreeMap<Seq, Segment>,
    /// The segment the writer appends to; never deleted while active.
    active: Option<Seq>,
    /// The next sequence number the writer will assign.
    next_seq: Seq,
    /// Framed bytes of the unacknowledged records.
    bytes: u64,
    /// Framed bytes of pushes accepted but not yet written.
    reserved: u64,
    closed: bool,
    /// Framed size of the last push refused as full (0 once a push fits).
    refused: u64,
}

impl State {
    pub(super) fn new(next_seq: Seq) -> State {
        State {
            next_seq,
            ..State::default()
        }
    }

    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes counted against `max_bytes`: on disk plus being written.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes + self.reserved
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(super) fn close(&mut self) {
        self.closed = true;
    }

    /// Adds a segment found on open with its unacknowledged records, all of
    /// them ready to be handed out again.
    pub(super) fn add_recovered(
        &mut self,
        first: Seq,
        path: PathBuf,
        reader: Arc<File>,
        end: Seq,
        live: &[RecordLoc],
    ) {
        self.segments.insert(
            first,
            Segment {
                path,
                reader,
                live: 0,
                end,
            },
        );
        self.insert_records(first, live);
    }

    fn insert_records(&mut self, segment: Seq, recs: &[RecordLoc]) {
        for rec in recs {
            let loc = Loc { segment, rec: *rec };
            if self.records.insert(rec.seq, loc).is_none() {
                self.bytes += rec.frame_len();
                if let Some(seg) = self.segments.get_mut(&segment) {
                    seg.live += 1;
                }
            }
            self.ready.insert(rec.seq);
        }
    }

    /// Accounts a push of `frame` bytes before it is written, or refuses it.
    pub(super) fn reserve(&mut self, frame: u64, max_bytes: u64) -> Result<(), QueueError> {
        if self.closed {
            return Err(QueueError::Closed);
        }
        if self.bytes() + frame > max_bytes {
            self.refused = frame;
            return Err(QueueError::Full { max_bytes });
        }
        self.reserved += frame;
        self.refused = 0;
        Ok(())
    }

    /// Gives back the reservation of a push that was never written.
    pub(super) fn unreserve(&mut self, frame: u64) {
        self.reserved = self.reserved.saturating_sub(frame);
    }

    /// Whether a push of a typical item would fit now: the last refused
    /// item if there was one, else one of the average size queued.
    pub(super) fn has_room(&self, max_bytes: u64) -> bool {
        let average = match self.records.len() as u64 {
            0 => 0,
            n => self.bytes / n,
        };
        let need = if self.refused > 0 {
            self.refused
        } else {
            average
        };
        let need = need.max(HEADER_LEN as u64 + 1);
        self.closed || self.bytes().saturating_add(need) <= max_bytes
    }

    /// Makes `first` the active segment. Returns the previous active
    /// segment's path if it has nothing left to hand out (delete it).
    pub(super) fn start_segment(
        &mut self,
        first: Seq,
        path: PathBuf,
        reader: Arc<File>,
    ) -> Option<PathBuf> {
        let retired = self.seal_active();
        self.segments.insert(
            first,
            Segment {
                path,
                reader,
                live: 0,
                end: first,
            },
        );
        self.active = Some(first);
        retired
    }

    /// Stops appending to the active segment (after a roll or a write
    /// error). Returns its path if nothing in it is live any more.
    pub(super) fn seal_active(&mut self) -> Option<PathBuf> {
        let first = self.active.take()?;
        self.remove_if_dead(first)
    }

    fn remove_if_dead(&mut self, first: Seq) -> Option<PathBuf> {
        let dead = self.segments.get(&first).is_some_and(|s| s.live == 0);
        if dead && self.active != Some(first) {
            return self.segments.remove(&first).map(|s| s.path);
        }
        None
    }

    /// Records that the writer assigned sequence numbers up to `next_seq`
    /// (written or failed): the active segment's range grows with them.
    pub(super) fn advance(&mut self, next_seq: Seq) {
        self.next_seq = next_seq;
        if let Some(seg) = self.active.and_then(|a| self.segments.get_mut(&a)) {
            seg.end = next_seq;
        }
    }

    /// Makes durably written records visible to `next()` and moves their
    /// bytes from reserved to on-disk.
    pub(super) fn commit(&mut self, segment: Seq, recs: &[RecordLoc], next_seq: Seq) {
        let frames: u64 = recs.iter().map(RecordLoc::frame_len).sum();
        self.unreserve(frames);
        self.insert_records(segment, recs);
        self.advance(next_seq);
    }

    /// Takes the oldest ready record.
    pub(super) fn take_ready(&mut self) -> Option<Handout> {
        while let Some(seq) = self.ready.pop_first() {
            let Some(loc) = self.records.get(&seq) else {
                continue; // acked while it was ready
            };
            if let Some(seg) = self.segments.get(&loc.segment) {
                return Some(Handout {
                    seq,
                    rec: loc.rec,
                    reader: Arc::clone(&seg.reader),
                });
            }
        }
        None
    }

    /// Puts a handed-out record back; false if it is unknown or already
    /// ready.
    pub(super) fn nack(&mut self, seq: Seq) -> bool {
        self.records.contains_key(&seq) && self.ready.insert(seq)
    }

    /// Forgets an acknowledged record. `None` if the record is unknown
    /// (acked twice); otherwise the path of its segment if that segment is
    /// now empty and sealed (delete it).
    pub(super) fn ack(&mut self, seq: Seq) -> Option<Option<PathBuf>> {
        let loc = self.records.remove(&seq)?;
        self.ready.remove(&seq);
        self.bytes = self.bytes.saturating_sub(loc.rec.frame_len());
        if let Some(seg) = self.segments.get_mut(&loc.segment) {
            seg.live = seg.live.saturating_sub(1);
        }
        Some(self.remove_if_dead(loc.segment))
    }

    /// What a compacted ack log must say: a floor below which everything is
    /// acknowledged (the oldest live record, or the next sequence number),
    /// and every sequence number above it in a surviving segment that is not
    /// live. Acks for deleted segments are dropped: nothing can replay them.
    pub(super) fn acks_to_keep(&self) -> (Seq, Vec<Seq>) {
        let floor = self.records.keys().next().copied().unwrap_or(self.next_seq);
        let mut keep = Vec::new();
        for (&first, seg) in &self.segments {
            for seq in first.max(floor)..seg.end {
                if !self.records.contains_key(&seq) {
                    keep.push(seq);
                }
            }
        }
        (floor, keep)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    fn rec(seq: Seq, offset: u64) -> RecordLoc {
        RecordLoc {
            seq,
            offset,
            len: 10,
        }
    }

    fn reader() -> Arc<File> {
        Arc::new(tempfile::tempfile().expect("temp file"))
    }

    #[test]
    fn ack_of_last_live_record_retires_only_sealed_segments() {
        let mut st = State::new(0);
        assert_eq!(st.start_segment(0, "a".into(), reader()), None);
        st.reserve(60, 1000).expect("fits");
        st.commit(0, &[rec(0, 0), rec(1, 30)], 2);
        assert_eq!(st.ack(0), Some(None));
        assert_eq!(st.ack(1), Some(None), "the active segment stays");
        assert_eq!(st.ack(1), None, "second ack is unknown");
        assert_eq!(st.start_segment(2, "b".into(), reader()), Some("a".into()));
        assert_eq!(st.acks_to_keep(), (2, vec![]));
    }

    #[test]
    fn keeps_acks_above_the_oldest_live_record() {
        let mut st = State::new(0);
        st.start_segment(0, "a".into(), reader());
        st.reserve(120, 1000).expect("fits");
        st.commit(0, &[rec(0, 0), rec(1, 30), rec(2, 60), rec(3, 90)], 4);
        st.ack(0);
        st.ack(2);
        assert_eq!(st.acks_to_keep(), (1, vec![2]));
        assert_eq!(st.bytes(), 60);
    }
}
