//! Installing checks everything first: a bad package is refused with an
//! error that names the problem, and the root is left exactly as it was.

mod support;

use std::path::{Path, PathBuf};

use support::{
    Locker, cli, cli_async, cli_with_input, guest, guest_variant, install, install_async, snapshot,
};

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
        support::publish_to(&format!("{}/{namespace}", registry.address), key, package).await
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
    // Its key is pinned now; what it reaches (it provides `demo/hello`)
    // is still the owner's to accept.
    let out = cli_async(&root, &["install", &from("alice")]).await;
    assert!(
        !out.success && out.stderr.contains("--yes"),
        "{}",
        out.stderr
    );
    let out = cli_async(&root, &["install", &from("alice"), "--yes"]).await;
    assert!(out.success, "{}", out.stderr);
    let answer = locker
        .http
        .get(format!("{}/", locker.service_origin("hello-rs")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);

    // A package folder does not replace a service whose key is pinned.
    let folder_version = guest_variant(dir.path(), "hello-rs", |m| {
        m.set("version", "0.9.0");
    });
    let out = cli_async(&root, &["upgrade", folder_version.to_str().unwrap()]).await;
    assert!(
        !out.success && out.stderr.contains("trust remove hello-rs"),
        "{}",
        out.stderr
    );

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

/// A publisher key in `dir`, and its fingerprint.
fn publisher_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.key"));
    let key = locker_registry::keys::PublisherKey::generate().unwrap();
    key.save(&path).unwrap();
    (path, key.public().fingerprint())
}

