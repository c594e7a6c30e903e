//! The owner's browser sessions, and how one reaches a service's origin.
//!
//! A login makes a session: its cookie lives only on the locker's origin. A
//! service's origin never sees that cookie. Instead (Sandstorm's pattern)
//! the locker's origin hands the browser a one-time **ticket** in a
//! redirect to the service; the service's origin trades the ticket for a
//! **grant**: a cookie of that origin alone, good for that service alone,
//! and only while the session lasts. Logging out or revoking the session
//! ends its grants too.
//!
//! Sessions are stored in the root (a restart keeps the owner logged in);
//! tickets and grants live in memory (after a restart the browser takes
//! the ticket round once more, unseen). Every change is announced, so the
//! other hosts of a cluster follow it (`follow_*`), quietly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Result;

use super::last_use::LastUse;
use super::{Credential, secret};
use crate::api::SessionView;
use crate::changes::Changes;
use crate::clock::{from_millis, now_millis, rfc3339};
use crate::store::owner::{OwnerStore, StoredSession};

/// How long sessions last.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// Unused for this long, a session ends.
    pub idle: Duration,
    /// However much it is used, a session ends this long after login.
    pub lifetime: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle: Duration::from_secs(7 * 24 * 3600),
            lifetime: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// A ticket is good once, for this long.
const TICKET_LIFETIME_MS: i64 = 60_000;

pub struct Session {
    pub id: String,
    hash: String,
    client: String,
    created_at: i64,
    last_seen: LastUse,
    ended: AtomicBool,
}

impl Session {
    fn of(stored: &StoredSession) -> Session {
        Session {
            id: stored.id.clone(),
            hash: stored.hash.clone(),
            client: stored.client.clone(),
            created_at: stored.created_at,
            last_seen: LastUse::new(stored.last_seen),
            ended: AtomicBool::new(false),
        }
    }

    pub fn view(&self) -> SessionView {
        SessionView {
            id: self.id.clone(),
            client: self.client.clone(),
            current: false,
            created_at: rfc3339(from_millis(self.created_at)),
            last_seen: rfc3339(from_millis(self.last_seen.get())),
        }
    }
}

struct Ticket {
    service: String,
    path: String,
    session: Arc<Session>,
    expires_at: i64,
}

struct Grant {
    service: String,
    session: Arc<Session>,
}

/// A ticket as the hosts of a cluster share it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SharedTicket {
    pub service: String,
    pub path: String,
    pub session: String,
    pub expires_at: i64,
}

/// A grant as the hosts of a cluster share it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SharedGrant {
    pub service: String,
    pub session: String,
}

pub struct Sessions {
    policy: SessionPolicy,
    /// Where sessions, tickets and grants made or ended here are told.
    pub(super) announced: Arc<Changes<Credential>>,
    by_hash: RwLock<HashMap<String, Arc<Session>>>,
    tickets: Mutex<HashMap<String, Ticket>>,
    grants: RwLock<HashMap<String, Grant>>,
}

impl Sessions {
    pub fn load(store: &OwnerStore, policy: SessionPolicy) -> Result<Sessions> {
        let by_hash = store
            .sessions()?
            .iter()
            .map(|stored| (stored.hash.clone(), Arc::new(Session::of(stored))))
            .collect();
        Ok(Sessions {
            policy,
            announced: Arc::default(),
            by_hash: RwLock::new(by_hash),
            tickets: Mutex::default(),
            grants: RwLock::default(),
        })
    }

    /// Starts a session for a client that gave the password; returns the
    /// secret its cookie carries.
    pub fn start(&self, store: &OwnerStore, client: &str) -> Result<String> {
        let secret = secret::new_secret();
        let now = now_millis();
        let stored = StoredSession {
            id: secret::new_id(),
            hash: secret::hash(&secret),
            client: client.to_string(),
            created_at: now,
            last_seen: now,
        };
        store.add_session(&stored)?;
        self.by_hash
            .write()
            .unwrap()
            .insert(stored.hash.clone(), Arc::new(Session::of(&stored)));
        self.announced.announce(Credential::Session(stored.id));
        Ok(secret)
    }

    /// The live session a cookie's secret names, marked as used now.
    pub fn check(&self, secret: &str, store: &OwnerStore) -> Option<Arc<Session>> {
        let session = self
            .by_hash
            .read()
            .unwrap()
            .get(&secret::hash(secret))?
            .clone();
        self.alive(&session, store).then_some(session)
    }

    /// Whether `session` still holds; ends it if it has expired.
    fn alive(&self, session: &Arc<Session>, store: &OwnerStore) -> bool {
        if session.ended.load(Ordering::Relaxed) {
            return false;
        }
        let now = now_millis();
        let idle = now - session.last_seen.get();
        let age = now - session.created_at;
        if idle > self.policy.idle.as_millis() as i64
            || age > self.policy.lifetime.as_millis() as i64
        {
            self.end(session, store);
            return false;
        }
        if session.last_seen.mark(now) {
            match store.touch_session(&session.id, now) {
                Ok(()) => self
                    .announced
                    .announce(Credential::Session(session.id.clone())),
                Err(error) => {
                    tracing::warn!("cannot record the use of session {}: {error:#}", session.id)
                }
            }
        }
        true
    }

