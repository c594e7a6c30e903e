//! The host's own pages, on the locker's origin: set-up, login, logout,
//! the ticket that carries the owner's session to a service's origin (and
//! the door on that origin that takes it), and the dashboard on `/`.
//!
//! ```text
//! GET  /                                  the dashboard (owner only)
//! GET  /_locker/setup?code=C              choose the password (one-time link)
//! POST /_locker/setup
//! GET  /_locker/login[?next=/path]
//! POST /_locker/login
//! POST /_locker/logout
//! GET  /_locker/login-link?code=C[&next=/path]  a one-time link the CLI made
//! POST /_locker/passkey/start             a passkey sign-in's challenge (`passkey_login`)
//! POST /_locker/passkey/finish            its answer: a session
//! GET  /_locker/ticket?service=S&path=P   owner only: redirect into S with a ticket
//! GET  /_locker/enter?ticket=T            on S's origin: trade the ticket for a grant
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::body::{BoxBody, full};
use super::front::Front;
use super::gate::{
    self, grant_cookie, local_path, see_other, session_cookie, set_cookie, with_new_session,
};
use crate::owner::SetupError;
use crate::runtime::ServiceError;

/// The largest form the pages take.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// How long a form may take to arrive.
const FORM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A page of the locker's origin, or `None` if `path` is not one.
pub async fn locker_page(
    front: &Arc<Front>,
    request: Request<Incoming>,
    authority: &str,
    client: IpAddr,
) -> Option<Response<BoxBody>> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    Some(match (method, path.as_str()) {
        (Method::GET, "/") => dashboard(front, &request),
        (Method::GET, asset) if asset.starts_with(super::dashboard::ASSETS_PREFIX) => {
            super::dashboard::asset(&request)
        }
        (Method::POST, "/_locker/passkey/start") => {
            super::passkey_login::start(front, &request, authority, client)
        }
        (Method::POST, "/_locker/passkey/finish") => {
            super::passkey_login::finish(front, request, authority, client).await
        }
        (Method::GET, "/_locker/setup") => setup_form(front, &query(&request)),
        (Method::POST, "/_locker/setup") => setup(front, request, authority).await,
        (Method::GET, "/_locker/login") => login_form(front, &query(&request), None),
        (Method::POST, "/_locker/login") => login(front, request, authority, client).await,
        (Method::POST, "/_locker/logout") => logout(front, &request, authority),
        (Method::GET, "/_locker/login-link") => login_link(front, &query(&request), client),
        (Method::GET, "/_locker/ticket") => ticket(front, &request, authority),
        _ => return None,
    })
}

/// `GET /_locker/enter?ticket=T` on a service's origin.
pub fn enter(
    front: &Front,
    request: &Request<Incoming>,
    service: &str,
    authority: &str,
) -> Response<BoxBody> {
    let ticket = query(request).remove("ticket").unwrap_or_default();
    let owner = &front.owner;
    match owner.sessions.redeem_ticket(&ticket, service, &owner.store) {
        Some((grant, path)) => {
            let mut response = see_other(&path);
            let cookie = set_cookie(&front.origins, grant_cookie(&front.origins), &grant, None);
            response.headers_mut().insert(
                http::header::SET_COOKIE,
                cookie.parse().expect("a valid cookie"),
            );
            response
        }
        None => page(
            StatusCode::FORBIDDEN,
            "Link expired",
            &format!(
                "<p>This link has expired or was used already.</p>\
                 <p><a href=\"{}/\">Back to your locker</a></p>",
                escape(&front.origins.locker_origin(authority))
            ),
        ),
    }
}

/// Where a browser without a grant for `service` goes: the ticket door of
/// the locker's origin, which comes back with one.
pub fn ticket_round(
    front: &Front,
    request: &Request<Incoming>,
    service: &str,
    authority: &str,
) -> Response<BoxBody> {
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("service", service)
        .append_pair("path", path)
        .finish();
    see_other(&format!(
        "{}/_locker/ticket?{query}",
        front.origins.locker_origin(authority)
    ))
}

