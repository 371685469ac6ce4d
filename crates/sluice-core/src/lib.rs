//! The sluice engine: component contracts, the registry of factories, the
//! configuration model and its validation, the graph builder, fan-out, the
//! exporter helper, lifecycle and self-telemetry.
//!
//! This crate never names a concrete component: the binary registers
//! factories in a [`Registry`] and hands it to [`service::Service`].

pub mod component;
pub mod config;
pub mod consumer;
pub mod exporter_helper;
pub mod factory;
pub mod file_storage;
pub mod persistent_queue;
pub mod service;
pub mod telemetry;
/// Test components (feature `testkit`): for the core's own tests and for
/// component crates that validate a whole graph around their component.
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use component::{
    BuildContext, ComponentError, ComponentId, Exporter, Extension, Extensions, Health,
    KeyValueStore, Kind, Lifecycle, Processor, Receiver, ServiceState, SignalConsumers, Stability,
    Storage,
};
pub use consumer::{ConsumeError, Consumer, ConsumerRef, FanOut};
pub use factory::{
    BuildError, ComponentConfig, ComponentInfo, ExporterFactory, ExtensionFactory, ExtensionRef,
    FieldError, Listen, ProcessorFactory, ReceiverFactory, Registry,
};
pub use sluice_pdata::{Batch, Bytes, InvalidRequest, Payload, Signal};
pub use telemetry::Telemetry;
