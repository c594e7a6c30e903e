//! The admin API's routes about registries: offers and installs from
//! them, search, the publisher keys pinned for packages, and the owner's
//! registry logins. The host does the pulling, so `locker install
//! REGISTRY/…` with `--url` (and the dashboard) works on a host elsewhere.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::reply::{ApiError, ApiResult, internal, ok, read_json, route_of};
use crate::api::{
    ADMIN_PREFIX, AcceptedOffer, LoginRequest, OfferRequest, TrustRequest, UpgradeOfferRequest,
};
use crate::http::body::json_response;
use crate::supervisor::Supervisor;

/// `POST /_locker/api/registry/search`.
#[derive(Deserialize)]
struct SearchRequest {
    registry: String,
    #[serde(default, rename = "type")]
    service_type: Option<String>,
    #[serde(default)]
    insecure: bool,
}

/// Whether this module serves `rest` (the path after the prefix).
pub fn serves(rest: &str) -> bool {
    rest.starts_with("/registry") || rest.starts_with("/trust")
}

/// A registry's refusal is the request's fault unless the host itself failed.
fn refused(error: anyhow::Error) -> ApiError {
    ApiError::from_anyhow(error, StatusCode::UNPROCESSABLE_ENTITY)
}

async fn body<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
    what: &str,
) -> Result<T, ApiError> {
    read_json(request, what)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, format!("no {what} given")))
}

pub async fn dispatch(supervisor: &Arc<Supervisor>, request: Request<Incoming>) -> ApiResult {
    let (method, path) = route_of(&request);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (&method, segments.as_slice()) {
        (&Method::POST, ["registry", "offer"]) => {
            let wanted: OfferRequest = body(request, "offer request").await?;
            ok(&supervisor.offer(&wanted).await.map_err(refused)?)
        }
        (&Method::POST, ["registry", "install"]) => {
            let accepted: AcceptedOffer = body(request, "accepted offer").await?;
            let status = supervisor.install_offer(&accepted).await.map_err(refused)?;
            Ok(json_response(StatusCode::CREATED, &status))
        }
        (&Method::POST, ["registry", "upgrade-offer", name]) => {
            let wanted: UpgradeOfferRequest = body(request, "upgrade offer request").await?;
            ok(&supervisor
                .upgrade_offer(name, &wanted)
                .await
                .map_err(refused)?)
        }
        (&Method::POST, ["registry", "upgrade", name]) => {
            let accepted: AcceptedOffer = body(request, "accepted offer").await?;
            ok(&supervisor
                .upgrade_to_offer(name, &accepted)
                .await
                .map_err(refused)?)
        }
        (&Method::POST, ["registry", "search"]) => {
            let wanted: SearchRequest = body(request, "search").await?;
            let (found, refused_packages) = supervisor
                .distribution()
                .search(
                    &wanted.registry,
                    wanted.service_type.as_deref(),
                    wanted.insecure,
                )
                .await
                .map_err(refused)?;
            ok(&serde_json::json!({ "found": found, "refused": refused_packages }))
        }
        (&Method::GET, ["registry", "logins"]) => {
            ok(&supervisor.logins.list().map_err(internal)?)
        }
        (&Method::PUT, ["registry", "logins", registry]) => {
            let login: LoginRequest = body(request, "login").await?;
            supervisor
                .logins
                .save(registry, &login.username, &login.password)
                .map_err(internal)?;
            ok(&serde_json::json!({ "registry": registry, "username": login.username }))
        }
        (&Method::DELETE, ["registry", "logins", registry]) => {
            if !supervisor.logins.remove(registry).map_err(internal)? {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no login is kept for {registry}"),
                ));
            }
            ok(&serde_json::json!({ "removed": registry }))
        }
        (&Method::GET, ["trust"]) => ok(&supervisor.trust.list().map_err(internal)?),
        (&Method::PUT, ["trust", package]) => {
            let wanted: TrustRequest = read_json(request, "trust request")
                .await?
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "no key given"))?;
            supervisor
                .trust
                .pin(
                    package,
                    &wanted.public_key,
                    &wanted.fingerprint,
                    &wanted.source,
                )
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::CONFLICT))?;
            ok(&supervisor.trust.pinned(package).map_err(internal)?)
        }
        (&Method::DELETE, ["trust", package]) => {
            if !supervisor.trust.remove(package).map_err(internal)? {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no publisher is trusted for {package:?}"),
                ));
            }
            ok(&serde_json::json!({ "removed": package }))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no admin route {method} {ADMIN_PREFIX}{path}"),
        )),
    }
}
