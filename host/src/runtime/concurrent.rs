//! WASI 0.3 HTTP services: one instance serves several requests at once.
//!
//! A `wasi:http/handler@0.3` export is async, so an instance that waits
//! (for its request body, an outbound response, a timer) can take the next
//! request meanwhile. That is reuse for 0.3 services, always on: each
//! instance takes up to `limits.concurrency` requests at once and
//! `reuse.max_requests` in all (1,000 by default), and is dropped after
//! `reuse.idle` without one; at most `limits.max_instances` run at once
//! (counted with the instances its events and jobs use). A trap, a deadline
//! or the memory limit ends the instance (with every request it held); the
//! next request gets a fresh one. An instance only ever serves its own
//! service: every load of a service has its own pool, and when the load is
//! dropped (idle unload, stop, upgrade, uninstall) its instances take no
//! more requests and end: at once if idle, else once their requests are
//! done or past their deadline.
//!
//! The dispatching is wasmtime-wasi-http's `ProxyHandler` (what `wasmtime
//! serve` runs): it hands a request to an instance with room for it, or
//! starts one, and runs each instance's event loop in a task of its own.
//! This module gives it Locker's sandbox, limits and bookkeeping.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use wasmtime::component::{GuestTaskId, InstancePre};
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, Proxy, ProxyHandler, ShouldAccept,
    TrapOrPanicError, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServiceIndices;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use super::engine::EPOCH_TICK;
use super::errors::ServiceError;
use super::sandbox::{InstanceState, SandboxSpec};
use super::settings::Settings;
use crate::store::ServiceLog;

/// Requests one 0.3 instance serves in all when the manifest has no `[reuse]`.
pub const DEFAULT_MAX_REQUESTS: u32 = 1000;

/// How long a request whose instance ended under it waits to learn why.
const FATE_WAIT: Duration = Duration::from_secs(1);

/// The HTTP side of a loaded WASI 0.3 service.
pub struct ConcurrentHttp {
    handler: ProxyHandler<Instances>,
}

/// What a new instance of the service is made from.
pub struct InstanceParts {
    pub service: String,
    pub engine: Engine,
    pub pre: InstancePre<InstanceState>,
    pub indices: ServiceIndices,
    pub sandbox: SandboxSpec,
    pub settings: Settings,
    /// Requests one instance serves in all.
    pub max_requests: u32,
    /// Counts every instance the service makes.
    pub made: Arc<AtomicU64>,
    /// The service's instance slots, one per instance alive, up to
    /// `max_instances` (shared with its events and jobs).
    pub slots: Arc<Semaphore>,
    /// Where an instance that ends by a failure is noted.
    pub log: ServiceLog,
}

impl ConcurrentHttp {
    pub fn new(parts: InstanceParts) -> ConcurrentHttp {
        ConcurrentHttp {
            handler: ProxyHandler::new(Instances {
                parts,
                retired: CancellationToken::new(),
            }),
        }
    }

    /// Serves one request, or says why the service did not answer it by
    /// `deadline`.
    ///
    /// When no instance has room and `max_instances` are alive, the handler
    /// cannot make another: it gives the request back, and it is offered
    /// again shortly, when one of the instances may have room (the handler
    /// tells no one when it does), until the deadline.
    pub async fn handle(
        &self,
        mut request: http::Request<WasiBody>,
        deadline: tokio::time::Instant,
    ) -> Result<http::Response<WasiBody>, ServiceError> {
        let parts = &self.handler.state().parts;
        let mut pause = FIRST_RETRY;
        loop {
            let fate = Arc::new(Fate::default());
            let handled =
                tokio::time::timeout_at(deadline, self.handler.handle(fate.clone(), request));
            let error = match handled.await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(error)) => error,
                Err(_) => {
                    return Err(ServiceError::DeadlineExceeded {
                        service: parts.service.clone(),
                        deadline: parts.settings.timeout,
                    });
                }
            };
            let failed = match error.downcast::<InstantiationError<Arc<Fate>>>() {
                Ok(failed) => failed,
                Err(error) => return Err(explain(parts, &fate, error).await),
            };
            let cause = match failed.error.downcast_ref::<ServiceError>() {
                Some(cause) => cause.clone(),
                None => ServiceError::Host {
                    service: parts.service.clone(),
                    reason: format!("{:#}", failed.error),
                },
            };
            if !matches!(cause, ServiceError::Busy { .. })
                || tokio::time::Instant::now() + pause >= deadline
            {
                return Err(cause);
            }
            request = failed.request.into_inner().expect("not poisoned");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LAST_RETRY);
        }
    }
}

