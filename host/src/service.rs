//! One installed service at run time: its settings, whether it is loaded,
//! and the single-flight cold start that loads it.
//!
//! Nothing of a service is in memory until its first request. The first
//! request takes the load lock and loads (from the code cache or by compiling);
//! requests arriving meanwhile wait on the same lock and then find it loaded,
//! so there is exactly one load however many requests race. A failed load is
//! remembered and answered at once until its retry time, with backoff, so a
//! broken component is never reloaded in a tight loop.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytesize::ByteSize;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;
use wasmtime::component::InstancePre;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};

use crate::catalog::InstalledService;
use crate::code_cache::{CacheOutcome, CodeCache};
use crate::engine::{EPOCH_TICK, Runtime};
use crate::errors::ServiceError;
use crate::guest_api::{EventHandlerIndices, JobHandlerIndices, ServiceLinks};
use crate::sandbox::{InstanceState, SandboxSpec};
use crate::service_log::ServiceLog;

/// Host-wide defaults for what a manifest leaves out.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub timeout: Duration,
    pub memory: ByteSize,
    pub max_instances: u32,
    pub max_body: ByteSize,
    pub idle_unload: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            timeout: Duration::from_secs(30),
            memory: ByteSize::mib(128),
            max_instances: 32,
            max_body: ByteSize::mib(16),
            idle_unload: Duration::from_secs(300),
        }
    }
}

/// A service's limits with the defaults filled in.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Settings {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub memory: u64,
    pub max_instances: u32,
    pub max_body: u64,
    #[serde(with = "humantime_serde")]
    pub idle_unload: Duration,
    /// Requests one HTTP instance serves in turn (1: a fresh one for each).
    #[serde(default = "one")]
    pub reuse: u32,
    /// A reused instance unused this long is dropped.
    #[serde(default, with = "humantime_serde")]
    pub reuse_idle: Duration,
}

fn one() -> u32 {
    1
}

/// How long a reused instance may wait for its next request by default.
const REUSE_IDLE: Duration = Duration::from_secs(30);

impl Settings {
    pub fn resolve(installed: &InstalledService, defaults: &Defaults, max_memory: u64) -> Settings {
        let limits = &installed.manifest.limits;
        Settings {
            timeout: limits.timeout.unwrap_or(defaults.timeout),
            memory: limits
                .memory
                .unwrap_or(defaults.memory)
                .as_u64()
                .min(max_memory),
            max_instances: limits.max_instances.unwrap_or(defaults.max_instances),
            max_body: limits.max_body.unwrap_or(defaults.max_body).as_u64(),
            idle_unload: limits.idle_unload.unwrap_or(defaults.idle_unload),
            reuse: installed
                .manifest
                .reuse
                .as_ref()
                .map_or(1, |r| r.max_requests),
            reuse_idle: installed
                .manifest
                .reuse
                .as_ref()
                .and_then(|r| r.idle)
                .unwrap_or(REUSE_IDLE),
        }
    }
}

/// What the admin API shows of a service's run-time state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Installed, not in memory.
    Installed,
    Loading,
    /// Loaded and serving at least one request.
    Running,
    /// Loaded, no request in flight; unloaded after its idle time.
    Idle,
    /// The last load failed; retried on a request after `retry_at`.
    Failed,
    /// Stopped by the owner.
    Stopped,
}

/// A loaded service: compiled, linked, ready to instantiate per request.
pub struct LoadedService {
    pub pre: InstancePre<InstanceState>,
    /// Where its `wasi:http/incoming-handler` is, if it serves HTTP.
    pub http: Option<ProxyIndices>,
    /// Where its `locker:service/event-handler` is, if it handles events.
    pub events: Option<EventHandlerIndices>,
    /// Where its `locker:service/job-handler` is, if it runs jobs.
    pub jobs: Option<JobHandlerIndices>,
    pub sandbox: SandboxSpec,
    /// One per request running at once, up to `max_instances`.
    pub permits: Arc<Semaphore>,
    /// HTTP instances waiting for their next request (opt-in reuse), most
    /// recently used last.
    warm: Mutex<Vec<WarmProxy>>,
    /// Set when a reused instance failed to answer at all: some runtimes
    /// (StarlingMonkey's `fetch` listener) serve one request per instance.
    reuse_off: AtomicBool,
    in_flight: AtomicUsize,
    last_used: Mutex<Instant>,
}

