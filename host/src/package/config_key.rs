//! The name of a setting (`[config.KEY]`).

use anyhow::{Result, bail};

/// A config key is also a `{{ key }}` in `allow_hosts`: Spin's variable
/// names (lowercase letters, digits, underscores, starting with a letter).
pub fn validate(key: &str) -> Result<()> {
    let valid = !key.is_empty()
        && key.len() <= 64
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!(
            "config key {key:?} must be 1-64 lowercase letters, digits or underscores, \
             starting with a letter"
        );
    }
    Ok(())
}
