//! One installed service at run time: its settings, whether it is loaded,
//! and the single-flight cold start that loads it.
//!
//! Nothing of a service is in memory until its first request, event or job.
//! The first takes the load lock and loads (from the code cache or by
//! compiling); whatever arrives meanwhile waits on the same lock and then
//! finds it loaded, so there is exactly one load however many race. A failed
//! load is remembered and answered at once until its retry time, with
//! backoff, so a broken component is never reloaded in a tight loop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;
use wasmtime_wasi_http::p2::bindings::ProxyIndices;
use wasmtime_wasi_http::p3::bindings::ServiceIndices;

use super::code_cache::CacheOutcome;
use super::concurrent::{self, ConcurrentHttp, InstanceParts};
use super::engine::Runtime;
use super::errors::ServiceError;
use super::loaded::{HttpHandler, LoadedService};
use super::outbound::{OutboundRules, ServiceCalls};
use super::sandbox::SandboxSpec;
use super::settings::Settings;
use crate::api::{CodeState, LoadReport, ServiceStatus, State};
use crate::bindings::{EventHandlerIndices, JobHandlerIndices};
use crate::bus::Bus;
use crate::capabilities::ServiceCapabilities;
use crate::clock::now_rfc3339;
use crate::metrics::ServiceMetrics;
use crate::package::WasiHttp;
use crate::store::{Catalog, InstalledService, ServiceLog};

struct LoadFailure {
    reason: String,
    retry_at: Instant,
    backoff: Duration,
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);

/// Where a service's files are, and what it runs with.
pub struct ServiceParts {
    pub component_path: PathBuf,
    pub work_dir: PathBuf,
    pub log: ServiceLog,
    pub settings: Settings,
    pub capabilities: ServiceCapabilities,
    pub runtime: Arc<Runtime>,
    /// Where the host's events about it (`locker/service.*`) go.
    pub bus: Arc<Bus>,
    /// Where its first load since install or upgrade is recorded.
    pub catalog: Arc<dyn Catalog>,
    /// Where its calls to other services go.
    pub calls: Arc<dyn ServiceCalls>,
    /// Its requests, loads and memory limit hits, as metrics.
    pub metrics: ServiceMetrics,
}

pub struct Service {
    pub name: String,
    installed: InstalledService,
    /// Which WASI its HTTP handler speaks, read once from its exports.
    wasi_http: Option<WasiHttp>,
    pub settings: Settings,
    component_path: PathBuf,
    work_dir: PathBuf,
    log: ServiceLog,
    capabilities: ServiceCapabilities,
    runtime: Arc<Runtime>,
    bus: Arc<Bus>,
    catalog: Arc<dyn Catalog>,
    calls: Arc<dyn ServiceCalls>,
    metrics: ServiceMetrics,
    loaded: RwLock<Option<Arc<LoadedService>>>,
    load_lock: tokio::sync::Mutex<()>,
    loading: AtomicBool,
    /// Whether its compiled code is in the cache (a `CodeState`).
    code: AtomicU8,
    stopped: AtomicBool,
    failure: Mutex<Option<LoadFailure>>,
    loads: AtomicU64,
    requests: AtomicU64,
    /// Instances made, across loads.
    instances: Arc<AtomicU64>,
    /// One per instance alive, up to `max_instances`, whatever it serves and
    /// whichever load made it.
    permits: Arc<tokio::sync::Semaphore>,
    last_error: Mutex<Option<String>>,
    last_load: Mutex<Option<LoadReport>>,
    /// Cancelled when the service is replaced or removed: work tied to it
    /// (its event dispatcher) ends.
    retired: CancellationToken,
}

