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
use crate::changes::Changes;
use crate::clock::now_rfc3339;

/// What the sealer binds a registry password to; no service has this name.
const SEALED_AS: &str = "";

pub struct RegistryLogins {
    db: Mutex<Connection>,
    root: LockerRoot,
    /// Loaded when a password is first sealed or opened: a root whose
    /// owner never logs in to a registry gets no key for it.
    sealer: OnceLock<Sealer>,
    /// The registries whose login the owner changed through this host.
    pub announced: Changes<String>,
}

/// A login as the hosts of a cluster share it: the password as it rests,
/// sealed with the `secrets.key` they share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SealedLogin {
    pub username: String,
    pub sealed_password: Vec<u8>,
    pub saved_at: String,
}

impl RegistryLogins {
    pub fn open(root: &LockerRoot) -> Result<RegistryLogins> {
        Ok(RegistryLogins {
            db: Mutex::new(root.open_database()?),
            root: root.clone(),
            sealer: OnceLock::new(),
            announced: Changes::default(),
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
        let sealed_password = self.sealer()?.seal(SEALED_AS, registry, password)?;
        self.put(
            registry,
            &SealedLogin {
                username: username.to_string(),
                sealed_password,
                saved_at: now_rfc3339(),
            },
        )?;
        self.announced.announce(registry.to_string());
        Ok(())
    }

    fn put(&self, registry: &str, login: &SealedLogin) -> Result<()> {
        self.db().execute(
            "INSERT INTO registry_logins (registry, username, password, saved_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (registry) DO UPDATE SET username = ?2, password = ?3, saved_at = ?4",
            params![registry, login.username, login.sealed_password, login.saved_at],
        )?;
        Ok(())
    }

    /// The login kept for `registry`, its password sealed.
    pub fn sealed(&self, registry: &str) -> Result<Option<SealedLogin>> {
        Ok(self
            .db()
            .query_row(
                "SELECT username, password, saved_at FROM registry_logins WHERE registry = ?1",
                params![registry],
                |row| {
                    Ok(SealedLogin {
                        username: row.get(0)?,
                        sealed_password: row.get(1)?,
                        saved_at: row.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Takes a login saved (`Some`) or forgotten (`None`) through another
    /// host of the cluster; its password must open with this root's key.
    pub fn follow(&self, registry: &str, login: Option<&SealedLogin>) -> Result<()> {
        match login {
            Some(login) => {
                self.sealer()?
                    .unseal(SEALED_AS, registry, login.sealed_password.clone())?;
                self.put(registry, login)
            }
            None => self.forget(registry).map(|_| ()),
        }
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
        let removed = self.forget(registry)?;
        self.announced.announce(registry.to_string());
        Ok(removed)
    }

    fn forget(&self, registry: &str) -> Result<bool> {
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
