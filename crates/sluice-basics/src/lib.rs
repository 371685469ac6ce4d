//! The basics every distribution wants: the `file` and `debug` exporters,
//! the `health_check` extension and the `file_storage` extension (whose
//! storage engine is the core's `sluice_core::file_storage`).

pub mod exporters {
    pub mod debug;
    pub mod file;
}
pub mod extensions {
    pub mod file_storage;
    pub mod health_check;
}

/// Registers every component of this family.
pub fn register(r: &mut sluice_core::Registry) {
    exporters::debug::register(r);
    exporters::file::register(r);
    extensions::file_storage::register(r);
    extensions::health_check::register(r);
}
