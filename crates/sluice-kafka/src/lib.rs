//! The Kafka family: the `kafka` receiver and exporter, and what they share
//! ([`kafka`]: client settings, encodings). The heavy client (librdkafka,
//! through `rdkafka`) is compiled only into binaries built with the
//! `kafka` feature.

pub mod kafka;
pub mod exporters {
    pub mod kafka;
}
pub mod receivers {
    pub mod kafka;
}

use sluice_core::Registry;

/// Registers every component of this family.
pub fn register(r: &mut Registry) {
    receivers::kafka::register(r);
    exporters::kafka::register(r);
}

/// Entry points for the benchmarks (in `sluice-bench`), to crate-internal
/// steps. Not an API: hidden, and may change at any time.
#[doc(hidden)]
pub mod bench_support {
    use sluice_pdata::Batch;

    use crate::exporters::kafka::{KafkaExporterConfig, Plan};

    /// The `kafka` exporter's step from a batch to its messages (what
    /// `send` does before handing them to librdkafka).
    pub struct KafkaMessages(Plan);

    impl KafkaMessages {
        pub fn new(config: &KafkaExporterConfig) -> KafkaMessages {
            KafkaMessages(Plan::new(config))
        }

        /// Builds the messages of `batch`: (messages, bytes of their
        /// values, items rejected as too large).
        pub fn build(&self, batch: &Batch) -> (usize, usize, u64) {
            let built = self.0.build(batch);
            let bytes = built.messages.iter().map(|m| m.value.len()).sum();
            (built.messages.len(), bytes, built.rejected)
        }
    }
}