/// An HTTP instance kept for the service's next request.
pub struct WarmProxy {
    pub store: Store<InstanceState>,
    pub proxy: Proxy,
    pub memory_hit: Arc<AtomicBool>,
    /// Requests it has served so far.
    pub served: u32,
    pub idle_since: Instant,
}

/// A fresh store for one instance, and the claim on the service it holds.
pub struct PreparedInstance {
    pub store: Store<InstanceState>,
    /// Turns true if the instance was refused memory past its limit.
    pub memory_hit: Arc<AtomicBool>,
    /// Holds an instance slot and counts as in flight until dropped.
    pub claim: (OwnedSemaphorePermit, InFlight),
}

impl LoadedService {
    /// Waits (until `deadline`) for a free instance slot, then builds a
    /// store with the service's sandbox, memory limit and epoch deadline.
    pub async fn prepare(
        self: &Arc<Self>,
        engine: &wasmtime::Engine,
        settings: &Settings,
        deadline: tokio::time::Instant,
    ) -> Result<PreparedInstance, ServiceError> {
        let claim = self.admit(settings, deadline).await?;
        let (store, memory_hit) = self.new_store(engine, settings)?;
        Ok(PreparedInstance {
            store,
            memory_hit,
            claim,
        })
    }

    /// Waits (until `deadline`) for a free instance slot; the claim counts
    /// as in flight until dropped.
    pub async fn admit(
        self: &Arc<Self>,
        settings: &Settings,
        deadline: tokio::time::Instant,
    ) -> Result<(OwnedSemaphorePermit, InFlight), ServiceError> {
        // A free slot is the usual case: take it without arming a timer.
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| ServiceError::Busy {
                    service: self.sandbox.links.name.clone(),
                    max: settings.max_instances,
                })?
                .expect("the semaphore is never closed"),
        };
        Ok((permit, self.begin_request()))
    }

    /// A fresh store with the service's sandbox, memory limit and deadline.
    pub fn new_store(
        &self,
        engine: &wasmtime::Engine,
        settings: &Settings,
    ) -> Result<(Store<InstanceState>, Arc<AtomicBool>), ServiceError> {
        let state = self
            .sandbox
            .instance_state()
            .map_err(|e| ServiceError::Host {
                service: self.sandbox.links.name.clone(),
                reason: format!("{e:#}"),
            })?;
        let memory_hit = state.limiter.hit_flag();
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        arm_deadline(&mut store, settings.timeout);
        Ok((store, memory_hit))
    }

    /// Whether its HTTP instances may be reused (the manifest opted in,
    /// and no reused instance has failed to answer since it was loaded).
    pub fn reuses(&self, settings: &Settings) -> bool {
        settings.reuse > 1 && !self.reuse_off.load(Ordering::Relaxed)
    }

    /// Stops reusing instances until the service is loaded again; `true`
    /// the first time.
    pub fn turn_off_reuse(&self) -> bool {
        self.warm.lock().unwrap().clear();
        !self.reuse_off.swap(true, Ordering::Relaxed)
    }

    /// The most recently used warm HTTP instance, if one is waiting.
    pub fn take_warm(&self) -> Option<WarmProxy> {
        self.warm.lock().unwrap().pop()
    }

    /// Keeps an instance that served a request well for the next one,
    /// unless it has served its share or touched its memory limit.
    pub fn keep_warm(&self, warm: WarmProxy, settings: &Settings) {
        if warm.served >= settings.reuse
            || warm.memory_hit.load(Ordering::Relaxed)
            || self.reuse_off.load(Ordering::Relaxed)
        {
            return;
        }
        let mut pool = self.warm.lock().unwrap();
        if pool.len() < settings.max_instances as usize {
            pool.push(warm);
        }
    }

    /// Drops warm instances unused for `idle`; returns how many.
    pub fn drop_idle_instances(&self, idle: Duration) -> usize {
        let mut pool = self.warm.lock().unwrap();
        let before = pool.len();
        pool.retain(|warm| warm.idle_since.elapsed() < idle);
        before - pool.len()
    }

    /// Marks a request as in flight until the guard drops.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight {
            loaded: self.clone(),
        }
    }

    fn idle_for(&self) -> Option<Duration> {
        (self.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| self.last_used.lock().unwrap().elapsed())
    }
}

