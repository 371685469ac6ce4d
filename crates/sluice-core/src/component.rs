//! Component identities and the running-component contracts.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use sluice_pdata::Signal;

use crate::consumer::{Consumer, ConsumerRef};
use crate::telemetry::Telemetry;

/// The kind of a component, as the configuration sections name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Receiver,
    Processor,
    Exporter,
    Connector,
    Extension,
}

impl Kind {
    /// The configuration section (`receivers`, ...).
    pub fn section(self) -> &'static str {
        match self {
            Kind::Receiver => "receivers",
            Kind::Processor => "processors",
            Kind::Exporter => "exporters",
            Kind::Connector => "connectors",
            Kind::Extension => "extensions",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receiver => "receiver",
            Kind::Processor => "processor",
            Kind::Exporter => "exporter",
            Kind::Connector => "connector",
            Kind::Extension => "extension",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Maturity of a component, shown by `sluice components`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stability {
    Development,
    Alpha,
    Beta,
    Stable,
}

impl fmt::Display for Stability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stability::Development => "development",
            Stability::Alpha => "alpha",
            Stability::Beta => "beta",
            Stability::Stable => "stable",
        })
    }
}

/// A component id: `type` or `type/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    ty: String,
    name: Option<String>,
}

impl ComponentId {
    /// Parses `type[/name]`. The type is letters, digits and `_`; the name may
    /// hold anything but must not be empty.
    pub fn parse(s: &str) -> Result<ComponentId, String> {
        let (ty, name) = match s.split_once('/') {
            Some((t, n)) => (t.trim(), Some(n.trim())),
            None => (s.trim(), None),
        };
        if ty.is_empty() {
            return Err(format!("id {s:?} has an empty type"));
        }
        if !ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "id {s:?}: the type may hold only letters, digits and '_'"
            ));
        }
        if name == Some("") {
            return Err(format!("id {s:?} has an empty name after '/'"));
        }
        Ok(ComponentId {
            ty: ty.to_string(),
            name: name.map(str::to_string),
        })
    }

    pub fn new(ty: &str, name: Option<&str>) -> ComponentId {
        ComponentId {
            ty: ty.to_string(),
            name: name.map(str::to_string),
        }
    }

    pub fn type_name(&self) -> &str {
        &self.ty
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.ty, n),
            None => f.write_str(&self.ty),
        }
    }
}

/// A failure to start or stop a component.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComponentError(pub String);

impl ComponentError {
    pub fn new(msg: impl fmt::Display) -> Self {
        ComponentError(msg.to_string())
    }
}

/// Start and stop. `shutdown` drains what the component holds; the engine
/// bounds it with the service's shutdown deadline.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    async fn start(&self) -> Result<(), ComponentError> {
        Ok(())
    }
    async fn shutdown(&self) -> Result<(), ComponentError> {
        Ok(())
    }
}

/// A running receiver. It was given its consumers at creation; `start` binds
/// its listeners (or begins polling), `shutdown` stops taking new data and
/// returns when the data it took has been answered.
pub trait Receiver: Lifecycle {}
impl<T: Lifecycle> Receiver for T {}

/// A running processor: it consumes, and passes what it produces to the next
/// consumer it was given. After `shutdown` (which flushes anything buffered)
/// it must still pass late data straight through, so that data accepted by a
/// receiver during shutdown is not lost.
pub trait Processor: Lifecycle + Consumer {}
impl<T: Lifecycle + Consumer> Processor for T {}

/// A running exporter: consuming means accepting into its queue.
pub trait Exporter: Lifecycle + Consumer {}
impl<T: Lifecycle + Consumer> Exporter for T {}

/// A running extension (health check, storage, ...). Extensions are built
/// and started before every other component, so others may use them.
pub trait Extension: Lifecycle {
    /// The storage this extension provides, if it is a storage extension
    /// (named by `sending_queue.storage`).
    fn storage(&self) -> Option<Arc<dyn Storage>> {
        None
    }
}

/// Where persistent queues live. Opening is I/O, so it happens at start.
pub trait Storage: Send + Sync {
    /// Opens (creating if needed) the persistent queue named `name`, owned by
    /// one component, and reports what was recovered from disk.
    fn open_queue(
        &self,
        name: &str,
    ) -> Result<
        (
            crate::persistent_queue::PersistentQueue,
            crate::persistent_queue::Recovery,
        ),
        ComponentError,
    >;

