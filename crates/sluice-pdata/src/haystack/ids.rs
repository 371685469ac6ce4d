//! Haystack id strings to OTLP id bytes and back.
//!
//! Haystack ids are free-form strings; OTLP ids are 16 (trace) or 8 (span)
//! bytes. The bytes are derived from the string deterministically, so that a
//! span id and the parent span id of its children map to the same bytes:
//!
//! - empty string → empty bytes (the invalid id in both formats; a root
//!   span's parent);
//! - trace id of 32 hex digits (either case) → those 16 bytes;
//! - trace id that is a UUID (`8-4-4-4-12` hex digits, either case) → its 16
//!   bytes, so that a UUID and its dash-less hex spelling name one trace;
//! - span id of 16 hex digits (either case) → those 8 bytes;
//! - anything else → the 128-bit (trace) or 64-bit (span) FNV-1a hash of the
//!   string's UTF-8 bytes, big-endian. FNV is not a cryptographic hash; two
//!   strings with one hash would name one id in OTLP, but each span keeps
//!   its original string, so the reverse translation is still exact.
//!
//! The reverse direction writes lowercase hex; whether the original string
//! must be kept beside the bytes is decided by comparing that spelling with
//! the string (`otlp.rs`).

/// The OTLP trace id (16 bytes, or empty) for a Haystack trace id.
pub fn otlp_trace_id(id: &str) -> Vec<u8> {
    if id.is_empty() {
        return Vec::new();
    }
    if let Some(bytes) = decode_hex(id, 16) {
        return bytes;
    }
    if let Some(bytes) = decode_uuid(id) {
        return bytes;
    }
    fnv1a_128(id.as_bytes()).to_be_bytes().to_vec()
}

/// The OTLP span id (8 bytes, or empty) for a Haystack span or parent span id.
pub fn otlp_span_id(id: &str) -> Vec<u8> {
    if id.is_empty() {
        return Vec::new();
    }
    if let Some(bytes) = decode_hex(id, 8) {
        return bytes;
    }
    fnv1a_64(id.as_bytes()).to_be_bytes().to_vec()
}

/// Lowercase hex of an OTLP id; empty for empty bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Whether `s` is exactly [`hex`]`(bytes)`, without building it.
pub(crate) fn is_hex_of(bytes: &[u8], s: &str) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let s = s.as_bytes();
    s.len() == bytes.len() * 2
        && bytes.iter().zip(s.chunks_exact(2)).all(|(&b, pair)| {
            pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 0xf)]
        })
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `s` as exactly `len` bytes of hex digits (either case).
fn decode_hex(s: &str, len: usize) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() != len * 2 {
        return None;
    }
    s.chunks_exact(2)
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

/// `s` as a UUID in its 36-character form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
fn decode_uuid(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let digits: String = s.chars().filter(|&c| c != '-').collect();
    decode_hex(&digits, 16)
}

fn fnv1a_64(data: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    data.iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

fn fnv1a_128(data: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    data.iter()
        .fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_hex_of_agrees_with_hex() {
        for bytes in [&[][..], &[0x00], &[0xab, 0x01], &[0xff; 16]] {
            let h = hex(bytes);
            assert!(is_hex_of(bytes, &h));
            assert!(!is_hex_of(bytes, &h.to_uppercase()) || h.chars().all(|c| c.is_ascii_digit()));
            assert!(!is_hex_of(bytes, &format!("{h}0")));
        }
        assert!(!is_hex_of(&[0xab], "ac"));
        assert!(!is_hex_of(&[0xab], "AB"));
    }

    #[test]
    fn hex_and_uuid_ids_keep_their_bytes() {
        let hex32 = "0af7651916cd43dd8448eb211c80319c";
        assert_eq!(hex(&otlp_trace_id(hex32)), hex32);
        assert_eq!(
            otlp_trace_id("0AF7651916CD43DD8448EB211C80319C"),
            otlp_trace_id(hex32)
        );
        assert_eq!(
            otlp_trace_id("0af76519-16cd-43dd-8448-eb211c80319c"),
            otlp_trace_id(hex32)
        );
        assert_eq!(hex(&otlp_span_id("b7ad6b7169203331")), "b7ad6b7169203331");
        assert!(otlp_trace_id("").is_empty());
        assert!(otlp_span_id("").is_empty());
    }

    #[test]
    fn other_ids_hash_to_full_length_and_differ() {
        // 16 hex digits are a span id, not a trace id; a UUID is not a span id.
        for s in [
            "1",
            "b7ad6b7169203331",
            "0af76519-16cd-43dd-8448-eb211c80319c",
        ] {
            assert_eq!(otlp_trace_id(s).len(), 16, "{s}");
            assert_eq!(otlp_span_id(s).len(), 8, "{s}");
        }
        assert_ne!(otlp_span_id("1"), otlp_span_id("2"));
        assert_ne!(otlp_trace_id("1"), otlp_trace_id("2"));
        // A malformed UUID (dash misplaced) is hashed, not parsed.
        assert_ne!(
            otlp_trace_id("0af7651-916cd-43dd-8448-eb211c80319c"),
            otlp_trace_id("0af7651916cd43dd8448eb211c80319c")
        );
    }

    #[test]
    fn fnv_matches_published_test_vectors() {
        // FNV-1a reference values for "" and "a".
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }
}
