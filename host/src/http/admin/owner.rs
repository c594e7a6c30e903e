//! The admin API's routes about the owner: API tokens, browser sessions,
//! and a new set-up link (`locker owner reset`).

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::reply::{ApiError, ApiResult, internal, ok, read_json};
use crate::api::{ADMIN_PREFIX, NewToken, TokenRequest};
use crate::clock::now_millis;
use crate::http::body::json_response;
use crate::http::front::Front;
use crate::owner::Scope;

pub async fn dispatch(front: &Front, request: Request<Incoming>, authority: &str) -> ApiResult {
    let (method, path) = super::reply::route_of(&request);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let owner = &front.owner;
    let not_found =
        |what: &str, id: &str| ApiError::new(StatusCode::NOT_FOUND, format!("no {what} {id:?}"));
    match (&method, segments.as_slice()) {
        (&Method::GET, ["tokens"]) => ok(&owner.token_views().map_err(internal)?),
        (&Method::POST, ["tokens"]) => {
            let wanted: TokenRequest =
                read_json(request, "token request").await?.ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "a token request needs a JSON body with `scope`",
                    )
                })?;
            let scope: Scope = wanted
                .scope
                .parse()
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
            let expires_at = wanted.expires_in_secs.map(|secs| {
                now_millis().saturating_add(secs.saturating_mul(1000).min(i64::MAX as u64) as i64)
            });
            let (token, view) = owner
                .create_token(&scope, &wanted.label, expires_at)
                .map_err(internal)?;
            tracing::info!(id = %view.id, %scope, "made an API token");
            Ok(json_response(
                StatusCode::CREATED,
                &NewToken { token, view },
            ))
        }
        (&Method::DELETE, ["tokens", id]) => {
            if !owner.revoke_token(id).map_err(internal)? {
                return Err(not_found("token", id));
            }
            tracing::info!(%id, "revoked an API token");
            ok(&serde_json::json!({ "revoked": id }))
        }
        (&Method::GET, ["sessions"]) => ok(&owner.sessions.list(&owner.store)),
        (&Method::DELETE, ["sessions", id]) => {
            if !owner.sessions.revoke(id, &owner.store) {
                return Err(not_found("session", id));
            }
            ok(&serde_json::json!({ "revoked": id }))
        }
        (&Method::POST, ["owner", "setup-link"]) => {
            let code = owner.new_setup_code().map_err(internal)?;
            ok(&serde_json::json!({
                "link": format!("{}/_locker/setup?code={code}", front.origins.locker_origin(authority)),
            }))
        }
        (&Method::POST, ["owner", "login-link"]) => {
            let code = owner.login_links.issue();
            ok(&serde_json::json!({
                "link": format!("{}/_locker/login-link?code={code}", front.origins.locker_origin(authority)),
            }))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no admin route {method} {ADMIN_PREFIX}{path}"),
        )),
    }
}
