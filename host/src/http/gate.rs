//! Who is calling, at each door, and what reaches a guest.
//!
//! - **Admin API** (the locker's origin): an API token whose scope opens
//!   it, or the owner's session cookie on a request that came from the
//!   locker's own origin and, if it changes anything, is not a "simple"
//!   request a form on another site could send (a JSON body, or the
//!   `x-locker-request` header).
//! - **A service's origin**: a token of scope `admin` or `service:NAME`, or
//!   the grant cookie that origin got through a ticket, with state changes
//!   only from that same origin (sibling services are "same-site" to a
//!   browser, so `SameSite` alone does not keep them apart). A browser
//!   without either is sent round the ticket redirect; a script gets 401.
//!   A manifest's public routes are open to anyone.
//!
//! Before a guest sees a request, the host takes out its own cookies and
//! `Authorization`, and says who is calling in [`CALLER_HEADER`], replacing
//! any copy the client sent.

use std::sync::{Arc, Mutex};

use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};

use super::body::{BoxBody, error_response, full};
use super::front::Front;
use super::origins::Origins;
use crate::owner::{Door, Owner, Session, TokenEntry};

/// The one header that tells a guest who is calling: `owner`, or
/// `anonymous` on a public route.
pub use crate::api::CALLER_HEADER;
use crate::api::CHAIN_HEADER;

/// The header a browser script adds to change state through the admin API
/// with the owner's session (a form on another site cannot send it).
pub const REQUEST_HEADER: &str = "x-locker-request";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Owner,
    Anonymous,
}

impl Caller {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Caller::Owner => "owner",
            Caller::Anonymous => "anonymous",
        })
    }
}

/// The host's cookie names; `__Host-` under TLS, which no sibling origin
/// can set for the parent domain.
pub fn session_cookie(origins: &Origins) -> &'static str {
    if origins.secure {
        "__Host-locker-session"
    } else {
        "locker-session"
    }
}

pub fn grant_cookie(origins: &Origins) -> &'static str {
    if origins.secure {
        "__Host-locker-grant"
    } else {
        "locker-grant"
    }
}

/// A `Set-Cookie` value for one of the host's cookies, on this origin only.
pub fn set_cookie(origins: &Origins, name: &str, value: &str, max_age_secs: Option<u64>) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if origins.secure {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age_secs {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    cookie
}

/// The values of every cookie named `name` the request carries. A sibling
/// origin may have planted one for the parent domain, so each is checked,
/// never just the first.
fn cookie_values<'a, B>(request: &'a Request<B>, name: &'a str) -> impl Iterator<Item = &'a str> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

fn bearer<B>(request: &Request<B>) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// The owner's live session, if the request carries its cookie.
pub fn owner_session<B>(
    owner: &Owner,
    origins: &Origins,
    request: &Request<B>,
) -> Option<Arc<Session>> {
    cookie_values(request, session_cookie(origins))
        .find_map(|secret| owner.sessions.check(secret, &owner.store))
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn refused(status: StatusCode, message: &str) -> Response<BoxBody> {
    let mut response = error_response(status, message);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"locker\""),
        );
    }
    response
}

/// The last token one connection showed, once checked: a client that sends
/// the same `Authorization` with every request (a script, a benchmark)
/// costs one hash per connection, not one per request. A revocation
/// anywhere makes every connection check again.
#[derive(Default)]
pub struct TokenMemo(Mutex<Option<(HeaderValue, u64, Arc<TokenEntry>)>>);

impl TokenMemo {
    fn recall(&self, header: &HeaderValue, generation: u64) -> Option<Arc<TokenEntry>> {
        match &*self.0.lock().unwrap() {
            Some((seen, at, entry)) if at == &generation && seen == header => Some(entry.clone()),
            _ => None,
        }
    }

    fn remember(&self, header: &HeaderValue, generation: u64, entry: &Arc<TokenEntry>) {
        *self.0.lock().unwrap() = Some((header.clone(), generation, entry.clone()));
    }
}

/// Checks a token against the door; `None` if the request carries none.
fn token_verdict<B>(
    owner: &Owner,
    request: &Request<B>,
    door: Door<'_>,
    memo: &TokenMemo,
) -> Option<Result<(), Response<BoxBody>>> {
    let header = request.headers().get(AUTHORIZATION)?;
    let token = bearer(request)?;
    let generation = owner.tokens.generation();
    let entry = match memo.recall(header, generation) {
        Some(entry) => Some(entry).filter(|entry| entry.live()),
        None => {
            let entry = owner.check_token(token);
            if let Some(entry) = &entry {
                memo.remember(header, generation, entry);
            }
            entry
        }
    };
    Some(match entry.as_deref().map(|entry| &entry.scope) {
        Some(scope) if scope.opens(door) => Ok(()),
        Some(scope) => Err(refused(
            StatusCode::FORBIDDEN,
            &format!("a token of scope `{scope}` does not allow this"),
        )),
        None => Err(refused(
            StatusCode::UNAUTHORIZED,
            "this token is not valid: unknown, revoked or expired",
        )),
    })
}

