//! The service catalog: which services are installed, kept in the root's
//! SQLite store, with their packages and working directories on disk.
//!
//! Every change is staged first and made visible by one rename plus one
//! transaction, so a crash or a bad package never leaves half an install.
//! An upgrade swaps package folders: the old one is set aside in `tmp/` as
//! `retired-<name>` until the new row commits, and put back at start-up if
//! the row still names its component (the upgrade never committed). Once
//! it commits, the old package and a copy of the working directory as the
//! upgrade found it become `previous/<name>/`, what `locker rollback`
//! returns to.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::root::LockerRoot;
use super::service_log::ServiceLog;
use crate::clock::now_rfc3339;
use crate::package::{Exports, Manifest, Origin, Package};

/// Beside a package's component: where it came from, so a rollback keeps it.
const ORIGIN_FILE: &str = "origin.json";

/// Errors a caller may want to tell apart (the admin API maps them to statuses).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("service {name:?} is already installed (version {version}); uninstall it first")]
    AlreadyInstalled { name: String, version: String },
    #[error("no service named {0:?} is installed")]
    NotInstalled(String),
}

/// One installed service as the catalog records it.
#[derive(Debug, Clone, Serialize)]
pub struct InstalledService {
    pub manifest: Manifest,
    pub digest: String,
    pub exports: Exports,
    pub installed_at: String,
    /// Stopped by the owner: requests are refused until it is started again.
    pub stopped: bool,
    /// The registry its package came from; `None` for a package folder.
    pub origin: Option<Origin>,
}

impl InstalledService {
    /// A package as the catalog records it, installed now.
    fn of(package: &Package, stopped: bool) -> InstalledService {
        InstalledService {
            manifest: package.manifest.clone(),
            digest: package.digest.clone(),
            exports: package.exports.clone(),
            installed_at: now_rfc3339(),
            stopped,
            origin: package.origin.clone(),
        }
    }
}

/// The installed services: what the supervisor and the offline CLI change
/// and read. Every method blocks (file and database I/O).
pub trait Catalog: Send + Sync {
    fn list(&self) -> Result<Vec<InstalledService>>;
    fn get(&self, name: &str) -> Result<Option<InstalledService>>;
    /// The installed component file of a service.
    fn component_path(&self, service: &InstalledService) -> PathBuf;
    /// Installs a checked package. On any error the root is left as it was.
    fn install(&self, package: &Package) -> Result<InstalledService>;
    /// Replaces an installed service's package with a newer one; its working
    /// directory, log and stopped flag stay. Returns the old and the new.
    fn upgrade(&self, package: &Package) -> Result<(InstalledService, InstalledService)>;
    /// The package the service had before its last upgrade, if one is kept.
    fn previous(&self, name: &str) -> Result<Option<Package>>;
    /// Takes the copy of the working directory made at the last upgrade out
    /// of `previous/` (the rollback's own upgrade replaces what is there);
    /// returns where it now is.
    fn take_previous_data(&self, name: &str) -> Result<Option<PathBuf>>;
    /// Puts `data` (from `take_previous_data`) in place of the service's
    /// working directory.
    fn restore_data(&self, name: &str, data: &std::path::Path) -> Result<()>;
    /// Removes a service; its working directory and log stay when `keep_data`.
    fn uninstall(&self, name: &str, keep_data: bool) -> Result<InstalledService>;
    /// Records whether the owner stopped the service.
    fn set_stopped(&self, name: &str, stopped: bool) -> Result<InstalledService>;
    /// Records that the service, installed as `digest`, loaded; `true` the
    /// first time since its install or last upgrade.
    fn mark_online(&self, name: &str, digest: &str) -> Result<bool>;

    fn require(&self, name: &str) -> Result<InstalledService> {
        self.get(name)?
            .ok_or_else(|| CatalogError::NotInstalled(name.to_string()).into())
    }
}

/// The catalog in the root's SQLite database, packages in `packages/`.
pub struct SqliteCatalog {
    root: LockerRoot,
    db: Mutex<Connection>,
}

impl SqliteCatalog {
    /// Opens the catalog of a root, and clears what an interrupted install left.
    pub fn open(root: &LockerRoot) -> Result<SqliteCatalog> {
        let catalog = SqliteCatalog {
            root: root.clone(),
            db: Mutex::new(root.open_database()?),
        };
        catalog.sweep()?;
        Ok(catalog)
    }

    pub fn root(&self) -> &LockerRoot {
        &self.root
    }

