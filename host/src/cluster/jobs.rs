//! Each tick of a job runs once across the hosts. Every host's timer fires
//! every tick, but only the service's owner (the holder of its lease, taken
//! now if free) claims it: in one compare-and-set of the job's entry in
//! `locker-jobs` it moves the last claimed tick forward and lists the
//! ticks it is about to run as open; each leaves the list once it ran.
//! The other hosts go back to sleep at once.
//!
//! What the owner claims besides the tick that fired:
//! - the ticks since the last claim that nobody claimed because the owner
//!   before died: each runs, late. They are those of the last
//!   [`LOOK_BACK`] outside a downtime, the latest [`MOST_ALONE`] of them
//!   (a failover takes a lease time; all hosts may die during one);
//! - the ticks still open from an owner that died while running them
//!   (so a run cut short runs again: at least once);
//! - at most one tick for all the older ones, and one for those that fell
//!   while every host was down (a *downtime*, noted in `_downtimes` by the
//!   first host to come back): missed ticks collapse into one run, as on a
//!   single host.
//!
//! A claim at or before the last one never comes back, whoever asks: so a
//! host whose table is behind (it was down) cannot run an old tick again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::leases::{Leases, Placement};
use crate::triggers::jobs::{SlotClaims, Ticks};

/// The key of the last time a host of the locker was alive.
const ALIVE: &str = "_alive";
/// The key of the times every host was down.
const DOWNTIMES: &str = "_downtimes";
/// How many downtimes are kept (the oldest go first).
const KEPT_DOWNTIMES: usize = 64;
/// The most ticks one claim looks at.
const MOST_TICKS: usize = 1000;
/// How far back a missed tick may still run on its own.
const LOOK_BACK: Duration = Duration::from_secs(600);
/// The most missed ticks that run one by one; older ones run as one.
const MOST_ALONE: usize = 100;

/// A job's entry in `locker-jobs`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Claimed {
    /// The latest tick claimed.
    last: Option<i64>,
    /// Ticks claimed that have not finished running yet.
    open: Vec<i64>,
    /// The host that claimed them.
    host: String,
}

pub struct JobSlots {
    kv: kv::Store,
    leases: Arc<Leases>,
    me: String,
    /// When every host was down (ms, from–to), as read at the join.
    downtimes: Mutex<Vec<(i64, i64)>>,
    /// The revision of this host's last write of each job's entry: a read
    /// may come from a replica that has not caught up yet, and one older
    /// than this is read again.
    written: Mutex<HashMap<String, u64>>,
}

