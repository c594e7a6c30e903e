//! The supervisor: the installed services of a serving host, kept in step
//! with the catalog, the event bus, the scheduler and the discovery
//! directory; the lifecycle operations the admin API offers (install,
//! uninstall, start, stop, replay); and the idle reaper.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::bus::{Bus, DeliveryPolicy};
use crate::catalog::{Catalog, CatalogError, InstalledService};
use crate::code_cache::CodeCache;
use crate::discovery::{Directory, ServiceInfo};
use crate::engine::{PoolSettings, Runtime};
use crate::event_store::EventStore;
use crate::guest_api::ServiceLinks;
use crate::package::Package;
use crate::root::LockerRoot;
use crate::scheduler::{JobPolicy, Scheduler};
use crate::service::{Defaults, Service, ServiceStatus, Settings};
use crate::service_log::ServiceLog;

/// How a host is set up; every field has a default.
#[derive(Debug, Clone)]
pub struct HostOptions {
    pub defaults: Defaults,
    pub pool: PoolSettings,
    /// Where compiled code is cached; `<root>/cache` when `None`.
    pub cache_dir: Option<PathBuf>,
    pub delivery: DeliveryPolicy,
    /// The largest event payload, in bytes.
    pub max_event_payload: usize,
    pub jobs: JobPolicy,
    /// How long delivered events stay in the history.
    pub event_retention: Duration,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            defaults: Defaults::default(),
            pool: PoolSettings::default(),
            cache_dir: None,
            delivery: DeliveryPolicy::default(),
            max_event_payload: 64 * 1024,
            jobs: JobPolicy::default(),
            event_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

pub struct Supervisor {
    pub root: LockerRoot,
    pub catalog: Catalog,
    pub runtime: Runtime,
    pub cache: Arc<CodeCache>,
    pub bus: Arc<Bus>,
    pub directory: Arc<Directory>,
    pub scheduler: Arc<Scheduler>,
    options: HostOptions,
    services: RwLock<BTreeMap<String, Arc<Service>>>,
    /// Serializes catalog changes made through this host.
    changes: tokio::sync::Mutex<()>,
}

impl Supervisor {
    /// Opens the root's catalog, event store and jobs; starts a dispatcher
    /// for every subscribing service (deliveries left pending by a previous
    /// run resume at once) and the scheduler's timer (jobs missed while the
    /// host was down run once). Must run inside a tokio runtime.
    pub fn new(root: LockerRoot, options: HostOptions) -> Result<Arc<Supervisor>> {
        let catalog = Catalog::open(&root)?;
        let events = EventStore::open(&root)?;
        let scheduler = Scheduler::open(&root, options.jobs.clone())?;
        let runtime = Runtime::new(&options.pool)?;
        let cache_dir = options
            .cache_dir
            .clone()
            .unwrap_or_else(|| root.default_cache_dir());
        let cache = Arc::new(CodeCache::new(cache_dir, runtime.compatibility_key())?);
        let bus = Arc::new(Bus::new(
            events,
            options.max_event_payload,
            options.delivery.clone(),
        ));
        let supervisor = Arc::new(Supervisor {
            root,
            catalog,
            runtime,
            cache,
            bus,
            directory: Arc::new(Directory::default()),
            scheduler,
            options,
            services: RwLock::new(BTreeMap::new()),
            changes: tokio::sync::Mutex::new(()),
        });
        let installed = supervisor.catalog.list()?;
        for service in &installed {
            supervisor.add(service.clone());
        }
        tokio::spawn(supervisor.clone().start_scheduler(installed));
        Ok(supervisor)
    }

    /// Brings the stored jobs in step with the catalog (an install or
    /// uninstall cut short by a crash may have left them behind), then runs
    /// the timer.
    async fn start_scheduler(self: Arc<Self>, installed: Vec<InstalledService>) {
        for service in &installed {
            if let Err(e) = self.scheduler.sync_service(&service.manifest).await {
                tracing::error!(service = %service.manifest.name, "cannot register its jobs: {e:#}");
            }
        }
        for orphan in self.scheduler.services() {
            if self.service(&orphan).is_none()
                && let Err(e) = self.scheduler.remove_service(&orphan).await
            {
                tracing::error!(service = %orphan, "cannot remove the jobs of an uninstalled service: {e:#}");
            }
        }
        self.scheduler.clone().run_timer(self.clone()).await;
    }

    /// Settings with the defaults filled in, for a service no host runs.
    pub fn settings_of(installed: &InstalledService) -> Settings {
        Settings::resolve(
            installed,
            &Defaults::default(),
            PoolSettings::default().max_memory,
        )
    }

