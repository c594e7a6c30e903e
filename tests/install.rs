//! Installing checks everything first: a bad package is refused with an
//! error that names the problem, and the root is left exactly as it was.

mod support;

use std::path::{Path, PathBuf};

use support::{Locker, cli, cli_async, guest, guest_variant, install, install_async, snapshot};

/// The root's files and catalog, to compare before and after a refused install.
async fn root_state(root: &Path) -> (Vec<(String, u64)>, String) {
    let listing = cli_async(root, &["list", "--json"]).await;
    assert!(listing.success, "{}", listing.stderr);
    (snapshot(root), listing.stdout)
}

/// Each bad package, and a piece of the error it must produce.
fn bad_packages(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let with_component = |bytes: &[u8]| {
        let package = guest_variant(dir, "hello-rs", |_| {});
        std::fs::write(package.join("hello_rs.wasm"), bytes).unwrap();
        package
    };
    let real = std::fs::read(guest("hello-rs").join("hello_rs.wasm")).unwrap();
    vec![
        (
            with_component(b"this is not wasm at all"),
            "not WebAssembly",
        ),
        (
            with_component(b"\0asm\x01\0\0\0"),
            "core wasm module, not a component",
        ),
        (with_component(&real[..real.len() / 2]), "invalid component"),
        // A valid, empty component: it exports nothing the host can call.
        (
            with_component(b"\0asm\x0d\0\x01\0"),
            "exports none of `wasi:http/incoming-handler",
        ),
        (
            guest_variant(dir, "hello-rs", |m| {
                m.remove("name");
            }),
            "missing field `name`",
        ),
        (
            guest_variant(dir, "hello-rs", |m| {
                m.set("kind", "daemon");
            }),
            "unknown variant `daemon`",
        ),
        (
            guest_variant(dir, "hello-rs", |m| {
                m.set("version", "first");
            }),
            "version",
        ),
        (
            guest_variant(dir, "hello-rs", |m| {
                m.set("component", "missing.wasm");
            }),
            "missing.wasm",
        ),
        (
            guest_variant(dir, "hello-rs", |m| {
                m.add("colour", "red");
            }),
            "unknown field `colour`",
        ),
        (
            guest_variant(dir, "hello-rs", |m| {
                m.set("name", "Hello World");
            }),
            "service name",
        ),
        (guest("hello-rs"), "already installed"),
    ]
}

async fn check_refusals(root: &Path, dir: &Path) {
    let before = root_state(root).await;
    for (package, expected) in bad_packages(dir) {
        let out = cli_async(root, &["install", package.to_str().unwrap()]).await;
        assert!(!out.success, "{} was accepted", package.display());
        assert!(
            out.stderr.contains(expected),
            "expected {expected:?} in: {}",
            out.stderr
        );
        assert_eq!(
            root_state(root).await,
            before,
            "a refused install ({expected}) changed the root"
        );
    }
}

#[tokio::test]
async fn bad_packages_are_refused_and_leave_the_root_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    check_refusals(&root, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_packages_are_refused_by_a_serving_host_too() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    let locker = Locker::start(&root, &[]);
    // The CLI goes through the host's admin API while it serves.
    check_refusals(&root, dir.path()).await;
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    // A good install through the host is served at once.
    install_async(&root, &guest("notes")).await;
    assert_eq!(locker.get("/notes/list").await.0, 200);
}

#[test]
fn a_wasm_file_installs_with_a_separate_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let package = guest("hello-rs");
    let out = cli(
        &root,
        &[
            "install",
            package.join("hello_rs.wasm").to_str().unwrap(),
            "--manifest",
            package.join("locker.toml").to_str().unwrap(),
        ],
    );
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("installed hello-rs 0.1.0"),
        "{}",
        out.stdout
    );
}

#[test]
fn concurrent_commands_never_corrupt_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let names: Vec<String> = (0..6).map(|i| format!("notes-{i}")).collect();
    let packages: Vec<_> = names
        .iter()
        .map(|name| {
            guest_variant(dir.path(), "notes", |m| {
                m.set("name", name.as_str());
            })
        })
        .collect();
    std::thread::scope(|scope| {
        for package in &packages {
            let root = &root;
            scope.spawn(move || install(root, package));
        }
        // Readers run alongside the writers.
        for _ in 0..4 {
            scope.spawn(|| assert!(cli(&root, &["list"]).success));
        }
    });
    let listing = cli(&root, &["list"]);
    for name in &names {
        assert!(
            listing.stdout.contains(name.as_str()),
            "{name} missing from:\n{}",
            listing.stdout
        );
        assert!(root.join("services").join(name).is_dir());
    }
}

