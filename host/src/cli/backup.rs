//! The owner's backup commands: `backup`, `restore`, `export`, `import`,
//! and the host's status (`locker status` with no service named).
//!
//! With a host serving the root, `backup` and `export` stream the archive
//! down from it (the snapshot is its to take) while a progress bar follows
//! the host's progress; `import` uploads. Without one, they work on the
//! root directly under its lock. `restore` only ever writes a new root.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use age::secrecy::SecretString;
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use super::Target;
use super::access::{Access, access};
use super::client::AdminClient;
use crate::api::{BackupRequest, BackupsView, ImportView};
use crate::backup::archive::peek;
use crate::backup::restore::{RestoreOptions, restore as restore_root};
use crate::backup::{self, Phase, Progress, ProgressView, Secrets};
use crate::store::{Catalog, LockerRoot};

/// What becomes of the services' secrets, as the command line says.
#[derive(clap::Args)]
pub(super) struct PassphraseSource {
    /// The passphrase sealing the services' secrets, on this file's first
    /// line (otherwise it is asked for).
    #[arg(long = "passphrase-file", conflicts_with = "no_secrets")]
    pub file: Option<PathBuf>,
    /// Without the services' secrets: a backup leaves them out, a restore
    /// does not bring them back.
    #[arg(long)]
    pub no_secrets: bool,
}

