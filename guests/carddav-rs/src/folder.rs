//! What the connector keeps in its folder, as plain JSON:
//! - `contacts/<uid>.json`, one `contact/card` per contact;
//! - `state.json`, the sync token, which server entry holds which contact,
//!   and how the last sync went.
//!
//! Every file is written whole under a temporary name and then renamed, so
//! a crash leaves the old file or the new one, never half of one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::card::Card;

const CONTACTS: &str = "contacts";
const STATE: &str = "state.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// The server it syncs from: a new one starts over.
    #[serde(default)]
    pub server: String,
    /// The server's token after the last complete sync.
    #[serde(default)]
    pub sync_token: Option<String>,
    /// Server entry (href) → what it holds.
    #[serde(default)]
    pub entries: BTreeMap<String, Held>,
    #[serde(default)]
    pub last_sync: Option<SyncReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Held {
    pub uid: String,
    pub etag: String,
}

/// How one sync went: shown on `/status` and the page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncReport {
    pub started: String,
    pub finished: String,
    /// What went wrong; the stored copy stayed as it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Requests made to the server.
    pub requests: u32,
    /// Entries the server said changed.
    pub fetched: usize,
    /// Contacts announced as changed (an entry fetched again but unchanged is not).
    pub changed: usize,
    pub deleted: usize,
}

pub fn load_state() -> Result<State, String> {
    match std::fs::read(STATE) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{STATE} is damaged: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(format!("cannot read {STATE}: {e}")),
    }
}

pub fn save_state(state: &State) -> Result<(), String> {
    write_atomically(STATE.into(), &serde_json::to_vec_pretty(state).unwrap())
}

pub fn read_contact(uid: &str) -> Option<Card> {
    let bytes = std::fs::read(contact_path(uid)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn write_contact(card: &Card) -> Result<(), String> {
    std::fs::create_dir_all(CONTACTS).map_err(|e| format!("cannot make {CONTACTS}/: {e}"))?;
    write_atomically(
        contact_path(&card.uid),
        &serde_json::to_vec_pretty(card).unwrap(),
    )
}

pub fn remove_contact(uid: &str) -> Result<(), String> {
    match std::fs::remove_file(contact_path(uid)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove the contact {uid:?}: {e}"))
        }
        _ => Ok(()),
    }
}

/// Every contact kept, sorted by name.
pub fn all_contacts() -> Vec<Card> {
    let mut cards: Vec<Card> = std::fs::read_dir(CONTACTS)
        .map(|entries| {
            entries
                .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
                .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
                .collect()
        })
        .unwrap_or_default();
    cards.sort_by_key(|card| card.name.to_lowercase());
    cards
}

pub fn count_contacts() -> usize {
    std::fs::read_dir(CONTACTS).map_or(0, |entries| entries.count())
}

/// A file name for any uid: its safe characters as they are, and a hash of
/// the whole uid when anything else (or its length) would not do.
fn contact_path(uid: &str) -> PathBuf {
    let safe = uid.len() <= 120
        && !uid.starts_with('.')
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    let name = if safe {
        uid.to_string()
    } else {
        let kept: String = uid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(60)
            .collect();
        format!("{kept}-{:016x}", fnv1a(uid.as_bytes()))
    };
    PathBuf::from(CONTACTS).join(format!("{name}.json"))
}

/// FNV-1a, 64 bits: stable across builds, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn write_atomically(path: PathBuf, bytes: &[u8]) -> Result<(), String> {
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
