//! One WASI 0.3 instance: how it is made, and its event loop, which runs
//! the requests it takes until it has nothing left to do.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::Duration;

use futures::channel::oneshot;
use futures::stream::{FuturesUnordered, Stream};
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;
use wasmtime::{AsContextMut, Store};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{ExpirationError, Prepared, Proxy};
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

use super::fate::Fate;
use super::intake::{Intake, Job};
use super::{InstanceParts, Pool};
use crate::runtime::bodies::Guarded;
use crate::runtime::call_context::CallContext;
use crate::runtime::errors::ServiceError;
use crate::runtime::limits::{EPOCH_TICK, deadline_ticks};
use crate::runtime::sandbox::InstanceState;

/// How long past its newest request's deadline an instance's loop may
/// still run (a guest stuck in a host call is not stopped by the epoch).
const GRACE: Duration = Duration::from_millis(EPOCH_TICK.as_millis() as u64 * 10);

/// An instance between runs of its event loop.
pub struct Live {
    pub store: Store<InstanceState>,
    proxy: Proxy,
    pub memory_hit: Arc<AtomicBool>,
    /// Requests it has taken in all.
    pub taken: usize,
    _slot: OwnedSemaphorePermit,
}

/// How a run of the loop ended.
pub enum Outcome {
    /// Every request answered cleanly and nothing left running: the
    /// instance may take more.
    Reusable,
    /// It is done for (a request ran past its deadline or answered with a
    /// trap, or it touched its memory limit), but ended cleanly.
    Spent,
    /// It failed: why, for every request it held.
    Failed(ServiceError),
}

impl Live {
    /// A new instance in `slot`, made within the service's deadline.
    pub async fn new(
        parts: &InstanceParts,
        slot: OwnedSemaphorePermit,
    ) -> Result<Live, ServiceError> {
        let settings = &parts.settings;
        let (mut store, memory_hit) =
            parts
                .sandbox
                .new_store(&parts.engine, &parts.service, settings.timeout)?;
        let made = tokio::time::timeout(settings.timeout, async {
            let instance = parts.pre.instantiate_async(&mut store).await?;
            parts.indices.load(&mut store, &instance)
        })
        .await;
        let service = match made {
            Ok(Ok(service)) => service,
            Ok(Err(error)) => return Err(parts.failure(error, memory_hit.load(Ordering::Relaxed))),
            Err(_) => return Err(parts.deadline_exceeded()),
        };
        parts.made.fetch_add(1, Ordering::Relaxed);
        Ok(Live {
            store,
            proxy: Proxy::P3(service),
            memory_hit,
            taken: 0,
            _slot: slot,
        })
    }

    /// Runs `first` and every request that joins through `intake` until
    /// none is left and the guest has nothing more running.
    pub async fn serve(&mut self, pool: &Pool, intake: &Intake, first: Job) -> Outcome {
        let parts = &pool.parts;
        let fates = Mutex::new(Vec::new());
        let result = self.event_loop(pool, intake, first, &fates).await;
        match result {
            Ok(true) if !self.memory_hit.load(Ordering::Relaxed) => Outcome::Reusable,
            Ok(_) => Outcome::Spent,
            Err(error) => {
                let error = match error.downcast::<ServiceError>() {
                    Ok(known) => known,
                    Err(error) => parts.failure(error, self.memory_hit.load(Ordering::Relaxed)),
                };
                for fate in fates.into_inner().unwrap() {
                    if let Some(fate) = fate.upgrade() {
                        fate.settle(error.clone());
                    }
                }
                Outcome::Failed(error)
            }
        }
    }

