//! The admin API's routes about services, events and jobs.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::reply::{ApiError, ApiResult, Query, internal, ok, read_body, read_json, route_of};
use crate::api::{ADMIN_PREFIX, ConfigValue, Rollback};
use crate::bus::PublishError;
use crate::http::body::json_response;
use crate::jobs::RunNowError;
use crate::package::{Manifest, Package};
use crate::store::CatalogError;
use crate::supervisor::Supervisor;

/// The largest package the API accepts.
const MAX_PACKAGE_BYTES: u64 = 512 * 1024 * 1024;

pub async fn dispatch(supervisor: &Arc<Supervisor>, request: Request<Incoming>) -> ApiResult {
    let (method, path) = route_of(&request);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
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
        (&Method::GET, ["services", name, "log"]) => {
            crate::package::manifest::validate_service_name(name)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
            let from = Query::of(&request)
                .get("from")
                .and_then(|f| f.parse().ok())
                .unwrap_or(0);
            let path = supervisor.root.log_path(name);
            let (bytes, next) = tokio::task::spawn_blocking(move || read_log(&path, from))
                .await
                .map_err(|e| internal(e.into()))?
                .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, format!("{e:#}")))?;
            Ok(http::Response::builder()
                .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .header(LOG_NEXT_HEADER, next)
                .body(crate::http::body::full(bytes))
                .expect("a valid response"))
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
            crate::distribution::check_folder_upgrade(&supervisor.trust, name)
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::CONFLICT))?;
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
        (&Method::GET, ["services", name, "config"]) => {
            let entries = tokio::task::block_in_place(|| supervisor.config(name))
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::INTERNAL_SERVER_ERROR))?;
            ok(&entries)
        }
        (&Method::PUT, ["services", name, "config", key]) => {
            let value: ConfigValue = read_json(request, "config value")
                .await?
                .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "no config value given"))?;
            let entry = supervisor
                .set_config(name, key, Some(&value.value))
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::BAD_REQUEST))?;
            ok(&entry)
        }
        (&Method::DELETE, ["services", name, "config", key]) => {
            let entry = supervisor
                .set_config(name, key, None)
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::BAD_REQUEST))?;
            ok(&entry)
        }
        (&Method::POST, ["services", name, "start"]) => {
            let status = supervisor
                .start(name)
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::SERVICE_UNAVAILABLE))?;
            ok(&status)
        }
        (&Method::POST, ["services", name, "rollback"]) => {
            let wanted: Option<Rollback> = read_json(request, "rollback request").await?;
            let status = supervisor
                .rollback(name, wanted.is_some_and(|r| r.data))
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::CONFLICT))?;
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
        (&Method::POST, ["publish", topic @ ..]) => {
            let topic = topic.join("/");
            let limit = supervisor.bus.max_payload();
            let payload = read_body(request, limit + 1).await?;
            let payload = String::from_utf8(payload).map_err(|_| {
                ApiError::new(StatusCode::BAD_REQUEST, "the payload is not UTF-8 JSON")
            })?;
            let record = supervisor
                .bus
                .publish_from_owner(&topic, payload)
                .await
                .map_err(|e| match e {
                    PublishError::Storage(_) => internal(e.into()),
                    e => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
                })?;
            Ok(json_response(StatusCode::CREATED, &record))
        }
        (&Method::GET, ["types"]) => {
            let installed =
                tokio::task::block_in_place(|| supervisor.catalog.list()).map_err(internal)?;
            ok(&crate::package::types::views(
                installed.iter().map(|service| &service.manifest),
            ))
        }
        (&Method::GET, ["events", "stats"]) => {
            ok(&supervisor.bus.log().stats().await.map_err(internal)?)
        }
        (&Method::GET, ["events", "stream"]) => Ok(crate::http::event_stream::response(
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
            #[derive(serde::Deserialize, Default)]
            struct Replay {
                service: Option<String>,
                event: Option<String>,
            }
            let replay: Replay = read_json(request, "replay request")
                .await?
                .unwrap_or_default();
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

/// The header of a log answer that says where the next read starts.
pub const LOG_NEXT_HEADER: &str = "x-log-next";

/// Up to 1 MiB of the log at `path` from byte `from` (from the start if the
/// log is now shorter: it was rotated), and the offset after it.
fn read_log(path: &std::path::Path, from: u64) -> anyhow::Result<(Vec<u8>, u64)> {
    use anyhow::Context;
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("there is no log at {}", path.display()))?;
    let length = file.metadata()?.len();
    let start = if from > length { 0 } else { from };
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(1024 * 1024).read_to_end(&mut bytes)?;
    let next = start + bytes.len() as u64;
    Ok((bytes, next))
}

/// Reads an install request: multipart parts `manifest` (TOML) and
/// `component` (wasm), and any `file` parts: the schemas the manifest
/// names, by file name (what a browser uploads).
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
    let mut files = std::collections::HashMap::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("bad install request: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| bad(format!("bad install request: {e}")))?;
        match name.as_str() {
            "manifest" => manifest = Some(bytes),
            "component" => component = Some(bytes),
            "file" if !file_name.is_empty() && files.len() < 64 => {
                files.insert(file_name, bytes.to_vec());
            }
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
        let mut manifest = Manifest::parse(&manifest_text, "locker.toml")?;
        crate::package::types::embed_uploaded_schemas(&mut manifest, &files)?;
        let origin = format!("the component of {}", manifest.name);
        Package::new(manifest, component.to_vec(), &origin)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| bad(format!("{e:#}")))
}
