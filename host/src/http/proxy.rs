//! One HTTP request to one service: a fresh instance (or, for a service that
//! opts into reuse, a warm one that served its earlier requests), the
//! guest's `wasi:http/incoming-handler`, and the limits around it.
//!
//! The guest sees the request's own path (its origin is its own), with the
//! headers the gate left it. Bodies stream both ways. The guest's run is bounded by its deadline twice over: an epoch
//! deadline traps a guest that computes too long, and a timer drops one that
//! waits too long.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};

use super::body::{BoxBody, error_response};
use crate::runtime::call::{self, Outcome};
use crate::runtime::loaded::{Claim, LoadedService, rearm};
use crate::runtime::sandbox::InstanceState;
use crate::runtime::warm_pool::WarmProxy;
use crate::runtime::{Service, ServiceError};

/// Proxies `request` (already through the gate) to `service`.
pub async fn proxy(service: Arc<Service>, request: Request<Incoming>) -> Response<BoxBody> {
    service.count_request();
    match forward(&service, request).await {
        Ok(response) => response,
        Err(error) => {
            if error.is_guest_failure() {
                tracing::warn!(service = %service.name, "{error}");
                service.record_error(&error);
            }
            service_error_response(&error)
        }
    }
}

pub fn service_error_response(error: &ServiceError) -> Response<BoxBody> {
    error_response(error.status(), &error.to_string())
}

/// An instance ready to take a request: warm from the pool, or fresh.
struct Ready {
    store: Store<InstanceState>,
    memory_hit: Arc<AtomicBool>,
    /// The warm instance's bindings; a fresh one is instantiated in the run.
    proxy: Option<Proxy>,
    /// Requests it served before this one.
    served: u32,
}

/// How the guest's run ended (its answer, if any, went through the channel).
type Run = Outcome<()>;

async fn forward(
    service: &Arc<Service>,
    request: Request<Incoming>,
) -> Result<Response<BoxBody>, ServiceError> {
    let settings = &service.settings;
    let deadline = Instant::now() + settings.timeout;
    refuse_large_body(service, &request)?;

    let loaded = service.loaded().await?;
    if loaded.http.is_none() {
        return Err(ServiceError::NoHttp(service.name.clone()));
    }
    let claim = loaded.admit(settings, deadline).await?;
    let reuse = loaded.warm.reuses(settings);
    let mut ready = match reuse.then(|| loaded.warm.take()).flatten() {
        Some(mut warm) => {
            rearm(&mut warm.store, settings.timeout);
            Ready {
                store: warm.store,
                memory_hit: warm.memory_hit,
                proxy: Some(warm.proxy),
                served: warm.served,
            }
        }
        None => {
            let (store, memory_hit) = loaded.new_store(service.engine(), settings)?;
            Ready {
                store,
                memory_hit,
                proxy: None,
                served: 0,
            }
        }
    };
    let served = ready.served;
    let memory_hit = ready.memory_hit.clone();
    let (sender, mut receiver) = oneshot::channel();
    let (incoming, outparam) = hand_over(service, &mut ready, request, sender)?;
    let mut guest = Box::pin(run_guest(
        service.clone(),
        loaded.clone(),
        claim,
        ready,
        (incoming, outparam),
        deadline,
        reuse,
    ));

    // Most guests answer and finish within one poll: then the run needs no
    // task of its own. One that is still writing its body when the head
    // arrives is moved to a task and streams from there.
    let no_answer = |outcome| Err(no_answer(service, &loaded, served, outcome, &memory_hit));
    tokio::select! {
        biased;
        outcome = &mut guest => match receiver.try_recv() {
            Ok(answer) => answered(service, answer),
            Err(_) => no_answer(outcome),
        },
        answer = &mut receiver => match answer {
            Ok(answer) => {
                tokio::spawn(guest);
                answered(service, answer)
            }
            Err(_) => no_answer(guest.await),
        },
    }
}

/// A `content-length` over the service's `max_body` is refused at once.
fn refuse_large_body(service: &Service, request: &Request<Incoming>) -> Result<(), ServiceError> {
    let limit = service.settings.max_body;
    match request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        Some(length) if length > limit => Err(ServiceError::BodyTooLarge {
            service: service.name.clone(),
            limit,
        }),
        _ => Ok(()),
    }
}

