//! The HTTP front door: one listener for the locker's origin and every
//! service's origin, routed by host (`origins`).
//!
//! ```text
//! <domain>/                       the dashboard
//! <domain>/_locker/...            login, set-up, tickets (`pages`)
//! <domain>/_locker/api/...        the admin API (`admin`)
//! <domain>/<service>/<rest>       308 to <service>.<domain>/<rest>
//! <service>.<domain>/<path>       the service, behind the gate (`gate`)
//! anything else                   421
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::body::{BoxBody, after_discarding, error_response, full};
use super::certificates::ACME_TLS_ALPN;
use super::connections::{Activity, ConnectionLimits, OpenConnections};
use super::front::Front;
use super::gate::{self, ServiceVerdict, TokenMemo};
use super::origins::{Destination, host_header};
use super::pages;
use super::proxy::{self, service_error_response};
use crate::api::ADMIN_PREFIX;
use crate::package::manifest::validate_service_name;
use crate::runtime::ServiceError;
use crate::runtime::bodies::Guarded;

/// Serves until `shutdown` resolves, then lets open connections finish.
pub async fn serve(
    front: Arc<Front>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Each connection's own watchdog bounds heads and idle time, over HTTP/1
    // and HTTP/2 alike (hyper's timer covers only HTTP/1 heads, and costs a
    // timer per request).
    builder.http1().header_read_timeout(None);
    let open = OpenConnections::new(limits);
    // Tells every connection to finish its requests and close.
    let stopping = tokio_util::sync::CancellationToken::new();
    let connections = tokio_util::task::TaskTracker::new();
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
        let connection = Connection {
            front: front.clone(),
            visitor: Arc::new(Visitor {
                client: peer.ip(),
                tokens: TokenMemo::default(),
            }),
            activity: Activity::new(),
            head_timeout: open.limits.head_timeout,
            stopping: stopping.clone(),
        };
        let (builder, tls) = (builder.clone(), tls.clone());
        connections.spawn(async move {
            let _slot = slot;
            match tls {
                None => connection.serve(&builder, TokioIo::new(stream)).await,
                // The handshake shares the head's bound.
                Some(tls) => {
                    match tokio::time::timeout(connection.head_timeout, tls.accept(stream)).await {
                        // An ACME server checking a challenge: the handshake was all.
                        Ok(Ok(stream))
                            if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {}
                        Ok(Ok(stream)) => connection.serve(&builder, TokioIo::new(stream)).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => {}
                    }
                }
            }
        });
    }
    stopping.cancel();
    connections.close();
    tracing::info!("shutting down: waiting for open requests");
    tokio::select! {
        () = connections.wait() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
            tracing::warn!("some connections did not finish in time");
        }
    }
    Ok(())
}

/// One accepted connection and what watches over it.
struct Connection {
    front: Arc<Front>,
    visitor: Arc<Visitor>,
    activity: Arc<Activity>,
    head_timeout: Duration,
    stopping: tokio_util::sync::CancellationToken,
}

impl Connection {
    /// Serves HTTP/1 or HTTP/2 (told apart by the first bytes) until the
    /// client closes, the host stops, or the connection has had no request
    /// in flight for the head timeout. Then it is asked to close (finishing
    /// what it has begun, which for a half-sent head or preface is nothing),
    /// and dropped if it is still idle one more bound later.
    async fn serve<I>(self, builder: &auto::Builder<TokioExecutor>, io: I)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (front, visitor, activity) = (self.front, self.visitor, self.activity.clone());
        let service = hyper::service::service_fn(move |request| {
            let (front, visitor) = (front.clone(), visitor.clone());
            let in_flight = activity.begin();
            async move {
                let response = route(&front, &visitor, request).await;
                Ok::<_, Infallible>(response.map(|body| Guarded::new(body, in_flight)))
            }
        });
        let connection = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);
        let mut closing = false;
        let ended = loop {
            tokio::select! {
                ended = connection.as_mut() => break ended,
                () = self.stopping.cancelled(), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = self.activity.idle_for(self.head_timeout), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = self.activity.idle_for(self.head_timeout * 2), if closing => break Ok(()),
            }
        };
        if let Err(e) = ended {
            tracing::debug!("connection ended: {e}");
        }
    }
}

/// One client connection, as the gate sees it.
struct Visitor {
    client: IpAddr,
    tokens: TokenMemo,
}