    fn add(self: &Arc<Self>, installed: InstalledService) -> Arc<Service> {
        let manifest = &installed.manifest;
        let name = manifest.name.clone();
        let links = ServiceLinks {
            name: name.clone(),
            publishes: Arc::new(manifest.publishes.clone()),
            bus: self.bus.clone(),
            directory: self.directory.clone(),
            scheduler: self.scheduler.clone(),
        };
        let settings = Settings::resolve(
            &installed,
            &self.options.defaults,
            self.options.pool.max_memory,
        );
        let service = Arc::new(Service::new(
            installed.clone(),
            self.catalog.component_path(&installed),
            self.root.work_dir(&name),
            ServiceLog::new(self.root.log_path(&name)),
            links,
            settings,
        ));
        self.services
            .write()
            .unwrap()
            .insert(name.clone(), service.clone());
        self.directory.insert(ServiceInfo::of(manifest));
        self.bus
            .set_subscriptions(&name, manifest.subscribes.clone());
        if !manifest.subscribes.is_empty() {
            tokio::spawn(crate::delivery::run_dispatcher(
                self.clone(),
                service.clone(),
            ));
        }
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

    pub async fn install(self: &Arc<Self>, package: Package) -> Result<ServiceStatus> {
        let _change = self.changes.lock().await;
        let installed = self
            .blocking(move |catalog| catalog.install(&package))
            .await?;
        let service = self.add(installed);
        self.scheduler
            .sync_service(&service.installed().manifest)
            .await
            .context("installed, but its jobs could not be registered (the next start retries)")?;
        let version = service.installed().manifest.version.to_string();
        service.log().note(&format!("installed version {version}"));
        service.emit(
            "locker/service.installed",
            serde_json::json!({ "service": service.name, "version": version }),
        );
        Ok(service.status())
    }

    /// Replaces a service's package, keeping its data; its manifest's jobs,
    /// subscriptions and service types take effect at once.
    pub async fn upgrade(self: &Arc<Self>, package: Package) -> Result<ServiceStatus> {
        let _change = self.changes.lock().await;
        let name = package.manifest.name.clone();
        let previous = self
            .service(&name)
            .ok_or_else(|| CatalogError::NotInstalled(name.clone()))?;
        let (old, new) = self
            .blocking(move |catalog| catalog.upgrade(&package))
            .await?;
        previous.unload("upgraded");
        let service = self.add(new);
        self.scheduler
            .sync_service(&service.installed().manifest)
            .await
            .context("upgraded, but its jobs could not be registered (the next start retries)")?;
        let (from, to) = (
            old.manifest.version.to_string(),
            service.installed().manifest.version.to_string(),
        );
        service
            .log()
            .note(&format!("upgraded from version {from} to {to}"));
        service.emit(
            "locker/service.upgraded",
            serde_json::json!({ "service": name, "from": from, "to": to }),
        );
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
        self.directory.remove(name);
        self.bus.remove_subscriber(name);
        self.scheduler
            .remove_service(name)
            .await
            .context("uninstalled, but its jobs could not be removed (the next start retries)")?;
        service.emit(
            "locker/service.uninstalled",
            serde_json::json!({ "service": name, "kept_data": keep_data }),
        );
        Ok(status)
    }

    /// Starts a service: clears `stopped` and loads it now.
    pub async fn start(&self, name: &str) -> Result<ServiceStatus> {
        let service = self.set_stopped(name, false).await?;
        // Deliveries and jobs held while it was stopped can go now.
        self.bus.ring(name);
        self.scheduler.resume(name);
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

    /// Makes dead letters pending again and wakes their subscribers.
    pub async fn replay(
        &self,
        service: Option<String>,
        event: Option<String>,
    ) -> Result<Vec<String>> {
        let subscribers = self.bus.store().replay(service, event).await?;
        for subscriber in &subscribers {
            self.bus.ring(subscriber);
        }
        Ok(subscribers)
    }

    /// Unloads every service that has been idle past its idle time, and
    /// rotates logs that grew too large.
    pub fn reap_idle(&self) {
        let services: Vec<_> = self.services.read().unwrap().values().cloned().collect();
        for service in services {
            service.unload_if_idle();
            service
                .log()
                .rotate_if_larger(crate::service_log::ROTATE_AT);
        }
    }

    /// How often the reaper should look: often enough for the shortest idle time.
    pub fn reap_interval(&self) -> Duration {
        let shortest = self
            .services
            .read()
            .unwrap()
            .values()
            .flat_map(|s| [s.settings.idle_unload, s.settings.reuse_idle])
            .chain([self.options.defaults.idle_unload])
            .min()
            .unwrap_or(Duration::from_secs(1));
        (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// Deletes events older than the retention time that are owed to no
    /// one; returns how many.
    pub async fn prune_events(&self) -> Result<usize> {
        let before = time::OffsetDateTime::now_utc() - self.options.event_retention;
        let pruned = self.bus.store().prune(before).await?;
        if pruned > 0 {
            tracing::info!(
                pruned,
                retention = %humantime::format_duration(self.options.event_retention),
                "pruned the event history"
            );
        }
        Ok(pruned)
    }

    /// How often the history is pruned: hourly, or more often for a short retention.
    pub fn prune_interval(&self) -> Duration {
        (self.options.event_retention / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(3600))
    }

    /// Runs a catalog call (SQLite and file I/O) without stalling other tasks.
    async fn blocking<T>(&self, f: impl FnOnce(&Catalog) -> Result<T>) -> Result<T> {
        tokio::task::block_in_place(|| f(&self.catalog))
    }
}
