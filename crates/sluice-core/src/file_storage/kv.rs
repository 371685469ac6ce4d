//! The key-value side of `file_storage`: one directory per owner, one file
//! per key, replaced atomically (written beside, then renamed over).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::component::{ComponentError, KeyValueStore};

/// Name of the lock file in each store directory.
const LOCK: &str = "LOCK";
/// Suffix of a value being written; never read back.
const TMP_SUFFIX: &str = ".tmp";

/// A store directory, locked for as long as this value lives.
pub(crate) struct FileKv {
    dir: PathBuf,
    fsync: bool,
    /// Holds the `flock`; released when dropped (or when the process dies).
    _lock: File,
}

fn err(what: &str, path: &Path, e: io::Error) -> ComponentError {
    ComponentError::new(format!("{what} {}: {e}", path.display()))
}

impl FileKv {
    /// Opens (creating) `dir` and takes its lock; a second open of the same
    /// directory, by this process or another, fails until the first is dropped.
    pub(crate) fn open(dir: PathBuf, fsync: bool) -> Result<FileKv, ComponentError> {
        std::fs::create_dir_all(&dir).map_err(|e| err("cannot create", &dir, e))?;
        let path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| err("cannot open", &path, e))?;
        loop {
            // SAFETY: flock only reads the descriptor, which `lock` keeps open.
            let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    return Err(ComponentError::new(format!(
                        "store {} is in use by another component or process",
                        dir.display()
                    )))
                }
                _ => return Err(err("cannot lock", &path, e)),
            }
        }
        Ok(FileKv {
            dir,
            fsync,
            _lock: lock,
        })
    }

    fn key_path(&self, key: &str) -> Result<PathBuf, ComponentError> {
        let ok = !key.is_empty()
            && key.len() <= 200
            && key != LOCK
            && !key.ends_with(TMP_SUFFIX)
            && !key.starts_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(ComponentError::new(format!(
                "invalid key {key:?}: use letters, digits, '_', '-' and '.'"
            )));
        }
        Ok(self.dir.join(key))
    }
}

impl KeyValueStore for FileKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ComponentError> {
        let path = self.key_path(key)?;
        match std::fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err("cannot read", &path, e)),
        }
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), ComponentError> {
        let path = self.key_path(key)?;
        let tmp = self.dir.join(format!("{key}{TMP_SUFFIX}"));
        let mut f = File::create(&tmp).map_err(|e| err("cannot create", &tmp, e))?;
        f.write_all(value)
            .map_err(|e| err("cannot write", &tmp, e))?;
        if self.fsync {
            f.sync_data().map_err(|e| err("cannot sync", &tmp, e))?;
        }
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| err("cannot replace", &path, e))?;
        if self.fsync {
            // The rename itself is durable once the directory is synced.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err("cannot sync", &self.dir, e))?;
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), ComponentError> {
        let path = self.key_path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err("cannot delete", &path, e)),
        }
    }
}
