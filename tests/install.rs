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
