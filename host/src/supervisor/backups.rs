//! Backups of the root this host serves: made when the owner asks (the CLI
//! streams one down, the dashboard keeps one in the backups folder) or on
//! the schedule of `[backup]` in `host.toml`; listed, downloaded and
//! pruned to the newest `keep`. And one service's folder exported, or
//! imported into the service while it is stopped.
//!
//! The quiet moment a snapshot needs is the change lock (no install,
//! upgrade or uninstall) and the runtime's quiesce door (no request, event
//! or job attempt) held together; one backup runs at a time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;

use super::Supervisor;
use crate::api::{BackupArchive, BackupOutcome, BackupsView, ImportView, RunningBackup};
use crate::backup::archive::SecretsInArchive;
use crate::backup::settings::BackupSettings;
use crate::backup::{self, Made, Progress, Secrets};
use crate::clock::{now_rfc3339, rfc3339};
use crate::store::CatalogError;

/// How long a snapshot waits for the work under way to finish.
const QUIET_PATIENCE: Duration = Duration::from_secs(30);
const ARCHIVE_SUFFIX: &str = ".tar.zst";

/// The host's backups: its settings, the one running, how the last went.
pub struct Backups {
    pub settings: BackupSettings,
    dir: PathBuf,
    running: Mutex<Option<(RunningBackup, Arc<Progress>)>>,
    last: Mutex<Option<BackupOutcome>>,
}

/// Why a backup could not start.
#[derive(Debug, thiserror::Error)]
#[error("a backup is being made already ({0}); wait for it to finish")]
pub struct AlreadyRunning(pub String);

/// Frees the running slot however a backup ends.
struct RunningSlot<'a>(&'a Backups);

impl Drop for RunningSlot<'_> {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap() = None;
    }
}

impl Backups {
    pub fn new(settings: BackupSettings, root_dir: &Path) -> Backups {
        Backups {
            dir: settings.dir(root_dir),
            settings,
            running: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the running slot, or says which backup holds it.
    fn begin(&self, name: &str, trigger: &str) -> Result<(RunningSlot<'_>, Arc<Progress>)> {
        let mut running = self.running.lock().unwrap();
        if let Some((backup, _)) = &*running {
            return Err(AlreadyRunning(backup.name.clone()).into());
        }
        let progress = Arc::new(Progress::default());
        *running = Some((
            RunningBackup {
                name: name.to_string(),
                trigger: trigger.to_string(),
                started: now_rfc3339(),
                phase: "copying".into(),
                done: 0,
                total: 0,
            },
            progress.clone(),
        ));
        Ok((RunningSlot(self), progress))
    }

    /// The archives kept in the backups folder, newest first.
    pub fn archives(&self) -> Vec<BackupArchive> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut archives: Vec<BackupArchive> = entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                if !is_archive_name(&name) {
                    return None;
                }
                let metadata = entry.metadata().ok()?;
                let created = metadata
                    .modified()
                    .ok()
                    .map(|time| rfc3339(chrono::DateTime::<Utc>::from(time)))
                    .unwrap_or_default();
                Some(BackupArchive {
                    name,
                    bytes: metadata.len(),
                    created,
                })
            })
            .collect();
        archives.sort_by(|a, b| b.name.cmp(&a.name));
        archives
    }

    /// The path of a kept archive, if `name` is one.
    pub fn archive_path(&self, name: &str) -> Option<PathBuf> {
        (is_archive_name(name) && self.dir.join(name).is_file()).then(|| self.dir.join(name))
    }

    /// When the schedule next fires, after `after`.
    pub fn next_after(&self, after: chrono::DateTime<Utc>) -> Option<chrono::DateTime<Utc>> {
        self.settings.timing()?.after(&after).next()
    }

    pub fn view(&self) -> BackupsView {
        let running = self
            .running
            .lock()
            .unwrap()
            .as_ref()
            .map(|(backup, progress)| {
                let view = progress.view();
                RunningBackup {
                    phase: view.phase.label().into(),
                    done: view.done,
                    total: view.total,
                    ..backup.clone()
                }
            });
        BackupsView {
            dir: self.dir.display().to_string(),
            schedule: self.settings.schedule.clone(),
            next: self.next_after(Utc::now()).map(rfc3339),
            keep: self.settings.keep,
            seals_secrets: self.settings.passphrase_file.is_some(),
            running,
            last: self.last.lock().unwrap().clone(),
            archives: self.archives(),
        }
    }

    /// Removes the oldest archives beyond `keep`.
    fn prune(&self) {
        for old in self.archives().into_iter().skip(self.settings.keep) {
            let path = self.dir.join(&old.name);
            match std::fs::remove_file(&path) {
                Ok(()) => tracing::info!(archive = %old.name, "removed an old backup"),
                Err(e) => tracing::warn!("cannot remove the old backup {}: {e}", path.display()),
            }
        }
    }
}