pub struct InFlight {
    loaded: Arc<LoadedService>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.loaded.last_used.lock().unwrap() = Instant::now();
        self.loaded.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct LoadFailure {
    reason: String,
    retry_at: Instant,
    backoff: Duration,
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(60);

pub struct Service {
    pub name: String,
    /// `/<name>`, sent to the guest as `x-forwarded-prefix` with every
    /// request (built once: a clone shares the bytes).
    prefix_header: http::HeaderValue,
    installed: InstalledService,
    pub settings: Settings,
    component_path: std::path::PathBuf,
    work_dir: std::path::PathBuf,
    log: ServiceLog,
    links: ServiceLinks,
    loaded: RwLock<Option<Arc<LoadedService>>>,
    load_lock: tokio::sync::Mutex<()>,
    loading: AtomicBool,
    stopped: AtomicBool,
    failure: Mutex<Option<LoadFailure>>,
    loads: AtomicU64,
    requests: AtomicU64,
    last_error: Mutex<Option<String>>,
    last_load: Mutex<Option<LoadReport>>,
}

/// How the last load went.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LoadReport {
    pub outcome: CacheOutcome,
    pub millis: f64,
    pub at: String,
}

/// A service's state, as the admin API reports it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub description: String,
    pub provides: Vec<String>,
    pub publishes: Vec<String>,
    pub subscribes: Vec<String>,
    pub digest: String,
    pub installed_at: String,
    pub state: State,
    pub loads: u64,
    pub requests: u64,
    pub in_flight: usize,
    pub last_error: Option<String>,
    pub last_load: Option<LoadReport>,
    pub settings: Settings,
}

impl ServiceStatus {
    /// The status of a service that is not loaded (or not served at all).
    pub fn unloaded(installed: &InstalledService, settings: Settings) -> ServiceStatus {
        let manifest = &installed.manifest;
        ServiceStatus {
            name: manifest.name.clone(),
            version: manifest.version.to_string(),
            kind: manifest.kind.to_string(),
            description: manifest.description.clone(),
            provides: manifest.provides.clone(),
            publishes: manifest.publishes.clone(),
            subscribes: manifest.subscribes.clone(),
            digest: installed.digest.clone(),
            installed_at: installed.installed_at.clone(),
            state: if installed.stopped {
                State::Stopped
            } else {
                State::Installed
            },
            loads: 0,
            requests: 0,
            in_flight: 0,
            last_error: None,
            last_load: None,
            settings,
        }
    }
}

impl Service {
    pub fn new(
        installed: InstalledService,
        component_path: std::path::PathBuf,
        work_dir: std::path::PathBuf,
        log: ServiceLog,
        links: ServiceLinks,
        settings: Settings,
    ) -> Service {
        Service {
            name: installed.manifest.name.clone(),
            prefix_header: http::HeaderValue::from_maybe_shared(bytes::Bytes::from(format!(
                "/{}",
                installed.manifest.name
            )))
            .expect("service names are valid header values"),
            stopped: AtomicBool::new(installed.stopped),
            installed,
            settings,
            component_path,
            work_dir,
            log,
            links,
            loaded: RwLock::new(None),
            load_lock: tokio::sync::Mutex::new(()),
            loading: AtomicBool::new(false),
            failure: Mutex::new(None),
            loads: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_load: Mutex::new(None),
        }
    }

    pub fn installed(&self) -> &InstalledService {
        &self.installed
    }

    pub fn prefix_header(&self) -> &http::HeaderValue {
        &self.prefix_header
    }

    pub fn log(&self) -> &ServiceLog {
        &self.log
    }

