//! The admin API: JSON over HTTP under `/_locker/api`, used by the CLI.
//!
//! ```text
//! GET    /_locker/api/health
//! GET    /_locker/api/services                      every service and its state
//! GET    /_locker/api/services/{name}
//! POST   /_locker/api/services                      install: multipart `manifest` + `component`
//! PUT    /_locker/api/services/{name}               upgrade, keeping its data: the same parts
//! DELETE /_locker/api/services/{name}[?keep_data=true]
//! POST   /_locker/api/services/{name}/start
//! POST   /_locker/api/services/{name}/stop
//! GET    /_locker/api/events[?topic=P&limit=N]         recent events, newest first
//! GET    /_locker/api/events/stats                     published, unhandled, pending, dead
//! GET    /_locker/api/events/stream[?topic=P]          live events (Server-Sent Events)
//! GET    /_locker/api/dead-letters
//! POST   /_locker/api/dead-letters/replay              {"service": .., "event": ..} (both optional)
//! GET    /_locker/api/jobs[?service=S]                 every job, its next time and last run
//! POST   /_locker/api/jobs/{service}/{name}/run        run a job now; answers with the run
//! ```
//!
//! Errors are `{"error": "..."}` with a status that says whose fault it is.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::{BoxBody, error_response, json_response};
use crate::api::ADMIN_PREFIX;
use crate::jobs::RunNowError;
use crate::package::{Manifest, Package};
use crate::store::CatalogError;
use crate::supervisor::Supervisor;

/// The largest package the API accepts.
const MAX_PACKAGE_BYTES: u64 = 512 * 1024 * 1024;

struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// Maps catalog errors to their statuses; anything else gets `fallback`.
    fn from_anyhow(error: anyhow::Error, fallback: StatusCode) -> Self {
        let status = match error.downcast_ref::<CatalogError>() {
            Some(CatalogError::AlreadyInstalled { .. }) => StatusCode::CONFLICT,
            Some(CatalogError::NotInstalled(_)) => StatusCode::NOT_FOUND,
            None => fallback,
        };
        ApiError::new(status, format!("{error:#}"))
    }
}

type ApiResult = Result<Response<BoxBody>, ApiError>;

pub async fn handle(supervisor: &Arc<Supervisor>, request: Request<Incoming>) -> Response<BoxBody> {
    match dispatch(supervisor, request).await {
        Ok(response) => response,
        Err(error) => error_response(error.status, &error.message),
    }
}

