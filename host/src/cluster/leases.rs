//! Which host owns each service: a lease in the `locker-leases` bucket.
//!
//! A service with a working directory must run on one host at a time, so
//! the first host that needs it creates its entry (a compare-and-set: only
//! one create can win), renews it every third of the lease time, and
//! serves it; every other host forwards to it. An entry not renewed for
//! the lease time vanishes (the bucket's maximum age) and the server leaves
//! a marker, so the others see at once that the service is free. A host
//! counts its own lease as lost a sixth of the lease time before the
//! server would drop it, and stops serving the service then, so two hosts
//! never serve it at once (clocks need only run at the same rate).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation};
use bytes::Bytes;

use super::watch::Follow;

/// Where a service is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    Here,
    /// On the host of this id.
    Elsewhere(String),
}

pub struct Leases {
    kv: kv::Store,
    me: String,
    lease: Duration,
    /// Who holds each lease, as the watch last saw it, and when it saw so.
    holders: Mutex<HashMap<String, (String, Instant)>>,
    /// The leases this host holds: the revision of its last write, and
    /// when that write was acknowledged.
    held: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Leases {
    pub fn new(kv: kv::Store, me: String, lease: Duration) -> Leases {
        Leases {
            kv,
            me,
            lease,
            holders: Mutex::default(),
            held: Mutex::default(),
        }
    }

    /// How long a lease this host holds counts as its own after a renewal.
    fn trusted_for(&self) -> Duration {
        self.lease - self.lease / 6
    }

    /// Whether this host holds `service`'s lease now.
    pub fn holds(&self, service: &str) -> bool {
        self.held
            .lock()
            .unwrap()
            .get(service)
            .is_some_and(|(_, renewed)| renewed.elapsed() < self.trusted_for())
    }

    /// Where `service` is served: here if this host holds its lease or can
    /// take it now, else on its holder's host.
    pub async fn placement(&self, service: &str) -> Result<Placement> {
        if self.holds(service) {
            return Ok(Placement::Here);
        }
        if let Some(holder) = self.live_holder(service)
            && holder != self.me
        {
            return Ok(Placement::Elsewhere(holder));
        }
        self.take(service).await
    }

    fn live_holder(&self, service: &str) -> Option<String> {
        let holders = self.holders.lock().unwrap();
        let (host, seen) = holders.get(service)?;
        (seen.elapsed() < self.lease).then(|| host.clone())
    }

    /// Takes the lease if it is free (or still this host's from before a
    /// restart); otherwise says who has it.
    async fn take(&self, service: &str) -> Result<Placement> {
        let me = Bytes::from(self.me.clone());
        let revision = match self.kv.create(service, me.clone()).await {
            Ok(revision) => revision,
            Err(error) if error.kind() == CreateErrorKind::AlreadyExists => {
                let entry = self
                    .kv
                    .entry(service)
                    .await
                    .with_context(|| format!("cannot read the lease of {service}"))?;
                match entry {
                    Some(entry) if entry.operation == Operation::Put && entry.value != me => {
                        let holder = String::from_utf8_lossy(&entry.value).into_owned();
                        self.saw(service, Some(holder.clone()));
                        return Ok(Placement::Elsewhere(holder));
                    }
                    Some(entry) if entry.operation == Operation::Put => self
                        .kv
                        .update(service, me, entry.revision)
                        .await
                        .with_context(|| format!("cannot take back the lease of {service}"))?,
                    // Freed between the two reads: the next request tries again.
                    _ => anyhow::bail!("the lease of {service} changed hands; try again"),
                }
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot take the lease of {service}"));
            }
        };
        self.held
            .lock()
            .unwrap()
            .insert(service.to_string(), (revision, Instant::now()));
        tracing::info!(service, "this host now serves {service}");
        Ok(Placement::Here)
    }

    fn saw(&self, service: &str, holder: Option<String>) {
        let mut holders = self.holders.lock().unwrap();
        match holder {
            Some(host) => holders.insert(service.to_string(), (host, Instant::now())),
            None => holders.remove(service),
        };
    }

    /// Follows every lease's changes; runs until aborted.
    pub async fn watch(&self) {
        let mut changes = Follow::latest(self.kv.clone());
        loop {
            let change = changes.next().await;
            let holder = (change.operation == Operation::Put)
                .then(|| String::from_utf8_lossy(&change.value).into_owned());
            self.saw(&change.key, holder);
        }
    }

    /// Renews this host's leases every third of the lease time; `lost` is
    /// told of each it could not renew in time.
    pub async fn renew(&self, lost: impl Fn(&str)) {
        let mut tick = tokio::time::interval(self.lease / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let held: Vec<(String, u64)> = self
                .held
                .lock()
                .unwrap()
                .iter()
                .map(|(service, (revision, _))| (service.clone(), *revision))
                .collect();
            for (service, revision) in held {
                let renewed = self
                    .kv
                    .update(&service, Bytes::from(self.me.clone()), revision)
                    .await;
                let mut held = self.held.lock().unwrap();
                match renewed {
                    Ok(revision) => {
                        held.insert(service, (revision, Instant::now()));
                    }
                    Err(error) => {
                        let expired = held
                            .get(&service)
                            .is_none_or(|(_, renewed)| renewed.elapsed() >= self.trusted_for());
                        // Taken by another host (or gone): it is no longer ours.
                        let taken = error.kind() == kv::UpdateErrorKind::WrongLastRevision;
                        if taken || expired {
                            held.remove(&service);
                            drop(held);
                            tracing::warn!(service, "lost the lease of {service}: {error}");
                            lost(&service);
                        }
                    }
                }
            }
        }
    }

    /// Gives up every lease this host holds (at shutdown), so other hosts
    /// need not wait for them to expire.
    pub async fn release_all(&self) {
        let held: Vec<(String, u64)> = self
            .held
            .lock()
            .unwrap()
            .drain()
            .map(|(s, (r, _))| (s, r))
            .collect();
        for (service, revision) in held {
            if let Err(error) = self
                .kv
                .delete_expect_revision(&service, Some(revision))
                .await
            {
                tracing::warn!(service, "cannot give up the lease of {service}: {error}");
            }
        }
    }

    /// Each service's holder, as this host sees it.
    pub fn holders(&self) -> Vec<(String, String)> {
        let mut holders: Vec<(String, String)> = self
            .holders
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (_, seen))| seen.elapsed() < self.lease)
            .map(|(service, (host, _))| (service.clone(), host.clone()))
            .collect();
        for service in self.held.lock().unwrap().keys() {
            if !holders.iter().any(|(s, _)| s == service) {
                holders.push((service.clone(), self.me.clone()));
            }
        }
        holders.sort();
        holders
    }
}
