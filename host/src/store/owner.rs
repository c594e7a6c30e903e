//! The owner's credentials as the root keeps them: the password (an argon2id
//! hash), one-time set-up codes, login sessions and API tokens. Every
//! secret is stored as its SHA-256 hash, so a copy of the root does not log
//! anyone in. Times are milliseconds since the epoch.
//!
//! The host keeps sessions and tokens in memory too (`owner::Owner`); this
//! store is what survives a restart and what the offline CLI changes.

use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};

use super::root::LockerRoot;

/// A login session as stored: `hash` is the SHA-256 of its cookie's secret.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredSession {
    pub id: String,
    pub hash: String,
    pub client: String,
    pub created_at: i64,
    pub last_seen: i64,
}

/// An API token as stored: `hash` is the SHA-256 of its secret part.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredToken {
    pub id: String,
    pub hash: String,
    pub scope: String,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used: Option<i64>,
}

/// A passkey as stored: `credential` is webauthn-rs's `Passkey` as JSON
/// (its public key and signature counter).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredPasskey {
    pub id: String,
    pub name: String,
    pub credential: String,
    pub created_at: i64,
    pub last_used: Option<i64>,
}

pub struct OwnerStore {
    db: Mutex<Connection>,
}

impl OwnerStore {
    pub fn open(root: &LockerRoot) -> Result<OwnerStore> {
        Ok(OwnerStore {
            db: Mutex::new(root.open_database()?),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The owner's password hash (PHC string), once one is chosen.
    pub fn password(&self) -> Result<Option<String>> {
        self.db()
            .query_row("SELECT password FROM owner WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()
            .context("cannot read the owner's password")
    }

    /// The password hash and when it was set (ms), once one is chosen.
    pub fn password_record(&self) -> Result<Option<(String, i64)>> {
        self.db()
            .query_row(
                "SELECT password, changed_at FROM owner WHERE id = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .context("cannot read the owner's password")
    }

    /// Takes the password hash another host of the cluster set, unless
    /// this one is as new.
    pub fn follow_password(&self, password: &str, changed_at: i64) -> Result<()> {
        self.db().execute(
            "INSERT INTO owner (id, password, changed_at) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET password = ?1, changed_at = ?2
             WHERE changed_at < ?2",
            params![password, changed_at],
        )?;
        Ok(())
    }

    /// Sets the password, uses up `code`, and ends every session, in one
    /// transaction; `false` (nothing changed) if the code is unknown or expired.
    pub fn set_password(&self, code_hash: &str, password: &str, now: i64) -> Result<bool> {
        let mut db = self.db();
        let transaction = db.transaction()?;
        let used = transaction.execute(
            "DELETE FROM setup_codes WHERE hash = ?1 AND expires_at > ?2",
            params![code_hash, now],
        )?;
        if used == 0 {
            return Ok(false);
        }
        transaction.execute(
            "INSERT INTO owner (id, password, changed_at) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET password = ?1, changed_at = ?2",
            params![password, now],
        )?;
        transaction.execute("DELETE FROM sessions", [])?;
        transaction.execute("DELETE FROM setup_codes", [])?;
        transaction
            .commit()
            .context("cannot store the owner's password")?;
        Ok(true)
    }

    /// Records a new set-up code; earlier ones stop working.
    pub fn replace_setup_code(&self, code_hash: &str, expires_at: i64) -> Result<()> {
        let mut db = self.db();
        let transaction = db.transaction()?;
        transaction.execute("DELETE FROM setup_codes", [])?;
        transaction.execute(
            "INSERT INTO setup_codes (hash, expires_at) VALUES (?1, ?2)",
            params![code_hash, expires_at],
        )?;
        transaction.commit().context("cannot store the set-up code")
    }

    /// Whether `code_hash` names a set-up code that has not expired.
    pub fn setup_code_valid(&self, code_hash: &str, now: i64) -> Result<bool> {
        let found: Option<i64> = self
            .db()
            .query_row(
                "SELECT 1 FROM setup_codes WHERE hash = ?1 AND expires_at > ?2",
                params![code_hash, now],
                |row| row.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    pub fn sessions(&self) -> Result<Vec<StoredSession>> {
        let db = self.db();
        let mut statement = db.prepare(
            "SELECT id, hash, client, created_at, last_seen FROM sessions ORDER BY created_at",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(StoredSession {
                id: row.get(0)?,
                hash: row.get(1)?,
                client: row.get(2)?,
                created_at: row.get(3)?,
                last_seen: row.get(4)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
            .context("cannot read the sessions")
    }

    pub fn add_session(&self, session: &StoredSession) -> Result<()> {
        self.db()
            .execute(
                "INSERT INTO sessions (id, hash, client, created_at, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
                params![
                    session.id,
                    session.hash,
                    session.client,
                    session.created_at,
                    session.last_seen
                ],
            )
            .context("cannot store the session")?;
        Ok(())
    }

    pub fn touch_session(&self, id: &str, last_seen: i64) -> Result<()> {
        self.db().execute(
            "UPDATE sessions SET last_seen = ?2 WHERE id = ?1",
            params![id, last_seen],
        )?;
        Ok(())
    }

    /// Removes a session; `false` if there was none of that id.
    pub fn remove_session(&self, id: &str) -> Result<bool> {
        let removed = self
            .db()
            .execute("DELETE FROM sessions WHERE id = ?1", params![id])?;
        Ok(removed > 0)
    }

    pub fn tokens(&self) -> Result<Vec<StoredToken>> {
        let db = self.db();
        let mut statement = db.prepare(
            "SELECT id, hash, scope, label, created_at, expires_at, last_used
             FROM tokens ORDER BY created_at",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(StoredToken {
                id: row.get(0)?,
                hash: row.get(1)?,
                scope: row.get(2)?,
                label: row.get(3)?,
                created_at: row.get(4)?,
                expires_at: row.get(5)?,
                last_used: row.get(6)?,
            })
        })?;
        rows.collect::<Result<_, _>>()
            .context("cannot read the API tokens")
    }

    pub fn add_token(&self, token: &StoredToken) -> Result<()> {
        self.db()
            .execute(
                "INSERT OR IGNORE INTO tokens (id, hash, scope, label, created_at, expires_at, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
                params![
                    token.id,
                    token.hash,
                    token.scope,
                    token.label,
                    token.created_at,
                    token.expires_at
                ],
            )
            .context("cannot store the API token")?;
        Ok(())
    }

    pub fn touch_token(&self, id: &str, last_used: i64) -> Result<()> {
        self.db().execute(
            "UPDATE tokens SET last_used = ?2 WHERE id = ?1",
            params![id, last_used],
        )?;
        Ok(())
    }

    /// Removes a token; `false` if there was none of that id.
    pub fn remove_token(&self, id: &str) -> Result<bool> {
        let removed = self
            .db()
            .execute("DELETE FROM tokens WHERE id = ?1", params![id])?;
        Ok(removed > 0)
    }

    /// Sets a new password (the owner knew the old one) and ends every
    /// session but `keep`, in one transaction.
    pub fn change_password(&self, password: &str, keep: &str, now: i64) -> Result<()> {
        let mut db = self.db();
        let transaction = db.transaction()?;
        let changed = transaction.execute(
            "UPDATE owner SET password = ?1, changed_at = ?2 WHERE id = 1",
            params![password, now],
        )?;
        if changed == 0 {
            anyhow::bail!("the owner has no password to change yet");
        }
        transaction.execute("DELETE FROM sessions WHERE id != ?1", params![keep])?;
        transaction.commit().context("cannot save the new password")
    }

    pub fn passkeys(&self) -> Result<Vec<StoredPasskey>> {
        let db = self.db();
        let mut statement = db.prepare(
            "SELECT id, name, credential, created_at, last_used FROM passkeys ORDER BY created_at",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(StoredPasskey {
                id: row.get(0)?,
                name: row.get(1)?,
                credential: row.get(2)?,
                created_at: row.get(3)?,
                last_used: row.get(4)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()
            .context("cannot read the owner's passkeys")
    }

    pub fn add_passkey(&self, passkey: &StoredPasskey) -> Result<()> {
        self.db()
            .execute(
                "INSERT INTO passkeys (id, name, credential, created_at, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE
                 SET credential = excluded.credential, last_used = excluded.last_used",
                params![
                    passkey.id,
                    passkey.name,
                    passkey.credential,
                    passkey.created_at,
                    passkey.last_used
                ],
            )
            .context("cannot save the passkey")?;
        Ok(())
    }

    /// Records a sign-in with a passkey: its updated counter, and when.
    pub fn use_passkey(&self, id: &str, credential: &str, now: i64) -> Result<()> {
        self.db()
            .execute(
                "UPDATE passkeys SET credential = ?2, last_used = ?3 WHERE id = ?1",
                params![id, credential, now],
            )
            .context("cannot record the passkey's use")?;
        Ok(())
    }

    pub fn remove_passkey(&self, id: &str) -> Result<bool> {
        Ok(self
            .db()
            .execute("DELETE FROM passkeys WHERE id = ?1", params![id])?
            > 0)
    }

    /// The user handle the owner's passkeys are registered under, if made.
    pub fn passkey_user_if_made(&self) -> Result<Option<String>> {
        Ok(self
            .db()
            .query_row("SELECT handle FROM passkey_user WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()?)
    }

    /// Takes the user handle another host of the cluster made.
    pub fn follow_passkey_user(&self, handle: &str) -> Result<()> {
        self.db().execute(
            "INSERT INTO passkey_user (id, handle) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET handle = ?1",
            params![handle],
        )?;
        Ok(())
    }

    /// The user handle the owner's passkeys are registered under, made once.
    pub fn passkey_user(&self, new: impl FnOnce() -> String) -> Result<String> {
        let db = self.db();
        if let Some(handle) = db
            .query_row("SELECT handle FROM passkey_user WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()?
        {
            return Ok(handle);
        }
        let handle = new();
        db.execute(
            "INSERT INTO passkey_user (id, handle) VALUES (1, ?1)",
            params![handle],
        )?;
        Ok(handle)
    }
}
