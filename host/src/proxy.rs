//! One HTTP request to one service: a fresh instance (or, for a service that
//! opts into reuse, a warm one that served its earlier requests), the
//! guest's `wasi:http/incoming-handler`, and the limits around it.
//!
//! The guest sees the path below its prefix (`/notes/a?b` arrives as `/a?b`)
//! and the prefix itself in the `x-forwarded-prefix` header. Bodies stream
//! both ways. The guest's run is bounded by its deadline twice over: an epoch
//! deadline traps a guest that computes too long, and a timer drops one that
//! waits too long.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use crate::errors::ServiceError;
use crate::server::{BoxBody, full};
use crate::service::{Service, WarmProxy, rearm};
use crate::supervisor::Supervisor;

pub const PREFIX_HEADER: &str = "x-forwarded-prefix";

/// Proxies `request` (already stripped of the `/<service>` prefix) to `service`.
pub async fn proxy(
    supervisor: &Supervisor,
    service: Arc<Service>,
    request: Request<Incoming>,
) -> Response<BoxBody> {
    service.count_request();
    match forward(supervisor, &service, request).await {
        Ok(response) => response,
        Err(error) => {
            if error.is_guest_failure() {
                tracing::warn!(service = %service.name, "{error}");
                service.record_error(&error);
            }
            error_response(&error)
        }
    }
}

pub fn error_response(error: &ServiceError) -> Response<BoxBody> {
    let body = serde_json::json!({ "error": error.to_string() }).to_string();
    Response::builder()
        .status(error.status())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("a valid error response")
}

