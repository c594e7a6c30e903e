//! A request from the front door to a service (`runtime::serve` runs it):
//! its body handed over as the guest will read it, and why the service did
//! not answer told as a page to a browser and as JSON to anyone else.

use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{BoxBody, error_response};
use crate::runtime::{Service, ServiceError, serve};

/// Proxies `request` (already through the gate) to `service`; `https`
/// when the locker serves TLS.
pub async fn proxy(
    service: Arc<Service>,
    request: Request<Incoming>,
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
    let request = request.map(|body| {
        body.map_err(wasmtime_wasi_http::Error::Hyper)
            .boxed_unsync()
    });
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