/// The status of a service that is not loaded (or not served at all).
pub fn unloaded_status(installed: &InstalledService, settings: Settings) -> ServiceStatus {
    let manifest = &installed.manifest;
    ServiceStatus {
        name: manifest.name.clone(),
        version: manifest.version.to_string(),
        kind: manifest.kind.to_string(),
        description: manifest.description.clone(),
        provides: manifest.provides.clone(),
        publishes: manifest.published_topics(),
        subscribes: manifest.subscribes.clone(),
        calls: manifest.calls.clone(),
        digest: installed.digest.clone(),
        installed_at: installed.installed_at.clone(),
        state: if installed.stopped {
            State::Stopped
        } else {
            State::Installed
        },
        wasi: installed
            .exports
            .wasi_http()
            .map(|wasi| wasi.version().to_string()),
        loads: 0,
        requests: 0,
        instances: 0,
        in_flight: 0,
        last_error: None,
        last_load: None,
        needs_setting: None,
        settings,
        origin: installed.origin.clone(),
        code: CodeState::Pending,
    }
}

impl Service {
    pub fn new(installed: InstalledService, parts: ServiceParts) -> Service {
        let permits = Arc::new(tokio::sync::Semaphore::new(
            parts.settings.max_instances as usize,
        ));
        Service {
            name: installed.manifest.name.clone(),
            stopped: AtomicBool::new(installed.stopped),
            wasi_http: installed.exports.wasi_http(),
            installed,
            settings: parts.settings,
            component_path: parts.component_path,
            work_dir: parts.work_dir,
            log: parts.log,
            capabilities: parts.capabilities,
            runtime: parts.runtime,
            bus: parts.bus,
            catalog: parts.catalog,
            calls: parts.calls,
            metrics: parts.metrics,
            loaded: RwLock::new(None),
            load_lock: tokio::sync::Mutex::new(()),
            loading: AtomicBool::new(false),
            code: AtomicU8::new(CodeState::Pending as u8),
            failure: Mutex::new(None),
            loads: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            instances: Arc::new(AtomicU64::new(0)),
            permits,
            last_error: Mutex::new(None),
            last_load: Mutex::new(None),
            retired: CancellationToken::new(),
        }
    }

    pub fn installed(&self) -> &InstalledService {
        &self.installed
    }

    pub fn log(&self) -> &ServiceLog {
        &self.log
    }

    pub fn metrics(&self) -> &ServiceMetrics {
        &self.metrics
    }

