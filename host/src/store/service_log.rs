//! A service's log: its stdout and stderr, and the host's notes about it
//! (loads, unloads, failures), in `<root>/logs/<name>.log`.
//!
//! A log that grows past [`ROTATE_AT`] is copied to `<name>.log.1` (the one
//! before is dropped) and emptied in place. Emptying rather than renaming
//! keeps working for instances that hold the file open: they append with
//! `O_APPEND`, so they simply continue at the new end.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

/// The size past which a log is rotated.
pub const ROTATE_AT: u64 = 8 << 20;

/// Cloned into each capability that notes things: the path is shared.
#[derive(Clone)]
pub struct ServiceLog {
    path: Arc<Path>,
}

impl ServiceLog {
    pub fn new(path: PathBuf) -> Self {
        ServiceLog { path: path.into() }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The log opened for appending, shared by all instances of the service.
    pub fn file(&self) -> Result<Arc<File>> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot open the service log {}", self.path.display()))?;
        Ok(Arc::new(file))
    }

    /// Where the previous part of a rotated log is kept.
    pub fn rotated_path(&self) -> PathBuf {
        let mut path = self.path.as_os_str().to_owned();
        path.push(".1");
        path.into()
    }

    /// Rotates the log if it has grown past `limit` bytes; `true` if it did.
    pub fn rotate_if_larger(&self, limit: u64) -> bool {
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if size <= limit {
            return false;
        }
        let rotated = std::fs::copy(&self.path, self.rotated_path()).and_then(|_| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)?
                .set_len(0)
        });
        match rotated {
            Ok(()) => {
                self.note(&format!(
                    "log rotated at {size} bytes; the lines before are in {}",
                    self.rotated_path().display()
                ));
                true
            }
            Err(e) => {
                tracing::warn!(log = %self.path.display(), "cannot rotate a service log: {e}");
                false
            }
        }
    }

    /// Appends a line from the host, marked as such.
    pub fn note(&self, message: &str) {
        let line = format!("[locker {}] {message}\n", crate::clock::now_rfc3339());
        if let Err(e) = self
            .file()
            .and_then(|f| Ok((&*f).write_all(line.as_bytes())?))
        {
            tracing::warn!(log = %self.path.display(), "cannot write to a service log: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_past_its_limit_is_kept_as_log_1_and_emptied_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let log = ServiceLog::new(dir.path().join("svc.log"));
        let writer = log.file().unwrap();
        (&*writer).write_all(&[b'x'; 2048]).unwrap();
        assert!(!log.rotate_if_larger(4096));
        assert!(log.rotate_if_larger(1024));
        assert_eq!(std::fs::read(log.rotated_path()).unwrap(), vec![b'x'; 2048]);
        // A writer that held the file open continues at the new end.
        (&*writer).write_all(b"after\n").unwrap();
        let current = std::fs::read_to_string(dir.path().join("svc.log")).unwrap();
        assert!(current.starts_with("[locker "), "{current}");
        assert!(current.contains("log rotated at 2048 bytes"), "{current}");
        assert!(current.ends_with("after\n"), "{current}");
    }
}
