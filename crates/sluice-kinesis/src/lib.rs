//! The Kinesis family: the `kinesis` receiver (Haystack or OTLP spans from
//! a Kinesis stream, shard leases in PostgreSQL). The AWS SDK and `sqlx` are
//! compiled only into binaries built with the `kinesis` feature.

pub mod receivers {
    pub mod kinesis;
}

/// Registers every component of this family.
pub fn register(r: &mut sluice_core::Registry) {
    receivers::kinesis::register(r);
}