/// Archive names the host makes: `locker-YYYYMMDD-HHMMSS-mmm.tar.zst`.
fn is_archive_name(name: &str) -> bool {
    name.starts_with("locker-")
        && name.ends_with(ARCHIVE_SUFFIX)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

impl Supervisor {
    /// The change lock and the quiesce door, held together: nothing changes
    /// the root until both are dropped.
    async fn quiet_moment(
        &self,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, crate::quiesce::Quiet)> {
        let change = tokio::time::timeout(QUIET_PATIENCE, self.changes.lock())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "an install, upgrade or uninstall did not finish within {QUIET_PATIENCE:?}: \
                     no quiet moment for a consistent snapshot; try again"
                )
            })?;
        let quiet = self.runtime.quiesce.quiet(QUIET_PATIENCE).await?;
        Ok((change, quiet))
    }

    /// Backs the root up into `out` (a download); see `backup_into_folder`.
    pub async fn backup_to<W: Write + Send + 'static>(
        &self,
        secrets: Secrets,
        out: W,
    ) -> Result<BackupOutcome> {
        self.make_backup("stream", "download", secrets, |_| Ok(out), |_| Ok(()))
            .await
    }

    /// Makes a backup in the backups folder (the owner's "back up now", or
    /// the schedule), then prunes the folder to the newest `keep`.
    pub async fn backup_into_folder(
        &self,
        secrets: Secrets,
        trigger: &str,
    ) -> Result<BackupOutcome> {
        let dir = self.backups.dir().to_path_buf();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the backups folder {}", dir.display()))?;
        let name = format!(
            "locker-{}{ARCHIVE_SUFFIX}",
            Utc::now().format("%Y%m%d-%H%M%S-%3f")
        );
        let partial = dir.join(format!(".{name}.partial"));
        let done = dir.join(&name);
        let outcome = self
            .make_backup(
                &name,
                trigger,
                secrets,
                |_| {
                    let file = std::fs::File::create(&partial)
                        .with_context(|| format!("cannot create {}", partial.display()))?;
                    Ok(std::io::BufWriter::new(file))
                },
                |_| {
                    std::fs::File::open(&partial)?.sync_all()?;
                    std::fs::rename(&partial, &done)
                        .with_context(|| format!("cannot name the backup {}", done.display()))
                },
            )
            .await;
        if outcome.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        self.backups.prune();
        outcome
    }

    /// The backup itself; `open` makes the sink, `close` seals it once the
    /// archive is whole. The outcome is kept as the last, failed or not.
    async fn make_backup<W: Write + Send + 'static>(
        &self,
        name: &str,
        trigger: &str,
        secrets: Secrets,
        open: impl FnOnce(&str) -> Result<W>,
        close: impl FnOnce(&str) -> Result<()>,
    ) -> Result<BackupOutcome> {
        let (_slot, progress) = self.backups.begin(name, trigger)?;
        let started = now_rfc3339();
        let made = async {
            let out = open(name)?;
            let made =
                backup::back_up(&self.root, secrets, out, self.quiet_moment(), progress).await?;
            close(name)?;
            Ok::<Made, anyhow::Error>(made)
        }
        .await;
        let outcome = BackupOutcome {
            name: name.to_string(),
            trigger: trigger.to_string(),
            started,
            finished: now_rfc3339(),
            error: made.as_ref().err().map(|e| format!("{e:#}")),
            files: made.as_ref().map(|m| m.header.files).unwrap_or_default(),
            data_bytes: made.as_ref().map(|m| m.header.bytes).unwrap_or_default(),
            archive_bytes: made.as_ref().map(|m| m.bytes).unwrap_or_default(),
            paused_ms: made
                .as_ref()
                .map(|m| m.paused.as_millis() as u64)
                .unwrap_or_default(),
            secrets: made
                .as_ref()
                .map(|m| secrets_label(m.header.secrets))
                .unwrap_or_default()
                .into(),
        };
        match &outcome.error {
            None => tracing::info!(
                backup = %name,
                files = outcome.files,
                bytes = outcome.archive_bytes,
                paused_ms = outcome.paused_ms,
                "backup made"
            ),
            Some(error) => tracing::warn!(backup = %name, "backup failed: {error}"),
        }
        *self.backups.last.lock().unwrap() = Some(outcome.clone());
        made.map(|_| outcome)
    }

    /// The secrets choice of a scheduled backup: sealed under the
    /// passphrase file's passphrase, or left out when none is set.
    pub fn scheduled_secrets(&self) -> Result<Secrets> {
        Ok(match self.backups.settings.passphrase()? {
            Some(passphrase) => Secrets::Sealed(passphrase),
            None => Secrets::LeftOut,
        })
    }

    /// Runs the backup schedule until the host stops: at each time the
    /// cron expression gives, and once at start when the newest archive is
    /// older than the last time that fell while the host was down.
    pub async fn run_backup_schedule(self: Arc<Self>) {
        let Some(schedule) = self.backups.settings.timing() else {
            return;
        };
        let newest = self
            .backups
            .archives()
            .first()
            .and_then(|a| chrono::DateTime::parse_from_rfc3339(&a.created).ok())
            .map(|t| t.with_timezone(&Utc));
        if let Some(newest) = newest
            && schedule
                .after(&newest)
                .next()
                .is_some_and(|due| due <= Utc::now())
        {
            tracing::info!("a scheduled backup was missed while the host was down: making it now");
            self.scheduled_backup().await;
        }
        loop {
            let Some(next) = schedule.upcoming(Utc).next() else {
                return;
            };
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            self.scheduled_backup().await;
        }
    }

    async fn scheduled_backup(&self) {
        let secrets = match self.scheduled_secrets() {
            Ok(secrets) => secrets,
            Err(e) => {
                tracing::warn!("scheduled backup not made: {e:#}");
                return;
            }
        };
        // Its outcome, failed or not, is kept as the last one and logged.
        let _ = self.backup_into_folder(secrets, "schedule").await;
    }

    /// Exports service `name`'s folder into `out`.
    pub async fn export<W: Write + Send + 'static>(&self, name: &str, out: W) -> Result<Made> {
        if self.service(name).is_none() {
            return Err(CatalogError::NotInstalled(name.to_string()).into());
        }
        backup::export(
            &self.root,
            name,
            out,
            self.quiet_moment(),
            Arc::new(Progress::default()),
        )
        .await
    }

    /// Replaces stopped service `name`'s folder with the export at `archive`.
    pub async fn import(&self, name: &str, archive: &Path) -> Result<ImportView> {
        let _change = self.changes.lock().await;
        let service = self
            .service(name)
            .ok_or_else(|| CatalogError::NotInstalled(name.to_string()))?;
        if !service.is_stopped() {
            bail!(
                "service {name:?} is running: stop it first (`locker stop {name}`), so that \
                 nothing writes its folder while it is replaced"
            );
        }
        let (root, owned, archive) = (self.root.clone(), name.to_string(), archive.to_path_buf());
        let imported = tokio::task::spawn_blocking(move || {
            backup::service_archive::import(&root, &owned, &archive, &Progress::default())
        })
        .await??;
        service.log().note(&format!(
            "its folder was replaced by an import of {} ({} files)",
            imported.from, imported.files
        ));
        Ok(ImportView {
            service: name.to_string(),
            from: imported.from,
            files: imported.files,
            bytes: imported.bytes,
        })
    }
}

pub fn secrets_label(secrets: SecretsInArchive) -> &'static str {
    match secrets {
        SecretsInArchive::Sealed => "sealed",
        SecretsInArchive::LeftOut => "left-out",
        SecretsInArchive::None => "none",
    }
}