async fn dispatch(supervisor: &Arc<Supervisor>, request: Request<Incoming>) -> ApiResult {
    let path = request.uri().path()[ADMIN_PREFIX.len()..]
        .trim_end_matches('/')
        .to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["health"]) => ok(&serde_json::json!({
            "ok": true,
            "version": env!("CARGO_PKG_VERSION"),
            "pooling_allocator": supervisor.runtime.pooling,
        })),
        (&Method::GET, ["services"]) => ok(&supervisor.statuses()),
        (&Method::POST, ["services"]) => {
            let package = read_package(request).await?;
            let status = supervisor
                .install(package)
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::INTERNAL_SERVER_ERROR))?;
            Ok(json_response(StatusCode::CREATED, &status))
        }
        (&Method::GET, ["services", name]) => {
            let service = supervisor.service(name).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    CatalogError::NotInstalled(name.to_string()).to_string(),
                )
            })?;
            ok(&service.status())
        }
        (&Method::PUT, ["services", name]) => {
            let package = read_package(request).await?;
            if package.manifest.name != *name {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the package is service {:?}, not {name:?}",
                        package.manifest.name
                    ),
                ));
            }
            let status = supervisor
                .upgrade(package)
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::INTERNAL_SERVER_ERROR))?;
            ok(&status)
        }
        (&Method::DELETE, ["services", name]) => {
            let keep_data = Query::of(&request).get("keep_data") == Some("true");
            let status = supervisor
                .uninstall(name, keep_data)
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::INTERNAL_SERVER_ERROR))?;
            ok(&status)
        }
        (&Method::POST, ["services", name, "start"]) => {
            let status = supervisor
                .start(name)
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::SERVICE_UNAVAILABLE))?;
            ok(&status)
        }
        (&Method::POST, ["services", name, "stop"]) => {
            let status = supervisor
                .stop(name)
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::INTERNAL_SERVER_ERROR))?;
            ok(&status)
        }
        (&Method::GET, ["events"]) => {
            let query = Query::of(&request);
            let limit = query
                .get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(50);
            let topic = query.pattern()?;
            let events = supervisor
                .bus
                .log()
                .recent(topic, limit)
                .await
                .map_err(internal)?;
            ok(&events)
        }
        (&Method::GET, ["events", "stats"]) => {
            ok(&supervisor.bus.log().stats().await.map_err(internal)?)
        }
        (&Method::GET, ["events", "stream"]) => Ok(super::event_stream::response(
            &supervisor.bus,
            Query::of(&request).pattern()?,
        )),
        (&Method::GET, ["dead-letters"]) => ok(&supervisor
            .bus
            .log()
            .dead_letters()
            .await
            .map_err(internal)?),
        (&Method::POST, ["dead-letters", "replay"]) => {
            let body = http_body_util::BodyExt::collect(http_body_util::Limited::new(
                request.into_body(),
                64 * 1024,
            ))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("bad replay request: {e}"))
            })?
            .to_bytes();
            #[derive(serde::Deserialize, Default)]
            struct Replay {
                service: Option<String>,
                event: Option<String>,
            }
            let replay: Replay = if body.is_empty() {
                Replay::default()
            } else {
                serde_json::from_slice(&body).map_err(|e| {
                    ApiError::new(StatusCode::BAD_REQUEST, format!("bad replay request: {e}"))
                })?
            };
            let subscribers = supervisor
                .replay(replay.service, replay.event)
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::BAD_REQUEST))?;
            ok(&subscribers)
        }
        (&Method::GET, ["jobs"]) => match Query::of(&request).get("service") {
            Some(service) => ok(&supervisor.scheduler.jobs_of(service)),
            None => ok(&supervisor.scheduler.all()),
        },
        (&Method::POST, ["jobs", service, name, "run"]) => {
            let run = supervisor.jobs.run_now(service, name).await.map_err(|e| {
                let status = match e {
                    RunNowError::NotFound { .. } => StatusCode::NOT_FOUND,
                    RunNowError::AlreadyRunning { .. } | RunNowError::Stopped(_) => {
                        StatusCode::CONFLICT
                    }
                };
                ApiError::new(status, e.to_string())
            })?;
            ok(&run)
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no admin route {method} {ADMIN_PREFIX}{path}"),
        )),
    }
}

/// Reads an install request: multipart parts `manifest` (TOML) and `component` (wasm).
async fn read_package(request: Request<Incoming>) -> Result<Package, ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message);
    let boundary = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| {
            bad(
                "an install is a multipart/form-data request with `manifest` and `component` parts"
                    .into(),
            )
        })?;
    let body = http_body_util::Limited::new(request.into_body(), MAX_PACKAGE_BYTES as usize);
    let stream = http_body_util::BodyStream::new(body);
    let stream =
        futures::TryStreamExt::map_ok(stream, |frame| frame.into_data().unwrap_or_default());
    let mut multipart = multer::Multipart::new(stream, boundary);
    let (mut manifest, mut component) = (None, None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("bad install request: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| bad(format!("bad install request: {e}")))?;
        match name.as_str() {
            "manifest" => manifest = Some(bytes),
            "component" => component = Some(bytes),
            other => {
                return Err(bad(format!(
                    "unexpected part {other:?} in an install request"
                )));
            }
        }
    }
    let manifest =
        manifest.ok_or_else(|| bad("the install request has no `manifest` part".into()))?;
    let component =
        component.ok_or_else(|| bad("the install request has no `component` part".into()))?;
    let manifest_text = String::from_utf8(manifest.to_vec())
        .map_err(|_| bad("the manifest is not UTF-8".into()))?;
    tokio::task::spawn_blocking(move || {
        let manifest = Manifest::parse(&manifest_text, "locker.toml")?;
        let origin = format!("the component of {}", manifest.name);
        Package::new(manifest, component.to_vec(), &origin)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| bad(format!("{e:#}")))
}

fn internal(error: anyhow::Error) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}"))
}

/// The query string's parameters (no percent-decoding: values are names and patterns).
struct Query(Vec<(String, String)>);

impl Query {
    fn of<B>(request: &Request<B>) -> Query {
        let pairs = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty());
        Query(
            pairs
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (key.to_string(), value.to_string())
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The `topic` parameter, checked as a topic pattern.
    fn pattern(&self) -> Result<Option<String>, ApiError> {
        let Some(pattern) = self.get("topic") else {
            return Ok(None);
        };
        crate::package::topics::validate_pattern(pattern)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
        Ok(Some(pattern.to_string()))
    }
}

fn ok(value: &impl serde::Serialize) -> ApiResult {
    Ok(json_response(StatusCode::OK, value))
}
