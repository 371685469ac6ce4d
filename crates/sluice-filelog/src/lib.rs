//! The filelog family: the `filelog` receiver (tails files, offsets kept in
//! a storage extension).

pub mod receivers {
    pub mod filelog;
}

/// Registers every component of this family.
pub fn register(r: &mut sluice_core::Registry) {
    receivers::filelog::register(r);
}