/// The key of a job in the bucket (hex when its name has other characters).
fn key_of(service: &str, job: &str) -> String {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    };
    if plain(service) && plain(job) {
        format!("{service}.{job}")
    } else {
        format!("{service}.x{}", hex::encode(job))
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl JobSlots {
    /// Notes the downtime that ends now if no host was alive for longer
    /// than `lease` (this host is the first back), and reads the downtimes.
    pub async fn join(
        kv: kv::Store,
        leases: Arc<Leases>,
        me: String,
        lease: Duration,
    ) -> Result<JobSlots> {
        let slots = JobSlots {
            kv,
            leases,
            me,
            downtimes: Mutex::default(),
            written: Mutex::default(),
        };
        let now = now_ms();
        let alive = slots
            .kv
            .get(ALIVE)
            .await
            .context("cannot read when a host was last alive")?;
        let last_alive =
            alive.and_then(|value| std::str::from_utf8(&value).ok()?.parse::<i64>().ok());
        let mut downtimes = slots.read_downtimes().await?;
        if let Some(since) = last_alive
            && now - since > lease.as_millis() as i64
        {
            tracing::info!(
                "every host of the locker was down for {} s; ticks missed then run once",
                (now - since) / 1000
            );
            downtimes = slots.note_downtime((since, now)).await?;
        }
        *slots.downtimes.lock().unwrap() = downtimes;
        Ok(slots)
    }

    /// Writes the time now as the last time a host was alive, every third
    /// of `lease`; runs until aborted.
    pub async fn stay_alive(kv: kv::Store, lease: Duration) {
        let mut tick = tokio::time::interval(lease / 3);
        loop {
            tick.tick().await;
            if let Err(error) = kv.put(ALIVE, Bytes::from(now_ms().to_string())).await {
                tracing::warn!("cannot note that this host is alive: {error}");
            }
        }
    }

    async fn read_downtimes(&self) -> Result<Vec<(i64, i64)>> {
        Ok(self
            .kv
            .get(DOWNTIMES)
            .await
            .context("cannot read the locker's downtimes")?
            .and_then(|value| serde_json::from_slice(&value).ok())
            .unwrap_or_default())
    }

    async fn note_downtime(&self, downtime: (i64, i64)) -> Result<Vec<(i64, i64)>> {
        loop {
            let entry = self.kv.entry(DOWNTIMES).await?;
            let (mut downtimes, revision) = match &entry {
                Some(entry) if entry.operation == kv::Operation::Put => (
                    serde_json::from_slice::<Vec<(i64, i64)>>(&entry.value).unwrap_or_default(),
                    entry.revision,
                ),
                _ => (Vec::new(), 0),
            };
            downtimes.push(downtime);
            let keep_from = downtimes.len().saturating_sub(KEPT_DOWNTIMES);
            downtimes.drain(..keep_from);
            let value = Bytes::from(serde_json::to_vec(&downtimes)?);
            if self.write(DOWNTIMES, value, revision).await?.is_some() {
                return Ok(downtimes);
            }
        }
    }

    /// A job's entry and its revision (0: none yet), at least as new as
    /// this host's last write of it.
    async fn read(&self, key: &str) -> Result<(Claimed, u64)> {
        let known = self.written.lock().unwrap().get(key).copied().unwrap_or(0);
        for _ in 0..100 {
            let entry = self
                .kv
                .entry(key)
                .await
                .context("cannot read a job's claimed ticks")?;
            let read = match entry {
                Some(entry) if entry.operation == kv::Operation::Put => (
                    serde_json::from_slice(&entry.value).unwrap_or_default(),
                    entry.revision,
                ),
                _ => (Claimed::default(), 0),
            };
            if read.1 >= known {
                return Ok(read);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("the replica read has not caught up with this host's last write")
    }

    /// Writes `value` over the revision read; its new revision, or none
    /// when someone else wrote first.
    async fn write(&self, key: &str, value: Bytes, revision: u64) -> Result<Option<u64>> {
        let written = if revision == 0 {
            match self.kv.create(key, value).await {
                Ok(revision) => Some(revision),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            match self.kv.update(key, value, revision).await {
                Ok(revision) => Some(revision),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(revision) = written {
            self.written
                .lock()
                .unwrap()
                .insert(key.to_string(), revision);
        }
        Ok(written)
    }

    /// Changes a job's entry with `change` (none: leave it) until no other
    /// write comes between the read and the write.
    async fn change<T>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut Claimed) -> Option<T>,
    ) -> Result<Option<T>> {
        for _ in 0..5 {
            let (mut claimed, revision) = self.read(key).await?;
            let Some(outcome) = change(&mut claimed) else {
                return Ok(None);
            };
            let value = Bytes::from(serde_json::to_vec(&claimed)?);
            if self.write(key, value, revision).await?.is_some() {
                return Ok(Some(outcome));
            }
        }
        anyhow::bail!("the job's entry kept changing under this host")
    }

    /// The ticks to run after `claimed`, as the tick at `due` fired now.
    fn plan(&self, claimed: &Claimed, due: i64, now: i64, ticks: Ticks) -> Vec<i64> {
        let Some(last) = claimed.last else {
            return vec![due];
        };
        let recent_from = last.max(now - LOOK_BACK.as_millis() as i64);
        let downtimes = self.downtimes.lock().unwrap();
        let in_downtime = |tick: &i64| downtimes.iter().any(|(from, to)| from < tick && tick < to);
        let (mut collapsed, mut plan): (Vec<i64>, Vec<i64>) = ticks(recent_from, now, MOST_TICKS)
            .into_iter()
            .partition(in_downtime);
        if plan.len() > MOST_ALONE {
            collapsed.extend(plan.drain(..plan.len() - MOST_ALONE));
            collapsed.sort_unstable();
        }
        let older = (recent_from > last)
            .then(|| ticks(last, recent_from, 1).first().copied())
            .flatten();
        plan.extend(collapsed.last().copied().or(older));
        plan.extend(&claimed.open);
        plan.sort_unstable();
        plan.dedup();
        plan
    }

    async fn try_claim(
        &self,
        service: &str,
        job: &str,
        due: i64,
        ticks: Ticks<'_>,
    ) -> Result<Vec<i64>> {
        if self.leases.placement(service).await? != Placement::Here {
            return Ok(Vec::new());
        }
        let plan = self
            .change(&key_of(service, job), |claimed| {
                let plan = self.plan(claimed, due, now_ms(), ticks);
                let &latest = plan.last()?;
                claimed.last = claimed.last.max(Some(latest));
                claimed.open = plan.clone();
                claimed.host = self.me.clone();
                Some(plan)
            })
            .await?;
        Ok(plan.unwrap_or_default())
    }
}

impl SlotClaims for JobSlots {
    fn claim<'a>(
        &'a self,
        service: &'a str,
        job: &'a str,
        due: i64,
        ticks: Ticks<'a>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Vec<i64>> + Send + 'a>> {
        Box::pin(async move {
            self.try_claim(service, job, due, ticks)
                .await
                .unwrap_or_else(|error| {
                    // The next tick's claim takes this one along.
                    tracing::warn!(service, job, "cannot claim the tick at {due}: {error:#}");
                    Vec::new()
                })
        })
    }

    fn ran<'a>(
        &'a self,
        service: &'a str,
        job: &'a str,
        tick: i64,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let closed = self
                .change(&key_of(service, job), |claimed| {
                    let at = claimed.open.iter().position(|&open| open == tick)?;
                    claimed.open.remove(at);
                    Some(())
                })
                .await;
            if let Err(error) = closed {
                tracing::warn!(
                    service,
                    job,
                    "cannot note the run of the tick at {tick}: {error:#}"
                );
            }
        })
    }

    fn skipped<'a>(
        &'a self,
        service: &'a str,
        job: &'a str,
        due: i64,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if !self.leases.holds(service) {
                return;
            }
            let passed = self
                .change(&key_of(service, job), |claimed| {
                    (claimed.last < Some(due)).then(|| claimed.last = Some(due))
                })
                .await;
            if let Err(error) = passed {
                tracing::warn!(
                    service,
                    job,
                    "cannot note the skip of the tick at {due}: {error:#}"
                );
            }
        })
    }
}