    /// The store's event loop, with the requests in it: `Ok(clean)` once
    /// idle. Modelled on wasmtime-wasi-http's `ProxyHandler` worker, but it
    /// ends as soon as it is idle, so that it can run in the task of the
    /// request that started it.
    async fn event_loop(
        &mut self,
        pool: &Pool,
        intake: &Intake,
        first: Job,
        fates: &Mutex<Vec<Weak<Fate>>>,
    ) -> wasmtime::Result<bool> {
        let Live {
            store,
            proxy,
            memory_hit,
            ..
        } = self;
        let proxy = &*proxy;
        let memory_hit: &AtomicBool = memory_hit;
        let Proxy::P3(guest) = proxy else {
            unreachable!("a 0.3 instance holds a 0.3 proxy")
        };
        let handler = *guest.wasi_http_handler().func_handle().func();
        let parts = &pool.parts;
        let timeout = parts.settings.timeout;
        let first_deadline = first.deadline;
        let newest = Mutex::new(first_deadline);

        let events = store.run_concurrent(async |accessor| {
            let mut running = FuturesUnordered::new();
            let mut clean = true;
            let accept = |job: Job, running: &mut FuturesUnordered<_>| {
                let Job {
                    request,
                    deadline,
                    fate,
                    answer,
                } = job;
                {
                    let mut newest = newest.lock().unwrap();
                    *newest = (*newest).max(deadline);
                }
                {
                    let mut fates = fates.lock().unwrap();
                    fates.retain(|fate| fate.strong_count() > 0);
                    fates.push(Arc::downgrade(&fate));
                }
                let (sender, receiver) = oneshot::channel();
                let context = request
                    .extensions()
                    .get::<CallContext>()
                    .cloned()
                    .unwrap_or_default();
                // Each request gives the instance a whole deadline of guest
                // time again, and its log budget.
                let (prepared, holding) = accessor.with(|mut access| {
                    let mut store = access.as_context_mut();
                    store.set_epoch_deadline(deadline_ticks(timeout));
                    store.data().refill_log_budget();
                    let holding = store.data().upstream().enter(context);
                    let view = <InstanceState as WasiHttpView>::http;
                    (Prepared::new(store, proxy, request, view, sender), holding)
                });
                running.push(async move {
                    let prepared = match prepared {
                        Ok(prepared) => prepared,
                        Err(error) => {
                            let _ = answer.send(Err(error));
                            return Ok(false);
                        }
                    };
                    let expired = tokio::time::sleep_until(deadline);
                    let in_time = prepared.run(accessor, expired).await?;
                    let result = receiver
                        .await
                        .unwrap_or_else(|_| Err(wasmtime::format_err!("the guest gave no answer")));
                    // A guest's error code is an answer; any other error
                    // (a trap) leaves the instance unfit for more.
                    let answered = match &result {
                        Ok(_) => true,
                        Err(error) => error.is::<ErrorCode>(),
                    };
                    let result = result.map_err(|error| {
                        if answered || error.is::<ExpirationError>() {
                            error
                        } else {
                            let hit = memory_hit.load(Ordering::Relaxed);
                            wasmtime::Error::new(parts.failure(error, hit))
                        }
                    });
                    // The request's context stays with the instance while
                    // its body streams: calls made meanwhile come through it.
                    let result = result.map(|response| {
                        response.map(|body| Guarded::new(body, holding).boxed_unsync())
                    });
                    let _ = answer.send(result);
                    wasmtime::Result::Ok(in_time && answered)
                });
            };
            accept(first, &mut running);
            let mut running = pin!(running);

            poll_fn(|cx| {
                loop {
                    // Finished requests first: one that expired or trapped
                    // stops the instance taking more.
                    match running.as_mut().poll_next(cx) {
                        Poll::Ready(Some(Ok(fine))) => {
                            clean &= fine;
                            if intake.done() {
                                pool.room.notify_waiters();
                            }
                            continue;
                        }
                        Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                        Poll::Ready(None) | Poll::Pending => {}
                    }
                    let fit = clean && !memory_hit.load(Ordering::Relaxed);
                    if !fit {
                        intake.close().into_iter().for_each(Job::unserve);
                    }
                    let ready = accessor
                        .poll_ready_for_concurrent_call(handler, cx)
                        .is_ready();
                    if fit
                        && ready
                        && let Some(job) = intake.next(cx)
                    {
                        accept(job, &mut running);
                        continue;
                    }
                    if !running.is_empty() || accessor.poll_no_interesting_tasks(cx).is_pending() {
                        return Poll::Pending;
                    }
                    if fit && ready && intake.has_queued() {
                        continue;
                    }
                    return Poll::Ready(Ok(clean));
                }
            })
            .await
        });

        // The loop cannot see its requests' deadlines while a guest holds
        // the store; this bound, polled outside it, can.
        let mut events = pin!(events);
        let mut bound = pin!(tokio::time::sleep_until(first_deadline + GRACE));
        poll_fn(|cx| {
            if let Poll::Ready(result) = events.as_mut().poll(cx) {
                return Poll::Ready(result.and_then(|inner| inner));
            }
            let end = *newest.lock().unwrap() + GRACE;
            if bound.deadline() != end {
                bound.as_mut().reset(end);
            }
            bound
                .as_mut()
                .poll(cx)
                .map(|()| Err(wasmtime::Error::new(parts.deadline_exceeded())))
        })
        .await
    }
}
