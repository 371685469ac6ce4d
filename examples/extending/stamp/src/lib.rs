//! The `stamp` processor: an example of a sluice component written in a
//! crate of its own, outside sluice's repository (see docs/extending.md).
//!
//! **What it does.** It sets one resource attribute, `key`, to the string
//! `value` on every resource of every batch (traces, metrics and logs), then
//! passes the batch on. An attribute already holding that key is replaced
//! (its value, whatever its type, becomes the string), and any further
//! attributes with the same key are removed, so each resource ends up with
//! exactly one. A resource that is absent from the request is created.
//!
//! **Guarantees.** Nothing is dropped or reordered, and the batch is always
//! passed on: the answer the pipeline gets is the next stage's answer. A
//! batch shared with other pipelines (a fan-out) is copied before it is
//! changed, so they never see the stamp. After `shutdown` the processor
//! still stamps and passes on late data; it holds no state to flush.
//!
//! **Limits.** Every batch is decoded to be stamped (and re-encoded by the
//! exporters), even one whose resources already carry the attribute. Only
//! resource attributes are touched, never those of spans, data points, log
//! records or scopes. The value is always a string.
//!
//! Register it in a distribution with [`register`]:
//! `sluice::main_with(&[sluice_example_stamp::register])`.

mod config;

use std::sync::Arc;

use async_trait::async_trait;
use sluice_core::{
    BuildContext, BuildError, ConsumeError, Consumer, ConsumerRef, Lifecycle, Processor,
    ProcessorFactory, Registry, Stability,
};
use sluice_pdata::otlp::common::v1::{any_value, AnyValue, KeyValue};
use sluice_pdata::otlp::resource::v1::Resource;
use sluice_pdata::{Batch, Payload, Signal};

pub use config::StampConfig;

/// The configured type name: `processors: { stamp: ... }`.
pub const TYPE: &str = "stamp";

/// Adds the `stamp` processor to `r`. This is the one function a
/// distribution needs from this crate.
pub fn register(r: &mut Registry) {
    r.processor(StampFactory);
}

/// Factory of the `stamp` processor. The registry asks it for its type name,
/// signals and stability (what `sluice components` shows) and calls
/// [`ProcessorFactory::create`] once per pipeline that lists the processor.
pub struct StampFactory;

impl ProcessorFactory for StampFactory {
    type Config = StampConfig;

    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn stability(&self) -> Stability {
        Stability::Development
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &StampConfig,
        next: ConsumerRef,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        // `validate` has run before `create`, so these hold; a config built
        // by hand that skips validation gets an error, not a panic.
        if config.key.is_empty() {
            return Err(BuildError::new(format!(
                "processor {}: key is empty",
                ctx.id
            )));
        }
        let Some(value) = config.value.clone() else {
            return Err(BuildError::new(format!(
                "processor {}: value is missing",
                ctx.id
            )));
        };
        tracing::debug!(
            processor = %ctx.id,
            pipeline = ctx.pipeline.as_deref().unwrap_or(""),
            key = %config.key,
            "stamp processor built"
        );
        Ok(Arc::new(Stamp {
            key: config.key.clone(),
            value,
            next,
        }))
    }
}

/// One `stamp` instance (one per pipeline): the attribute to set and the
/// rest of the pipeline.
pub struct Stamp {
    key: String,
    value: String,
    next: ConsumerRef,
}

impl Stamp {
    /// Sets the attribute on every resource of `payload`.
    fn stamp(&self, payload: &mut Payload) {
        match payload {
            Payload::Traces(r) => r
                .resource_spans
                .iter_mut()
                .for_each(|rs| self.stamp_resource(&mut rs.resource)),
            Payload::Metrics(r) => r
                .resource_metrics
                .iter_mut()
                .for_each(|rm| self.stamp_resource(&mut rm.resource)),
            Payload::Logs(r) => r
                .resource_logs
                .iter_mut()
                .for_each(|rl| self.stamp_resource(&mut rl.resource)),
        }
    }

    fn stamp_resource(&self, resource: &mut Option<Resource>) {
        let attributes = &mut resource.get_or_insert_with(Resource::default).attributes;
        let value = Some(AnyValue {
            value: Some(any_value::Value::StringValue(self.value.clone())),
        });
        match attributes.iter().position(|kv| kv.key == self.key) {
            Some(first) => {
                // Keep the first one in place, with the new value; drop the
                // duplicates after it.
                attributes[first].value = value;
                let mut index = 0;
                attributes.retain(|kv| {
                    let keep = index <= first || kv.key != self.key;
                    index += 1;
                    keep
                });
            }
            None => attributes.push(KeyValue {
                key: self.key.clone(),
                value,
                ..Default::default()
            }),
        }
    }
}

/// No sockets, tasks or buffers: starting and stopping have nothing to do.
#[async_trait]
impl Lifecycle for Stamp {}

#[async_trait]
impl Consumer for Stamp {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        // `make_mut` decodes the batch if it arrived encoded, copies it if
        // another holder shares it, and drops the now stale encoding.
        self.stamp(&mut batch.make_mut());
        // Backpressure: the pipeline's answer is the next stage's answer.
        self.next.consume(batch).await
    }
}

#[cfg(test)]
mod tests;
