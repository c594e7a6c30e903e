//! The job trigger: one timer for the whole host and the runs it starts.
//!
//! The timer sleeps until the earliest time in the job table's queue (or
//! until a change wakes it), fires what is due, and sleeps again: it never
//! scans the jobs. A run cold-starts its service if needed, hands the job
//! to a fresh instance's `job-handler`, and retries a failed attempt with
//! backoff while there is time before the job's next tick (a one-shot job:
//! a few attempts). One run of a job at a time: a tick that comes while the
//! last run is still going is skipped, counted and noted in the service's
//! log. A job whose service is stopped waits, and runs once when the
//! service is started. A run the owner asks for (`locker jobs run`) is one
//! attempt, whose outcome they see at once.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;

use crate::api::RunView;
use crate::bindings::{Job as GuestJob, JobHandler};
use crate::clock::{from_millis, rfc3339};
use crate::jobs::{Fired, JobKey, RunNowError, Scheduler, ServiceNow};
use crate::metrics::Metrics;
use crate::runtime::Services;
use crate::runtime::call::{self, Instantiated};
use crate::store::jobs::RunRecord;

/// Whether a failed attempt is tried again (while there is time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Yes,
    No,
}

/// The ticks of a job in `(after, until]`, oldest first, at most `limit`.
pub type Ticks<'a> = &'a (dyn Fn(i64, i64, usize) -> Vec<i64> + Send + Sync);

/// Which host runs a job's ticks, when several share the locker.
pub trait SlotClaims: Send + Sync {
    /// The ticks of `service`'s job `job` this host runs now, oldest first,
    /// as its timer fired the tick at `due` (ms): none when another host
    /// runs them. Besides `due`, these are ticks nobody ran because the
    /// host serving the service died.
    fn claim<'a>(
        &'a self,
        service: &'a str,
        job: &'a str,
        due: i64,
        ticks: Ticks<'a>,
    ) -> Pin<Box<dyn Future<Output = Vec<i64>> + Send + 'a>>;

    /// A claimed tick has run (well or not): nobody runs it again.
    fn ran<'a>(
        &'a self,
        service: &'a str,
        job: &'a str,
        tick: i64,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    /// This host skipped its tick at `due`, the last run still going: if
    /// it serves the service, nobody runs that tick.
    fn skipped<'a>(
        &'a self,
        service: &'a str,
        job: &'a str,
        due: i64,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Fires and runs jobs; cheap to clone.
#[derive(Clone)]
pub struct JobRunner {
    scheduler: Arc<Scheduler>,
    services: Arc<Services>,
    metrics: Metrics,
    /// In a cluster: who runs each tick (alone, this host runs them all).
    slots: Arc<OnceLock<Arc<dyn SlotClaims>>>,
}

impl JobRunner {
    pub fn new(scheduler: Arc<Scheduler>, services: Arc<Services>, metrics: Metrics) -> JobRunner {
        JobRunner {
            scheduler,
            services,
            metrics,
            slots: Arc::default(),
        }
    }

    /// From now on, runs a tick only if `slots` says this host should.
    pub fn share_slots(&self, slots: Arc<dyn SlotClaims>) {
        let _ = self.slots.set(slots);
    }

