//! Restoring a backup into an empty root.
//!
//! The archive is read twice. The first read checks all of it (the zstd
//! checksum, every path, every file's hash, the list of sums at the end)
//! and opens the sealed secrets key with the passphrase, writing nothing:
//! a truncated or damaged archive, or a wrong passphrase, leaves the target
//! as it was. The second read unpacks into a folder beside the target,
//! which becomes the root only once everything is in it and the database
//! checks out.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use anyhow::{Context, Result, bail};

use super::archive::{self, ArchiveHeader, ArchiveKind, Entry, SEALED_KEY_NAME, SecretsInArchive};
use super::{DATABASE_NAME, Phase, Progress, ROOT_PARTS, database, secrets};

/// What the owner brings to a restore.
pub struct RestoreOptions {
    /// Opens the sealed secrets, if the backup holds them.
    pub passphrase: Option<SecretString>,
    /// Restore without the secrets even though the backup holds them.
    pub leave_out_secrets: bool,
}

/// What a restore put in place.
#[derive(Debug)]
pub struct Restored {
    pub header: ArchiveHeader,
    pub secrets: bool,
}

/// Whether a root backup may hold `path`.
fn allowed_in_root(header: &ArchiveHeader, path: &Path) -> bool {
    if header.kind != ArchiveKind::Root {
        return false;
    }
    let first = path
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    first == DATABASE_NAME || first == SEALED_KEY_NAME || ROOT_PARTS.contains(&first)
}

/// Restores the root backup at `archive_path` into `target`, which must be
/// absent or empty.
pub fn restore(
    archive_path: &Path,
    target: &Path,
    options: &RestoreOptions,
    progress: &Progress,
) -> Result<Restored> {
    if !super::is_empty_or_absent(target)? {
        bail!(
            "{} is not empty: a backup is restored only into an empty root, so that no \
             locker is overwritten",
            target.display()
        );
    }
    let size = std::fs::metadata(archive_path)
        .with_context(|| format!("cannot open {}", archive_path.display()))?
        .len();
    let header = archive::peek(archive_path)?;
    if header.kind != ArchiveKind::Root {
        bail!(
            "{} is the export of one service ({}), not a backup of a locker: import it with \
             `locker import`",
            archive_path.display(),
            header.service.as_deref().unwrap_or("?")
        );
    }
    let keep_secrets = match (header.secrets, &options.passphrase) {
        (SecretsInArchive::Sealed, _) if options.leave_out_secrets => false,
        (SecretsInArchive::Sealed, Some(_)) => true,
        (SecretsInArchive::Sealed, None) => bail!(
            "this backup holds the services' secrets, sealed under a passphrase: give the \
             passphrase, or restore without the secrets (--no-secrets)"
        ),
        _ => false,
    };

    // First read: check everything, write nothing.
    progress.begin(Phase::Checking, size);
    let mut sealed = None;
    archive::read(archive_path, progress, allowed_in_root, |_, path, entry| {
        if let (SEALED_KEY_NAME, Entry::File(reader)) = (path, entry) {
            let mut bytes = Vec::new();
            reader.take(64 * 1024).read_to_end(&mut bytes)?;
            sealed = Some(bytes);
        }
        Ok(())
    })?;
    let key = match (keep_secrets, sealed, &options.passphrase) {
        (true, Some(sealed), Some(passphrase)) => Some(secrets::open(&sealed, passphrase)?),
        (true, None, _) => bail!("the archive says it holds the secrets, but it does not"),
        _ => None,
    };

    // Second read: unpack beside the target, then move into place.
    let parent = absolute_parent(target)?;
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let unpacked = tempfile::Builder::new()
        .prefix(".locker-restore-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot make a folder in {}", parent.display()))?;
    progress.begin(Phase::Unpacking, size);
    archive::read(archive_path, progress, allowed_in_root, |_, path, entry| {
        if path == SEALED_KEY_NAME {
            return Ok(());
        }
        unpack(unpacked.path(), path, entry)
    })?;
    let database_path = unpacked.path().join(DATABASE_NAME);
    if !database_path.is_file() {
        bail!("the archive holds no database ({DATABASE_NAME}): it is not a whole backup");
    }
    database::check(&database_path)?;
    if header.secrets == SecretsInArchive::Sealed && key.is_none() {
        database::leave_out_secrets(&database_path)?;
    }
    if let Some(key) = &key {
        write_private(&unpacked.path().join("secrets.key"), key)?;
    }
    move_into_place(unpacked, target)?;
    progress.begin(Phase::Finished, 0);
    Ok(Restored {
        header,
        secrets: key.is_some(),
    })
}

/// Writes one archive entry under `dir` (its path was checked by `archive::read`).
pub fn unpack(dir: &Path, path: &str, entry: Entry<'_>) -> Result<()> {
    let to = dir.join(path);
    match entry {
        Entry::Dir => {
            std::fs::create_dir_all(&to).with_context(|| format!("cannot create {}", to.display()))
        }
        Entry::File(reader) => {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&to)
                .with_context(|| format!("cannot create {}", to.display()))?;
            std::io::copy(reader, &mut file)
                .with_context(|| format!("cannot write {}", to.display()))?;
            Ok(())
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

fn absolute_parent(target: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(target)
        .with_context(|| format!("cannot resolve {}", target.display()))?;
    absolute
        .parent()
        .map(Path::to_path_buf)
        .with_context(|| format!("{} has no parent folder", target.display()))
}

/// Makes the unpacked folder the target: renamed to it when the target is
/// absent, its entries moved in when the target is an empty folder.
fn move_into_place(unpacked: tempfile::TempDir, target: &Path) -> Result<()> {
    if !target.exists() {
        let path = unpacked.keep();
        std::fs::rename(&path, target)
            .with_context(|| format!("cannot move the restored root to {}", target.display()))?;
        return Ok(());
    }
    for entry in std::fs::read_dir(unpacked.path())? {
        let entry = entry?;
        let to = target.join(entry.file_name());
        std::fs::rename(entry.path(), &to)
            .with_context(|| format!("cannot move {} into place", to.display()))?;
    }
    Ok(())
}
