//! `wasi:config/store`: a service reads the settings the owner gave it
//! (`locker config set`), or its manifest's defaults, and nothing else: its
//! instances hold its own values only, and only the keys its manifest
//! declares. Both versions components import today are served:
//! `0.2.0-draft-2024-09-27` (the Spin SDK, wasmCloud) and `0.2.0-rc.1`
//! (wasmtime's `wasmtime-wasi-config`, which serves only that one; the
//! interface is two functions, so this unit serves both from one map).
//!
//! The values live in the root (`store::config`, secrets sealed); this unit
//! keeps each service's current ones, read again whenever the owner
//! changes one (the supervisor then unloads the service, so every instance
//! after the change sees the new values).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HostParts, ServiceContext};
use crate::api::ConfigEntry;
use crate::package::Manifest;
use crate::package::host_template::HostTemplate;
use crate::package::manifest::ConfigKey;
use crate::store::ConfigStore;
use crate::store::config::StoredValue;

mod draft {
    wasmtime::component::bindgen!({
        path: "../wit/deps/config",
        world: "wasi:config/imports",
    });
}

mod rc1 {
    wasmtime::component::bindgen!({
        path: "../wit/wasi-config/0.2.0-rc.1",
        world: "wasi:config/imports",
    });
}

/// Set up once: where the values are, and each service's current ones.
pub struct Config {
    store: Arc<ConfigStore>,
    services: RwLock<HashMap<String, Arc<ServiceConfig>>>,
}

/// One service's settings: what its manifest declares, and what it reads.
pub struct ServiceConfig {
    name: String,
    declared: BTreeMap<String, ConfigKey>,
    values: RwLock<Arc<BTreeMap<String, String>>>,
}

/// What one instance reads: the service's values when it was made.
pub struct ConfigInstance {
    values: Arc<BTreeMap<String, String>>,
}

impl Config {
    /// Reads a service's values again, after the owner changed one.
    pub fn reload(&self, service: &str) {
        if let Some(config) = self.services.read().unwrap().get(service) {
            config.refresh(&self.store);
        }
    }

    pub fn store(&self) -> &Arc<ConfigStore> {
        &self.store
    }
}

impl ServiceConfig {
    fn refresh(&self, store: &ConfigStore) {
        let stored = match store.values(&self.name) {
            Ok(stored) => stored,
            Err(error) => {
                // Its required keys then read as unset: it answers 503.
                tracing::warn!(service = %self.name, "cannot read its config: {error:#}");
                BTreeMap::new()
            }
        };
        let values = self
            .declared
            .iter()
            .filter_map(|(key, declared)| {
                let value = stored
                    .get(key)
                    .map(|stored| stored.value.clone())
                    .or_else(|| declared.default.clone())?;
                Some((key.clone(), value))
            })
            .collect();
        *self.values.write().unwrap() = Arc::new(values);
    }

    /// The first required key that has no value, with its declaration.
    pub fn missing(&self) -> Option<(String, ConfigKey)> {
        let values = self.values.read().unwrap();
        self.declared
            .iter()
            .find(|(key, declared)| declared.required && !values.contains_key(*key))
            .map(|(key, declared)| (key.clone(), declared.clone()))
    }

    /// A key's current value.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values.read().unwrap().get(key).cloned()
    }

    /// The manifest's `allow_hosts` with each `{{ key }}` replaced by the
    /// host its value names; an entry whose key is unset (or whose value
    /// names no host) opens nothing.
    pub fn allow_hosts(&self, manifest: &Manifest) -> Vec<String> {
        manifest
            .network
            .allow_hosts
            .iter()
            .filter_map(|entry| match HostTemplate::parse(entry) {
                Ok(None) => Some(entry.clone()),
                Ok(Some(template)) => template.resolve(&self.get(template.key())?).ok(),
                Err(_) => None,
            })
            .collect()
    }
}

impl Capability for Config {
    type Service = Arc<ServiceConfig>;
    type Instance = ConfigInstance;

    fn set_up(host: &HostParts<'_>) -> anyhow::Result<Config> {
        Ok(Config {
            store: host.config.clone(),
            services: RwLock::default(),
        })
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut ConfigInstance,
    ) -> wasmtime::Result<()> {
        draft::wasi::config::store::add_to_linker::<T, HasSelf<ConfigInstance>>(linker, get)?;
        rc1::wasi::config::store::add_to_linker::<T, HasSelf<ConfigInstance>>(linker, get)
    }

    fn configure(&self, service: &ServiceContext<'_>) -> Arc<ServiceConfig> {
        let config = Arc::new(ServiceConfig {
            name: service.manifest.name.clone(),
            declared: service.manifest.config.clone(),
            values: RwLock::default(),
        });
        config.refresh(&self.store);
        self.services
            .write()
            .unwrap()
            .insert(config.name.clone(), config.clone());
        config
    }

    fn forget(&self, service: &str) {
        self.services.write().unwrap().remove(service);
    }

    fn prepare(service: &Arc<ServiceConfig>) -> ConfigInstance {
        ConfigInstance {
            values: service.values.read().unwrap().clone(),
        }
    }
}

impl draft::wasi::config::store::Host for ConfigInstance {
    fn get(&mut self, key: String) -> Result<Option<String>, draft::wasi::config::store::Error> {
        Ok(self.values.get(&key).cloned())
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, draft::wasi::config::store::Error> {
        Ok(self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

impl rc1::wasi::config::store::Host for ConfigInstance {
    fn get(&mut self, key: String) -> Result<Option<String>, rc1::wasi::config::store::Error> {
        Ok(self.values.get(&key).cloned())
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, rc1::wasi::config::store::Error> {
        Ok(self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// What the owner sees of a service's settings: each key its manifest
/// declares, then the values kept for keys it no longer declares. A
/// secret's value is never in it.
pub fn entries(manifest: &Manifest, stored: &BTreeMap<String, StoredValue>) -> Vec<ConfigEntry> {
    let opens = |key: &str, value: Option<&str>| -> Vec<String> {
        manifest
            .network
            .allow_hosts
            .iter()
            .filter_map(|entry| HostTemplate::parse(entry).ok().flatten())
            .filter(|template| template.key() == key)
            .filter_map(|template| template.resolve(value?).ok())
            .collect()
    };
    let mut entries: Vec<ConfigEntry> = manifest
        .config
        .iter()
        .map(|(key, declared)| {
            let set = stored.get(key);
            let secret = declared.secret || set.is_some_and(|s| s.secret);
            let current = set
                .map(|s| s.value.as_str())
                .or(declared.default.as_deref());
            ConfigEntry {
                key: key.clone(),
                description: Some(declared.description.clone()),
                secret,
                required: declared.required,
                default: declared.default.clone(),
                set: set.is_some(),
                value: if secret {
                    None
                } else {
                    current.map(str::to_string)
                },
                active: true,
                // A secret's host would be the secret: not shown.
                opens: if secret {
                    Vec::new()
                } else {
                    opens(key, current)
                },
            }
        })
        .collect();
    for (key, kept) in stored {
        if !manifest.config.contains_key(key) {
            entries.push(ConfigEntry {
                key: key.clone(),
                description: None,
                secret: kept.secret,
                required: false,
                default: None,
                set: true,
                value: (!kept.secret).then(|| kept.value.clone()),
                active: false,
                opens: Vec::new(),
            });
        }
    }
    entries
}
