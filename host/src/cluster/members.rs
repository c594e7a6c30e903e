//! The hosts of the locker: each writes its entry in `locker-hosts` every
//! third of the lease time; an entry not renewed vanishes with the lease
//! time, so the bucket lists the hosts alive now.

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::kv;

use crate::api::ClusterHost as Member;

/// Writes `member` now and every third of `lease`; runs until aborted.
pub async fn beat(kv: kv::Store, member: Member, lease: Duration) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let value: bytes::Bytes = serde_json::to_vec(&member).expect("serializable").into();
    loop {
        tick.tick().await;
        if let Err(error) = kv.put(&member.host, value.clone()).await {
            tracing::warn!("cannot tell the cluster this host is alive: {error}");
        }
    }
}

/// The hosts alive now.
pub async fn alive(kv: &kv::Store) -> Result<Vec<Member>> {
    let keys = super::buckets::keys(kv).await?;
    let mut members = Vec::new();
    for key in keys {
        if let Some(value) = kv.get(&key).await.context("cannot read a host's entry")?
            && let Ok(member) = serde_json::from_slice::<Member>(&value)
        {
            members.push(member);
        }
    }
    members.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(members)
}
