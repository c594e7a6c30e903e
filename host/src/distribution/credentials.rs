//! Who the host (or the CLI) is at a registry: the login the owner kept in
//! the root (`locker registry login`), else the one in Docker's config file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), where
//! `docker login`, `oras login` and `locker registry login --docker` put
//! theirs; else anonymous. Credential helpers are not run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::store::RegistryLogins;

/// A user and password.
pub type Login = (String, String);

/// The login for `registry`: the root's, then Docker's.
pub fn login_for(registry: &str, kept: Option<&RegistryLogins>) -> Result<Option<Login>> {
    if let Some(kept) = kept
        && let Some(login) = kept.login(registry)?
    {
        return Ok(Some(login));
    }
    Ok(docker_login(registry))
}

#[derive(Default, Serialize, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    /// Everything else in the file, kept as it was when we write it.
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Default, Serialize, Deserialize)]
struct DockerAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

pub fn docker_config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
            .join(".docker/config.json"),
    }
}

/// `https://reg.example/v1/` and `reg.example` name the same registry.
fn bare(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

fn docker_login(registry: &str) -> Option<Login> {
    let text = std::fs::read_to_string(docker_config_path()).ok()?;
    let config: DockerConfig = serde_json::from_str(&text).ok()?;
    let auth = config
        .auths
        .iter()
        .find(|(key, _)| bare(key) == registry)?
        .1
        .auth
        .as_ref()?;
    // Docker pads its base64; some tools (wkg) write it unpadded.
    let bytes = STANDARD
        .decode(auth)
        .or_else(|_| STANDARD_NO_PAD.decode(auth))
        .ok()?;
    let decoded = String::from_utf8(bytes).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Writes a login into Docker's config file, keeping everything else in it.
pub fn save_docker_login(registry: &str, user: &str, password: &str) -> Result<PathBuf> {
    let path = docker_config_path();
    let mut config: DockerConfig = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a Docker config file", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    config.auths.entry(registry.to_string()).or_default().auth =
        Some(STANDARD.encode(format!("{user}:{password}")));
    let dir = path.parent().context("a config file has a folder")?;
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, &serde_json::to_vec_pretty(&config)?)?;
    // Only its owner reads a file of passwords.
    std::fs::set_permissions(
        file.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    file.persist(&path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_keys_are_compared_bare() {
        assert_eq!(bare("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(bare("localhost:5000"), "localhost:5000");
        assert_eq!(bare("http://127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
