//! A connector that reads its settings the standard way, through
//! `wasi:config/store` (the interface Spin and wasmCloud components import),
//! and nothing of Locker's: `GET /config/KEY` answers one value,
//! `GET /config` every key it can read, `GET /sync` fetches `/` of the
//! server its `server` setting names (with its `token`), `GET /fetch?url=`
//! any URL (the host lets it reach only that server).

use locker_sdk::wasip2::exports::http::incoming_handler::Guest;
use locker_sdk::wasip2::http::types::{IncomingRequest, ResponseOutparam};
use locker_sdk::{Request, fetch, respond};

mod config {
    wit_bindgen::generate!({
        path: "../../wit/deps/config",
        world: "wasi:config/imports",
    });
}

use config::wasi::config::store;

struct ConfigReader;

impl Guest for ConfigReader {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let path = request.path.clone();
        match path.as_str() {
            "/config" => match store::get_all() {
                Ok(all) => {
                    let keys: Vec<String> = all.into_iter().map(|(key, _)| key).collect();
                    respond(out, 200, keys.join("\n"));
                }
                Err(error) => respond(out, 500, format!("{error:?}")),
            },
            "/sync" => {
                let server = store::get("server").ok().flatten().unwrap_or_default();
                let url = if server.contains("://") {
                    server
                } else {
                    format!("http://{server}/")
                };
                let token = store::get("token").ok().flatten();
                match fetch(&url) {
                    Ok((status, body)) => respond(
                        out,
                        200,
                        format!(
                            "{status} {} (token {})",
                            String::from_utf8_lossy(&body),
                            if token.is_some() { "set" } else { "unset" }
                        ),
                    ),
                    Err(error) => respond(out, 502, error),
                }
            }
            "/fetch" => match fetch(request.query_param("url").unwrap_or_default()) {
                Ok((status, body)) => respond(out, status, body),
                Err(error) => respond(out, 502, error),
            },
            "/" => {
                let greeting = store::get("greeting").ok().flatten().unwrap_or_default();
                respond(out, 200, format!("{greeting} from config-reader\n"));
            }
            other => match other.strip_prefix("/config/") {
                Some(key) => match store::get(key) {
                    Ok(Some(value)) => respond(out, 200, value),
                    Ok(None) => respond(out, 404, format!("{key} is not set")),
                    Err(error) => respond(out, 500, format!("{error:?}")),
                },
                None => respond(out, 404, "no such page"),
            },
        }
    }
}

locker_sdk::wasip2::http::proxy::export!(ConfigReader with_types_in locker_sdk::wasip2);