    /// Opens (creating if needed) the key-value store named `name`, owned by
    /// one component. Storage that keeps only queues refuses.
    fn open_store(&self, name: &str) -> Result<Arc<dyn KeyValueStore>, ComponentError> {
        Err(ComponentError::new(format!(
            "this storage extension keeps no key-value state (asked for {name:?})"
        )))
    }
}

/// Small named values one component keeps across restarts (a receiver's
/// read offsets, say), as opposed to a queue of records.
pub trait KeyValueStore: Send + Sync {
    /// The value of `key`, or `None` if it was never set (or was deleted).
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ComponentError>;
    /// Replaces the value of `key` atomically: after a crash either the old
    /// or the new value is found, never a mix of both.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), ComponentError>;
    /// Removes `key`; removing a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), ComponentError>;
}

/// The extensions built so far, by id, for components that use them.
#[derive(Clone, Default)]
pub struct Extensions(Arc<std::collections::BTreeMap<ComponentId, Arc<dyn Extension>>>);

impl Extensions {
    pub fn new(map: std::collections::BTreeMap<ComponentId, Arc<dyn Extension>>) -> Self {
        Extensions(Arc::new(map))
    }

    /// The storage extension `id`; the error says what is wrong with it.
    pub fn storage(&self, id: &ComponentId) -> Result<Arc<dyn Storage>, String> {
        let ext = self.0.get(id).ok_or_else(|| {
            format!("extension {id} is not running (list it in service::extensions)")
        })?;
        ext.storage()
            .ok_or_else(|| format!("extension {id} is not a storage extension"))
    }
}

/// Per-signal consumers handed to a receiver: for each signal, the fan-out
/// over the pipelines of that signal that list the receiver.
#[derive(Clone, Default)]
pub struct SignalConsumers {
    pub traces: Option<ConsumerRef>,
    pub metrics: Option<ConsumerRef>,
    pub logs: Option<ConsumerRef>,
}

impl SignalConsumers {
    pub fn get(&self, signal: Signal) -> Option<&ConsumerRef> {
        match signal {
            Signal::Traces => self.traces.as_ref(),
            Signal::Metrics => self.metrics.as_ref(),
            Signal::Logs => self.logs.as_ref(),
        }
    }

    pub fn set(&mut self, signal: Signal, c: ConsumerRef) {
        match signal {
            Signal::Traces => self.traces = Some(c),
            Signal::Metrics => self.metrics = Some(c),
            Signal::Logs => self.logs = Some(c),
        }
    }
}

/// The state of the whole service, readable by extensions (health check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    Starting = 0,
    Running = 1,
    Stopping = 2,
}

/// Shared, cheap handle on the service state.
#[derive(Clone, Default)]
pub struct Health(Arc<AtomicU8>);

impl Health {
    pub fn get(&self) -> ServiceState {
        match self.0.load(Ordering::Acquire) {
            1 => ServiceState::Running,
            2 => ServiceState::Stopping,
            _ => ServiceState::Starting,
        }
    }

    pub fn set(&self, s: ServiceState) {
        self.0.store(s as u8, Ordering::Release)
    }
}

/// What a factory gets when it builds a component.
#[derive(Clone)]
pub struct BuildContext {
    pub id: ComponentId,
    pub kind: Kind,
    /// Set for processors (one instance per pipeline).
    pub pipeline: Option<String>,
    /// Set for processors: the signal of their pipeline.
    pub signal: Option<Signal>,
    /// The signals of the pipelines that list this component (for a
    /// processor, its pipeline's one signal); components register per-signal
    /// counters for these only.
    pub signals: Vec<Signal>,
    pub telemetry: Arc<Telemetry>,
    pub health: Health,
    /// The service's extensions (empty while extensions themselves are built).
    pub extensions: Extensions,
}

/// Convenience: an `Arc<dyn Consumer>` from any consumer.
pub fn consumer_ref<C: Consumer + 'static>(c: C) -> ConsumerRef {
    Arc::new(c)
}