    /// Ends a session, with every grant it made.
    pub fn end(&self, session: &Session, store: &OwnerStore) {
        self.end_quietly(session, store);
        self.announced
            .announce(Credential::Session(session.id.clone()));
    }

    fn end_quietly(&self, session: &Session, store: &OwnerStore) {
        session.ended.store(true, Ordering::Relaxed);
        self.by_hash.write().unwrap().remove(&session.hash);
        self.grants
            .write()
            .unwrap()
            .retain(|_, grant| grant.session.id != session.id);
        if let Err(error) = store.remove_session(&session.id) {
            tracing::warn!("cannot remove session {}: {error:#}", session.id);
        }
    }

    fn by_id(&self, id: &str) -> Option<Arc<Session>> {
        self.by_hash
            .read()
            .unwrap()
            .values()
            .find(|session| session.id == id)
            .cloned()
    }

    /// Ends the session of this id; `false` if there is none.
    pub fn revoke(&self, id: &str, store: &OwnerStore) -> bool {
        match self.by_id(id) {
            Some(session) => {
                self.end(&session, store);
                true
            }
            None => false,
        }
    }

    /// Ends every session but `keep` (the owner changed the password
    /// from it); the store has forgotten them already.
    pub fn end_others(&self, keep: &Session) {
        self.by_hash.write().unwrap().retain(|_, session| {
            let others = session.id != keep.id;
            if others {
                session.ended.store(true, Ordering::Relaxed);
                self.announced
                    .announce(Credential::Session(session.id.clone()));
            }
            !others
        });
        self.grants
            .write()
            .unwrap()
            .retain(|_, grant| grant.session.id == keep.id);
    }

    /// Ends every session (a new password was chosen).
    pub fn end_all(&self) {
        for (_, session) in self.by_hash.write().unwrap().drain() {
            session.ended.store(true, Ordering::Relaxed);
            self.announced
                .announce(Credential::Session(session.id.clone()));
        }
        self.grants.write().unwrap().clear();
    }

    pub fn list(&self, store: &OwnerStore) -> Vec<SessionView> {
        let sessions: Vec<_> = self.by_hash.read().unwrap().values().cloned().collect();
        let mut views: Vec<_> = sessions
            .iter()
            .filter(|session| self.alive(session, store))
            .map(|session| session.view())
            .collect();
        views.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        views
    }

    /// A one-time ticket that lets `session` into `service`'s origin at `path`.
    pub fn issue_ticket(&self, session: &Arc<Session>, service: &str, path: &str) -> String {
        let ticket = secret::new_secret();
        let now = now_millis();
        let mut tickets = self.tickets.lock().unwrap();
        tickets.retain(|_, ticket| ticket.expires_at > now);
        let hash = secret::hash(&ticket);
        tickets.insert(
            hash.clone(),
            Ticket {
                service: service.to_string(),
                path: path.to_string(),
                session: session.clone(),
                expires_at: now + TICKET_LIFETIME_MS,
            },
        );
        self.announced.announce(Credential::Ticket(hash));
        ticket
    }

    /// Trades a ticket, at the service it was made for, for a grant: the
    /// secret of the service origin's cookie, and the path to go on to.
    pub fn redeem_ticket(
        &self,
        ticket: &str,
        service: &str,
        store: &OwnerStore,
    ) -> Option<(String, String)> {
        let hash = secret::hash(ticket);
        let ticket = self.tickets.lock().unwrap().remove(&hash)?;
        self.announced.announce(Credential::Ticket(hash));
        if ticket.service != service
            || ticket.expires_at <= now_millis()
            || !self.alive(&ticket.session, store)
        {
            return None;
        }
        let grant = secret::new_secret();
        let hash = secret::hash(&grant);
        self.grants.write().unwrap().insert(
            hash.clone(),
            Grant {
                service: ticket.service,
                session: ticket.session,
            },
        );
        self.announced.announce(Credential::Grant(hash));
        Some((grant, ticket.path))
    }

    /// Whether a grant's secret lets its holder into `service`.
    pub fn check_grant(&self, grant: &str, service: &str, store: &OwnerStore) -> bool {
        let session = match self.grants.read().unwrap().get(&secret::hash(grant)) {
            Some(grant) if grant.service == service => grant.session.clone(),
            _ => return false,
        };
        self.alive(&session, store)
    }
}

