//! The HTTP front door: one listener for the admin API and every service.
//!
//! ```text
//! /_locker/api/...      the admin API (JSON)
//! /<service>            redirect to /<service>/
//! /<service>/<rest>     proxied to the service, which sees /<rest>
//! ```
//!
//! Every request passes [`authorize`] first; owner login will live there.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::body::{BoxBody, full, json_response};
use super::connections::{ConnectionLimits, OpenConnections};
use super::proxy::{proxy, service_error_response, strip_prefix};
use crate::api::ADMIN_PREFIX;
use crate::runtime::ServiceError;
use crate::supervisor::Supervisor;

/// Serves until `shutdown` resolves, then lets open connections finish.
pub async fn serve(
    supervisor: Arc<Supervisor>,
    listener: TcpListener,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Also bounds how long a keep-alive connection waits for its next request.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout);
    let open = OpenConnections::new(limits);
    // Ends the wait for a first byte when the host shuts down: a connection
    // that has not sent one yet holds up no graceful shutdown.
    let stopping = tokio_util::sync::CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = open.admit(peer.ip()) else {
            tracing::debug!(%peer, "refused a connection: too many open");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let supervisor = supervisor.clone();
        let service = hyper::service::service_fn(move |request| {
            let supervisor = supervisor.clone();
            async move { Ok::<_, Infallible>(route(&supervisor, request).await) }
        });
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let head_timeout = open.limits.head_timeout;
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // A client that sends nothing at all is closed at the same bound
            // as one that never finishes its request head (hyper's timer
            // starts only once it reads a head, after telling HTTP/1 from
            // HTTP/2 by the first bytes).
            let mut first = [0u8; 1];
            let peeked = tokio::select! {
                peeked = tokio::time::timeout(head_timeout, stream.peek(&mut first)) => peeked,
                () = stopping.cancelled() => return,
            };
            if !matches!(peeked, Ok(Ok(1))) {
                return;
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    stopping.cancel();
    tracing::info!("shutting down: waiting for open requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
            tracing::warn!("some connections did not finish in time");
        }
    }
    Ok(())
}

async fn route(supervisor: &Arc<Supervisor>, mut request: Request<Incoming>) -> Response<BoxBody> {
    if let Err(denied) = authorize(&request) {
        return denied;
    }
    let path = request.uri().path();
    if path
        .strip_prefix(ADMIN_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    {
        return super::admin::handle(supervisor, request).await;
    }
    // The first segment names the service; `//x` names none (it is not `/x`).
    let name = path
        .strip_prefix('/')
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    if path == "/" {
        return json_response(
            StatusCode::OK,
            &serde_json::json!({
                "locker": env!("CARGO_PKG_VERSION"),
                "services": supervisor.statuses().iter().map(|s| format!("/{}/", s.name)).collect::<Vec<_>>(),
            }),
        );
    }
    let Some(service) = supervisor.service(name) else {
        return service_error_response(&ServiceError::NotFound(name.to_string()));
    };
    if path.len() == name.len() + 1 {
        // Apps serve relative links from `/`: send the browser to `/<name>/`.
        let query = request
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        return Response::builder()
            .status(StatusCode::PERMANENT_REDIRECT)
            .header(http::header::LOCATION, format!("/{name}/{query}"))
            .body(full(""))
            .expect("a valid redirect");
    }
    strip_prefix(&mut request, &service);
    proxy(service, request).await
}

/// The one place every request is checked before it reaches the admin API
/// or a service. The host listens on loopback by default; owner login (a
/// later issue) replaces this pass-through.
#[allow(clippy::result_large_err)]
fn authorize(_request: &Request<Incoming>) -> Result<(), Response<BoxBody>> {
    Ok(())
}
