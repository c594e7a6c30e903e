//! The admin API's routes about backups and service archives. Each hands
//! out or takes in the owner's data whole, so only the owner's session or
//! an `admin` token opens them (`gate` sees to that: a `read` token does not).
//!
//! ```text
//! GET    /_locker/api/backups                    the schedule, the running one, the last, the kept
//! POST   /_locker/api/backups                    {"passphrase" | "no_secrets"}: make one in the folder
//! POST   /_locker/api/backups/stream             the same, streamed back as the body
//! GET    /_locker/api/backups/{name}             download a kept one
//! DELETE /_locker/api/backups/{name}
//! POST   /_locker/api/services/{name}/export     its folder as an archive, as the body
//! PUT    /_locker/api/services/{name}/import     body: an export; the service must be stopped
//! ```

use std::io::{self, Write};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};

use super::reply::{ApiError, ApiResult, internal, ok, read_json, route_of};
use crate::api::BackupRequest;
use crate::backup::Secrets;
use crate::http::body::{BoxBody, BoxError, json_response};
use crate::supervisor::Supervisor;
use crate::supervisor::backups::AlreadyRunning;

/// The largest import taken.
const MAX_IMPORT_BYTES: u64 = 64 * 1024 * 1024 * 1024;
const ARCHIVE_TYPE: &str = "application/zstd";

pub async fn dispatch(supervisor: &Arc<Supervisor>, request: Request<Incoming>) -> ApiResult {
    let (method, path) = route_of(&request);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["backups"]) => ok(&supervisor.backups.view()),
        (&Method::POST, ["backups"]) => {
            let secrets = secrets_of(request).await?;
            if let Some(running) = supervisor.backups.view().running {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    AlreadyRunning(running.name).to_string(),
                ));
            }
            let running = supervisor.clone();
            // Made in the background: the answer is the backup under way,
            // which `GET /backups` follows.
            tokio::spawn(async move {
                let _ = running.backup_into_folder(secrets, "now").await;
            });
            // Give it the moment to take the running slot (or find it taken).
            for _ in 0..50 {
                let view = supervisor.backups.view();
                if view.running.is_some() {
                    return Ok(json_response(StatusCode::ACCEPTED, &view));
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            ok(&supervisor.backups.view())
        }
        (&Method::POST, ["backups", "stream"]) => {
            let secrets = secrets_of(request).await?;
            let (writer, body) = channel_body();
            let running = supervisor.clone();
            let (refused, refusal) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                if let Err(error) = running.backup_to(secrets, writer).await
                    && error.downcast_ref::<AlreadyRunning>().is_some()
                {
                    let _ = refused.send(format!("{error:#}"));
                }
            });
            // A backup already running is said as an error, not as a body
            // that breaks off; anything later breaks the body off.
            if let Ok(Ok(message)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), refusal).await
            {
                return Err(ApiError::new(StatusCode::CONFLICT, message));
            }
            Ok(archive_response(body, "locker-backup.tar.zst"))
        }
        (&Method::GET, ["backups", name]) => {
            let path = supervisor.backups.archive_path(name).ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, format!("no backup {name:?}"))
            })?;
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| internal(e.into()))?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
            let body = http_body_util::StreamBody::new(futures::StreamExt::map(stream, |chunk| {
                chunk.map(Frame::data).map_err(BoxError::from)
            }))
            .boxed_unsync();
            Ok(archive_response(body, name))
        }
        (&Method::DELETE, ["backups", name]) => {
            let path = supervisor.backups.archive_path(name).ok_or_else(|| {
                ApiError::new(StatusCode::NOT_FOUND, format!("no backup {name:?}"))
            })?;
            std::fs::remove_file(&path).map_err(|e| internal(e.into()))?;
            ok(&supervisor.backups.view())
        }
        (&Method::POST, ["services", name, "export"]) => {
            crate::package::manifest::validate_service_name(name)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("{e:#}")))?;
            if supervisor.service(name).is_none() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("service {name:?} is not installed"),
                ));
            }
            let (writer, body) = channel_body();
            let (running, owned) = (supervisor.clone(), name.to_string());
            tokio::spawn(async move {
                if let Err(e) = running.export(&owned, writer).await {
                    tracing::warn!(service = %owned, "export failed: {e:#}");
                }
            });
            Ok(archive_response(body, &format!("{name}.tar.zst")))
        }
        (&Method::PUT, ["services", name, "import"]) => {
            let name = name.to_string();
            let upload = save_upload(supervisor, request).await?;
            let imported = supervisor
                .import(&name, upload.path())
                .await
                .map_err(|e| ApiError::from_anyhow(e, StatusCode::CONFLICT))?;
            ok(&imported)
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no such admin route: {method} {path}"),
        )),
    }
}

