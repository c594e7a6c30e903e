//! The admin API's routes about the owner: API tokens, browser sessions,
//! passkeys, the password, and a new set-up link (`locker owner reset`).

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::reply::{ApiError, ApiResult, internal, ok, read_json};
use crate::api::{ADMIN_PREFIX, NewToken, TokenRequest};
use crate::clock::now_millis;
use crate::http::body::json_response;
use crate::http::front::Front;
use crate::http::gate;
use crate::owner::{Scope, SetupError, passkeys};

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
        (&Method::GET, ["sessions"]) => {
            let current = gate::owner_session(owner, &front.origins, &request);
            let mut sessions = owner.sessions.list(&owner.store);
            for view in &mut sessions {
                view.current = current.as_ref().is_some_and(|c| c.id == view.id);
            }
            ok(&sessions)
        }
        (&Method::POST, ["owner", "password"]) => change_password(front, request).await,
        (&Method::GET, ["passkeys"]) => ok(&passkeys::views(&owner.store).map_err(internal)?),
        (&Method::POST, ["passkeys"]) => {
            #[derive(serde::Deserialize)]
            struct Wanted {
                name: String,
            }
            let party = relying_party(front, authority)?;
            let wanted: Wanted = read_json(request, "passkey request")
                .await?
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "name the passkey"))?;
            let (ceremony, options) = owner
                .passkeys
                .start_registration(&party, &owner.store, &wanted.name)
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::BAD_REQUEST))?;
            ok(&serde_json::json!({ "ceremony": ceremony, "options": options }))
        }
        (&Method::POST, ["passkeys", "register", ceremony]) => {
            let party = relying_party(front, authority)?;
            let ceremony = ceremony.to_string();
            let answer = read_json(request, "authenticator's answer")
                .await?
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "no answer given"))?;
            let view = owner
                .passkeys
                .finish_registration(&party, &owner.store, &ceremony, &answer)
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::BAD_REQUEST))?;
            tracing::info!(id = %view.id, "registered a passkey");
            Ok(json_response(StatusCode::CREATED, &view))
        }
        (&Method::DELETE, ["passkeys", id]) => {
            if !owner.remove_passkey(id).map_err(internal)? {
                return Err(not_found("passkey", id));
            }
            tracing::info!(%id, "removed a passkey");
            ok(&serde_json::json!({ "removed": id }))
        }
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

/// The relying party of passkeys: the locker's origin as this request named it.
pub fn relying_party(front: &Front, authority: &str) -> Result<webauthn_rs::Webauthn, ApiError> {
    passkeys::relying_party(
        front.origins.domain(),
        &front.origins.locker_origin(authority),
    )
    .map_err(|e| ApiError::from_anyhow(e, StatusCode::BAD_REQUEST))
}

/// `POST /owner/password`: from a logged-in browser, knowing the current one.
async fn change_password(front: &Front, request: Request<Incoming>) -> ApiResult {
    #[derive(serde::Deserialize)]
    struct Change {
        current: String,
        new: String,
    }
    let Some(session) = gate::owner_session(&front.owner, &front.origins, &request) else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the password is changed from a logged-in browser",
        ));
    };
    let change: Change = read_json(request, "password change")
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "no password change given"))?;
    let owner = front.owner.clone();
    let changed = tokio::task::spawn_blocking(move || {
        owner.change_password(&session, &change.current, &change.new)
    })
    .await
    .map_err(|e| internal(e.into()))?
    .map_err(internal)?;
    match changed {
        Ok(()) => {
            tracing::info!("the owner changed the password");
            ok(&serde_json::json!({ "changed": true }))
        }
        Err(problem @ SetupError::WrongPassword) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, problem.to_string()))
        }
        Err(problem) => Err(ApiError::new(StatusCode::BAD_REQUEST, problem.to_string())),
    }
}
