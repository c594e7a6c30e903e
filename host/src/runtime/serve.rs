//! One HTTP request to one service, from the front door or from another
//! service (`runtime::calls`): for WASI 0.2, a fresh instance (or, for a
//! service that opts into reuse, a warm one that served its earlier
//! requests) and the guest's `wasi:http/incoming-handler`; for WASI 0.3, an
//! instance of the service with room for one more request
//! (`runtime::concurrent`) and its `wasi:http/handler`; the limits around
//! both.
//!
//! The guest sees the request's own path (its origin is its own), with the
//! headers the gate (or the call) left it. Bodies stream both ways; a body
//! over the service's `max_body` is refused, or cut off as it streams. The
//! guest's run is bounded by its deadline twice over: an epoch deadline
//! traps a guest that computes too long, and a timer drops one that waits
//! too long; its response body too must be done by then.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use tokio::sync::oneshot;
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime::component::Resource;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyIndices};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::{WasiBody, WasiHttpView};

use super::bodies::{Deadlined, Guarded};
use super::call::{self, Outcome};
use super::call_context::CallContext;
use super::concurrent::ConcurrentHttp;
use super::loaded::{Claim, HttpHandler, LoadedService};
use super::sandbox::InstanceState;
use super::sandbox::rearm;
use super::warm_pool::WarmProxy;
use super::{Service, ServiceError};

/// Serves `request` with `service`, within its deadline (or `bound`, when
/// that is sooner: a call gets no more time than its caller has left);
/// `https` when the request came over TLS (the guest reads the scheme).
pub async fn serve(
    service: &Arc<Service>,
    request: Request<WasiBody>,
    https: bool,
    bound: Option<Instant>,
) -> Result<Response<WasiBody>, ServiceError> {
    refuse_large_body(service, &request)?;
    // The deadline starts once the code is loaded: a first request that
    // waits for its compilation is not cut short by it (a caller's own
    // deadline, `bound`, still holds).
    let loaded = service.loaded().await?;
    let own = Instant::now() + service.settings.timeout;
    let deadline = bound.map_or(own, |bound| bound.min(own));
    let mut request = request.map(|body| limited_body(body, service.settings.max_body));
    // What the instance's own calls will carry: the chain that led here
    // (a call's), and this request's deadline.
    let chain = request
        .extensions_mut()
        .remove::<CallContext>()
        .map(|context| context.chain)
        .unwrap_or_default();
    request.extensions_mut().insert(CallContext {
        chain,
        deadline: Some(deadline),
    });

    match &loaded.http {
        None => Err(ServiceError::NoHttp(service.name.clone())),
        Some(HttpHandler::P2(indices)) => {
            forward_p2(service, &loaded, indices, request, deadline, https).await
        }
        Some(HttpHandler::P3(concurrent)) => {
            forward_p3(service, &loaded, concurrent, request, deadline, https).await
        }
    }
}

/// The guest's bindings: a warm instance's, or where a fresh one's export
/// is (it is instantiated in the run).
enum Guest {
    Warm(Proxy),
    Fresh(ProxyIndices),
}

/// An instance ready to take a request: warm from the pool, or fresh.
struct Ready {
    store: Store<InstanceState>,
    memory_hit: Arc<AtomicBool>,
    guest: Guest,
    /// Requests it served before this one.
    served: u32,
}

/// How the guest's run ended (its answer, if any, went through the channel).
type Run = Outcome<()>;

/// A WASI 0.3 request: its URI made absolute (the guest reads its scheme
/// and authority there), handed to an instance with room for it. The
/// request counts in flight until its response body is done.
async fn forward_p3(
    service: &Service,
    loaded: &Arc<LoadedService>,
    concurrent: &ConcurrentHttp,
    request: Request<WasiBody>,
    deadline: Instant,
    https: bool,
) -> Result<Response<WasiBody>, ServiceError> {
    let in_flight = loaded.begin_request();
    let (mut parts, body) = request.into_parts();
    parts.uri = absolute_uri(&parts, https).map_err(|e| ServiceError::Host {
        service: service.name.clone(),
        reason: format!("the request's URI: {e}"),
    })?;
    let request = Request::from_parts(parts, body);
    let response = concurrent.handle(request, deadline).await?;
    // Its body too must be done by the deadline, as a 0.2 guest's run is.
    Ok(response.map(|body| Guarded::new(Deadlined::new(body, deadline), in_flight).boxed_unsync()))
}

