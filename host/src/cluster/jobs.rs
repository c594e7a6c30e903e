//! Each tick of a job runs once across the hosts. Every host's timer fires
//! every tick; only the service's owner (the holder of its lease, taken
//! now if free) runs it, after moving the job's last claimed tick forward
//! in `locker-jobs` by compare-and-set: a tick at or before the last one
//! claimed is never run again, whoever asks. The others watch for the
//! owner's claim; if none comes because the owner died, the lease moves
//! to one of them within the lease time, which claims the tick and runs
//! it late. So is a missed tick after all hosts were down: each host's
//! timer offers the same catch-up tick, and one claim wins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use bytes::Bytes;

use super::leases::{Leases, Placement};
use crate::triggers::jobs::SlotClaims;

/// How often a host that does not own the service looks for the claim.
const LOOK: Duration = Duration::from_millis(200);

pub struct JobSlots {
    pub kv: kv::Store,
    pub leases: Arc<Leases>,
    /// How long a host waits for the owner's claim: a lease time and a margin.
    pub patience: Duration,
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

impl JobSlots {
    /// The last claimed tick and the entry's revision (0: none yet).
    async fn last(&self, key: &str) -> Result<(i64, u64)> {
        let entry = self
            .kv
            .entry(key)
            .await
            .context("cannot read a job's last tick")?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => (
                std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                entry.revision,
            ),
            _ => (i64::MIN, 0),
        })
    }

    /// Moves the last tick from the one read at `revision` to `due`;
    /// `false` when someone else moved it first.
    async fn take(&self, key: &str, due: i64, revision: u64) -> Result<bool> {
        let value = Bytes::from(due.to_string());
        let written = if revision == 0 {
            match self.kv.create(key, value).await {
                Ok(_) => true,
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => false,
                Err(e) => return Err(e.into()),
            }
        } else {
            match self.kv.update(key, value, revision).await {
                Ok(_) => true,
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => false,
                Err(e) => return Err(e.into()),
            }
        };
        Ok(written)
    }

    async fn try_claim(&self, service: &str, job: &str, due: i64) -> Result<Option<bool>> {
        let key = key_of(service, job);
        let (last, revision) = self.last(&key).await?;
        if last >= due {
            return Ok(Some(false));
        }
        if self.leases.placement(service).await? != Placement::Here {
            return Ok(None);
        }
        Ok(self.take(&key, due, revision).await?.then_some(true))
    }
}

impl SlotClaims for JobSlots {
    fn claim<'a>(
        &'a self,
        service: &'a str,
        job: &'a str,
        due: i64,
    ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            let started = Instant::now();
            loop {
                match self.try_claim(service, job, due).await {
                    Ok(Some(decided)) => return decided,
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(service, job, "cannot claim a tick yet: {error:#}")
                    }
                }
                if started.elapsed() > self.patience {
                    tracing::warn!(service, job, "nobody claimed the tick at {due}; skipped");
                    return false;
                }
                tokio::time::sleep(LOOK).await;
            }
        })
    }
}
