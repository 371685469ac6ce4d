//! The `file_storage` extension: a directory where exporters keep their
//! persistent sending queues (`sending_queue.storage: file_storage`) and
//! receivers keep small state such as read offsets (`filelog`'s `storage`).
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

use async_trait::async_trait;
use serde::Deserialize;
use sluice_core::persistent_queue::{
    PersistentQueue, QueueConfig, Recovery, DEFAULT_SEGMENT_BYTES,
};
use sluice_core::{
    BuildContext, BuildError, ComponentConfig, ComponentError, Extension, ExtensionFactory,
    FieldError, KeyValueStore, Lifecycle, Registry, Stability, Storage,
};

mod kv;
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

/// The running extension.
pub struct FileStorage {
    id: String,
    config: FileStorageConfig,
}

impl FileStorage {
    pub fn new(id: &str, config: &FileStorageConfig) -> FileStorage {
        FileStorage {
            id: id.to_string(),
            config: config.clone(),
        }
    }

    fn prepare_directory(&self) -> Result<(), ComponentError> {
        let dir = &self.config.directory;
        if dir.is_dir() {
            return Ok(());
        }
        if !self.config.create_directory {
            return Err(ComponentError::new(format!(
                "extension {}: directory {} does not exist (set create_directory: true to create it)",
                self.id,
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            ComponentError::new(format!(
                "extension {}: cannot create directory {}: {e}",
                self.id,
                dir.display()
            ))
        })
    }
}

impl Storage for FileStorage {
    fn open_queue(&self, name: &str) -> Result<(PersistentQueue, Recovery), ComponentError> {
        self.prepare_directory()?;
        let dir = self.config.directory.join(name);
        PersistentQueue::open(QueueConfig {
            dir: dir.clone(),
            max_bytes: self.config.max_size_mib.saturating_mul(1024 * 1024),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: self.config.fsync,
        })
        .map_err(|e| {
            ComponentError::new(format!(
                "extension {}: cannot open the queue in {}: {e}",
                self.id,
                dir.display()
            ))
        })
    }

    fn open_store(&self, name: &str) -> Result<Arc<dyn KeyValueStore>, ComponentError> {
        self.prepare_directory()?;
        let store = kv::FileKv::open(self.config.directory.join(name), self.config.fsync)
            .map_err(|e| ComponentError::new(format!("extension {}: {e}", self.id)))?;
        Ok(Arc::new(store))
    }
}

impl Extension for FileStorageHandle {
    fn storage(&self) -> Option<Arc<dyn Storage>> {
        Some(self.0.clone())
    }
}

/// The extension as the service holds it: the storage is shared with the
/// exporters that use it.
pub struct FileStorageHandle(Arc<FileStorage>);

#[async_trait]
impl Lifecycle for FileStorageHandle {
    async fn start(&self) -> Result<(), ComponentError> {
        self.0.prepare_directory()
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
        Ok(Arc::new(FileStorageHandle(Arc::new(FileStorage::new(
            &ctx.id.to_string(),
            config,
        )))))
    }
}

pub fn register(r: &mut Registry) {
    r.extension(FileStorageFactory);
}

/// Test support: a started `file_storage` extension (id `file_storage`)
/// keeping its files in `dir`, as the service hands it to components.
#[cfg(test)]
pub(crate) async fn started_for_test(dir: &std::path::Path) -> sluice_core::Extensions {
    use sluice_core::{
        BuildContext, ComponentId, Extension, ExtensionFactory, Health, Kind, Telemetry,
    };
    let telemetry = Telemetry::new(sluice_core::telemetry::MetricsLevel::None);
    let ctx = BuildContext {
        id: ComponentId::new(TYPE, None),
        kind: Kind::Extension,
        pipeline: None,
        signal: None,
        signals: Vec::new(),
        telemetry,
        health: Health::default(),
        extensions: Default::default(),
    };
    let cfg: FileStorageConfig =
        serde_yaml_ng::from_str(&format!("directory: {}", dir.display())).expect("config");
    let ext: std::sync::Arc<dyn Extension> = FileStorageFactory.create(ctx, &cfg).expect("create");
    ext.start().await.expect("start");
    let mut map = std::collections::BTreeMap::new();
    map.insert(ComponentId::new(TYPE, None), ext);
    sluice_core::Extensions::new(map)
}
