//! How a command reaches a root: through the host serving it, or directly
//! under the root's lock when none does.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::client::AdminClient;
use crate::api::ServiceStatus;
use crate::runtime::service::unloaded_status;
use crate::runtime::settings::Settings;
use crate::store::root::{RootAccess, RootLock};
use crate::store::{InstalledService, LockerRoot, SqliteCatalog, SqliteEventLog};

/// Reaches the root: through the serving host, or directly under its lock.
pub(super) enum Access {
    Host(AdminClient),
    Offline {
        catalog: SqliteCatalog,
        _lock: RootLock,
    },
}

impl Access {
    /// The root's event store, when no host serves it.
    pub(super) fn offline_events(&self) -> Result<Option<SqliteEventLog>> {
        match self {
            Access::Host(_) => Ok(None),
            Access::Offline { catalog, .. } => Ok(Some(SqliteEventLog::open(catalog.root())?)),
        }
    }
}

pub(super) fn access(root_dir: &Path) -> Result<Access> {
    let root = LockerRoot::open(root_dir)?;
    Ok(match root.lock_or_find_host(Duration::from_secs(30))? {
        RootAccess::Served(record) => Access::Host(AdminClient::new(&record.url)),
        RootAccess::Offline(lock) => Access::Offline {
            catalog: SqliteCatalog::open(&root)?,
            _lock: lock,
        },
    })
}

/// The status of a service when no host runs it: nothing is loaded.
pub(super) fn offline_status(installed: InstalledService) -> ServiceStatus {
    let settings = Settings::offline(&installed.manifest);
    unloaded_status(&installed, settings)
}
