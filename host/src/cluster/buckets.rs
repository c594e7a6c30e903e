//! The JetStream buckets the hosts of one locker share, made by whichever
//! host comes first (replicated as `--cluster-replicas` says).

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, kv, object_store};
use futures::TryStreamExt;

/// The catalog: one entry per service, what every host installs.
pub const CATALOG: &str = "locker-catalog";
/// The jobs services created at run time.
pub const SCHEDULES: &str = "locker-schedules";
/// The owner's registry logins, passwords sealed.
pub const LOGINS: &str = "locker-logins";
/// The publisher key pinned for each package.
pub const TRUST: &str = "locker-trust";
/// The owner's settings of each service, secrets sealed.
pub const CONFIG: &str = "locker-config";
/// The owner's lasting credentials: password (hash), passkeys, API tokens
/// and sessions (hashes).
pub const OWNER: &str = "locker-owner";
/// The owner's tickets and grants (hashes), gone a day after their last write.
pub const PASSES: &str = "locker-passes";
/// One entry per living host, renewed by its heartbeat.
pub const HOSTS: &str = "locker-hosts";
/// One entry per owned service: the host that holds its lease.
pub const LEASES: &str = "locker-leases";
/// Each job's claimed ticks, and when the hosts were last alive.
pub const JOBS: &str = "locker-jobs";
/// Components, by digest.
pub const PACKAGES: &str = "locker-packages";

pub struct Buckets {
    pub catalog: kv::Store,
    pub owner: kv::Store,
    pub passes: kv::Store,
    pub config: kv::Store,
    pub trust: kv::Store,
    pub logins: kv::Store,
    pub schedules: kv::Store,
    pub hosts: kv::Store,
    pub leases: kv::Store,
    pub jobs: kv::Store,
    pub packages: object_store::ObjectStore,
}

impl Buckets {
    /// Opens the buckets, making those not there yet. Entries of `hosts`
    /// and `leases` vanish `lease` after their last write, and the server
    /// leaves a marker when they do, so watchers learn of it at once.
    pub async fn open(
        jetstream: &jetstream::Context,
        replicas: usize,
        lease: Duration,
    ) -> Result<Buckets> {
        let durable = |bucket: &str, history: i64| kv::Config {
            bucket: bucket.to_string(),
            history,
            num_replicas: replicas,
            ..Default::default()
        };
        let expiring = |bucket: &str| kv::Config {
            max_age: lease,
            limit_markers: Some(lease),
            ..durable(bucket, 1)
        };
        let buckets = Buckets {
            catalog: key_value(jetstream, durable(CATALOG, 5)).await?,
            owner: key_value(jetstream, durable(OWNER, 1)).await?,
            passes: key_value(
                jetstream,
                kv::Config {
                    max_age: Duration::from_secs(24 * 3600),
                    ..durable(PASSES, 1)
                },
            )
            .await?,
            config: key_value(jetstream, durable(CONFIG, 1)).await?,
            trust: key_value(jetstream, durable(TRUST, 1)).await?,
            logins: key_value(jetstream, durable(LOGINS, 1)).await?,
            schedules: key_value(jetstream, durable(SCHEDULES, 1)).await?,
            hosts: key_value(jetstream, expiring(HOSTS)).await?,
            leases: key_value(jetstream, expiring(LEASES)).await?,
            jobs: key_value(jetstream, durable(JOBS, 1)).await?,
            packages: objects(jetstream, PACKAGES, replicas).await?,
        };
        // A stream just made has no leader for a moment, and writes to it
        // fail until it has; its info comes from the leader.
        for stream in [
            CATALOG, OWNER, PASSES, CONFIG, TRUST, LOGINS, SCHEDULES, HOSTS, LEASES, JOBS,
        ]
        .map(|kv| format!("KV_{kv}"))
        {
            jetstream
                .get_stream(&stream)
                .await
                .with_context(|| format!("the bucket {stream} has no leader yet"))?;
        }
        jetstream
            .get_stream(format!("OBJ_{PACKAGES}"))
            .await
            .context("the packages bucket has no leader yet")?;
        Ok(buckets)
    }
}

async fn key_value(jetstream: &jetstream::Context, config: kv::Config) -> Result<kv::Store> {
    let bucket = config.bucket.clone();
    let replicas = config.num_replicas;
    match jetstream.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Made by another host already (perhaps a moment ago).
        Err(made) => jetstream
            .get_key_value(&bucket)
            .await
            .map_err(|_| made)
            .with_context(|| bucket_error(&bucket, replicas)),
    }
}

async fn objects(
    jetstream: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<object_store::ObjectStore> {
    let config = object_store::Config {
        bucket: bucket.to_string(),
        num_replicas: replicas,
        ..Default::default()
    };
    match jetstream.create_object_store(config).await {
        Ok(store) => Ok(store),
        Err(made) => jetstream
            .get_object_store(bucket)
            .await
            .map_err(|_| made)
            .with_context(|| bucket_error(bucket, replicas)),
    }
}

fn bucket_error(bucket: &str, replicas: usize) -> String {
    format!(
        "JetStream cannot keep the bucket {bucket} with {replicas} replicas \
         (is JetStream on, on at least {replicas} servers? --cluster-replicas sets the number)"
    )
}

/// Every key of a bucket (deleted ones aside).
pub async fn keys(kv: &kv::Store) -> Result<Vec<String>> {
    let cannot = || format!("cannot list the bucket {}", kv.name);
    kv.keys()
        .await
        .with_context(cannot)?
        .try_collect()
        .await
        .with_context(cannot)
}

/// A bucket as it is: its keys, and the revision after its newest entry,
/// for a watch that misses nothing written after the listing began.
pub async fn snapshot(kv: &kv::Store) -> Result<(Vec<String>, u64)> {
    let status = kv
        .status()
        .await
        .with_context(|| format!("cannot read the bucket {}", kv.name))?;
    let from = status.info.state.last_sequence + 1;
    Ok((keys(kv).await?, from))
}
