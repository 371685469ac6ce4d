//! The OTLP family: the `otlp` receiver (gRPC and HTTP) and the `otlp` and
//! `otlphttp` exporters. One folder per component; the `sluice` binary
//! registers them with [`register`] when built with its `otlp` feature.

pub mod exporters {
    pub mod otlp;
    pub mod otlphttp;
}
pub mod receivers {
    pub mod otlp;
}

/// Registers every component of this family.
pub fn register(r: &mut sluice_core::Registry) {
    receivers::otlp::register(r);
    exporters::otlp::register(r);
    exporters::otlphttp::register(r);
}
