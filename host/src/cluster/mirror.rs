//! A part's records kept in step with JetStream key-value buckets, the way
//! the owner's settings, credentials and trusted publishers travel: one
//! entry per record, deleted when the record goes. A host that joins
//! follows the buckets as they are, then offers what it has that they
//! lack or hold otherwise (and drops what they say was removed); from
//! then on it writes what the part announces (tried again each second
//! until written) and follows what the other hosts write.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::kv::{self, Operation};
use tokio::sync::mpsc::UnboundedReceiver;

use super::buckets;
use super::watch::Follow;

/// A part whose records a [`Mirror`] keeps in step.
pub trait Mirrored: Send + Sync + 'static {
    /// What names one record.
    type Item: Ord + Clone + Send + Sync + 'static;

    fn key(item: &Self::Item) -> String;
    /// The record a key names (none: not one of this part's keys).
    fn item(key: &str) -> Option<Self::Item>;
    /// Which of the mirror's buckets keeps `item` (an index).
    fn bucket(_item: &Self::Item) -> usize {
        0
    }
    /// This host's record of `item` as it travels; none when it has none.
    fn local(&self, item: &Self::Item) -> Result<Option<Vec<u8>>>;
    /// Takes another host's record of `item` (`None`: it was removed),
    /// without announcing it.
    fn follow(
        &self,
        item: &Self::Item,
        record: Option<&[u8]>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Every item this host has a record of.
    fn items(&self) -> Result<Vec<Self::Item>>;
    /// Whether two records of `item` say the same (a part whose records
    /// are sealed afresh each time compares what they hold).
    fn same(&self, _item: &Self::Item, theirs: &[u8], mine: &[u8]) -> bool {
        theirs == mine
    }
}

/// A record as it travels: JSON.
pub fn encoded<T: serde::Serialize>(record: Option<T>) -> Result<Option<Vec<u8>>> {
    Ok(record
        .map(|record| serde_json::to_vec(&record))
        .transpose()?)
}

/// A record from another host, read back.
pub fn decoded<T: serde::de::DeserializeOwned>(record: Option<&[u8]>) -> Result<Option<T>> {
    record
        .map(serde_json::from_slice)
        .transpose()
        .context("an unreadable record from the cluster")
}

pub struct Mirror<M> {
    pub part: M,
    buckets: Vec<kv::Store>,
}

impl<M: Mirrored> Mirror<M> {
    pub fn new(part: M, buckets: Vec<kv::Store>) -> Mirror<M> {
        Mirror { part, buckets }
    }

    fn bucket(&self, item: &M::Item) -> &kv::Store {
        &self.buckets[M::bucket(item)]
    }

    /// Follows the buckets, then offers this host's records; returns the
    /// revisions to watch each bucket from.
    pub async fn join(&self) -> Result<Vec<u64>> {
        let mut held = HashMap::new();
        let mut from = Vec::new();
        for bucket in &self.buckets {
            let (keys, revision) = buckets::snapshot(bucket).await?;
            from.push(revision);
            for key in keys {
                if let Some(entry) = bucket.entry(&key).await.context("cannot read an entry")? {
                    self.follow(&entry).await;
                    if entry.operation == Operation::Put {
                        held.insert(key, entry.value.to_vec());
                    }
                }
            }
        }
        for item in self.part.items()? {
            let Some(mine) = self.part.local(&item)? else {
                continue;
            };
            match held.get(&M::key(&item)) {
                Some(theirs) if self.part.same(&item, theirs, &mine) => {}
                Some(_) => self.try_publish(&item).await?,
                None => match self
                    .bucket(&item)
                    .entry(M::key(&item))
                    .await
                    .context("cannot read an entry")?
                {
                    Some(removed) => self.follow(&removed).await,
                    None => self.try_publish(&item).await?,
                },
            }
        }
        Ok(from)
    }

    /// Writes what `announced` names, follows what the other hosts write;
    /// runs until aborted.
    pub async fn run(
        self,
        from: Vec<u64>,
        mut announced: UnboundedReceiver<M::Item>,
    ) -> Result<()> {
        let mut follows: Vec<Follow> = self
            .buckets
            .iter()
            .zip(from)
            .map(|(bucket, from)| Follow::from(bucket.clone(), from))
            .collect();
        let mut to_publish = BTreeSet::new();
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        loop {
            let changes = futures::future::select_all(
                follows.iter_mut().map(|follow| Box::pin(follow.next())),
            );
            tokio::select! {
                (change, _, _) = changes => self.follow(&change).await,
                Some(item) = announced.recv() => {
                    to_publish.insert(item);
                }
                _ = retry.tick() => {}
            }
            for item in std::mem::take(&mut to_publish) {
                if let Err(error) = self.try_publish(&item).await {
                    tracing::warn!(
                        key = M::key(&item),
                        "the other hosts do not know of this change yet: {error:#}"
                    );
                    to_publish.insert(item);
                }
            }
        }
    }

    async fn follow(&self, entry: &kv::Entry) {
        let Some(item) = M::item(&entry.key) else {
            return;
        };
        let record = (entry.operation == Operation::Put).then_some(entry.value.as_ref());
        if let Err(error) = self.part.follow(&item, record).await {
            tracing::error!(key = entry.key, "cannot follow the cluster: {error:#}");
        }
    }

    /// Writes this host's record of `item`, or its removal.
    async fn try_publish(&self, item: &M::Item) -> Result<()> {
        let bucket = self.bucket(item);
        match self.part.local(item)? {
            Some(record) => {
                bucket
                    .put(M::key(item), record.into())
                    .await
                    .context("cannot write to the cluster")?;
            }
            None => {
                bucket
                    .delete(M::key(item))
                    .await
                    .context("cannot write a removal to the cluster")?;
            }
        }
        Ok(())
    }
}
