//! Test-only components for the core's own tests: a receiver whose consumers
//! the test can reach, a processor that renames spans and counts what it saw,
//! an exporter that records batches. They record lifecycle events in one
//! shared log so tests can check ordering.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use sluice_pdata::{Batch, Payload, Signal};

use crate::component::{
    BuildContext, ComponentError, Exporter, Lifecycle, Processor, Receiver, SignalConsumers,
    Stability,
};
use crate::consumer::{ConsumeError, Consumer, ConsumerRef};
use crate::factory::{
    BuildError, ComponentConfig, ExporterFactory, FieldError, Listen, ProcessorFactory,
    ReceiverFactory, Registry,
};

#[derive(Default)]
pub struct Log {
    pub events: Vec<String>,
    pub receivers: Vec<(String, SignalConsumers)>,
    pub processors_built: Vec<String>,
    /// (exporter id, span names of each batch)
    pub exported: Vec<(String, Vec<String>)>,
}

pub type Shared = Arc<Mutex<Log>>;

fn event(log: &Shared, e: String) {
    log.lock().unwrap().events.push(e);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecvConfig {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub must_be_positive: i64,
}

impl ComponentConfig for RecvConfig {
    fn validate(&self) -> Vec<FieldError> {
        if self.must_be_positive < 0 {
            vec![FieldError::new("must_be_positive", "must not be negative")]
        } else {
            Vec::new()
        }
    }
    fn listen_addresses(&self) -> Vec<Listen> {
        self.endpoint
            .iter()
            .map(|a| Listen {
                path: "endpoint".into(),
                address: a.clone(),
            })
            .collect()
    }
}

struct Named {
    log: Shared,
    label: String,
}

#[async_trait]
impl Lifecycle for Named {
    async fn start(&self) -> Result<(), ComponentError> {
        event(&self.log, format!("start {}", self.label));
        Ok(())
    }
    async fn shutdown(&self) -> Result<(), ComponentError> {
        event(&self.log, format!("stop {}", self.label));
        Ok(())
    }
}

pub struct RecvFactory(pub Shared);

impl ReceiverFactory for RecvFactory {
    type Config = RecvConfig;
    fn type_name(&self) -> &'static str {
        "testrecv"
    }
    fn signals(&self) -> &'static [Signal] {
        &[Signal::Traces, Signal::Metrics, Signal::Logs]
    }
    fn stability(&self) -> Stability {
        Stability::Development
    }
    fn create(
        &self,
        ctx: BuildContext,
        _config: &RecvConfig,
        consumers: SignalConsumers,
    ) -> Result<Arc<dyn Receiver>, BuildError> {
        self.0
            .lock()
            .unwrap()
            .receivers
            .push((ctx.id.to_string(), consumers));
        Ok(Arc::new(Named {
            log: self.0.clone(),
            label: format!("receiver {}", ctx.id),
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    pub suffix: String,
}
impl ComponentConfig for RenameConfig {}

/// Appends `suffix` to every span name and counts spans seen by this instance.
pub struct Rename {
    next: ConsumerRef,
    suffix: String,
    seen: Mutex<usize>,
    inner: Named,
}

#[async_trait]
impl Lifecycle for Rename {
    async fn start(&self) -> Result<(), ComponentError> {
        self.inner.start().await
    }
    async fn shutdown(&self) -> Result<(), ComponentError> {
        let seen = *self.seen.lock().unwrap();
        event(
            &self.inner.log,
            format!("stop {} seen={seen}", self.inner.label),
        );
        Ok(())
    }
}

#[async_trait]
impl Consumer for Rename {
    async fn consume(&self, mut batch: Batch) -> Result<(), ConsumeError> {
        *self.seen.lock().unwrap() += batch.items();
        if let Payload::Traces(r) = &mut *batch.make_mut() {
            for s in r
                .resource_spans
                .iter_mut()
                .flat_map(|rs| &mut rs.scope_spans)
                .flat_map(|ss| &mut ss.spans)
            {
                s.name.push_str(&self.suffix);
            }
        }
        self.next.consume(batch).await
    }
}

pub struct RenameFactory(pub Shared);

impl ProcessorFactory for RenameFactory {
    type Config = RenameConfig;
    fn type_name(&self) -> &'static str {
        "rename"
    }
    fn signals(&self) -> &'static [Signal] {
        &[Signal::Traces]
    }
    fn stability(&self) -> Stability {
        Stability::Development
    }
    fn create(
        &self,
        ctx: BuildContext,
        config: &RenameConfig,
        next: ConsumerRef,
    ) -> Result<Arc<dyn Processor>, BuildError> {
        let label = format!(
            "processor {} in {}",
            ctx.id,
            ctx.pipeline.clone().unwrap_or_default()
        );
        self.0.lock().unwrap().processors_built.push(label.clone());
        Ok(Arc::new(Rename {
            next,
            suffix: config.suffix.clone(),
            seen: Mutex::new(0),
            inner: Named {
                log: self.0.clone(),
                label,
            },
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectConfig {}
impl ComponentConfig for CollectConfig {}

pub struct Collect {
    id: String,
    inner: Named,
}

#[async_trait]
impl Lifecycle for Collect {
    async fn start(&self) -> Result<(), ComponentError> {
        self.inner.start().await
    }
    async fn shutdown(&self) -> Result<(), ComponentError> {
        self.inner.shutdown().await
    }
}

#[async_trait]
impl Consumer for Collect {
    async fn consume(&self, batch: Batch) -> Result<(), ConsumeError> {
        let names = match batch.payload() {
            Payload::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(|s| s.name.clone())
                .collect(),
            _ => vec![format!("{} items", batch.items())],
        };
        self.inner
            .log
            .lock()
            .unwrap()
            .exported
            .push((self.id.clone(), names));
        Ok(())
    }
}

/// `collect` supports every signal; `tracesonly` only traces.
pub struct CollectFactory {
    pub log: Shared,
    pub name: &'static str,
    pub signals: &'static [Signal],
}

impl ExporterFactory for CollectFactory {
    type Config = CollectConfig;
    fn type_name(&self) -> &'static str {
        self.name
    }
    fn signals(&self) -> &'static [Signal] {
        self.signals
    }
    fn stability(&self) -> Stability {
        Stability::Development
    }
    fn create(
        &self,
        ctx: BuildContext,
        _config: &CollectConfig,
    ) -> Result<Arc<dyn Exporter>, BuildError> {
        Ok(Arc::new(Collect {
            id: ctx.id.to_string(),
            inner: Named {
                log: self.log.clone(),
                label: format!("exporter {}", ctx.id),
            },
        }))
    }
}

/// A registry of the test components sharing one log.
pub fn registry() -> (Registry, Shared) {
    let log: Shared = Arc::default();
    let mut r = Registry::new();
    r.receiver(RecvFactory(log.clone()))
        .processor(RenameFactory(log.clone()))
        .exporter(CollectFactory {
            log: log.clone(),
            name: "collect",
            signals: &[Signal::Traces, Signal::Metrics, Signal::Logs],
        })
        .exporter(CollectFactory {
            log: log.clone(),
            name: "tracesonly",
            signals: &[Signal::Traces],
        });
    (r, log)
}
