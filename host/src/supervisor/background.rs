//! The host's background work, started in one place (by `locker serve` and
//! the benchmarks alike): the idle reaper, the event-history pruner, the
//! job timer, one event dispatcher per subscribing service, the compiling
//! of services whose code is not in the cache yet, and scheduled backups.

use std::sync::Arc;
use std::time::Duration;

use super::Supervisor;
use crate::runtime::Service;

/// The host-wide tasks; they stop when this is dropped.
pub struct BackgroundTasks {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Supervisor {
    /// Starts the background work: dispatchers for the services there are
    /// (deliveries left pending by a previous run resume at once), and the
    /// job timer once the stored jobs match the catalog (jobs missed while
    /// the host was down run once). Services added later get their
    /// dispatcher when added. Must run inside a tokio runtime.
    pub fn start_background(self: &Arc<Self>) -> BackgroundTasks {
        self.started
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for service in self.services.all() {
            self.spawn_dispatcher(&service);
        }
        let reaper = {
            let supervisor = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(supervisor.reap_interval()).await;
                    supervisor.reap_idle();
                }
            })
        };
        let pruner = {
            let supervisor = self.clone();
            tokio::spawn(async move {
                loop {
                    if let Err(e) = supervisor.prune_events().await {
                        tracing::warn!("cannot prune the event history: {e:#}");
                    }
                    tokio::time::sleep(supervisor.prune_interval()).await;
                }
            })
        };
        let timer = {
            let supervisor = self.clone();
            tokio::spawn(async move {
                supervisor.sync_all_jobs().await;
                supervisor.jobs.clone().run_timer().await;
            })
        };
        // Installed while no host ran (or cached by another build): each
        // service's code goes into the cache now, not at its first request.
        let preparer = {
            let services = match self.options.compile_ahead {
                true => self.services.all(),
                false => Vec::new(),
            };
            tokio::spawn(async move {
                for service in services {
                    service.prepare().await;
                }
            })
        };
        let backups = tokio::spawn(self.clone().run_backup_schedule());
        BackgroundTasks {
            tasks: vec![reaper, pruner, timer, preparer, backups],
        }
    }

    /// Starts a service's event dispatcher, if it subscribes to anything
    /// and the host has started; it ends when the service is retired.
    pub(super) fn spawn_dispatcher(&self, service: &Arc<Service>) {
        if self.started.load(std::sync::atomic::Ordering::SeqCst)
            && !service.installed().manifest.subscribes.is_empty()
        {
            tokio::spawn(crate::triggers::delivery::run_dispatcher(
                self.bus.clone(),
                service.clone(),
            ));
        }
    }

    /// Brings the stored jobs in step with the catalog: an install or
    /// uninstall cut short by a crash may have left them behind.
    async fn sync_all_jobs(&self) {
        for service in self.services.all() {
            if let Err(e) = self
                .scheduler
                .sync_service(&service.installed().manifest)
                .await
            {
                tracing::error!(service = %service.name, "cannot register its jobs: {e:#}");
            }
        }
        for orphan in self.scheduler.services() {
            if self.services.get(&orphan).is_none()
                && let Err(e) = self.scheduler.remove_service(&orphan).await
            {
                tracing::error!(service = %orphan, "cannot remove the jobs of an uninstalled service: {e:#}");
            }
        }
    }

    /// Unloads every service that has been idle past its idle time, and
    /// rotates logs that grew too large.
    pub fn reap_idle(&self) {
        for service in self.services.all() {
            service.unload_if_idle();
            service
                .log()
                .rotate_if_larger(crate::store::service_log::ROTATE_AT);
        }
    }

    /// How often the reaper should look: often enough for the shortest idle time.
    pub fn reap_interval(&self) -> Duration {
        let shortest = self
            .services
            .all()
            .iter()
            .flat_map(|s| [s.settings.idle_unload, s.settings.reuse_idle])
            .chain([self.options.defaults.idle_unload])
            .min()
            .unwrap_or(Duration::from_secs(1));
        (shortest / 4).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// Deletes events older than the retention time that are owed to no
    /// one; returns how many.
    pub async fn prune_events(&self) -> anyhow::Result<usize> {
        let before = chrono::Utc::now() - self.options.event_retention;
        let pruned = self.bus.log().prune(before).await?;
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
}
