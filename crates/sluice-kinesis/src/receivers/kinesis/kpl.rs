//! De-aggregation of Kinesis Producer Library (KPL) records.
//!
//! The KPL packs many user records into one Kinesis record:
//!
//! ```text
//! F3 89 9A C2 | AggregatedRecord (protobuf) | MD5(AggregatedRecord), 16 bytes
//! ```
//!
//! A record that does not start with the magic bytes, is too short to hold
//! them and the digest, whose digest does not match, or whose protobuf part
//! does not decode, is a plain record: its data is one user record, as the
//! KPL's own de-aggregation does. The [`PlainReason`] says why, so the
//! receiver can count records that looked aggregated but were not.

use md5::{Digest, Md5};
use prost::Message;

/// The four bytes every aggregated record starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Length of the MD5 trailer.
pub const DIGEST_LEN: usize = 16;

/// The protobuf part of an aggregated record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

/// One user record inside an [`AggregatedRecord`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// Index into `partition_key_table`.
    #[prost(uint64, tag = "1")]
    pub partition_key_index: u64,
    /// Index into `explicit_hash_key_table` (optional in the format).
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<KplTag>,
}

/// A KPL record tag (not used by sluice, kept so decoding accepts it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KplTag {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// Why a record was taken as plain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainReason {
    /// No magic bytes: an ordinary record.
    NoMagic,
    /// Magic bytes, but shorter than magic + digest.
    TooShort,
    /// Magic bytes, but the MD5 trailer does not match.
    BadDigest,
    /// Magic bytes and a matching digest, but the protobuf does not decode.
    BadProtobuf,
}

/// The user records of one Kinesis record.
#[derive(Debug, Clone, PartialEq)]
pub enum Deaggregated<'a> {
    /// Not aggregated: the record's data is one user record.
    Plain(&'a [u8], PlainReason),
    /// Aggregated: the user records in order.
    Aggregated(Vec<UserRecord>),
}

/// One user record taken out of an aggregated record.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    /// The partition key, if its index is inside the table.
    pub partition_key: Option<String>,
    pub data: Vec<u8>,
}

impl Deaggregated<'_> {
    /// The number of user records.
    pub fn len(&self) -> usize {
        match self {
            Deaggregated::Plain(..) => 1,
            Deaggregated::Aggregated(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with the data of each user record, in order.
    pub fn for_each(&self, mut f: impl FnMut(&[u8])) {
        match self {
            Deaggregated::Plain(data, _) => f(data),
            Deaggregated::Aggregated(records) => records.iter().for_each(|r| f(&r.data)),
        }
    }
}

/// Splits one Kinesis record's data into its user records.
pub fn deaggregate(data: &[u8]) -> Deaggregated<'_> {
    if !data.starts_with(&MAGIC) {
        return Deaggregated::Plain(data, PlainReason::NoMagic);
    }
    if data.len() < MAGIC.len() + DIGEST_LEN {
        return Deaggregated::Plain(data, PlainReason::TooShort);
    }
    let (body, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_LEN);
    if Md5::digest(body).as_slice() != digest {
        return Deaggregated::Plain(data, PlainReason::BadDigest);
    }
    let Ok(agg) = AggregatedRecord::decode(body) else {
        return Deaggregated::Plain(data, PlainReason::BadProtobuf);
    };
    let keys = agg.partition_key_table;
    Deaggregated::Aggregated(
        agg.records
            .into_iter()
            .map(|r| UserRecord {
                partition_key: usize::try_from(r.partition_key_index)
                    .ok()
                    .and_then(|i| keys.get(i).cloned()),
                data: r.data,
            })
            .collect(),
    )
}

/// Builds an aggregated record the way the KPL does (for tests and
/// benchmarks): one partition key per user record, deduplicated.
pub fn aggregate<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut agg = AggregatedRecord::default();
    for (key, data) in records {
        let index = match agg.partition_key_table.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                agg.partition_key_table.push(key.to_string());
                agg.partition_key_table.len() - 1
            }
        };
        agg.records.push(Record {
            partition_key_index: index as u64,
            explicit_hash_key_index: None,
            data: data.to_vec(),
            tags: Vec::new(),
        });
    }
    let body = agg.encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + body.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    out
}
