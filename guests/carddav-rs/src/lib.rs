//! carddav: a Locker connector that syncs an address book down from a
//! CardDAV server and keeps one JSON file per contact in its folder.
//!
//! Settings: `server` (the address book's URL, also the only host it may
//! reach), `user`, `password` (a secret), `batch` (contacts per request).
//!
//! - the `sync` job (every quarter hour) and `POST /sync` (sync now) ask
//!   the server what changed since the last sync token (RFC 6578), fetch
//!   only those vCards, and announce each change as `contact/changed` or
//!   `contact/deleted` (see `guests/CONTACTS.md`);
//! - `GET /contacts`, `GET /contacts/<uid>`: the contacts it keeps;
//! - `GET /status`: how many, and how the last sync went;
//! - `GET /`: its page for the owner.

mod card;
mod dav;
mod folder;
mod page;
mod sync;

use locker_sdk::wasip2::exports::http::incoming_handler::Guest as HttpHandler;
use locker_sdk::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use locker_sdk::{Request, job_handler, respond_with};
use percent_encoding::percent_decode_str;
use serde_json::json;

struct Connector;

impl HttpHandler for Connector {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        match (&request.method, request.path.as_str()) {
            (Method::Get, "/") => {
                respond_with(out, 200, "text/html; charset=utf-8", page::render())
            }
            (Method::Get, "/status") => respond_json(out, 200, &status()),
            (Method::Get, "/contacts") => respond_json(out, 200, &json!(folder::all_contacts())),
            (Method::Get, path) if path.starts_with("/contacts/") => {
                let uid = percent_decode_str(&path["/contacts/".len()..]).decode_utf8_lossy();
                match folder::read_contact(&uid) {
                    Some(card) => respond_json(out, 200, &json!(card)),
                    None => {
                        respond_json(out, 404, &json!({ "error": format!("no contact {uid:?}") }))
                    }
                }
            }
            (Method::Post, "/sync") => match sync::run(&now()) {
                Ok(report) => respond_json(out, 200, &json!(report)),
                Err(error) => respond_json(out, 502, &json!({ "error": error })),
            },
            (_, "/" | "/status" | "/contacts" | "/sync") => {
                respond_json(out, 405, &json!({ "error": "method not allowed" }))
            }
            _ => respond_json(out, 404, &json!({ "error": "no such page" })),
        }
    }
}

locker_sdk::wasip2::http::proxy::export!(Connector with_types_in locker_sdk::wasip2);

impl job_handler::Guest for Connector {
    fn run(job: job_handler::Job) -> Result<(), String> {
        sync::run(&job.actual).map(|_| ())
    }
}

locker_sdk::export_job_handler!(Connector);

fn status() -> serde_json::Value {
    let state = folder::load_state().unwrap_or_default();
    json!({
        "contacts": folder::count_contacts(),
        "server": locker_sdk::config::get("server").ok().flatten(),
        "synced": state.sync_token.is_some(),
        "last_sync": state.last_sync,
    })
}

fn respond_json(out: ResponseOutparam, status: u16, value: &serde_json::Value) {
    respond_with(out, status, "application/json", value.to_string());
}

/// Now, in RFC 3339 (UTC, whole seconds).
pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
