//! The scheduler: cron and one-shot jobs that cold-start their service.
//!
//! Every job is in memory in a table, and its next fire time in a queue
//! ordered by time. One timer task sleeps until the earliest time in the
//! queue (or until a change wakes it), fires what is due, and sleeps again:
//! it never scans the jobs. Firing a job spawns its run: the service is
//! loaded if it is not, a fresh instance gets the job through its
//! `job-handler`, and a failed attempt is retried with backoff while there is
//! time before the job's next tick (a one-shot job: a few attempts).
//!
//! One run of a job at a time: a tick that comes while the last run is still
//! going is skipped, counted and noted in the service's log. A job whose
//! service is stopped waits, and runs once when the service is started.
//!
//! Jobs persist in the root's store ([`JobStore`]); `next_run` is stored only
//! when a run finishes. So after downtime (or a crash mid-run) a job whose
//! time passed is due at once and runs once, however many ticks it missed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::guest_api::{Job as GuestJob, JobHandler};
use crate::guest_call::{self, Instantiated};
use crate::job_spec::{self, Timing, When, from_millis, rfc3339};
use crate::job_store::{JobRecord, JobStore, NewJob, RunRecord};
use crate::manifest::Manifest;
use crate::root::LockerRoot;
use crate::supervisor::Supervisor;

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

/// A job as the admin API and `locker jobs` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub service: String,
    pub name: String,
    /// `cron` or `at`.
    pub kind: String,
    /// The cron expression or the time.
    pub schedule: String,
    pub payload: String,
    pub from_manifest: bool,
    pub next_run: Option<String>,
    pub running: bool,
    /// Due while its service is stopped; runs once when it is started.
    pub waiting_for_start: bool,
    pub runs: u64,
    pub failures: u64,
    pub skipped: u64,
    pub last_run: Option<RunView>,
}

/// One run (all attempts at one scheduled time) as shown to the owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub scheduled: String,
    pub started: String,
    pub finished: String,
    /// How long after its time the run started.
    pub late_ms: i64,
    pub took_ms: i64,
    pub attempts: u32,
    /// `ok` or `error`.
    pub result: String,
    pub error: Option<String>,
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

impl JobView {
    pub fn of(record: &JobRecord, running: bool, waiting_for_start: bool) -> JobView {
        JobView {
            service: record.service.clone(),
            name: record.name.clone(),
            kind: record.when.kind().into(),
            schedule: record.when.text().into(),
            payload: record.payload.clone(),
            from_manifest: record.from_manifest,
            next_run: record.next_run.map(|t| rfc3339(from_millis(t))),
            running,
            waiting_for_start,
            runs: record.runs,
            failures: record.failures,
            skipped: record.skipped,
            last_run: record.last_run.as_ref().map(RunView::from),
        }
    }
}

/// A job's key: its service and its name.
type JobKey = (String, String);

struct Job {
    record: JobRecord,
    timing: Timing,
    running: bool,
    /// Came due while its service was stopped: off the queue until a start.
    parked: bool,
}

/// The jobs, and the queue of their next fire times. A job is queued at
/// `(next_run, key)` exactly when it has a next run and is not parked.
#[derive(Default)]
struct Table {
    jobs: BTreeMap<JobKey, Job>,
    queue: BTreeSet<(i64, JobKey)>,
    per_service: HashMap<String, usize>,
}

impl Table {
    fn insert(&mut self, job: Job) {
        let key = (job.record.service.clone(), job.record.name.clone());
        self.remove(&key);
        if let Some(next) = job.record.next_run
            && !job.parked
        {
            self.queue.insert((next, key.clone()));
        }
        *self.per_service.entry(key.0.clone()).or_default() += 1;
        self.jobs.insert(key, job);
    }

    fn remove(&mut self, key: &JobKey) -> Option<Job> {
        let job = self.jobs.remove(key)?;
        if let Some(next) = job.record.next_run {
            self.queue.remove(&(next, key.clone()));
        }
        if let Some(count) = self.per_service.get_mut(&key.0) {
            *count -= 1;
        }
        Some(job)
    }