/// The load is gone: its instances take no more requests and end (their
/// tasks hold the handler, not the load).
impl Drop for ConcurrentHttp {
    fn drop(&mut self) {
        self.handler.state().retired.cancel();
    }
}

/// How long a request waits before it is offered again to instances that
/// were all full.
const FIRST_RETRY: Duration = Duration::from_millis(1);
const LAST_RETRY: Duration = Duration::from_millis(16);

/// Names why the handler gave `error` instead of a response.
async fn explain(parts: &InstanceParts, fate: &Fate, error: wasmtime::Error) -> ServiceError {
    let service = &parts.service;
    let settings = &parts.settings;
    if error.downcast_ref::<ExpirationError>().is_some() {
        return ServiceError::DeadlineExceeded {
            service: service.clone(),
            deadline: settings.timeout,
        };
    }
    if let Some(code) = error.downcast_ref::<ErrorCode>() {
        return ServiceError::GuestError {
            service: service.clone(),
            reason: format!("{code:?}"),
        };
    }
    // The instance ended under the request: it says why when it is dropped.
    if error.downcast_ref::<TrapOrPanicError>().is_some() {
        return fate.wait(FATE_WAIT).await.unwrap_or(ServiceError::Trapped {
            service: service.clone(),
            reason: "its instance ended without a reason".into(),
        });
    }
    match fate.get() {
        Some(known) => known,
        None => ServiceError::from_run(service, settings.timeout, settings.memory, error, false),
    }
}

/// How a request's instance ended, if it ended by a failure: set when the
/// instance is dropped, read by a request that lost its answer with it.
#[derive(Default)]
pub struct Fate {
    error: OnceLock<ServiceError>,
    set: Notify,
}

impl Fate {
    fn settle(&self, error: ServiceError) {
        if self.error.set(error).is_ok() {
            self.set.notify_waiters();
        }
    }

    fn get(&self) -> Option<ServiceError> {
        self.error.get().cloned()
    }

    async fn wait(&self, limit: Duration) -> Option<ServiceError> {
        let notified = self.set.notified();
        if let Some(error) = self.get() {
            return Some(error);
        }
        let _ = tokio::time::timeout(limit, notified).await;
        self.get()
    }
}

/// The service's instances, as the handler makes them.
struct Instances {
    parts: InstanceParts,
    /// Cancelled when the load they belong to is dropped.
    retired: CancellationToken,
}

impl HandlerState for Instances {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiry, Worker>> {
        let parts = &self.parts;
        let settings = &parts.settings;
        // At the cap, the request goes back to `handle` rather than waiting
        // here: an instance alive may take it first.
        let slot = parts.slots.clone().try_acquire_owned().map_err(|_| {
            wasmtime::Error::new(ServiceError::Busy {
                service: parts.service.clone(),
                max: settings.max_instances,
            })
        })?;
        let state = parts.sandbox.instance_state().map_err(|e| {
            wasmtime::Error::new(ServiceError::Host {
                service: parts.service.clone(),
                reason: format!("{e:#}"),
            })
        })?;
        let memory_hit = state.limiter.hit_flag();
        let mut store = Store::new(&parts.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks(settings.timeout));
        store.epoch_deadline_trap();
        let made = tokio::time::timeout(settings.timeout, async {
            let instance = parts.pre.instantiate_async(&mut store).await?;
            parts.indices.load(&mut store, &instance)
        })
        .await;
        let service = match made {
            Ok(Ok(service)) => service,
            Ok(Err(error)) => {
                let hit = memory_hit.load(Ordering::Relaxed);
                return Err(wasmtime::Error::new(ServiceError::from_run(
                    &parts.service,
                    settings.timeout,
                    settings.memory,
                    error,
                    hit,
                )));
            }
            Err(_) => {
                return Err(wasmtime::Error::new(ServiceError::DeadlineExceeded {
                    service: parts.service.clone(),
                    deadline: settings.timeout,
                }));
            }
        };
        parts.made.fetch_add(1, Ordering::Relaxed);
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: <InstanceState as WasiHttpView>::http,
            expiration: Expiry::new(settings, self.retired.clone()),
            state: Worker {
                service: parts.service.clone(),
                log: parts.log.clone(),
                retired: self.retired.clone(),
                timeout: settings.timeout,
                memory: settings.memory,
                concurrency: settings.concurrency as usize,
                max_requests: parts.max_requests as usize,
                memory_hit,
                waiting: Mutex::new(Vec::new()),
                _slot: slot,
            },
        })
    }
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()) as u64 + 1
}

