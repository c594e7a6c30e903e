//! The owner's API tokens kept in step across hosts: `locker-tokens` holds
//! each token's id, hash, scope, label and expiry; a revoked token's entry
//! is deleted. Each host's own local-CLI token stays on that host.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::kv::{self, Operation};
use tokio::sync::mpsc::UnboundedReceiver;

use super::buckets;
use super::watch::Follow;
use crate::owner::{CLI_TOKEN_LABEL, Owner};
use crate::store::owner::StoredToken;

pub struct TokenSync {
    pub owner: Arc<Owner>,
    pub kv: kv::Store,
}

impl TokenSync {
    /// Follows the bucket as it is, then adds the tokens only this host
    /// has (and drops those the bucket says were revoked). Returns the
    /// revision to watch from.
    pub async fn join(&self) -> Result<u64> {
        let (ids, from) = buckets::snapshot(&self.kv).await?;
        for id in &ids {
            if let Some(entry) = self.kv.entry(id).await.context("cannot read a token")? {
                self.follow(&entry);
            }
        }
        for token in self.owner.store.tokens()? {
            if ids.contains(&token.id) || token.label == CLI_TOKEN_LABEL {
                continue;
            }
            match self
                .kv
                .entry(&token.id)
                .await
                .context("cannot read a token")?
            {
                Some(revoked) => self.follow(&revoked),
                None => self.try_publish(&token.id).await?,
            }
        }
        Ok(from)
    }

    pub async fn run(self, from: u64, mut announced: UnboundedReceiver<String>) -> Result<()> {
        let mut changes = Follow::from(self.kv.clone(), from);
        // Changes not yet written: tried again each second.
        let mut to_publish = BTreeSet::new();
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                change = changes.next() => self.follow(&change),
                Some(id) = announced.recv() => {
                    to_publish.insert(id);
                }
                _ = retry.tick() => {}
            }
            for id in std::mem::take(&mut to_publish) {
                if let Err(error) = self.try_publish(&id).await {
                    tracing::warn!(token = %id, "the other hosts do not know of this token's change yet: {error:#}");
                    to_publish.insert(id);
                }
            }
        }
    }

    fn follow(&self, entry: &kv::Entry) {
        let followed = match entry.operation {
            Operation::Put => serde_json::from_slice::<StoredToken>(&entry.value)
                .context("unreadable")
                .and_then(|token| self.owner.follow_token(&token)),
            Operation::Delete | Operation::Purge => {
                self.owner.follow_revocation(&entry.key).map(|_| ())
            }
        };
        if let Err(error) = followed {
            tracing::error!(token = %entry.key, "cannot follow the cluster's token: {error:#}");
        }
    }

    /// Writes this host's state of token `id`: the token, or its revocation.
    async fn try_publish(&self, id: &str) -> Result<()> {
        match self.owner.stored_token(id)? {
            Some(token) if token.label == CLI_TOKEN_LABEL => Ok(()),
            Some(token) => {
                let token = StoredToken {
                    last_used: None,
                    ..token
                };
                self.kv
                    .put(id, serde_json::to_vec(&token)?.into())
                    .await
                    .context("cannot write the token to the cluster")?;
                Ok(())
            }
            None => {
                self.kv
                    .delete(id)
                    .await
                    .context("cannot write the revocation to the cluster")?;
                Ok(())
            }
        }
    }
}