    /// Moves a job's next run, keeping the queue in step.
    fn set_next_run(&mut self, key: &JobKey, next: Option<i64>) {
        let Some(job) = self.jobs.get_mut(key) else {
            return;
        };
        if let Some(old) = job.record.next_run {
            self.queue.remove(&(old, key.clone()));
        }
        job.record.next_run = next;
        if let Some(next) = next
            && !job.parked
        {
            self.queue.insert((next, key.clone()));
        }
    }

    fn of_service<'a>(&'a self, service: &str) -> impl Iterator<Item = (&'a JobKey, &'a Job)> {
        self.jobs
            .range((service.to_string(), String::new())..)
            .take_while(move |(key, _)| key.0 == service)
    }

    fn view(job: &Job) -> JobView {
        JobView::of(&job.record, job.running, job.parked)
    }
}

pub struct Scheduler {
    store: JobStore,
    table: Mutex<Table>,
    wake: Notify,
    policy: JobPolicy,
}

impl Scheduler {
    /// Opens the root's jobs; nothing fires until [`Scheduler::run_timer`].
    pub fn open(root: &LockerRoot, policy: JobPolicy) -> Result<Arc<Scheduler>> {
        let (store, records) = JobStore::open(root)?;
        let mut table = Table::default();
        for record in records {
            match record.when.timing() {
                Ok(timing) => table.insert(Job {
                    record,
                    timing,
                    running: false,
                    parked: false,
                }),
                Err(e) => tracing::error!(
                    service = %record.service,
                    "ignoring stored job {:?}: {e:#}",
                    record.name
                ),
            }
        }
        Ok(Arc::new(Scheduler {
            store,
            table: Mutex::new(table),
            wake: Notify::new(),
            policy,
        }))
    }

