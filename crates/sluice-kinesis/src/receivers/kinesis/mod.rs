//! The `kinesis` receiver: reads spans from an Amazon Kinesis data stream
//! (or any server speaking its API), the pull side of Haystack's collector,
//! without its flaw: a shard's checkpoint moves only over records the
//! pipeline accepted, so a crash re-reads, never loses.
//!
//! - [`shards`]: which shards to read and from where, across resharding.
//! - [`reader`]: one task per shard (GetRecords, de-aggregation, decoding,
//!   validation, hand-over, checkpoints).
//! - [`leases`]: shard leases and checkpoints in PostgreSQL for several
//!   instances.
//! - [`kpl`], [`decode`], [`validate`]: the record formats and Haystack's
//!   validation rules.
//!
//! The AWS SDK for Rust does the API calls; no crate does KPL
//! de-aggregation or lease coordination outside the Java KCL, so those are
//! written here.

pub mod config;
pub mod decode;
pub mod kpl;
pub mod leases;
mod reader;
mod receiver;
pub mod shards;
mod store;
pub mod validate;

#[cfg(any(test, feature = "test-support"))]
#[doc(hidden)]
pub mod local_server;
#[cfg(test)]
mod receiver_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use sluice_core::{
    BuildContext, BuildError, Receiver, ReceiverFactory, Registry, Signal, SignalConsumers,
    Stability,
};

pub use config::{InitialPosition, KinesisReceiverConfig, LeaseConfig};
pub use receiver::KinesisReceiver;

/// The component type name in configuration.
pub const TYPE_NAME: &str = "kinesis";

/// Registers the `kinesis` receiver.
pub fn register(r: &mut Registry) {
    r.receiver(KinesisReceiverFactory);
}

/// Factory of the `kinesis` receiver.
pub struct KinesisReceiverFactory;

impl ReceiverFactory for KinesisReceiverFactory {
    type Config = KinesisReceiverConfig;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn signals(&self) -> &'static [Signal] {
        &[Signal::Traces]
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &KinesisReceiverConfig,
        consumers: SignalConsumers,
    ) -> Result<Arc<dyn Receiver>, BuildError> {
        let consumer = consumers
            .traces
            .ok_or_else(|| BuildError::new(format!("receiver {}: no traces pipeline", ctx.id)))?;
        Ok(Arc::new(KinesisReceiver::new(&ctx, config, consumer)?))
    }
}
