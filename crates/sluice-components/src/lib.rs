//! sluice's components: one folder per component, each with its config
//! (`deny_unknown_fields`, documented defaults), factory, implementation and
//! tests. [`register_all`] is the one place that lists them.

pub mod exporters;
pub mod extensions;
pub mod kafka;
pub mod processors;
pub mod receivers;

use sluice_core::Registry;

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
