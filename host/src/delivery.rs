//! Delivering events: one dispatcher task per subscribing service.
//!
//! A dispatcher takes its service's pending deliveries in publish order and
//! hands them to the service's `event-handler` one at a time, so order holds
//! per subscriber. The service is cold-started if it is not loaded. A failed
//! attempt (an error returned, a trap, a deadline) is recorded and retried
//! after a backoff, holding back later events; after the last attempt the
//! delivery becomes a dead letter and the dispatcher moves on. A stopped
//! service keeps its deliveries pending until it is started again.

use std::sync::Arc;
use std::time::Duration;

use crate::errors::ServiceError;
use crate::event_store::{EventRecord, PendingDelivery};
use crate::guest_api::Event;
use crate::service::Service;
use crate::supervisor::Supervisor;

const BATCH: usize = 512;

/// How one attempt at a delivery ended.
enum Attempt {
    Delivered,
    /// The handler (or loading the service) failed; worth retrying.
    Failed(String),
    /// The service cannot take events now (stopped); wait without counting.
    Wait,
}

/// Runs until the service is uninstalled.
pub async fn run_dispatcher(supervisor: Arc<Supervisor>, name: String) {
    let bus = supervisor.bus.clone();
    let bell = bus.bell(&name);
    let mut after = 0;
    loop {
        // Listen before looking, so a publish between the two is not missed.
        let rung = bell.notified();
        tokio::pin!(rung);
        rung.as_mut().enable();
        let Some(service) = supervisor.service(&name) else {
            tracing::debug!(service = %name, "dispatcher ends: the service is gone");
            return;
        };
        let batch = match bus.store().pending(&name, after, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(service = %name, "cannot read pending deliveries: {e:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            // Start from the beginning next time: a replay may bring back
            // deliveries older than the cursor.
            after = 0;
            rung.await;
            continue;
        }
        for delivery in batch {
            after = delivery.event.seq;
            if !deliver_with_retries(&supervisor, &service, delivery).await {
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
    supervisor: &Supervisor,
    service: &Arc<Service>,
    delivery: PendingDelivery,
) -> bool {
    let bus = &supervisor.bus;
    let policy = &bus.policy;
    let name = &service.name;
    let event = delivery.event;
    let mut attempts = delivery.attempts;
    loop {
        match attempt(supervisor, service, &event).await {
            Attempt::Delivered => {
                bus.store().delivered(name, event.seq);
                return true;
            }
            Attempt::Wait => {
                let bell = bus.bell(name);
                tokio::select! {
                    () = bell.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                return false;
            }
            Attempt::Failed(error) => {
                attempts += 1;
                let dead = attempts >= policy.attempts;
                bus.store().failed(name, event.seq, attempts, &error, dead);
                tracing::warn!(service = %name, event = %event.id, attempts, "event handler failed: {error}");
                if dead {
                    service.log().note(&format!(
                        "event {} ({}) is a dead letter after {attempts} attempts: {error}",
                        event.id, event.topic
                    ));
                    return true;
                }
                tokio::time::sleep(policy.backoff_after(attempts)).await;
                if supervisor.service(name).is_none() {
                    return true;
                }
            }
        }
    }
}

async fn attempt(supervisor: &Supervisor, service: &Arc<Service>, event: &EventRecord) -> Attempt {
    let settings = &service.settings;
    let deadline = tokio::time::Instant::now() + settings.timeout;
    let loaded = match service.loaded(&supervisor.runtime, &supervisor.cache).await {
        Ok(loaded) => loaded,
        Err(ServiceError::Stopped(_)) => return Attempt::Wait,
        Err(error) => return Attempt::Failed(error.to_string()),
    };
    let Some(indices) = loaded.events.clone() else {
        return Attempt::Failed(format!(
            "service {:?} does not export an event handler",
            service.name
        ));
    };
    let instance = match loaded
        .prepare(&supervisor.runtime.engine, settings, deadline)
        .await
    {
        Ok(instance) => instance,
        Err(error) => return Attempt::Failed(error.to_string()),
    };
    let (mut store, memory_hit, _claim) = (instance.store, instance.memory_hit, instance.claim);
    let event = Event::from(event);
    let run = async {
        let instance = loaded.pre.instantiate_async(&mut store).await?;
        let handler = indices.load(&mut store, &instance)?;
        handler.call_handle(&mut store, &event).await
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(Ok(Ok(()))) => Attempt::Delivered,
        Ok(Ok(Err(message))) => {
            Attempt::Failed(format!("the handler returned an error: {message}"))
        }
        Ok(Err(error)) => {
            let error = ServiceError::from_run(
                &service.name,
                settings.timeout,
                settings.memory,
                error,
                memory_hit.load(std::sync::atomic::Ordering::Relaxed),
            );
            service.record_error(&error);
            Attempt::Failed(error.to_string())
        }
        Err(_) => {
            let error = ServiceError::DeadlineExceeded {
                service: service.name.clone(),
                deadline: settings.timeout,
            };
            service.record_error(&error);
            Attempt::Failed(error.to_string())
        }
    }
}