fn ticket(front: &Front, request: &Request<Incoming>, authority: &str) -> Response<BoxBody> {
    let Some(session) = gate::owner_session(&front.owner, &front.origins, request) else {
        return to_login(request);
    };
    let query = query(request);
    let service = query.get("service").map(String::as_str).unwrap_or_default();
    let path = local_path(query.get("path").map(String::as_str));
    if front.supervisor.service(service).is_none() {
        return page(
            StatusCode::NOT_FOUND,
            "No such service",
            &format!(
                "<p>No service named <b>{}</b> is installed.</p>",
                escape(service)
            ),
        );
    }
    let ticket = front.owner.sessions.issue_ticket(&session, service, &path);
    see_other(&format!(
        "{}/_locker/enter?ticket={ticket}",
        front.origins.service_origin(service, authority)
    ))
}

fn to_login(request: &Request<Incoming>) -> Response<BoxBody> {
    let next = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    see_other(&format!("/_locker/login?{query}"))
}

fn dashboard(front: &Front, request: &Request<Incoming>) -> Response<BoxBody> {
    if gate::owner_session(&front.owner, &front.origins, request).is_none() {
        return to_login(request);
    }
    super::dashboard::index()
}

fn login_form(
    front: &Front,
    query: &HashMap<String, String>,
    problem: Option<&str>,
) -> Response<BoxBody> {
    if !front.owner.has_password() {
        return page(
            StatusCode::OK,
            "Not set up yet",
            "<p>Choose the owner's password through the set-up link that \
             <code>locker serve</code> printed, or make a new one with \
             <code>locker owner reset</code>.</p>",
        );
    }
    let next = local_path(query.get("next").map(String::as_str));
    let status = if problem.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page(
        status,
        "Log in",
        &format!(
            "{}<form method=\"post\" action=\"/_locker/login\">\
             <input type=\"text\" name=\"username\" value=\"owner\" autocomplete=\"username\" hidden>\
             <input type=\"hidden\" name=\"next\" value=\"{}\">\
             <label>Password <input type=\"password\" name=\"password\" autofocus \
             autocomplete=\"current-password\" required></label>\
             <button>Log in</button></form>{}",
            problem
                .map(|p| format!("<p class=\"problem\">{}</p>", escape(p)))
                .unwrap_or_default(),
            escape(&next),
            passkey_button(front),
        ),
    )
}

/// "Sign in with a passkey", when the owner has one (`login.js` runs it).
fn passkey_button(front: &Front) -> &'static str {
    if front
        .owner
        .store
        .passkeys()
        .is_ok_and(|passkeys| !passkeys.is_empty())
    {
        "<p class=\"or\">or</p><button type=\"button\" id=\"passkey\">Sign in with a passkey</button>\
         <p id=\"passkey-problem\" class=\"problem\" role=\"alert\" hidden></p>\
         <script type=\"module\" src=\"/_locker/assets/login.js\"></script>"
    } else {
        ""
    }
}

async fn login(
    front: &Arc<Front>,
    request: Request<Incoming>,
    authority: &str,
    client: IpAddr,
) -> Response<BoxBody> {
    if !front.origins.same_origin(&request, authority) {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p>Log in from the locker's own page.</p>",
        );
    }
    if let Err(wait) = front.owner.throttle.attempt(client) {
        let mut response = page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &format!(
                "<p>Too many login attempts. Try again in {} seconds.</p>",
                wait.as_secs() + 1
            ),
        );
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, (wait.as_secs() + 1).into());
        return response;
    }
    let form = match read_form(request).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let password = form.get("password").cloned().unwrap_or_default();
    let owner = front.owner.clone();
    let checked = tokio::task::spawn_blocking(move || owner.check_password(&password)).await;
    match checked {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            tracing::info!(%client, "a login failed: wrong password");
            return login_form(front, &form, Some("Wrong password."));
        }
        Ok(Err(error)) => return server_error(&error),
        Err(error) => return server_error(&anyhow::anyhow!("{error}")),
    }
    start_session(
        front,
        &client.to_string(),
        &local_path(form.get("next").map(String::as_str)),
    )
}

