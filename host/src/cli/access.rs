//! How a command reaches a root: through the host serving it, or directly
//! under the root's lock when none does.

use std::time::Duration;

use anyhow::{Context, Result};

use super::Target;
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

pub(super) fn access(target: &Target) -> Result<Access> {
    if let Some(url) = &target.url {
        let token = target
            .token
            .as_deref()
            .context("--url needs --token: an API token (`locker token create` makes one)")?;
        return Ok(Access::Host(AdminClient::new(url, token)?));
    }
    let root = LockerRoot::open(&target.root)?;
    Ok(match root.lock_or_find_host(Duration::from_secs(30))? {
        RootAccess::Served(record) => {
            let token = match &target.token {
                Some(token) => token.clone(),
                None => read_cli_token(&root)?,
            };
            Access::Host(AdminClient::local(&record, &token)?)
        }
        RootAccess::Offline(lock) => Access::Offline {
            catalog: SqliteCatalog::open(&root)?,
            _lock: lock,
        },
    })
}

/// The admin token `locker serve` leaves in the root for the CLI.
fn read_cli_token(root: &LockerRoot) -> Result<String> {
    let path = root.cli_token_path();
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: the host serving this root writes it there for the CLI \
             (run this as the user who runs `locker serve`, or pass --token)",
            path.display()
        )
    })?;
    Ok(token.trim().to_string())
}

/// The status of a service when no host runs it: nothing is loaded.
pub(super) fn offline_status(installed: InstalledService) -> ServiceStatus {
    let settings = Settings::offline(&installed.manifest);
    unloaded_status(&installed, settings)
}
