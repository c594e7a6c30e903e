//! The SDKs the binary carries, set up on disk where the toolchains can
//! use them.
//!
//! `guests/sdk/{rust,js,python}` hold each SDK's own files; the WIT they
//! build against is the repository's `wit/`, embedded once. Set up, each
//! SDK gets its copy of the WIT inside it (componentize-py wants it under
//! the package; the Rust crate's `wit_bindgen` paths are relative to it),
//! and the JavaScript one's `wasi:*` versions are those StarlingMonkey
//! speaks. The folder keeps one path (a Rust service's `Cargo.toml` names
//! it) and records the hash of what is embedded: a `locker` carrying other
//! SDKs writes its own in full beside it and swaps it into place, so no
//! build ever sees half of one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use include_dir::{Dir, DirEntry, include_dir};

static SDK_FILES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../guests/sdk");
static WIT_FILES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../wit");

/// The `wasi:*@0.2` version of the host's WIT, and the one componentize-js
/// 0.23's StarlingMonkey builds against.
const HOST_WASI_VERSION: &str = "0.2.12";
const JS_WASI_VERSION: &str = "0.2.10";

/// Folders of the host's WIT that guests do not build against: the
/// `wasi:config` version the host serves only for components built elsewhere.
const HOST_ONLY_WIT: &[&str] = &["wasi-config"];

/// Written last: which SDKs the folder holds.
const VERSION_FILE: &str = ".version";

/// Build leftovers that are never part of an SDK.
const LEFTOVERS: &[&str] = &["__pycache__", "target", "node_modules", "bindings"];

/// The SDKs, set up in one folder.
#[derive(Debug, Clone)]
pub struct Sdk {
    pub root: PathBuf,
    /// `<locker version>-<hash of the embedded files>`.
    pub version: String,
}

impl Sdk {
    /// Sets the SDKs up under `tools` (once per version of what the binary
    /// carries) and returns where they are.
    pub fn ensure(tools: &Path) -> Result<Sdk> {
        let root = tools.join("sdk");
        let version = version();
        let current = std::fs::read_to_string(root.join(VERSION_FILE)).ok();
        if current.as_deref() != Some(version.as_str()) {
            write_all(&root, &version)
                .with_context(|| format!("cannot set up Locker's SDKs in {}", root.display()))?;
        }
        Ok(Sdk { root, version })
    }

    /// The Rust crate `locker-sdk`.
    pub fn rust(&self) -> PathBuf {
        self.root.join("rust")
    }

    /// The npm package folder `locker-sdk`.
    pub fn js(&self) -> PathBuf {
        self.root.join("js")
    }

    /// The folder to put on componentize-py's path: it holds `locker_sdk`.
    pub fn python(&self) -> PathBuf {
        self.root.join("python")
    }

    /// The WIT a JavaScript service builds against.
    pub fn js_wit(&self) -> PathBuf {
        self.js().join("wit")
    }

    /// The WIT the Python SDK carries.
    pub fn python_wit(&self) -> PathBuf {
        self.python().join("locker_sdk/wit")
    }

    /// Where the Python SDK's pre-generated bindings go (for editors;
    /// componentize-py makes its own while building).
    pub fn python_bindings(&self) -> PathBuf {
        self.python().join("locker_sdk/bindings")
    }
}

/// A short hash of everything embedded.
fn version() -> String {
    let mut hasher = blake3::Hasher::new();
    for dir in [&SDK_FILES, &WIT_FILES] {
        for (path, contents) in files(dir) {
            hasher.update(path.to_string_lossy().as_bytes());
            hasher.update(&(contents.len() as u64).to_le_bytes());
            hasher.update(contents);
        }
    }
    format!(
        "{}-{}",
        env!("CARGO_PKG_VERSION"),
        &hasher.finalize().to_hex()[..12]
    )
}

/// Every file under `dir`, with its path relative to the embedded root.
fn files(dir: &'static Dir<'static>) -> Vec<(&'static Path, &'static [u8])> {
    let mut found = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in dir.entries() {
            match entry {
                DirEntry::Dir(sub) => {
                    let leftover = sub
                        .path()
                        .file_name()
                        .is_some_and(|n| LEFTOVERS.iter().any(|l| n == *l));
                    if !leftover {
                        stack.push(sub);
                    }
                }
                DirEntry::File(file) => found.push((file.path(), file.contents())),
            }
        }
    }
    found.sort();
    found
}

fn write_all(root: &Path, version: &str) -> Result<()> {
    let parent = root.parent().expect("the SDK folder has a parent");
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::tempdir_in(parent)?;
    for (path, contents) in files(&SDK_FILES) {
        write(&staging.path().join(path), &rust_wit_path(path, contents))?;
    }
    for (path, contents) in files(&WIT_FILES) {
        if path
            .components()
            .next()
            .is_some_and(|first| HOST_ONLY_WIT.iter().any(|h| first.as_os_str() == *h))
        {
            continue;
        }
        write(&staging.path().join("rust/wit").join(path), contents)?;
        write(
            &staging.path().join("python/locker_sdk/wit").join(path),
            contents,
        )?;
        let js = String::from_utf8_lossy(contents).replace(HOST_WASI_VERSION, JS_WASI_VERSION);
        write(&staging.path().join("js/wit").join(path), js.as_bytes())?;
    }
    std::fs::create_dir_all(staging.path().join("python/locker_sdk/bindings"))?;
    std::fs::write(staging.path().join(VERSION_FILE), version)?;
    // Swap: the old SDKs aside, the new ones in, the old ones gone.
    let retired = parent.join(format!(".sdk-retired-{}", std::process::id()));
    let had_old = std::fs::rename(root, &retired).is_ok();
    let staged = staging.keep();
    if let Err(error) = std::fs::rename(&staged, root) {
        std::fs::remove_dir_all(&staged).ok();
        // Another `locker` set the same SDKs up at the same moment: theirs do.
        let theirs = std::fs::read_to_string(root.join(VERSION_FILE)).ok();
        if theirs.as_deref() != Some(version) {
            return Err(error)
                .with_context(|| format!("cannot move the new SDKs to {}", root.display()));
        }
    }
    if had_old {
        std::fs::remove_dir_all(&retired).ok();
    }
    Ok(())
}

/// In the repository the Rust SDK's `wit_bindgen` reads `../../../wit`;
/// set up, the WIT is inside the crate.
fn rust_wit_path(path: &Path, contents: &'static [u8]) -> Vec<u8> {
    if path == Path::new("rust/src/bindings.rs") {
        String::from_utf8_lossy(contents)
            .replace("\"../../../wit\"", "\"wit\"")
            .into_bytes()
    } else {
        contents.to_vec()
    }
}

fn write(path: &Path, contents: &[u8]) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("a file has a parent"))?;
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}
