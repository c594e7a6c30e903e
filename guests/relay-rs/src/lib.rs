//! A collection that calls other services of the locker with plain
//! outgoing `wasi:http` to `http://NAME.locker/`:
//! - `GET /call/NAME/REST` calls `/REST` of the service NAME;
//! - `GET /by-type?type=TYPE` finds a service providing TYPE (discovery)
//!   and calls its `/`;
//! - `GET /` says who called it.
//!
//! Every call claims to come from the owner (`x-locker-caller: owner`): the
//! host must replace that with the truth.

use locker_sdk::wasip2::exports::http::incoming_handler::Guest;
use locker_sdk::wasip2::http::types::{IncomingRequest, ResponseOutparam};
use locker_sdk::{Request, discovery, fetch_with, respond};

struct Relay;

/// Calls `path` of `service`, and answers with its status and body.
fn call(out: ResponseOutparam, service: &str, path: &str) {
    let url = format!("http://{service}.locker{path}");
    match fetch_with(&url, &[("x-locker-caller", "owner")]) {
        Ok((status, body)) => respond(
            out,
            200,
            format!(
                "{service} answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        ),
        Err(error) => respond(out, 502, format!("calling {service}: {error}")),
    }
}

impl Guest for Relay {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let path = request.path.clone();
        if let Some(rest) = path.strip_prefix("/call/") {
            let (service, rest) = rest.split_once('/').unwrap_or((rest, ""));
            return call(out, service, &format!("/{rest}"));
        }
        if path == "/by-type" {
            let wanted = request.query_param("type").unwrap_or_default();
            let me = discovery::self_name();
            let found = discovery::find(wanted)
                .into_iter()
                .find(|service| service.name != me);
            return match found {
                Some(service) => call(out, &service.name, "/"),
                None => respond(out, 404, format!("no service provides {wanted}")),
            };
        }
        let caller = request.header("x-locker-caller").unwrap_or_default();
        respond(
            out,
            200,
            format!("relay {}, called by {caller}\n", discovery::self_name()),
        );
    }
}

locker_sdk::wasip2::http::proxy::export!(Relay with_types_in locker_sdk::wasip2);