/// A one-time login link (`locker owner login-link`, `locker dev`): the
/// code is the credential, so it works once, for minutes.
fn login_link(front: &Front, query: &HashMap<String, String>, client: IpAddr) -> Response<BoxBody> {
    if let Err(wait) = front.owner.throttle.attempt(client) {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &format!("<p>Try again in {} seconds.</p>", wait.as_secs() + 1),
        );
    }
    let code = query.get("code").map(String::as_str).unwrap_or_default();
    if !front.owner.login_links.redeem(code) {
        tracing::info!(%client, "a login link was refused");
        return page(
            StatusCode::FORBIDDEN,
            "Link expired",
            "<p>This login link has expired or was used already. Run \
             <code>locker owner login-link</code> for a new one, or log in.</p>",
        );
    }
    tracing::info!(%client, "logged in with a login link");
    start_session(
        front,
        &client.to_string(),
        &local_path(query.get("next").map(String::as_str)),
    )
}

fn start_session(front: &Front, client: &str, next: &str) -> Response<BoxBody> {
    with_new_session(front, client, see_other(next))
}

fn logout(front: &Front, request: &Request<Incoming>, authority: &str) -> Response<BoxBody> {
    if !front.origins.same_origin(request, authority) {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p>Log out from the locker's own page.</p>",
        );
    }
    if let Some(session) = gate::owner_session(&front.owner, &front.origins, request) {
        front.owner.sessions.end(&session, &front.owner.store);
    }
    let mut response = see_other("/_locker/login");
    let cookie = set_cookie(&front.origins, session_cookie(&front.origins), "", Some(0));
    response.headers_mut().insert(
        http::header::SET_COOKIE,
        cookie.parse().expect("a valid cookie"),
    );
    response
}

fn setup_form(front: &Front, query: &HashMap<String, String>) -> Response<BoxBody> {
    let code = query.get("code").cloned().unwrap_or_default();
    match front.owner.store.setup_code_valid(
        &crate::owner::secret::hash(&code),
        crate::clock::now_millis(),
    ) {
        Ok(true) => page(
            StatusCode::OK,
            "Choose your password",
            &setup_fields(&code, None),
        ),
        Ok(false) => page(
            StatusCode::FORBIDDEN,
            "Link expired",
            &format!("<p>{}</p>", SetupError::BadCode),
        ),
        Err(error) => server_error(&error),
    }
}

fn setup_fields(code: &str, problem: Option<&str>) -> String {
    format!(
        "{}<p>This password opens your locker: its dashboard, every service and \
         the admin API.</p><form method=\"post\" action=\"/_locker/setup\">\
         <input type=\"text\" name=\"username\" value=\"owner\" autocomplete=\"username\" hidden>\
         <input type=\"hidden\" name=\"code\" value=\"{}\">\
         <label>Password <input type=\"password\" name=\"password\" autofocus \
         autocomplete=\"new-password\" required></label>\
         <label>Again <input type=\"password\" name=\"confirm\" autocomplete=\"new-password\" required></label>\
         <button>Set password</button></form>",
        problem
            .map(|p| format!("<p class=\"problem\">{}</p>", escape(p)))
            .unwrap_or_default(),
        escape(code),
    )
}

async fn setup(
    front: &Arc<Front>,
    request: Request<Incoming>,
    authority: &str,
) -> Response<BoxBody> {
    if !front.origins.same_origin(&request, authority) {
        return page(
            StatusCode::FORBIDDEN,
            "Refused",
            "<p>Use the set-up page itself.</p>",
        );
    }
    let client = String::from("set-up link");
    let form = match read_form(request).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let code = form.get("code").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    if form.get("confirm") != Some(&password) {
        return page(
            StatusCode::BAD_REQUEST,
            "Choose your password",
            &setup_fields(&code, Some("The two passwords differ.")),
        );
    }
    let owner = front.owner.clone();
    let chosen = {
        let code = code.clone();
        tokio::task::spawn_blocking(move || owner.choose_password(&code, &password)).await
    };
    match chosen {
        Ok(Ok(Ok(()))) => {
            tracing::info!("the owner chose a password");
            start_session(front, &client, "/")
        }
        Ok(Ok(Err(problem @ SetupError::TooShort))) => page(
            StatusCode::BAD_REQUEST,
            "Choose your password",
            &setup_fields(&code, Some(&problem.to_string())),
        ),
        Ok(Ok(Err(problem))) => page(
            StatusCode::FORBIDDEN,
            "Link expired",
            &format!("<p>{}</p>", escape(&problem.to_string())),
        ),
        Ok(Err(error)) => server_error(&error),
        Err(error) => server_error(&anyhow::anyhow!("{error}")),
    }
}