async fn secrets_of(request: Request<Incoming>) -> Result<Secrets, ApiError> {
    let wanted: BackupRequest = read_json(request, "backup request")
        .await?
        .unwrap_or_default();
    match (wanted.passphrase, wanted.no_secrets) {
        (Some(_), true) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "give a passphrase or no_secrets, not both",
        )),
        (Some(passphrase), false) if passphrase.is_empty() => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the passphrase is empty",
        )),
        (Some(passphrase), false) => Ok(Secrets::Sealed(passphrase.into())),
        (None, true) => Ok(Secrets::LeftOut),
        (None, false) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "say what becomes of the services' secrets: a passphrase to seal them with, or \
             no_secrets to leave them out",
        )),
    }
}

/// Saves an uploaded archive under the root's `tmp/` (removed when dropped).
async fn save_upload(
    supervisor: &Supervisor,
    request: Request<Incoming>,
) -> Result<tempfile::NamedTempFile, ApiError> {
    let upload = tempfile::NamedTempFile::new_in(supervisor.root.tmp_dir())
        .map_err(|e| internal(e.into()))?;
    let mut file = tokio::fs::File::from_std(upload.reopen().map_err(|e| internal(e.into()))?);
    let mut body = http_body_util::Limited::new(request.into_body(), MAX_IMPORT_BYTES as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the upload: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            tokio::io::AsyncWriteExt::write_all(&mut file, &data)
                .await
                .map_err(|e| internal(e.into()))?;
        }
    }
    tokio::io::AsyncWriteExt::flush(&mut file)
        .await
        .map_err(|e| internal(e.into()))?;
    Ok(upload)
}

fn archive_response(body: BoxBody, file_name: &str) -> Response<BoxBody> {
    Response::builder()
        .header(http::header::CONTENT_TYPE, ARCHIVE_TYPE)
        .header(
            http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file_name}\""),
        )
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("a valid response")
}

/// A body fed by a blocking writer (the archive's thread): chunks of 256 KiB
/// through a small channel, so a slow reader slows the writer down. A
/// writer dropped before `flush` after its last write (a failure) ends the
/// body with an error, so the client sees a broken transfer, not a short file.
fn channel_body() -> (ChannelWriter, BoxBody) {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(8);
    let stream = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    let body = http_body_util::StreamBody::new(futures::StreamExt::map(stream, |chunk| {
        chunk.map(Frame::data).map_err(BoxError::from)
    }))
    .boxed_unsync();
    (
        ChannelWriter {
            sender,
            buffer: Vec::with_capacity(CHUNK),
            finished: false,
        },
        body,
    )
}

const CHUNK: usize = 256 * 1024;

pub struct ChannelWriter {
    sender: tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
    buffer: Vec<u8>,
    /// Flushed after the last write: the archive is whole.
    finished: bool,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the download was cancelled"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.finished = false;
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.sender.try_send(Err(io::Error::other(
                "the archive was not finished; see `locker status` or GET /backups for why",
            )));
        }
    }
}