    /// The loaded service, cold-starting it if needed.
    pub async fn loaded(
        &self,
        runtime: &Runtime,
        cache: &Arc<CodeCache>,
    ) -> Result<Arc<LoadedService>, ServiceError> {
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
        let result = self.load(runtime, cache).await;
        self.loading.store(false, Ordering::SeqCst);
        match result {
            Ok((loaded, outcome)) => {
                let millis = started.elapsed().as_secs_f64() * 1000.0;
                self.loads.fetch_add(1, Ordering::SeqCst);
                *self.failure.lock().unwrap() = None;
                *self.last_load.lock().unwrap() = Some(LoadReport {
                    outcome,
                    millis,
                    at: crate::catalog::now_rfc3339(),
                });
                *self.loaded.write().unwrap() = Some(loaded.clone());
                tracing::info!(service = %self.name, ?outcome, millis, "loaded");
                self.log
                    .note(&format!("loaded ({outcome:?}, {millis:.1} ms)"));
                self.emit(
                    "locker/service.started",
                    serde_json::json!({ "service": self.name, "cache": outcome, "millis": millis }),
                );
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

    async fn load(
        &self,
        runtime: &Runtime,
        cache: &Arc<CodeCache>,
    ) -> Result<(Arc<LoadedService>, CacheOutcome)> {
        let engine = runtime.engine.clone();
        let linker = runtime.linker.clone();
        let cache = cache.clone();
        let digest = self.installed.digest.clone();
        let component_path = self.component_path.clone();
        // Compiling is CPU-bound: keep it off the threads that serve requests.
        let (pre, outcome) = tokio::task::spawn_blocking(move || -> Result<_> {
            let (component, outcome) = cache.load(&engine, &digest, &component_path)?;
            let instance_pre = linker
                .instantiate_pre(&component)
                .map_err(anyhow::Error::from)
                .context("cannot link the component (does it import something the host lacks?)")?;
            Ok((instance_pre, outcome))
        })
        .await
        .context("the load task panicked")??;
        std::fs::create_dir_all(&self.work_dir)
            .with_context(|| format!("cannot create {}", self.work_dir.display()))?;
        let capabilities = &self.installed.capabilities;
        let http = match capabilities.http_handler {
            Some(_) => Some(
                ProxyIndices::new(&pre)
                    .map_err(anyhow::Error::from)
                    .context("cannot find the component's wasi:http/incoming-handler")?,
            ),
            None => None,
        };
        let events = match capabilities.event_handler {
            Some(_) => Some(
                EventHandlerIndices::new(&pre)
                    .map_err(anyhow::Error::from)
                    .context("cannot find the component's locker:service/event-handler")?,
            ),
            None => None,
        };
        let jobs = match capabilities.job_handler {
            Some(_) => Some(
                JobHandlerIndices::new(&pre)
                    .map_err(anyhow::Error::from)
                    .context("cannot find the component's locker:service/job-handler")?,
            ),
            None => None,
        };
        let sandbox = SandboxSpec {
            work_dir: self.work_dir.clone(),
            log: self.log.clone(),
            log_file: self.log.file()?,
            memory_limit: self.settings.memory as usize,
            allow_hosts: Arc::new(self.installed.manifest.network.allow_hosts.clone()),
            links: self.links.clone(),
        };
        let loaded = LoadedService {
            pre,
            http,
            events,
            jobs,
            sandbox,
            permits: Arc::new(Semaphore::new(self.settings.max_instances as usize)),
            warm: Mutex::new(Vec::new()),
            reuse_off: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
        };
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
            loaded.drop_idle_instances(self.settings.reuse_idle);
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

    /// Publishes a host event about this service, without waiting for it.
    pub fn emit(&self, topic: &'static str, payload: serde_json::Value) {
        let bus = self.links.bus.clone();
        let about = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = bus.publish_host(topic, &about, payload).await {
                tracing::warn!("cannot publish {topic}: {e}");
            }
        });
    }

    pub fn state(&self) -> State {
        if self.stopped.load(Ordering::SeqCst) {
            return State::Stopped;
        }
        if self.loading.load(Ordering::SeqCst) {
            return State::Loading;
        }
        if let Some(loaded) = self.loaded.read().unwrap().as_ref() {
            return if loaded.in_flight.load(Ordering::SeqCst) > 0 {
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
            in_flight: self
                .loaded
                .read()
                .unwrap()
                .as_ref()
                .map_or(0, |l| l.in_flight.load(Ordering::SeqCst)),
            last_error: self.last_error.lock().unwrap().clone(),
            last_load: self.last_load.lock().unwrap().clone(),
            ..ServiceStatus::unloaded(&self.installed, self.settings.clone())
        }
    }
}

/// Readies a kept instance for its next call: the whole deadline of guest
/// time again, and the whole log budget.
pub fn rearm(store: &mut Store<InstanceState>, timeout: Duration) {
    arm_deadline(store, timeout);
    store.data().refill_log_budget();
}

/// Makes the store's next run trap once `timeout` has passed.
pub fn arm_deadline(store: &mut Store<InstanceState>, timeout: Duration) {
    store.set_epoch_deadline((timeout.as_millis() / EPOCH_TICK.as_millis()) as u64 + 1);
    store.epoch_deadline_trap();
}
