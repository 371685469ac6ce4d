//! Storage in a directory: the engine behind the `file_storage` extension,
//! kept in the core beside [`crate::persistent_queue`] (whose segment logs it
//! lays out) so that every component family can use and test against the
//! real thing without depending on the crate that registers the extension.
//!
//! Each persistent queue lives in its own subdirectory, named by its owner,
//! as a segment log. Key-value state ([`Storage::open_store`]) lives in a
//! subdirectory named after its owner, one file per key, replaced atomically
//! (written beside, then renamed over); see `kv`.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::component::{ComponentError, Extension, KeyValueStore, Lifecycle, Storage};
use crate::persistent_queue::{PersistentQueue, QueueConfig, Recovery, DEFAULT_SEGMENT_BYTES};

mod kv;

/// How a [`FileStorage`] keeps its directory.
#[derive(Debug, Clone)]
pub struct FileStorageOptions {
    /// The directory every queue and store lives under.
    pub directory: PathBuf,
    /// Create `directory` when it is missing (otherwise starting fails).
    pub create_directory: bool,
    /// Fsync each write before it is acknowledged.
    pub fsync: bool,
    /// Bound of each queue on disk, in bytes.
    pub max_queue_bytes: u64,
}

/// Queues and key-value stores under one directory.
pub struct FileStorage {
    /// The owning extension's id, for error messages.
    owner: String,
    options: FileStorageOptions,
}

impl FileStorage {
    pub fn new(owner: &str, options: FileStorageOptions) -> FileStorage {
        FileStorage {
            owner: owner.to_string(),
            options,
        }
    }

    /// Makes sure the directory exists (creating it if allowed).
    pub fn prepare_directory(&self) -> Result<(), ComponentError> {
        let dir = &self.options.directory;
        if dir.is_dir() {
            return Ok(());
        }
        if !self.options.create_directory {
            return Err(ComponentError::new(format!(
                "extension {}: directory {} does not exist (set create_directory: true to create it)",
                self.owner,
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            ComponentError::new(format!(
                "extension {}: cannot create directory {}: {e}",
                self.owner,
                dir.display()
            ))
        })
    }
}

impl Storage for FileStorage {
    fn open_queue(&self, name: &str) -> Result<(PersistentQueue, Recovery), ComponentError> {
        self.prepare_directory()?;
        let dir = self.options.directory.join(name);
        PersistentQueue::open(QueueConfig {
            dir: dir.clone(),
            max_bytes: self.options.max_queue_bytes,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            fsync: self.options.fsync,
        })
        .map_err(|e| {
            ComponentError::new(format!(
                "extension {}: cannot open the queue in {}: {e}",
                self.owner,
                dir.display()
            ))
        })
    }

    fn open_store(&self, name: &str) -> Result<Arc<dyn KeyValueStore>, ComponentError> {
        self.prepare_directory()?;
        let store = kv::FileKv::open(self.options.directory.join(name), self.options.fsync)
            .map_err(|e| ComponentError::new(format!("extension {}: {e}", self.owner)))?;
        Ok(Arc::new(store))
    }
}

/// A [`FileStorage`] as the service holds an extension: starting it prepares
/// the directory; the storage is shared with the components that use it.
pub struct FileStorageExtension(Arc<FileStorage>);

impl FileStorageExtension {
    pub fn new(storage: FileStorage) -> FileStorageExtension {
        FileStorageExtension(Arc::new(storage))
    }
}

#[async_trait]
impl Lifecycle for FileStorageExtension {
    async fn start(&self) -> Result<(), ComponentError> {
        self.0.prepare_directory()
    }
}

impl Extension for FileStorageExtension {
    fn storage(&self) -> Option<Arc<dyn Storage>> {
        Some(self.0.clone())
    }
}

/// `raw` with every character but letters, digits, `_` and `-` replaced by
/// `_`: a name [`FileStorage`] accepts for a store or a key.
pub fn storage_safe(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
