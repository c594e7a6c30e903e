//! Backups, restores and exports: the owner's data leaves with the owner.
//!
//! A backup is one consistent snapshot of the root, taken while the host
//! serves: the files are staged in two passes (`staging`), the second in a
//! quiet moment the caller provides (no request, event, job or install
//! runs meanwhile; see `crate::quiesce`), in which the database is copied
//! too (`database`). The archive (`archive`) is then written from the
//! staged copy on a thread the kernel runs only when the services leave
//! the CPU idle (`SCHED_IDLE`). The services' secrets travel only sealed under the owner's
//! passphrase (`secrets`), or not at all.
//!
//! What a root backup holds: the database, the secrets key (sealed), the
//! host's settings (`host.toml`), `packages/`, `services/`, `previous/` and
//! `logs/`. What it leaves out: the compiled-code cache (rebuilt), `tmp/`,
//! `tls/` (certificates are issued again), the CLI's token and the lock.
//!
//! `restore` puts an archive into an empty root; `service_archive` exports
//! one service's folder and imports it back.

pub mod archive;
pub mod database;
pub mod restore;
pub mod secrets;
pub mod service_archive;
pub mod settings;
pub mod staging;

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use age::secrecy::SecretString;
use anyhow::{Context, Result};
use serde::Serialize;

use crate::store::LockerRoot;
use archive::{ArchiveHeader, ArchiveKind, ArchiveWriter, SEALED_KEY_NAME, SecretsInArchive};
use staging::Staging;

/// The parts of a root a backup takes, besides the database and the key.
pub const ROOT_PARTS: &[&str] = &["host.toml", "packages", "services", "previous", "logs"];
/// The database's name in an archive (and in a root).
pub const DATABASE_NAME: &str = "locker.db";

/// What happens to the services' secrets in a backup.
pub enum Secrets {
    /// The root's secrets key goes in, sealed under this passphrase.
    Sealed(SecretString),
    /// No key, and the sealed values are taken out of the database copy.
    LeftOut,
}

/// Where a backup, restore or export is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Copying the root's files while the host serves.
    Copying,
    /// Waiting for work under way to finish, for the quiet moment.
    Quieting,
    /// Writing the archive (`done` of `total` bytes).
    Archiving,
    /// Checking an archive from end to end (`done` of `total` bytes of it).
    Checking,
    /// Writing an archive's files into place.
    Unpacking,
    Finished,
}

impl Phase {
    /// Its name, as the API and the progress bar show it.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Copying => "copying",
            Phase::Quieting => "quieting",
            Phase::Archiving => "archiving",
            Phase::Checking => "checking",
            Phase::Unpacking => "unpacking",
            Phase::Finished => "finished",
        }
    }
}

/// How far a backup, restore or export is; shared with whoever watches.
#[derive(Debug)]
pub struct Progress {
    phase: Mutex<Phase>,
    done: AtomicU64,
    total: AtomicU64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            phase: Mutex::new(Phase::Copying),
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }
}

/// A look at a [`Progress`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProgressView {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
}

