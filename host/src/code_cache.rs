//! The on-disk cache of compiled components.
//!
//! An entry is keyed by the component's digest and the engine's compatibility
//! key, and holds a checksum of its own contents. Loading compiled code skips
//! all validation, so an entry is only used after its checksum matches; one
//! that is corrupt, truncated or from another engine is deleted and rebuilt.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"LOCKERC1";
const HEADER_LEN: usize = MAGIC.len() + blake3::OUT_LEN;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled: there was no entry.
    Compiled,
    /// Compiled: the entry was corrupt or stale, and has been replaced.
    Rebuilt,
}

pub struct CodeCache {
    dir: PathBuf,
    engine_key: String,
}

impl CodeCache {
    pub fn new(dir: PathBuf, engine_key: String) -> Result<CodeCache> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the code cache {}", dir.display()))?;
        Ok(CodeCache { dir, engine_key })
    }

    pub fn entry_path(&self, digest: &str) -> PathBuf {
        let digest = digest.trim_start_matches("sha256:");
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// Loads the compiled component, compiling (and caching) it when needed.
    /// Blocking: call it off the async runtime.
    pub fn load(
        &self,
        engine: &Engine,
        digest: &str,
        wasm_path: &Path,
    ) -> Result<(Component, CacheOutcome)> {
        let entry = self.entry_path(digest);
        let mut outcome = CacheOutcome::Compiled;
        match std::fs::read(&entry) {
            Ok(bytes) => match self.deserialize(engine, &bytes) {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(reason) => {
                    tracing::warn!(entry = %entry.display(), "ignoring a bad code cache entry: {reason:#}");
                    let _ = std::fs::remove_file(&entry);
                    outcome = CacheOutcome::Rebuilt;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(entry = %entry.display(), "cannot read a code cache entry: {e}")
            }
        }

        let wasm = std::fs::read(wasm_path)
            .with_context(|| format!("cannot read {}", wasm_path.display()))?;
        let actual = crate::package::digest_of(&wasm);
        anyhow::ensure!(
            actual == digest,
            "the component file {} no longer matches its installed digest {digest}; reinstall the service",
            wasm_path.display()
        );
        let compiled = engine
            .precompile_component(&wasm)
            .map_err(anyhow::Error::from)
            .context("compilation failed")?;
        if let Err(e) = self.store(&entry, &compiled) {
            // A cache that cannot be written only costs speed.
            tracing::warn!(entry = %entry.display(), "cannot write a code cache entry: {e:#}");
        }
        let component = unsafe {
            // SAFETY: these bytes were produced by this engine just now.
            Component::deserialize(engine, &compiled)
        }
        .map_err(anyhow::Error::from)?;
        Ok((component, outcome))
    }

    fn deserialize(&self, engine: &Engine, bytes: &[u8]) -> Result<Component> {
        anyhow::ensure!(
            bytes.len() > HEADER_LEN && &bytes[..MAGIC.len()] == MAGIC,
            "not a cache entry"
        );
        let (header, code) = bytes.split_at(HEADER_LEN);
        let checksum = blake3::hash(code);
        anyhow::ensure!(
            header[MAGIC.len()..] == *checksum.as_bytes(),
            "checksum mismatch"
        );
        // SAFETY: the checksum proves these bytes are exactly what this host
        // wrote after compiling; wasmtime itself rejects code from another
        // engine version or configuration.
        unsafe { Component::deserialize(engine, code) }.map_err(anyhow::Error::from)
    }

    fn store(&self, entry: &Path, code: &[u8]) -> Result<()> {
        let mut bytes = Vec::with_capacity(HEADER_LEN + code.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(blake3::hash(code).as_bytes());
        bytes.extend_from_slice(code);
        crate::root::write_atomically(entry, &bytes, &self.dir)
    }
}
