//! The contacts services end to end against a real CardDAV server
//! (Radicale): the `carddav` connector (Rust) syncs by its job and
//! announces each change; the `vcard-import` connector (JavaScript) takes a
//! file the owner uploads on its page; the `contacts` collection (Python)
//! merges the same person seen by both; the `address-book` app
//! (JavaScript) shows them in headless Chromium.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::carddav::{PASSWORD, Radicale, Tap, USER, vcard};
use crate::support::{
    Locker, cli_async, cli_with_input, eventually, guest, install_async, loopback_server,
};

const OWNER_PASSWORD: &str = "owner-pass-4d1c";
/// A name that runs a script wherever a page takes it for HTML.
const HOSTILE_NAME: &str = "<img src=x onerror=\"document.title='pwned'\">Mallory";

/// Installs the four services and points `carddav` at `book`.
async fn set_up(root: &Path, locker: &Locker, book: &str, services: &[&str]) {
    for name in services {
        install_async(root, &guest(name)).await;
    }
    // Until its settings are given, the host answers for it with how.
    let (code, page) = locker.get("/carddav/").await;
    assert_eq!(code, 503, "{page}");
    assert!(page.contains("locker config set carddav"), "{page}");
    let out = cli_async(root, &["config", "set", "carddav", "server", book]).await;
    assert!(out.success, "{}", out.stderr);
    let out = cli_async(root, &["config", "set", "carddav", "user", USER]).await;
    assert!(out.success, "{}", out.stderr);
    let out = cli_with_input(root, &["config", "set", "carddav", "password"], PASSWORD).await;
    assert!(out.success, "{}", out.stderr);
    // Not set up until now; its page says so no more.
    let (code, _) = locker.get("/carddav/status").await;
    assert_eq!(code, 200);
}

/// Runs the connector's `sync` job now, as `locker jobs run` does.
async fn sync(root: &Path) -> crate::support::CliOutput {
    cli_async(root, &["jobs", "run", "carddav/sync"]).await
}

async fn json(locker: &Locker, path: &str) -> Value {
    let (code, body) = locker.get(path).await;
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
}

/// The people the collection finds for `q`.
async fn search(locker: &Locker, q: &str) -> Value {
    json(locker, &format!("/contacts/search?q={q}")).await
}

/// Waits until the collection's search for `q` satisfies `ready`.
async fn search_until(locker: &Locker, q: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(
        &format!("the collection's answer for {q:?}"),
        Duration::from_secs(30),
        async || {
            let found = search(locker, q).await;
            if ready(&found) { Ok(found) } else { Err(found) }
        },
    )
    .await
}

