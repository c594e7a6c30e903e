//! The admin API: JSON over HTTP under `/_locker/api`, used by the CLI.
//!
//! ```text
//! GET    /_locker/api/health
//! GET    /_locker/api/services                      every service and its state
//! GET    /_locker/api/services/{name}
//! GET    /_locker/api/services/{name}/log[?from=N]  its log from byte N (header x-log-next)
//! POST   /_locker/api/services                      install: multipart `manifest` + `component`
//! PUT    /_locker/api/services/{name}               upgrade, keeping its data: the same parts
//! DELETE /_locker/api/services/{name}[?keep_data=true]
//! GET    /_locker/api/services/{name}/config       its settings (never a secret's value)
//! PUT    /_locker/api/services/{name}/config/{key} {"value": ..}: set one
//! DELETE /_locker/api/services/{name}/config/{key} unset one
//! POST   /_locker/api/services/{name}/start
//! POST   /_locker/api/services/{name}/stop
//! GET    /_locker/api/events[?topic=P&limit=N]         recent events, newest first
//! GET    /_locker/api/events/stats                     published, unhandled, pending, dead
//! POST   /_locker/api/publish/{topic}                  the body (JSON) as an event from `owner`;
//!                                                      a `publish:TOPIC` token may do only this
//! GET    /_locker/api/types                            data types, who defines them, their schemas
//! GET    /_locker/api/events/stream[?topic=P]          live events (Server-Sent Events)
//! GET    /_locker/api/dead-letters
//! POST   /_locker/api/dead-letters/replay              {"service": .., "event": ..} (both optional)
//! GET    /_locker/api/jobs[?service=S]                 every job, its next time and last run
//! POST   /_locker/api/jobs/{service}/{name}/run        run a job now; answers with the run
//! GET    /_locker/api/tokens                           API tokens (never the tokens themselves)
//! POST   /_locker/api/tokens                           {"scope", "label", "expires_in_secs"}: make one
//! DELETE /_locker/api/tokens/{id}                      revoke one
//! GET    /_locker/api/sessions                         the owner's browser sessions (`current`: this one)
//! DELETE /_locker/api/sessions/{id}                    end one
//! POST   /_locker/api/owner/setup-link                 a new one-time link to choose the password
//! POST   /_locker/api/owner/login-link                 a one-time link that logs a browser in
//! POST   /_locker/api/owner/password                   {"current", "new"}: change it; other sessions end
//! GET    /_locker/api/passkeys                         the owner's passkeys
//! POST   /_locker/api/passkeys                         {"name"}: start registering one (WebAuthn options)
//! POST   /_locker/api/passkeys/register/{ceremony}     the authenticator's answer: keep the passkey
//! DELETE /_locker/api/passkeys/{id}                    remove one
//! POST   /_locker/api/services/{name}/rollback         back to the version before the last upgrade ({"data": true}: its folder too)
//! GET    /_locker/api/trust                            publisher keys pinned for packages
//! PUT    /_locker/api/trust/{package}                  pin one
//! DELETE /_locker/api/trust/{package}                  forget it
//! POST   /_locker/api/registry/offer                   {"reference", ..}: who signed it, what it may reach
//! POST   /_locker/api/registry/install                 an accepted offer: pulled, checked, installed
//! POST   /_locker/api/registry/upgrade-offer/{name}    {"to"}: the newest (or that) version's offer
//! POST   /_locker/api/registry/upgrade/{name}          an accepted offer: upgrade to it
//! POST   /_locker/api/registry/search                  {"registry", "type"}: signed packages there
//! GET    /_locker/api/registry/logins                  the registries the host logs in to (no passwords)
//! PUT    /_locker/api/registry/logins/{registry}       {"username", "password"}: keep one
//! DELETE /_locker/api/registry/logins/{registry}       forget it
//! GET    /_locker/api/backups                          the schedule, the running one, the last, the kept
//! POST   /_locker/api/backups                          {"passphrase" | "no_secrets"}: make one in the folder
//! POST   /_locker/api/backups/stream                   the same, streamed back as the body
//! GET    /_locker/api/backups/{name}                   download a kept one
//! DELETE /_locker/api/backups/{name}
//! POST   /_locker/api/services/{name}/export           its folder as an archive, as the body
//! PUT    /_locker/api/services/{name}/import           body: an export; the service must be stopped
//! GET    /_locker/api/cluster                          the hosts sharing the locker, who owns what
//! ```
//!
//! `gate` lets a request in first: a token whose scope allows it, or the
//! owner's session from the locker's own origin.
//!
//! Errors are `{"error": "..."}` with a status that says whose fault it is.

mod backups;
mod owner;
mod registry;
mod reply;
mod services;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::api::ADMIN_PREFIX;
use crate::http::body::{BoxBody, error_response};
use crate::http::front::Front;
use reply::{ApiError, ApiResult, internal, ok};

pub async fn handle(
    front: &Front,
    request: Request<Incoming>,
    authority: &str,
) -> Response<BoxBody> {
    let owner_route = request
        .uri()
        .path()
        .strip_prefix(ADMIN_PREFIX)
        .is_some_and(|rest| {
            ["/tokens", "/sessions", "/owner", "/passkeys"]
                .iter()
                .any(|p| rest.starts_with(p))
        });
    let registry_route = request
        .uri()
        .path()
        .strip_prefix(ADMIN_PREFIX)
        .is_some_and(registry::serves);
    let backup_route = crate::http::gate::is_archive_route(request.uri().path());
    let cluster_route = request.uri().path() == format!("{ADMIN_PREFIX}/cluster");
    let handled = if cluster_route {
        cluster_view(front).await
    } else if owner_route {
        owner::dispatch(front, request, authority).await
    } else if backup_route {
        backups::dispatch(&front.supervisor, request).await
    } else if registry_route {
        registry::dispatch(&front.supervisor, request).await
    } else {
        services::dispatch(&front.supervisor, request).await
    };
    match handled {
        Ok(response) => response,
        Err(error) => error_response(error.status, &error.message),
    }
}

/// `GET /cluster`: what this host sees of the cluster.
async fn cluster_view(front: &Front) -> ApiResult {
    let Some(cluster) = &front.cluster else {
        return Err(ApiError::new(
            http::StatusCode::NOT_FOUND,
            "this host serves alone (start it with --cluster to share the locker)",
        ));
    };
    ok(&cluster.view().await.map_err(internal)?)
}