    /// Makes a service's jobs match its manifest's `[[schedule]]` (at
    /// install, upgrade and start-up); its run-time jobs stay.
    pub async fn sync_service(&self, manifest: &Manifest) -> Result<()> {
        let service = manifest.name.clone();
        let declared = manifest
            .schedule
            .iter()
            .map(|entry| NewJob {
                service: service.clone(),
                name: entry.name.clone(),
                when: When::Cron(entry.cron.clone()),
                payload: entry.payload_json(),
                from_manifest: true,
                next_run: None,
            })
            .collect();
        let first_run = |when: &When| {
            let timing = when.timing().ok()?;
            Some(timing.first(Utc::now())?.timestamp_millis())
        };
        let records = self
            .store
            .sync_manifest(&service, declared, first_run)
            .await?;
        let mut table = self.table.lock().unwrap();
        let mut previous: HashMap<i64, Job> = HashMap::new();
        let keys: Vec<JobKey> = table.of_service(&service).map(|(k, _)| k.clone()).collect();
        for key in keys {
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
                    Ok(timing) => Job {
                        record,
                        timing,
                        running: false,
                        parked: false,
                    },
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
        let keys: Vec<JobKey> = table.of_service(service).map(|(k, _)| k.clone()).collect();
        for key in keys {
            table.remove(&key);
        }
        Ok(())
    }

    /// The services that have jobs.
    pub fn services(&self) -> Vec<String> {
        let table = self.table.lock().unwrap();
        let mut services: Vec<String> = table
            .per_service
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(service, _)| service.clone())
            .collect();
        services.sort();
        services
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
            let count = table.per_service.get(service).copied().unwrap_or(0);
            if count >= self.policy.max_jobs_per_service && !table.jobs.contains_key(&key) {
                return Err(ScheduleError::TooManyJobs(
                    self.policy.max_jobs_per_service as u32,
                ));
            }
        }
        let next_run = timing.first(Utc::now()).map(|t| t.timestamp_millis());
        let record = self
            .store
            .insert(NewJob {
                service: service.into(),
                name: name.into(),
                when,
                payload,
                from_manifest: false,
                next_run,
            })
            .await
            .map_err(|e| ScheduleError::Storage(format!("{e:#}")))?
            .ok_or_else(|| ScheduleError::NameTaken(name.into()))?;
        self.table.lock().unwrap().insert(Job {
            record,
            timing,
            running: false,
            parked: false,
        });
        self.wake.notify_one();
        Ok(())
    }

    /// Cancels a job `service` created at run time.
    pub async fn cancel(&self, service: &str, name: &str) -> Result<(), ScheduleError> {
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

    /// One service's jobs, by name.
    pub fn jobs_of(&self, service: &str) -> Vec<JobView> {
        let table = self.table.lock().unwrap();
        table
            .of_service(service)
            .map(|(_, job)| Table::view(job))
            .collect()
    }

    /// Every job, by service and name.
    pub fn all(&self) -> Vec<JobView> {
        let table = self.table.lock().unwrap();
        table.jobs.values().map(Table::view).collect()
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

    /// Runs a job now, outside its schedule, and waits for the result.
    pub async fn run_now(
        self: &Arc<Self>,
        supervisor: &Arc<Supervisor>,
        service: &str,
        name: &str,
    ) -> Result<RunView, RunNowError> {
        if supervisor.service(service).is_some_and(|s| s.is_stopped()) {
            return Err(RunNowError::Stopped(service.into()));
        }
        let key = (service.to_string(), name.to_string());
        let id = {
            let mut table = self.table.lock().unwrap();
            let job = table
                .jobs
                .get_mut(&key)
                .ok_or_else(|| RunNowError::NotFound {
                    service: service.into(),
                    name: name.into(),
                })?;
            if job.running {
                return Err(RunNowError::AlreadyRunning {
                    service: service.into(),
                    name: name.into(),
                });
            }
            job.running = true;
            job.record.id
        };
        let scheduled = Utc::now().timestamp_millis();
        let run = self
            .clone()
            .run(supervisor.clone(), key, id, scheduled)
            .await;
        Ok(RunView::from(&run))
    }

    /// The timer: fires what is due, then sleeps until the next due job or
    /// a change. Runs for the life of the host.
    pub async fn run_timer(self: Arc<Self>, supervisor: Arc<Supervisor>) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.fire_due(&supervisor) {
                Some(next) => {
                    let wait = next * 1000 - Utc::now().timestamp_micros();
                    // Waking once a minute at least keeps a wall-clock jump from
                    // delaying jobs for long.
                    let wait =
                        Duration::from_micros(wait.max(0) as u64).min(Duration::from_secs(60));
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = woken => {}
                    }
                }
                None => woken.await,
            }
        }
    }

    /// Fires every due job; returns the next due time.
    fn fire_due(self: &Arc<Self>, supervisor: &Arc<Supervisor>) -> Option<i64> {
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        let mut table = self.table.lock().unwrap();
        while let Some((due, key)) = table.queue.first().cloned()
            && due <= now_ms
        {
            table.queue.remove(&(due, key.clone()));
            let job = table
                .jobs
                .get_mut(&key)
                .expect("a queued job is in the table");
            let Some(service) = supervisor.service(&key.0) else {
                // Being uninstalled: its jobs are about to go.
                job.record.next_run = None;
                continue;
            };
            if service.is_stopped() {
                job.parked = true;
                service.log().note(&format!(
                    "job {:?} is due but the service is stopped; it runs once when started",
                    key.1
                ));
                continue;
            }
            if job.running {
                job.record.skipped += 1;
                self.store.skipped(job.record.id);
                let message = format!(
                    "job {:?}: skipped its tick at {}, the last run is still going",
                    key.1,
                    rfc3339(from_millis(due))
                );
                tracing::info!(service = %key.0, "{message}");
                service.log().note(&message);
            } else {
                job.running = true;
                let run = self
                    .clone()
                    .run(supervisor.clone(), key.clone(), job.record.id, due);
                tokio::spawn(run);
            }
            // Until the run finishes, the store keeps the time just fired.
            job.record.next_run = None;
            let next = match &job.timing {
                Timing::At(_) => None,
                cron => cron
                    .next_after(now.max(from_millis(due)))
                    .map(|t| t.timestamp_millis())
                    .filter(|next| *next > due),
            };
            table.set_next_run(&key, next);
        }
        table.queue.first().map(|(due, _)| *due)
    }

    /// One run of a job: attempts until one succeeds or there is no time
    /// left to retry; then records the run.
    async fn run(
        self: Arc<Self>,
        supervisor: Arc<Supervisor>,
        key: JobKey,
        id: i64,
        scheduled: i64,
    ) -> RunRecord {
        let started = Utc::now().timestamp_millis();
        let mut attempts = 0;
        let error = loop {
            attempts += 1;
            let Err(error) = self.attempt(&supervisor, &key, scheduled, attempts).await else {
                break None;
            };
            let backoff = self
                .policy
                .first_retry
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(Duration::from_secs(3600));
            let retry_at = Utc::now().timestamp_millis() + backoff.as_millis() as i64;
            let may_retry = {
                let table = self.table.lock().unwrap();
                match table.jobs.get(&key) {
                    Some(job) if job.record.id == id => match job.timing {
                        Timing::Cron(_) => job.record.next_run.is_none_or(|next| retry_at < next),
                        Timing::At(_) => attempts < self.policy.one_shot_attempts,
                    },
                    _ => false,
                }
            };
            let what = if may_retry {
                format!("retrying in {}", humantime::format_duration(backoff))
            } else {
                "giving up on this run".to_string()
            };
            let message = format!(
                "job {:?}: attempt {attempts} failed ({what}): {error}",
                key.1
            );
            tracing::warn!(service = %key.0, "{message}");
            if let Some(service) = supervisor.service(&key.0) {
                service.log().note(&message);
            }
            if !may_retry {
                break Some(error);
            }
            tokio::time::sleep(backoff).await;
        };
        let run = RunRecord {
            scheduled,
            started,
            finished: Utc::now().timestamp_millis(),
            attempts,
            error,
        };
        let mut table = self.table.lock().unwrap();
        if let Some(job) = table.jobs.get_mut(&key)
            && job.record.id == id
        {
            job.running = false;
            job.record.runs += 1;
            job.record.failures += u64::from(run.error.is_some());
            job.record.last_run = Some(run.clone());
            self.store.finished(id, run.clone(), job.record.next_run);
        }
        run
    }

    /// One attempt: load the service if needed, and call its job handler
    /// in a fresh instance.
    async fn attempt(
        &self,
        supervisor: &Supervisor,
        key: &JobKey,
        scheduled: i64,
        attempt: u32,
    ) -> Result<(), String> {
        let actual = Utc::now();
        let service = supervisor
            .service(&key.0)
            .ok_or_else(|| format!("service {:?} is not installed", key.0))?;
        let payload = {
            let table = self.table.lock().unwrap();
            let job = table.jobs.get(key).ok_or("the job was cancelled")?;
            job.record.payload.clone()
        };
        let deadline = tokio::time::Instant::now() + service.settings.timeout;
        let loaded = service
            .loaded(&supervisor.runtime, &supervisor.cache)
            .await
            .map_err(|e| e.to_string())?;
        let Some(indices) = loaded.jobs.clone() else {
            return Err(format!("service {:?} does not export a job handler", key.0));
        };
        let engine = &supervisor.runtime.engine;
        let mut instance: Instantiated<JobHandler> =
            guest_call::instantiate(engine, &service, loaded, deadline, |store, instance| {
                indices.load(store, instance)
            })
            .await
            .map_err(|e| e.to_string())?;
        instance.arm(&service);
        let job = GuestJob {
            name: key.1.clone(),
            scheduled: rfc3339(from_millis(scheduled)),
            actual: rfc3339(actual),
            attempt,
            payload,
        };
        let call = instance.export.call_run(&mut instance.store, &job);
        let outcome = tokio::time::timeout_at(deadline, call).await;
        match instance.settle(&service, outcome) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(format!("the job handler returned an error: {message}")),
            Err(error) => Err(error.to_string()),
        }
    }
}

fn is_finished_one_shot(record: &JobRecord) -> bool {
    !record.from_manifest && matches!(record.when, When::At(_)) && record.next_run.is_none()
}
