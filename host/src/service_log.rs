//! A service's log: its stdout and stderr, and the host's notes about it
//! (loads, unloads, failures), in `<root>/logs/<name>.log`.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};

#[derive(Clone)]
pub struct ServiceLog {
    path: PathBuf,
}

impl ServiceLog {
    pub fn new(path: PathBuf) -> Self {
        ServiceLog { path }
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

    /// Appends a line from the host, marked as such.
    pub fn note(&self, message: &str) {
        let line = format!("[locker {}] {message}\n", crate::catalog::now_rfc3339());
        if let Err(e) = self
            .file()
            .and_then(|f| Ok((&*f).write_all(line.as_bytes())?))
        {
            tracing::warn!(log = %self.path.display(), "cannot write to a service log: {e:#}");
        }
    }
}
