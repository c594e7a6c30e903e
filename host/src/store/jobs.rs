//! Jobs in the root's SQLite database, written through a [`GroupCommit`]
//! thread so that thousands of job runs a second share their commits.
//!
//! ```text
//! jobs(id, service, name, kind, spec, payload, from_manifest, created_at,
//!      next_run,                       ms since the epoch; NULL: will not run again
//!      runs, failures, skipped,        counters
//!      last_*)                         the last run: scheduled, started, finished, result
//! ```
//!
//! `next_run` only moves forward when a run has finished, so a run cut
//! short by a crash runs again (once) when the host comes back.

use anyhow::Result;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::group_commit::GroupCommit;
use super::root::LockerRoot;
use crate::api::{JobView, RunView};
use crate::clock::{from_millis, now_rfc3339, rfc3339};
use crate::package::job_spec::When;

const COLUMNS: &str = "id, service, name, kind, spec, payload, from_manifest, created_at, next_run, \
     runs, failures, skipped, last_scheduled, last_started, last_finished, last_attempts, last_error";

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: i64,
    pub service: String,
    pub name: String,
    pub when: When,
    /// JSON text.
    pub payload: String,
    pub from_manifest: bool,
    pub created_at: String,
    /// Milliseconds since the epoch; `None` once a one-shot job has run.
    pub next_run: Option<i64>,
    pub runs: u64,
    pub failures: u64,
    pub skipped: u64,
    pub last_run: Option<RunRecord>,
}

/// How a run (all its attempts at one scheduled time) went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Milliseconds since the epoch, as all times here.
    pub scheduled: i64,
    pub started: i64,
    pub finished: i64,
    pub attempts: u32,
    /// `None` when it succeeded.
    pub error: Option<String>,
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub service: String,
    pub name: String,
    pub when: When,
    pub payload: String,
    pub from_manifest: bool,
    pub next_run: Option<i64>,
}

/// Where jobs are kept. A second backend is another implementation.
#[async_trait::async_trait]
pub trait JobStore: Send + Sync {
    /// Stores a new job; `Ok(None)` if the service has a job of that name.
    /// A finished one-shot job of that name created at run time is replaced.
    async fn insert(&self, job: NewJob) -> Result<Option<JobRecord>>;
    async fn delete(&self, id: i64) -> Result<()>;
    /// Makes a service's stored jobs match its manifest: declared jobs are
    /// added (at their `next_run`), changed or removed (a run-time job whose
    /// name a manifest now declares gives way); its run-time jobs stay.
    /// Returns all its jobs.
    async fn sync_manifest(&self, service: &str, declared: Vec<NewJob>) -> Result<Vec<JobRecord>>;
    async fn delete_service(&self, service: &str) -> Result<()>;
    /// Records a finished run. Not awaited: a run whose record is lost in a
    /// crash runs again, which at-least-once allows.
    fn finished(&self, id: i64, run: RunRecord, next_run: Option<i64>);
    fn skipped(&self, id: i64);
}

/// The jobs of a root's database, written through a [`GroupCommit`]
/// thread; cheap to clone.
#[derive(Clone)]
pub struct SqliteJobStore {
    writer: GroupCommit,
}

impl SqliteJobStore {
    /// Opens the root's jobs; returns them all as well.
    pub fn open(root: &LockerRoot) -> Result<(SqliteJobStore, Vec<JobRecord>)> {
        let db = root.open_database()?;
        let jobs = all_jobs(&db)?;
        let writer = GroupCommit::start("locker-jobs-db", db)?;
        Ok((SqliteJobStore { writer }, jobs))
    }
}

#[async_trait::async_trait]
impl JobStore for SqliteJobStore {
    async fn insert(&self, job: NewJob) -> Result<Option<JobRecord>> {
        self.writer
            .call(move |db| {
                db.execute(
                    "DELETE FROM jobs WHERE service = ?1 AND name = ?2 AND kind = 'at' \
                     AND next_run IS NULL AND from_manifest = 0",
                    params![job.service, job.name],
                )?;
                let inserted = db.execute(
                    "INSERT INTO jobs (service, name, kind, spec, payload, from_manifest, created_at, next_run) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (service, name) DO NOTHING",
                    params![
                        job.service,
                        job.name,
                        job.when.kind(),
                        job.when.text(),
                        job.payload,
                        job.from_manifest,
                        now_rfc3339(),
                        job.next_run,
                    ],
                )?;
                if inserted == 0 {
                    return Ok(None);
                }
                job_by_id(db, db.last_insert_rowid())
            })
            .await
    }

    async fn delete(&self, id: i64) -> Result<()> {
        self.writer
            .call_unguarded(move |db| {
                db.execute("DELETE FROM jobs WHERE id = ?1", [id])?;
                Ok(())
            })
            .await
    }