/// `locker backup --to FILE`.
pub(super) async fn backup(target: &Target, to: &Path, source: &PassphraseSource) -> Result<()> {
    let secrets = match source.no_secrets {
        true => Secrets::LeftOut,
        false => Secrets::Sealed(passphrase(source, true)?),
    };
    let partial = partial_of(to);
    let result = match access(target)? {
        Access::Host(client) => backup_from_host(&client, &secrets, &partial).await,
        Access::Offline { catalog, .. } => {
            let root = catalog.root().clone();
            let progress = Arc::new(Progress::default());
            let out = std::io::BufWriter::new(
                std::fs::File::create(&partial)
                    .with_context(|| format!("cannot create {}", partial.display()))?,
            );
            let (bar, watched) = (follow(progress.clone()), progress.clone());
            // The lock is held: nothing else changes the root, so the quiet
            // moment is now.
            let made = backup::back_up(&root, secrets, out, async { Ok(()) }, progress).await;
            watched.begin(Phase::Finished, 0);
            bar.await?;
            made.map(|made| {
                format!(
                    "{} files, {} of data, {} archive, secrets {}",
                    made.header.files,
                    bytesize::ByteSize(made.header.bytes),
                    bytesize::ByteSize(made.bytes),
                    crate::supervisor::backups::secrets_label(made.header.secrets)
                )
            })
        }
    };
    match result {
        Ok(summary) => {
            std::fs::File::open(&partial)?.sync_all()?;
            std::fs::rename(&partial, to)
                .with_context(|| format!("cannot name the backup {}", to.display()))?;
            println!("backed up into {}: {summary}", to.display());
            Ok(())
        }
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

async fn backup_from_host(
    client: &AdminClient,
    secrets: &Secrets,
    partial: &Path,
) -> Result<String> {
    let request = match secrets {
        Secrets::LeftOut => BackupRequest {
            passphrase: None,
            no_secrets: true,
        },
        Secrets::Sealed(passphrase) => BackupRequest {
            passphrase: Some(age::secrecy::ExposeSecret::expose_secret(passphrase).to_string()),
            no_secrets: false,
        },
    };
    let watcher = client.clone();
    let bar = tokio::spawn(async move {
        let bar = new_bar();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(view) = watcher.backups().await
                && let Some(running) = view.running
            {
                draw(&bar, &running.phase, running.done, running.total);
            }
        }
    });
    let downloaded = client
        .download(client.post("/backups/stream").json(&request), partial)
        .await;
    bar.abort();
    // The body ends as the archive does; the host records how the backup
    // went a moment later.
    let mut view: BackupsView = client.backups().await?;
    for _ in 0..100 {
        if view.running.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        view = client.backups().await?;
    }
    let last = view.last.filter(|last| last.trigger == "download");
    match (downloaded, last) {
        (Ok(()), Some(last)) if last.error.is_none() => Ok(format!(
            "{} files, {} of data, {} archive, secrets {}, services held still for {} ms",
            last.files,
            bytesize::ByteSize(last.data_bytes),
            bytesize::ByteSize(last.archive_bytes),
            last.secrets,
            last.paused_ms
        )),
        (_, Some(last)) if last.error.is_some() => {
            bail!("the backup failed: {}", last.error.unwrap_or_default())
        }
        (Err(error), _) => Err(error),
        (Ok(()), _) => bail!("the host did not say how the backup went"),
    }
}

/// `locker restore FILE --root DIR`.
pub(super) async fn restore(
    target: &Target,
    archive: &Path,
    source: &PassphraseSource,
) -> Result<()> {
    if target.url.is_some() {
        bail!("restore writes a root on this machine: give --root, not --url");
    }
    let header = peek(archive).with_context(|| format!("cannot restore {}", archive.display()))?;
    let sealed = header.secrets == backup::archive::SecretsInArchive::Sealed;
    let options = RestoreOptions {
        passphrase: match sealed && !source.no_secrets {
            true => Some(passphrase(source, false)?),
            false => None,
        },
        leave_out_secrets: source.no_secrets,
    };
    let progress = Arc::new(Progress::default());
    let bar = follow(progress.clone());
    let (archive_path, root_dir, watched) =
        (archive.to_path_buf(), target.root.clone(), progress.clone());
    let restored = tokio::task::spawn_blocking(move || {
        restore_root(&archive_path, &root_dir, &options, &watched)
    })
    .await?;
    progress.begin(Phase::Finished, 0);
    bar.await?;
    let restored = restored.with_context(|| format!("cannot restore {}", archive.display()))?;
    println!(
        "restored {} files ({}) made {} into {}{}",
        restored.header.files,
        bytesize::ByteSize(restored.header.bytes),
        restored.header.created,
        target.root.display(),
        match (restored.secrets, restored.header.secrets) {
            (true, _) => ", with the services' secrets",
            (false, backup::archive::SecretsInArchive::Sealed) =>
                ", without the services' secrets (left out)",
            (false, backup::archive::SecretsInArchive::LeftOut) =>
                ", without the services' secrets (the backup left them out)",
            _ => "",
        }
    );
    println!(
        "serve it with `locker serve --root {}`",
        target.root.display()
    );
    Ok(())
}

/// `locker export NAME --to FILE`.
pub(super) async fn export(target: &Target, name: &str, to: &Path) -> Result<()> {
    let partial = partial_of(to);
    let result = match access(target)? {
        Access::Host(client) => {
            client
                .download(
                    client.post(&format!("/services/{name}/export")).json(&()),
                    &partial,
                )
                .await
        }
        Access::Offline { catalog, .. } => {
            if catalog.get(name)?.is_none() {
                bail!("service {name:?} is not installed");
            }
            let out = std::io::BufWriter::new(
                std::fs::File::create(&partial)
                    .with_context(|| format!("cannot create {}", partial.display()))?,
            );
            backup::export(catalog.root(), name, out, async { Ok(()) }, Arc::default())
                .await
                .map(|_| ())
        }
    };
    if let Err(error) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(error).with_context(|| format!("cannot export {name}"));
    }
    std::fs::rename(&partial, to)?;
    println!("exported {name}'s folder into {}", to.display());
    Ok(())
}

