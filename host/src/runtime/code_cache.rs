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
//!
//! Hashing 37 MB took 6 ms of a Python service's 11 ms cold start, on every
//! load. So once the code matched its checksum, the checksum file also
//! records the file as it was then ([`Stamp`]: device, inode, size, change
//! time). A later load whose file still has that stamp skips the hash: any
//! write, truncation or replacement through the file system changes the
//! inode, the size or the change time (which no user can set back), and
//! brings the full check back. What the stamp cannot see is the disk itself
//! flipping bits later, which nothing else in the root (SQLite, the JSON
//! files) guards against either.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::Engine;
use wasmtime::component::Component;

pub use crate::api::CacheOutcome;

/// Starts a checksum file: a file of another format is never mistaken for one.
const MAGIC: &[u8; 8] = b"LOCKERC2";
/// Magic, then the blake3 hash; a stamp may follow.
const RECORD_LEN: usize = MAGIC.len() + blake3::OUT_LEN;

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
        crate::allocator::give_back_compiler_memory();
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
        let stamp = match Stamp::of(entry) {
            Ok(stamp) => stamp,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("cannot read it"),
        };
        let checksum_path = Self::checksum_path(entry);
        let record = std::fs::read(&checksum_path).context("no checksum")?;
        anyhow::ensure!(
            record.len() >= RECORD_LEN && record.starts_with(MAGIC),
            "its checksum file is damaged"
        );
        let (expected, stamped) = record.split_at(RECORD_LEN);
        if stamped != stamp.to_bytes() {
            let mut hasher = blake3::Hasher::new();
            hasher.update_mmap(entry).context("cannot read it")?;
            anyhow::ensure!(
                expected == checksum_record(&hasher.finalize()),
                "checksum mismatch"
            );
            // Checked whole: later loads of this very file skip the hash.
            let stamped = [expected, &stamp.to_bytes()].concat();
            if let Err(e) =
                crate::store::root::write_atomically(&checksum_path, &stamped, &self.dir)
            {
                tracing::warn!(entry = %entry.display(), "cannot stamp a checked entry: {e:#}");
            }
        }
        // SAFETY: the checksum proves the file holds exactly what this host
        // wrote after compiling, or the stamp proves it is the same file,
        // untouched since it was proven (wasmtime itself rejects code from
        // another engine version or configuration), and entries are only
        // ever replaced whole by a rename, never written in place while
        // mapped.
        let component =
            unsafe { Component::deserialize_file(engine, entry) }.map_err(anyhow::Error::from)?;
        Ok(Some(component))
    }

    fn store(&self, entry: &Path, code: &[u8]) -> Result<()> {
        let checksum_path = Self::checksum_path(entry);
        let checksum = checksum_record(&blake3::hash(code));
        crate::store::root::write_atomically(&checksum_path, &checksum, &self.dir)?;
        crate::store::root::write_atomically(entry, code, &self.dir)?;
        // The file now holds exactly `code`: its first load need not hash it.
        let stamped = [checksum, Stamp::of(entry)?.to_bytes()].concat();
        crate::store::root::write_atomically(&checksum_path, &stamped, &self.dir)
    }
}

/// A file as the file system sees it: which file (device and inode), its
/// size, and when its contents or metadata last changed. The change time
/// moves with every write and every `touch`, and cannot be set back.
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    changed_secs: i64,
    changed_nanos: i64,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path)?;
        Ok(Stamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            changed_secs: metadata.ctime(),
            changed_nanos: metadata.ctime_nsec(),
        })
    }

    fn to_bytes(&self) -> Vec<u8> {
        [
            self.device.to_le_bytes(),
            self.inode.to_le_bytes(),
            self.size.to_le_bytes(),
            self.changed_secs.to_le_bytes(),
            self.changed_nanos.to_le_bytes(),
        ]
        .concat()
    }
}

/// What a checksum file holds: the magic, then the code's blake3 hash.
fn checksum_record(hash: &blake3::Hash) -> Vec<u8> {
    [MAGIC.as_slice(), hash.as_bytes()].concat()
}