    /// Writes a package where nothing reads it, ready to be moved in place.
    fn stage(&self, package: &Package) -> Result<tempfile::TempDir> {
        let staging = tempfile::Builder::new()
            .prefix(&format!("install-{}-", package.manifest.name))
            .tempdir_in(self.root.tmp_dir())
            .context("cannot create a staging folder")?;
        std::fs::write(
            staging.path().join("locker.toml"),
            package.manifest.to_toml(),
        )?;
        if let Some(origin) = &package.origin {
            std::fs::write(
                staging.path().join(ORIGIN_FILE),
                serde_json::to_vec(origin)?,
            )?;
        }
        let component_file = staging.path().join(&package.manifest.component);
        std::fs::write(&component_file, &package.component)?;
        std::fs::File::open(&component_file)?.sync_all()?;
        Ok(staging)
    }

    /// The package's types agree with the other services' (its own
    /// earlier version aside).
    fn check_types(&self, package: &Package) -> Result<()> {
        let manifest = &package.manifest;
        if manifest.types.is_empty() && manifest.publishes.iter().all(|p| p.data_type().is_none()) {
            // Nothing to check against the others: skip reading them all
            // (which made each install slower as the catalog grew).
            return Ok(());
        }
        let name = &manifest.name;
        let others: Vec<Manifest> = self
            .list()?
            .into_iter()
            .filter(|service| service.manifest.name != *name)
            .map(|service| service.manifest)
            .collect();
        crate::package::types::check_against(&package.manifest, &others)
    }

    /// After an upgrade commits: the retired package and the copy of the
    /// working directory become `previous/<name>/`.
    fn keep_previous(
        &self,
        name: &str,
        retired: &std::path::Path,
        keeping: &std::path::Path,
    ) -> Result<()> {
        std::fs::rename(retired, keeping.join("package"))?;
        let previous = self.root.previous_dir(name);
        remove_dir_if_present(&previous)?;
        std::fs::create_dir_all(previous.parent().expect("under the root"))?;
        std::fs::rename(keeping, &previous)?;
        Ok(())
    }

    fn retired_dir(&self, name: &str) -> PathBuf {
        self.root.tmp_dir().join(format!("retired-{name}"))
    }

    /// Undoes an upgrade cut short, then removes staging leftovers and
    /// package folders that no catalog row claims.
    fn sweep(&self) -> Result<()> {
        for entry in std::fs::read_dir(self.root.tmp_dir())?.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file_name.strip_prefix("retired-")
                && let Some(service) = self.get(name)?
            {
                let component = entry.path().join(&service.manifest.component);
                let still_current = std::fs::read(&component).is_ok_and(|bytes| {
                    crate::package::component::digest_of(&bytes) == service.digest
                });
                if still_current {
                    tracing::warn!(service = %name, "an upgrade did not complete: putting the previous package back");
                    let package_dir = self.root.package_dir(name);
                    remove_dir_if_present(&package_dir)?;
                    std::fs::rename(entry.path(), &package_dir)?;
                }
            }
        }
        for entry in std::fs::read_dir(self.root.tmp_dir())?.flatten() {
            let _ = std::fs::remove_dir_all(entry.path())
                .or_else(|_| std::fs::remove_file(entry.path()));
        }
        for entry in std::fs::read_dir(self.root.packages_dir())?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.get(&name)?.is_none() {
                tracing::warn!(service = %name, "removing a package folder left by an interrupted install");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(())
    }
}

impl Catalog for SqliteCatalog {
    fn list(&self) -> Result<Vec<InstalledService>> {
        let db = self.db.lock().unwrap();
        let mut statement = db.prepare(
            "SELECT name, manifest, digest, capabilities, installed_at, stopped, origin FROM services ORDER BY name",
        )?;
        // Sized once: with ten thousand services, growing by doubling left
        // a 10 MiB buffer behind at the host's start.
        let count: i64 = db.query_row("SELECT COUNT(*) FROM services", [], |row| row.get(0))?;
        let mut services = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for row in statement.query_map([], row_to_service)? {
            services.push(row??);
        }
        Ok(services)
    }

    fn get(&self, name: &str) -> Result<Option<InstalledService>> {
        let db = self.db.lock().unwrap();
        let row = db
            .query_row(
                "SELECT name, manifest, digest, capabilities, installed_at, stopped, origin FROM services WHERE name = ?1",
                [name],
                row_to_service,
            )
            .optional()?;
        row.transpose()
    }