    /// The engine its instances run in: the one for its WASI version.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.runtime.flavor(self.wasi_http).engine
    }

    /// Ends the work tied to this service; it was replaced or removed.
    pub fn retire(&self) {
        self.retired.cancel();
    }

    /// Resolves once the service is replaced or removed.
    pub async fn retired(&self) {
        self.retired.cancelled().await
    }

    /// Whether a required setting is unset: it gets no instance until then.
    pub fn needs_config(&self) -> bool {
        self.capabilities.config.missing().is_some()
    }

    /// The loaded service, cold-starting it if needed.
    pub async fn loaded(&self) -> Result<Arc<LoadedService>, ServiceError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(ServiceError::Stopped(self.name.clone()));
        }
        if let Some(loaded) = self.loaded.read().unwrap().clone() {
            return Ok(loaded);
        }
        let _guard = self.load_lock.lock().await;
        // Whoever held the lock before us may have loaded it.
        if let Some(loaded) = self.loaded.read().unwrap().clone() {
            return Ok(loaded);
        }
        if self.stopped.load(Ordering::SeqCst) {
            return Err(ServiceError::Stopped(self.name.clone()));
        }
        // No instance until the owner gives what it needs.
        if let Some((key, declared)) = self.capabilities.config.missing() {
            return Err(ServiceError::Unconfigured {
                service: self.name.clone(),
                key,
                description: declared.description,
                secret: declared.secret,
            });
        }
        if let Some(failure) = self.failure.lock().unwrap().as_ref()
            && Instant::now() < failure.retry_at
        {
            return Err(ServiceError::LoadFailed {
                service: self.name.clone(),
                reason: failure.reason.clone(),
                retry_in: failure.retry_at - Instant::now(),
            });
        }

        self.loading.store(true, Ordering::SeqCst);
        let started = Instant::now();
        let result = self.load().await;
        self.loading.store(false, Ordering::SeqCst);
        match result {
            Ok((loaded, outcome)) => {
                let millis = started.elapsed().as_secs_f64() * 1000.0;
                self.loads.fetch_add(1, Ordering::SeqCst);
                self.metrics.load(outcome.label(), started.elapsed());
                *self.failure.lock().unwrap() = None;
                *self.last_load.lock().unwrap() = Some(LoadReport {
                    outcome,
                    millis,
                    at: now_rfc3339(),
                });
                *self.loaded.write().unwrap() = Some(loaded.clone());
                self.set_code_state(CodeState::Ready);
                tracing::info!(service = %self.name, ?outcome, millis, "loaded");
                self.log
                    .note(&format!("loaded ({outcome:?}, {millis:.1} ms)"));
                self.emit(
                    "locker/service.started",
                    serde_json::json!({ "service": self.name, "cache": outcome, "millis": millis }),
                );
                if self.loads.load(Ordering::SeqCst) == 1 {
                    self.announce_online();
                }
                Ok(loaded)
            }
            Err(error) => {
                let reason = format!("{error:#}");
                let mut failure = self.failure.lock().unwrap();
                let backoff = failure
                    .as_ref()
                    .map_or(FIRST_RETRY, |f| (f.backoff * 2).min(LAST_RETRY));
                *failure = Some(LoadFailure {
                    reason: reason.clone(),
                    retry_at: Instant::now() + backoff,
                    backoff,
                });
                *self.last_error.lock().unwrap() = Some(format!("load failed: {reason}"));
                tracing::warn!(service = %self.name, "load failed: {reason}");
                self.log.note(&format!("load failed: {reason}"));
                self.emit(
                    "locker/service.failed",
                    serde_json::json!({ "service": self.name, "error": format!("load failed: {reason}") }),
                );
                Err(ServiceError::LoadFailed {
                    service: self.name.clone(),
                    reason,
                    retry_in: backoff,
                })
            }
        }
    }

    async fn load(&self) -> Result<(Arc<LoadedService>, CacheOutcome)> {
        let runtime = self.runtime.clone();
        let wasi = self.wasi_http;
        let digest = self.installed.digest.clone();
        let component_path = self.component_path.clone();
        // Compiling is CPU-bound: keep it off the threads that serve requests.
        let (pre, outcome) = tokio::task::spawn_blocking(move || -> Result<_> {
            let flavor = runtime.flavor(wasi);
            let (component, outcome) =
                flavor
                    .cache
                    .load(&flavor.engine, &digest, &component_path)?;
            let instance_pre = flavor
                .linker
                .instantiate_pre(&component)
                .map_err(anyhow::Error::from)
                .context("cannot link the component (does it import something the host lacks?)")?;
            Ok((instance_pre, outcome))
        })
        .await
        .context("the load task panicked")??;
        std::fs::create_dir_all(&self.work_dir)
            .with_context(|| format!("cannot create {}", self.work_dir.display()))?;
        let exports = &self.installed.exports;
        let events = find_export(
            &exports.event_handler,
            "locker:service/event-handler",
            || EventHandlerIndices::new(&pre),
        )?;
        let jobs = find_export(&exports.job_handler, "locker:service/job-handler", || {
            JobHandlerIndices::new(&pre)
        })?;
        let sandbox = SandboxSpec {
            work_dir: self.work_dir.clone(),
            log_file: self.log.file()?,
            memory_limit: self.settings.memory as usize,
            outbound: Arc::new(OutboundRules::new(
                &self
                    .capabilities
                    .config
                    .allow_hosts(&self.installed.manifest),
                self.runtime.own_listener.clone(),
            )),
            calls: self.calls.clone(),
            capabilities: self.capabilities.clone(),
        };
        let http = match self.wasi_http {
            None => None,
            Some(WasiHttp::P2) => {
                find_export(&exports.http_handler, "wasi:http/incoming-handler", || {
                    ProxyIndices::new(&pre)
                })?
                .map(HttpHandler::P2)
            }
            Some(WasiHttp::P3) => find_export(&exports.http_handler, "wasi:http/handler", || {
                ServiceIndices::new(&pre)
            })?
            .map(|indices| {
                HttpHandler::P3(ConcurrentHttp::new(InstanceParts {
                    service: self.name.clone(),
                    engine: self.engine().clone(),
                    pre: pre.clone(),
                    indices,
                    sandbox: sandbox.clone(),
                    settings: self.settings.clone(),
                    max_requests: match &self.installed.manifest.reuse {
                        Some(reuse) => reuse.max_requests,
                        None => concurrent::DEFAULT_MAX_REQUESTS,
                    },
                    made: self.instances.clone(),
                    slots: self.permits.clone(),
                    log: self.log.clone(),
                    metrics: self.metrics.clone(),
                }))
            }),
        };
        let loaded = LoadedService::new(
            self.name.clone(),
            pre,
            (http, events, jobs),
            sandbox,
            self.permits.clone(),
            self.instances.clone(),
        );
        Ok((Arc::new(loaded), outcome))
    }

    /// Drops the loaded code. Requests in flight finish on their own copy.
    pub fn unload(&self, why: &str) -> bool {
        let unloaded = self.loaded.write().unwrap().take().is_some();
        if unloaded {
            tracing::info!(service = %self.name, "unloaded ({why})");
            self.log.note(&format!("unloaded ({why})"));
            self.emit(
                "locker/service.stopped",
                serde_json::json!({ "service": self.name, "reason": why }),
            );
        }
        unloaded
    }

    /// Unloads the service if it has been idle longer than its idle time,
    /// and drops reused instances idle longer than theirs.
    pub fn unload_if_idle(&self) -> bool {
        if let Some(loaded) = self.loaded.read().unwrap().as_ref() {
            loaded.warm.drop_idle(self.settings.reuse_idle);
            if let Some(HttpHandler::P3(concurrent)) = &loaded.http {
                concurrent.drop_idle(self.settings.reuse_idle);
            }
        }
        let idle = self
            .loaded
            .read()
            .unwrap()
            .as_ref()
            .and_then(|loaded| loaded.idle_for())
            .is_some_and(|idle| idle >= self.settings.idle_unload);
        idle && self.unload("idle")
    }

    /// A pass for one piece of work on this service (a request, an event
    /// or a job attempt): waits while a backup holds its quiet moment.
    pub async fn working(&self) -> crate::quiesce::Working {
        self.runtime.quiesce.enter().await
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub fn set_stopped(&self, stopped: bool) {
        self.stopped.store(stopped, Ordering::SeqCst);
        if stopped {
            self.unload("stopped by the owner");
        } else {
            // A start clears a remembered failure: the owner asked to try again.
            *self.failure.lock().unwrap() = None;
        }
    }

    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_error(&self, error: &ServiceError) {
        let text = error.to_string();
        self.log.note(&text);
        self.emit(
            "locker/service.failed",
            serde_json::json!({ "service": self.name, "error": text }),
        );
        *self.last_error.lock().unwrap() = Some(text);
    }

    /// Publishes `locker/service.online` if this is the service's first load
    /// since it was installed or upgraded (recorded in the catalog, so a
    /// restart or a reload does not say it again).
    fn announce_online(&self) {
        let (catalog, bus) = (self.catalog.clone(), self.bus.clone());
        let (name, digest) = (self.name.clone(), self.installed.digest.clone());
        let version = self.installed.manifest.version.to_string();
        tokio::spawn(async move {
            let first = {
                let (name, digest) = (name.clone(), digest.clone());
                tokio::task::spawn_blocking(move || catalog.mark_online(&name, &digest)).await
            };
            match first {
                Ok(Ok(true)) => {
                    let payload = serde_json::json!({ "service": name, "version": version, "digest": digest });
                    if let Err(e) = bus
                        .publish_host("locker/service.online", &name, payload)
                        .await
                    {
                        tracing::warn!("cannot publish locker/service.online: {e}");
                    }
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(service = %name, "cannot record that it came online: {e:#}")
                }
                Err(e) => tracing::warn!(service = %name, "the online record panicked: {e}"),
            }
        });
    }

    /// Publishes a host event about this service, without waiting for it.
    pub fn emit(&self, topic: &'static str, payload: serde_json::Value) {
        let bus = self.bus.clone();
        let about = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = bus.publish_host(topic, &about, payload).await {
                tracing::warn!("cannot publish {topic}: {e}");
            }
        });
    }

    pub fn code_state(&self) -> CodeState {
        match self.code.load(Ordering::SeqCst) {
            x if x == CodeState::Ready as u8 => CodeState::Ready,
            x if x == CodeState::Compiling as u8 => CodeState::Compiling,
            _ => CodeState::Pending,
        }
    }

    fn set_code_state(&self, state: CodeState) {
        self.code.store(state as u8, Ordering::SeqCst);
    }

    /// Compiles the component into the code cache unless it is there, so
    /// that its first request is a warm cold start. It holds the load lock
    /// meanwhile: a first request that comes now waits for this compile
    /// instead of doing its own. One compile runs at a time in the host.
    pub async fn prepare(&self) {
        if self.code_state() == CodeState::Ready {
            return;
        }
        let _turn = self.runtime.compiles.acquire().await;
        let _guard = self.load_lock.lock().await;
        if self.loaded.read().unwrap().is_some() {
            return;
        }
        let runtime = self.runtime.clone();
        let wasi = self.wasi_http;
        let digest = self.installed.digest.clone();
        if runtime.flavor(wasi).cache.has_entry(&digest) {
            self.set_code_state(CodeState::Ready);
            return;
        }
        self.set_code_state(CodeState::Compiling);
        let component_path = self.component_path.clone();
        let started = Instant::now();
        let compiled = tokio::task::spawn_blocking(move || {
            let flavor = runtime.flavor(wasi);
            flavor
                .cache
                .load(&flavor.engine, &digest, &component_path)
                .map(drop)
        })
        .await;
        match compiled {
            Ok(Ok(())) => {
                self.set_code_state(CodeState::Ready);
                let millis = started.elapsed().as_secs_f64() * 1000.0;
                self.log
                    .note(&format!("compiled into the code cache ({millis:.0} ms)"));
            }
            Ok(Err(error)) => {
                self.set_code_state(CodeState::Pending);
                self.log.note(&format!("cannot compile: {error:#}"));
            }
            Err(_) => self.set_code_state(CodeState::Pending),
        }
    }

    pub fn state(&self) -> State {
        if self.stopped.load(Ordering::SeqCst) {
            return State::Stopped;
        }
        if self.loading.load(Ordering::SeqCst) {
            return State::Loading;
        }
        if let Some(loaded) = self.loaded.read().unwrap().as_ref() {
            return if loaded.in_flight() > 0 {
                State::Running
            } else {
                State::Idle
            };
        }
        if self.failure.lock().unwrap().is_some() {
            return State::Failed;
        }
        State::Installed
    }

    pub fn status(&self) -> ServiceStatus {
        ServiceStatus {
            state: self.state(),
            loads: self.loads.load(Ordering::SeqCst),
            requests: self.requests.load(Ordering::Relaxed),
            instances: self.instances.load(Ordering::Relaxed),
            in_flight: self
                .loaded
                .read()
                .unwrap()
                .as_ref()
                .map_or(0, |l| l.in_flight()),
            last_error: self.last_error.lock().unwrap().clone(),
            last_load: self.last_load.lock().unwrap().clone(),
            needs_setting: self.capabilities.config.missing().map(|(key, _)| key),
            code: self.code_state(),
            ..unloaded_status(&self.installed, self.settings.clone())
        }
    }
}

/// Where an export the component was found to have at install is, or `None`
/// when it has none.
fn find_export<T>(
    declared: &Option<String>,
    what: &str,
    find: impl FnOnce() -> wasmtime::Result<T>,
) -> Result<Option<T>> {
    declared
        .as_ref()
        .map(|_| {
            find()
                .map_err(anyhow::Error::from)
                .with_context(|| format!("cannot find the component's {what}"))
        })
        .transpose()
}
