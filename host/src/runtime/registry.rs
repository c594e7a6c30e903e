//! The services a host runs, by name: what the front door, the triggers and
//! the supervisor look services up in. Replacing or removing a service
//! retires the old one, which ends the work tied to it (its dispatcher).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

use wasmtime_wasi_http::WasiBody;

use super::service::Service;

/// A call's way to a service another host runs (in a cluster).
pub trait Elsewhere: Send + Sync {
    /// Sends `request` to the host that runs `service`: its answer, or the
    /// request back when that host is this one.
    #[allow(clippy::type_complexity)]
    fn route(
        &self,
        service: &str,
        request: http::Request<WasiBody>,
    ) -> Pin<
        Box<
            dyn Future<
                    Output = Result<
                        Result<http::Response<WasiBody>, http::Request<WasiBody>>,
                        String,
                    >,
                > + Send
                + '_,
        >,
    >;
}

#[derive(Default)]
pub struct Services {
    by_name: RwLock<BTreeMap<String, Arc<Service>>>,
    /// In a cluster: where calls to services other hosts run go.
    elsewhere: OnceLock<Arc<dyn Elsewhere>>,
}

impl Services {
    /// From now on, calls between services go to the host that runs the callee.
    pub fn call_elsewhere(&self, elsewhere: Arc<dyn Elsewhere>) {
        let _ = self.elsewhere.set(elsewhere);
    }

    pub fn elsewhere(&self) -> Option<Arc<dyn Elsewhere>> {
        self.elsewhere.get().cloned()
    }

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
