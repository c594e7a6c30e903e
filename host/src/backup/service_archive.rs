//! One service's folder as an archive: exported for the owner to keep or
//! to use elsewhere (`super::export`), imported back into a stopped service.
//!
//! An import checks the whole archive before it touches anything, unpacks
//! it under `tmp/`, and then swaps it for the service's folder: the service
//! sees either its old folder or the imported one, never a mix.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::archive::{self, ArchiveHeader, ArchiveKind};
use super::restore::unpack;
use super::{Phase, Progress};
use crate::package::manifest::validate_service_name;
use crate::store::LockerRoot;

/// Whether a service export may hold `path`: only its own folder.
fn allowed_in_export(header: &ArchiveHeader, path: &Path) -> bool {
    let Some(service) = &header.service else {
        return false;
    };
    header.kind == ArchiveKind::Service
        && validate_service_name(service).is_ok()
        && path.starts_with(Path::new("services").join(service))
}

/// What an import put in place.
#[derive(Debug)]
pub struct Imported {
    /// The service the archive was exported from.
    pub from: String,
    pub files: u64,
    pub bytes: u64,
}

/// Replaces service `name`'s folder with the export at `archive_path`. The
/// caller makes sure the service is installed and stopped.
pub fn import(
    root: &LockerRoot,
    name: &str,
    archive_path: &Path,
    progress: &Progress,
) -> Result<Imported> {
    let size = std::fs::metadata(archive_path)
        .with_context(|| format!("cannot open {}", archive_path.display()))?
        .len();
    let header = archive::peek(archive_path)?;
    let Some(from) = header
        .service
        .clone()
        .filter(|_| header.kind == ArchiveKind::Service)
    else {
        bail!(
            "{} is a backup of a whole locker, not the export of one service: restore it with \
             `locker restore`",
            archive_path.display()
        );
    };
    progress.begin(Phase::Checking, size);
    archive::read(archive_path, progress, allowed_in_export, |_, _, _| Ok(()))?;

    let unpacked = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(root.tmp_dir())
        .context("cannot make a folder to unpack into")?;
    let folder = Path::new("services").join(&from);
    progress.begin(Phase::Unpacking, size);
    archive::read(
        archive_path,
        progress,
        allowed_in_export,
        |_, path, entry| {
            let inner = Path::new(path)
                .strip_prefix(&folder)
                .expect("checked by allowed_in_export");
            if inner.as_os_str().is_empty() {
                return Ok(());
            }
            unpack(unpacked.path(), &inner.to_string_lossy(), entry)
        },
    )?;

    let work_dir = root.work_dir(name);
    let retired = root.tmp_dir().join(format!("import-old-{name}"));
    let _ = std::fs::remove_dir_all(&retired);
    if work_dir.exists() {
        std::fs::rename(&work_dir, &retired)
            .with_context(|| format!("cannot move {} aside", work_dir.display()))?;
    }
    if let Err(e) = std::fs::rename(unpacked.path(), &work_dir) {
        // Put the old folder back: the import did not happen.
        let _ = std::fs::rename(&retired, &work_dir);
        return Err(e).with_context(|| format!("cannot move the import to {}", work_dir.display()));
    }
    let _ = unpacked.keep();
    let _ = std::fs::remove_dir_all(&retired);
    progress.begin(Phase::Finished, 0);
    Ok(Imported {
        from,
        files: header.files,
        bytes: header.bytes,
    })
}
