//! The `kafka` receiver: reads telemetry from Kafka topics as a member of a
//! consumer group and hands each message (or a run of consecutive messages
//! of one partition) to the pipelines of its signal.
//!
//! # Guarantees
//!
//! - **At-least-once.** librdkafka's auto-commit and auto offset store are
//!   off. A partition's offset is committed (every `commit_interval`, on a
//!   rebalance and at shutdown) only up to the first message the pipeline has
//!   not yet accepted, so a crash, a `kill -9` or a lost group membership
//!   re-delivers what was not accepted, and possibly some that was
//!   (duplicates), never less.
//! - **Rebalances.** The group uses the `cooperative-sticky` assignor by
//!   default (incremental rebalancing over the classic group protocol, which
//!   every broker since Kafka 2.4 supports): only partitions that move stop.
//!   When partitions are revoked, their batches in the pipeline are given up
//!   to 10 s to be accepted, the offsets they reached are committed, and then
//!   the partitions are released; a batch still unanswered is not committed
//!   (its new owner reads it again).
//! - **Order.** Each partition has its own task. Batches of a partition enter
//!   the pipeline in offset order; several may be in the pipeline at once (so
//!   a `batch` processor downstream can fill). When the pipeline refuses a
//!   batch (retryable), the partition stops taking messages and retries that
//!   batch with backoff (100 ms doubling to 5 s) until it is accepted; batches
//!   after it that were already in the pipeline have gone ahead of it. A
//!   permanent refusal drops the batch, logged and counted as refused.
//! - **Backpressure.** At most `max_in_flight_mib` of message values are held
//!   between librdkafka and the pipeline's answer. When that is used up, or a
//!   partition is retrying a refused batch, the partition is paused (librdkafka
//!   stops fetching it) instead of buffering; it resumes when room returns.
//!   librdkafka's own prefetch is bounded separately by
//!   `queued.max.messages.kbytes` (a passthrough property).
//! - **Bad messages** (not valid for the topic's encoding) are skipped, logged
//!   with topic, partition and offset, and counted in
//!   `sluice_kafka_receiver_invalid_messages_total`; their offsets are
//!   committed like the others (reading them again cannot help).
//! - **Telemetry.** `otelcol_receiver_{accepted,refused}_<items>` with
//!   `transport="kafka"`; `sluice_kafka_receiver_messages_total`;
//!   `sluice_kafka_receiver_lag{receiver,topic,partition}`: the messages
//!   after the group's committed offset (from librdkafka's statistics every
//!   5 s), for the partitions this process owns.
//!
//! # Limits
//!
//! - A topic carries one signal in one encoding; a topic configured for two
//!   signals is an error.
//! - Topic patterns (entries starting with `^`) are regular expressions
//!   matched by librdkafka for the subscription and by sluice to route a
//!   topic to its signal; keep them to the syntax both share (`^prefix-.*`).
//! - `header_extraction` decodes every message to add the attributes.

mod config;
mod consumer;
mod partition;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use sluice_core::{
    BuildContext, BuildError, Receiver, ReceiverFactory, Registry, Signal, SignalConsumers,
    Stability,
};

pub use config::{
    HeaderExtraction, InitialOffset, KafkaReceiverConfig, RebalanceStrategy, SignalTopics,
};
pub use consumer::KafkaReceiver;

/// The component type name in configuration.
pub const TYPE_NAME: &str = "kafka";

/// Registers the `kafka` receiver.
pub fn register(r: &mut Registry) {
    r.receiver(KafkaReceiverFactory);
}

/// Factory of the `kafka` receiver.
pub struct KafkaReceiverFactory;

impl ReceiverFactory for KafkaReceiverFactory {
    type Config = KafkaReceiverConfig;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &KafkaReceiverConfig,
        consumers: SignalConsumers,
    ) -> Result<Arc<dyn Receiver>, BuildError> {
        let r = KafkaReceiver::new(&ctx, config, &consumers)
            .map_err(|e| BuildError::new(format!("receiver {}: {e}", ctx.id)))?;
        Ok(Arc::new(r))
    }
}
