//! The database in a backup: a snapshot through SQLite's online backup API
//! (a reader's consistent view, taken while the host keeps writing), and
//! the secret rows taken out of a copy that travels without its key.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

/// Copies the database at `from` into a new file `to`, as one consistent
/// snapshot; the copy is one self-contained file (no write-ahead log).
pub fn snapshot(from: &Path, to: &Path) -> Result<()> {
    let source =
        Connection::open(from).with_context(|| format!("cannot open {}", from.display()))?;
    source.busy_timeout(Duration::from_secs(10))?;
    let mut copy =
        Connection::open(to).with_context(|| format!("cannot create {}", to.display()))?;
    {
        let backup = Backup::new(&source, &mut copy)?;
        // All pages in one step: one read transaction, so one point in time.
        loop {
            match backup.step(-1).context("cannot snapshot the database")? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => bail!("cannot snapshot the database: unexpected step result"),
            }
        }
    }
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// Removes from a database copy every value sealed with the root's secrets
/// key (services' secrets, registry passwords), overwriting the freed pages:
/// the copy is for a place without that key.
pub fn leave_out_secrets(db: &Path) -> Result<()> {
    let copy = Connection::open(db).with_context(|| format!("cannot open {}", db.display()))?;
    copy.pragma_update(None, "secure_delete", "ON")?;
    copy.execute_batch(
        "DELETE FROM config_values WHERE sealed = 1;
         DELETE FROM registry_logins;",
    )
    .context("cannot take the secrets out of the database copy")?;
    Ok(())
}

/// Checks a restored database: SQLite finds it whole, and this Locker knows
/// its schema (one from a newer Locker is refused, not half understood).
pub fn check(db: &Path) -> Result<()> {
    let copy = Connection::open(db).with_context(|| format!("cannot open {}", db.display()))?;
    let verdict: String = copy
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .context("the database in the archive cannot be read")?;
    if verdict != "ok" {
        bail!("the database in the archive is damaged: {verdict}");
    }
    let version: i64 = copy.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version as usize > crate::store::schema::VERSION {
        bail!(
            "the database in the archive was made by a newer Locker (schema {version}, this one \
             knows {}); upgrade Locker to restore it",
            crate::store::schema::VERSION
        );
    }
    Ok(())
}
