//! A Locker service that publishes events and finds other services.
//!
//! - `POST /publish?topic=T` publishes the request body as the payload;
//! - `POST /publish-many?topic=T&count=N` publishes `{"n": 0..N}` in order;
//! - `GET /whoami` and `GET /find?pattern=P` use discovery.

use locker_sdk::events::PublishError;
use locker_sdk::wasip2::exports::http::incoming_handler::Guest as HttpGuest;
use locker_sdk::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use locker_sdk::{Request, discovery, events, respond};

struct Publisher;

impl HttpGuest for Publisher {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let topic = request.query_param("topic").unwrap_or_default().to_string();
        match (&request.method, request.path.as_str()) {
            (Method::Post, "/publish") => {
                let payload = String::from_utf8_lossy(&request.body()).into_owned();
                match events::publish(&topic, &payload) {
                    Ok(id) => respond(out, 200, id),
                    Err(error) => respond(out, 400, describe(&error)),
                }
            }
            (Method::Post, "/publish-many") => {
                let count: u32 = request
                    .query_param("count")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                let mut last = String::new();
                for n in 0..count {
                    match events::publish(&topic, &format!("{{\"n\":{n}}}")) {
                        Ok(id) => last = id,
                        Err(error) => return respond(out, 400, describe(&error)),
                    }
                }
                respond(out, 200, last);
            }
            (Method::Get, "/whoami") => respond(out, 200, discovery::self_name()),
            (Method::Get, "/find") => {
                let pattern = request.query_param("pattern").unwrap_or("*");
                let found: Vec<serde_json::Value> = discovery::find(pattern)
                    .into_iter()
                    .map(|s| serde_json::json!({"name": s.name, "kind": s.kind, "version": s.version, "provides": s.provides}))
                    .collect();
                respond(out, 200, serde_json::to_string(&found).unwrap());
            }
            _ => respond(out, 404, "no such route\n"),
        }
    }
}

fn describe(error: &PublishError) -> String {
    match error {
        PublishError::UndeclaredTopic(topic) => format!("undeclared topic: {topic}"),
        PublishError::PayloadTooLarge(limit) => format!("payload too large (limit {limit} bytes)"),
        PublishError::InvalidJson(message) => format!("invalid JSON: {message}"),
        PublishError::InvalidTopic(topic) => format!("invalid topic: {topic}"),
        PublishError::Storage(message) => format!("storage: {message}"),
    }
}

locker_sdk::wasip2::http::proxy::export!(Publisher with_types_in locker_sdk::wasip2);
