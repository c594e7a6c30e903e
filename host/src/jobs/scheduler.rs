//! The scheduler's state: every job in memory in a [`Table`], persisted
//! through a [`JobStore`]; the checks on jobs a service creates at run time;
//! and the bookkeeping of firing and finishing runs. It calls no guest and
//! knows no service beyond its name: the job trigger does that.
//!
//! `next_run` is stored only when a run finishes. So after downtime (or a
//! crash mid-run) a job whose time passed is due at once and runs once,
//! however many ticks it missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use serde::{Deserialize, Serialize};

use super::table::{Job, JobKey, Table};
use crate::api::JobView;
use crate::changes::Changes;
use crate::package::Manifest;
use crate::package::job_spec::{self, Timing, When};
use crate::store::JobStore;
use crate::store::jobs::{JobRecord, NewJob, RunRecord};

/// How jobs are retried and bounded; every field has a default.
#[derive(Debug, Clone)]
pub struct JobPolicy {
    /// Wait after a failed attempt; doubles with each further failure.
    pub first_retry: Duration,
    /// Attempts at one run of a one-shot job (a cron job retries until its next tick).
    pub one_shot_attempts: u32,
    /// The most jobs one service may have.
    pub max_jobs_per_service: usize,
}

impl Default for JobPolicy {
    fn default() -> Self {
        JobPolicy {
            first_retry: Duration::from_secs(1),
            one_shot_attempts: 5,
            max_jobs_per_service: 10_000,
        }
    }
}

/// Why a service's request to create or cancel a job was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidCron(String),
    #[error("{0}")]
    InvalidTime(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("the service already has a job named {0:?}")]
    NameTaken(String),
    #[error("the service has no job named {0:?}")]
    NotFound(String),
    #[error("job {0:?} is declared in the manifest; upgrade the service to change it")]
    DeclaredInManifest(String),
    #[error("the service already has {0} jobs, as many as the host allows")]
    TooManyJobs(u32),
    #[error("cannot store the job: {0}")]
    Storage(String),
}

/// Why the owner's "run it now" was refused.
#[derive(Debug, thiserror::Error)]
pub enum RunNowError {
    #[error("service {service:?} has no job named {name:?}")]
    NotFound { service: String, name: String },
    #[error("job {name:?} of service {service:?} is running; one run at a time")]
    AlreadyRunning { service: String, name: String },
    #[error("service {0:?} is stopped; start it with `locker start {0}` to run its jobs")]
    Stopped(String),
}

/// What the timer knows of a job's service when the job comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceNow {
    /// Not installed (being uninstalled): its jobs are about to go.
    Gone,
    /// Stopped by the owner: the job waits for a start.
    Stopped,
    Ready,
}

/// What became of one due tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// Start this run: the job is marked running.
    Run { key: JobKey, id: i64, due: i64 },
    /// The last run is still going: this tick is skipped (and counted).
    Skipped { key: JobKey, due: i64 },
    /// Its service is stopped: it runs once when the service is started.
    Parked { key: JobKey },
}

pub struct Scheduler {
    store: Arc<dyn JobStore>,
    table: Mutex<Table>,
    wake: Notify,
    pub policy: JobPolicy,
    /// The jobs services created or cancelled at run time through this
    /// host (not those followed from the cluster).
    pub announced: Changes<JobKey>,
}

/// A job a service created at run time, as the hosts of a cluster share it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedJob {
    pub when: When,
    pub payload: String,
}

impl Scheduler {
    /// A scheduler over the stored jobs; nothing fires until a timer asks.
    pub fn new(
        store: Arc<dyn JobStore>,
        records: Vec<JobRecord>,
        policy: JobPolicy,
    ) -> Arc<Scheduler> {
        let mut table = Table::default();
        for record in records {
            match record.when.timing() {
                Ok(timing) => table.insert(Job::new(record, timing)),
                Err(e) => tracing::error!(
                    service = %record.service,
                    "ignoring stored job {:?}: {e:#}",
                    record.name
                ),
            }
        }
        Arc::new(Scheduler {
            store,
            table: Mutex::new(table),
            wake: Notify::new(),
            policy,
            announced: Changes::default(),
        })
    }