impl Progress {
    /// Enters `phase`, whose work is `total` bytes (0: unknown).
    pub fn begin(&self, phase: Phase, total: u64) {
        *self.phase.lock().unwrap() = phase;
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn view(&self) -> ProgressView {
        ProgressView {
            phase: *self.phase.lock().unwrap(),
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
        }
    }
}

/// What a backup or export made.
#[derive(Debug, Clone)]
pub struct Made {
    pub header: ArchiveHeader,
    /// How long the services were held still.
    pub paused: Duration,
    /// The archive's size.
    pub bytes: u64,
}

/// What to put in an archive.
struct Plan {
    kind: ArchiveKind,
    service: Option<String>,
    parts: Vec<String>,
    database: bool,
    secrets: Option<Secrets>,
}

/// Backs the root up into `out`. `quiet` gives the quiet moment: a guard
/// under which nothing changes the root (it is awaited once, after the first
/// copy; dropping the guard ends the moment).
pub async fn back_up<W, G>(
    root: &LockerRoot,
    secrets: Secrets,
    out: W,
    quiet: impl Future<Output = Result<G>>,
    progress: Arc<Progress>,
) -> Result<Made>
where
    W: Write + Send + 'static,
{
    let plan = Plan {
        kind: ArchiveKind::Root,
        service: None,
        parts: ROOT_PARTS.iter().map(|part| part.to_string()).collect(),
        database: true,
        secrets: Some(secrets),
    };
    make(root, plan, out, quiet, progress).await
}

/// Exports one service's folder into `out` (see `back_up` for `quiet`).
pub async fn export<W, G>(
    root: &LockerRoot,
    service: &str,
    out: W,
    quiet: impl Future<Output = Result<G>>,
    progress: Arc<Progress>,
) -> Result<Made>
where
    W: Write + Send + 'static,
{
    let plan = Plan {
        kind: ArchiveKind::Service,
        service: Some(service.to_string()),
        parts: vec![format!("services/{service}")],
        database: false,
        secrets: None,
    };
    make(root, plan, out, quiet, progress).await
}

async fn make<W, G>(
    root: &LockerRoot,
    plan: Plan,
    out: W,
    quiet: impl Future<Output = Result<G>>,
    progress: Arc<Progress>,
) -> Result<Made>
where
    W: Write + Send + 'static,
{
    progress.begin(Phase::Copying, 0);
    let (source, parts, tmp) = (root.dir().to_path_buf(), plan.parts.clone(), root.tmp_dir());
    let (mut staging, _) =
        in_background(move || Staging::copy(&source, &parts, &tmp).context("cannot copy the root"))
            .await??;

    progress.begin(Phase::Quieting, 0);
    let guard = quiet.await?;
    let began = Instant::now();
    let (database, key_path) = (
        plan.database.then(|| root.db_path()),
        root.secrets_key_path(),
    );
    let (staging, key) = tokio::task::spawn_blocking(move || -> Result<_> {
        staging
            .catch_up()
            .context("cannot copy what changed meanwhile")?;
        if let Some(database) = database {
            database::snapshot(&database, &staging.dir().join(DATABASE_NAME))?;
        }
        let key = match std::fs::read(&key_path) {
            Ok(key) => Some(key),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", key_path.display())),
        };
        Ok((staging, key))
    })
    .await??;
    let paused = began.elapsed();
    drop(guard);

    let database_copy = staging.dir().join(DATABASE_NAME);
    let (sealed, secrets) = match plan.secrets {
        None => (None, SecretsInArchive::None),
        Some(Secrets::LeftOut) => {
            let copy = database_copy.clone();
            tokio::task::spawn_blocking(move || database::leave_out_secrets(&copy)).await??;
            (None, SecretsInArchive::LeftOut)
        }
        Some(Secrets::Sealed(passphrase)) => match key {
            None => (None, SecretsInArchive::None),
            Some(key) => {
                let sealed =
                    tokio::task::spawn_blocking(move || secrets::seal(&key, &passphrase)).await??;
                (Some(sealed), SecretsInArchive::Sealed)
            }
        },
    };

    let mut header = ArchiveHeader::new(plan.kind, plan.service.clone(), secrets);
    let size = staging.size();
    let database_bytes = if plan.database {
        std::fs::metadata(&database_copy)?.len()
    } else {
        0
    };
    header.files = size.files + u64::from(plan.database);
    header.bytes = size.bytes + database_bytes;
    progress.begin(Phase::Archiving, header.bytes);
    let (written_header, parts, watched) = (header.clone(), plan.parts, progress.clone());
    let bytes = in_background(move || -> Result<u64> {
        let mut writer = ArchiveWriter::new(Counted::new(out), &written_header, watched)?;
        if let Some(sealed) = &sealed {
            writer.add_bytes(SEALED_KEY_NAME, sealed)?;
        }
        if plan.database {
            writer.add_file(DATABASE_NAME, &database_copy)?;
        }
        for part in &parts {
            let staged = staging.dir().join(part);
            if staged.is_dir() {
                writer.add_tree(part, &staged)?;
            } else if staged.is_file() {
                writer.add_file(part, &staged)?;
            }
        }
        let mut out = writer.finish()?;
        out.flush()?;
        Ok(out.count)
    })
    .await?
    .context("cannot write the archive")?;
    progress.begin(Phase::Finished, 0);
    Ok(Made {
        header,
        paused,
        bytes,
    })
}

/// Runs `work` on a thread of its own that the kernel runs only when no
/// other thread wants the CPU (`SCHED_IDLE`), so that a backup takes what
/// the services leave; under a load that never lets up it waits.
pub async fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("locker-backup".into())
        .spawn(move || {
            lower_priority();
            let _ = sender.send(work());
        })
        .context("cannot start the backup thread")?;
    receiver.await.context("the backup thread ended early")
}

/// Moves the calling thread to `SCHED_IDLE` (or, where that is refused, to
/// nice 19).
pub fn lower_priority() {
    // SAFETY: plain system calls on the calling thread (Linux schedules
    // threads, so pid 0 is this one); a failure leaves the priority as it
    // was, which is harmless.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let thread = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread, 19);
        }
    }
}

/// Counts the bytes written through it.
struct Counted<W> {
    inner: W,
    count: u64,
}

impl<W> Counted<W> {
    fn new(inner: W) -> Self {
        Counted { inner, count: 0 }
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Whether `dir` is absent or an empty folder: the only roots restored into.
pub fn is_empty_or_absent(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("cannot look into {}", dir.display())),
    }
}
