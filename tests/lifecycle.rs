//! Loading, unloading, the compiled-code cache, and the owner's commands.

#[path = "lifecycle/backups.rs"]
mod backups;
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{Locker, cli, cli_async, copy_dir, guest, install, install_async, workspace};

#[tokio::test(flavor = "multi_thread")]
async fn idle_services_are_unloaded_and_come_back_on_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    let locker = Locker::start(&root, &["--idle-timeout", "300ms"]);
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    assert_eq!(locker.status("hello-rs").await["state"], "idle");
    let status = locker
        .wait_for_status("hello-rs", Duration::from_secs(10), |s| {
            s["state"] == "installed"
        })
        .await;
    assert_eq!(status["loads"], 1);
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    let status = locker.status("hello-rs").await;
    assert_eq!(status["loads"], 2);
    // The second load came from the compiled-code cache.
    assert_eq!(status["last_load"]["outcome"], "hit");
    let log = std::fs::read_to_string(root.join("logs/hello-rs.log")).unwrap();
    assert!(log.contains("unloaded (idle)"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_cache_entry_is_rebuilt_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cache = dir.path().join("cache");
    install(&root, &guest("hello-rs"));
    let cache_arg = ["--cache-dir", cache.to_str().unwrap()];

    // Installed while no host ran: the host compiles it as it starts,
    // before any request, and its first load finds it in the cache.
    let locker = Locker::start_with(&root, &cache_arg);
    locker
        .wait_for_status("hello-rs", Duration::from_secs(60), |s| {
            s["code"] == "ready"
        })
        .await;
    assert_eq!(locker.status("hello-rs").await["loads"], 0);
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    assert_eq!(
        locker.status("hello-rs").await["last_load"]["outcome"],
        "hit"
    );
    let log = std::fs::read_to_string(root.join("logs/hello-rs.log")).unwrap();
    assert!(log.contains("compiled into the code cache"), "{log}");
    locker.stop();

    // An entry is the compiled code and its checksum beside it.
    let mut entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let (entry, checksum) = (&entries[0], &entries[1]);
    assert!(entry.to_str().unwrap().ends_with(".cwasm"), "{entry:?}");
    assert!(
        checksum.to_str().unwrap().ends_with(".cwasm.sum"),
        "{checksum:?}"
    );
    let good = std::fs::read(entry).unwrap();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    let corruptions = [
        ("one flipped byte in the code", Some(flipped.clone())),
        // A load skips the hash only for the very file it checked before:
        // a write in place changes the file's change time, which cannot be
        // set back as its modification time can.
        (
            "one flipped byte, its modification time put back",
            Some(flipped),
        ),
        ("truncated", Some(good[..good.len() / 3].to_vec())),
        ("garbage", Some(b"not compiled code".to_vec())),
        ("its checksum file removed", None),
    ];
    for (what, bytes) in corruptions {
        let modified = std::fs::metadata(entry).unwrap().modified().unwrap();
        match bytes {
            Some(bytes) => std::fs::write(entry, &bytes).unwrap(),
            None => std::fs::remove_file(checksum).unwrap(),
        }
        if what.contains("put back") {
            let file = std::fs::File::options().write(true).open(entry).unwrap();
            file.set_modified(modified).unwrap();
        }
        let locker = Locker::start_with(&root, &cache_arg);
        let (code, body) = locker.get("/hello-rs/again").await;
        assert_eq!(
            (code, body.trim()),
            (200, "hello from rust at /again, to owner"),
            "{what}"
        );
        assert_eq!(
            locker.status("hello-rs").await["last_load"]["outcome"],
            "rebuilt",
            "{what}"
        );
        locker.stop();
        assert_eq!(
            std::fs::read(entry).unwrap().len(),
            good.len(),
            "{what}: the entry was not rewritten"
        );
    }
    // Once rebuilt, the entry is used again.
    let locker = Locker::start_with(&root, &cache_arg);
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    assert_eq!(
        locker.status("hello-rs").await["last_load"]["outcome"],
        "hit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_fails_to_load_gets_a_clear_error_and_no_reload_storm() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cache = dir.path().join("cache");
    install(&root, &guest("hello-rs"));
    install(&root, &guest("notes"));
    // The installed component is damaged on disk after its install.
    std::fs::write(
        root.join("packages/hello-rs/hello_rs.wasm"),
        b"\0asm damaged",
    )
    .unwrap();
    let locker = Locker::start_with(&root, &["--cache-dir", cache.to_str().unwrap()]);
    let (code, body) = locker.get("/hello-rs/").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\\\"hello-rs\\\" failed to load"), "{body}");
    assert!(body.contains("no longer matches"), "{body}");
    // Requests right after are answered from the remembered failure.
    for _ in 0..20 {
        let (code, body) = locker.get("/hello-rs/").await;
        assert_eq!(code, 503);
        assert!(body.contains("failed to load"), "{body}");
    }
    let status = locker.status("hello-rs").await;
    assert_eq!(status["state"], "failed");
    assert_eq!(status["loads"], 0);
    let log = std::fs::read_to_string(root.join("logs/hello-rs.log")).unwrap();
    assert_eq!(log.matches("load failed").count(), 1, "{log}");
    // Other services are not affected.
    assert_eq!(locker.get("/notes/list").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_stops_starts_and_uninstalls_services_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("notes"));
    let locker = Locker::start(&root, &[]);
    assert_eq!(locker.put("/notes/file?path=keep.txt", "kept").await.0, 201);

    let out = cli_async(&root, &["stop", "notes"]).await;
    assert!(out.success, "{}", out.stderr);
    let (code, body) = locker.get("/notes/list").await;
    assert_eq!(code, 503);
    assert!(body.contains("stopped"), "{body}");
    let listing = cli_async(&root, &["list"]).await;
    assert!(listing.stdout.contains("stopped"), "{}", listing.stdout);

    let out = cli_async(&root, &["start", "notes"]).await;
    assert!(out.success, "{}", out.stderr);
    // `start` loads the service right away.
    assert_eq!(locker.status("notes").await["state"], "idle");
    assert_eq!(
        locker.get("/notes/file?path=keep.txt").await,
        (200, "kept".into())
    );

    let status = cli_async(&root, &["status", "notes", "--json"]).await;
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    // Three requests reached the service's route, one of them while stopped.
    assert_eq!(status["requests"], 3);

    let logs = cli_async(&root, &["logs", "notes"]).await;
    assert!(
        logs.stdout.contains("stopped by the owner"),
        "{}",
        logs.stdout
    );

    let out = cli_async(&root, &["uninstall", "notes", "--keep-data"]).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(locker.get("/notes/list").await.0, 404);
    assert!(root.join("services/notes/keep.txt").exists());
    assert!(!root.join("packages/notes").exists());
    // Reinstalling finds the kept data.
    install_async(&root, &guest("notes")).await;
    assert_eq!(
        locker.get("/notes/file?path=keep.txt").await,
        (200, "kept".into())
    );

    let out = cli_async(&root, &["uninstall", "notes"]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(!root.join("services/notes").exists());
}

#[test]
fn commands_work_without_a_host_and_a_host_finds_their_changes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    assert!(cli(&root, &["stop", "hello-rs"]).success);
    let status = cli(&root, &["status", "hello-rs", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["state"], "stopped");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let locker = Locker::start(&root, &[]);
        assert_eq!(locker.get("/hello-rs/").await.0, 503);
        let second = cli(&root, &["serve", "--listen", "127.0.0.1:0"]);
        assert!(!second.success);
        assert!(
            second.stderr.contains("already in use by pid"),
            "{}",
            second.stderr
        );
        locker.stop();
    });
    assert!(cli(&root, &["start", "hello-rs"]).success);
    assert!(
        !root.join("host.json").exists(),
        "a stopped host leaves no host.json"
    );
    let out = cli(&root, &["status", "nobody"]);
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("no service named \"nobody\" is installed"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_room_for_the_instance_pool_the_host_falls_back_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    // 16 GB of address space: too little for the pool's reservation
    // (terabytes of guard regions), enough for instances made on demand.
    let locker = Locker::start_with_address_space(&root, 16_000_000);
    let (code, health) = locker.get("/_locker/api/health").await;
    assert_eq!(code, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["pooling_allocator"], false);
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    assert!(
        locker
            .host_log()
            .contains("pooling allocator is unavailable"),
        "{}",
        locker.host_log()
    );
    drop(locker);
    // With room, the pool is used.
    let locker = Locker::start(&root, &[]);
    let (_, health) = locker.get("/_locker/api/health").await;
    assert!(health.contains("\"pooling_allocator\": true"), "{health}");
}

