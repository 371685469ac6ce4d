//! The Haystack family: the `haystack_http` and `haystack_grpc` receivers
//! (Haystack's span agent protocols, translated to OTLP by `sluice-pdata`).

pub mod receivers {
    pub mod haystack;
}

/// Registers every component of this family.
pub fn register(r: &mut sluice_core::Registry) {
    receivers::haystack::register(r);
}
