//! The owner's settings of a service: read, set and unset through the
//! serving host. A change reaches the service's next instances: its values
//! are read again and it is unloaded (a required key just set lets it load;
//! a `{{ key }}` host changes what it may reach).

use anyhow::{Result, bail};

use super::Supervisor;
use crate::api::ConfigEntry;
use crate::capabilities::config;
use crate::package::Manifest;
use crate::package::host_template::HostTemplate;
use crate::store::config::StoredValue;
use crate::store::{CatalogError, ConfigStore};

impl Supervisor {
    /// Where the owner's settings of every service are kept.
    pub fn config_store(&self) -> &ConfigStore {
        self.capabilities.config.store()
    }

    /// Every setting of an installed service; never a secret's value.
    pub fn config(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        let installed = self.catalog.require(name)?;
        let stored = self.capabilities.config.store().values(name)?;
        Ok(config::entries(&installed.manifest, &stored))
    }

    /// Sets (`Some`) or unsets (`None`) one of a service's settings.
    pub async fn set_config(
        &self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<Option<ConfigEntry>> {
        let _change = self.changes.lock().await;
        let service = self
            .service(name)
            .ok_or_else(|| CatalogError::NotInstalled(name.to_string()))?;
        let manifest = service.installed().manifest.clone();
        let store = self.capabilities.config.store();
        let entry = tokio::task::block_in_place(|| change(store, &manifest, key, value))?;
        let what = if value.is_some() { "set" } else { "unset" };
        self.config_changed(name, &format!("config {key:?} {what} by the owner"));
        self.announced_config
            .announce((name.to_string(), key.to_string()));
        Ok(entry)
    }

    /// Follows a setting changed through another host of the cluster:
    /// `Some` sets it as it was set there, `None` unsets it.
    pub fn follow_config(&self, name: &str, key: &str, value: Option<&StoredValue>) -> Result<()> {
        let store = self.capabilities.config.store();
        let changed = match value {
            Some(value) => {
                if store.values(name)?.get(key) == Some(value) {
                    return Ok(());
                }
                store.put(name, key, &value.value, value.secret, &value.set_at)?;
                "set"
            }
            None if store.unset(name, key)? => "unset",
            None => return Ok(()),
        };
        if self.service(name).is_some() {
            self.config_changed(
                name,
                &format!("config {key:?} {changed} through another host"),
            );
        }
        Ok(())
    }

    /// What a change of `name`'s settings sets off: its next instances read
    /// them again, and what waited for a required one may go.
    fn config_changed(&self, name: &str, note: &str) {
        self.capabilities.config.reload(name);
        if let Some(service) = self.service(name) {
            service.unload("its config changed");
            // The note names the key, never the value.
            service.log().note(note);
        }
        self.bus.ring(name);
        self.scheduler.resume(name);
        tracing::info!(service = %name, "{note}");
    }
}

/// Writes one change to `store`, checked against the service's manifest;
/// the entry as it is now (none for an inactive key unset). The offline
/// CLI calls this too.
pub fn change(
    store: &ConfigStore,
    manifest: &Manifest,
    key: &str,
    value: Option<&str>,
) -> Result<Option<ConfigEntry>> {
    let name = &manifest.name;
    let declared = manifest.config.get(key);
    match (value, declared) {
        (Some(_), None) => {
            let keys: Vec<&str> = manifest.config.keys().map(String::as_str).collect();
            if keys.is_empty() {
                bail!("service {name:?} declares no config keys");
            }
            bail!(
                "service {name:?} declares no config key {key:?}; it declares: {}",
                keys.join(", ")
            );
        }
        (Some(value), Some(declared)) => {
            for entry in &manifest.network.allow_hosts {
                if let Ok(Some(template)) = HostTemplate::parse(entry)
                    && template.key() == key
                {
                    template.resolve(value)?;
                }
            }
            if value.len() > MAX_VALUE_BYTES {
                bail!("a config value is at most {MAX_VALUE_BYTES} bytes");
            }
            store.set(name, key, value, declared.secret)?;
        }
        (None, _) => {
            if !store.unset(name, key)? {
                bail!("service {name:?} has no value set for {key:?}");
            }
        }
    }
    let stored = store.values(name)?;
    Ok(config::entries(manifest, &stored)
        .into_iter()
        .find(|entry| entry.key == key))
}

/// The largest value the owner may set.
const MAX_VALUE_BYTES: usize = 64 * 1024;
