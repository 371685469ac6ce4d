//! The `file_storage` extension: a directory where exporters keep their
//! persistent sending queues (`sending_queue.storage: file_storage`) and
//! receivers keep small state such as read offsets (`filelog`'s `storage`).
//!
//! The storage itself is the core's `sluice_core::file_storage` (so every
//! component family tests against it); this module is its config and factory.
//!
//! Each exporter's queue lives in its own subdirectory, named after the
//! exporter id, as a segment log (`sluice_core::persistent_queue`): records
//! are written before the pipeline is answered, replayed on start, and
//! removed once the backend acknowledged them.
//!
//! Key-value state (`Storage::open_store`) lives in a subdirectory named
//! after its owner (`receiver_filelog`, ...), one file per key, replaced
//! atomically by writing a temporary file and renaming it over the old one.
//!
//! **Guarantees.** With `fsync: false` (default) a record is in the
//! operating system's hands when the pipeline is answered: it survives the
//! process being killed, not the machine losing power. With `fsync: true` it
//! is on the disk itself; concurrent writes share one fsync.
//!
//! **Limits.** Each queue is bounded by `max_size_mib`; past it the exporter
//! refuses (or blocks, with `block_on_overflow`). One process may use a
//! directory at a time (a lock in each queue directory).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use sluice_core::file_storage::{FileStorage, FileStorageExtension, FileStorageOptions};
use sluice_core::{
    BuildContext, BuildError, ComponentConfig, Extension, ExtensionFactory, FieldError, Registry,
    Stability,
};

#[cfg(test)]
mod tests;

pub const TYPE: &str = "file_storage";

fn default_directory() -> PathBuf {
    PathBuf::from("/var/lib/sluice/file_storage")
}
fn default_true() -> bool {
    true
}
fn default_max_size_mib() -> u64 {
    1024
}

/// `file_storage` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStorageConfig {
    /// Where queues are kept (default `/var/lib/sluice/file_storage`).
    #[serde(default = "default_directory")]
    pub directory: PathBuf,
    /// Create `directory` if it is missing (default true).
    #[serde(default = "default_true")]
    pub create_directory: bool,
    /// Fsync each write before answering (default false). False survives a
    /// crash of the process; true also survives a crash of the machine.
    #[serde(default)]
    pub fsync: bool,
    /// Bound of each queue on disk, in MiB (default 1024).
    #[serde(default = "default_max_size_mib")]
    pub max_size_mib: u64,
}

impl ComponentConfig for FileStorageConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.directory.as_os_str().is_empty() {
            errors.push(FieldError::new("directory", "must not be empty"));
        }
        if self.max_size_mib == 0 {
            errors.push(FieldError::new("max_size_mib", "must be at least 1"));
        }
        errors
    }
}

impl FileStorageConfig {
    /// The core's storage options for this config.
    pub fn options(&self) -> FileStorageOptions {
        FileStorageOptions {
            directory: self.directory.clone(),
            create_directory: self.create_directory,
            fsync: self.fsync,
            max_queue_bytes: self.max_size_mib.saturating_mul(1024 * 1024),
        }
    }
}

pub struct FileStorageFactory;

impl ExtensionFactory for FileStorageFactory {
    type Config = FileStorageConfig;

    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &FileStorageConfig,
    ) -> Result<Arc<dyn Extension>, BuildError> {
        Ok(Arc::new(FileStorageExtension::new(FileStorage::new(
            &ctx.id.to_string(),
            config.options(),
        ))))
    }
}

pub fn register(r: &mut Registry) {
    r.extension(FileStorageFactory);
}