/// `locker import NAME FILE`.
pub(super) async fn import(target: &Target, name: &str, archive: &Path) -> Result<()> {
    let imported: ImportView = match access(target)? {
        Access::Host(client) => client.import(name, archive).await?,
        Access::Offline { catalog, .. } => {
            let installed = catalog
                .get(name)?
                .with_context(|| format!("service {name:?} is not installed"))?;
            if !installed.stopped {
                bail!(
                    "service {name:?} is not stopped: stop it first (`locker stop {name}`), so \
                     that nothing writes its folder while it is replaced"
                );
            }
            let root: LockerRoot = catalog.root().clone();
            let imported =
                backup::service_archive::import(&root, name, archive, &Progress::default())?;
            ImportView {
                service: name.to_string(),
                from: imported.from,
                files: imported.files,
                bytes: imported.bytes,
            }
        }
    };
    println!(
        "imported {} files ({}) from {}'s export into {}'s folder; start it with `locker start {name}`",
        imported.files,
        bytesize::ByteSize(imported.bytes),
        imported.from,
        imported.service
    );
    Ok(())
}

/// `locker status` with no service: the host, and its backups.
pub(super) async fn host_status(target: &Target, json: bool) -> Result<()> {
    let access = access(target)?;
    let Access::Host(client) = &access else {
        bail!(
            "no host serves this root: `locker serve` it, or name a service (`locker status NAME`)"
        );
    };
    let view = client.backups().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let services = client.services().await?;
    println!("services: {} installed", services.len());
    match &view.schedule {
        Some(schedule) => println!(
            "backups: on schedule `{schedule}` into {} (next {}; the newest {} kept; secrets {})",
            view.dir,
            view.next.as_deref().unwrap_or("never"),
            view.keep,
            if view.seals_secrets {
                "sealed"
            } else {
                "left out"
            }
        ),
        None => println!(
            "backups: no schedule (`[backup] schedule` in host.toml); folder {}",
            view.dir
        ),
    }
    if let Some(running) = &view.running {
        println!(
            "  running: {} ({}, {} of {})",
            running.name,
            running.phase,
            bytesize::ByteSize(running.done),
            bytesize::ByteSize(running.total)
        );
    }
    match &view.last {
        Some(last) => match &last.error {
            None => println!(
                "  last: {} at {} ({}): {} files, {}, secrets {}",
                last.name,
                last.finished,
                last.trigger,
                last.files,
                bytesize::ByteSize(last.archive_bytes),
                last.secrets
            ),
            Some(error) => println!(
                "  last: FAILED at {} ({}): {error}",
                last.finished, last.trigger
            ),
        },
        None => println!("  last: none since the host started"),
    }
    for archive in &view.archives {
        println!(
            "  kept: {} ({})",
            archive.name,
            bytesize::ByteSize(archive.bytes)
        );
    }
    Ok(())
}

/// The passphrase: from its file, or asked for on the terminal (twice when
/// it seals something new).
fn passphrase(source: &PassphraseSource, confirm: bool) -> Result<SecretString> {
    if let Some(file) = &source.file {
        return backup::secrets::read_passphrase_file(file);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "the services' secrets are sealed under a passphrase: give --passphrase-file FILE, \
             or --no-secrets to leave them out"
        );
    }
    let first = rpassword::prompt_password("passphrase for the services' secrets: ")?;
    if first.is_empty() {
        bail!("the passphrase is empty");
    }
    if confirm && rpassword::prompt_password("again: ")? != first {
        bail!("the two passphrases differ");
    }
    Ok(first.into())
}

fn partial_of(to: &Path) -> PathBuf {
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    to.with_file_name(format!(".{name}.partial"))
}

fn new_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

fn draw(bar: &ProgressBar, phase: &str, done: u64, total: u64) {
    bar.set_message(phase.to_string());
    bar.set_length(total.max(done));
    bar.set_position(done);
}

/// Draws `progress` on stderr until it is finished.
fn follow(progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bar = new_bar();
        loop {
            let ProgressView { phase, done, total } = progress.view();
            if phase == Phase::Finished {
                bar.finish_and_clear();
                return;
            }
            draw(&bar, phase.label(), done, total);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
