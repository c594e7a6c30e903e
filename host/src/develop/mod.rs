//! Writing services: the SDKs and templates the `locker` binary carries,
//! the guest toolchains, and `locker build`.
//!
//! Everything an author needs comes with the binary, so `locker new`,
//! `build` and `dev` work in any folder: the SDKs of `guests/sdk` and the
//! WIT of `wit/` are set up in a per-user tools folder ([`tools_dir`]); the
//! toolchains (cargo's `wasm32-wasip2` target, componentize-js with esbuild,
//! componentize-py) are found on the `PATH` or installed there too.

mod build;
mod language;
mod sdk;
mod template;
mod toolchain;

use std::path::PathBuf;

pub use build::{BuildOptions, Built, build};
pub use language::Language;
pub use sdk::Sdk;
pub use template::{NewService, new_service};

/// Where `locker` keeps what it sets up for authors: `$LOCKER_TOOLS`, or
/// `$XDG_DATA_HOME/locker`, or `~/.local/share/locker`.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LOCKER_TOOLS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("locker");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/locker")
}
