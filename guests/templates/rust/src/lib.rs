//! {{ name }}: a Locker {{ kind }}.
//!
//! - `GET /` greets with its `greeting` setting;
//! - `GET /call/SERVICE/PATH` asks another service (its manifest's `calls`
//!   must name it);
//! - `POST /publish/TOPIC` publishes `{}` on TOPIC and says what the host
//!   answered (an undeclared topic is refused).
{%- if events %}
//! - each `{{ name }}/ping` event is kept as `seen/ID.json` in its folder
//!   (`GET /seen` lists them) and answered with a `{{ name }}/seen` event;
//!   a payload `{"fail": true}` fails the handler, which the host retries
//!   and then keeps as a dead letter.
{%- endif %}
{%- if jobs %}
//! - the `tick` job publishes `{{ name }}/ticked`.
{%- endif %}

use locker_sdk::wasip2::exports::http::incoming_handler::Guest as HttpHandler;
use locker_sdk::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use locker_sdk::{Request, call, config, events, respond};
{%- if events or jobs %}
use serde_json::json;
{%- endif %}

struct Service;

impl HttpHandler for Service {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let path = request.path.clone();
        if path == "/" {
            let greeting = config::get_or("greeting", "Hello");
            respond(out, 200, format!("{greeting} from {{ name }}\n"));
        } else if path == "/seen" {
            let mut names: Vec<String> = std::fs::read_dir("seen")
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            respond(out, 200, names.join("\n"));
        } else if let Some(rest) = path.strip_prefix("/call/") {
            let (service, path) = rest.split_once('/').unwrap_or((rest, ""));
            match call(service, &format!("/{path}")) {
                Ok((status, body)) => respond(out, status, body),
                Err(error) => respond(out, 502, format!("{service} cannot be asked: {error}\n")),
            }
        } else if let (Method::Post, Some(topic)) = (&request.method, path.strip_prefix("/publish/")) {
            match events::publish(topic, "{}") {
                Ok(id) => respond(out, 200, format!("published {id}\n")),
                Err(error) => respond(out, 400, format!("{error:?}\n")),
            }
        } else {
            respond(out, 404, "no such page\n");
        }
    }
}

locker_sdk::wasip2::http::proxy::export!(Service with_types_in locker_sdk::wasip2);
{%- if events %}

impl locker_sdk::event_handler::Guest for Service {
    fn handle(event: events::Event) -> Result<(), String> {
        let payload: serde_json::Value =
            serde_json::from_str(&event.payload).map_err(|e| e.to_string())?;
        if payload["fail"] == true {
            return Err(format!("event {} asked to fail", event.id));
        }
        // Its folder is its current directory: plain files, kept.
        std::fs::create_dir_all("seen").map_err(|e| e.to_string())?;
        std::fs::write(format!("seen/{}.json", event.id), payload.to_string())
            .map_err(|e| e.to_string())?;
        let seen = json!({ "id": event.id, "payload": payload });
        events::publish("{{ name }}/seen", &seen.to_string()).map_err(|e| e.to_string())?;
        Ok(())
    }
}

locker_sdk::export_event_handler!(Service);
{%- endif %}
{%- if jobs %}

impl locker_sdk::job_handler::Guest for Service {
    fn run(job: locker_sdk::job_handler::Job) -> Result<(), String> {
        let ticked = json!({ "job": job.name, "scheduled": job.scheduled });
        events::publish("{{ name }}/ticked", &ticked.to_string()).map_err(|e| e.to_string())?;
        Ok(())
    }
}

locker_sdk::export_job_handler!(Service);
{%- endif %}
