//! A loaded service: its component compiled and linked, where its exports
//! are, its sandbox, and admission: at most `max_instances` instances at
//! once, each counted in flight until it is done.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;
use wasmtime::component::InstancePre;
use wasmtime_wasi_http::p2::bindings::ProxyIndices;

use super::concurrent::ConcurrentHttp;
use super::errors::ServiceError;
use super::sandbox::{InstanceState, SandboxSpec};
use super::settings::Settings;
use super::warm_pool::WarmPool;
use crate::bindings::{EventHandlerIndices, JobHandlerIndices};

/// How a loaded service serves HTTP.
pub enum HttpHandler {
    /// WASI 0.2: where its `wasi:http/incoming-handler` is; an instance per
    /// request, or a warm one with `[reuse]`.
    P2(ProxyIndices),
    /// WASI 0.3: instances that serve several requests at once.
    P3(ConcurrentHttp),
}

/// A loaded service: compiled, linked, ready to instantiate per request.
pub struct LoadedService {
    pub name: String,
    pub pre: InstancePre<InstanceState>,
    /// How it serves HTTP, if it does.
    pub http: Option<HttpHandler>,
    /// Where its `locker:service/event-handler` is, if it handles events.
    pub events: Option<EventHandlerIndices>,
    /// Where its `locker:service/job-handler` is, if it runs jobs.
    pub jobs: Option<JobHandlerIndices>,
    pub sandbox: SandboxSpec,
    /// One per instance running at once, up to `max_instances`: the
    /// service's, shared by HTTP, events and jobs, and by every load.
    pub permits: Arc<Semaphore>,
    /// HTTP instances kept between requests (opt-in reuse).
    pub warm: WarmPool,
    /// Every instance its service made (shared with the service, across loads).
    instances: Arc<AtomicU64>,
    in_flight: AtomicUsize,
    last_used: Mutex<Instant>,
}

/// An instance slot, counted in flight until dropped.
pub struct Claim {
    _permit: OwnedSemaphorePermit,
    _in_flight: InFlight,
}

impl LoadedService {
    pub fn new(
        name: String,
        pre: InstancePre<InstanceState>,
        exports: (
            Option<HttpHandler>,
            Option<EventHandlerIndices>,
            Option<JobHandlerIndices>,
        ),
        sandbox: SandboxSpec,
        permits: Arc<Semaphore>,
        instances: Arc<AtomicU64>,
    ) -> LoadedService {
        let (http, events, jobs) = exports;
        LoadedService {
            name,
            pre,
            http,
            events,
            jobs,
            sandbox,
            permits,
            warm: WarmPool::default(),
            instances,
            in_flight: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
        }
    }

    /// Waits (until `deadline`) for a free instance slot.
    pub async fn admit(
        self: &Arc<Self>,
        settings: &Settings,
        deadline: tokio::time::Instant,
    ) -> Result<Claim, ServiceError> {
        // A free slot is the usual case: take it without arming a timer.
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| ServiceError::Busy {
                    service: self.name.clone(),
                    max: settings.max_instances,
                })?
                .expect("the semaphore is never closed"),
        };
        Ok(Claim {
            _permit: permit,
            _in_flight: self.begin_request(),
        })
    }

    /// A fresh store with the service's sandbox, memory limit and deadline.
    pub fn new_store(
        &self,
        engine: &wasmtime::Engine,
        settings: &Settings,
    ) -> Result<(Store<InstanceState>, Arc<AtomicBool>), ServiceError> {
        self.sandbox.new_store(engine, &self.name, settings.timeout)
    }

    /// Counts an instance made.
    pub fn count_instance(&self) {
        self.instances.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks a request as in flight until the guard drops.
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight {
            loaded: self.clone(),
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// How long it has had nothing in flight; `None` while it has.
    pub fn idle_for(&self) -> Option<Duration> {
        (self.in_flight() == 0).then(|| self.last_used.lock().unwrap().elapsed())
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
