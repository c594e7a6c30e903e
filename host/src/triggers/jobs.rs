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

/// Which host runs a job's tick, when several share the locker.
pub trait SlotClaims: Send + Sync {
    /// Whether this host runs `service`'s job `job` for its tick at `due`
    /// (ms): `false` when another host runs (or ran) it.
    fn claim<'a>(
        &'a self,
        service: &'a str,
        job: &'a str,
        due: i64,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>;
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

    /// The run of a tick, unless another host of the cluster runs it.
    async fn run_tick(self, key: JobKey, id: i64, due: i64) {
        if let Some(slots) = self.slots.get()
            && !slots.claim(&key.0, &key.1, due).await
        {
            self.scheduler.release(&key, id);
            return;
        }
        self.run(key, id, due, Retry::Yes).await;
    }

    /// One run of a job: attempts until one succeeds or there is no time
    /// left to retry (or, with `Retry::No`, one attempt); then records the run.
    async fn run(self, key: JobKey, id: i64, scheduled: i64, retry: Retry) -> RunRecord {
        let started = Utc::now().timestamp_millis();
        let policy = &self.scheduler.policy;
        let mut attempts = 0;
        let error = loop {
            attempts += 1;
            let Err(error) = self.attempt(&key, scheduled, attempts).await else {
                break None;
            };
            let backoff = policy
                .first_retry
                .saturating_mul(1 << (attempts - 1).min(16))
                .min(Duration::from_secs(3600));
            let retry_at = Utc::now().timestamp_millis() + backoff.as_millis() as i64;
            let may_retry =
                retry == Retry::Yes && self.scheduler.may_retry(&key, id, attempts, retry_at);
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
        self.scheduler.finish(&key, id, &run);
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
