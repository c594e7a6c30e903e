//! Calling into a guest, the one path HTTP requests, events and jobs all
//! take: the service loaded (a cold start if needed, `Service::loaded`), an
//! instance slot taken within the deadline (`LoadedService::admit`), a store
//! with the sandbox and the deadline armed, the instance made and its export
//! found, the call, and its end settled into a result or a named error.
//! HTTP adds its warm pool and streaming on top (`http::proxy`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::Instance;

use super::errors::ServiceError;
use super::loaded::{Claim, LoadedService};
use super::sandbox::InstanceState;
use super::sandbox::rearm;
use super::service::Service;

/// How a guest's run ended: its value, a wasmtime error, or the deadline.
pub type Outcome<R> = Result<wasmtime::Result<R>, tokio::time::error::Elapsed>;

/// An instance of a service with one of its exports found, ready to call;
/// it holds an instance slot and counts as in flight until dropped.
pub struct Instantiated<T> {
    pub loaded: Arc<LoadedService>,
    pub store: Store<InstanceState>,
    pub export: T,
    memory_hit: Arc<AtomicBool>,
    _claim: Claim,
}

/// Admits, instantiates a loaded service, and finds an export with `find`.
pub async fn instantiate<T>(
    service: &Service,
    loaded: Arc<LoadedService>,
    deadline: Instant,
    find: impl FnOnce(&mut Store<InstanceState>, &Instance) -> wasmtime::Result<T>,
) -> Result<Instantiated<T>, ServiceError> {
    let claim = loaded.admit(&service.settings, deadline).await?;
    let (mut store, memory_hit) = loaded.new_store(service.engine(), &service.settings)?;
    let made = tokio::time::timeout_at(deadline, async {
        let instance = loaded.pre.instantiate_async(&mut store).await?;
        loaded.count_instance();
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
    pub fn settle<R>(&self, service: &Service, outcome: Outcome<R>) -> Result<R, ServiceError> {
        settle(service, self.memory_hit.load(Ordering::Relaxed), outcome)
    }
}

/// The result of a call, or its failure named and recorded for the service.
pub fn settle<R>(
    service: &Service,
    memory_hit: bool,
    outcome: Outcome<R>,
) -> Result<R, ServiceError> {
    let error = match outcome {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(error)) => run_error(service, memory_hit, Ok(error)),
        Err(elapsed) => run_error(service, memory_hit, Err(elapsed)),
    };
    service.record_error(&error);
    Err(error)
}

/// Names why a run failed: the deadline (an epoch trap or the timer), the
/// memory limit, or another trap.
pub fn run_error(
    service: &Service,
    memory_hit: bool,
    failure: Result<wasmtime::Error, tokio::time::error::Elapsed>,
) -> ServiceError {
    let settings = &service.settings;
    if memory_hit {
        service.metrics().memory_limit_hit();
    }
    match failure {
        Ok(error) => ServiceError::from_run(
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
    }
}