fn names(found: &Value) -> Vec<String> {
    let mut names: Vec<String> = found["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|person| person["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Runs `tests/browser/contacts.py` in `mode` and returns what it saw.
async fn browser(locker: &Locker, root: &Path, mode: &str, extra: Value) -> Value {
    let screenshots = crate::support::workspace().join("target/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut args = serde_json::json!({
        "mode": mode,
        "locker": locker.origin(),
        "app": locker.service_origin("address-book"),
        "import": locker.service_origin("vcard-import"),
        "password": OWNER_PASSWORD,
        "screenshots": screenshots,
    });
    if mode == "first" {
        let out = cli_async(root, &["owner", "reset"]).await;
        assert!(out.success, "{}", out.stderr);
        args["setup_link"] = out.stdout.trim().into();
    }
    for (key, value) in extra.as_object().unwrap() {
        args[key] = value.clone();
    }
    crate::support::browser_script("contacts.py", &args).await
}

#[tokio::test(flavor = "multi_thread")]
async fn contacts_from_carddav_and_a_vcard_file_merge_and_show_in_the_app() {
    let _beside = super::CLUSTERS_ALONE.read().await;
    let dir = tempfile::tempdir().unwrap();
    let radicale = Radicale::start(&dir.path().join("radicale")).await;
    radicale
        .put(
            "ada",
            &vcard(
                "ada-1",
                "Ada Lovelace",
                "ada@example.org",
                "+44 20 7946 0001",
            ),
        )
        .await;
    radicale
        .put(
            "grace",
            &vcard(
                "grace-1",
                "Grace Hopper",
                "grace@navy.example",
                "+1 202 555 0142",
            ),
        )
        .await;
    radicale
        .put(
            "alan",
            &vcard("alan-1", "Alan Turing", "alan@example.org", ""),
        )
        .await;
    let tap = Tap::start(radicale.port).await;
    let root = dir.path().join("root");
    let locker = Locker::start(&root, &[]);
    let services = ["carddav", "vcard-import", "contacts", "address-book"];
    set_up(&root, &locker, &tap.book(), &services).await;

    // Its job syncs: three contacts kept, three announced, all merged.
    let out = sync(&root).await;
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let status = json(&locker, "/carddav/status").await;
    assert_eq!(status["contacts"], 3, "{status:#}");
    assert_eq!(status["last_sync"]["changed"], 3, "{status:#}");
    assert_eq!(
        tap.seen(),
        ["REPORT sync-collection", "REPORT addressbook-multiget"],
        "a first sync lists the book once and fetches the cards in one batch"
    );
    let found = search_until(&locker, "", |found| found["total"] == 3).await;
    assert_eq!(
        names(&found),
        ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    );

    // The owner uploads a .vcf on the import connector's page, then looks
    // at the app: Ada, in both, is one contact with two sources.
    let vcf = dir.path().join("export.vcf");
    std::fs::write(
        &vcf,
        vcard("imported-ada", "Ada King", "ADA@example.org", "")
            + &vcard(
                "imported-bob",
                "Bob Kahn",
                "bob@example.net",
                "+1 703 555 0100",
            ),
    )
    .unwrap();
    let seen = browser(
        &locker,
        &root,
        "first",
        serde_json::json!({ "vcf": vcf, "expect": 4, "query": "ada" }),
    )
    .await;
    assert!(
        seen["import_result"].as_str().unwrap().contains('2'),
        "{seen:#}"
    );
    let listed = seen["listed"].as_array().unwrap();
    assert_eq!(listed.len(), 4, "{seen:#}");
    let searched = seen["searched"].as_array().unwrap();
    assert_eq!(
        searched.len(),
        1,
        "a search for ada finds one person: {seen:#}"
    );
    let ada = searched[0].as_str().unwrap();
    assert!(
        ada.contains("carddav") && ada.contains("vcard-import"),
        "Ada shows both sources: {ada}"
    );
    let detail = seen["detail"].as_str().unwrap();
    assert!(
        detail.contains("Ada Lovelace") && detail.contains("Ada King"),
        "the detail shows each source's name: {detail}"
    );

    // The collection says the same, with where each field came from.
    let found = search(&locker, "ada").await;
    assert_eq!(found["total"], 1, "{found:#}");
    let id = found["people"][0]["id"].as_str().unwrap();
    let person = json(&locker, &format!("/contacts/people/{id}")).await;
    let emails = &person["fields"]["emails"];
    assert_eq!(emails[0]["value"], "ada@example.org", "{person:#}");
    let mut from: Vec<&str> = emails[0]["from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    from.sort();
    assert_eq!(from, ["carddav", "vcard-import"], "{person:#}");
    let sources = json(&locker, "/contacts/sources").await;
    assert_eq!(
        sources,
        serde_json::json!({ "carddav": 3, "vcard-import": 2 })
    );

    // Grace changes and Alan goes, in Radicale: the next sync carries both.
    radicale
        .put(
            "grace",
            &vcard(
                "grace-1",
                "Grace Brewster Hopper",
                "grace@navy.example",
                "+1 202 555 0142",
            ),
        )
        .await;
    radicale.delete("alan").await;
    // A card written to attack the owner's pages: it shows as text.
    radicale
        .put(
            "mallory",
            &vcard("mallory-1", HOSTILE_NAME, "mallory@evil.example", ""),
        )
        .await;
    let out = sync(&root).await;
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let status = json(&locker, "/carddav/status").await;
    assert_eq!(
        (
            &status["last_sync"]["changed"],
            &status["last_sync"]["deleted"]
        ),
        (&2.into(), &1.into()),
        "{status:#}"
    );
    let found = search_until(&locker, "", |found| {
        names(found).contains(&"Grace Brewster Hopper".to_string())
            && !names(found).contains(&"Alan Turing".to_string())
    })
    .await;
    assert_eq!(
        names(&found),
        [
            HOSTILE_NAME,
            "Ada Lovelace",
            "Bob Kahn",
            "Grace Brewster Hopper"
        ]
    );
    let seen = browser(
        &locker,
        &root,
        "again",
        serde_json::json!({ "expect": 4, "carddav": locker.service_origin("carddav") }),
    )
    .await;
    let listed = seen["listed"].to_string();
    assert!(
        listed.contains("Grace Brewster Hopper") && !listed.contains("Alan Turing"),
        "the page follows: {listed}"
    );
    // The hostile name is text on the app's page and on the connector's.
    assert!(listed.contains("<img src=x"), "{listed}");
    assert_eq!(seen["title"], "Address book", "{seen:#}");
    let connector = seen["connector_page"].as_str().unwrap();
    assert!(
        connector.contains("CardDAV contacts") && connector.contains("<img src=x"),
        "{connector}"
    );
    assert_eq!(seen["connector_title"], "CardDAV contacts");

    // Nothing changed: the sync (now by its page's "Sync now") asks for the
    // token's changes, and that is all.
    tap.clear();
    let (code, body) = locker.post("/carddav/sync", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(tap.seen(), ["REPORT sync-collection"]);
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&report["fetched"], &report["requests"]),
        (&0.into(), &1.into())
    );

    // The server is down: the sync fails, says why, and changes nothing.
    let kept = json(&locker, "/carddav/contacts").await;
    drop(radicale);
    let out = sync(&root).await;
    assert!(
        !out.success,
        "a sync against a stopped server succeeded: {}",
        out.stdout
    );
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("cannot reach"), "{said}");
    let status = json(&locker, "/carddav/status").await;
    let error = status["last_sync"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("cannot reach"), "{status:#}");
    let log = cli_async(&root, &["logs", "carddav"]).await.stdout;
    assert!(log.contains("sync failed: cannot reach"), "{log}");
    assert_eq!(json(&locker, "/carddav/contacts").await, kept);
    let found = search(&locker, "").await;
    assert_eq!(found["total"], 4, "{found:#}");

    // A server that answers garbage: the same.
    let (port, _) = loopback_server("<html>Sign in to continue</html>").await;
    let garbage = format!("http://127.0.0.1:{port}/dav/");
    let out = cli_async(&root, &["config", "set", "carddav", "server", &garbage]).await;
    assert!(out.success, "{}", out.stderr);
    let out = sync(&root).await;
    assert!(
        !out.success,
        "a sync against garbage succeeded: {}",
        out.stdout
    );
    let status = json(&locker, "/carddav/status").await;
    let error = status["last_sync"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("sync-collection answered 200"), "{status:#}");
    assert_eq!(json(&locker, "/carddav/contacts").await, kept);

    // The collection rebuilds from the connectors it finds, when asked ...
    let before = search(&locker, "").await;
    let (code, body) = locker.post("/contacts/rebuild", "").await;
    assert_eq!(code, 200, "{body}");
    let rebuilt: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rebuilt["people"], 4, "{rebuilt:#}");
    assert_eq!(
        rebuilt["sources"],
        serde_json::json!({ "carddav": 3, "vcard-import": 2 })
    );
    assert_eq!(search(&locker, "").await, before);
    // ... and when its data is gone.
    std::fs::remove_dir_all(root.join("services/contacts/data")).unwrap();
    assert_eq!(search(&locker, "").await["total"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_cut_off_by_a_killed_host_completes_after_restart_with_no_contact_lost_or_twice() {
    let _beside = super::CLUSTERS_ALONE.read().await;
    let dir = tempfile::tempdir().unwrap();
    let radicale = Radicale::start(&dir.path().join("radicale")).await;
    let people = [
        "Ann Arbor",
        "Ben Nevis",
        "Cat Stevens",
        "Dan Brown",
        "Eve Online",
    ];
    for (i, name) in people.iter().enumerate() {
        let email = format!(
            "{}@example.org",
            name.split(' ').next().unwrap().to_lowercase()
        );
        radicale
            .put(&format!("p{i}"), &vcard(&format!("p{i}"), name, &email, ""))
            .await;
    }
    let tap = Tap::start(radicale.port).await;
    let root = dir.path().join("root");
    let locker = Locker::start(&root, &[]);
    set_up(&root, &locker, &tap.book(), &["carddav", "contacts"]).await;
    // With every setting given, an upgrade names none as missing.
    let package = guest("carddav");
    let out = cli_async(&root, &["upgrade", package.to_str().unwrap()]).await;
    assert!(
        out.success && out.stdout.contains("upgraded carddav") && !out.stdout.contains("needs"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let out = cli_async(&root, &["config", "set", "carddav", "batch", "1"]).await;
    assert!(out.success, "{}", out.stderr);

    // One card per request: the listing, then cards 1 and 2; the third is
    // held back, so the host dies with exactly two contacts announced.
    tap.hold_from(4);
    let running = tokio::spawn({
        let root = root.clone();
        async move { sync(&root).await }
    });
    eventually(
        "the third card's request",
        Duration::from_secs(30),
        async || tap.seen().len() == 4,
    )
    .await;
    let announced = changed_events(&root).await;
    assert_eq!(announced, 2, "announced before the kill");
    drop(locker); // SIGKILL
    let _ = running.await;
    tap.release();
    // Had the kill caught the collection writing, its lock would be left
    // behind, held by an event handler no longer there: the next delivery
    // takes it over at once, rather than everyone waiting for it to go
    // stale (150 s).
    let lock = root.join("services/contacts/writing.lock");
    let _ = std::fs::create_dir(&lock);
    std::fs::write(lock.join("holder"), "event").unwrap();

    let locker = Locker::start(&root, &[]);
    let out = sync(&root).await;
    assert!(out.success, "{}{}", out.stdout, out.stderr);
    let status = json(&locker, "/carddav/status").await;
    assert_eq!(status["contacts"], 5, "{status:#}");
    // The two stored before the kill are found unchanged, not announced again.
    assert_eq!(changed_events(&root).await, 5);
    let found = search_until(&locker, "", |found| found["total"] == 5).await;
    assert_eq!(names(&found), people);
}

/// How many `contact/changed` events the locker has stored.
async fn changed_events(root: &Path) -> usize {
    let out = cli_async(
        root,
        &[
            "events",
            "--topic",
            "contact/changed",
            "--json",
            "--limit",
            "1000",
        ],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    let events: Value = serde_json::from_str(&out.stdout).unwrap();
    events.as_array().unwrap().len()
}