/// Puts the request and the channel for its answer into the instance's
/// resource table. A body without a length is cut off at the limit as it
/// streams.
fn hand_over(
    service: &Service,
    ready: &mut Ready,
    request: Request<Incoming>,
    sender: oneshot::Sender<Result<Response<HyperOutgoingBody>, ErrorCode>>,
) -> Result<
    (
        Resource<HostIncomingRequest>,
        Resource<HostResponseOutparam>,
    ),
    ServiceError,
> {
    let max_body = service.settings.max_body;
    let request = request.map(move |body| {
        Limited::new(body, max_body as usize).map_err(move |e| match e.downcast::<hyper::Error>() {
            Ok(e) => wasmtime_wasi_http::Error::Hyper(*e),
            Err(_) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body)),
        })
    });
    let host_error = |e: wasmtime::Error| ServiceError::Host {
        service: service.name.clone(),
        reason: format!("{e:#}"),
    };
    let mut http = ready.store.data_mut().http();
    let incoming = http
        .new_incoming_request(Scheme::Http, request)
        .map_err(host_error)?;
    let outparam = http.new_response_outparam(sender).map_err(host_error)?;
    Ok((incoming, outparam))
}

/// The guest's run: it holds the instance slot, and may keep streaming the
/// body after the response head was sent. A reusing service's instance goes
/// back to its pool after a clean run.
async fn run_guest(
    service: Arc<Service>,
    loaded: Arc<LoadedService>,
    claim: Claim,
    mut ready: Ready,
    (incoming, outparam): (
        Resource<HostIncomingRequest>,
        Resource<HostResponseOutparam>,
    ),
    deadline: Instant,
    reuse: bool,
) -> Run {
    let _claim = claim;
    let store = &mut ready.store;
    let run = async {
        let proxy = match ready.proxy.take() {
            Some(proxy) => proxy,
            None => {
                let instance = loaded.pre.instantiate_async(&mut *store).await?;
                let indices = loaded.http.as_ref().expect("checked before admission");
                indices.load(&mut *store, &instance)?
            }
        };
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut *store, incoming, outparam)
            .await?;
        Ok(proxy)
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(Ok(proxy)) => {
            if reuse {
                let warm = WarmProxy {
                    store: ready.store,
                    proxy,
                    memory_hit: ready.memory_hit,
                    served: ready.served + 1,
                    idle_since: std::time::Instant::now(),
                };
                loaded.warm.keep(warm, &service.settings);
            }
            Ok(Ok(()))
        }
        // A trap or a deadline leaves the instance unusable: it is dropped.
        Ok(Err(error)) => Ok(Err(error)),
        Err(elapsed) => Err(elapsed),
    }
}

/// The guest's response head, or the error code it answered with.
fn answered(
    service: &Service,
    answer: Result<Response<HyperOutgoingBody>, ErrorCode>,
) -> Result<Response<BoxBody>, ServiceError> {
    match answer {
        Ok(response) => Ok(response.map(|body| body.map_err(|e| e.into()).boxed_unsync())),
        Err(code) => Err(ServiceError::GuestError {
            service: service.name.clone(),
            reason: format!("{code:?}"),
        }),
    }
}

/// Why a run ended without a response. A reused instance that returned
/// without answering (not a trap, not a deadline) cannot serve more than one
/// request: reuse turns off for this load of the service.
fn no_answer(
    service: &Service,
    loaded: &LoadedService,
    served: u32,
    outcome: Run,
    memory_hit: &AtomicBool,
) -> ServiceError {
    match outcome {
        Ok(Ok(())) => {
            if served > 0 && loaded.warm.turn_off() {
                let message = format!(
                    "a reused instance did not answer its request number {}: reuse is off for \
                     this service until it is loaded again (a JavaScript `fetch` listener, for \
                     one, serves a single request per instance)",
                    served + 1
                );
                tracing::warn!(service = %service.name, "{message}");
                service.log().note(&message);
            }
            ServiceError::NoResponse {
                service: service.name.clone(),
            }
        }
        Ok(Err(error)) => call::run_error(service, memory_hit.load(Ordering::Relaxed), Ok(error)),
        Err(elapsed) => call::run_error(service, memory_hit.load(Ordering::Relaxed), Err(elapsed)),
    }
}
