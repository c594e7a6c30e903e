//! The services a host runs, by name: what the front door, the triggers and
//! the supervisor look services up in. Replacing or removing a service
//! retires the old one, which ends the work tied to it (its dispatcher).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::service::Service;

#[derive(Default)]
pub struct Services {
    by_name: RwLock<BTreeMap<String, Arc<Service>>>,
}

impl Services {
    pub fn get(&self, name: &str) -> Option<Arc<Service>> {
        self.by_name.read().unwrap().get(name).cloned()
    }

    /// Every service, by name.
    pub fn all(&self) -> Vec<Arc<Service>> {
        self.by_name.read().unwrap().values().cloned().collect()
    }

    /// Adds a service; one it replaces is retired.
    pub fn insert(&self, service: Arc<Service>) {
        let previous = self
            .by_name
            .write()
            .unwrap()
            .insert(service.name.clone(), service);
        if let Some(previous) = previous {
            previous.retire();
        }
    }

    /// Removes and retires a service.
    pub fn remove(&self, name: &str) -> Option<Arc<Service>> {
        let removed = self.by_name.write().unwrap().remove(name);
        if let Some(service) = &removed {
            service.retire();
        }
        removed
    }
}
