//! WASI 0.3 HTTP services: one instance serves several requests at once.
//!
//! A `wasi:http/handler@0.3` export is async, so an instance that waits
//! (for its request body, an outbound response, a timer) can take the next
//! request meanwhile. That is reuse for 0.3 services, always on: each
//! instance takes up to `limits.concurrency` requests at once and
//! `reuse.max_requests` in all (1,000 by default), and is dropped after
//! `reuse.idle` without one; at most `limits.max_instances` are alive at
//! once (counted with the instances its events and jobs use). A trap, a
//! deadline or the memory limit ends the instance (with every request it
//! held); the next request gets a fresh one. An instance only ever serves
//! its own service: every load of a service has its own pool, and when the
//! load is dropped (idle unload, stop, upgrade, uninstall) its instances
//! take no more requests and end: at once if idle, else once their
//! requests are done or past their deadline.
//!
//! A request goes to, in this order: an idle instance, whose event loop it
//! then runs in its own task (as a 0.2 request runs its instance; most
//! requests are answered, body and all, before that loop is idle again);
//! an instance whose loop is running elsewhere and has room (it joins
//! that loop's intake); a new instance, run here; or it waits for room
//! until its deadline. A loop still busy when its request is answered (a
//! body still streaming, other requests joined) goes on in a task of its
//! own.

mod fate;
mod instance;
mod intake;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use wasmtime::Engine;
use wasmtime::component::InstancePre;
use wasmtime_wasi_http::handler::{ExpirationError, Request, Response};
use wasmtime_wasi_http::p3::bindings::ServiceIndices;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

use self::fate::Fate;
use self::instance::{Live, Outcome};
use self::intake::{Intake, Job, Unserved};
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
    pool: Arc<Pool>,
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
    /// Where a memory limit hit is counted.
    pub metrics: crate::metrics::ServiceMetrics,
    /// Where an instance that ends by a failure is noted.
    pub log: ServiceLog,
}

impl InstanceParts {
    fn deadline_exceeded(&self) -> ServiceError {
        ServiceError::DeadlineExceeded {
            service: self.service.clone(),
            deadline: self.settings.timeout,
        }
    }

    /// What a failed run of the guest means, `memory_hit` if it touched its
    /// memory limit.
    fn failure(&self, error: wasmtime::Error, memory_hit: bool) -> ServiceError {
        let settings = &self.settings;
        if memory_hit {
            self.metrics.memory_limit_hit();
        }
        ServiceError::from_run(
            &self.service,
            settings.timeout,
            settings.memory,
            error,
            memory_hit,
        )
    }
}

/// A service load's instances.
struct Pool {
    parts: InstanceParts,
    /// Set when the load is dropped.
    retired: AtomicBool,
    /// Instances whose loop is idle, most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The intakes of instances whose loop is running.
    busy: Mutex<Vec<Arc<Intake>>>,
    /// Told when an instance may have room: it finished a request, went
    /// idle, or ended.
    room: Notify,
}

struct Idle {
    live: Live,
    since: Instant,
}

/// How an instance's loop starts.
enum Start {
    Idle(Live),
    New(OwnedSemaphorePermit),
}

/// Where a request went.
enum Placed {
    /// To an instance whose loop this task runs.
    Here(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// Into a running loop's intake.
    Joined,
}

impl ConcurrentHttp {
    pub fn new(parts: InstanceParts) -> ConcurrentHttp {
        ConcurrentHttp {
            pool: Arc::new(Pool {
                parts,
                retired: AtomicBool::new(false),
                idle: Mutex::new(Vec::new()),
                busy: Mutex::new(Vec::new()),
                room: Notify::new(),
            }),
        }
    }

