//! The directory lock: one queue per directory, across processes.
//!
//! An advisory `flock` on a `LOCK` file in the directory. The kernel drops it
//! when the holder exits, however it exits, so a crash never leaves a stale
//! lock behind (unlike a "create the file exclusively" lock). Locks from
//! separate opens conflict even within one process, so a second
//! [`PersistentQueue::open`](super::PersistentQueue::open) of a directory
//! that is already open fails here too.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::{io_error, QueueError};

pub(super) const FILE_NAME: &str = "LOCK";

/// Held for as long as the queue is open; dropping it releases the lock.
#[derive(Debug)]
pub(super) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(super) fn acquire(dir: &Path) -> Result<DirLock, QueueError> {
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        if !try_lock(&file).map_err(|e| io_error(&path, e))? {
            return Err(QueueError::Locked {
                dir: dir.to_path_buf(),
                holder: holder(&mut file),
            });
        }
        // The holder's pid is only there to make the error above helpful.
        let pid = std::process::id().to_string();
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()));
        Ok(DirLock { _file: file })
    }
}

/// Takes the lock without waiting; `false` if someone else holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open
        // for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// Describes the current holder from the pid it wrote, for the error.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let read = file.read_to_string(&mut text);
    match text.trim().parse::<u32>() {
        Ok(pid) if read.is_ok() => format!("process {pid}"),
        _ => "another process".to_string(),
    }
}
