//! The directory of installed services, for `locker:service/discovery`:
//! services find each other by the service types they provide.

use std::collections::BTreeMap;
use std::sync::RwLock;

use crate::manifest::Manifest;

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceInfo {
    pub name: String,
    pub kind: String,
    pub version: String,
    pub provides: Vec<String>,
}

impl ServiceInfo {
    pub fn of(manifest: &Manifest) -> ServiceInfo {
        ServiceInfo {
            name: manifest.name.clone(),
            kind: manifest.kind.to_string(),
            version: manifest.version.to_string(),
            provides: manifest.provides.clone(),
        }
    }
}

#[derive(Default)]
pub struct Directory {
    services: RwLock<BTreeMap<String, ServiceInfo>>,
}

impl Directory {
    pub fn insert(&self, info: ServiceInfo) {
        self.services
            .write()
            .unwrap()
            .insert(info.name.clone(), info);
    }

    pub fn remove(&self, name: &str) {
        self.services.write().unwrap().remove(name);
    }

    /// Services providing a type matching `pattern` (`contact/feed`, `contact/*`, `*`), by name.
    pub fn find(&self, pattern: &str) -> Vec<ServiceInfo> {
        self.services
            .read()
            .unwrap()
            .values()
            .filter(|info| {
                info.provides
                    .iter()
                    .any(|t| crate::topics::matches(pattern, t))
            })
            .cloned()
            .collect()
    }
}
