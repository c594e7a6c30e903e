//! The owner's logins to OCI registries, for the host's pulls (`locker
//! registry login`). A password is sealed with the root's `secrets.key`, as
//! a service's secret is, and bound to its registry: a sealed password
//! moved to another registry's row does not open.

use std::sync::{Mutex, OnceLock};

use anyhow::Result;
use rusqlite::{Connection, OptionalExtension, params};

use super::config::Sealer;
use super::root::LockerRoot;
use crate::api::RegistryLogin;
use crate::clock::now_rfc3339;

/// What the sealer binds a registry password to; no service has this name.
const SEALED_AS: &str = "";

pub struct RegistryLogins {
    db: Mutex<Connection>,
    root: LockerRoot,
    /// Loaded when a password is first sealed or opened: a root whose
    /// owner never logs in to a registry gets no key for it.
    sealer: OnceLock<Sealer>,
}

impl RegistryLogins {
    pub fn open(root: &LockerRoot) -> Result<RegistryLogins> {
        Ok(RegistryLogins {
            db: Mutex::new(root.open_database()?),
            root: root.clone(),
            sealer: OnceLock::new(),
        })
    }

    fn sealer(&self) -> Result<&Sealer> {
        if let Some(sealer) = self.sealer.get() {
            return Ok(sealer);
        }
        let sealer = Sealer::load(&self.root.secrets_key_path(), &self.root.tmp_dir())?;
        Ok(self.sealer.get_or_init(|| sealer))
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn save(&self, registry: &str, username: &str, password: &str) -> Result<()> {
        let sealed = self.sealer()?.seal(SEALED_AS, registry, password)?;
        self.db().execute(
            "INSERT INTO registry_logins (registry, username, password, saved_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (registry) DO UPDATE SET username = ?2, password = ?3, saved_at = ?4",
            params![registry, username, sealed, now_rfc3339()],
        )?;
        Ok(())
    }

    /// The user and password kept for `registry`, if any.
    pub fn login(&self, registry: &str) -> Result<Option<(String, String)>> {
        let row = self
            .db()
            .query_row(
                "SELECT username, password FROM registry_logins WHERE registry = ?1",
                params![registry],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .optional()?;
        row.map(|(user, sealed)| Ok((user, self.sealer()?.unseal(SEALED_AS, registry, sealed)?)))
            .transpose()
    }

    pub fn list(&self) -> Result<Vec<RegistryLogin>> {
        let db = self.db();
        let mut statement = db.prepare(
            "SELECT registry, username, saved_at FROM registry_logins ORDER BY registry",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(RegistryLogin {
                registry: row.get(0)?,
                username: row.get(1)?,
                saved_at: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets the login for `registry`; false when there was none.
    pub fn remove(&self, registry: &str) -> Result<bool> {
        Ok(self.db().execute(
            "DELETE FROM registry_logins WHERE registry = ?1",
            params![registry],
        )? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_sealed_and_bound_to_its_registry() {
        let dir = tempfile::tempdir().unwrap();
        let root = LockerRoot::open(dir.path()).unwrap();
        let logins = RegistryLogins::open(&root).unwrap();
        logins.save("reg.example", "alice", "hunter2").unwrap();
        assert_eq!(
            logins.login("reg.example").unwrap(),
            Some(("alice".into(), "hunter2".into()))
        );
        let db = root.open_database().unwrap();
        let sealed: Vec<u8> = db
            .query_row("SELECT password FROM registry_logins", [], |r| r.get(0))
            .unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        // Moved to another registry's row, it does not open.
        db.execute(
            "INSERT INTO registry_logins VALUES ('evil.example', 'alice', ?1, 'now')",
            params![sealed],
        )
        .unwrap();
        assert!(logins.login("evil.example").is_err());
        assert_eq!(logins.list().unwrap().len(), 2);
        assert!(logins.remove("reg.example").unwrap());
        assert_eq!(logins.login("reg.example").unwrap(), None);
    }
}
