//! Calling a service's own exports (its event and job handlers): a fresh
//! instance with the export found, and one call under the service's limits,
//! failures named and noted in its log the same way for both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::Instance;

use crate::errors::ServiceError;
use crate::sandbox::InstanceState;
use crate::service::{InFlight, LoadedService, Service, rearm};

/// An instance of a service with one of its exports found, ready to call;
/// it holds an instance slot and counts as in flight until dropped.
pub struct Instantiated<T> {
    pub loaded: Arc<LoadedService>,
    pub store: Store<InstanceState>,
    pub export: T,
    memory_hit: Arc<AtomicBool>,
    _claim: (OwnedSemaphorePermit, InFlight),
}

/// Instantiates a loaded service and finds an export with `find`.
pub async fn instantiate<T>(
    engine: &wasmtime::Engine,
    service: &Service,
    loaded: Arc<LoadedService>,
    deadline: Instant,
    find: impl FnOnce(&mut Store<InstanceState>, &Instance) -> wasmtime::Result<T>,
) -> Result<Instantiated<T>, ServiceError> {
    let prepared = loaded.prepare(engine, &service.settings, deadline).await?;
    let (mut store, memory_hit, claim) = (prepared.store, prepared.memory_hit, prepared.claim);
    let made = tokio::time::timeout_at(deadline, async {
        let instance = loaded.pre.instantiate_async(&mut store).await?;
        find(&mut store, &instance)
    })
    .await;
    let export = settle(service, memory_hit.load(Ordering::Relaxed), made)?;
    Ok(Instantiated {
        loaded,
        store,
        export,
        memory_hit,
        _claim: claim,
    })
}

impl<T> Instantiated<T> {
    /// Gives the next call the service's whole deadline of guest time, and
    /// its whole log budget.
    pub fn arm(&mut self, service: &Service) {
        rearm(&mut self.store, service.settings.timeout);
    }

    /// Turns how a call ended into its result or a named error, noting
    /// traps and deadlines in the service's log.
    pub fn settle<R>(
        &self,
        service: &Service,
        outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
    ) -> Result<R, ServiceError> {
        settle(service, self.memory_hit.load(Ordering::Relaxed), outcome)
    }
}

fn settle<R>(
    service: &Service,
    memory_hit: bool,
    outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
) -> Result<R, ServiceError> {
    let settings = &service.settings;
    let error = match outcome {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(error)) => ServiceError::from_run(
            &service.name,
            settings.timeout,
            settings.memory,
            error,
            memory_hit,
        ),
        Err(_elapsed) => ServiceError::DeadlineExceeded {
            service: service.name.clone(),
            deadline: settings.timeout,
        },
    };
    service.record_error(&error);
    Err(error)
}
