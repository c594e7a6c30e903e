//! The on-disk cache of compiled components.
//!
//! An entry is keyed by the component's digest and the engine's compatibility
//! key: a file of compiled code (`.cwasm`, exactly what wasmtime produced) and
//! beside it a file holding that code's checksum (`.cwasm.sum`). Loading
//! compiled code skips all validation, so an entry is only used after its
//! checksum matches; one that is corrupt, truncated, from another engine or
//! without its checksum is deleted and rebuilt.
//!
//! The code is mapped from its file, not read and copied: a 37 MB Python
//! interpreter costs no copy to load, and its pages are shared with the page
//! cache. The checksum is written before the code, so a crash between the two
//! leaves no code (an entry to build), never code without its checksum.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::Engine;
use wasmtime::component::Component;

pub use crate::api::CacheOutcome;

/// Starts a checksum file: a file of another format is never mistaken for one.
const MAGIC: &[u8; 8] = b"LOCKERC2";

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

    /// Whether compiled code for `digest` is there (not whether it is
    /// sound: a load checks that, and rebuilds a bad entry).
    pub fn has_entry(&self, digest: &str) -> bool {
        self.entry_path(digest).is_file()
    }

    fn checksum_path(entry: &Path) -> PathBuf {
        let mut path = entry.as_os_str().to_owned();
        path.push(".sum");
        PathBuf::from(path)
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
        match self.load_entry(engine, &entry) {
            Ok(Some(component)) => return Ok((component, CacheOutcome::Hit)),
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(entry = %entry.display(), "ignoring a bad code cache entry: {reason:#}");
                let _ = std::fs::remove_file(&entry);
                outcome = CacheOutcome::Rebuilt;
            }
        }

        let wasm = std::fs::read(wasm_path)
            .with_context(|| format!("cannot read {}", wasm_path.display()))?;
        let actual = crate::package::component::digest_of(&wasm);
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

    /// The entry's component; `None` when there is no entry.
    fn load_entry(&self, engine: &Engine, entry: &Path) -> Result<Option<Component>> {
        let mut hasher = blake3::Hasher::new();
        match hasher.update_mmap(entry) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("cannot read it"),
        }
        let expected = std::fs::read(Self::checksum_path(entry)).context("no checksum")?;
        let actual = checksum_record(&hasher.finalize());
        anyhow::ensure!(expected == actual, "checksum mismatch");
        // SAFETY: the checksum proves the file holds exactly what this host
        // wrote after compiling (wasmtime itself rejects code from another
        // engine version or configuration), and entries are only ever
        // replaced whole by a rename, never written in place while mapped.
        let component =
            unsafe { Component::deserialize_file(engine, entry) }.map_err(anyhow::Error::from)?;
        Ok(Some(component))
    }

    fn store(&self, entry: &Path, code: &[u8]) -> Result<()> {
        let checksum = checksum_record(&blake3::hash(code));
        crate::store::root::write_atomically(&Self::checksum_path(entry), &checksum, &self.dir)?;
        crate::store::root::write_atomically(entry, code, &self.dir)
    }
}

/// What a checksum file holds: the magic, then the code's blake3 hash.
fn checksum_record(hash: &blake3::Hash) -> Vec<u8> {
    [MAGIC.as_slice(), hash.as_bytes()].concat()
}
