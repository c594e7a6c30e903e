//! The owner: the one person a locker answers to. Their password and set-up
//! links (`password`), their browser sessions and the tickets and grants
//! that carry a session to each service's origin (`sessions`), their API
//! tokens and what each may open (`tokens`, `scope`), and the limit on
//! login attempts (`throttle`), one-time login links (`login_links`), and
//! their passkeys (`passkeys`). The HTTP front door asks this unit who is
//! calling; the root's `owner` tables keep what must survive a restart.

pub mod last_use;
pub mod login_links;
pub mod passkeys;
pub mod password;
pub mod scope;
pub mod secret;
pub mod sessions;
mod shared;
pub mod throttle;
pub mod tokens;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

pub use login_links::LoginLinks;
pub use passkeys::Passkeys;
pub use password::SetupError;
pub use scope::{Door, Scope};
pub use sessions::{Session, SessionPolicy, Sessions};
pub use throttle::LoginThrottle;
pub use tokens::{TokenEntry, Tokens};

use crate::api::TokenView;
use crate::changes::Changes;
use crate::store::LockerRoot;
use crate::store::owner::{OwnerStore, StoredToken};
use crate::store::root::write_atomically;

/// The label of the token the local CLI uses (kept in `<root>/cli.token`);
/// it opens only its own host, even in a cluster.
pub const CLI_TOKEN_LABEL: &str = "local CLI";

pub struct Owner {
    pub store: OwnerStore,
    pub sessions: Sessions,
    pub tokens: Tokens,
    pub throttle: LoginThrottle,
    pub login_links: LoginLinks,
    pub passkeys: Passkeys,
    has_password: AtomicBool,
    /// The credentials made, used or ended through this host (not those
    /// followed from the cluster).
    pub announced: Arc<Changes<Credential>>,
}

/// One of the owner's credentials, as a change to it is announced.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Credential {
    Password,
    /// The user handle passkeys are registered under.
    PasskeyUser,
    Token(String),
    Session(String),
    Passkey(String),
    /// A ticket, by its hash.
    Ticket(String),
    /// A grant, by its hash.
    Grant(String),
}

impl Owner {
    pub fn open(root: &LockerRoot, policy: SessionPolicy) -> Result<Owner> {
        let store = OwnerStore::open(root)?;
        let sessions = Sessions::load(&store, policy)?;
        let announced = sessions.announced.clone();
        Ok(Owner {
            sessions,
            tokens: Tokens::load(&store)?,
            throttle: LoginThrottle::default(),
            login_links: LoginLinks::default(),
            passkeys: Passkeys::announcing_to(announced.clone()),
            has_password: AtomicBool::new(store.password()?.is_some()),
            announced,
            store,
        })
    }

    pub fn has_password(&self) -> bool {
        self.has_password.load(Ordering::Relaxed)
    }

    /// A new one-time set-up code; earlier ones stop working.
    pub fn new_setup_code(&self) -> Result<String> {
        password::new_setup_code(&self.store)
    }

    /// Sets the password through a set-up code, and ends every session.
    /// Slow (argon2): call it off the async threads.
    pub fn choose_password(&self, code: &str, password: &str) -> Result<Result<(), SetupError>> {
        let chosen = password::choose(&self.store, code, password)?;
        if chosen.is_ok() {
            self.has_password.store(true, Ordering::Relaxed);
            self.sessions.end_all();
            self.announced.announce(Credential::Password);
        }
        Ok(chosen)
    }

    /// Changes the password, knowing the current one; every session but
    /// `from` ends. Slow (argon2): call it off the async threads.
    pub fn change_password(
        &self,
        from: &Session,
        current: &str,
        new: &str,
    ) -> Result<Result<(), SetupError>> {
        if !self.check_password(current)? {
            return Ok(Err(SetupError::WrongPassword));
        }
        let changed = password::change(&self.store, new, &from.id)?;
        if changed.is_ok() {
            self.sessions.end_others(from);
            self.announced.announce(Credential::Password);
        }
        Ok(changed)
    }

    /// Slow (argon2) on purpose: call it off the async threads.
    pub fn check_password(&self, password: &str) -> Result<bool> {
        password::verify(&self.store, password)
    }

    pub fn check_token(&self, token: &str) -> Option<Arc<TokenEntry>> {
        self.tokens.check(token, &self.store)
    }

    /// Makes a token; returns it (shown once) and its view.
    pub fn create_token(
        &self,
        scope: &Scope,
        label: &str,
        expires_at: Option<i64>,
    ) -> Result<(String, TokenView)> {
        let (token, stored) = tokens::create(&self.store, scope, label, expires_at)?;
        self.tokens.add(&stored)?;
        self.announced
            .announce(Credential::Token(stored.id.clone()));
        Ok((token, tokens::view(&stored)))
    }

    /// A token as stored, by id.
    pub fn stored_token(&self, id: &str) -> Result<Option<StoredToken>> {
        Ok(self
            .store
            .tokens()?
            .into_iter()
            .find(|token| token.id == id))
    }

    /// Accepts a token made through another host of the cluster.
    pub fn follow_token(&self, stored: &StoredToken) -> Result<()> {
        self.store.add_token(stored)?;
        self.tokens.add(stored)
    }

    /// Refuses a token revoked through another host of the cluster;
    /// `false` if there is none of that id.
    pub fn follow_revocation(&self, id: &str) -> Result<bool> {
        self.tokens.remove(id);
        self.store.remove_token(id)
    }

    /// Removes a passkey; `false` if there is none of that id.
    pub fn remove_passkey(&self, id: &str) -> Result<bool> {
        let removed = self.store.remove_passkey(id)?;
        self.announced.announce(Credential::Passkey(id.to_string()));
        Ok(removed)
    }

    pub fn token_views(&self) -> Result<Vec<TokenView>> {
        Ok(self.store.tokens()?.iter().map(tokens::view).collect())
    }

    /// Revokes a token at once; `false` if there is none of that id.
    pub fn revoke_token(&self, id: &str) -> Result<bool> {
        let removed = self.follow_revocation(id)?;
        self.announced.announce(Credential::Token(id.to_string()));
        Ok(removed)
    }

    /// Makes sure `<root>/cli.token` holds a working admin token, readable
    /// only by the user running the host: the CLI on this machine uses it.
    pub fn ensure_cli_token(&self, root: &LockerRoot) -> Result<()> {
        let path = root.cli_token_path();
        if let Ok(token) = std::fs::read_to_string(&path)
            && self
                .check_token(token.trim())
                .is_some_and(|entry| entry.scope == Scope::Admin)
        {
            return Ok(());
        }
        for old in self.store.tokens()? {
            if old.label == CLI_TOKEN_LABEL {
                self.revoke_token(&old.id)?;
            }
        }
        let (token, _) = self.create_token(&Scope::Admin, CLI_TOKEN_LABEL, None)?;
        write_atomically(&path, token.as_bytes(), &root.tmp_dir())
    }
}
