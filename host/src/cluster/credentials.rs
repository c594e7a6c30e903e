//! The owner's credentials kept in step across hosts (see
//! `owner::shared` for what travels and how): the password, passkeys, API
//! tokens and sessions in `locker-owner`; tickets and grants, which live
//! minutes or until their session ends, in `locker-passes` (entries vanish
//! a day after their last write). A credential that ends is deleted. So
//! the owner logs in through any host, and a session, token, ticket or
//! grant works on all of them, until it is ended through any.
//!
//! A ticket is good once on each host; two hosts could each accept the
//! same ticket only within the moment it takes its use to reach them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::kv::{self, Operation};
use tokio::sync::mpsc::UnboundedReceiver;

use super::buckets;
use super::watch::Follow;
use crate::owner::{Credential, Owner};

pub struct CredentialSync {
    pub owner: Arc<Owner>,
    pub lasting: kv::Store,
    pub passes: kv::Store,
}

impl CredentialSync {
    fn bucket(&self, credential: &Credential) -> &kv::Store {
        if credential.is_pass() {
            &self.passes
        } else {
            &self.lasting
        }
    }

    /// Follows both buckets as they are, then offers what this host has
    /// that they lack or hold older (and drops what they say ended).
    /// Returns the revisions to watch from.
    pub async fn join(&self) -> Result<(u64, u64)> {
        let mut held = HashMap::new();
        let mut from = Vec::new();
        for bucket in [&self.lasting, &self.passes] {
            let (keys, revision) = buckets::snapshot(bucket).await?;
            from.push(revision);
            for key in keys {
                if let Some(entry) = bucket
                    .entry(&key)
                    .await
                    .context("cannot read a credential")?
                {
                    self.follow(&entry);
                    if entry.operation == Operation::Put {
                        held.insert(key, entry.value.to_vec());
                    }
                }
            }
        }
        for credential in self.owner.credentials()? {
            let Some(mine) = self.owner.shared(&credential)? else {
                continue;
            };
            match held.get(&credential.key()) {
                Some(theirs) if *theirs == mine => {}
                Some(_) => self.try_publish(&credential).await?,
                None => match self
                    .bucket(&credential)
                    .entry(credential.key())
                    .await
                    .context("cannot read a credential")?
                {
                    Some(ended) => self.follow(&ended),
                    None => self.try_publish(&credential).await?,
                },
            }
        }
        Ok((from[0], from[1]))
    }

    pub async fn run(
        self,
        (lasting_from, passes_from): (u64, u64),
        mut announced: UnboundedReceiver<Credential>,
    ) -> Result<()> {
        let mut lasting = Follow::from(self.lasting.clone(), lasting_from);
        let mut passes = Follow::from(self.passes.clone(), passes_from);
        // Changes not yet written: tried again each second.
        let mut to_publish = BTreeSet::new();
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                change = lasting.next() => self.follow(&change),
                change = passes.next() => self.follow(&change),
                Some(credential) = announced.recv() => {
                    to_publish.insert(credential);
                }
                _ = retry.tick() => {}
            }
            for credential in std::mem::take(&mut to_publish) {
                if let Err(error) = self.try_publish(&credential).await {
                    tracing::warn!(
                        credential = credential.key(),
                        "the other hosts do not know of this change yet: {error:#}"
                    );
                    to_publish.insert(credential);
                }
            }
        }
    }

    fn follow(&self, entry: &kv::Entry) {
        let Some(credential) = Credential::from_key(&entry.key) else {
            return;
        };
        let shared = (entry.operation == Operation::Put).then_some(entry.value.as_ref());
        if let Err(error) = self.owner.follow(&credential, shared) {
            tracing::error!(
                credential = entry.key,
                "cannot follow the cluster: {error:#}"
            );
        }
    }

    /// Writes this host's state of `credential`: its value, or its end.
    async fn try_publish(&self, credential: &Credential) -> Result<()> {
        let bucket = self.bucket(credential);
        match self.owner.shared(credential)? {
            Some(value) => {
                bucket
                    .put(credential.key(), value.into())
                    .await
                    .context("cannot write a credential to the cluster")?;
            }
            None => {
                bucket
                    .delete(credential.key())
                    .await
                    .context("cannot write a credential's end to the cluster")?;
            }
        }
        Ok(())
    }
}