    fn component_path(&self, service: &InstalledService) -> PathBuf {
        self.root
            .package_dir(&service.manifest.name)
            .join(&service.manifest.component)
    }

    fn install(&self, package: &Package) -> Result<InstalledService> {
        let name = &package.manifest.name;
        self.check_types(package)?;
        let mut db = self.db.lock().unwrap();
        if let Some(existing) = db
            .query_row(
                "SELECT manifest FROM services WHERE name = ?1",
                [name],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        {
            let version = Manifest::parse(&existing, "catalog")
                .map(|m| m.version.to_string())
                .unwrap_or_else(|_| "unknown".into());
            return Err(CatalogError::AlreadyInstalled {
                name: name.clone(),
                version,
            }
            .into());
        }

        let staging = self.stage(package)?;
        let installed = InstalledService::of(package, false);
        let transaction = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        transaction.execute(
            "INSERT INTO services (name, manifest, digest, capabilities, installed_at, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                name,
                installed.manifest.to_toml(),
                installed.digest,
                serde_json::to_string(&installed.exports)?,
                installed.installed_at,
                origin_json(&installed.origin)?,
            ],
        )?;
        let package_dir = self.root.package_dir(name);
        // A folder left by a crash between rename and commit is stale: replace it.
        if package_dir.exists() {
            std::fs::remove_dir_all(&package_dir)?;
        }
        std::fs::rename(staging.keep(), &package_dir)
            .with_context(|| format!("cannot move the package to {}", package_dir.display()))?;
        let work_dir = self.root.work_dir(name);
        std::fs::create_dir_all(&work_dir)
            .with_context(|| format!("cannot create {}", work_dir.display()))?;
        if let Err(e) = transaction.commit() {
            let _ = std::fs::remove_dir_all(&package_dir);
            return Err(e).context("cannot record the install");
        }
        Ok(installed)
    }

    fn upgrade(&self, package: &Package) -> Result<(InstalledService, InstalledService)> {
        let name = &package.manifest.name;
        let old = self.require(name)?;
        self.check_types(package)?;
        let staging = self.stage(package)?;
        let new = InstalledService::of(package, old.stopped);
        let mut db = self.db.lock().unwrap();
        let transaction = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        transaction.execute(
            "UPDATE services SET manifest = ?2, digest = ?3, capabilities = ?4, installed_at = ?5, origin = ?6, online_at = NULL WHERE name = ?1",
            params![
                name,
                new.manifest.to_toml(),
                new.digest,
                serde_json::to_string(&new.exports)?,
                new.installed_at,
                origin_json(&new.origin)?,
            ],
        )?;
        let package_dir = self.root.package_dir(name);
        let retired = self.retired_dir(name);
        remove_dir_if_present(&retired)?;
        // The working directory as this upgrade finds it, for a rollback.
        let keeping = self.root.tmp_dir().join(format!("previous-{name}"));
        remove_dir_if_present(&keeping)?;
        std::fs::create_dir_all(&keeping)?;
        copy_tree(&self.root.work_dir(name), &keeping.join("data"))
            .with_context(|| format!("cannot copy the folder of {name} for a rollback"))?;
        std::fs::rename(&package_dir, &retired)
            .with_context(|| format!("cannot set aside {}", package_dir.display()))?;
        let swapped = std::fs::rename(staging.keep(), &package_dir)
            .with_context(|| format!("cannot move the package to {}", package_dir.display()))
            .and_then(|()| transaction.commit().context("cannot record the upgrade"));
        if let Err(e) = swapped {
            let _ = std::fs::remove_dir_all(&package_dir);
            let _ = std::fs::rename(&retired, &package_dir);
            let _ = std::fs::remove_dir_all(&keeping);
            return Err(e);
        }
        // The upgrade stands; keeping what came before is best effort.
        if let Err(error) = self.keep_previous(name, &retired, &keeping) {
            tracing::warn!(service = %name, "the version before the upgrade is not kept: {error:#}");
            let _ = std::fs::remove_dir_all(&retired);
            let _ = std::fs::remove_dir_all(&keeping);
        }
        Ok((old, new))
    }

