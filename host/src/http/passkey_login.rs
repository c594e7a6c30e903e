//! Signing in with a passkey instead of the password, from the login page
//! (its script, `host/dashboard/login.js`, runs the browser's side):
//!
//! ```text
//! POST /_locker/passkey/start    → {"ceremony", "options"}: a challenge for navigator.credentials.get
//! POST /_locker/passkey/finish   {"ceremony", "credential", "next"} → {"next"} and a session cookie
//! ```
//!
//! Anyone may knock, so both are same-origin only and count against the
//! same login throttle as a password.

use std::net::IpAddr;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use webauthn_rs::prelude::PublicKeyCredential;

use super::body::{BoxBody, error_response, json_response};
use super::front::Front;
use super::gate::{local_path, with_new_session};
use crate::owner::passkeys;

/// The largest answer an authenticator sends.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

fn refused_unless_allowed<B>(
    front: &Front,
    request: &Request<B>,
    authority: &str,
    client: IpAddr,
) -> Option<Response<BoxBody>> {
    if !front.origins.same_origin(request, authority) {
        return Some(error_response(
            StatusCode::FORBIDDEN,
            "sign in from the locker's own page",
        ));
    }
    if let Err(wait) = front.owner.throttle.attempt(client) {
        return Some(error_response(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many login attempts; try again in {} seconds",
                wait.as_secs() + 1
            ),
        ));
    }
    None
}

#[allow(clippy::result_large_err)]
fn party(front: &Front, authority: &str) -> Result<webauthn_rs::Webauthn, Response<BoxBody>> {
    passkeys::relying_party(
        front.origins.domain(),
        &front.origins.locker_origin(authority),
    )
    .map_err(|e| error_response(StatusCode::BAD_REQUEST, &format!("{e:#}")))
}

pub fn start(
    front: &Front,
    request: &Request<Incoming>,
    authority: &str,
    client: IpAddr,
) -> Response<BoxBody> {
    if let Some(refused) = refused_unless_allowed(front, request, authority, client) {
        return refused;
    }
    let party = match party(front, authority) {
        Ok(party) => party,
        Err(response) => return response,
    };
    match front
        .owner
        .passkeys
        .start_sign_in(&party, &front.owner.store)
    {
        Ok(Some((ceremony, options))) => json_response(
            StatusCode::OK,
            &serde_json::json!({ "ceremony": ceremony, "options": options }),
        ),
        Ok(None) => error_response(
            StatusCode::NOT_FOUND,
            "no passkey is registered yet: log in with the password, then add one under Account",
        ),
        Err(error) => error_response(StatusCode::SERVICE_UNAVAILABLE, &format!("{error:#}")),
    }
}

pub async fn finish(
    front: &Front,
    request: Request<Incoming>,
    authority: &str,
    client: IpAddr,
) -> Response<BoxBody> {
    #[derive(serde::Deserialize)]
    struct Answer {
        ceremony: String,
        credential: PublicKeyCredential,
        #[serde(default)]
        next: Option<String>,
    }
    if let Some(refused) = refused_unless_allowed(front, &request, authority, client) {
        return refused;
    }
    let party = match party(front, authority) {
        Ok(party) => party,
        Err(response) => return response,
    };
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        Limited::new(request.into_body(), MAX_ANSWER_BYTES).collect(),
    )
    .await;
    let Ok(Ok(body)) = read else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "the passkey's answer was too large or too slow",
        );
    };
    let answer: Answer = match serde_json::from_slice(&body.to_bytes()) {
        Ok(answer) => answer,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("not a passkey's answer: {e}"),
            );
        }
    };
    let owner = &front.owner;
    match owner
        .passkeys
        .finish_sign_in(&party, &owner.store, &answer.ceremony, &answer.credential)
    {
        Ok(true) => {
            tracing::info!(%client, "signed in with a passkey");
            let next = local_path(answer.next.as_deref());
            with_new_session(
                front,
                &client.to_string(),
                json_response(StatusCode::OK, &serde_json::json!({ "next": next })),
            )
        }
        Ok(false) => {
            tracing::info!(%client, "a passkey sign-in was refused");
            error_response(
                StatusCode::UNAUTHORIZED,
                "that passkey did not sign in: it is not one of this locker's, or the sign-in expired",
            )
        }
        Err(error) => {
            tracing::error!("{error:#}");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the host's log says what",
            )
        }
    }
}
