//! Not written yet.

use sluice_core::Registry;

pub fn register(_r: &mut Registry) {}