    /// Serves one request, or says why the service did not answer it by
    /// `deadline`.
    pub async fn handle(
        &self,
        mut request: Request,
        deadline: tokio::time::Instant,
    ) -> Result<Response, ServiceError> {
        let pool = &self.pool;
        loop {
            let fate = Arc::new(Fate::default());
            let (answer, mut answered) = oneshot::channel();
            let job = Job {
                request,
                deadline,
                fate: fate.clone(),
                answer,
            };
            let outcome = match pool.place(job).await? {
                Placed::Here(run) => {
                    let mut run = Detached(Some(run));
                    tokio::select! {
                        biased;
                        () = &mut run => answered.try_recv().ok().flatten(),
                        answer = &mut answered => {
                            run.finish_soon().await;
                            answer.ok()
                        }
                    }
                }
                Placed::Joined => match tokio::time::timeout_at(deadline, answered).await {
                    Ok(answer) => answer.ok(),
                    Err(_) => return Err(pool.parts.deadline_exceeded()),
                },
            };
            let error = match outcome {
                Some(Ok(response)) => return Ok(response),
                Some(Err(error)) => error,
                // The instance ended under the request: it says why.
                None => {
                    return Err(fate.wait(FATE_WAIT).await.unwrap_or(ServiceError::Trapped {
                        service: pool.parts.service.clone(),
                        reason: "its instance ended without a reason".into(),
                    }));
                }
            };
            match error.downcast_ref::<Unserved>().and_then(Unserved::take) {
                Some(unserved) => request = unserved,
                None => return Err(explain(&pool.parts, &fate, error)),
            }
        }
    }

    /// Drops instances idle longer than `idle`.
    pub fn drop_idle(&self, idle: Duration) {
        let dropped = {
            let mut instances = self.pool.idle.lock().unwrap();
            let before = instances.len();
            instances.retain(|instance| instance.since.elapsed() < idle);
            before != instances.len()
        };
        if dropped {
            self.pool.room.notify_waiters();
        }
    }
}

/// The load is gone: its instances take no more requests and end (their
/// loops hold the pool, not the load).
impl Drop for ConcurrentHttp {
    fn drop(&mut self) {
        let pool = &self.pool;
        pool.retired.store(true, Ordering::Relaxed);
        pool.idle.lock().unwrap().clear();
        for intake in pool.busy.lock().unwrap().iter() {
            intake.close().into_iter().for_each(Job::unserve);
        }
    }
}

impl Pool {
    /// Finds the request an instance (see the module's doc).
    async fn place(self: &Arc<Self>, mut job: Job) -> Result<Placed, ServiceError> {
        let parts = &self.parts;
        loop {
            let room = self.room.notified();
            let mut room = pin!(room);
            room.as_mut().enable();
            if let Some(live) = self.take_idle() {
                return Ok(Placed::Here(Box::pin(
                    self.clone().run(Start::Idle(live), job),
                )));
            }
            job = match self.join(job) {
                Ok(()) => return Ok(Placed::Joined),
                Err(job) => job,
            };
            let slot = match parts.slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => tokio::select! {
                    slot = parts.slots.clone().acquire_owned() => {
                        slot.expect("the semaphore is never closed")
                    }
                    () = &mut room => continue,
                    () = tokio::time::sleep_until(job.deadline) => {
                        return Err(ServiceError::Busy {
                            service: parts.service.clone(),
                            max: parts.settings.max_instances,
                        });
                    }
                },
            };
            return Ok(Placed::Here(Box::pin(
                self.clone().run(Start::New(slot), job),
            )));
        }
    }

    fn take_idle(&self) -> Option<Live> {
        self.idle.lock().unwrap().pop().map(|idle| idle.live)
    }

    /// Queues `job` with the first running loop that has room.
    #[allow(clippy::result_large_err)] // as `Intake::offer`
    fn join(&self, mut job: Job) -> Result<(), Job> {
        for intake in self.busy.lock().unwrap().iter() {
            job = match intake.offer(job) {
                Ok(()) => return Ok(()),
                Err(job) => job,
            };
        }
        Err(job)
    }

