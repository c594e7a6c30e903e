//! The owner's job commands: `locker jobs` lists every job with its next
//! time and last run; `locker jobs run NAME` runs one now (through the
//! serving host) and prints how it went.

use anyhow::{Result, bail};

use super::Target;
use super::access::{Access, access};
use crate::api::{JobView, RunView};
use crate::store::jobs::read_all;

pub(super) async fn list(root: &Target, service: Option<String>, json: bool) -> Result<()> {
    let jobs: Vec<JobView> = match access(root)? {
        Access::Host(client) => client.jobs(service.as_deref()).await?,
        Access::Offline { catalog, .. } => read_all(catalog.root())?
            .iter()
            .filter(|job| service.as_ref().is_none_or(|s| *s == job.service))
            .map(|job| job.view(false, false))
            .collect(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<16} {:<28} {:<26} {:>5} {:>5} {:>5}  LAST RUN",
        "SERVICE", "JOB", "SCHEDULE", "NEXT RUN", "RUNS", "FAILS", "SKIPS"
    );
    for job in jobs {
        let schedule = format!("{} {}", job.kind, job.schedule);
        let next = match (&job.next_run, job.waiting_for_start) {
            (_, true) => "when the service starts".to_string(),
            (Some(next), false) => next.clone(),
            (None, false) => "-".to_string(),
        };
        let last = job.last_run.as_ref().map_or("never".into(), describe_run);
        let last = if job.running {
            format!("running now; before: {last}")
        } else {
            last
        };
        println!(
            "{:<16} {:<16} {:<28} {:<26} {:>5} {:>5} {:>5}  {last}",
            job.service, job.name, schedule, next, job.runs, job.failures, job.skipped
        );
    }
    Ok(())
}

/// `NAME` is `service/job`, or a job name only one service has.
pub(super) async fn run(root: &Target, name: &str, json: bool) -> Result<()> {
    let Access::Host(client) = access(root)? else {
        bail!("no host is serving this root; start one with `locker serve` to run a job");
    };
    let (service, job) = match name.split_once('/') {
        Some((service, job)) => (service.to_string(), job.to_string()),
        None => {
            let owners: Vec<String> = client
                .jobs(None)
                .await?
                .into_iter()
                .filter(|j| j.name == name)
                .map(|j| j.service)
                .collect();
            match owners.as_slice() {
                [service] => (service.clone(), name.to_string()),
                [] => bail!("no service has a job named {name:?}"),
                _ => bail!(
                    "services {} each have a job named {name:?}; say which, as SERVICE/{name}",
                    owners.join(", ")
                ),
            }
        }
    };
    let run = client.run_job(&service, &job).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        println!("ran {service}/{job}: {}", describe_run(&run));
    }
    if run.error.is_some() {
        bail!("job {service}/{job} failed");
    }
    Ok(())
}

fn describe_run(run: &RunView) -> String {
    let outcome = match &run.error {
        None => "ok".to_string(),
        Some(error) => format!("error: {error}"),
    };
    format!(
        "{} ({} ms late, took {} ms, {} attempt{}): {outcome}",
        run.scheduled,
        run.late_ms,
        run.took_ms,
        run.attempts,
        if run.attempts == 1 { "" } else { "s" }
    )
}
