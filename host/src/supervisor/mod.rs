//! The supervisor: the services of a serving host, kept in step with the
//! catalog; the lifecycle operations the admin API offers (install,
//! upgrade, uninstall, start, stop, replay); and the host's background work
//! (`background`); the owner's settings of a service (`config`). Adding a
//! service configures every capability for it,
//! registers it, and tells the triggers (its subscriptions, its jobs).

mod background;
pub mod backups;
pub mod config;
mod options;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};

pub use background::BackgroundTasks;
pub use options::HostOptions;

use crate::api::{
    AcceptedOffer, Offer, OfferRequest, ServiceStatus, UpgradeOffer, UpgradeOfferRequest,
};
use crate::bus::Bus;
use crate::capabilities::{HostCapabilities, HostParts, ServiceContext};
use crate::changes::Changes;
use crate::distribution::Distribution;
use crate::jobs::Scheduler;
use crate::metrics::Metrics;
use crate::package::Package;
use crate::runtime::calls::CallRouter;
use crate::runtime::service::ServiceParts;
use crate::runtime::settings::Settings;
use crate::runtime::{Runtime, Service, Services};
use crate::store::{
    Catalog, CatalogError, ConfigStore, InstalledService, LockerRoot, RegistryLogins, ServiceLog,
    SqliteCatalog, SqliteEventLog, SqliteJobStore, TrustStore,
};
use crate::triggers::jobs::JobRunner;

pub struct Supervisor {
    pub root: LockerRoot,
    pub catalog: Arc<dyn Catalog>,
    pub runtime: Arc<Runtime>,
    pub bus: Arc<Bus>,
    pub scheduler: Arc<Scheduler>,
    pub jobs: JobRunner,
    pub services: Arc<Services>,
    /// The publisher key pinned for each package installed from a registry.
    pub trust: TrustStore,
    /// The owner's logins to registries.
    pub logins: RegistryLogins,
    /// What `/_locker/metrics` shows.
    pub metrics: Metrics,
    /// Backups of the root: `[backup]` in `host.toml`, the one running, the last.
    pub backups: backups::Backups,
    capabilities: HostCapabilities,
    options: HostOptions,
    /// Set once the background work runs; dispatchers start from then on.
    started: AtomicBool,
    /// Serializes catalog changes made through this host.
    changes: tokio::sync::Mutex<()>,
    /// The services the owner changed through this host, by name (not
    /// those changed to follow the cluster).
    pub announced: Changes<String>,
    /// The settings the owner changed through this host: (service, key).
    pub announced_config: Changes<(String, String)>,
}

/// A change another host made, followed here without announcing it.
pub enum Followed {
    Install(Package),
    Upgrade(Package),
    Uninstall { name: String, keep_data: bool },
    Stopped { name: String, stopped: bool },
}

impl Supervisor {
    /// Opens the root's catalog, event log and jobs, the engine and its
    /// code cache, and adds every installed service (nothing is loaded, and
    /// nothing runs until [`Supervisor::start_background`]).
    pub fn new(root: LockerRoot, options: HostOptions) -> Result<Arc<Supervisor>> {
        let catalog: Arc<dyn Catalog> = Arc::new(SqliteCatalog::open(&root)?);
        let (job_store, jobs) = SqliteJobStore::open(&root)?;
        let scheduler = Scheduler::new(Arc::new(job_store), jobs, options.jobs.clone());
        let cache_dir = options
            .cache_dir
            .clone()
            .unwrap_or_else(|| root.default_cache_dir());
        let runtime = Arc::new(Runtime::new(&options.pool, cache_dir)?);
        let metrics = if options.metrics {
            Metrics::on()
        } else {
            Metrics::off()
        };
        let bus = Arc::new(
            Bus::new(
                Arc::new(SqliteEventLog::open(&root)?),
                options.max_event_payload,
                options.delivery.clone(),
            )
            .with_metrics(metrics.clone()),
        );
        let services = Arc::new(Services::default());
        let host_settings = crate::backup::settings::HostSettings::read(root.dir())?;
        let root_for_trust = root.clone();
        let capabilities = HostCapabilities::set_up(&HostParts {
            bus: &bus,
            jobs: &scheduler,
            config: &Arc::new(ConfigStore::open(&root)?),
        })?;
        let supervisor = Arc::new(Supervisor {
            jobs: JobRunner::new(scheduler.clone(), services.clone(), metrics.clone()),
            metrics,
            backups: backups::Backups::new(host_settings.backup, root.dir()),
            root,
            catalog,
            runtime,
            bus,
            scheduler,
            services,
            trust: TrustStore::open(&root_for_trust)?,
            logins: RegistryLogins::open(&root_for_trust)?,
            capabilities,
            options,
            started: AtomicBool::new(false),
            changes: tokio::sync::Mutex::new(()),
            announced: Changes::default(),
            announced_config: Changes::default(),
        });
        for service in supervisor.catalog.list()? {
            supervisor.add(service);
        }
        Ok(supervisor)
    }