    async fn sync_manifest(&self, service: &str, declared: Vec<NewJob>) -> Result<Vec<JobRecord>> {
        let service = service.to_string();
        self.writer
            .call(move |db| {
                let existing = jobs_of(db, &service)?;
                for stale in existing.iter().filter(|job| {
                    job.from_manifest && !declared.iter().any(|d| d.name == job.name)
                }) {
                    db.execute("DELETE FROM jobs WHERE id = ?1", [stale.id])?;
                }
                for job in &declared {
                    let current = existing.iter().find(|e| e.name == job.name);
                    match current {
                        Some(current) if current.from_manifest && current.when == job.when => {
                            if current.payload != job.payload {
                                db.execute(
                                    "UPDATE jobs SET payload = ?2 WHERE id = ?1",
                                    params![current.id, job.payload],
                                )?;
                            }
                            continue;
                        }
                        Some(current) => {
                            db.execute("DELETE FROM jobs WHERE id = ?1", [current.id])?;
                        }
                        None => {}
                    }
                    db.execute(
                        "INSERT INTO jobs (service, name, kind, spec, payload, from_manifest, created_at, next_run) \
                         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7)",
                        params![
                            service,
                            job.name,
                            job.when.kind(),
                            job.when.text(),
                            job.payload,
                            now_rfc3339(),
                            job.next_run,
                        ],
                    )?;
                }
                jobs_of(db, &service)
            })
            .await
    }

    async fn delete_service(&self, service: &str) -> Result<()> {
        let service = service.to_string();
        self.writer
            .call_unguarded(move |db| {
                db.execute("DELETE FROM jobs WHERE service = ?1", [service])?;
                Ok(())
            })
            .await
    }

    fn finished(&self, id: i64, run: RunRecord, next_run: Option<i64>) {
        self.writer.submit("a job run", move |db| {
            db.execute(
                "UPDATE jobs SET next_run = ?2, \
                 runs = runs + 1, failures = failures + ?3, \
                 last_scheduled = ?4, last_started = ?5, last_finished = ?6, \
                 last_attempts = ?7, last_error = ?8 WHERE id = ?1",
                params![
                    id,
                    next_run,
                    run.error.is_some() as i64,
                    run.scheduled,
                    run.started,
                    run.finished,
                    run.attempts,
                    run.error,
                ],
            )?;
            Ok(())
        });
    }

    fn skipped(&self, id: i64) {
        self.writer.submit("a skipped job tick", move |db| {
            db.execute("UPDATE jobs SET skipped = skipped + 1 WHERE id = ?1", [id])?;
            Ok(())
        });
    }
}

/// Every stored job, read without a host (for `locker jobs` on an idle root).
pub fn read_all(root: &LockerRoot) -> Result<Vec<JobRecord>> {
    all_jobs(&root.open_database()?)
}

fn all_jobs(db: &Connection) -> Result<Vec<JobRecord>> {
    query(
        db,
        &format!("SELECT {COLUMNS} FROM jobs ORDER BY service, name"),
        [],
    )
}

fn jobs_of(db: &Connection, service: &str) -> Result<Vec<JobRecord>> {
    query(
        db,
        &format!("SELECT {COLUMNS} FROM jobs WHERE service = ?1 ORDER BY name"),
        [service],
    )
}

fn job_by_id(db: &Connection, id: i64) -> Result<Option<JobRecord>> {
    db.query_row(
        &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
        [id],
        row_to_job,
    )
    .optional()?
    .transpose()
}

fn query(db: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<JobRecord>> {
    let mut statement = db.prepare(sql)?;
    let rows = statement.query_map(params, row_to_job)?;
    rows.map(|row| row?).collect()
}

fn row_to_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<JobRecord>> {
    let when = match When::from_parts(&row.get::<_, String>(3)?, row.get(4)?) {
        Ok(when) => when,
        Err(e) => return Ok(Err(e)),
    };
    let last_scheduled: Option<i64> = row.get(12)?;
    let last_run = match last_scheduled {
        Some(scheduled) => Some(RunRecord {
            scheduled,
            started: row.get(13)?,
            finished: row.get(14)?,
            attempts: row.get(15)?,
            error: row.get(16)?,
        }),
        None => None,
    };
    Ok(Ok(JobRecord {
        id: row.get(0)?,
        service: row.get(1)?,
        name: row.get(2)?,
        when,
        payload: row.get(5)?,
        from_manifest: row.get(6)?,
        created_at: row.get(7)?,
        next_run: row.get(8)?,
        runs: row.get::<_, i64>(9)? as u64,
        failures: row.get::<_, i64>(10)? as u64,
        skipped: row.get::<_, i64>(11)? as u64,
        last_run,
    }))
}

impl JobRecord {
    /// The job as the owner sees it.
    pub fn view(&self, running: bool, waiting_for_start: bool) -> JobView {
        JobView {
            service: self.service.clone(),
            name: self.name.clone(),
            kind: self.when.kind().into(),
            schedule: self.when.text().into(),
            payload: self.payload.clone(),
            from_manifest: self.from_manifest,
            next_run: self.next_run.map(|t| rfc3339(from_millis(t))),
            running,
            waiting_for_start,
            runs: self.runs,
            failures: self.failures,
            skipped: self.skipped,
            last_run: self.last_run.as_ref().map(RunView::from),
        }
    }
}

impl From<&RunRecord> for RunView {
    fn from(run: &RunRecord) -> RunView {
        RunView {
            scheduled: rfc3339(from_millis(run.scheduled)),
            started: rfc3339(from_millis(run.started)),
            finished: rfc3339(from_millis(run.finished)),
            late_ms: run.started - run.scheduled,
            took_ms: run.finished - run.started,
            attempts: run.attempts,
            result: if run.error.is_none() { "ok" } else { "error" }.into(),
            error: run.error.clone(),
        }
    }
}