/// The request's URI with its scheme, and its authority from the `Host`
/// header when the URI has none (routing read the host the same way).
fn absolute_uri(parts: &http::request::Parts, https: bool) -> Result<http::Uri, http::Error> {
    let mut uri = http::uri::Parts::from(parts.uri.clone());
    uri.scheme = Some(if https {
        http::uri::Scheme::HTTPS
    } else {
        http::uri::Scheme::HTTP
    });
    if uri.authority.is_none() {
        uri.authority = parts
            .headers
            .get(http::header::HOST)
            .and_then(|host| http::uri::Authority::try_from(host.as_bytes()).ok());
    }
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    Ok(http::Uri::from_parts(uri)?)
}

/// The request body as the guest reads it: cut off at `max_body` as it
/// streams, for a body without a length.
fn limited_body(body: WasiBody, max_body: u64) -> WasiBody {
    Limited::new(body, max_body as usize)
        .map_err(move |e| match e.downcast::<wasmtime_wasi_http::Error>() {
            Ok(e) => *e,
            Err(_) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body)),
        })
        .boxed_unsync()
}

/// A WASI 0.2 request.
async fn forward_p2(
    service: &Arc<Service>,
    loaded: &Arc<LoadedService>,
    indices: &ProxyIndices,
    request: Request<WasiBody>,
    deadline: Instant,
    https: bool,
) -> Result<Response<WasiBody>, ServiceError> {
    let settings = &service.settings;
    let claim = loaded.admit(settings, deadline).await?;
    let reuse = loaded.warm.reuses(settings);
    let mut ready = match reuse.then(|| loaded.warm.take()).flatten() {
        Some(mut warm) => {
            rearm(&mut warm.store, settings.timeout);
            Ready {
                store: warm.store,
                memory_hit: warm.memory_hit,
                guest: Guest::Warm(warm.proxy),
                served: warm.served,
            }
        }
        None => {
            let (store, memory_hit) = loaded.new_store(service.engine(), settings)?;
            Ready {
                store,
                memory_hit,
                guest: Guest::Fresh(indices.clone()),
                served: 0,
            }
        }
    };
    let served = ready.served;
    let memory_hit = ready.memory_hit.clone();
    let (sender, mut receiver) = oneshot::channel();
    let scheme = if https { Scheme::Https } else { Scheme::Http };
    let (incoming, outparam) = hand_over(service, &mut ready, request, scheme, sender)?;
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
    let no_answer = |outcome| Err(no_answer(service, loaded, served, outcome, &memory_hit));
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
fn refuse_large_body(service: &Service, request: &Request<WasiBody>) -> Result<(), ServiceError> {
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
    request: Request<WasiBody>,
    scheme: Scheme,
    sender: oneshot::Sender<Result<Response<HyperOutgoingBody>, ErrorCode>>,
) -> Result<
    (
        Resource<HostIncomingRequest>,
        Resource<HostResponseOutparam>,
    ),
    ServiceError,
> {
    let host_error = |e: wasmtime::Error| ServiceError::Host {
        service: service.name.clone(),
        reason: format!("{e:#}"),
    };
    let context = request
        .extensions()
        .get::<CallContext>()
        .cloned()
        .unwrap_or_default();
    ready.store.data_mut().upstream().only(context);
    let mut http = ready.store.data_mut().http();
    let incoming = http
        .new_incoming_request(scheme, request)
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
    ready: Ready,
    (incoming, outparam): (
        Resource<HostIncomingRequest>,
        Resource<HostResponseOutparam>,
    ),
    deadline: Instant,
    reuse: bool,
) -> Run {
    let _claim = claim;
    let Ready {
        mut store,
        memory_hit,
        guest,
        served,
    } = ready;
    let run = async {
        let proxy = match guest {
            Guest::Warm(proxy) => proxy,
            Guest::Fresh(indices) => {
                let instance = loaded.pre.instantiate_async(&mut store).await?;
                loaded.count_instance();
                indices.load(&mut store, &instance)?
            }
        };
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, incoming, outparam)
            .await?;
        Ok(proxy)
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(Ok(proxy)) => {
            if reuse {
                let warm = WarmProxy {
                    store,
                    proxy,
                    memory_hit,
                    served: served + 1,
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
) -> Result<Response<WasiBody>, ServiceError> {
    match answer {
        Ok(response) => Ok(response.map(|body| body.map_err(Into::into).boxed_unsync())),
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
