//! `locker:service/discovery`: services find each other by the service
//! types they provide (`contact/feed`, `contact/*`). The directory is this
//! capability's own: a service is listed when it is configured and
//! dropped when it is forgotten.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HostParts, ServiceContext};
use crate::bindings::discovery::{self, Host};
use crate::package::Manifest;
use crate::package::topics;

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

/// The installed services, by name.
#[derive(Default)]
pub struct Directory {
    services: RwLock<BTreeMap<String, ServiceInfo>>,
}

impl Directory {
    /// Lists a service, or unlists it when it provides no type: no
    /// pattern can find such a service, so it costs the directory nothing.
    pub fn insert(&self, info: ServiceInfo) {
        let mut services = self.services.write().unwrap();
        if info.provides.is_empty() {
            services.remove(&info.name);
        } else {
            services.insert(info.name.clone(), info);
        }
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
            .filter(|info| info.provides.iter().any(|t| topics::matches(pattern, t)))
            .cloned()
            .collect()
    }
}

/// Set up once: the directory every service looks in.
#[derive(Default)]
pub struct Discovery {
    directory: Arc<Directory>,
}

/// One instance's view: who it is, and the directory.
#[derive(Clone)]
pub struct DiscoveryCtx {
    name: Arc<str>,
    directory: Arc<Directory>,
}

impl Capability for Discovery {
    type Service = DiscoveryCtx;
    type Instance = DiscoveryCtx;

    fn set_up(_host: &HostParts<'_>) -> anyhow::Result<Discovery> {
        Ok(Discovery::default())
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut DiscoveryCtx,
    ) -> wasmtime::Result<()> {
        discovery::add_to_linker::<T, HasSelf<DiscoveryCtx>>(linker, get)
    }

    fn configure(&self, service: &ServiceContext<'_>) -> DiscoveryCtx {
        self.directory.insert(ServiceInfo::of(service.manifest));
        DiscoveryCtx {
            name: service.manifest.name.as_str().into(),
            directory: self.directory.clone(),
        }
    }

    fn forget(&self, service: &str) {
        self.directory.remove(service);
    }

    fn prepare(service: &DiscoveryCtx) -> DiscoveryCtx {
        service.clone()
    }
}

impl Host for DiscoveryCtx {
    async fn self_name(&mut self) -> wasmtime::Result<String> {
        Ok(self.name.to_string())
    }

    async fn find(&mut self, pattern: String) -> wasmtime::Result<Vec<discovery::ServiceInfo>> {
        Ok(self
            .directory
            .find(&pattern)
            .into_iter()
            .map(|info| discovery::ServiceInfo {
                name: info.name,
                kind: info.kind,
                version: info.version,
                provides: info.provides,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ServiceLog;

    fn manifest(name: &str, provides: &str) -> Manifest {
        let text = format!(
            "name = \"{name}\"\nversion = \"1.2.3\"\nkind = \"collection\"\n\
             description = \"d\"\ncomponent = \"c.wasm\"\nprovides = [{provides}]\n"
        );
        Manifest::parse(&text, "test").unwrap()
    }

    #[tokio::test]
    async fn services_find_each_other_by_type_until_forgotten() {
        let discovery = Discovery::default();
        let log = ServiceLog::new("/nonexistent/log".into());
        let mut contacts = Discovery::prepare(&discovery.configure(&ServiceContext {
            manifest: &manifest("contacts", "\"contact/feed\", \"contact/merged\""),
            log: &log,
        }));
        discovery.configure(&ServiceContext {
            manifest: &manifest("carddav", "\"contact/feed\""),
            log: &log,
        });
        discovery.configure(&ServiceContext {
            manifest: &manifest("notes", "\"note/files\""),
            log: &log,
        });
        assert_eq!(contacts.self_name().await.unwrap(), "contacts");
        let feeds = contacts.find("contact/feed".into()).await.unwrap();
        let names: Vec<_> = feeds.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["carddav", "contacts"]);
        assert_eq!(feeds[0].version, "1.2.3");
        assert_eq!(contacts.find("contact/*".into()).await.unwrap().len(), 2);
        assert_eq!(contacts.find("*".into()).await.unwrap().len(), 3);
        discovery.forget("carddav");
        assert_eq!(contacts.find("contact/feed".into()).await.unwrap().len(), 1);
    }
}