    /// Makes a service's jobs match its manifest's `[[schedule]]` (at
    /// install, upgrade and start-up); its run-time jobs stay.
    pub async fn sync_service(&self, manifest: &Manifest) -> Result<()> {
        let service = manifest.name.clone();
        let now = Utc::now();
        let declared = manifest
            .schedule
            .iter()
            .map(|entry| {
                let when = When::Cron(entry.cron.clone());
                let next_run = first_run(&when, now);
                NewJob {
                    service: service.clone(),
                    name: entry.name.clone(),
                    when,
                    payload: entry.payload_json(),
                    from_manifest: true,
                    next_run,
                }
            })
            .collect();
        let records = self.store.sync_manifest(&service, declared).await?;
        let mut table = self.table.lock().unwrap();
        let mut previous: HashMap<i64, Job> = HashMap::new();
        for key in table.keys_of(&service) {
            if let Some(job) = table.remove(&key) {
                previous.insert(job.record.id, job);
            }
        }
        for record in records {
            // A job the store kept (same id) keeps its run-time state: it
            // may be running, with its next tick already moved on.
            let job = match previous.remove(&record.id) {
                Some(old) => Job {
                    record: JobRecord {
                        payload: record.payload,
                        ..old.record
                    },
                    ..old
                },
                None => match record.when.timing() {
                    Ok(timing) => Job::new(record, timing),
                    Err(_) => continue,
                },
            };
            table.insert(job);
        }
        drop(table);
        self.wake.notify_one();
        Ok(())
    }

    /// Removes every job of a service (it was uninstalled).
    pub async fn remove_service(&self, service: &str) -> Result<()> {
        self.store.delete_service(service).await?;
        let mut table = self.table.lock().unwrap();
        for key in table.keys_of(service) {
            let created = table
                .jobs
                .get(&key)
                .is_some_and(|job| !job.record.from_manifest);
            table.remove(&key);
            if created {
                // Gone with its service, on every host.
                self.announced.announce(key);
            }
        }
        Ok(())
    }

    /// The services that have jobs.
    pub fn services(&self) -> Vec<String> {
        self.table.lock().unwrap().services()
    }

    /// Creates a job for `service` at run time.
    pub async fn create(
        &self,
        service: &str,
        name: &str,
        when: When,
        payload: &str,
    ) -> Result<(), ScheduleError> {
        job_spec::validate_name(name).map_err(|e| ScheduleError::InvalidName(format!("{e:#}")))?;
        let timing = when.timing().map_err(|e| match when {
            When::Cron(_) => ScheduleError::InvalidCron(format!("{e:#}")),
            When::At(_) => ScheduleError::InvalidTime(format!("{e:#}")),
        })?;
        let payload = job_spec::validate_payload(payload)
            .map_err(|e| ScheduleError::InvalidJson(format!("{e:#}")))?;
        let key = (service.to_string(), name.to_string());
        {
            let table = self.table.lock().unwrap();
            if let Some(existing) = table.jobs.get(&key)
                && !is_finished_one_shot(&existing.record)
            {
                return Err(ScheduleError::NameTaken(name.into()));
            }
            if table.count_of(service) >= self.policy.max_jobs_per_service
                && !table.jobs.contains_key(&key)
            {
                return Err(ScheduleError::TooManyJobs(
                    self.policy.max_jobs_per_service as u32,
                ));
            }
        }
        let made = self
            .add_created(service, name, SharedJob { when, payload }, timing)
            .await
            .map_err(|e| ScheduleError::Storage(format!("{e:#}")))?;
        if !made {
            return Err(ScheduleError::NameTaken(name.into()));
        }
        self.announced.announce(key);
        Ok(())
    }

    /// Stores and queues a job made at run time; `false` if its name is taken.
    async fn add_created(
        &self,
        service: &str,
        name: &str,
        job: SharedJob,
        timing: Timing,
    ) -> Result<bool> {
        let next_run = timing.first(Utc::now()).map(|t| t.timestamp_millis());
        let record = self
            .store
            .insert(NewJob {
                service: service.into(),
                name: name.into(),
                when: job.when,
                payload: job.payload,
                from_manifest: false,
                next_run,
            })
            .await?;
        let Some(record) = record else {
            return Ok(false);
        };
        self.table.lock().unwrap().insert(Job::new(record, timing));
        self.wake.notify_one();
        Ok(true)
    }