fn query(request: &Request<Incoming>) -> HashMap<String, String> {
    form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

#[allow(clippy::result_large_err)]
async fn read_form(
    request: Request<Incoming>,
) -> Result<HashMap<String, String>, Response<BoxBody>> {
    // Anyone may post the login form: one sent a byte at a time must not
    // hold its connection for longer than a request head may take.
    let collected = tokio::time::timeout(
        FORM_TIMEOUT,
        Limited::new(request.into_body(), MAX_FORM_BYTES).collect(),
    )
    .await;
    let bytes = match collected {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) => {
            return Err(page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Refused",
                "<p>That form is too large.</p>",
            ));
        }
        Err(_) => {
            return Err(page(
                StatusCode::REQUEST_TIMEOUT,
                "Refused",
                "<p>That form took too long to arrive.</p>",
            ));
        }
    };
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

fn server_error(error: &anyhow::Error) -> Response<BoxBody> {
    tracing::error!("{error:#}");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "<p>The host's log says what.</p>",
    )
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str = "[hidden]{display:none}body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;\
padding:0 1rem;color:#222}h1{font-size:1.6rem;font-weight:600}label{display:block;margin:1rem 0}\
input{display:block;width:100%;padding:.5rem;font:inherit;box-sizing:border-box;margin-top:.25rem}\
button{font:inherit;padding:.5rem 1.25rem;margin-top:.5rem;cursor:pointer}\
.problem{color:#b00020}.services{list-style:none;padding:0}.services li{padding:.75rem 0;\
border-bottom:1px solid #ddd}.services a{font-weight:600;font-size:1.1rem}small{color:#666;margin-left:.5rem}";

/// Why a service did not answer, as a page for the owner's browser; the
/// setting a service waits for is spelled out with the command that sets it.
pub fn service_problem(error: &ServiceError) -> Response<BoxBody> {
    if let ServiceError::Unconfigured {
        service,
        key,
        description,
        secret,
    } = error
    {
        let value = if *secret {
            " <small>(then type the secret: it is never put on the command line)</small>"
        } else {
            ""
        };
        let body = format!(
            "<p>It needs its setting <b>{key}</b>: {description}.</p>\
             <p>Run this where the locker runs, then reload this page:</p>\
             <pre><code>locker config set {service} {key}{placeholder}</code></pre>{value}",
            key = escape(key),
            description = escape(description),
            service = escape(service),
            placeholder = if *secret { "" } else { " VALUE" },
        );
        return page(
            error.status(),
            &format!("{service} is not set up yet"),
            &body,
        );
    }
    let title = match error {
        ServiceError::Stopped(_) => "Stopped",
        _ => "The service could not answer",
    };
    page(
        error.status(),
        title,
        &format!("<p class=\"problem\">{}</p>", escape(&error.to_string())),
    )
}

/// A page of the host: no inline scripts, no framing.
fn page(status: StatusCode, title: &str, body: &str) -> Response<BoxBody> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · Locker</title><style>{STYLE}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>",
        title = escape(title),
    );
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(
            "content-security-policy",
            "default-src 'none'; script-src 'self'; connect-src 'self'; \
             style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        )
        .header("x-frame-options", "DENY")
        // Not `no-referrer`: Chromium then sends `Origin: null` with the
        // page's own forms, which the origin checks refuse.
        .header("referrer-policy", "same-origin")
        .body(full(html))
        .expect("a valid page")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/notes?a=1")), "/notes?a=1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/x\\..\\\\evil.example",
            "notes",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