async fn route(
    front: &Arc<Front>,
    visitor: &Visitor,
    request: Request<Incoming>,
) -> Response<BoxBody> {
    // Kept as the header value (a reference-counted slice of what hyper
    // read), so routing copies no strings.
    let Some(host) = host_header(&request) else {
        return error_response(StatusCode::BAD_REQUEST, "the request names no host");
    };
    let Ok(authority) = host.to_str() else {
        return error_response(StatusCode::BAD_REQUEST, "the request's host is not text");
    };
    match front.origins.destination(authority) {
        Destination::Locker => locker_origin(front, request, authority, visitor).await,
        Destination::Service(name) => {
            service_origin(front, request, name, authority, visitor).await
        }
        Destination::Foreign => error_response(
            StatusCode::MISDIRECTED_REQUEST,
            &format!(
                "this locker answers for {} and its services' subdomains, not {authority:?}",
                front.origins.domain()
            ),
        ),
    }
}

/// The locker's own origin: its pages, the admin API, and redirects from
/// the old `/<service>/…` form to the service's origin.
async fn locker_origin(
    front: &Arc<Front>,
    request: Request<Incoming>,
    authority: &str,
    visitor: &Visitor,
) -> Response<BoxBody> {
    let path = request.uri().path();
    if path
        .strip_prefix(ADMIN_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    {
        let checked = gate::admin(
            &front.owner,
            &front.origins,
            &request,
            authority,
            &visitor.tokens,
        );
        if let Err(refused) = checked {
            return after_discarding(request, refused).await;
        }
        return super::admin::handle(front, request, authority).await;
    }
    if path == METRICS_PATH {
        let checked = gate::metrics(
            &front.owner,
            &front.origins,
            &request,
            authority,
            &visitor.tokens,
        );
        return match checked {
            Ok(()) => metrics_response(front),
            Err(refused) => after_discarding(request, refused).await,
        };
    }
    let first = path.strip_prefix('/').unwrap_or_default();
    let (name, rest) = first.split_once('/').unwrap_or((first, ""));
    if path.starts_with("/_locker/") || path == "/" {
        return match pages::locker_page(front, request, authority, visitor.client).await {
            Some(response) => response,
            None => error_response(StatusCode::NOT_FOUND, "no such page of the locker"),
        };
    }
    if validate_service_name(name).is_err() {
        return error_response(StatusCode::NOT_FOUND, &format!("nothing at {path}"));
    }
    // Bookmarks and scripts of the one-origin days: the service now lives
    // on its own origin, and sees the same path below its name.
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .header(
            http::header::LOCATION,
            format!(
                "{}/{rest}{query}",
                front.origins.service_origin(name, authority)
            ),
        )
        .body(full(""))
        .expect("a valid redirect")
}

/// Where the host's metrics are read (Prometheus text format).
pub const METRICS_PATH: &str = "/_locker/metrics";

fn metrics_response(front: &Front) -> Response<BoxBody> {
    let in_use = front
        .supervisor
        .statuses()
        .into_iter()
        .map(|status| (status.name, status.in_flight));
    match front.supervisor.metrics.render(in_use) {
        Some(text) => Response::builder()
            .header(http::header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(full(text))
            .expect("a valid response"),
        None => error_response(
            StatusCode::NOT_FOUND,
            "this host keeps no metrics (it was started with --metrics false)",
        ),
    }
}

/// A service's own origin: behind the gate, then proxied to the guest.
async fn service_origin(
    front: &Arc<Front>,
    mut request: Request<Incoming>,
    name: &str,
    authority: &str,
    visitor: &Visitor,
) -> Response<BoxBody> {
    // Whether a service is installed is the owner's to know: a stranger
    // gets the same answer for any name.
    let service = front.supervisor.service(name);
    let path = request.uri().path();
    if path.starts_with("/_locker/") {
        return if path == "/_locker/enter" {
            pages::enter(front, &request, name, authority)
        } else {
            error_response(
                StatusCode::NOT_FOUND,
                "paths under /_locker/ belong to the host",
            )
        };
    }
    let public = service
        .as_ref()
        .is_some_and(|service| service.installed().manifest.is_public(path));
    if public && !front.public_routes.admit(visitor.client) {
        return error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests to public routes",
        );
    }
    let caller = match gate::service(
        &front.owner,
        &front.origins,
        &request,
        name,
        authority,
        public,
        &visitor.tokens,
    ) {
        ServiceVerdict::Pass(caller) => caller,
        ServiceVerdict::Ticket => return pages::ticket_round(front, &request, name, authority),
        ServiceVerdict::Refuse(response) => return after_discarding(request, response).await,
    };
    let Some(service) = service else {
        return service_error_response(&ServiceError::NotFound(name.to_string()));
    };
    gate::hand_to_guest(&mut request, &front.origins, caller);
    let mut response = proxy::route(front, service, request).await;
    gate::keep_cookies_home(&mut response);
    gate::fence_in(&mut response);
    response
}
