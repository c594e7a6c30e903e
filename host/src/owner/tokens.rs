//! API tokens: `locker_<id>_<secret>`, sent as `Authorization: Bearer`.
//! Shown once when made; the root keeps the secret's hash, the scope and
//! the expiry, and the host a copy in memory so checking one costs a hash
//! and a map lookup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};

use super::last_use::LastUse;
use super::scope::Scope;
use super::secret;
use crate::api::TokenView;
use crate::clock::{from_millis, now_millis, rfc3339};
use crate::store::owner::{OwnerStore, StoredToken};

const PREFIX: &str = "locker_";

/// Makes and records a token; returns it (the only time it is seen) and its view.
pub fn create(
    store: &OwnerStore,
    scope: &Scope,
    label: &str,
    expires_at: Option<i64>,
) -> Result<(String, StoredToken)> {
    let id = secret::new_id();
    let secret = secret::new_secret();
    let stored = StoredToken {
        hash: secret::hash(&secret),
        id: id.clone(),
        scope: scope.to_string(),
        label: label.to_string(),
        created_at: now_millis(),
        expires_at,
        last_used: None,
    };
    store.add_token(&stored)?;
    Ok((format!("{PREFIX}{id}_{secret}"), stored))
}

pub fn view(token: &StoredToken) -> TokenView {
    TokenView {
        id: token.id.clone(),
        scope: token.scope.clone(),
        label: token.label.clone(),
        created_at: rfc3339(from_millis(token.created_at)),
        expires_at: token.expires_at.map(|t| rfc3339(from_millis(t))),
        last_used: token.last_used.map(|t| rfc3339(from_millis(t))),
        expired: token.expires_at.is_some_and(|t| t <= now_millis()),
    }
}

/// Splits `locker_<id>_<secret>`.
fn parse(token: &str) -> Option<(&str, &str)> {
    token.strip_prefix(PREFIX)?.split_once('_')
}

/// A token the host accepts: what it opens, and until when.
pub struct TokenEntry {
    hash: String,
    pub scope: Scope,
    pub expires_at: Option<i64>,
    last_used: LastUse,
}

impl TokenEntry {
    /// Not expired yet.
    pub fn live(&self) -> bool {
        self.expires_at.is_none_or(|expires| expires > now_millis())
    }
}

/// The tokens a serving host accepts.
#[derive(Default)]
pub struct Tokens {
    by_id: RwLock<HashMap<String, Arc<TokenEntry>>>,
    /// Counts revocations, so whoever remembers a checked token knows when
    /// to check it again.
    generation: AtomicU64,
}

impl Tokens {
    pub fn load(store: &OwnerStore) -> Result<Tokens> {
        let tokens = Tokens::default();
        for stored in store.tokens()? {
            tokens.add(&stored)?;
        }
        Ok(tokens)
    }

    pub fn add(&self, stored: &StoredToken) -> Result<()> {
        let scope = stored
            .scope
            .parse()
            .with_context(|| format!("token {} has a scope this build does not know", stored.id))?;
        let entry = TokenEntry {
            hash: stored.hash.clone(),
            scope,
            expires_at: stored.expires_at,
            last_used: LastUse::new(stored.last_used.unwrap_or(0)),
        };
        self.by_id
            .write()
            .unwrap()
            .insert(stored.id.clone(), Arc::new(entry));
        Ok(())
    }

    pub fn remove(&self, id: &str) {
        self.by_id.write().unwrap().remove(id);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes whenever a token is revoked.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The entry of a valid, unexpired token. Records its use in `store`
    /// now and then (not on every request).
    pub fn check(&self, token: &str, store: &OwnerStore) -> Option<Arc<TokenEntry>> {
        let (id, secret) = parse(token)?;
        let entry = self.by_id.read().unwrap().get(id)?.clone();
        if secret::hash(secret) != entry.hash {
            return None;
        }
        if !entry.live() {
            return None;
        }
        let now = now_millis();
        if entry.last_used.mark(now)
            && let Err(error) = store.touch_token(id, now)
        {
            tracing::warn!("cannot record the use of token {id}: {error:#}");
        }
        Some(entry)
    }
}
