//! A request from the front door to a service (`runtime::serve` runs it):
//! its body handed over as the guest will read it, and why the service did
//! not answer told as a page to a browser and as JSON to anyone else. In a
//! cluster, a request for a service another host owns goes there, and one
//! forwarded here is answered the same way as one that came in directly.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use wasmtime_wasi_http::WasiBody;

use super::body::{BoxBody, error_response, full};
use super::front::Front;
use crate::api::CHAIN_HEADER;
use crate::cluster::{Handler, Routed};
use crate::runtime::call_context::CallContext;
use crate::runtime::{Service, ServiceError, serve};

/// The most of a response a host reads to carry it back to another host.
const FORWARDED_RESPONSE_LIMIT: usize = 64 * 1024 * 1024;

/// Sends `request` (already through the gate) to `service`, on this host
/// or, in a cluster, on the host that owns it.
pub async fn route(
    front: &Front,
    service: Arc<Service>,
    request: Request<Incoming>,
) -> Response<BoxBody> {
    let request = request.map(|body| {
        body.map_err(wasmtime_wasi_http::Error::Hyper)
            .boxed_unsync()
    });
    let https = front.origins.secure;
    let Some(cluster) = &front.cluster else {
        return proxy(service, request, https).await;
    };
    match cluster.route(&service.name, request).await {
        Ok(Routed::Here(request)) => proxy(service, request, https).await,
        Ok(Routed::Answered(response)) => response.map(full),
        Err(error) => {
            tracing::warn!(service = %service.name, "{error}");
            error_response(error.status(), &error.to_string())
        }
    }
}

/// Answers requests other hosts of the cluster forward to this one.
pub fn forwarded(front: Arc<Front>) -> Handler {
    Arc::new(move |name, request| {
        let front = front.clone();
        Box::pin(async move {
            let mut request = request;
            // A call between services, from another host: the chain it came through.
            if let Some(chain) = request.headers_mut().remove(CHAIN_HEADER) {
                let chain = chain.to_str().unwrap_or_default();
                request.extensions_mut().insert(CallContext {
                    chain: chain
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                    deadline: None,
                });
            }
            let Some(service) = front.supervisor.service(&name) else {
                let error = ServiceError::NotFound(name);
                return whole(service_error_response(&error)).await;
            };
            whole(proxy(service, request, front.origins.secure).await).await
        })
    })
}

/// A response read whole, to travel in one message.
async fn whole(response: Response<BoxBody>) -> Response<Bytes> {
    let (parts, mut body) = response.into_parts();
    let mut bytes = bytes::BytesMut::new();
    let broke = loop {
        match body.frame().await {
            None => break None,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
                if bytes.len() > FORWARDED_RESPONSE_LIMIT {
                    break Some("it is larger than a host carries to another".to_string());
                }
            }
            Some(Err(error)) => break Some(error.to_string()),
        }
    };
    match broke {
        None => Response::from_parts(parts, bytes.freeze()),
        Some(why) => {
            let message = format!("the service's response broke off: {why}");
            let (parts, _) = error_response(StatusCode::BAD_GATEWAY, &message).into_parts();
            let body = serde_json::json!({ "error": message }).to_string();
            Response::from_parts(parts, Bytes::from(body))
        }
    }
}

/// Proxies `request` to `service` on this host; `https` when the locker
/// serves TLS.
pub async fn proxy(
    service: Arc<Service>,
    request: Request<WasiBody>,
    https: bool,
) -> Response<BoxBody> {
    // Until the body is sent: the guest may still be writing its folder.
    let working = service.working().await;
    service.count_request();
    let arrived = std::time::Instant::now();
    // A browser gets a page, anyone else JSON.
    let wants_page = request
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let response = match serve::serve(&service, request, https, None).await {
        Ok(response) => response.map(|body| {
            body.map_frame(move |frame| {
                let _ = &working;
                frame
            })
            .map_err(Into::into)
            .boxed_unsync()
        }),
        Err(error) => {
            if error.is_guest_failure() {
                tracing::warn!(service = %service.name, "{error}");
                service.record_error(&error);
            }
            if wants_page {
                super::pages::service_problem(&error)
            } else {
                service_error_response(&error)
            }
        }
    };
    service
        .metrics()
        .request(response.status().as_u16(), arrived.elapsed());
    response
}

pub fn service_error_response(error: &ServiceError) -> Response<BoxBody> {
    error_response(error.status(), &error.to_string())
}