/// Lets a request into the admin API, or says why not.
#[allow(clippy::result_large_err)]
pub fn admin<B>(
    owner: &Owner,
    origins: &Origins,
    request: &Request<B>,
    authority: &str,
    memo: &TokenMemo,
) -> Result<(), Response<BoxBody>> {
    let door = match published_topic(request) {
        Some(topic) => Door::Publish(topic),
        None if is_archive_route(request.uri().path()) => Door::Archive,
        None if changes_state(request.method()) => Door::AdminChange,
        None => Door::AdminRead,
    };
    if let Some(verdict) = token_verdict(owner, request, door, memo) {
        return verdict;
    }
    if owner_session(owner, origins, request).is_none() {
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "log in, or send an API token as `Authorization: Bearer`",
        ));
    }
    if !origins.same_origin(request, authority) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the admin API takes the owner's session only from the locker's own origin",
        ));
    }
    let changes = matches!(door, Door::AdminChange | Door::Publish(_))
        || (door == Door::Archive && changes_state(request.method()));
    if changes && !non_simple(request) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "a change through the owner's session needs a JSON body or the x-locker-request header",
        ));
    }
    Ok(())
}

/// Lets a request read the metrics, or says why not: a token of scope
/// `metrics`, `read` or `admin`, or the owner's session on the locker's origin.
#[allow(clippy::result_large_err)]
pub fn metrics<B>(
    owner: &Owner,
    origins: &Origins,
    request: &Request<B>,
    authority: &str,
    memo: &TokenMemo,
) -> Result<(), Response<BoxBody>> {
    if let Some(verdict) = token_verdict(owner, request, Door::Metrics, memo) {
        return verdict;
    }
    if owner_session(owner, origins, request).is_none() {
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "the metrics need a token of scope `metrics` (or `read`) as `Authorization: Bearer`",
        ));
    }
    if !origins.same_origin(request, authority) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "the metrics take the owner's session only from the locker's own origin",
        ));
    }
    Ok(())
}

/// Whether `path` is an admin route that hands out or takes in the owner's
/// data whole (backups, a service's export or import): only the owner's
/// session or an `admin` token opens it, never a `read` token.
pub fn is_archive_route(path: &str) -> bool {
    let Some(path) = path.strip_prefix(crate::api::ADMIN_PREFIX) else {
        return false;
    };
    let path = path.trim_end_matches('/');
    path == "/backups"
        || path.starts_with("/backups/")
        || (path.starts_with("/services/")
            && (path.ends_with("/export") || path.ends_with("/import")))
}

/// The topic of `POST /_locker/api/publish/TOPIC`, the door a
/// `publish:TOPIC` token opens.
fn published_topic<B>(request: &Request<B>) -> Option<&str> {
    if request.method() != http::Method::POST {
        return None;
    }
    let topic = request
        .uri()
        .path()
        .strip_prefix(crate::api::ADMIN_PREFIX)?
        .strip_prefix("/publish/")?;
    (!topic.is_empty()).then_some(topic)
}

/// A request a plain HTML form could not have sent.
fn non_simple<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    headers.contains_key(REQUEST_HEADER)
        || headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
}

/// What the gate of a service's origin decided.
pub enum ServiceVerdict {
    /// Hand the request to the guest as this caller.
    Pass(Caller),
    /// A browser without a grant: send it round the ticket redirect.
    Ticket,
    Refuse(Response<BoxBody>),
}

/// Lets a request into `service`'s origin, or says why not.
pub fn service<B>(
    owner: &Owner,
    origins: &Origins,
    request: &Request<B>,
    service: &str,
    authority: &str,
    public: bool,
    memo: &TokenMemo,
) -> ServiceVerdict {
    if public {
        return ServiceVerdict::Pass(Caller::Anonymous);
    }
    if let Some(verdict) = token_verdict(owner, request, Door::Service(service), memo) {
        return match verdict {
            Ok(()) => ServiceVerdict::Pass(Caller::Owner),
            Err(response) => ServiceVerdict::Refuse(response),
        };
    }
    let granted = cookie_values(request, grant_cookie(origins))
        .any(|grant| owner.sessions.check_grant(grant, service, &owner.store));
    if granted {
        if changes_state(request.method()) && !origins.same_origin(request, authority) {
            return ServiceVerdict::Refuse(refused(
                StatusCode::FORBIDDEN,
                &format!("{service} takes changes only from its own origin"),
            ));
        }
        return ServiceVerdict::Pass(Caller::Owner);
    }
    if wants_page(request) {
        ServiceVerdict::Ticket
    } else {
        ServiceVerdict::Refuse(refused(
            StatusCode::UNAUTHORIZED,
            &format!("{service} needs the owner: log in, or send an API token"),
        ))
    }
}

/// A browser navigating to a page (as opposed to a script or a tool).
pub fn wants_page<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    matches!(*request.method(), Method::GET | Method::HEAD)
        && (headers
            .get("sec-fetch-mode")
            .is_some_and(|mode| mode == "navigate")
            || headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("text/html")))
}

