//! The general-purpose processors: `batch`, `memory_limiter` and
//! `attributes`. They need nothing beyond the core and the data model.

pub mod processors {
    pub mod attributes;
    pub mod batch;
    pub mod memory_limiter;
}

/// Registers every component of this family.
pub fn register(r: &mut sluice_core::Registry) {
    processors::attributes::register(r);
    processors::batch::register(r);
    processors::memory_limiter::register(r);
}
