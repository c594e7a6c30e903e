//! `locker:service/scheduler`: a guest creates, cancels and lists its own
//! jobs at run time. The checks (name, cron expression or time, JSON
//! payload, how many) are the job table's; a refusal goes back to the guest
//! as a `schedule-error` and into the service's log.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::{Capability, HostParts, ServiceContext};
use crate::bindings::scheduler::{self, Host, Schedule};
use crate::jobs::{ScheduleError, Scheduler};
use crate::package::job_spec::When;
use crate::store::ServiceLog;

/// Set up once: the job table every service's jobs are in.
pub struct Scheduling {
    scheduler: Arc<Scheduler>,
}

/// What one service's instances schedule as.
pub struct ServiceJobs {
    name: String,
    scheduler: Arc<Scheduler>,
    log: ServiceLog,
}

/// One instance's view of its service's jobs.
#[derive(Clone)]
pub struct SchedulerCtx(Arc<ServiceJobs>);

impl Capability for Scheduling {
    type Service = SchedulerCtx;
    type Instance = SchedulerCtx;

    fn set_up(host: &HostParts<'_>) -> anyhow::Result<Scheduling> {
        Ok(Scheduling {
            scheduler: host.jobs.clone(),
        })
    }

    fn add_to_linker<T: Send + 'static>(
        linker: &mut Linker<T>,
        get: fn(&mut T) -> &mut SchedulerCtx,
    ) -> wasmtime::Result<()> {
        scheduler::add_to_linker::<T, HasSelf<SchedulerCtx>>(linker, get)
    }

    fn configure(&self, service: &ServiceContext<'_>) -> SchedulerCtx {
        SchedulerCtx(Arc::new(ServiceJobs {
            name: service.manifest.name.clone(),
            scheduler: self.scheduler.clone(),
            log: service.log.clone(),
        }))
    }

    fn prepare(service: &SchedulerCtx) -> SchedulerCtx {
        service.clone()
    }
}

impl Host for SchedulerCtx {
    async fn create(
        &mut self,
        name: String,
        when: Schedule,
        payload: String,
    ) -> wasmtime::Result<Result<(), scheduler::ScheduleError>> {
        let when = match when {
            Schedule::Cron(expression) => When::Cron(expression),
            Schedule::At(time) => When::At(time),
        };
        let jobs = self.0.clone();
        let result = jobs
            .scheduler
            .create(&jobs.name, &name, when, &payload)
            .await;
        Ok(result.map_err(|error| jobs.refused("job not created", error)))
    }

    async fn cancel(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<(), scheduler::ScheduleError>> {
        let jobs = self.0.clone();
        let result = jobs.scheduler.cancel(&jobs.name, &name).await;
        Ok(result.map_err(|error| jobs.refused("job not cancelled", error)))
    }

    async fn jobs(&mut self) -> wasmtime::Result<Vec<scheduler::JobInfo>> {
        Ok(self
            .0
            .scheduler
            .jobs_of(&self.0.name)
            .into_iter()
            .map(|job| scheduler::JobInfo {
                schedule: match job.kind.as_str() {
                    "cron" => Schedule::Cron(job.schedule),
                    _ => Schedule::At(job.schedule),
                },
                name: job.name,
                payload: job.payload,
                next_run: job.next_run,
                from_manifest: job.from_manifest,
            })
            .collect())
    }
}

impl ServiceJobs {
    /// Notes a refused call in the service's log, and converts it.
    fn refused(&self, what: &str, error: ScheduleError) -> scheduler::ScheduleError {
        tracing::warn!(service = %self.name, "{what}: {error}");
        self.log.note(&format!("{what}: {error}"));
        use scheduler::ScheduleError as Wit;
        match error {
            ScheduleError::InvalidName(m) => Wit::InvalidName(m),
            ScheduleError::InvalidCron(m) => Wit::InvalidCron(m),
            ScheduleError::InvalidTime(m) => Wit::InvalidTime(m),
            ScheduleError::InvalidJson(m) => Wit::InvalidJson(m),
            ScheduleError::NameTaken(m) => Wit::NameTaken(m),
            ScheduleError::NotFound(m) => Wit::NotFound(m),
            ScheduleError::DeclaredInManifest(m) => Wit::DeclaredInManifest(m),
            ScheduleError::TooManyJobs(n) => Wit::TooManyJobs(n),
            ScheduleError::Storage(m) => Wit::Storage(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobPolicy;
    use crate::package::Manifest;
    use crate::store::{LockerRoot, SqliteJobStore};

    #[tokio::test]
    async fn a_guest_creates_lists_and_cancels_its_own_jobs_and_is_told_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = LockerRoot::open(dir.path().join("root")).unwrap();
        let (store, records) = SqliteJobStore::open(&root).unwrap();
        let policy = JobPolicy {
            max_jobs_per_service: 2,
            ..JobPolicy::default()
        };
        let jobs = Scheduler::new(Arc::new(store), records, policy);
        let manifest = Manifest::parse(
            "name = \"ticker\"\nversion = \"0.1.0\"\nkind = \"connector\"\n\
             description = \"d\"\ncomponent = \"t.wasm\"\n",
            "test",
        )
        .unwrap();
        let log = ServiceLog::new(root.log_path("ticker"));
        let capability = Scheduling {
            scheduler: jobs.clone(),
        };
        let mut ctx = Scheduling::prepare(&capability.configure(&ServiceContext {
            manifest: &manifest,
            log: &log,
        }));

        let every_minute = || Schedule::Cron("0 * * * * *".into());
        ctx.create("sync".into(), every_minute(), "{}".into())
            .await
            .unwrap()
            .unwrap();
        let taken = ctx.create("sync".into(), every_minute(), "{}".into()).await;
        assert!(matches!(
            taken.unwrap(),
            Err(scheduler::ScheduleError::NameTaken(_))
        ));
        let bad = ctx
            .create(
                "x".into(),
                Schedule::Cron("61 * * * * *".into()),
                "{}".into(),
            )
            .await;
        assert!(
            matches!(bad.unwrap(), Err(scheduler::ScheduleError::InvalidCron(m)) if m.contains("61"))
        );
        ctx.create(
            "once".into(),
            Schedule::At("2030-01-01T00:00:00Z".into()),
            "{}".into(),
        )
        .await
        .unwrap()
        .unwrap();
        let full = ctx.create("more".into(), every_minute(), "{}".into()).await;
        assert!(matches!(
            full.unwrap(),
            Err(scheduler::ScheduleError::TooManyJobs(2))
        ));

        let listed = ctx.jobs().await.unwrap();
        let names: Vec<_> = listed.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["once", "sync"]);
        ctx.cancel("sync".into()).await.unwrap().unwrap();
        let gone = ctx.cancel("sync".into()).await.unwrap();
        assert!(matches!(gone, Err(scheduler::ScheduleError::NotFound(_))));
        assert_eq!(jobs.jobs_of("ticker").len(), 1);
        let noted = std::fs::read_to_string(log.path()).unwrap();
        assert!(noted.contains("job not created"), "{noted}");
    }
}