async fn forward(
    supervisor: &Supervisor,
    service: &Arc<Service>,
    request: Request<Incoming>,
) -> Result<Response<BoxBody>, ServiceError> {
    let name = &service.name;
    let settings = &service.settings;
    let deadline = tokio::time::Instant::now() + settings.timeout;

    if let Some(length) = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > settings.max_body
    {
        return Err(ServiceError::BodyTooLarge {
            service: name.clone(),
            limit: settings.max_body,
        });
    }

    let loaded = service
        .loaded(&supervisor.runtime, &supervisor.cache)
        .await?;
    let Some(http_indices) = loaded.http.clone() else {
        return Err(ServiceError::NoHttp(name.clone()));
    };
    let host_error = |e: anyhow::Error| ServiceError::Host {
        service: name.clone(),
        reason: format!("{e:#}"),
    };
    let claim = loaded.admit(settings, deadline).await?;
    let reuse = loaded.reuses(settings);
    let warm = if reuse { loaded.take_warm() } else { None };
    let (mut store, memory_hit, warm_proxy, served) = match warm {
        Some(mut warm) => {
            rearm(&mut warm.store, settings.timeout);
            (warm.store, warm.memory_hit, Some(warm.proxy), warm.served)
        }
        None => {
            let (store, memory_hit) = loaded.new_store(&supervisor.runtime.engine, settings)?;
            (store, memory_hit, None, 0)
        }
    };

    let max_body = settings.max_body;
    let request = request.map(move |body| {
        Limited::new(body, max_body as usize).map_err(move |e| match e.downcast::<hyper::Error>() {
            Ok(e) => wasmtime_wasi_http::Error::Hyper(*e),
            Err(_) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(max_body)),
        })
    });
    let (sender, mut receiver) = tokio::sync::oneshot::channel();
    let mut http = store.data_mut().http();
    let incoming = http
        .new_incoming_request(Scheme::Http, request)
        .map_err(|e| host_error(e.into()))?;
    let outparam = http
        .new_response_outparam(sender)
        .map_err(|e| host_error(e.into()))?;

    let task_loaded = loaded.clone();
    let task_settings = settings.clone();
    let task_memory_hit = memory_hit.clone();
    // The guest's run: it holds the instance slot, and may keep streaming
    // the body after the response head was sent.
    let mut guest = Box::pin(async move {
        let _claim = claim;
        let run = async {
            let proxy = match warm_proxy {
                Some(proxy) => proxy,
                None => {
                    let instance = task_loaded.pre.instantiate_async(&mut store).await?;
                    http_indices.load(&mut store, &instance)?
                }
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await?;
            Ok(proxy)
        };
        let outcome = tokio::time::timeout_at(deadline, run).await;
        match outcome {
            Ok(Ok(proxy)) => {
                if reuse {
                    let warm = WarmProxy {
                        store,
                        proxy,
                        memory_hit: task_memory_hit,
                        served: served + 1,
                        idle_since: std::time::Instant::now(),
                    };
                    task_loaded.keep_warm(warm, &task_settings);
                }
                Ok(Ok(()))
            }
            // A trap or a deadline leaves the instance unusable: it is dropped.
            Ok(Err(error)) => Ok(Err(error)),
            Err(elapsed) => Err(elapsed),
        }
    });

    // Most guests answer and finish within one poll: then the run needs no
    // task of its own. One that is still writing its body when the head
    // arrives is moved to a task and streams from there.
    let failure = |outcome| {
        // A reused instance that returns without answering (not a trap, not
        // a deadline) cannot serve more than one request.
        if served > 0 && matches!(outcome, Ok(Ok(()))) && loaded.turn_off_reuse() {
            let message = format!(
                "a reused instance did not answer its request number {}: reuse is off for this \
                 service until it is loaded again (a JavaScript `fetch` listener, for one, \
                 serves a single request per instance)",
                served + 1
            );
            tracing::warn!(service = %name, "{message}");
            service.log().note(&message);
        }
        classify(service, outcome, memory_hit.load(Ordering::Relaxed))
    };
    let guest_error = |code| ServiceError::GuestError {
        service: name.clone(),
        reason: format!("{code:?}"),
    };
    let into_response = |response: Response<_>| {
        response.map(|body: wasmtime_wasi_http::p2::body::HyperOutgoingBody| {
            body.map_err(|e| e.into()).boxed_unsync()
        })
    };
    tokio::select! {
        biased;
        outcome = &mut guest => match receiver.try_recv() {
            Ok(Ok(response)) => Ok(into_response(response)),
            Ok(Err(code)) => Err(guest_error(code)),
            Err(_) => Err(failure(outcome)),
        },
        answer = &mut receiver => match answer {
            Ok(Ok(response)) => {
                tokio::spawn(guest);
                Ok(into_response(response))
            }
            Ok(Err(code)) => {
                tokio::spawn(guest);
                Err(guest_error(code))
            }
            Err(_) => Err(failure(guest.await)),
        },
    }
}

/// Turns how a guest's run ended, without a response, into an error.
fn classify(
    service: &Service,
    outcome: Result<Result<(), wasmtime::Error>, tokio::time::error::Elapsed>,
    memory_hit: bool,
) -> ServiceError {
    let name = service.name.clone();
    let settings = &service.settings;
    match outcome {
        Ok(Ok(())) => ServiceError::NoResponse { service: name },
        Err(_elapsed) => ServiceError::DeadlineExceeded {
            service: name,
            deadline: settings.timeout,
        },
        Ok(Err(error)) => {
            ServiceError::from_run(&name, settings.timeout, settings.memory, error, memory_hit)
        }
    }
}

/// Rewrites `/<service>/rest?q` to `/rest?q` and records the prefix.
pub fn strip_prefix(request: &mut Request<Incoming>, service: &Service) {
    let prefix_len = service.name.len() + 1; // "/<service>"
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let rest = path_and_query.get(prefix_len..).unwrap_or_default();
    let rest = if rest.starts_with('/') {
        PathAndQuery::try_from(rest)
    } else {
        PathAndQuery::try_from(format!("/{rest}"))
    };
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.path_and_query = rest.ok();
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
        .headers_mut()
        .insert(PREFIX_HEADER, service.prefix_header().clone());
}