/// The host does the pulling: a CLI elsewhere (`--url`, no root of its
/// own) is shown what a package may reach before it is installed, an
/// upgrade that reaches further asks again naming what is new, and the
/// admin API refuses an accepted offer that hides what a package reaches.
/// An install is ready at once: compiled into the code cache before its
/// first request.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_pulls_what_the_owner_accepted_and_an_upgrade_that_reaches_further_asks_again() {
    use locker_registry::local::LocalRegistry;

    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let locker = Locker::start(&root, &[]);
    let (alice, alice_print) = publisher_key(dir.path(), "alice");
    let to = format!("{}/alice", registry.address);
    let reaching = |version: &'static str, hosts: &'static [&'static str]| {
        guest_variant(dir.path(), "hello-rs", move |m| {
            m.set("version", version);
            m.add(
                "network.allow_hosts",
                hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            );
        })
    };
    support::publish_to(&to, &alice, &reaching("0.1.0", &["api.example.com"])).await;
    support::publish_to(
        &to,
        &alice,
        &reaching("0.2.0", &["api.example.com", "evil.example.com"]),
    )
    .await;
    let elsewhere = dir.path().join("no-root-here");
    let remote = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--url".into(), locker.address.clone()]);
        all.extend(["--token".into(), locker.token.clone()]);
        all
    };
    let run = async |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_async(&elsewhere, &args).await
    };
    let reference = format!("{to}/hello-rs:0.1.0");

    // Shown, and refused without consent: nothing installed.
    let out = run(remote(&["install", &reference])).await;
    assert!(!out.success, "{}", out.stdout);
    assert!(
        out.stdout.contains("outbound HTTP to: api.example.com")
            && out.stdout.contains(&alice_print),
        "{}",
        out.stdout
    );
    assert_eq!(locker.get("/_locker/api/services").await.1.trim(), "[]");

    // Accepted: installed, signed, and compiled before its first request.
    let out = run(remote(&["install", &reference, "--yes"])).await;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("signed by {alice_print}")),
        "{}",
        out.stdout
    );
    let status = locker
        .wait_for_status("hello-rs", std::time::Duration::from_secs(60), |s| {
            s["code"] == "ready"
        })
        .await;
    assert_eq!(status["origin"]["publisher"], alice_print.as_str());
    assert!(
        status["origin"]["reference"]
            .as_str()
            .unwrap()
            .contains("@sha256:"),
        "{status}"
    );
    assert_eq!(status["loads"], 0);
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    assert_eq!(
        locker.status("hello-rs").await["last_load"]["outcome"],
        "hit"
    );
    let listing = run(remote(&["list"])).await;
    assert!(listing.stdout.contains("signed"), "{}", listing.stdout);

    // The attacker's way in: an accepted offer that leaves out what the
    // new version reaches, or names a tag instead of a digest, is refused
    // by the host itself.
    let offer: serde_json::Value = locker
        .http
        .post(locker.url("/_locker/api/registry/upgrade-offer/hello-rs"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let offer = &offer["offer"];
    assert_eq!(
        offer["widens"]["outbound"][0], "evil.example.com",
        "{offer}"
    );
    let hidden = locker
        .http
        .post(locker.url("/_locker/api/registry/upgrade/hello-rs"))
        .json(&serde_json::json!({
            "reference": offer["reference"],
            "publisher": offer["publisher"],
            "reach": { "outbound": ["api.example.com"] },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), 422);
    let why = hidden.text().await.unwrap();
    assert!(why.contains("evil.example.com"), "{why}");
    let by_tag = locker
        .http
        .post(locker.url("/_locker/api/registry/upgrade/hello-rs"))
        .json(&serde_json::json!({
            "reference": format!("{to}/hello-rs:0.2.0"),
            "reach": offer["reach"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(by_tag.status(), 422);
    assert!(by_tag.text().await.unwrap().contains("names no digest"));
    // A read-only token cannot install.
    let read = cli_async(&root, &["token", "create", "--scope", "read", "--json"]).await;
    let read: serde_json::Value = serde_json::from_str(&read.stdout).unwrap();
    let refused = locker
        .anonymous
        .post(locker.url("/_locker/api/registry/install"))
        .bearer_auth(read["token"].as_str().unwrap())
        .json(&serde_json::json!({ "reference": offer["reference"], "reach": offer["reach"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(locker.status("hello-rs").await["version"], "0.1.0");

    // The upgrade names what is new and asks; --yes accepts it. The
    // service's folder stays as it is.
    let folder = root.join("services/hello-rs");
    std::fs::write(folder.join("before.txt"), "kept").unwrap();
    let out = run(remote(&["upgrade", "hello-rs"])).await;
    assert!(!out.success);
    assert!(
        out.stdout.contains("evil.example.com") && out.stderr.contains("--yes"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(locker.status("hello-rs").await["version"], "0.1.0");
    let installed_from = offer_reference_of(&locker.status("hello-rs").await);
    let out = run(remote(&["upgrade", "hello-rs", "--yes"])).await;
    assert!(out.success, "{}", out.stderr);
    let status = locker.status("hello-rs").await;
    assert_eq!(status["version"], "0.2.0");
    assert_ne!(offer_reference_of(&status), installed_from);
    assert_eq!(
        std::fs::read_to_string(folder.join("before.txt")).unwrap(),
        "kept"
    );
    std::fs::write(folder.join("after.txt"), "written by 0.2.0").unwrap();
    // A rollback with --data returns to 0.1.0, where it came from, and its
    // folder as the upgrade found it.
    let out = run(remote(&["rollback", "hello-rs", "--data"])).await;
    assert!(out.success, "{}", out.stderr);
    let status = locker.status("hello-rs").await;
    assert_eq!(status["version"], "0.1.0");
    assert_eq!(offer_reference_of(&status), installed_from);
    assert!(folder.join("before.txt").exists() && !folder.join("after.txt").exists());
    // Search by the namespace's index, through the host.
    let out = run(remote(&["search", "demo/*", "--registry", &to, "--json"])).await;
    assert!(out.success, "{}", out.stderr);
    let found: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(found[0]["name"], "hello-rs");
    assert_eq!(found[0]["version"], "0.2.0");
}

/// The reference an origin was installed from, which a rollback keeps.
fn offer_reference_of(status: &serde_json::Value) -> String {
    status["origin"]["reference"].as_str().unwrap().to_string()
}

/// A component pushed by another tool (no Locker manifest, no signature)
/// installs only with --allow-unsigned, with the narrowest manifest, and
/// says so in `locker list`; a broken signature is never "unsigned"; an
/// unsigned package never replaces one whose key is pinned.
#[tokio::test(flavor = "multi_thread")]
async fn unsigned_components_install_only_when_the_owner_allows_them() {
    use locker_registry::artifact::{PackageFiles, pack};
    use locker_registry::keys::PublisherKey;
    use locker_registry::local::LocalRegistry;

    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let component = std::fs::read(guest("hello-rs").join("hello_rs.wasm")).unwrap();
    registry
        .push_unsigned("tools/plain-hello:1.2.0", component.clone())
        .await
        .unwrap();
    let reference = format!("{}/tools/plain-hello:1.2.0", registry.address);

    let before = root_state(&root).await;
    let out = cli_async(&root, &["install", &reference, "--yes"]).await;
    assert!(!out.success);
    assert!(out.stderr.contains("--allow-unsigned"), "{}", out.stderr);
    assert_eq!(root_state(&root).await, before);

    let out = cli_async(&root, &["install", &reference, "--allow-unsigned"]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("NOT signed") && out.stdout.contains("UNSIGNED"),
        "{}",
        out.stdout
    );
    let listing = cli_async(&root, &["list"]).await;
    assert!(
        listing
            .stdout
            .lines()
            .any(|l| l.starts_with("plain-hello") && l.contains("1.2.0") && l.contains("UNSIGNED")),
        "{}",
        listing.stdout
    );
    let locker = Locker::start(&root, &[]);
    let (code, body) = locker.get("/plain-hello/").await;
    assert_eq!((code, body.trim()), (200, "hello from rust at /, to owner"));
    drop(locker);
    // Its upgrades come unsigned from where it came, and only when allowed.
    registry
        .push_unsigned("tools/plain-hello:1.3.0", component.clone())
        .await
        .unwrap();
    let out = cli_async(&root, &["upgrade", "plain-hello"]).await;
    assert!(
        !out.success && out.stderr.contains("--allow-unsigned"),
        "{}",
        out.stderr
    );
    let out = cli_async(&root, &["upgrade", "plain-hello", "--allow-unsigned"]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("to 1.3.0") && out.stdout.contains("UNSIGNED"),
        "{}",
        out.stdout
    );

    // A package whose signature is there but broken (its locker.toml
    // widened after signing) is refused, --allow-unsigned or not.
    let key = PublisherKey::generate().unwrap();
    let files = PackageFiles {
        name: "hello-rs".into(),
        version: "0.1.0".into(),
        manifest: std::fs::read_to_string(guest("hello-rs").join("locker.toml")).unwrap(),
        schemas: Default::default(),
    };
    let mut artifact = pack(&files, component.clone(), "2026-12-01T00:00:00Z", &key).unwrap();
    let widened = format!("{}public = [\"/*\"]\n", files.manifest);
    artifact.annotations.insert(
        "dev.locker.manifest".into(),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, widened),
    );
    registry
        .client()
        .push(&registry.reference("mallory/hello-rs:0.1.0"), &artifact)
        .await
        .unwrap();
    let before = root_state(&root).await;
    let tampered = format!("{}/mallory/hello-rs:0.1.0", registry.address);
    let out = cli_async(&root, &["install", &tampered, "--allow-unsigned", "--yes"]).await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("does not match what was signed"),
        "{}",
        out.stderr
    );
    assert_eq!(root_state(&root).await, before);

    // A pinned package is never replaced by an unsigned one of its name.
    let (alice, alice_print) = publisher_key(dir.path(), "alice");
    support::publish_to(
        &format!("{}/alice", registry.address),
        &alice,
        &guest("hello-rs"),
    )
    .await;
    let signed = format!("{}/alice/hello-rs:0.1.0", registry.address);
    let out = cli_async(&root, &["install", &signed, "--trust", &alice_print]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(cli_async(&root, &["uninstall", "hello-rs"]).await.success);
    registry
        .push_unsigned("tools/hello-rs:0.3.0", component)
        .await
        .unwrap();
    let before = root_state(&root).await;
    let stripped = format!("{}/tools/hello-rs:0.3.0", registry.address);
    let out = cli_async(&root, &["install", &stripped, "--allow-unsigned", "--yes"]).await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("not signed") && out.stderr.contains(&alice_print),
        "{}",
        out.stderr
    );
    assert_eq!(root_state(&root).await, before);
}

/// A registry that wants a login: publishing finds it in Docker's config
/// file (`locker registry login --docker`), the host's pulls in the root
/// (`locker registry login`, sealed); without one both are refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_behind_a_login_is_reached_with_the_owners_login() {
    use locker_registry::local::LocalRegistry;

    let Some(registry) = LocalRegistry::start_with_login("alice", "s3cret-pass").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let docker = dir.path().join("docker");
    let env = [("DOCKER_CONFIG", docker.as_path())];
    let (key, print) = publisher_key(dir.path(), "alice");
    let to = format!("{}/alice", registry.address);
    let key_arg = key.to_str().unwrap();
    let package = guest("hello-rs");
    let publish = async || {
        tokio::process::Command::new(support::locker_bin())
            .arg("publish")
            .arg(&package)
            .args(["--to", &to, "--key", key_arg])
            .env("DOCKER_CONFIG", &docker)
            .output()
            .await
            .unwrap()
    };
    let out = publish().await;
    assert!(!out.status.success(), "published without a login");
    let out = support::cli_with(
        &root,
        &[
            "registry",
            "login",
            &registry.address,
            "-u",
            "alice",
            "--docker",
        ],
        "s3cret-pass\n",
        &env,
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    let config = std::fs::read_to_string(docker.join("config.json")).unwrap();
    assert!(config.contains(&registry.address) && !config.contains("s3cret-pass"));
    let out = publish().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The serving host pulls with the root's login only.
    let locker = Locker::start(&root, &[]);
    let reference = format!("{to}/hello-rs:0.1.0");
    let out = cli_async(&root, &["install", &reference, "--trust", &print]).await;
    assert!(!out.success, "installed without a login");
    let out = cli_with_input(
        &root,
        &["registry", "login", &registry.address, "-u", "alice"],
        "s3cret-pass\n",
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    let logins = cli_async(&root, &["registry", "logins", "--json"]).await;
    assert!(logins.stdout.contains("alice") && !logins.stdout.contains("s3cret"));
    let db = std::fs::read(root.join("locker.db")).unwrap();
    assert!(
        !db.windows(11).any(|w| w == b"s3cret-pass"),
        "a password in plain text"
    );
    let out = cli_async(&root, &["install", &reference, "--trust", &print]).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
}

/// A registry that goes away in the middle of a download: the install is
/// refused naming the blob, and the root is as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_download_cut_off_midway_installs_nothing() {
    use locker_registry::local::LocalRegistry;

    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let (key, print) = publisher_key(dir.path(), "alice");
    support::publish_to(
        &format!("{}/alice", registry.address),
        &key,
        &guest("hello-rs"),
    )
    .await;
    // Each connection through it carries 40 KB back, then breaks: enough
    // for manifests, not for the 80 KB component.
    let proxy = cutting_proxy(&registry.address, 40 * 1024).await;
    let before = root_state(&root).await;
    let out = cli_async(
        &root,
        &[
            "install",
            &format!("{proxy}/alice/hello-rs:0.1.0"),
            "--trust",
            &print,
        ],
    )
    .await;
    assert!(!out.success, "{}", out.stdout);
    assert!(out.stderr.contains("sha256:"), "{}", out.stderr);
    assert_eq!(root_state(&root).await, before);
    // Straight from the registry it installs.
    let out = cli_async(
        &root,
        &[
            "install",
            &format!("{}/alice/hello-rs:0.1.0", registry.address),
            "--trust",
            &print,
        ],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
}

/// wkg, the ecosystem's Wasm package tool: a component it pushes installs
/// (unsigned, so only with --allow-unsigned) and serves; a Locker package
/// it pulls is the component that was published, runnable as it is.
#[tokio::test(flavor = "multi_thread")]
async fn wkg_pushes_what_a_locker_installs_and_pulls_what_it_publishes() {
    use locker_registry::local::LocalRegistry;

    let Some(wkg) = support::wkg() else {
        return;
    };
    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let component = guest("hello-rs").join("hello_rs.wasm");
    let wkg_run = async |args: &[&str]| {
        let out = tokio::process::Command::new(&wkg)
            .args(["oci"])
            .args(args)
            .args(["--insecure", &registry.address])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "wkg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let pushed = format!("{}/tools/wkg-hello:0.1.0", registry.address);
    wkg_run(&["push", &pushed, component.to_str().unwrap()]).await;
    let out = cli_async(&root, &["install", &pushed, "--yes"]).await;
    assert!(
        !out.success && out.stderr.contains("--allow-unsigned"),
        "{}",
        out.stderr
    );
    let out = cli_async(&root, &["install", &pushed, "--allow-unsigned"]).await;
    assert!(out.success, "{}", out.stderr);
    let locker = Locker::start(&root, &[]);
    let (code, body) = locker.get("/wkg-hello/").await;
    assert_eq!((code, body.trim()), (200, "hello from rust at /, to owner"));

    let (key, _) = publisher_key(dir.path(), "alice");
    support::publish_to(
        &format!("{}/alice", registry.address),
        &key,
        &guest("hello-rs"),
    )
    .await;
    let pulled = dir.path().join("pulled.wasm");
    wkg_run(&[
        "pull",
        &format!("{}/alice/hello-rs:0.1.0", registry.address),
        "-o",
        pulled.to_str().unwrap(),
    ])
    .await;
    assert_eq!(
        std::fs::read(&pulled).unwrap(),
        std::fs::read(&component).unwrap(),
        "wkg pulled something other than the published component"
    );
}

/// A TCP proxy to `upstream` on a free loopback port that closes each
/// connection once it has passed `limit` bytes back to the client.
async fn cutting_proxy(upstream: &str, limit: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut passed = 0;
                let mut buffer = vec![0u8; 8192];
                while let Ok(read) = server_read.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    let take = read.min(limit - passed);
                    if client_write.write_all(&buffer[..take]).await.is_err() {
                        break;
                    }
                    passed += take;
                    if passed >= limit {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    address
}
