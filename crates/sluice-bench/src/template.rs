//! Pre-encoded requests whose trace and span ids are rewritten per request.
//!
//! A [`Template`] is an encoded export request plus the offsets of its ids.
//! [`Template::write`] copies it into an output buffer, writing a request
//! sequence number into the leading bytes of every id on the way, so every
//! request carries distinct trace and span ids at the cost of one memcpy (the
//! encoded length never changes; nothing is re-encoded).
//!
//! With `seq` unique per request (below 2^48):
//! * trace id = `seq` (8 bytes, big-endian) ++ the template's trace index;
//! * span id = `seq` (low 6 bytes) ++ the template's span index (2 bytes).
//!
//! Parent span ids get the same rewrite, so parent links stay within the
//! request.

use bytes::BufMut;

use crate::gen;
use crate::wire::{count_items, id_offsets, IdKind, Signal, WireError};

/// An encoded export request and where its ids are.
#[derive(Debug, Clone)]
pub struct Template {
    pub signal: Signal,
    bytes: Vec<u8>,
    patches: Vec<(usize, IdKind)>,
    items: u64,
}

/// Bytes of a trace id taken by the sequence number.
const TRACE_SEQ_BYTES: usize = 8;
/// Bytes of a span id taken by the sequence number.
const SPAN_SEQ_BYTES: usize = 6;

impl Template {
    /// A template from an encoded request of `signal`.
    pub fn from_encoded(signal: Signal, bytes: Vec<u8>) -> Result<Template, WireError> {
        let items = count_items(signal, &bytes)?;
        let patches = id_offsets(signal, &bytes)?;
        Ok(Template {
            signal,
            bytes,
            patches,
            items,
        })
    }

    /// A generated request of `items` items (see [`crate::gen`]).
    pub fn generate(signal: Signal, items: usize, variant: usize) -> Template {
        Template::from_encoded(signal, gen::encoded(signal, items, variant))
            .expect("a request encoded by prost is valid protobuf")
    }

    /// Items (spans, data points, log records) in each request.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The ids rewritten per request.
    pub fn id_count(&self) -> usize {
        self.patches.len()
    }

    /// Writes the request with sequence number `seq` into `dst`.
    pub fn write<B: BufMut>(&self, seq: u64, dst: &mut B) {
        let seq_bytes = seq.to_be_bytes();
        let mut pos = 0;
        for &(at, kind) in &self.patches {
            dst.put_slice(&self.bytes[pos..at]);
            let n = match kind {
                IdKind::Trace => {
                    dst.put_slice(&seq_bytes[8 - TRACE_SEQ_BYTES..]);
                    TRACE_SEQ_BYTES
                }
                IdKind::Span => {
                    dst.put_slice(&seq_bytes[8 - SPAN_SEQ_BYTES..]);
                    SPAN_SEQ_BYTES
                }
            };
            pos = at + n;
        }
        dst.put_slice(&self.bytes[pos..]);
    }

    /// The request with sequence number `seq` as a new buffer.
    pub fn to_vec(&self, seq: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len());
        self.write(seq, &mut out);
        out
    }
}

/// `count` templates of `signal` with `items` items each, differing in
/// resource and values.
pub fn pool(signal: Signal, items: usize, count: usize) -> Vec<Template> {
    (0..count.max(1))
        .map(|variant| Template::generate(signal, items, variant))
        .collect()
}
