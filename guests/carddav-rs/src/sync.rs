//! One sync: ask the server what changed since the last token, fetch the
//! changed vCards a batch at a time, announce and store each contact, drop
//! the deleted ones, and only then keep the new token.
//!
//! Crash-safe without a journal: a contact is announced before it is
//! stored, and the token is kept last. A sync cut off anywhere runs again
//! from the old token; contacts stored already are found unchanged and not
//! announced twice, the rest are announced then.

use std::collections::{BTreeMap, BTreeSet};

use locker_sdk::{config, events};

use crate::card::Card;
use crate::dav::{AddressBook, Changes, DavError};
use crate::folder::{self, Held, State, SyncReport};

/// The settings a sync needs (the host gives no instance until the
/// required ones are set).
pub struct Settings {
    pub server: String,
    pub user: String,
    pub password: String,
    pub batch: usize,
}

impl Settings {
    pub fn read() -> Result<Settings, String> {
        let required = |key: &str| {
            config::get(key)
                .map_err(|e| format!("cannot read the setting {key}: {e:?}"))?
                .ok_or_else(|| format!("the setting {key} is not set"))
        };
        let batch = config::get_or("batch", "100");
        Ok(Settings {
            server: required("server")?,
            user: required("user")?,
            password: required("password")?,
            batch: batch
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| format!("batch must be 1 to 1000 contacts, not {batch:?}"))?,
        })
    }
}

/// Runs one sync and records how it went in `state.json`; the error, if
/// any, is also returned (the job fails with it, so the host shows it).
pub fn run(now: &str) -> Result<SyncReport, String> {
    let mut state = folder::load_state()?;
    let mut report = SyncReport {
        started: now.to_string(),
        ..SyncReport::default()
    };
    let outcome = Settings::read().and_then(|settings| sync(&settings, &mut state, &mut report));
    report.finished = crate::now();
    if let Err(error) = &outcome {
        eprintln!("sync failed: {error}");
        report.error = Some(error.clone());
        // The rest of the state stays as the last complete sync left it.
        let mut kept = folder::load_state()?;
        kept.last_sync = Some(report.clone());
        folder::save_state(&kept)?;
        return Err(error.clone());
    }
    eprintln!(
        "sync: {} fetched, {} changed, {} deleted, {} requests",
        report.fetched, report.changed, report.deleted, report.requests
    );
    state.last_sync = Some(report.clone());
    folder::save_state(&state)?;
    Ok(report)
}

fn sync(settings: &Settings, state: &mut State, report: &mut SyncReport) -> Result<(), String> {
    let mut book = AddressBook::new(&settings.server, &settings.user, &settings.password)?;
    if state.server != settings.server {
        // Another server: its tokens and entries mean nothing here.
        state.server = settings.server.clone();
        state.sync_token = None;
    }
    let changes = changes(&mut book, state.sync_token.as_deref());
    report.requests = book.requests;
    let changes = against_held(changes.map_err(|e| e.to_string())?, &state.entries);
    report.fetched = changes.changed.len();

    for batch in changes.changed.chunks(settings.batch) {
        let hrefs: Vec<&str> = batch.iter().map(|(href, _)| href.as_str()).collect();
        let entries = book.fetch(&hrefs);
        report.requests = book.requests;
        for entry in entries.map_err(|e| e.to_string())? {
            let file_name = entry.href.rsplit('/').next().unwrap_or_default();
            let card = Card::from_vcard(&entry.vcard, file_name.trim_end_matches(".vcf"))
                .map_err(|e| format!("{}: {e}", entry.href))?;
            let held = Held {
                uid: card.uid.clone(),
                etag: entry.etag,
            };
            if announce_and_store(card)? {
                report.changed += 1;
            }
            let before = state.entries.insert(entry.href, held.clone());
            // The card's UID changed on the server: the old contact is gone.
            if let Some(before) = before.filter(|before| before.uid != held.uid) {
                announce_deleted(&before.uid)?;
                report.deleted += 1;
            }
        }
    }

    for href in changes.deleted {
        if let Some(held) = state.entries.remove(&href) {
            announce_deleted(&held.uid)?;
            report.deleted += 1;
        }
    }
    state.sync_token = changes.token;
    Ok(())
}