/// `scripts/make-root-fixture` made this root with the build of commit 017955c.
const EARLIER_ROOT: &str = "tests/fixtures/root-017955c";

/// The fixture keeps no binaries: each package gets the component built
/// from source by `scripts/build-guests`, and the catalog its digest, as an
/// earlier build would have recorded them at install.
fn put_back_components(root: &Path) {
    let db = rusqlite::Connection::open(root.join("locker.db")).unwrap();
    for entry in std::fs::read_dir(root.join("packages")).unwrap() {
        let package = entry.unwrap().path();
        let name = package.file_name().unwrap().to_str().unwrap().to_string();
        let manifest: toml::Table =
            toml::from_str(&std::fs::read_to_string(package.join("locker.toml")).unwrap()).unwrap();
        let component = manifest["component"].as_str().unwrap();
        let bytes = std::fs::read(guest(&name).join(component)).unwrap();
        std::fs::write(package.join(component), &bytes).unwrap();
        let digest = locker::package::component::digest_of(&bytes);
        let updated = db
            .execute(
                "UPDATE services SET digest = ?1 WHERE name = ?2",
                rusqlite::params![digest, name],
            )
            .unwrap();
        assert_eq!(updated, 1, "the fixture's catalog has no service {name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_made_by_an_earlier_build_opens() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    copy_dir(&workspace().join(EARLIER_ROOT), &root);
    put_back_components(&root);
    // Its events soon outlive the default retention (a week): keep them.
    let locker = Locker::start(&root, &["--event-retention", "100years"]);

    let listing = cli_async(&root, &["list", "--json"]).await;
    assert!(listing.success, "{}", listing.stderr);
    let services: Vec<Value> = serde_json::from_str(&listing.stdout).unwrap();
    let mut installed: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["version"].as_str().unwrap()))
        .collect();
    installed.sort();
    assert_eq!(
        installed,
        [
            ("hello-rs", "0.1.0"),
            ("notes", "0.1.0"),
            ("publisher", "0.1.0"),
            ("subscriber", "0.1.0"),
            ("ticker", "0.1.0"),
        ]
    );

    assert_eq!(
        locker.get("/notes/file?path=notes/first.txt").await,
        (200, "hello".to_string())
    );

    let (code, body) = locker.get("/_locker/api/events?topic=note/*").await;
    assert_eq!(code, 200, "{body}");
    let events: Vec<Value> = serde_json::from_str(&body).unwrap();
    let payload_of = |topic: &str| -> Vec<&str> {
        events
            .iter()
            .filter(|e| e["topic"] == topic && e["source"] == "publisher")
            .map(|e| e["payload"].as_str().unwrap())
            .collect()
    };
    assert_eq!(
        payload_of("note/changed"),
        [r#"{"title":"first"}"#],
        "{body}"
    );
    assert_eq!(
        payload_of("note/deleted"),
        [r#"{"title":"gone"}"#],
        "{body}"
    );

    let (code, body) = locker.get("/_locker/api/jobs").await;
    assert_eq!(code, 200, "{body}");
    let jobs: Vec<Value> = serde_json::from_str(&body).unwrap();
    let mut ticker_jobs: Vec<(&str, bool)> = jobs
        .iter()
        .filter(|j| j["service"] == "ticker")
        .map(|j| (j["name"].as_str().unwrap(), j["from_manifest"] == true))
        .collect();
    ticker_jobs.sort();
    assert_eq!(ticker_jobs, [("nightly", false), ("tick", true)], "{body}");

    let (code, body) = locker.get("/hello-rs/").await;
    assert_eq!((code, body.trim()), (200, "hello from rust at /, to owner"));

    // The database was made before its schema had a version; it has this
    // build's now.
    let db = rusqlite::Connection::open(root.join("locker.db")).unwrap();
    let version: i64 = db
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version as usize, locker::store::schema::VERSION);
}

/// An upgrade keeps the version before it, and a copy of the service's
/// folder as the upgrade found it: `rollback` returns to the version and
/// keeps the data, `rollback --data` returns to the folder too.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_returns_to_the_version_before_the_upgrade_with_or_without_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let out = cli_async(&root, &["rollback", "notes"]).await;
    assert!(!out.success, "rolled back a service that is not there");
    install(&root, &guest("notes"));
    let newer = support::guest_variant(dir.path(), "notes", |m| {
        m.set("version", "0.2.0");
    });
    // Offline, nothing to go back to yet.
    let out = cli_async(&root, &["rollback", "notes"]).await;
    assert!(
        !out.success && out.stderr.contains("no earlier version"),
        "{}",
        out.stderr
    );

    let locker = Locker::start(&root, &[]);
    let file = "/notes/file?path=state.txt";
    assert_eq!(locker.put(file, "one").await.0, 201);
    let upgrade = async || {
        let out = cli_async(&root, &["upgrade", newer.to_str().unwrap()]).await;
        assert!(out.success, "{}", out.stderr);
    };
    let version = async || locker.status("notes").await["version"].clone();
    upgrade().await;
    assert_eq!(locker.put(file, "two").await.0, 201);

    let out = cli_async(&root, &["rollback", "notes"]).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(version().await, "0.1.0");
    assert_eq!(
        locker.get(file).await,
        (200, "two".to_string()),
        "its data stays"
    );

    upgrade().await;
    assert_eq!(version().await, "0.2.0");
    assert_eq!(locker.put(file, "three").await.0, 201);
    let out = cli_async(&root, &["rollback", "notes", "--data"]).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(version().await, "0.1.0");
    assert_eq!(
        locker.get(file).await,
        (200, "two".to_string()),
        "its folder is as the upgrade found it"
    );
    drop(locker);

    // Offline too, and an uninstall takes what was kept with it.
    let out = cli_async(&root, &["rollback", "notes"]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(root.join("previous/notes/package").is_dir());
    let out = cli_async(&root, &["uninstall", "notes"]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(!root.join("previous/notes").exists());
}
