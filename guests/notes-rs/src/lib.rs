//! A Locker connector-style service that keeps plain files in its working
//! directory, with plain `std::fs` and relative paths.
//!
//! Routes (paths are taken from the `path` query parameter, as given):
//! - `PUT` (or `POST`) `/file?path=P`: writes the request body to P, creating folders;
//! - `GET /file?path=P`: reads P;
//! - `GET /list`: the names in the working directory;
//! - `GET /env`: the environment variables the service sees;
//! - `GET /connect?addr=A`: tries a TCP connection to A;
//! - `GET /fetch?url=U`: fetches U over outbound HTTP and answers with it.
//!
//! Failures answer with the OS error, so the host's sandbox can be observed.

use std::io::ErrorKind;

use locker_sdk::wasip2::exports::http::incoming_handler::Guest;
use locker_sdk::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};
use locker_sdk::{Request, respond};

struct Notes;

impl Guest for Notes {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let path = request.query_param("path").unwrap_or_default().to_string();
        match (&request.method, request.path.as_str()) {
            (Method::Put | Method::Post, "/file") => {
                let body = request.body();
                let written = std::path::Path::new(&path)
                    .parent()
                    .filter(|parent| !parent.as_os_str().is_empty())
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&path, &body));
                match written {
                    Ok(()) => respond(out, 201, format!("wrote {} bytes to {path}\n", body.len())),
                    Err(e) => respond(out, status_for(&e), format!("cannot write {path}: {e}\n")),
                }
            }
            (Method::Get, "/file") => match std::fs::read(&path) {
                Ok(bytes) => respond(out, 200, bytes),
                Err(e) => respond(out, status_for(&e), format!("cannot read {path}: {e}\n")),
            },
            (Method::Get, "/list") => match std::fs::read_dir(".") {
                Ok(entries) => {
                    let mut names: Vec<String> = entries
                        .filter_map(|entry| entry.ok())
                        .map(|entry| entry.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    respond(out, 200, names.join("\n"));
                }
                Err(e) => respond(out, status_for(&e), format!("cannot list: {e}\n")),
            },
            (Method::Get, "/env") => {
                let vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
                respond(out, 200, vars.join("\n"));
            }
            (Method::Get, "/fetch") => {
                // Outbound HTTP, as a connector syncs from its source.
                let url = request.query_param("url").unwrap_or_default();
                match locker_sdk::fetch(url) {
                    Ok((status, body)) => respond(out, status, body),
                    Err(e) => respond(out, 502, format!("cannot fetch {url}: {e}\n")),
                }
            }
            (Method::Get, "/connect") => {
                let addr = request.query_param("addr").unwrap_or("127.0.0.1:80");
                match std::net::TcpStream::connect(addr) {
                    Ok(_) => respond(out, 200, format!("connected to {addr}\n")),
                    Err(e) => respond(out, 403, format!("cannot connect to {addr}: {e}\n")),
                }
            }
            _ => respond(out, 404, "no such route\n"),
        }
    }
}

fn status_for(error: &std::io::Error) -> u16 {
    match error.kind() {
        ErrorKind::NotFound => 404,
        ErrorKind::PermissionDenied => 403,
        _ => 400,
    }
}

locker_sdk::wasip2::http::proxy::export!(Notes with_types_in locker_sdk::wasip2);
