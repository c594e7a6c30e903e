//! The supervisor: the installed services of a serving host, kept in step
//! with the catalog, and the lifecycle operations the admin API offers
//! (install, uninstall, start, stop) plus the idle reaper.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::catalog::{Catalog, CatalogError, InstalledService};
use crate::code_cache::CodeCache;
use crate::engine::{PoolSettings, Runtime};
use crate::package::Package;
use crate::root::LockerRoot;
use crate::service::{Defaults, Service, ServiceStatus};
use crate::service_log::ServiceLog;

/// How a host is set up; every field has a default.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    pub defaults: Defaults,
    pub pool: PoolSettings,
    /// Where compiled code is cached; `<root>/cache` when `None`.
    pub cache_dir: Option<PathBuf>,
}

pub struct Supervisor {
    pub root: LockerRoot,
    pub catalog: Catalog,
    pub runtime: Runtime,
    pub cache: Arc<CodeCache>,
    options: HostOptions,
    services: RwLock<BTreeMap<String, Arc<Service>>>,
    /// Serializes catalog changes made through this host.
    changes: tokio::sync::Mutex<()>,
}

impl Supervisor {
    pub fn new(root: LockerRoot, options: HostOptions) -> Result<Supervisor> {
        let catalog = Catalog::open(&root)?;
        let runtime = Runtime::new(&options.pool)?;
        let cache_dir = options
            .cache_dir
            .clone()
            .unwrap_or_else(|| root.default_cache_dir());
        let cache = Arc::new(CodeCache::new(cache_dir, runtime.compatibility_key())?);
        let supervisor = Supervisor {
            root,
            catalog,
            runtime,
            cache,
            options,
            services: RwLock::new(BTreeMap::new()),
            changes: tokio::sync::Mutex::new(()),
        };
        for installed in supervisor.catalog.list()? {
            supervisor.add(installed);
        }
        Ok(supervisor)
    }

    fn add(&self, installed: InstalledService) -> Arc<Service> {
        let name = installed.manifest.name.clone();
        let service = Arc::new(Service::new(
            installed.clone(),
            self.catalog.component_path(&installed),
            self.root.work_dir(&name),
            ServiceLog::new(self.root.log_path(&name)),
            &self.options.defaults,
            self.options.pool.max_memory,
        ));
        self.services.write().unwrap().insert(name, service.clone());
        service
    }

    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.services.read().unwrap().get(name).cloned()
    }

    pub fn statuses(&self) -> Vec<ServiceStatus> {
        self.services
            .read()
            .unwrap()
            .values()
            .map(|s| s.status())
            .collect()
    }

    pub async fn install(&self, package: Package) -> Result<ServiceStatus> {
        let _change = self.changes.lock().await;
        let installed = self
            .blocking(move |catalog| catalog.install(&package))
            .await?;
        let service = self.add(installed);
        service.log().note(&format!(
            "installed version {}",
            service.installed().manifest.version
        ));
        Ok(service.status())
    }

    pub async fn uninstall(&self, name: &str, keep_data: bool) -> Result<ServiceStatus> {
        let _change = self.changes.lock().await;
        let service = self
            .service(name)
            .ok_or_else(|| CatalogError::NotInstalled(name.to_string()))?;
        service.unload("uninstalled");
        let status = service.status();
        let owned = name.to_string();
        self.blocking(move |catalog| catalog.uninstall(&owned, keep_data))
            .await?;
        self.services.write().unwrap().remove(name);
        Ok(status)
    }

    /// Starts a service: clears `stopped` and loads it now.
    pub async fn start(&self, name: &str) -> Result<ServiceStatus> {
        let service = self.set_stopped(name, false).await?;
        service
            .loaded(&self.runtime, &self.cache)
            .await
            .with_context(|| format!("service {name:?} did not start"))?;
        Ok(service.status())
    }

    /// Stops a service: unloads it and refuses requests until it is started.
    pub async fn stop(&self, name: &str) -> Result<ServiceStatus> {
        Ok(self.set_stopped(name, true).await?.status())
    }

    async fn set_stopped(&self, name: &str, stopped: bool) -> Result<Arc<Service>> {
        let _change = self.changes.lock().await;
        let owned = name.to_string();
        self.blocking(move |catalog| catalog.set_stopped(&owned, stopped))
            .await?;
        let service = self
            .service(name)
            .ok_or_else(|| CatalogError::NotInstalled(name.to_string()))?;
        service.set_stopped(stopped);
        Ok(service)
    }

    /// Unloads every service that has been idle past its idle time.
    pub fn reap_idle(&self) {
        let services: Vec<_> = self.services.read().unwrap().values().cloned().collect();
        for service in services {
            service.unload_if_idle();
        }
    }

    /// How often the reaper should look: often enough for the shortest idle time.
    pub fn reap_interval(&self) -> Duration {
        let shortest = self
            .services
            .read()
            .unwrap()
            .values()
            .map(|s| s.settings.idle_unload)
            .chain([self.options.defaults.idle_unload])
            .min()
            .unwrap_or(Duration::from_secs(1));
        (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// Runs a catalog call (SQLite and file I/O) off the async threads.
    async fn blocking<T>(&self, f: impl FnOnce(&Catalog) -> Result<T>) -> Result<T> {
        tokio::task::block_in_place(|| f(&self.catalog))
    }
}
