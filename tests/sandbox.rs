//! Each service gets one persistent working directory and nothing else.

mod support;

use support::{Locker, Manifest, guest, guest_variant, install, loopback_server};

fn renamed(name: &'static str) -> impl FnOnce(&mut Manifest) {
    move |manifest| {
        manifest.set("name", name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn files_persist_across_restarts_and_stay_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest_variant(dir.path(), "notes", renamed("alice")));
    install(&root, &guest_variant(dir.path(), "notes", renamed("bob")));

    let locker = Locker::start(&root, &[]);
    let (code, body) = locker
        .put("/alice/file?path=diary/today.json", "{\"mood\":\"good\"}")
        .await;
    assert_eq!(code, 201, "{body}");
    // Plain relative paths land in the service's own directory on the host.
    let on_disk = std::fs::read_to_string(root.join("services/alice/diary/today.json")).unwrap();
    assert_eq!(on_disk, "{\"mood\":\"good\"}");
    locker.stop();

    let locker = Locker::start(&root, &[]);
    assert_eq!(
        locker.get("/alice/file?path=diary/today.json").await,
        (200, "{\"mood\":\"good\"}".into())
    );
    // The same path in another service is that service's own, and empty.
    let (code, _) = locker.get("/bob/file?path=diary/today.json").await;
    assert_eq!(code, 404);

    // Neither `..`, nor absolute paths, nor the host's files are reachable.
    for path in [
        "../alice/diary/today.json",
        "../../services/alice/diary/today.json",
        "../../locker.db",
    ] {
        let (code, body) = locker.get(&format!("/bob/file?path={path}")).await;
        assert_eq!(code, 403, "{path}: {body}");
        assert!(body.contains("not permitted"), "{path}: {body}");
    }
    let alice_file = root.join("services/alice/diary/today.json");
    let (code, _) = locker
        .get(&format!("/bob/file?path={}", alice_file.display()))
        .await;
    assert_eq!(
        code, 404,
        "an absolute path names a file inside bob's own directory"
    );
    let (code, _) = locker.get("/bob/file?path=/etc/hostname").await;
    assert_eq!(code, 404);
    let (code, body) = locker
        .put("/bob/file?path=../alice/diary/today.json", "overwritten")
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        std::fs::read_to_string(&alice_file).unwrap(),
        "{\"mood\":\"good\"}"
    );

    // A symlink planted in bob's directory cannot lead out of it.
    std::os::unix::fs::symlink(
        root.join("services/alice"),
        root.join("services/bob/to-alice"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../alice/diary",
        root.join("services/bob/relative-to-alice"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("services/bob/hostname")).unwrap();
    for path in [
        "to-alice/diary/today.json",
        "relative-to-alice/today.json",
        "hostname",
    ] {
        let (code, body) = locker.get(&format!("/bob/file?path={path}")).await;
        assert_ne!(code, 200, "{path} escaped the sandbox: {body}");
        assert!(!body.contains("mood"), "{path}: {body}");
    }
    let (code, body) = locker.put("/bob/file?path=to-alice/planted.txt", "x").await;
    assert_ne!(code, 201, "{body}");
    assert!(!root.join("services/alice/planted.txt").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_sees_no_environment_and_no_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("notes"));
    let locker = Locker::start(&root, &[]);
    let (code, env) = locker.get("/notes/env").await;
    assert_eq!(
        (code, env.as_str()),
        (200, ""),
        "the host's environment leaked"
    );
    // Not even the host's own port is reachable.
    let address = locker.address.trim_start_matches("http://").to_string();
    let (code, body) = locker.get(&format!("/notes/connect?addr={address}")).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cannot connect"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_services_use_relative_paths_that_persist() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-py"));
    let locker = Locker::start(&root, &[]);
    assert_eq!(locker.get("/hello-py/visits").await, (200, "1".into()));
    assert_eq!(locker.get("/hello-py/visits").await, (200, "2".into()));
    locker.stop();
    let locker = Locker::start(&root, &[]);
    assert_eq!(locker.get("/hello-py/visits").await, (200, "3".into()));
    assert_eq!(
        std::fs::read_to_string(root.join("services/hello-py/visits.txt")).unwrap(),
        "3"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_reach_internal_addresses_only_when_the_manifest_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let (port, served) = loopback_server("internal secret").await;
    install(&root, &guest("notes"));
    let variant = |name: &str, allow: &str| {
        guest_variant(dir.path(), "notes", |m| {
            m.set("name", name);
            m.add("network.allow_hosts", vec![allow]);
        })
    };
    install(&root, &variant("by-name", "localhost"));
    install(&root, &variant("by-address", "127.0.0.1"));
    let locker = Locker::start(&root, &[]);
    let fetch =
        async |service: &str, url: String| locker.get(&format!("/{service}/fetch?url={url}")).await;
    let server = format!("http://localhost:{port}/");
    let admin = |host: &str| format!("http://{host}:{}/_locker/api/services", locker.port);

    // Not named at all: refused by name.
    let (code, body) = fetch("notes", server.clone()).await;
    assert_eq!(code, 502);
    assert!(body.contains("HttpRequestDenied"), "{body}");
    // A harmless-looking name that resolves to loopback reaches nothing
    // there: not a server on this machine, not the locker's admin API.
    for url in [server.clone(), admin("localhost")] {
        let (code, body) = fetch("by-name", url.clone()).await;
        assert_eq!(code, 502, "{url}: {body}");
        assert!(body.contains("DestinationIpProhibited"), "{url}: {body}");
    }
    assert!(
        locker
            .host_log()
            .contains("refused an outbound request to an internal address"),
        "{}",
        locker.host_log()
    );
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Named by address, the server is reachable; the locker itself is not.
    let (code, body) = fetch("by-address", format!("http://127.0.0.1:{port}/")).await;
    assert_eq!((code, body.as_str()), (200, "internal secret"));
    let (code, body) = fetch("by-address", admin("127.0.0.1")).await;
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("DestinationIpProhibited"), "{body}");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_03_outbound_requests_pass_the_same_checks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let (port, served) = loopback_server("internal secret").await;
    // `unruly-p3` names `127.0.0.1` (and `localhost`); one copy names
    // nothing, another only `localhost`.
    install(&root, &guest("unruly-p3"));
    install(
        &root,
        &guest_variant(dir.path(), "unruly-p3", |m| {
            m.set("name", "unnamed-p3").remove("network");
        }),
    );
    install(
        &root,
        &guest_variant(dir.path(), "unruly-p3", |m| {
            m.set("name", "by-name-p3")
                .set("network.allow_hosts", vec!["localhost"]);
        }),
    );
    let locker = Locker::start(&root, &[]);
    let fetch = async |service: &str, url: String| {
        let (code, body) = locker.get(&format!("/{service}/fetch?url={url}")).await;
        assert_eq!(code, 200, "{body}");
        body
    };
    let admin = format!("http://127.0.0.1:{}/_locker/api/services", locker.port);

    let refused = fetch("unnamed-p3", format!("http://127.0.0.1:{port}/")).await;
    assert!(refused.contains("HttpRequestDenied"), "{refused}");
    let refused = fetch("by-name-p3", format!("http://localhost:{port}/")).await;
    assert!(refused.contains("DestinationIpProhibited"), "{refused}");
    let refused = fetch("unruly-p3", admin).await;
    assert!(refused.contains("DestinationIpProhibited"), "{refused}");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 0);
    let reached = fetch("unruly-p3", format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(reached, "status 200\n");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
}