/// What changed since `token`, by the best means the server has.
fn changes(book: &mut AddressBook, token: Option<&str>) -> Result<Changes, DavError> {
    match book.changes_since(token) {
        Err(DavError::TokenExpired) => {
            eprintln!("the server forgot the sync token: listing everything again");
            book.changes_since(None)
        }
        Err(DavError::NoSyncSupport) => book.list(),
        other => other,
    }
}

/// A complete listing (a first sync, a forgotten token, a server without
/// tokens) read against what is held: an entry held but not listed is
/// gone, and one listed with the ETag held has not changed, so it is not
/// fetched again.
fn against_held(mut changes: Changes, held: &BTreeMap<String, Held>) -> Changes {
    if changes.complete {
        let listed: BTreeSet<&str> = changes
            .changed
            .iter()
            .map(|(href, _)| href.as_str())
            .collect();
        changes.deleted.extend(
            held.keys()
                .filter(|href| !listed.contains(href.as_str()))
                .cloned(),
        );
        changes
            .changed
            .retain(|(href, etag)| held.get(href).is_none_or(|held| &held.etag != etag));
    }
    changes
}

/// Announces `card` if it is new or changed, then stores it. Whether it
/// was announced.
fn announce_and_store(mut card: Card) -> Result<bool, String> {
    if folder::read_contact(&card.uid).is_some_and(|stored| stored.same_as(&card)) {
        return Ok(false);
    }
    card.updated = Some(crate::now());
    let payload = serde_json::to_string(&card).expect("a card is JSON");
    events::publish("contact/changed", &payload)
        .map_err(|e| format!("cannot announce {:?}: {e:?}", card.uid))?;
    folder::write_contact(&card)?;
    Ok(true)
}

fn announce_deleted(uid: &str) -> Result<(), String> {
    let payload = serde_json::json!({ "uid": uid }).to_string();
    events::publish("contact/deleted", &payload)
        .map_err(|e| format!("cannot announce that {uid:?} is gone: {e:?}"))?;
    folder::remove_contact(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(uid: &str, etag: &str) -> Held {
        Held {
            uid: uid.into(),
            etag: etag.into(),
        }
    }

    #[test]
    fn a_complete_listing_fetches_only_what_changed_and_drops_what_is_gone() {
        let held = BTreeMap::from([
            ("/b/ada.vcf".to_string(), held("ada", "\"1\"")),
            ("/b/alan.vcf".to_string(), held("alan", "\"1\"")),
            ("/b/grace.vcf".to_string(), held("grace", "\"1\"")),
        ]);
        let listing = Changes {
            changed: vec![
                ("/b/ada.vcf".into(), "\"1\"".into()),
                ("/b/grace.vcf".into(), "\"2\"".into()),
                ("/b/bob.vcf".into(), "\"1\"".into()),
            ],
            deleted: Vec::new(),
            token: None,
            complete: true,
        };
        let changes = against_held(listing, &held);
        let fetched: Vec<&str> = changes
            .changed
            .iter()
            .map(|(href, _)| href.as_str())
            .collect();
        assert_eq!(fetched, ["/b/grace.vcf", "/b/bob.vcf"]);
        assert_eq!(changes.deleted, ["/b/alan.vcf"]);
    }

    #[test]
    fn changes_since_a_token_are_taken_as_the_server_says() {
        let held = BTreeMap::from([("/b/ada.vcf".to_string(), held("ada", "\"1\""))]);
        let report = Changes {
            changed: vec![("/b/ada.vcf".into(), "\"1\"".into())],
            deleted: Vec::new(),
            token: Some("t2".into()),
            complete: false,
        };
        let changes = against_held(report, &held);
        assert_eq!(changes.changed.len(), 1);
        assert!(changes.deleted.is_empty());
    }
}