    /// One run of an instance's loop, from `first` until it is idle; then
    /// the instance waits for the next request, or ends.
    async fn run(self: Arc<Self>, start: Start, first: Job) {
        let parts = &self.parts;
        let settings = &parts.settings;
        let before = match &start {
            Start::Idle(live) => live.taken,
            Start::New(_) => 0,
        };
        // Open before the instance is made: requests that come meanwhile
        // join it rather than make instances of their own.
        let intake = Arc::new(Intake::new(
            before,
            settings.concurrency as usize,
            parts.max_requests as usize,
        ));
        self.busy.lock().unwrap().push(intake.clone());
        let made = match start {
            Start::Idle(live) => Ok(live),
            Start::New(slot) => Live::new(parts, slot).await,
        };
        match made {
            Ok(mut live) => {
                let outcome = live.serve(&self, &intake, first).await;
                self.close(&intake).into_iter().for_each(Job::unserve);
                live.taken = intake.taken();
                self.keep(live, outcome);
            }
            Err(error) => {
                let _ = first.answer.send(Err(wasmtime::Error::new(error.clone())));
                for job in self.close(&intake) {
                    let _ = job.answer.send(Err(wasmtime::Error::new(error.clone())));
                }
            }
        }
        self.room.notify_waiters();
    }

    /// Closes a loop's intake and forgets it; gives back what it queued.
    fn close(&self, intake: &Arc<Intake>) -> Vec<Job> {
        self.busy
            .lock()
            .unwrap()
            .retain(|open| !Arc::ptr_eq(open, intake));
        intake.close()
    }

    /// An instance whose loop is idle waits for the next request, if it
    /// may serve more; one that failed says why in the service's log.
    fn keep(&self, live: Live, outcome: Outcome) {
        match outcome {
            Outcome::Reusable
                if live.taken < self.parts.max_requests as usize
                    && !self.retired.load(Ordering::Relaxed) =>
            {
                self.idle.lock().unwrap().push(Idle {
                    live,
                    since: Instant::now(),
                });
            }
            Outcome::Reusable | Outcome::Spent => {}
            Outcome::Failed(error) => {
                let service = &self.parts.service;
                // Its requests each say why; this is for a response that was
                // still streaming, or work the guest did after answering.
                tracing::warn!(service = %service, "an instance ended: {error}");
                self.parts.log.note(&format!("an instance ended: {error}"));
            }
        }
    }
}

/// A loop run in this task until its request is answered; if it is not
/// done by then (or this task is dropped), it goes on in a task of its own.
struct Detached(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Future for Detached {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(run) = self.0.as_mut() else {
            return Poll::Ready(());
        };
        let poll = run.as_mut().poll(cx);
        if poll.is_ready() {
            self.0 = None;
        }
        poll
    }
}

/// How many more times a loop is polled after its request was answered.
const FINISHING_POLLS: usize = 4;

impl Detached {
    /// Polls the loop a few times more without waiting to be woken: once
    /// the answer is out, what is left (the guest's task returning, its
    /// body stream closing) is usually work wasmtime's event loop does one
    /// item per poll, waking itself in between. Done here, the instance is
    /// idle again before this request leaves, and no task is spawned.
    async fn finish_soon(&mut self) {
        std::future::poll_fn(|cx| {
            for _ in 0..FINISHING_POLLS {
                if Pin::new(&mut *self).poll(cx).is_ready() {
                    break;
                }
            }
            Poll::Ready(())
        })
        .await
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(run) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(run);
        }
    }
}

/// Names why the instance answered `error` instead of a response.
fn explain(parts: &InstanceParts, fate: &Fate, error: wasmtime::Error) -> ServiceError {
    if let Some(known) = error.downcast_ref::<ServiceError>() {
        return known.clone();
    }
    if error.downcast_ref::<ExpirationError>().is_some() {
        return parts.deadline_exceeded();
    }
    if let Some(code) = error.downcast_ref::<ErrorCode>() {
        return ServiceError::GuestError {
            service: parts.service.clone(),
            reason: format!("{code:?}"),
        };
    }
    match fate.get() {
        Some(known) => known,
        None => parts.failure(error, false),
    }
}
