//! The trust store: for each package name, the publisher key pinned on its
//! first install from a registry (Sandstorm's rule: a package's identity is
//! its publisher's key). Every later version must be signed by the same
//! key; only the owner changes that (`locker trust remove`). Keys are kept
//! as the registry crate writes them (base64), with their fingerprint.

use std::sync::Mutex;

use anyhow::{Result, bail};
use rusqlite::{Connection, OptionalExtension, params};

use super::root::LockerRoot;
pub use crate::api::TrustedPublisher;
use crate::changes::Changes;
use crate::clock::now_rfc3339;

pub struct TrustStore {
    db: Mutex<Connection>,
    /// The packages whose pin the owner changed through this host.
    pub announced: Changes<String>,
}

impl TrustStore {
    pub fn open(root: &LockerRoot) -> Result<TrustStore> {
        Ok(TrustStore {
            db: Mutex::new(root.open_database()?),
            announced: Changes::default(),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The key trusted for `package`, if one is.
    pub fn pinned(&self, package: &str) -> Result<Option<TrustedPublisher>> {
        Ok(self
            .db()
            .query_row(
                "SELECT package, public_key, fingerprint, source, trusted_at FROM trusted_publishers WHERE package = ?1",
                params![package],
                row_to_publisher,
            )
            .optional()?)
    }

    /// Pins `public_key` for `package`; refuses if another key is pinned.
    pub fn pin(
        &self,
        package: &str,
        public_key: &str,
        fingerprint: &str,
        source: &str,
    ) -> Result<()> {
        if let Some(pinned) = self.pinned(package)? {
            if pinned.public_key == public_key {
                return Ok(());
            }
            bail!(
                "{package} is trusted from {}, not from {fingerprint}; `locker trust remove {package}` first if the publisher changed keys",
                pinned.fingerprint
            );
        }
        self.db().execute(
            "INSERT INTO trusted_publishers (package, public_key, fingerprint, source, trusted_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![package, public_key, fingerprint, source, now_rfc3339()],
        )?;
        self.announced.announce(package.to_string());
        Ok(())
    }

    pub fn list(&self) -> Result<Vec<TrustedPublisher>> {
        let db = self.db();
        let mut statement = db.prepare(
            "SELECT package, public_key, fingerprint, source, trusted_at FROM trusted_publishers ORDER BY package",
        )?;
        let rows = statement.query_map([], row_to_publisher)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forgets the key pinned for `package`; false when none was.
    pub fn remove(&self, package: &str) -> Result<bool> {
        let removed = self.forget(package)?;
        self.announced.announce(package.to_string());
        Ok(removed)
    }

    fn forget(&self, package: &str) -> Result<bool> {
        Ok(self.db().execute(
            "DELETE FROM trusted_publishers WHERE package = ?1",
            params![package],
        )? > 0)
    }

    /// Takes a pin made (`Some`) or forgotten (`None`) through another
    /// host of the cluster.
    pub fn follow(&self, package: &str, pinned: Option<&TrustedPublisher>) -> Result<()> {
        match pinned {
            Some(pinned) => {
                self.db().execute(
                    "INSERT INTO trusted_publishers (package, public_key, fingerprint, source, trusted_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (package) DO UPDATE SET public_key = ?2, fingerprint = ?3,
                     source = ?4, trusted_at = ?5",
                    params![
                        package,
                        pinned.public_key,
                        pinned.fingerprint,
                        pinned.source,
                        pinned.trusted_at
                    ],
                )?;
            }
            None => {
                self.forget(package)?;
            }
        }
        Ok(())
    }
}

fn row_to_publisher(row: &rusqlite::Row<'_>) -> rusqlite::Result<TrustedPublisher> {
    Ok(TrustedPublisher {
        package: row.get(0)?,
        public_key: row.get(1)?,
        fingerprint: row.get(2)?,
        source: row.get(3)?,
        trusted_at: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_key_stays_until_the_owner_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(&LockerRoot::open(dir.path()).unwrap()).unwrap();
        assert!(store.pinned("notes").unwrap().is_none());
        store
            .pin("notes", "KEY-A", "SHA256:a", "reg/alice/notes")
            .unwrap();
        store
            .pin("notes", "KEY-A", "SHA256:a", "reg/alice/notes")
            .unwrap();
        let refused = store
            .pin("notes", "KEY-B", "SHA256:b", "reg/mallory/notes")
            .unwrap_err();
        assert!(refused.to_string().contains("SHA256:a"), "{refused}");
        assert_eq!(store.pinned("notes").unwrap().unwrap().public_key, "KEY-A");
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(store.remove("notes").unwrap());
        assert!(!store.remove("notes").unwrap());
        store
            .pin("notes", "KEY-B", "SHA256:b", "reg/bob/notes")
            .unwrap();
    }
}
