//! A Locker service that records the events it receives.
//!
//! Every delivered event is appended to `events.jsonl` in its working
//! directory (`GET /events` returns it). Payloads can ask it to misbehave:
//! `{"fail_times": N}` fails the first N attempts at that event, and
//! `{"always_fail": true}` fails until `POST /fix` is called, and
//! `{"sleep_ms": N}` takes that long. Every attempt at such an event is
//! appended to `attempts.jsonl` (`GET /attempts`) as it starts.

use locker_sdk::event_handler;
use locker_sdk::events::Event;
use locker_sdk::wasip2::clocks::monotonic_clock;
use locker_sdk::wasip2::exports::http::incoming_handler::Guest as HttpGuest;
use locker_sdk::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use locker_sdk::{Request, append_line, respond};

struct Subscriber;

impl event_handler::Guest for Subscriber {
    fn handle(event: Event) -> Result<(), String> {
        let line = serde_json::json!({
            "id": event.id, "topic": event.topic, "source": event.source,
            "time": event.time, "payload": event.payload,
        })
        .to_string();
        let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap_or_default();
        let fail_times = payload["fail_times"].as_u64();
        let always_fail = payload["always_fail"].as_bool() == Some(true);
        let sleep_ms = payload["sleep_ms"].as_u64();
        if fail_times.is_some() || always_fail || sleep_ms.is_some() {
            append_line("attempts.jsonl", &line)?;
            if let Some(sleep_ms) = sleep_ms {
                monotonic_clock::subscribe_duration(sleep_ms * 1_000_000).block();
            }
            let attempts = std::fs::read_to_string("attempts.jsonl")
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(&format!("\"id\":\"{}\"", event.id)))
                .count() as u64;
            if let Some(n) = fail_times
                && attempts <= n
            {
                return Err(format!(
                    "failing on purpose (attempt {attempts} of {n} failures)"
                ));
            }
            if always_fail && std::fs::metadata("fixed").is_err() {
                return Err("failing until fixed".into());
            }
        }
        append_line("events.jsonl", &line)
    }
}

impl HttpGuest for Subscriber {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        match (&request.method, request.path.as_str()) {
            (Method::Get, "/events") => {
                respond(out, 200, std::fs::read("events.jsonl").unwrap_or_default())
            }
            (Method::Get, "/attempts") => respond(
                out,
                200,
                std::fs::read("attempts.jsonl").unwrap_or_default(),
            ),
            (Method::Post, "/fix") => match std::fs::write("fixed", "") {
                Ok(()) => respond(out, 200, "fixed\n"),
                Err(e) => respond(out, 500, format!("cannot fix: {e}\n")),
            },
            _ => respond(out, 404, "no such route\n"),
        }
    }
}

locker_sdk::wasip2::http::proxy::export!(Subscriber with_types_in locker_sdk::wasip2);
locker_sdk::export_event_handler!(Subscriber);
