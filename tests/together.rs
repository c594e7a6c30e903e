//! Services that work together: settings and secrets the owner gives each
//! one through the standard `wasi:config` interface; and the contacts
//! services (`together/contacts.rs`) against a real CardDAV server; and
//! several hosts serving one locker over NATS JetStream (`together/cluster.rs`).

#[path = "together/cluster.rs"]
mod cluster;
#[path = "together/contacts.rs"]
mod contacts;
mod support;

use std::sync::atomic::Ordering;

use support::{
    Locker, cli, cli_async, cli_with_input, guest, guest_variant, install, loopback_server,
};

const SECRET: &str = "tok-SECRET-7f3a9c";

/// A cluster test runs three NATS servers and up to six hosts, which on 2
/// cores slows everything beside it: it runs alone (`write`), the other
/// tests of this binary, which wait for a service within fixed times, beside
/// each other (`read`).
static CLUSTERS_ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_config_component_reads_its_own_settings_and_its_secret_shows_nowhere() {
    let _beside = CLUSTERS_ALONE.read().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let (port, served) = loopback_server("carddav here").await;
    let out = cli(
        &root,
        &["install", guest("config-reader").to_str().unwrap()],
    );
    assert!(out.success, "{}", out.stderr);
    // The install says what the owner must give, and what a setting opens.
    assert!(
        out.stdout
            .contains("needs `server` (The server it syncs from")
            && out
                .stdout
                .contains("may reach the host you set as `server`"),
        "{}",
        out.stdout
    );
    install(
        &root,
        &guest_variant(dir.path(), "config-reader", |m| {
            m.set("name", "other-reader");
        }),
    );
    // Set while no host runs: straight into the root.
    let out = cli(
        &root,
        &["config", "set", "other-reader", "server", "127.0.0.1:9"],
    );
    assert!(out.success, "{}", out.stderr);
    let locker = Locker::start(&root, &[]);

    // Its required setting is unset: no instance, a 503 that says what to do.
    let (code, body) = locker.get("/config-reader/").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("`server`") && body.contains("locker config set config-reader server"),
        "{body}"
    );
    let page = locker
        .http
        .get(locker.url("/config-reader/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("config-reader is not set up yet")
            && page.contains("<code>locker config set config-reader server VALUE</code>"),
        "{page}"
    );

    // A secret is never taken from the command line.
    let out = cli_async(&root, &["config", "set", "config-reader", "token", SECRET]).await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("never taken from the command line"),
        "{}",
        out.stderr
    );
    let server = format!("127.0.0.1:{port}");
    let out = cli_async(
        &root,
        &["config", "set", "config-reader", "server", &server],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("config-reader may reach {server} now")),
        "{}",
        out.stdout
    );
    let out = cli_with_input(
        &root,
        &["config", "set", "config-reader", "token"],
        &format!("{SECRET}\n"),
    )
    .await;
    assert!(out.success, "{}", out.stderr);

    // It reads its own values and its defaults, through wasi:config.
    let read =
        async |service: &str, key: &str| locker.get(&format!("/{service}/config/{key}")).await;
    assert_eq!(read("config-reader", "server").await, (200, server.clone()));
    assert_eq!(
        read("config-reader", "token").await,
        (200, SECRET.to_string())
    );
    assert_eq!(
        read("config-reader", "greeting").await,
        (200, "hello".into())
    );
    assert_eq!(
        locker.get("/config-reader/config").await,
        (200, "greeting\nserver\ntoken".into())
    );
    // The other service, same component, reads its own and not these.
    assert_eq!(
        read("other-reader", "server").await,
        (200, "127.0.0.1:9".into())
    );
    assert_eq!(
        read("other-reader", "token").await,
        (404, "token is not set".into())
    );

    // `{{ server }}` in allow_hosts: it reaches the server the owner set,
    // loopback included because the value is that address; the other
    // service, set to another port, does not reach it.
    assert_eq!(
        locker.get("/config-reader/sync").await,
        (200, "200 carddav here (token set)".into())
    );
    assert_eq!(served.load(Ordering::SeqCst), 1);
    let (code, body) = locker
        .get(&format!("/other-reader/fetch?url=http://{server}/"))
        .await;
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // What the owner sees: the secret only as set.
    let out = cli_async(&root, &["config", "config-reader"]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("(secret, set)"), "{}", out.stdout);
    assert!(out.stdout.contains("hello (default)"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("opens {server}")),
        "{}",
        out.stdout
    );
    let json = cli_async(&root, &["config", "config-reader", "--json"]).await;
    let (code, api) = locker
        .get("/_locker/api/services/config-reader/config")
        .await;
    assert_eq!(code, 200, "{api}");
    let entries: serde_json::Value = serde_json::from_str(&api).unwrap();
    let token = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "token")
        .unwrap();
    assert_eq!(
        (&token["set"], &token["secret"], &token["value"]),
        (&true.into(), &true.into(), &serde_json::Value::Null)
    );

    // Wrong keys and values are refused, naming the problem.
    let out = cli_async(&root, &["config", "set", "config-reader", "nope", "x"]).await;
    assert!(
        out.stderr
            .contains("declares no config key \"nope\"; it declares: greeting, server, token"),
        "{}",
        out.stderr
    );
    let out = cli_async(
        &root,
        &[
            "config",
            "set",
            "config-reader",
            "server",
            "me@evil.example",
        ],
    )
    .await;
    assert!(
        !out.success && out.stderr.contains("`server` must be a host"),
        "{}",
        out.stderr
    );
    assert_eq!(read("config-reader", "server").await, (200, server.clone()));

    // A token that may only read cannot change a setting.
    let out = cli_async(&root, &["token", "create", "--scope", "read"]).await;
    let reader = out.stdout.trim().lines().last().unwrap().trim().to_string();
    let put = support::client_builder()
        .build()
        .unwrap()
        .put(locker.url("/_locker/api/services/config-reader/config/server"))
        .bearer_auth(&reader)
        .json(&serde_json::json!({ "value": "evil.example" }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 403);
    assert_eq!(read("config-reader", "server").await, (200, server.clone()));

    // An upgrade that drops the key keeps its value, inactive; a rollback
    // finds it again.
    let without_token = guest_variant(dir.path(), "config-reader", |m| {
        m.remove("config.token");
    });
    let out = cli_async(&root, &["upgrade", without_token.to_str().unwrap()]).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(
        read("config-reader", "token").await,
        (404, "token is not set".into())
    );
    let out = cli_async(&root, &["config", "config-reader"]).await;
    assert!(out.stdout.contains("inactive"), "{}", out.stdout);
    let out = cli_async(
        &root,
        &["upgrade", guest("config-reader").to_str().unwrap()],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(
        read("config-reader", "token").await,
        (200, SECRET.to_string())
    );

    // Unset, the required key stops it again.
    let out = cli_async(&root, &["config", "unset", "config-reader", "server"]).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(locker.get("/config-reader/").await.0, 503);

    // The secret is in no answer, no log, and not in the database's files.
    let status = cli_async(&root, &["status", "config-reader", "--json"]).await;
    let mut seen = vec![
        ("config --json", json.stdout),
        ("admin API", api),
        ("status", status.stdout),
        ("host log", locker.host_log()),
    ];
    for entry in std::fs::read_dir(root.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        seen.push(("a service log", std::fs::read_to_string(&path).unwrap()));
    }
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            seen.push(("a root file", String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    for (what, text) in seen {
        assert!(!text.contains(SECRET), "the secret is in {what}");
    }
    locker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn services_call_each_other_where_declared_and_a_loop_is_cut_off() {
    let _beside = CLUSTERS_ALONE.read().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for name in ["hello-rs", "hello-spin", "unruly", "notes"] {
        install(&root, &guest(name));
    }
    // The relay may also call `ghost`, which is not installed.
    install(
        &root,
        &guest_variant(dir.path(), "relay", |m| {
            m.push("calls", "ghost");
        }),
    );
    install(
        &root,
        &guest_variant(dir.path(), "hello-rs", |m| {
            m.set("name", "greeter")
                .set("provides", vec!["greeting/hello"]);
        }),
    );
    // relay-b may call relay back; relay may call relay-b.
    install(
        &root,
        &guest_variant(dir.path(), "relay", |m| {
            m.set("name", "relay-b").set("calls", vec!["relay"]);
        }),
    );
    // A WASI 0.3 caller.
    install(
        &root,
        &guest_variant(dir.path(), "unruly-p3", |m| {
            m.add("calls", vec!["hello-rs"]);
        }),
    );
    let locker = Locker::start(&root, &[]);

    // By name: hello-rs, cold, answers; it sees the caller the host set,
    // not the `owner` the relay claimed.
    assert_eq!(
        locker.get("/relay/call/hello-rs/x").await,
        (
            200,
            "hello-rs answered 200: hello from rust at /x, to service:relay\n".into()
        )
    );
    // By type, found through discovery.
    assert_eq!(
        locker.get("/relay/by-type?type=greeting/hello").await,
        (
            200,
            "greeter answered 200: hello from rust at /, to service:relay\n".into()
        )
    );
    // A WASI 0.3 callee.
    assert_eq!(
        locker.get("/relay/call/hello-spin/").await,
        (200, "hello-spin answered 200: Hello, Spin".into())
    );

    assert_eq!(
        locker
            .get("/unruly-p3/fetch?url=http://hello-rs.locker/")
            .await,
        (200, "status 200\n".into())
    );
    assert!(
        locker
            .get("/unruly-p3/fetch?url=http://notes.locker/")
            .await
            .1
            .contains("HttpRequestDenied")
    );

    // Undeclared, and not installed: refused in the caller, named in its log.
    let (code, body) = locker.get("/relay/call/notes/").await;
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    // Undeclared and not installed is refused alike: a guest cannot tell
    // which services exist.
    let (code, body) = locker.get("/relay/call/nobody/").await;
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let (code, body) = locker.get("/relay/call/ghost/").await;
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("DestinationNotFound"), "{body}");
    let log = std::fs::read_to_string(root.join("logs/relay.log")).unwrap();
    assert!(
        log.contains("refused a call to \"notes\": the manifest's `calls` does not name it"),
        "{log}"
    );

    // relay → relay-b → relay is cut off where it would loop.
    assert_eq!(
        locker.get("/relay/call/relay-b/call/relay/").await,
        (
            200,
            "relay-b answered 502: calling relay: ErrorCode::LoopDetected".into()
        )
    );
    let log = std::fs::read_to_string(root.join("logs/relay-b.log")).unwrap();
    assert!(log.contains("relay → relay-b → relay"), "{log}");

    // The callee's limits hold: a looping callee ends at its deadline, and
    // the caller gets an error, not a hang.
    let (code, body) = locker.get("/relay/call/unruly/loop").await;
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("HttpResponseTimeout"), "{body}");

    // From outside, claiming to be the relay does not make one the relay.
    let forged = locker
        .http
        .get(locker.url("/hello-rs/"))
        .header("x-locker-caller", "service:relay")
        .send()
        .await
        .unwrap();
    assert_eq!(
        forged.text().await.unwrap(),
        "hello from rust at /, to owner\n"
    );
    // Calls count as the callee's requests.
    assert_eq!(locker.status("hello-rs").await["requests"], 3);
    locker.stop();
}
