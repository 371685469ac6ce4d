//! sluice's components: one folder per component, each with its config
//! (`deny_unknown_fields`, documented defaults), factory, implementation and
//! tests. [`register_all`] is the one place that lists them.

pub mod exporters;
pub mod extensions;
pub mod kafka;
pub mod processors;
pub mod receivers;

use sluice_core::Registry;

/// Entry points for the benchmarks in `benches/` (external crates), to
/// crate-internal steps. Not an API: hidden, and may change at any time.
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

/// Registers every component type this crate provides.
pub fn register_all(r: &mut Registry) {
    receivers::otlp::register(r);
    receivers::kafka::register(r);
    receivers::filelog::register(r);
    receivers::haystack::register(r);
    receivers::kinesis::register(r);
    processors::attributes::register(r);
    processors::batch::register(r);
    processors::memory_limiter::register(r);
    exporters::otlp::register(r);
    exporters::otlphttp::register(r);
    exporters::debug::register(r);
    exporters::file::register(r);
    exporters::kafka::register(r);
    extensions::health_check::register(r);
    extensions::file_storage::register(r);
}
