//! The service catalog: which services are installed, kept in the root's
//! SQLite store, with their packages and working directories on disk.
//!
//! Every change is staged first and made visible by one rename plus one
//! transaction, so a crash or a bad package never leaves half an install.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::manifest::Manifest;
use crate::package::{Capabilities, Package};
use crate::root::LockerRoot;

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
    pub capabilities: Capabilities,
    pub installed_at: String,
    /// Stopped by the owner: requests are refused until it is started again.
    pub stopped: bool,
}

pub struct Catalog {
    root: LockerRoot,
    db: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS services (
    name         TEXT PRIMARY KEY,
    manifest     TEXT NOT NULL,
    digest       TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    installed_at TEXT NOT NULL,
    stopped      INTEGER NOT NULL DEFAULT 0
);";

impl Catalog {
    /// Opens the catalog of a root, and clears what an interrupted install left.
    pub fn open(root: &LockerRoot) -> Result<Catalog> {
        let db = root.open_database()?;
        db.execute_batch(SCHEMA)
            .context("cannot create the catalog tables")?;
        let catalog = Catalog {
            root: root.clone(),
            db: Mutex::new(db),
        };
        catalog.sweep()?;
        Ok(catalog)
    }

    pub fn root(&self) -> &LockerRoot {
        &self.root
    }

    pub fn list(&self) -> Result<Vec<InstalledService>> {
        let db = self.db.lock().unwrap();
        let mut statement = db.prepare(
            "SELECT name, manifest, digest, capabilities, installed_at, stopped FROM services ORDER BY name",
        )?;
        let rows = statement.query_map([], row_to_service)?;
        rows.map(|row| row?).collect()
    }

    pub fn get(&self, name: &str) -> Result<Option<InstalledService>> {
        let db = self.db.lock().unwrap();
        let row = db
            .query_row(
                "SELECT name, manifest, digest, capabilities, installed_at, stopped FROM services WHERE name = ?1",
                [name],
                row_to_service,
            )
            .optional()?;
        row.transpose()
    }

    pub fn require(&self, name: &str) -> Result<InstalledService> {
        self.get(name)?
            .ok_or_else(|| CatalogError::NotInstalled(name.to_string()).into())
    }

    /// The installed component file of a service.
    pub fn component_path(&self, service: &InstalledService) -> PathBuf {
        self.root
            .package_dir(&service.manifest.name)
            .join(&service.manifest.component)
    }

    /// Installs a checked package. On any error the root is left as it was.
    pub fn install(&self, package: &Package) -> Result<InstalledService> {
        let name = &package.manifest.name;
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

        // Stage the package where nothing reads it, then move it in place.
        let staging = tempfile::Builder::new()
            .prefix(&format!("install-{name}-"))
            .tempdir_in(self.root.tmp_dir())
            .context("cannot create a staging folder")?;
        std::fs::write(
            staging.path().join("locker.toml"),
            package.manifest.to_toml(),
        )?;
        let component_file = staging.path().join(&package.manifest.component);
        std::fs::write(&component_file, &package.component)?;
        std::fs::File::open(&component_file)?.sync_all()?;

        let installed = InstalledService {
            manifest: package.manifest.clone(),
            digest: package.digest.clone(),
            capabilities: package.capabilities.clone(),
            installed_at: now_rfc3339(),
            stopped: false,
        };
        let transaction = db.transaction()?;
        transaction.execute(
            "INSERT INTO services (name, manifest, digest, capabilities, installed_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                name,
                installed.manifest.to_toml(),
                installed.digest,
                serde_json::to_string(&installed.capabilities)?,
                installed.installed_at,
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

    /// Removes a service; its working directory and log stay when `keep_data`.
    pub fn uninstall(&self, name: &str, keep_data: bool) -> Result<InstalledService> {
        let service = self.require(name)?;
        let db = self.db.lock().unwrap();
        db.execute("DELETE FROM services WHERE name = ?1", [name])?;
        drop(db);
        // The row is gone, so a leftover folder is only garbage for `sweep`.
        remove_dir_if_present(&self.root.package_dir(name))?;
        if !keep_data {
            remove_dir_if_present(&self.root.work_dir(name))?;
            let _ = std::fs::remove_file(self.root.log_path(name));
        }
        Ok(service)
    }

    /// Records whether the owner stopped the service.
    pub fn set_stopped(&self, name: &str, stopped: bool) -> Result<InstalledService> {
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

    /// Removes staging leftovers and package folders that no catalog row claims.
    fn sweep(&self) -> Result<()> {
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

type RowResult = Result<InstalledService>;

fn row_to_service(row: &rusqlite::Row<'_>) -> rusqlite::Result<RowResult> {
    let name: String = row.get(0)?;
    let manifest_text: String = row.get(1)?;
    let digest: String = row.get(2)?;
    let capabilities_json: String = row.get(3)?;
    let installed_at: String = row.get(4)?;
    let stopped: bool = row.get(5)?;
    Ok((|| {
        let manifest = Manifest::parse(&manifest_text, &format!("of installed service {name}"))?;
        let capabilities = serde_json::from_str(&capabilities_json)
            .with_context(|| format!("corrupt capabilities of installed service {name}"))?;
        Ok(InstalledService {
            manifest,
            digest,
            capabilities,
            installed_at,
            stopped,
        })
    })())
}

fn remove_dir_if_present(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