    fn previous(&self, name: &str) -> Result<Option<Package>> {
        let dir = self.root.previous_dir(name).join("package");
        if !dir.is_dir() {
            return Ok(None);
        }
        let damaged = || format!("the version of {name} kept for a rollback is damaged");
        let manifest = std::fs::read_to_string(dir.join("locker.toml")).with_context(damaged)?;
        let component_name = Manifest::parse(&manifest, "the kept version")
            .with_context(damaged)?
            .component;
        let component = std::fs::read(dir.join(&component_name)).with_context(damaged)?;
        let origin = match std::fs::read(dir.join(ORIGIN_FILE)) {
            Ok(json) => Some(serde_json::from_slice(&json).with_context(damaged)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(damaged),
        };
        let package = Package::installed(&manifest, component, origin, &dir.display().to_string())
            .with_context(damaged)?;
        Ok(Some(package))
    }

    fn take_previous_data(&self, name: &str) -> Result<Option<PathBuf>> {
        let data = self.root.previous_dir(name).join("data");
        if !data.is_dir() {
            return Ok(None);
        }
        let taken = self.root.tmp_dir().join(format!("rollback-data-{name}"));
        remove_dir_if_present(&taken)?;
        std::fs::rename(&data, &taken)
            .with_context(|| format!("cannot take {} aside", data.display()))?;
        Ok(Some(taken))
    }

    fn restore_data(&self, name: &str, data: &std::path::Path) -> Result<()> {
        let work = self.root.work_dir(name);
        let replaced = self.root.tmp_dir().join(format!("replaced-data-{name}"));
        remove_dir_if_present(&replaced)?;
        if work.exists() {
            std::fs::rename(&work, &replaced)
                .with_context(|| format!("cannot set {} aside", work.display()))?;
        }
        std::fs::rename(data, &work)
            .with_context(|| format!("cannot put the kept folder back at {}", work.display()))?;
        remove_dir_if_present(&replaced)
    }

    fn uninstall(&self, name: &str, keep_data: bool) -> Result<InstalledService> {
        let service = self.require(name)?;
        let db = self.db.lock().unwrap();
        db.execute("DELETE FROM services WHERE name = ?1", [name])?;
        // Its settings, inactive ones and secrets too, go with it.
        db.execute("DELETE FROM config_values WHERE service = ?1", [name])?;
        drop(db);
        // The row is gone, so a leftover folder is only garbage for `sweep`.
        remove_dir_if_present(&self.root.package_dir(name))?;
        remove_dir_if_present(&self.root.previous_dir(name))?;
        if !keep_data {
            remove_dir_if_present(&self.root.work_dir(name))?;
            let _ = std::fs::remove_file(self.root.log_path(name));
            let _ = std::fs::remove_file(ServiceLog::new(self.root.log_path(name)).rotated_path());
        }
        Ok(service)
    }

    fn set_stopped(&self, name: &str, stopped: bool) -> Result<InstalledService> {
        let db = self.db.lock().unwrap();
        let changed = db.execute(
            "UPDATE services SET stopped = ?2 WHERE name = ?1",
            params![name, stopped],
        )?;
        drop(db);
        if changed == 0 {
            return Err(CatalogError::NotInstalled(name.to_string()).into());
        }
        self.require(name)
    }

    fn mark_online(&self, name: &str, digest: &str) -> Result<bool> {
        let db = self.db.lock().unwrap();
        let changed = db.execute(
            "UPDATE services SET online_at = ?3 WHERE name = ?1 AND digest = ?2 AND online_at IS NULL",
            params![name, digest, crate::clock::now_rfc3339()],
        )?;
        Ok(changed == 1)
    }
}

type RowResult = Result<InstalledService>;

fn row_to_service(row: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let name: String = row.get(0)?;
    let manifest_text: String = row.get(1)?;
    let digest: String = row.get(2)?;
    let exports_json: String = row.get(3)?;
    let installed_at: String = row.get(4)?;
    let stopped: bool = row.get(5)?;
    let origin: Option<String> = row.get(6)?;
    Ok((|| {
        let manifest = Manifest::parse(&manifest_text, &format!("of installed service {name}"))?;
        let exports = serde_json::from_str(&exports_json)
            .with_context(|| format!("corrupt exports of installed service {name}"))?;
        let origin = origin
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .with_context(|| format!("corrupt origin of installed service {name}"))?;
        Ok(InstalledService {
            manifest,
            digest,
            exports,
            installed_at,
            stopped,
            origin,
        })
    })())
}

fn origin_json(origin: &Option<Origin>) -> Result<Option<String>> {
    Ok(origin.as_ref().map(serde_json::to_string).transpose()?)
}

/// Copies a folder (files and sub-folders; a missing one is an empty copy).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
        // Symlinks cannot be made by a service (WASI offers no way): skipped.
    }
    Ok(())
}

fn remove_dir_if_present(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