    /// Cancels a job `service` created at run time.
    pub async fn cancel(&self, service: &str, name: &str) -> Result<(), ScheduleError> {
        self.cancel_quietly(service, name).await?;
        self.announced
            .announce((service.to_string(), name.to_string()));
        Ok(())
    }

    async fn cancel_quietly(&self, service: &str, name: &str) -> Result<(), ScheduleError> {
        let key = (service.to_string(), name.to_string());
        let id = {
            let table = self.table.lock().unwrap();
            let job = table
                .jobs
                .get(&key)
                .ok_or_else(|| ScheduleError::NotFound(name.into()))?;
            if job.record.from_manifest {
                return Err(ScheduleError::DeclaredInManifest(name.into()));
            }
            job.record.id
        };
        self.store
            .delete(id)
            .await
            .map_err(|e| ScheduleError::Storage(format!("{e:#}")))?;
        let mut table = self.table.lock().unwrap();
        if table.jobs.get(&key).is_some_and(|job| job.record.id == id) {
            table.remove(&key);
        }
        Ok(())
    }

    /// A job `service` created at run time, as it travels; none if there
    /// is none (or it is the manifest's).
    pub fn shared(&self, (service, name): &JobKey) -> Option<SharedJob> {
        let table = self.table.lock().unwrap();
        let job = table.jobs.get(&(service.clone(), name.clone()))?;
        (!job.record.from_manifest).then(|| SharedJob {
            when: job.record.when.clone(),
            payload: job.record.payload.clone(),
        })
    }