/// What another host of the cluster did, followed here quietly.
impl Sessions {
    /// A session started (or used) through another host.
    pub fn follow_session(&self, stored: &StoredSession, store: &OwnerStore) -> Result<()> {
        store.add_session(stored)?;
        match self.by_id(&stored.id) {
            Some(session) => {
                if stored.last_seen > session.last_seen.get() {
                    session.last_seen.mark(stored.last_seen);
                }
            }
            None => {
                self.by_hash
                    .write()
                    .unwrap()
                    .insert(stored.hash.clone(), Arc::new(Session::of(stored)));
            }
        }
        Ok(())
    }

    /// A session ended through another host.
    pub fn follow_end(&self, id: &str, store: &OwnerStore) -> Result<()> {
        match self.by_id(id) {
            Some(session) => self.end_quietly(&session, store),
            None => {
                store.remove_session(id)?;
            }
        }
        Ok(())
    }

    /// A ticket issued through another host (one of an unknown session is
    /// of no use here).
    pub fn follow_ticket(&self, hash: &str, shared: &SharedTicket) {
        if let Some(session) = self.by_id(&shared.session) {
            self.tickets.lock().unwrap().insert(
                hash.to_string(),
                Ticket {
                    service: shared.service.clone(),
                    path: shared.path.clone(),
                    session,
                    expires_at: shared.expires_at,
                },
            );
        }
    }

    /// A grant made through another host.
    pub fn follow_grant(&self, hash: &str, shared: &SharedGrant) {
        if let Some(session) = self.by_id(&shared.session) {
            self.grants.write().unwrap().insert(
                hash.to_string(),
                Grant {
                    service: shared.service.clone(),
                    session,
                },
            );
        }
    }

    /// A ticket used (or a grant ended) through another host.
    pub fn forget_pass(&self, hash: &str) {
        self.tickets.lock().unwrap().remove(hash);
        self.grants.write().unwrap().remove(hash);
    }

    pub fn shared_ticket(&self, hash: &str) -> Option<SharedTicket> {
        let tickets = self.tickets.lock().unwrap();
        let ticket = tickets.get(hash)?;
        Some(SharedTicket {
            service: ticket.service.clone(),
            path: ticket.path.clone(),
            session: ticket.session.id.clone(),
            expires_at: ticket.expires_at,
        })
    }

    pub fn shared_grant(&self, hash: &str) -> Option<SharedGrant> {
        let grants = self.grants.read().unwrap();
        let grant = grants.get(hash)?;
        Some(SharedGrant {
            service: grant.service.clone(),
            session: grant.session.id.clone(),
        })
    }

    /// The live grants' hashes (tickets are too short-lived to share late).
    pub fn grant_hashes(&self) -> Vec<String> {
        self.grants.read().unwrap().keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, OwnerStore) {
        let dir = tempfile::tempdir().unwrap();
        let root = crate::store::LockerRoot::open(dir.path()).unwrap();
        let store = OwnerStore::open(&root).unwrap();
        (dir, store)
    }

    #[test]
    fn a_session_ends_when_idle_or_too_old_and_takes_its_grants_along() {
        let (_dir, store) = store();
        let lasting = Sessions::load(&store, SessionPolicy::default()).unwrap();
        let secret = lasting.start(&store, "127.0.0.1").unwrap();
        let session = lasting
            .check(&secret, &store)
            .expect("a fresh session holds");
        let ticket = lasting.issue_ticket(&session, "notes", "/a");
        assert!(
            lasting.redeem_ticket(&ticket, "photos", &store).is_none(),
            "another service's ticket"
        );
        let ticket = lasting.issue_ticket(&session, "notes", "/a");
        let (grant, path) = lasting.redeem_ticket(&ticket, "notes", &store).unwrap();
        assert_eq!(path, "/a");
        assert!(
            lasting.redeem_ticket(&ticket, "notes", &store).is_none(),
            "a ticket is good once"
        );
        assert!(lasting.check_grant(&grant, "notes", &store));
        assert!(!lasting.check_grant(&grant, "photos", &store));
        assert!(lasting.revoke(&session.id, &store));
        assert!(lasting.check(&secret, &store).is_none());
        assert!(
            !lasting.check_grant(&grant, "notes", &store),
            "the grant ended with its session"
        );

        // Loaded again from the store with no idle time allowed: gone.
        let secret = lasting.start(&store, "127.0.0.1").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let strict = SessionPolicy {
            idle: Duration::from_millis(1),
            ..SessionPolicy::default()
        };
        let reloaded = Sessions::load(&store, strict).unwrap();
        assert!(
            reloaded.check(&secret, &store).is_none(),
            "an idle session held"
        );
        assert!(
            store.sessions().unwrap().is_empty(),
            "the ended session stayed stored"
        );

        let young = SessionPolicy {
            lifetime: Duration::from_millis(1),
            ..SessionPolicy::default()
        };
        let short = Sessions::load(&store, young).unwrap();
        let secret = short.start(&store, "127.0.0.1").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            short.check(&secret, &store).is_none(),
            "a session outlived its lifetime"
        );
    }
}