/// One instance's limits and the requests it holds.
struct Worker {
    service: String,
    log: ServiceLog,
    retired: CancellationToken,
    timeout: Duration,
    memory: u64,
    concurrency: usize,
    max_requests: usize,
    memory_hit: Arc<AtomicBool>,
    /// The fates of the requests it took, to tell them why it ended.
    waiting: Mutex<Vec<Weak<Fate>>>,
    _slot: OwnedSemaphorePermit,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = Arc<Fate>;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        // An instance that touched its memory limit is near its end: it
        // finishes what it holds and takes nothing more.
        if self.memory_hit.load(Ordering::Relaxed)
            || total >= self.max_requests
            || self.retired.is_cancelled()
        {
            ShouldAccept::Never
        } else if concurrent >= self.concurrency {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, InstanceState>,
        fate: Arc<Fate>,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        // The instance's guest time runs a whole deadline past its newest
        // request (a guest that computes forever holds the instance, so no
        // newer request can move it), and each request brings its log budget.
        store.set_epoch_deadline(deadline_ticks(self.timeout));
        store.data().refill_log_budget();
        let mut waiting = self.waiting.lock().unwrap();
        waiting.retain(|fate| fate.strong_count() > 0);
        waiting.push(Arc::downgrade(&fate));
        Box::pin(tokio::time::sleep(self.timeout))
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        drop(store);
        let Err(error) = result else {
            return;
        };
        let hit = self.memory_hit.load(Ordering::Relaxed);
        let error = ServiceError::from_run(&self.service, self.timeout, self.memory, error, hit);
        // Its requests each say why; this is for a response that was still
        // streaming, or work the guest did after answering.
        tracing::warn!(service = %self.service, "an instance ended: {error}");
        self.log.note(&format!("an instance ended: {error}"));
        for fate in self.waiting.lock().unwrap().drain(..) {
            if let Some(fate) = fate.upgrade() {
                fate.settle(error.clone());
            }
        }
    }
}

/// When an instance is done for: idle past `reuse.idle`, or still busy a
/// while past its newest request's deadline (the second line of defence
/// `ProxyHandler` asks for: a guest stuck in a host call is not stopped by
/// the epoch); once its load is retired, at once when idle, and a deadline
/// after retirement at the latest.
struct Expiry {
    timeout: Duration,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    armed: Option<Instant>,
    retired: Pin<Box<WaitForCancellationFutureOwned>>,
    retired_at: Option<Instant>,
}

impl Expiry {
    fn new(settings: &Settings, retired: CancellationToken) -> Expiry {
        Expiry {
            timeout: settings.timeout,
            idle: settings.reuse_idle,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
            retired: Box::pin(retired.cancelled_owned()),
            retired_at: None,
        }
    }
}

impl WorkerExpiration for Expiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        if this.retired_at.is_none() && this.retired.as_mut().poll(cx).is_ready() {
            this.retired_at = Some(Instant::now());
        }
        if this.retired_at.is_some() && status == WorkerStatus::Idle {
            return Poll::Ready(());
        }
        let bound = match status {
            WorkerStatus::Idle => this.idle,
            WorkerStatus::Requests | WorkerStatus::PostReturn => this.timeout + EPOCH_TICK * 10,
        };
        let mut end = start + bound;
        if let Some(retired_at) = this.retired_at {
            end = end.min(retired_at + this.timeout + EPOCH_TICK * 10);
        }
        if this.armed != Some(end) {
            this.sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(end));
            this.armed = Some(end);
        }
        this.sleep.as_mut().poll(cx)
    }
}