    /// Every job services created at run time.
    pub fn created(&self) -> Vec<JobKey> {
        let table = self.table.lock().unwrap();
        table
            .jobs
            .iter()
            .filter(|(_, job)| !job.record.from_manifest)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Takes a job created (`Some`) or cancelled (`None`) at run time
    /// through another host of the cluster, without announcing it.
    pub async fn follow(&self, (service, name): &JobKey, shared: Option<SharedJob>) -> Result<()> {
        let current = self.shared(&(service.clone(), name.clone()));
        if current == shared {
            return Ok(());
        }
        if current.is_some() {
            self.cancel_quietly(service, name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let Some(job) = shared else {
            return Ok(());
        };
        let timing = job.when.timing()?;
        self.add_created(service, name, job, timing).await?;
        Ok(())
    }

    /// One service's jobs, by name.
    pub fn jobs_of(&self, service: &str) -> Vec<JobView> {
        let table = self.table.lock().unwrap();
        table
            .of_service(service)
            .map(|(_, job)| job.view())
            .collect()
    }

    /// Every job, by service and name.
    pub fn all(&self) -> Vec<JobView> {
        let table = self.table.lock().unwrap();
        table.jobs.values().map(Job::view).collect()
    }

    /// Jobs of a service that came due while it was stopped run now.
    pub fn resume(&self, service: &str) {
        let mut table = self.table.lock().unwrap();
        let parked: Vec<JobKey> = table
            .of_service(service)
            .filter(|(_, job)| job.parked)
            .map(|(key, _)| key.clone())
            .collect();
        for key in parked {
            let job = table.jobs.get_mut(&key).expect("just found");
            job.parked = false;
            let next = job.record.next_run;
            table.set_next_run(&key, next);
        }
        drop(table);
        self.wake.notify_one();
    }

    /// Resolves when the table changed in a way that may move the next due
    /// time. Enable it before looking at the table so no change is missed.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Takes every tick due by `now`: each becomes a run to start, a skip or
    /// a park, and the job's following tick is queued. That tick is computed
    /// after `now`, so ticks missed while the host was down collapse into
    /// one run. Returns what fired and when the next job is due.
    pub fn fire_due(
        &self,
        now: DateTime<Utc>,
        service_now: impl Fn(&str) -> ServiceNow,
    ) -> (Vec<Fired>, Option<i64>) {
        let now_ms = now.timestamp_millis();
        let mut fired = Vec::new();
        let mut table = self.table.lock().unwrap();
        while let Some((due, key)) = table.pop_due(now_ms) {
            let job = table
                .jobs
                .get_mut(&key)
                .expect("a queued job is in the table");
            match service_now(&key.0) {
                ServiceNow::Gone => {
                    job.record.next_run = None;
                    continue;
                }
                ServiceNow::Stopped => {
                    job.parked = true;
                    fired.push(Fired::Parked { key });
                    continue;
                }
                ServiceNow::Ready => {}
            }
            if job.running {
                job.record.skipped += 1;
                self.store.skipped(job.record.id);
                fired.push(Fired::Skipped {
                    key: key.clone(),
                    due,
                });
            } else {
                job.running = true;
                fired.push(Fired::Run {
                    key: key.clone(),
                    id: job.record.id,
                    due,
                });
            }
            // Until the run finishes, the store keeps the time just fired.
            job.record.next_run = None;
            let next = match &job.timing {
                Timing::At(_) => None,
                cron => cron
                    .next_after(now.max(crate::clock::from_millis(due)))
                    .map(|t| t.timestamp_millis())
                    .filter(|next| *next > due),
            };
            table.set_next_run(&key, next);
        }
        (fired, table.next_due())
    }

    /// Marks a job running for the owner's "run it now"; returns its id.
    pub fn claim(&self, key: &JobKey) -> Result<i64, RunNowError> {
        let mut table = self.table.lock().unwrap();
        let job = table
            .jobs
            .get_mut(key)
            .ok_or_else(|| RunNowError::NotFound {
                service: key.0.clone(),
                name: key.1.clone(),
            })?;
        if job.running {
            return Err(RunNowError::AlreadyRunning {
                service: key.0.clone(),
                name: key.1.clone(),
            });
        }
        job.running = true;
        Ok(job.record.id)
    }

    /// The payload of a job, if it still exists.
    pub fn payload_of(&self, key: &JobKey) -> Option<String> {
        let table = self.table.lock().unwrap();
        table.jobs.get(key).map(|job| job.record.payload.clone())
    }

    /// Whether a failed run (`attempts` so far) may try again at `retry_at`:
    /// a cron job while that is before its next tick, a one-shot job a few
    /// times; never a job that was replaced or removed meanwhile.
    pub fn may_retry(&self, key: &JobKey, id: i64, attempts: u32, retry_at: i64) -> bool {
        let table = self.table.lock().unwrap();
        match table.jobs.get(key) {
            Some(job) if job.record.id == id => match job.timing {
                Timing::Cron(_) => job.record.next_run.is_none_or(|next| retry_at < next),
                Timing::At(_) => attempts < self.policy.one_shot_attempts,
            },
            _ => false,
        }
    }

    /// Lets a job run again without recording a run: its tick was run by
    /// another host of the cluster.
    pub fn release(&self, key: &JobKey, id: i64) {
        let mut table = self.table.lock().unwrap();
        if let Some(job) = table.jobs.get_mut(key)
            && job.record.id == id
        {
            job.running = false;
        }
    }

    /// Records a finished run: the job may run again, and its counters,
    /// last run and next time go to the store (not awaited: many runs share
    /// a commit).
    pub fn finish(&self, key: &JobKey, id: i64, run: &RunRecord) {
        self.record_run(key, id, run, |job| job.running = false);
    }

    /// Records a run of a job that goes on running: one of the ticks a
    /// host of a cluster runs in a row.
    pub fn record(&self, key: &JobKey, id: i64, run: &RunRecord) {
        self.record_run(key, id, run, |_| {});
    }

    fn record_run(&self, key: &JobKey, id: i64, run: &RunRecord, then: impl FnOnce(&mut Job)) {
        let mut table = self.table.lock().unwrap();
        if let Some(job) = table.jobs.get_mut(key)
            && job.record.id == id
        {
            job.record.runs += 1;
            job.record.failures += u64::from(run.error.is_some());
            job.record.last_run = Some(run.clone());
            self.store.finished(id, run.clone(), job.record.next_run);
            then(job);
        }
    }

    /// A job's ticks in `(after, until]` (ms), oldest first, at most `limit`.
    pub fn ticks_between(&self, key: &JobKey, after: i64, until: i64, limit: usize) -> Vec<i64> {
        let table = self.table.lock().unwrap();
        let Some(job) = table.jobs.get(key) else {
            return Vec::new();
        };
        let mut ticks = Vec::new();
        let mut from = crate::clock::from_millis(after);
        while ticks.len() < limit
            && let Some(next) = job.timing.next_after(from)
            && next.timestamp_millis() <= until
        {
            ticks.push(next.timestamp_millis());
            from = next;
        }
        ticks
    }
}

fn first_run(when: &When, now: DateTime<Utc>) -> Option<i64> {
    let timing = when.timing().ok()?;
    Some(timing.first(now)?.timestamp_millis())
}

fn is_finished_one_shot(record: &JobRecord) -> bool {
    !record.from_manifest && matches!(record.when, When::At(_)) && record.next_run.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::from_millis;
    use crate::store::{LockerRoot, SqliteJobStore};

    fn scheduler(dir: &std::path::Path) -> Arc<Scheduler> {
        let root = LockerRoot::open(dir.join("root")).unwrap();
        let (store, records) = SqliteJobStore::open(&root).unwrap();
        Scheduler::new(Arc::new(store), records, JobPolicy::default())
    }

    fn key(service: &str, name: &str) -> JobKey {
        (service.into(), name.into())
    }

    #[tokio::test]
    async fn due_jobs_run_once_at_a_time_wait_for_a_stopped_service_and_skip_a_gone_one() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = scheduler(dir.path());
        for (service, name) in [("a", "tick"), ("b", "tick"), ("c", "tick")] {
            jobs.create(service, name, When::Cron("* * * * * *".into()), "{}")
                .await
                .unwrap();
        }
        let states = |name: &str| match name {
            "a" => ServiceNow::Ready,
            "b" => ServiceNow::Stopped,
            _ => ServiceNow::Gone,
        };
        let later = Utc::now() + chrono::TimeDelta::seconds(2);
        let (fired, next) = jobs.fire_due(later, states);
        let id = match &fired[..] {
            [
                Fired::Run { key: run, id, .. },
                Fired::Parked { key: parked },
            ] => {
                assert_eq!((run, parked), (&key("a", "tick"), &key("b", "tick")));
                *id
            }
            other => panic!("unexpected {other:?}"),
        };
        let next = next.expect("a's next tick is queued");
        assert!(
            next > later.timestamp_millis(),
            "missed ticks collapse into one run"
        );

        // While a's run goes on, its next tick is skipped and counted.
        let (fired, _) = jobs.fire_due(from_millis(next), states);
        assert!(matches!(&fired[..], [Fired::Skipped { key: k, .. }] if *k == key("a", "tick")));
        assert_eq!(jobs.jobs_of("a")[0].skipped, 1);

        let run = RunRecord {
            scheduled: next,
            started: next,
            finished: next + 5,
            attempts: 1,
            error: None,
        };
        jobs.finish(&key("a", "tick"), id, &run);
        let a = &jobs.jobs_of("a")[0];
        assert!(!a.running && a.runs == 1 && a.last_run.is_some());

        // b waits, off the queue, until its service is started; c's job is
        // not queued again.
        assert!(jobs.jobs_of("b")[0].waiting_for_start);
        jobs.resume("b");
        let far = from_millis(next) + chrono::TimeDelta::seconds(5);
        let (fired, _) = jobs.fire_due(far, |_| ServiceNow::Ready);
        let mut keys: Vec<_> = fired
            .iter()
            .filter_map(|f| match f {
                Fired::Run { key, .. } => Some(key.0.as_str()),
                _ => None,
            })
            .collect();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(jobs.jobs_of("c")[0].next_run, None);
    }

    #[tokio::test]
    async fn the_owner_runs_a_job_now_once_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = scheduler(dir.path());
        jobs.create("a", "sync", When::Cron("0 0 * * * *".into()), "{}")
            .await
            .unwrap();
        let id = jobs.claim(&key("a", "sync")).unwrap();
        assert!(matches!(
            jobs.claim(&key("a", "sync")),
            Err(RunNowError::AlreadyRunning { .. })
        ));
        assert!(matches!(
            jobs.claim(&key("a", "nothing")),
            Err(RunNowError::NotFound { .. })
        ));
        assert!(jobs.may_retry(&key("a", "sync"), id, 1, Utc::now().timestamp_millis()));
        assert!(
            !jobs.may_retry(&key("a", "sync"), id + 1, 1, 0),
            "a replaced job"
        );
    }
}
