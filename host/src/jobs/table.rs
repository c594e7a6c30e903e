//! The jobs in memory, and the queue of their next fire times. A job is
//! queued at `(next_run, key)` exactly when it has a next run and is not
//! parked, so the earliest due job is always the queue's first entry.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::api::JobView;
use crate::package::job_spec::Timing;
use crate::store::jobs::JobRecord;

/// A job's key: its service and its name.
pub type JobKey = (String, String);

pub(super) struct Job {
    pub record: JobRecord,
    pub timing: Timing,
    pub running: bool,
    /// Came due while its service was stopped: off the queue until a start.
    pub parked: bool,
}

impl Job {
    pub fn new(record: JobRecord, timing: Timing) -> Job {
        Job {
            record,
            timing,
            running: false,
            parked: false,
        }
    }

    pub fn view(&self) -> JobView {
        self.record.view(self.running, self.parked)
    }
}

#[derive(Default)]
pub(super) struct Table {
    pub jobs: BTreeMap<JobKey, Job>,
    queue: BTreeSet<(i64, JobKey)>,
    per_service: HashMap<String, usize>,
}

impl Table {
    pub fn insert(&mut self, job: Job) {
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

    pub fn remove(&mut self, key: &JobKey) -> Option<Job> {
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
    pub fn set_next_run(&mut self, key: &JobKey, next: Option<i64>) {
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

    /// Takes the earliest queued entry if it is due by `now`.
    pub fn pop_due(&mut self, now: i64) -> Option<(i64, JobKey)> {
        let (due, _) = self.queue.first()?;
        if *due > now {
            return None;
        }
        self.queue.pop_first()
    }

    /// When the earliest queued job is due.
    pub fn next_due(&self) -> Option<i64> {
        self.queue.first().map(|(due, _)| *due)
    }

    pub fn of_service<'a>(&'a self, service: &str) -> impl Iterator<Item = (&'a JobKey, &'a Job)> {
        self.jobs
            .range((service.to_string(), String::new())..)
            .take_while(move |(key, _)| key.0 == service)
    }

    pub fn keys_of(&self, service: &str) -> Vec<JobKey> {
        self.of_service(service).map(|(k, _)| k.clone()).collect()
    }

    pub fn count_of(&self, service: &str) -> usize {
        self.per_service.get(service).copied().unwrap_or(0)
    }

    /// The services that have jobs, by name.
    pub fn services(&self) -> Vec<String> {
        let mut services: Vec<String> = self
            .per_service
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(service, _)| service.clone())
            .collect();
        services.sort();
        services
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::job_spec::When;

    fn job(service: &str, name: &str, next_run: Option<i64>) -> Job {
        let when = When::Cron("* * * * * *".into());
        let timing = when.timing().unwrap();
        Job::new(
            JobRecord {
                id: 0,
                service: service.into(),
                name: name.into(),
                when,
                payload: "{}".into(),
                from_manifest: true,
                created_at: String::new(),
                next_run,
                runs: 0,
                failures: 0,
                skipped: 0,
                last_run: None,
            },
            timing,
        )
    }

    fn key(service: &str, name: &str) -> JobKey {
        (service.into(), name.into())
    }

    #[test]
    fn the_queue_gives_due_jobs_earliest_first_and_nothing_early() {
        let mut table = Table::default();
        table.insert(job("b", "late", Some(30)));
        table.insert(job("a", "early", Some(10)));
        table.insert(job("a", "never", None));
        assert_eq!(table.next_due(), Some(10));
        assert_eq!(table.pop_due(5), None);
        assert_eq!(table.pop_due(40), Some((10, key("a", "early"))));
        assert_eq!(table.pop_due(40), Some((30, key("b", "late"))));
        assert_eq!(
            table.pop_due(40),
            None,
            "a job with no next run is never queued"
        );
        assert_eq!(table.services(), ["a", "b"]);
        assert_eq!(table.count_of("a"), 2);
    }

    #[test]
    fn moving_or_removing_a_job_keeps_the_queue_in_step() {
        let mut table = Table::default();
        table.insert(job("a", "x", Some(10)));
        table.set_next_run(&key("a", "x"), Some(50));
        assert_eq!(table.next_due(), Some(50));
        table.jobs.get_mut(&key("a", "x")).unwrap().parked = true;
        table.set_next_run(&key("a", "x"), Some(60));
        assert_eq!(table.next_due(), None, "a parked job waits off the queue");
        table.insert(job("a", "y", Some(20)));
        table.insert(job("a", "y", Some(25)));
        assert_eq!(table.next_due(), Some(25), "re-inserting replaces");
        table.remove(&key("a", "y"));
        assert_eq!(table.next_due(), None);
        assert_eq!(table.keys_of("a"), [key("a", "x")]);
        table.remove(&key("a", "x"));
        assert!(table.services().is_empty());
    }
}
