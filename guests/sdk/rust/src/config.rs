//! The service's settings and secrets: the `[config.KEY]` entries of its
//! manifest, as the owner set them (`locker config set NAME KEY`) or their
//! defaults. Read through the standard `wasi:config/store`, so the same
//! code runs on Spin and wasmCloud.

use crate::bindings::imports::wasi::config::store;
pub use crate::bindings::imports::wasi::config::store::Error;

/// The value of `key`: `None` when it is neither set nor has a default.
pub fn get(key: &str) -> Result<Option<String>, Error> {
    store::get(key)
}

/// The value of `key`, or `default` when it has none (or cannot be read).
pub fn get_or(key: &str, default: &str) -> String {
    get(key)
        .ok()
        .flatten()
        .unwrap_or_else(|| default.to_string())
}

/// Every key that has a value, with its value.
pub fn all() -> Result<Vec<(String, String)>, Error> {
    store::get_all()
}