/// From a registry: the publisher's key is pinned on the first install,
/// only with the owner's consent, and a package signed by anyone else is
/// refused before anything is written; through a serving host as offline.
#[tokio::test(flavor = "multi_thread")]
async fn a_package_from_a_registry_installs_only_signed_by_the_key_pinned_for_it() {
    use locker_registry::keys::PublisherKey;
    use locker_registry::local::LocalRegistry;

    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let publish = async |key: &Path, namespace: &str, package: &Path| {
        let out = tokio::process::Command::new(support::locker_bin())
            .arg("publish")
            .arg(package)
            .arg("--to")
            .arg(format!("{}/{namespace}", registry.address))
            .arg("--key")
            .arg(key)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let (alice, mallory) = (keys.join("alice.key"), keys.join("mallory.key"));
    for key in [&alice, &mallory] {
        PublisherKey::generate().unwrap().save(key).unwrap();
    }
    let alice_print = PublisherKey::load(&alice).unwrap().public().fingerprint();
    publish(&alice, "alice", &guest("hello-rs")).await;
    publish(&mallory, "mallory", &guest("hello-rs")).await;
    let from = |namespace: &str| format!("{}/{namespace}/hello-rs:0.1.0", registry.address);

    // Search by the type a package provides: signed packages, and who signed them.
    publish(&alice, "alice", &guest("notes")).await;
    let search = async |args: &[&str]| {
        let out = tokio::process::Command::new(support::locker_bin())
            .arg("search")
            .args(args)
            .args(["--registry", &registry.address, "--json"])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
    };
    let notes = search(&["note/*"]).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["name"], "notes");
    assert_eq!(notes[0]["publisher"], alice_print.as_str());
    assert_eq!(search(&[]).await.len(), 3);

    // No terminal and no consent: refused, and the root is as it was.
    let before = root_state(&root).await;
    let out = cli_async(&root, &["install", &from("alice")]).await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("--yes") && out.stderr.contains(&format!("--trust {alice_print}")),
        "{}",
        out.stderr
    );
    assert_eq!(root_state(&root).await, before);
    // The wrong fingerprint: refused.
    let out = cli_async(
        &root,
        &["install", &from("mallory"), "--trust", &alice_print],
    )
    .await;
    assert!(
        !out.success && out.stderr.contains("not by"),
        "{}",
        out.stderr
    );
    assert_eq!(root_state(&root).await, before);

    // The right one: installed, the key pinned.
    let out = cli_async(&root, &["install", &from("alice"), "--trust", &alice_print]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains(&alice_print), "{}", out.stdout);
    let trusted = cli_async(&root, &["trust", "--json"]).await;
    let trusted: serde_json::Value = serde_json::from_str(&trusted.stdout).unwrap();
    assert_eq!(trusted[0]["package"], "hello-rs");
    assert_eq!(trusted[0]["fingerprint"], alice_print.as_str());

    // Through a serving host: the same package signed by another key is
    // refused even with --yes, naming both keys.
    let locker = Locker::start(&root, &[]);
    cli_async(&root, &["uninstall", "hello-rs"]).await;
    let before = root_state(&root).await;
    let out = cli_async(&root, &["install", &from("mallory"), "--yes"]).await;
    assert!(!out.success, "{}", out.stdout);
    assert!(
        out.stderr.contains(&alice_print) && out.stderr.contains("trusted from"),
        "{}",
        out.stderr
    );
    assert_eq!(root_state(&root).await, before);
    let out = cli_async(&root, &["install", &from("alice")]).await;
    assert!(out.success, "{}", out.stderr);
    let answer = locker
        .http
        .get(format!("{}/", locker.service_origin("hello-rs")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // Upgrades come from where it came, signed by the pinned key: a newer
    // version that someone else signed and pushed there is refused; the
    // owner's pick of an honest one goes in; a downgrade is not an upgrade.
    let version = |v: &'static str| {
        guest_variant(dir.path(), "hello-rs", move |m| {
            m.set("version", v);
        })
    };
    publish(&alice, "alice", &version("0.2.0")).await;
    publish(&mallory, "alice", &version("0.3.0")).await;
    let out = cli_async(&root, &["upgrade", "hello-rs"]).await;
    assert!(!out.success, "{}", out.stdout);
    assert!(
        out.stderr.contains("not by") || out.stderr.contains(&alice_print),
        "{}",
        out.stderr
    );
    let out = cli_async(&root, &["upgrade", "hello-rs", "--to", "0.2.0"]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("to 0.2.0"), "{}", out.stdout);
    let out = cli_async(&root, &["upgrade", "hello-rs", "--to", "0.1.0"]).await;
    assert!(
        !out.success && out.stderr.contains("downgrade"),
        "{}",
        out.stderr
    );
}
