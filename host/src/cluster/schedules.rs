//! The jobs services create at run time, kept in step across hosts in
//! `locker-schedules`: a job a service made on its owner is known to every
//! host, so whichever host owns the service next runs it (each tick once,
//! as `jobs` claims it); one cancelled is gone from all.

use std::sync::Arc;

use anyhow::Result;

use super::mirror::{Mirrored, decoded, encoded};
use crate::jobs::{JobKey, Scheduler, SharedJob};

pub struct Schedules(pub Arc<Scheduler>);

impl Mirrored for Schedules {
    type Item = JobKey;

    /// `service.HEX` (a job's name may hold what a key may not).
    fn key((service, job): &JobKey) -> String {
        format!("{service}.{}", hex::encode(job))
    }

    fn item(key: &str) -> Option<JobKey> {
        let (service, job) = key.split_once('.')?;
        let job = String::from_utf8(hex::decode(job).ok()?).ok()?;
        Some((service.to_string(), job))
    }

    fn local(&self, job: &JobKey) -> Result<Option<Vec<u8>>> {
        encoded(self.0.shared(job))
    }

    async fn follow(&self, job: &JobKey, record: Option<&[u8]>) -> Result<()> {
        self.0.follow(job, decoded::<SharedJob>(record)?).await
    }

    fn items(&self) -> Result<Vec<JobKey>> {
        Ok(self.0.created())
    }
}