/// Takes out what is the host's (its cookies, `Authorization`) and says who
/// is calling.
pub fn hand_to_guest<B>(request: &mut Request<B>, origins: &Origins, caller: Caller) {
    let headers = request.headers_mut();
    headers.remove(AUTHORIZATION);
    headers.remove(CHAIN_HEADER);
    if headers.contains_key(COOKIE) {
        let ours = [session_cookie(origins), grant_cookie(origins)];
        let kept: Vec<String> = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|header| header.split(';'))
            .map(str::trim)
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                !pair.is_empty() && !ours.contains(&name)
            })
            .map(str::to_string)
            .collect();
        headers.remove(COOKIE);
        if !kept.is_empty()
            && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
        {
            headers.insert(COOKIE, value);
        }
    }
    headers.insert(CALLER_HEADER, caller.header());
}

/// Keeps the cookies a service sets to its own origin: a `Domain`
/// attribute (which would share them with every sibling) is dropped.
pub fn keep_cookies_home(response: &mut Response<BoxBody>) {
    if !response.headers().contains_key(SET_COOKIE) {
        return;
    }
    let rewritten: Vec<HeaderValue> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| {
            let text = value.to_str().ok()?;
            let kept: Vec<&str> = text
                .split(';')
                .filter(|attribute| {
                    !attribute
                        .trim()
                        .get(..6)
                        .is_some_and(|name| name.eq_ignore_ascii_case("domain"))
                })
                .collect();
            HeaderValue::from_str(&kept.join(";")).ok()
        })
        .collect();
    let headers = response.headers_mut();
    headers.remove(SET_COOKIE);
    for value in rewritten {
        headers.append(SET_COOKIE, value);
    }
}

/// Keeps a service's pages and answers to its own origin in the browser:
/// no other page may frame it (a sibling's frame could lure the owner's
/// clicks into it, with its own `Origin`), and none may load its answers as
/// images, scripts or styles (siblings are one site to the browser, so such
/// loads would land in the sibling's process). The framing rule is a policy
/// of its own beside any the service sends, which can only narrow it; a
/// service that means its files to be embedded elsewhere says so with its
/// own `Cross-Origin-Resource-Policy`.
pub fn fence_in(response: &mut Response<BoxBody>) {
    let headers = response.headers_mut();
    headers.append(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'self'"),
    );
    if !headers.contains_key("cross-origin-resource-policy") {
        headers.insert(
            "cross-origin-resource-policy",
            HeaderValue::from_static("same-origin"),
        );
    }
}

/// A redirect (303: the next request is a GET).
pub fn see_other(location: &str) -> Response<BoxBody> {
    Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(http::header::LOCATION, location)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(full(""))
        .expect("a valid redirect")
}

/// A path on this origin to go on to: `next` if it is a path on this origin, else `/`. Browsers drop tabs and
/// newlines from a `Location` and read `\\` as `/`, so `/\t/evil.example` or
/// `/\\evil.example` would leave the origin: any control character or
/// backslash makes it `/`.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.chars().any(|c| c == '\\' || c.is_control()) =>
        {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

/// `response`, carrying the cookie of a new session for `client`.
pub fn with_new_session(
    front: &Front,
    client: &str,
    mut response: Response<BoxBody>,
) -> Response<BoxBody> {
    match front.owner.sessions.start(&front.owner.store, client) {
        Ok(secret) => {
            let cookie = set_cookie(
                &front.origins,
                session_cookie(&front.origins),
                &secret,
                None,
            );
            response.headers_mut().insert(
                http::header::SET_COOKIE,
                cookie.parse().expect("a valid cookie"),
            );
            response
        }
        Err(error) => {
            tracing::error!("cannot start a session: {error:#}");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the host's log says what",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_gets_its_own_cookies_and_one_caller_header() {
        let origins = Origins::new("locker.localhost", false).unwrap();
        let mut request = Request::builder()
            .header(COOKIE, "theme=dark; locker-grant=secret")
            .header(COOKIE, "locker-session=other; lang=en")
            .header(AUTHORIZATION, "Bearer locker_x_y")
            .header(CALLER_HEADER, "owner")
            .body(())
            .unwrap();
        hand_to_guest(&mut request, &origins, Caller::Anonymous);
        let headers = request.headers();
        assert_eq!(headers[COOKIE], "theme=dark; lang=en");
        assert!(!headers.contains_key(AUTHORIZATION));
        assert_eq!(headers.get_all(CALLER_HEADER).iter().count(), 1);
        assert_eq!(headers[CALLER_HEADER], "anonymous");
    }

    #[test]
    fn a_service_cookie_stays_on_its_origin() {
        let mut response = Response::builder()
            .header(SET_COOKIE, "a=1; Domain=locker.localhost; Path=/")
            .header(SET_COOKIE, "b=2; HttpOnly")
            .body(full(""))
            .unwrap();
        keep_cookies_home(&mut response);
        let cookies: Vec<_> = response.headers().get_all(SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"]);
    }
}
