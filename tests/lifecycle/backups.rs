//! Backups, restores, exports and imports: made while the locker serves and
//! is busy, restored into new roots, and tried the wrong way in (a damaged,
//! truncated or wrongly unlocked archive, a path that leaves its folder, a
//! token that may only read).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Locker, cli, cli_async, cli_with_input, eventually, guest, install};

const PASSPHRASE: &str = "correct horse battery staple";
const SECRET: &str = "tok-BACKUP-51c2e7";

/// A root with a connector writing files, a publisher, a subscriber
/// recording what it gets, a service with a cron job, and one with a secret.
async fn busy_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for name in [
        "notes",
        "publisher",
        "subscriber",
        "ticker",
        "config-reader",
    ] {
        install(&root, &guest(name));
    }
    let set = cli(
        &root,
        &["config", "set", "config-reader", "server", "example.com"],
    );
    assert!(set.success, "{}", set.stderr);
    let set = cli_with_input(&root, &["config", "set", "config-reader", "token"], SECRET).await;
    assert!(set.success, "{}", set.stderr);
    std::fs::write(dir.join("passphrase"), format!("{PASSPHRASE}\n")).unwrap();
    root
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let relative = path.strip_prefix(base).unwrap().display().to_string();
                out.push((relative, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_under_load_restores_the_locker_as_of_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let root = busy_root(dir.path()).await;
    let locker = Arc::new(Locker::start(&root, &[]));
    let read = cli(&root, &["token", "create", "--scope", "read", "--json"]);
    assert!(read.success, "{}", read.stderr);
    let read_token = serde_json::from_str::<Value>(&read.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Load: a sync writing one file per request, and publishes, each one
    // after the last was answered (so what was answered is a prefix).
    let stop = Arc::new(AtomicBool::new(false));
    let (written, published) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (locker, stop, written) = (locker.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let path = format!("/notes/file?path=sync/{n:06}.json");
                let (code, body) = locker.put(&path, format!("{{\"n\":{n}}}")).await;
                assert!(code == 200 || code == 201, "{code} {body}");
                written.store(n, Ordering::SeqCst);
            }
        })
    };
    let publisher = {
        let (locker, stop, published) = (locker.clone(), stop.clone(), published.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let path = "/publisher/publish?topic=note/changed";
                let (code, body) = locker.post(path, format!("{{\"n\":{n}}}")).await;
                assert_eq!(code, 200, "{body}");
                published.store(n, Ordering::SeqCst);
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (written_before, published_before) = (
        written.load(Ordering::SeqCst),
        published.load(Ordering::SeqCst),
    );
    let archive = dir.path().join("locker.tar.zst");
    let passphrase_file = dir.path().join("passphrase");
    let made = cli_async(
        &root,
        &[
            "backup",
            "--to",
            archive.to_str().unwrap(),
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(made.success, "{}\n{}", made.stderr, locker.host_log());
    assert!(made.stdout.contains("secrets sealed"), "{}", made.stdout);
    let (written_after, published_after) = (
        written.load(Ordering::SeqCst),
        published.load(Ordering::SeqCst),
    );
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    publisher.await.unwrap();
    assert!(written_after > written_before && published_after > published_before);

    // The host says how it went.
    let status = cli(&root, &["status", "--json"]);
    assert!(status.success, "{}", status.stderr);
    let backups: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(backups["last"]["trigger"], "download");
    assert_eq!(backups["last"]["error"], Value::Null);

    let restored = dir.path().join("restored");
    let out = cli(
        &restored,
        &[
            "restore",
            archive.to_str().unwrap(),
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
        ],
    );
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("with the services' secrets"),
        "{}",
        out.stdout
    );

    // The sync's folder as of one moment: the files 1..K, whole, with K
    // between what was answered before and after the backup.
    let synced = files_under(&restored.join("services/notes/sync"));
    let k = synced.len() as u64;
    assert!(
        (written_before..=written_after).contains(&k),
        "{written_before} <= {k} <= {written_after}"
    );
    let live = files_under(&root.join("services/notes/sync"));
    assert_eq!(
        synced,
        live[..k as usize],
        "the restored folder differs from the live one"
    );
    for (n, (name, bytes)) in synced.iter().enumerate() {
        assert_eq!(name, &format!("{:06}.json", n + 1));
        assert_eq!(bytes, format!("{{\"n\":{}}}", n + 1).as_bytes());
    }
    // Nothing the backup leaves out came along.
    for left_out in ["cache", "cli.token", "host.json", "locker.lock", "tmp"] {
        let path = restored.join(left_out);
        assert!(
            !path.exists() || (path.is_dir() && is_empty(&path)),
            "{left_out} came along"
        );
    }
    // What the subscriber had written into its folder at the snapshot.
    let recorded_at_snapshot =
        std::fs::read_to_string(restored.join("services/subscriber/events.jsonl"))
            .unwrap_or_default();
    let listed_before = cli(&root, &["list", "--json"]);
    drop(locker);

    let again = Locker::start(&restored, &[]);
    // The same services, jobs, token and secret.
    let names = |list: &str| -> BTreeSet<(String, String)> {
        serde_json::from_str::<Vec<Value>>(list)
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().into(),
                    s["version"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(
        names(&cli(&restored, &["list", "--json"]).stdout),
        names(&listed_before.stdout)
    );
    let jobs = cli(&restored, &["jobs", "--json"]);
    assert!(jobs.stdout.contains("\"tick\""), "{}", jobs.stdout);
    let by_read_token = again
        .anonymous
        .get(again.url("/_locker/api/services"))
        .bearer_auth(&read_token)
        .send()
        .await
        .unwrap();
    assert_eq!(by_read_token.status(), 200, "the token did not survive");
    assert_eq!(
        again.get("/config-reader/config/token").await,
        (200, SECRET.into())
    );

    // The events: a prefix 1..M of the publishes, M covering every publish
    // answered before the backup began; each delivered to the subscriber.
    let (code, body) = again
        .get("/_locker/api/events?topic=note/changed&limit=1000000")
        .await;
    assert_eq!(code, 200, "{body}");
    let mut kept: Vec<u64> = serde_json::from_str::<Vec<Value>>(&body)
        .unwrap()
        .iter()
        .map(|e| {
            let payload: Value = serde_json::from_str(e["payload"].as_str().unwrap()).unwrap();
            payload["n"].as_u64().unwrap()
        })
        .collect();
    kept.sort();
    let m = kept.len() as u64;
    assert_eq!(
        kept,
        (1..=m).collect::<Vec<_>>(),
        "the events kept are not a prefix"
    );
    assert!(
        (published_before..=published_after).contains(&m),
        "{published_before} <= {m} <= {published_after}"
    );
    // The folders and the database are one moment: the subscriber's folder
    // holds no event the database does not.
    for line in recorded_at_snapshot.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        let payload: Value = serde_json::from_str(event["payload"].as_str().unwrap()).unwrap();
        assert!(
            payload["n"].as_u64().unwrap() <= m,
            "{line} is beyond the snapshot's {m} events"
        );
    }
    eventually(
        "every kept event delivered",
        Duration::from_secs(30),
        async || {
            let (_, lines) = again.get("/subscriber/events").await;
            let delivered: BTreeSet<u64> = lines
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter_map(|e| serde_json::from_str::<Value>(e["payload"].as_str()?).ok())
                .filter_map(|p| p["n"].as_u64())
                .collect();
            let missing = (1..=m).filter(|n| !delivered.contains(n)).count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} of {m} missing"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_truncated_or_wrongly_unlocked_backup_is_refused_and_leaves_the_root_empty() {
    let dir = tempfile::tempdir().unwrap();
    let root = busy_root(dir.path()).await;
    let put = std::fs::write(root.join("services/notes/kept.json"), "{\"kept\":true}");
    put.unwrap();
    let archive = dir.path().join("offline.tar.zst");
    let passphrase_file = dir.path().join("passphrase");
    let archive_arg = archive.to_str().unwrap();
    let passphrase_arg = passphrase_file.to_str().unwrap();
    // No host serves the root: the CLI backs it up itself.
    let made = cli(
        &root,
        &[
            "backup",
            "--to",
            archive_arg,
            "--passphrase-file",
            passphrase_arg,
        ],
    );
    assert!(made.success, "{}", made.stderr);
    let bytes = std::fs::read(&archive).unwrap();

    let attempt = |name: &str, archive: &Path, extra: &[&str]| {
        let target = dir.path().join(name);
        std::fs::create_dir(&target).unwrap();
        let mut args = vec!["restore", archive.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = cli(&target, &args);
        assert!(!out.success, "{name}: restored anyway");
        assert!(is_empty(&target), "{name}: the empty root was written to");
        out.stderr
    };
    let truncated = dir.path().join("truncated.tar.zst");
    std::fs::write(&truncated, &bytes[..bytes.len() * 6 / 10]).unwrap();
    let said = attempt("t", &truncated, &["--passphrase-file", passphrase_arg]);
    assert!(said.contains("truncated"), "{said}");

    let flipped = dir.path().join("flipped.tar.zst");
    let mut damaged = bytes.clone();
    damaged[bytes.len() / 2] ^= 0x40;
    std::fs::write(&flipped, &damaged).unwrap();
    let said = attempt("f", &flipped, &["--passphrase-file", passphrase_arg]);
    assert!(said.contains("damaged"), "{said}");

    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "tr0ub4dor&3\n").unwrap();
    let said = attempt(
        "w",
        &archive,
        &["--passphrase-file", wrong.to_str().unwrap()],
    );
    assert!(said.contains("passphrase is wrong"), "{said}");
    let said = attempt("n", &archive, &[]);
    assert!(said.contains("--no-secrets"), "{said}");

    let escaping = dir.path().join("escaping.tar.zst");
    write_archive(&escaping, "root", None, &[("../escaped.json", b"{}")]);
    let said = attempt("e", &escaping, &[]);
    assert!(said.contains("leaves its folder"), "{said}");
    assert!(!dir.path().join("escaped.json").exists());

    // A backup without its database: refused, not restored half.
    let hollow = dir.path().join("hollow.tar.zst");
    write_archive(&hollow, "root", None, &[("services/notes/x.json", b"{}")]);
    let said = attempt("h", &hollow, &[]);
    assert!(said.contains("no database"), "{said}");

    // Into a root that is not empty: refused, the root untouched.
    let before = files_under(&root);
    let out = cli(&root, &["restore", archive_arg, "--no-secrets"]);
    assert!(
        !out.success && out.stderr.contains("not empty"),
        "{}",
        out.stderr
    );
    assert_eq!(files_under(&root), before);

    // No leftovers of the refused restores beside the roots.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".locker-restore-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Without the passphrase, on purpose: everything but the secret.
    let bare = dir.path().join("bare");
    let out = cli(&bare, &["restore", archive_arg, "--no-secrets"]);
    assert!(out.success, "{}", out.stderr);
    assert_eq!(
        std::fs::read(bare.join("services/notes/kept.json")).unwrap(),
        b"{\"kept\":true}"
    );
    assert!(!bare.join("secrets.key").exists());
    let config = cli(&bare, &["config", "config-reader", "--json"]);
    let token = serde_json::from_str::<Vec<Value>>(&config.stdout)
        .unwrap()
        .into_iter()
        .find(|e| e["key"] == "token")
        .unwrap();
    assert_eq!(token["set"], false, "{token}");
    let server = cli(&bare, &["config", "config-reader", "--json"]).stdout;
    assert!(server.contains("example.com"), "{server}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_imports_back_into_a_stopped_service_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("notes"));
    install(&root, &guest("hello-rs"));
    let locker = Locker::start(&root, &[]);
    for (path, body) in [("a.json", "{\"a\":1}"), ("deep/b.json", "[2]")] {
        let (code, said) = locker.put(&format!("/notes/file?path={path}"), body).await;
        assert!(code == 200 || code == 201, "{code} {said}");
    }
    let exported_state = files_under(&root.join("services/notes"));
    let archive = dir.path().join("notes.tar.zst");
    let out = cli_async(
        &root,
        &["export", "notes", "--to", archive.to_str().unwrap()],
    )
    .await;
    assert!(out.success, "{}", out.stderr);

    // The service moves on; the import puts it back as exported.
    locker.put("/notes/file?path=a.json", "{\"a\":2}").await;
    locker.put("/notes/file?path=c.json", "{}").await;
    let out = cli_async(&root, &["import", "notes", archive.to_str().unwrap()]).await;
    assert!(
        !out.success && out.stderr.contains("stop it first"),
        "{}",
        out.stderr
    );
    assert!(cli_async(&root, &["stop", "notes"]).await.success);
    let out = cli_async(&root, &["import", "notes", archive.to_str().unwrap()]).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(files_under(&root.join("services/notes")), exported_state);
    assert!(cli_async(&root, &["start", "notes"]).await.success);
    assert_eq!(
        locker.get("/notes/file?path=a.json").await,
        (200, "{\"a\":1}".into())
    );

    // An export may not reach outside its service's folder.
    assert!(cli_async(&root, &["stop", "hello-rs"]).await.success);
    let sneaky = dir.path().join("sneaky.tar.zst");
    write_archive(
        &sneaky,
        "service",
        Some("hello-rs"),
        &[("services/notes/a.json", b"overwritten")],
    );
    let out = cli_async(&root, &["import", "hello-rs", sneaky.to_str().unwrap()]).await;
    assert!(
        !out.success && out.stderr.contains("not allowed there"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(root.join("services/notes/a.json")).unwrap(),
        b"{\"a\":1}"
    );

    // Only the owner's admin token (or session) hands out or takes in
    // archives: a read token, a service's token and no token are refused.
    let read = cli_async(&root, &["token", "create", "--scope", "read", "--json"]).await;
    let read = serde_json::from_str::<Value>(&read.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let scoped = cli_async(
        &root,
        &["token", "create", "--scope", "service:notes", "--json"],
    )
    .await;
    let scoped = serde_json::from_str::<Value>(&scoped.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path) in [
        ("GET", "/_locker/api/backups"),
        ("POST", "/_locker/api/backups/stream"),
        ("POST", "/_locker/api/services/notes/export"),
        ("PUT", "/_locker/api/services/notes/import"),
    ] {
        for token in [Some(&read), Some(&scoped), None] {
            let mut request = locker
                .anonymous
                .request(method.parse().unwrap(), locker.url(path))
                .header("content-type", "application/json")
                .body("{\"no_secrets\":true}");
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let status = request.send().await.unwrap().status().as_u16();
            assert!(
                status == 401 || status == 403,
                "{method} {path} with {token:?}: {status}"
            );
        }
    }
}

/// Writes a Locker archive by hand, as an attacker would: any header, any
/// paths (even `..`), sums that match.
fn write_archive(path: &Path, kind: &str, service: Option<&str>, files: &[(&str, &[u8])]) {
    let file = std::fs::File::create(path).unwrap();
    let encoder = zstd::stream::write::Encoder::new(file, 3).unwrap();
    let mut tar = tar::Builder::new(encoder);
    let header = serde_json::json!({
        "format": "locker-backup", "version": 1, "kind": kind, "service": service,
        "created": "2026-12-04T00:00:00Z", "made_by": "a test", "secrets": "none",
        "files": files.len(), "bytes": 0,
    })
    .to_string();
    let mut sums = Vec::new();
    let add = |tar: &mut tar::Builder<_>, name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_old();
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        tar.append(&header, bytes).unwrap();
    };
    add(&mut tar, "locker-backup.json", header.as_bytes());
    for (name, bytes) in files {
        add(&mut tar, name, bytes);
        sums.push(serde_json::json!({
            "path": name, "size": bytes.len(), "blake3": blake3::hash(bytes).to_hex().to_string(),
        }));
    }
    let sums = serde_json::json!({ "files": sums }).to_string();
    add(&mut tar, "locker-backup.sums.json", sums.as_bytes());
    tar.into_inner().unwrap().finish().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_run_on_their_schedule_keep_the_newest_and_catch_up_after_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let root = busy_root(dir.path()).await;
    let passphrase_file = dir.path().join("passphrase");

    // A schedule that is not one: the host says so and does not start.
    std::fs::write(
        root.join("host.toml"),
        "[backup]\nschedule = \"every night\"\n",
    )
    .unwrap();
    let out = cli(&root, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!out.success, "served with a broken host.toml");
    assert!(
        out.stderr.contains("host.toml") && out.stderr.contains("every night"),
        "{}",
        out.stderr
    );

    let backups = dir.path().join("kept");
    std::fs::write(
        root.join("host.toml"),
        format!(
            "[backup]\nschedule = \"*/2 * * * * *\"\ndir = \"{}\"\nkeep = 2\npassphrase_file = \"{}\"\n",
            backups.display(),
            passphrase_file.display()
        ),
    )
    .unwrap();
    let locker = Locker::start(&root, &[]);
    let view = eventually(
        "three scheduled backups",
        Duration::from_secs(30),
        async || {
            let (_, body) = locker.get("/_locker/api/backups").await;
            let view: Value = serde_json::from_str(&body).unwrap();
            let archives = view["archives"].as_array().unwrap().len();
            let made = std::fs::read_dir(&backups).map(|d| d.count()).unwrap_or(0);
            // Pruning keeps two; the third shows in the log of what was made.
            if archives == 2 && locker.host_log().matches("backup made").count() >= 3 {
                Ok(view)
            } else {
                Err(format!("{archives} kept, {made} in the folder"))
            }
        },
    )
    .await;
    assert_eq!(view["last"]["trigger"], "schedule");
    assert_eq!(view["last"]["secrets"], "sealed");
    assert_eq!(view["keep"], 2);
    let status = cli_async(&root, &["status"]).await;
    assert!(
        status.stdout.contains("on schedule `*/2 * * * * *`"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("last: locker-"), "{}", status.stdout);
    drop(locker);

    // A scheduled archive restores, with its secret.
    let newest = view["archives"][0]["name"].as_str().unwrap();
    let restored = dir.path().join("restored");
    let out = cli(
        &restored,
        &[
            "restore",
            backups.join(newest).to_str().unwrap(),
            "--passphrase-file",
            passphrase_file.to_str().unwrap(),
        ],
    );
    assert!(out.success, "{}", out.stderr);
    assert!(restored.join("secrets.key").exists());

    // Nightly now; the newest archive is two days old, so a night passed
    // while the host was down: one backup at start, not one per night.
    for entry in std::fs::read_dir(&backups).unwrap().flatten() {
        let old = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        std::fs::File::options()
            .write(true)
            .open(entry.path())
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    std::fs::write(
        root.join("host.toml"),
        format!(
            "[backup]\nschedule = \"0 0 3 * * *\"\ndir = \"{}\"\nkeep = 5\n",
            backups.display()
        ),
    )
    .unwrap();
    let locker = Locker::start(&root, &[]);
    let view = eventually("the missed backup", Duration::from_secs(30), async || {
        let (_, body) = locker.get("/_locker/api/backups").await;
        let view: Value = serde_json::from_str(&body).unwrap();
        if view["last"]["trigger"] == "schedule" {
            Ok(view)
        } else {
            Err(view)
        }
    })
    .await;
    // Without a passphrase file, a scheduled backup leaves the secrets out.
    assert_eq!(view["last"]["secrets"], "left-out");
    assert_eq!(view["archives"].as_array().unwrap().len(), 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, body) = locker.get("/_locker/api/backups").await;
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        view["archives"].as_array().unwrap().len(),
        3,
        "more than one catch-up"
    );
}