    /// The timer: fires what is due, then sleeps until the next due job or
    /// a change. Runs until the host stops (its task is aborted).
    pub async fn run_timer(self) {
        loop {
            let woken = self.scheduler.changed();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.fire_due() {
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

    /// Fires every due job; returns when the next one is due.
    fn fire_due(&self) -> Option<i64> {
        let (fired, next) =
            self.scheduler
                .fire_due(Utc::now(), |name| match self.services.get(name) {
                    None => ServiceNow::Gone,
                    Some(service) if service.is_stopped() || service.needs_config() => {
                        ServiceNow::Stopped
                    }
                    Some(_) => ServiceNow::Ready,
                });
        for fired in fired {
            match fired {
                Fired::Run { key, id, due } => {
                    tokio::spawn(self.clone().run_tick(key, id, due));
                }
                Fired::Skipped { key, due } => {
                    if let Some(slots) = self.slots.get().cloned() {
                        let key = key.clone();
                        tokio::spawn(async move { slots.skipped(&key.0, &key.1, due).await });
                    }
                    let message = format!(
                        "job {:?}: skipped its tick at {}, the last run is still going",
                        key.1,
                        rfc3339(from_millis(due))
                    );
                    tracing::info!(service = %key.0, "{message}");
                    self.note(&key.0, &message);
                }
                Fired::Parked { key } => self.note(
                    &key.0,
                    &format!(
                        "job {:?} is due but the service is stopped or waits for a required \
                         setting; it runs once it can",
                        key.1
                    ),
                ),
            }
        }
        next
    }

    /// Runs a job now, outside its schedule, and waits for the result: one
    /// attempt, as the owner who asked is there to see how it went (a run
    /// in its schedule retries with backoff instead).
    pub async fn run_now(&self, service: &str, name: &str) -> Result<RunView, RunNowError> {
        if self.services.get(service).is_some_and(|s| s.is_stopped()) {
            return Err(RunNowError::Stopped(service.into()));
        }
        let key = (service.to_string(), name.to_string());
        let id = self.scheduler.claim(&key)?;
        let scheduled = Utc::now().timestamp_millis();
        let run = self.clone().run(key, id, scheduled, Retry::No).await;
        Ok(RunView::from(&run))
    }

    /// The run of a tick; in a cluster, the runs of the ticks this host claims.
    async fn run_tick(self, key: JobKey, id: i64, due: i64) {
        let Some(slots) = self.slots.get() else {
            self.run(key, id, due, Retry::Yes).await;
            return;
        };
        let ticks = |after: i64, until: i64, limit: usize| {
            self.scheduler.ticks_between(&key, after, until, limit)
        };
        let ticks = slots.claim(&key.0, &key.1, due, &ticks).await;
        let Some((&last, earlier)) = ticks.split_last() else {
            self.scheduler.release(&key, id);
            return;
        };
        for &tick in earlier {
            let run = self.attempts(&key, id, tick, Retry::Yes).await;
            self.scheduler.record(&key, id, &run);
            slots.ran(&key.0, &key.1, tick).await;
        }
        let run = self.attempts(&key, id, last, Retry::Yes).await;
        slots.ran(&key.0, &key.1, last).await;
        self.scheduler.finish(&key, id, &run);
    }

    /// One run of a job, recorded: see [`JobRunner::attempts`].
    async fn run(self, key: JobKey, id: i64, scheduled: i64, retry: Retry) -> RunRecord {
        let run = self.attempts(&key, id, scheduled, retry).await;
        self.scheduler.finish(&key, id, &run);
        run
    }

    /// The attempts of one run: until one succeeds or there is no time
    /// left to retry (or, with `Retry::No`, one attempt).
    async fn attempts(&self, key: &JobKey, id: i64, scheduled: i64, retry: Retry) -> RunRecord {
        let started = Utc::now().timestamp_millis();
        let policy = &self.scheduler.policy;
        let mut attempts = 0;
        let error = loop {
            attempts += 1;
            let Err(error) = self.attempt(key, scheduled, attempts).await else {
                break None;
            };
            let backoff = policy
                .first_retry
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(Duration::from_secs(3600));
            let retry_at = Utc::now().timestamp_millis() + backoff.as_millis() as i64;
            let may_retry =
                retry == Retry::Yes && self.scheduler.may_retry(key, id, attempts, retry_at);
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
            self.note(&key.0, &message);
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
        let late = Duration::from_millis(started.saturating_sub(scheduled).max(0) as u64);
        self.metrics
            .job_run(&key.0, &key.1, run.error.is_none(), late);
        run
    }

    /// One attempt: load the service if needed, and call its job handler
    /// in a fresh instance.
    async fn attempt(&self, key: &JobKey, scheduled: i64, attempt: u32) -> Result<(), String> {
        let actual = Utc::now();
        let service = self
            .services
            .get(&key.0)
            .ok_or_else(|| format!("service {:?} is not installed", key.0))?;
        let payload = self
            .scheduler
            .payload_of(key)
            .ok_or("the job was cancelled")?;
        let _working = service.working().await;
        let loaded = service.loaded().await.map_err(|e| e.to_string())?;
        // The run's time starts once its service is loaded (see delivery).
        let deadline = tokio::time::Instant::now() + service.settings.timeout;
        let Some(indices) = loaded.jobs.clone() else {
            return Err(format!("service {:?} does not export a job handler", key.0));
        };
        let mut instance: Instantiated<JobHandler> =
            call::instantiate(&service, loaded, deadline, |store, instance| {
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

    /// Notes a line in a service's log, if it is still installed.
    fn note(&self, service: &str, message: &str) {
        if let Some(service) = self.services.get(service) {
            service.log().note(message);
        }
    }
}
