//! Validation and item counting of protobuf export requests without decoding.

use crate::{Payload, Signal};

/// Checks that `bytes` decode as an export request of `signal` and returns
/// its item count.
pub(crate) fn validate(signal: Signal, bytes: &[u8]) -> Result<usize, String> {
    Payload::decode_proto(signal, bytes)
        .map(|p| p.item_count())
        .map_err(|e| e.to_string())
}
