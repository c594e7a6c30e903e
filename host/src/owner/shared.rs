//! The owner's credentials as the hosts of a cluster share them: each as
//! a key and, while it lasts, a value (JSON). What is secret stays hashed
//! as at rest: a password as its argon2id hash, sessions, tokens, tickets
//! and grants as the SHA-256 of their secrets; passkeys are public keys.
//! Set-up codes, login links, the login throttle and passkey ceremonies
//! stay on the host where they began.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::sessions::{SharedGrant, SharedTicket};
use super::{CLI_TOKEN_LABEL, Credential, Owner};
use crate::store::owner::{StoredPasskey, StoredSession, StoredToken};

#[derive(Serialize, Deserialize)]
struct SharedPassword {
    hash: String,
    changed_at: i64,
}

impl Credential {
    /// Its key: `password`, `passkey-user`, `token.ID`, `session.ID`,
    /// `passkey.ID`, `ticket.HASH`, `grant.HASH`.
    pub fn key(&self) -> String {
        match self {
            Credential::Password => "password".into(),
            Credential::PasskeyUser => "passkey-user".into(),
            Credential::Token(id) => format!("token.{id}"),
            Credential::Session(id) => format!("session.{id}"),
            Credential::Passkey(id) => format!("passkey.{id}"),
            Credential::Ticket(hash) => format!("ticket.{hash}"),
            Credential::Grant(hash) => format!("grant.{hash}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Credential> {
        let credential = match key.split_once('.') {
            None if key == "password" => Credential::Password,
            None if key == "passkey-user" => Credential::PasskeyUser,
            Some(("token", id)) => Credential::Token(id.into()),
            Some(("session", id)) => Credential::Session(id.into()),
            Some(("passkey", id)) => Credential::Passkey(id.into()),
            Some(("ticket", hash)) => Credential::Ticket(hash.into()),
            Some(("grant", hash)) => Credential::Grant(hash.into()),
            _ => return None,
        };
        Some(credential)
    }

    /// A ticket or grant: short-lived, kept apart from what must last.
    pub fn is_pass(&self) -> bool {
        matches!(self, Credential::Ticket(_) | Credential::Grant(_))
    }
}

impl Owner {
    /// This host's state of `credential` as it travels; none when it is
    /// gone (or, the local CLI's token, never travels).
    pub fn shared(&self, credential: &Credential) -> Result<Option<Vec<u8>>> {
        let json = match credential {
            Credential::Password => self
                .store
                .password_record()?
                .map(|(hash, changed_at)| serde_json::to_vec(&SharedPassword { hash, changed_at })),
            Credential::PasskeyUser => self
                .store
                .passkey_user_if_made()?
                .map(|handle| serde_json::to_vec(&handle)),
            Credential::Token(id) => self
                .stored_token(id)?
                .filter(|token| token.label != CLI_TOKEN_LABEL)
                .map(|token| {
                    serde_json::to_vec(&StoredToken {
                        last_used: None,
                        ..token
                    })
                }),
            Credential::Session(id) => self
                .store
                .sessions()?
                .into_iter()
                .find(|session| session.id == *id)
                .map(|session| serde_json::to_vec(&session)),
            Credential::Passkey(id) => self
                .store
                .passkeys()?
                .into_iter()
                .find(|passkey| passkey.id == *id)
                .map(|passkey| serde_json::to_vec(&passkey)),
            Credential::Ticket(hash) => self
                .sessions
                .shared_ticket(hash)
                .map(|ticket| serde_json::to_vec(&ticket)),
            Credential::Grant(hash) => self
                .sessions
                .shared_grant(hash)
                .map(|grant| serde_json::to_vec(&grant)),
        };
        Ok(json.transpose()?)
    }

    /// Takes another host's state of `credential` (`None`: it is gone),
    /// without announcing it.
    pub fn follow(&self, credential: &Credential, shared: Option<&[u8]>) -> Result<()> {
        let Some(json) = shared else {
            return self.follow_removal(credential);
        };
        match credential {
            Credential::Password => {
                let password: SharedPassword = parse(json)?;
                self.store
                    .follow_password(&password.hash, password.changed_at)?;
                self.has_password
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Credential::PasskeyUser => self.store.follow_passkey_user(&parse::<String>(json)?)?,
            Credential::Token(_) => self.follow_token(&parse(json)?)?,
            Credential::Session(_) => self
                .sessions
                .follow_session(&parse::<StoredSession>(json)?, &self.store)?,
            Credential::Passkey(_) => self.store.add_passkey(&parse::<StoredPasskey>(json)?)?,
            Credential::Ticket(hash) => self
                .sessions
                .follow_ticket(hash, &parse::<SharedTicket>(json)?),
            Credential::Grant(hash) => self
                .sessions
                .follow_grant(hash, &parse::<SharedGrant>(json)?),
        }
        Ok(())
    }

    fn follow_removal(&self, credential: &Credential) -> Result<()> {
        match credential {
            // Never removed, only replaced.
            Credential::Password | Credential::PasskeyUser => {}
            Credential::Token(id) => {
                self.follow_revocation(id)?;
            }
            Credential::Session(id) => self.sessions.follow_end(id, &self.store)?,
            Credential::Passkey(id) => {
                self.store.remove_passkey(id)?;
            }
            Credential::Ticket(hash) | Credential::Grant(hash) => self.sessions.forget_pass(hash),
        }
        Ok(())
    }

    /// Every credential this host has that travels: what a host joining a
    /// cluster offers the others.
    pub fn credentials(&self) -> Result<Vec<Credential>> {
        let mut all = vec![Credential::Password, Credential::PasskeyUser];
        all.extend(
            self.store
                .tokens()?
                .into_iter()
                .filter(|token| token.label != CLI_TOKEN_LABEL)
                .map(|token| Credential::Token(token.id)),
        );
        all.extend(
            self.store
                .sessions()?
                .into_iter()
                .map(|session| Credential::Session(session.id)),
        );
        all.extend(
            self.store
                .passkeys()?
                .into_iter()
                .map(|passkey| Credential::Passkey(passkey.id)),
        );
        all.extend(
            self.sessions
                .grant_hashes()
                .into_iter()
                .map(Credential::Grant),
        );
        Ok(all)
    }
}

fn parse<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Result<T> {
    serde_json::from_slice(json).context("an unreadable credential from the cluster")
}