    /// Makes a service of an installed one: its settings, its capabilities
    /// configured, registered (retiring one it replaces), its subscriptions
    /// known to the bus and its dispatcher started.
    fn add(&self, installed: InstalledService) -> Arc<Service> {
        let manifest = &installed.manifest;
        let name = manifest.name.clone();
        let log = ServiceLog::new(self.root.log_path(&name));
        let capabilities = self.capabilities.configure(&ServiceContext {
            manifest,
            log: &log,
        });
        let calls = Arc::new(CallRouter::new(
            manifest,
            Arc::downgrade(&self.services),
            log.clone(),
        ));
        let parts = ServiceParts {
            calls,
            component_path: self.catalog.component_path(&installed),
            work_dir: self.root.work_dir(&name),
            log,
            settings: Settings::resolve(
                manifest,
                &self.options.defaults,
                self.options.pool.max_memory,
            ),
            capabilities,
            runtime: self.runtime.clone(),
            bus: self.bus.clone(),
            catalog: self.catalog.clone(),
            metrics: self.metrics.service(&name),
        };
        let subscribes = manifest.subscribes.clone();
        self.bus.types.set(manifest);
        let service = Arc::new(Service::new(installed, parts));
        self.services.insert(service.clone());
        // Known before anyone may publish to it.
        self.bus.subscriptions.set(&name, subscribes);
        self.spawn_dispatcher(&service);
        if self.options.compile_ahead && self.started.load(std::sync::atomic::Ordering::SeqCst) {
            // Ready at install: compiled now, not at its first request.
            let preparing = service.clone();
            tokio::spawn(async move { preparing.prepare().await });
        }
        service
    }

    pub fn service(&self, name: &str) -> Option<Arc<Service>> {
        self.services.get(name)
    }

    pub fn statuses(&self) -> Vec<ServiceStatus> {
        self.services.all().iter().map(|s| s.status()).collect()
    }

    pub async fn install(&self, package: Package) -> Result<ServiceStatus> {
        let _change = self.changes.lock().await;
        let name = package.manifest.name.clone();
        self.announcing(&name, self.install_now(package).await)
    }

    /// Follows a change made through another host of the cluster.
    pub async fn follow(&self, change: Followed) -> Result<()> {
        match change {
            Followed::Install(package) => {
                let _change = self.changes.lock().await;
                self.install_now(package).await?;
            }
            Followed::Upgrade(package) => {
                let _change = self.changes.lock().await;
                self.upgrade_to(package, None).await?;
            }
            Followed::Uninstall { name, keep_data } => {
                let _change = self.changes.lock().await;
                self.uninstall_now(&name, keep_data).await?;
            }
            Followed::Stopped { name, stopped } => {
                self.set_stopped(&name, stopped).await?;
                if !stopped {
                    self.bus.ring(&name);
                    self.scheduler.resume(&name);
                }
            }
        }
        Ok(())
    }

    /// `result`, announcing `name` if it is a success.
    fn announcing<T>(&self, name: &str, result: Result<T>) -> Result<T> {
        if result.is_ok() {
            self.announced.announce(name.to_string());
        }
        result
    }

