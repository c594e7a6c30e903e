//! The schema of the root's SQLite database, versioned: `PRAGMA user_version`
//! holds the number of migrations applied, and [`migrate`] applies the rest
//! in order, in one transaction, whenever a connection is opened.
//!
//! A migration is never edited once released: a change is a new entry at the
//! end. Migration 1 is the schema every root had before versioning; it uses
//! `IF NOT EXISTS`, so a root made then (at version 0, tables present) opens
//! unchanged (`tests/fixtures/root-017955c` is one such root).

use anyhow::{Context, Result, bail};
use rusqlite::Connection;

/// Every migration, in order; the schema's version is how many are applied.
const MIGRATIONS: &[&str] = &[
    // 1: the catalog, events and deliveries, jobs.
    "
CREATE TABLE IF NOT EXISTS services (
    name         TEXT PRIMARY KEY,
    manifest     TEXT NOT NULL,
    digest       TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    installed_at TEXT NOT NULL,
    stopped      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic       TEXT NOT NULL,
    source      TEXT NOT NULL,
    time        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    subscribers INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_topic ON events(topic, seq);
CREATE INDEX IF NOT EXISTS events_unhandled ON events(seq) WHERE subscribers = 0;
CREATE TABLE IF NOT EXISTS deliveries (
    subscriber TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'dead')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    PRIMARY KEY (subscriber, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    service        TEXT NOT NULL,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('cron', 'at')),
    spec           TEXT NOT NULL,
    payload        TEXT NOT NULL,
    from_manifest  INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    next_run       INTEGER,
    runs           INTEGER NOT NULL DEFAULT 0,
    failures       INTEGER NOT NULL DEFAULT 0,
    skipped        INTEGER NOT NULL DEFAULT 0,
    last_scheduled INTEGER,
    last_started   INTEGER,
    last_finished  INTEGER,
    last_attempts  INTEGER,
    last_error     TEXT,
    UNIQUE (service, name)
);",
    // 2: the owner's password, set-up codes, login sessions and API tokens.
    // Secrets are stored as SHA-256 hashes (the password as argon2id).
    "
CREATE TABLE owner (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    password   TEXT NOT NULL,
    changed_at INTEGER NOT NULL
);
CREATE TABLE setup_codes (
    hash       TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    client     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL
);
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL,
    scope      TEXT NOT NULL,
    label      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used  INTEGER
);",
    // 3: when a service, as installed or upgraded last, first loaded
    // (`locker/service.online` is published once for each).
    "ALTER TABLE services ADD COLUMN online_at TEXT;",
    // 4: the owner's settings for each service (`locker config`); a secret's
    // value is sealed with the root's `secrets.key`.
    "
CREATE TABLE config_values (
    service TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   BLOB NOT NULL,
    sealed  INTEGER NOT NULL,
    set_at  TEXT NOT NULL,
    PRIMARY KEY (service, key)
) WITHOUT ROWID;",
    // 5: the publisher key trusted for each package name, pinned on its
    // first install from a registry (`locker trust`).
    "
CREATE TABLE trusted_publishers (
    package     TEXT PRIMARY KEY,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    source      TEXT NOT NULL,
    trusted_at  TEXT NOT NULL
) WITHOUT ROWID;",
    // 6: where a service's package came from, when from a registry: the
    // repository, the exact digest, and who signed it (JSON; NULL for a
    // package folder).
    "ALTER TABLE services ADD COLUMN origin TEXT;",
    // 7: the owner's logins to registries the host pulls from (`locker
    // registry login`); the password sealed with the root's `secrets.key`.
    "
CREATE TABLE registry_logins (
    registry TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    password BLOB NOT NULL,
    saved_at TEXT NOT NULL
) WITHOUT ROWID;",
    // 8: the owner's passkeys (WebAuthn credentials: public keys, never a
    // secret) and the user handle they were registered under.
    "
CREATE TABLE passkeys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    credential TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used  INTEGER
) WITHOUT ROWID;
CREATE TABLE passkey_user (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    handle TEXT NOT NULL
);",
];

/// The version a root has once this build has opened it.
pub const VERSION: usize = MIGRATIONS.len();

/// Brings the database to [`VERSION`]; refuses one made by a newer build.
pub fn migrate(db: &mut Connection) -> Result<()> {
    apply(db, MIGRATIONS)
}

fn apply(db: &mut Connection, migrations: &[&str]) -> Result<()> {
    let current = version(db)?;
    if current == migrations.len() {
        return Ok(());
    }
    // IMMEDIATE: two processes opening a root at once migrate it once.
    let transaction = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current = version(&transaction)?;
    if current > migrations.len() {
        bail!(
            "the locker root's database is at schema version {current}, newer than this build \
             knows ({}); use the Locker that made it, or a newer one",
            migrations.len()
        );
    }
    for (index, sql) in migrations.iter().enumerate().skip(current) {
        transaction
            .execute_batch(sql)
            .with_context(|| format!("cannot apply schema migration {}", index + 1))?;
    }
    transaction.pragma_update(None, "user_version", migrations.len() as i64)?;
    transaction
        .commit()
        .context("cannot record the schema version")?;
    if current > 0 {
        tracing::info!(
            from = current,
            to = migrations.len(),
            "migrated the root's database"
        );
    }
    Ok(())
}

fn version(db: &Connection) -> Result<usize> {
    let version: i64 = db.pragma_query_value(None, "user_version", |row| row.get(0))?;
    Ok(version.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_in_order_and_a_newer_database_is_refused() {
        let mut db = Connection::open_in_memory().unwrap();
        let steps = [
            "CREATE TABLE a (x INTEGER);",
            "ALTER TABLE a ADD COLUMN y INTEGER; INSERT INTO a VALUES (1, 2);",
        ];
        apply(&mut db, &steps[..1]).unwrap();
        assert_eq!(version(&db).unwrap(), 1);
        apply(&mut db, &steps).unwrap();
        apply(&mut db, &steps).unwrap();
        assert_eq!(version(&db).unwrap(), 2);
        let rows: i64 = db
            .query_row("SELECT COUNT(*) FROM a", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1, "the second migration ran once");
        let error = apply(&mut db, &steps[..1]).unwrap_err().to_string();
        assert!(error.contains("schema version 2"), "{error}");
    }

    #[test]
    fn a_database_made_before_versioning_takes_migration_one_unchanged() {
        let mut db = Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE services (name TEXT PRIMARY KEY, manifest TEXT NOT NULL, \
             digest TEXT NOT NULL, capabilities TEXT NOT NULL, installed_at TEXT NOT NULL, \
             stopped INTEGER NOT NULL DEFAULT 0);
             INSERT INTO services VALUES ('a', 'm', 'd', '{}', 't', 0);",
        )
        .unwrap();
        migrate(&mut db).unwrap();
        assert_eq!(version(&db).unwrap(), VERSION);
        let kept: String = db
            .query_row("SELECT name FROM services", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, "a");
    }
}
