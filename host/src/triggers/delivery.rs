//! Delivering events: one dispatcher task per subscribing service.
//!
//! A dispatcher takes its service's pending deliveries in publish order and
//! hands them to the service's `event-handler` one at a time, so order holds
//! per subscriber. The service is cold-started if it is not loaded. A failed
//! attempt (an error returned, a trap, a deadline) is recorded and retried
//! after a backoff, holding back later events; after the last attempt the
//! delivery becomes a dead letter and the dispatcher moves on. A stopped
//! service keeps its deliveries pending until it is started again.
//!
//! Consecutive events of one batch share an instance while they succeed
//! (see [`WarmHandler`]); the `event-handler` contract lets guests count on
//! nothing more than that each call is independent.

use std::sync::Arc;
use std::time::Duration;

use crate::api::EventRecord;
use crate::bindings::EventHandler;
use crate::bindings::events::Event;
use crate::bus::Bus;
use crate::metrics;
use crate::runtime::call::{self, Instantiated};
use crate::runtime::{Service, ServiceError};
use crate::store::events::PendingDelivery;

const BATCH: usize = 512;

/// Deliveries done, marked in one piece of the writer's work per this many.
const MARKS: usize = 64;

/// Deliveries done whose marks have not gone to the event log yet. They go
/// before the dispatcher next reads what is pending (a read from the start
/// runs in the writer behind them; a read past the cursor cannot reach
/// them), every [`MARKS`], and when the dispatcher ends mid-batch (an
/// upgrade or uninstall): a crash loses at most the marks of a few dozen
/// deliveries, which are then delivered again, as at-least-once allows.
struct Marks<'a> {
    bus: &'a Bus,
    service: &'a str,
    seqs: Vec<i64>,
}

impl Marks<'_> {
    fn add(&mut self, seq: i64) {
        self.seqs.push(seq);
        if self.seqs.len() >= MARKS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.seqs.is_empty() {
            return;
        }
        let seqs = std::mem::replace(&mut self.seqs, Vec::with_capacity(MARKS));
        self.bus.metrics.deliveries(
            self.service,
            metrics::Delivery::Delivered,
            seqs.len() as u64,
        );
        self.bus.log().delivered(self.service, seqs);
    }
}

impl Drop for Marks<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// How one attempt at a delivery ended.
enum Attempt {
    Delivered,
    /// The handler (or loading the service) failed; worth retrying.
    Failed(String),
    /// The service cannot take events now (stopped, or a required setting
    /// unset); wait without counting.
    Wait,
}

/// Runs until the service is retired (uninstalled, or replaced by an
/// upgrade, whose service has a dispatcher of its own). A delivery cut short
/// by that stays pending, and is delivered again: at least once.
pub async fn run_dispatcher(bus: Arc<Bus>, service: Arc<Service>) {
    tokio::select! {
        () = service.retired() => {
            tracing::debug!(service = %service.name, "dispatcher ends: the service is gone");
        }
        () = dispatch(&bus, &service) => {}
    }
}

async fn dispatch(bus: &Bus, service: &Arc<Service>) {
    let name = &service.name;
    let bell = bus.subscriptions.bell(name);
    let mut after = 0;
    let mut marks = Marks {
        bus,
        service: name,
        seqs: Vec::with_capacity(MARKS),
    };
    loop {
        // Listen before looking, so a publish between the two is not missed.
        let rung = bell.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        if bus.subscriptions.take_rewind(name) {
            after = 0;
        }
        marks.flush();
        let batch = match bus.log().pending(name, after, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(service = %name, "cannot read pending deliveries: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            // The cursor stays: sequence numbers are never reused, and
            // what a replay brings back before it comes with a rewind.
            rung.await;
            continue;
        }
        let mut warm = None;
        for delivery in batch {
            after = delivery.event.seq;
            if !deliver_with_retries(bus, service, delivery, &mut warm, &mut marks).await {
                // Waiting on a stopped service: look again when rung.
                after = 0;
                break;
            }
        }
    }
}

/// Delivers one event until it succeeds or dies; `false` if the service
/// cannot take events now (the delivery stays pending).
async fn deliver_with_retries(
    bus: &Bus,
    service: &Arc<Service>,
    delivery: PendingDelivery,
    warm: &mut Option<WarmHandler>,
    marks: &mut Marks<'_>,
) -> bool {
    let policy = &bus.policy;
    let name = &service.name;
    let event = delivery.event;
    let mut attempts = delivery.attempts;
    loop {
        // Held from the attempt through its record; not while backing off.
        let working = service.working().await;
        match attempt(service, &event, warm).await {
            Attempt::Delivered => {
                marks.add(event.seq);
                return true;
            }
            Attempt::Wait => {
                drop(working);
                let bell = bus.subscriptions.bell(name);
                tokio::select! {
                    () = bell.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                return false;
            }
            Attempt::Failed(error) => {
                attempts += 1;
                let dead = attempts >= policy.attempts;
                bus.log().failed(name, event.seq, attempts, &error, dead);
                let outcome = if dead {
                    metrics::Delivery::DeadLetter
                } else {
                    metrics::Delivery::Retried
                };
                bus.metrics.delivery(name, outcome);
                tracing::warn!(service = %name, event = %event.id, attempts, "event handler failed: {error}");
                if dead {
                    service.log().note(&format!(
                        "event {} ({}) is a dead letter after {attempts} attempts: {error}",
                        event.id, event.topic
                    ));
                    return true;
                }
                drop(working);
                tokio::time::sleep(policy.backoff_after(attempts)).await;
            }
        }
    }
}

/// An instance kept across consecutive deliveries of one batch: a service
/// that takes events in bursts pays for one instantiation, not one per event.
/// It is dropped after any failure, at the end of the batch, and when the
/// service was reloaded meanwhile.
type WarmHandler = Instantiated<EventHandler>;

async fn attempt(
    service: &Arc<Service>,
    event: &EventRecord,
    warm: &mut Option<WarmHandler>,
) -> Attempt {
    let loaded = match service.loaded().await {
        Ok(loaded) => loaded,
        // Stopped, or waiting for a required setting: the owner's move.
        Err(ServiceError::Stopped(_) | ServiceError::Unconfigured { .. }) => return Attempt::Wait,
        Err(error) => return Attempt::Failed(error.to_string()),
    };
    // The handler's time starts once its service is loaded: a cold start
    // (a compile, or waiting for one) is not the handler's to pay for.
    let deadline = tokio::time::Instant::now() + service.settings.timeout;
    if warm
        .as_ref()
        .is_some_and(|w| !Arc::ptr_eq(&w.loaded, &loaded))
    {
        *warm = None;
    }
    if warm.is_none() {
        let Some(indices) = loaded.events.clone() else {
            return Attempt::Failed(format!(
                "service {:?} does not export an event handler",
                service.name
            ));
        };
        match call::instantiate(service, loaded, deadline, |store, instance| {
            indices.load(store, instance)
        })
        .await
        {
            Ok(fresh) => *warm = Some(fresh),
            Err(error) => return Attempt::Failed(error.to_string()),
        }
    }
    let handler = warm.as_mut().expect("just made");
    handler.arm(service);
    let event = Event::from(event);
    let call = handler.export.call_handle(&mut handler.store, &event);
    let outcome = tokio::time::timeout_at(deadline, call).await;
    match handler.settle(service, outcome) {
        Ok(Ok(())) => Attempt::Delivered,
        Ok(Err(message)) => {
            *warm = None;
            Attempt::Failed(format!("the handler returned an error: {message}"))
        }
        Err(error) => {
            *warm = None;
            Attempt::Failed(error.to_string())
        }
    }
}