    /// An install, with the change lock held by the caller.
    async fn install_now(&self, package: Package) -> Result<ServiceStatus> {
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

    /// Packages from registries, with this root's trust store and logins.
    pub fn distribution(&self) -> Distribution<'_> {
        let cache = self
            .options
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.root.default_cache_dir());
        Distribution {
            trust: &self.trust,
            logins: &self.logins,
            downloads: cache.join("downloads"),
        }
    }

    /// What installing a package from a registry would mean.
    pub async fn offer(&self, request: &OfferRequest) -> Result<Offer> {
        self.distribution().offer(request, None).await
    }

    /// What upgrading `name` from the registry it came from would mean.
    pub async fn upgrade_offer(
        &self,
        name: &str,
        request: &UpgradeOfferRequest,
    ) -> Result<UpgradeOffer> {
        let service = self
            .service(name)
            .ok_or_else(|| CatalogError::NotInstalled(name.to_string()))?;
        self.distribution()
            .upgrade_offer(service.installed(), request)
            .await
    }

    /// Installs the offer the owner accepted, pulled and checked again in
    /// full; a first install of a signed package pins its key.
    pub async fn install_offer(&self, accepted: &AcceptedOffer) -> Result<ServiceStatus> {
        // One change at a time from the checks to the pin: no other install
        // or upgrade of the name can slip between them.
        let _change = self.changes.lock().await;
        let fetched = self.distribution().fetch(accepted, None).await?;
        let name = fetched.package.manifest.name.clone();
        let installed = fetched
            .commit(&self.trust, |package| self.install_now(package))
            .await;
        self.announcing(&name, installed)
    }

    /// Upgrades `name` to the offer the owner accepted: newer, from the key
    /// pinned for it, reaching nothing the owner did not accept.
    pub async fn upgrade_to_offer(
        &self,
        name: &str,
        accepted: &AcceptedOffer,
    ) -> Result<ServiceStatus> {
        let _change = self.changes.lock().await;
        let service = self
            .service(name)
            .ok_or_else(|| CatalogError::NotInstalled(name.to_string()))?;
        let fetched = self
            .distribution()
            .fetch(accepted, Some(&service.installed().manifest))
            .await?;
        let upgraded = fetched
            .commit(&self.trust, |package| self.upgrade_to(package, None))
            .await;
        self.announcing(name, upgraded)
    }

    /// Replaces a service's package, keeping its data; its manifest's jobs,
    /// subscriptions and service types take effect at once.
    pub async fn upgrade(&self, package: Package) -> Result<ServiceStatus> {
        let _change = self.changes.lock().await;
        let name = package.manifest.name.clone();
        self.announcing(&name, self.upgrade_to(package, None).await)
    }

    /// Back to the version before the last upgrade; with `data`, its
    /// working directory too, as that upgrade found it.
    pub async fn rollback(&self, name: &str, data: bool) -> Result<ServiceStatus> {
        let _change = self.changes.lock().await;
        let package = self
            .blocking(|catalog| catalog.previous(name))
            .await?
            .with_context(|| {
                format!("{name} has no earlier version kept (one is kept at each upgrade)")
            })?;
        let saved = if data {
            Some(
                self.blocking(|catalog| catalog.take_previous_data(name))
                    .await?
                    .with_context(|| format!("{name} has no copy of its folder kept"))?,
            )
        } else {
            None
        };
        self.announcing(name, self.upgrade_to(package, saved).await)
    }

    /// An upgrade (or rollback) to `package`; `data`, when given, takes the
    /// place of the working directory while no instance runs.
    async fn upgrade_to(
        &self,
        package: Package,
        data: Option<std::path::PathBuf>,
    ) -> Result<ServiceStatus> {
        let name = package.manifest.name.clone();
        let previous = self
            .service(&name)
            .ok_or_else(|| CatalogError::NotInstalled(name.clone()))?;
        let (old, new) = self
            .blocking(move |catalog| catalog.upgrade(&package))
            .await?;
        previous.unload("upgraded");
        if let Some(data) = data {
            self.blocking(|catalog| catalog.restore_data(&name, &data))
                .await
                .context("rolled back, but its folder could not be put back")?;
        }
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
        let settings = self.capabilities.config.store().values(name)?;
        let uninstalled = self.uninstall_now(name, keep_data).await;
        if uninstalled.is_ok() {
            // Its settings went with it.
            for key in settings.into_keys() {
                self.announced_config.announce((name.to_string(), key));
            }
        }
        self.announcing(name, uninstalled)
    }

    /// An uninstall, with the change lock held by the caller.
    async fn uninstall_now(&self, name: &str, keep_data: bool) -> Result<ServiceStatus> {
        let service = self
            .service(name)
            .ok_or_else(|| CatalogError::NotInstalled(name.to_string()))?;
        service.unload("uninstalled");
        let status = service.status();
        let owned = name.to_string();
        self.blocking(move |catalog| catalog.uninstall(&owned, keep_data))
            .await?;
        self.services.remove(name);
        self.capabilities.forget(name);
        self.bus.remove_subscriber(name);
        self.bus.types.remove(name);
        self.metrics.forget(name);
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
        self.announced.announce(name.to_string());
        // Deliveries and jobs held while it was stopped can go now.
        self.bus.ring(name);
        self.scheduler.resume(name);
        service
            .loaded()
            .await
            .with_context(|| format!("service {name:?} did not start"))?;
        Ok(service.status())
    }

    /// Stops a service: unloads it and refuses requests until it is started.
    pub async fn stop(&self, name: &str) -> Result<ServiceStatus> {
        let stopped = self.set_stopped(name, true).await.map(|s| s.status());
        self.announcing(name, stopped)
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
        let subscribers = self.bus.log().replay(service, event).await?;
        for subscriber in &subscribers {
            self.bus.rewind(subscriber);
        }
        Ok(subscribers)
    }

    /// Runs a catalog call (SQLite and file I/O) without stalling other tasks.
    async fn blocking<T>(&self, f: impl FnOnce(&dyn Catalog) -> Result<T>) -> Result<T> {
        tokio::task::block_in_place(|| f(&*self.catalog))
    }
}
