//! Durable events between services: cold-start delivery, wildcards, order,
//! retries, dead letters and replay, crash safety, and clear refusals.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{Locker, cli, cli_async, eventually, guest, guest_variant, install, install_async};

/// A subscriber installed under `name` with these `subscribes` patterns.
fn subscriber(dir: &Path, root: &Path, name: &str, patterns: &[&str]) {
    let package = guest_variant(dir, "subscriber", |m| {
        m.set("name", name).set("subscribes", patterns.to_vec());
    });
    install(root, &package);
}

/// The events a subscriber recorded, as JSON values.
async fn received(locker: &Locker, name: &str) -> Vec<Value> {
    let (code, body) = locker.get(&format!("/{name}/events")).await;
    assert_eq!(code, 200, "{body}");
    body.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Waits until a subscriber has recorded at least `count` events.
async fn wait_for_events(locker: &Locker, name: &str, count: usize) -> Vec<Value> {
    let what = format!("{name} to receive {count} events");
    eventually(&what, Duration::from_secs(60), async || {
        let events = received(locker, name).await;
        match events.len() {
            received if received >= count => Ok(events),
            received => Err(format!("{received} events")),
        }
    })
    .await
}

async fn publish(locker: &Locker, topic: &str, payload: &str) -> String {
    let (code, body) = locker
        .post(
            &format!("/publisher/publish?topic={topic}"),
            payload.to_string(),
        )
        .await;
    assert_eq!(code, 200, "publish {topic}: {body}");
    body
}

async fn stats(locker: &Locker) -> Value {
    let (_, body) = locker.get("/_locker/api/events/stats").await;
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_reaches_a_subscriber_that_was_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    install(&root, &guest("subscriber"));
    let locker = Locker::start(&root, &[]);
    assert_eq!(locker.status("subscriber").await["state"], "installed");
    let id = publish(&locker, "note/changed", r#"{"title":"first"}"#).await;
    assert!(id.starts_with("evt-"), "{id}");
    let events = wait_for_events(&locker, "subscriber", 1).await;
    assert_eq!(events[0]["id"], id.as_str());
    assert_eq!(events[0]["topic"], "note/changed");
    assert_eq!(events[0]["source"], "publisher");
    assert_eq!(events[0]["payload"], r#"{"title":"first"}"#);
    assert_eq!(
        locker.status("subscriber").await["loads"],
        1,
        "delivered through a cold start"
    );
    // A line longer than one host call takes (4 KiB) is appended whole too.
    let long = format!(r#"{{"title":"{}"}}"#, "x".repeat(10_000));
    let id = publish(&locker, "note/changed", &long).await;
    let events = wait_for_events(&locker, "subscriber", 2).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["id"], id.as_str());
    assert_eq!(events[1]["payload"], long.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcard_subscriptions_match_and_order_holds_over_a_thousand_events() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // One request publishes all 1,000 events, each durable before the next:
    // give it time on a slow disk.
    let patient = guest_variant(dir.path(), "publisher", |m| {
        m.add("limits.timeout", "5m");
    });
    install(&root, &patient);
    subscriber(dir.path(), &root, "all-notes", &["note/*"]);
    subscriber(dir.path(), &root, "only-deletes", &["note/deleted"]);
    subscriber(dir.path(), &root, "everything", &["*"]);
    subscriber(dir.path(), &root, "contacts", &["contact/*"]);
    let locker = Locker::start(&root, &[]);

    let (code, body) = locker
        .post("/publisher/publish-many?topic=note/changed&count=1000", "")
        .await;
    assert_eq!(code, 200, "{body}");
    publish(&locker, "note/deleted", r#"{"n":"last"}"#).await;

    let all = wait_for_events(&locker, "all-notes", 1001).await;
    let numbers: Vec<Value> = all
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e["payload"].as_str().unwrap()).unwrap()["n"].clone()
        })
        .collect();
    let expected: Vec<Value> = (0..1000)
        .map(Value::from)
        .chain([Value::from("last")])
        .collect();
    assert_eq!(numbers, expected, "events arrived out of publish order");
    let ids: Vec<&str> = all.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids are not increasing"
    );

    let deletes = wait_for_events(&locker, "only-deletes", 1).await;
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["topic"], "note/deleted");
    // `*` also matches the host's own `locker/...` events.
    let everything = wait_for_events(&locker, "everything", 1001).await;
    let notes = everything
        .iter()
        .filter(|e| e["topic"].as_str().unwrap().starts_with("note/"))
        .count();
    assert_eq!(notes, 1001);
    assert!(
        everything
            .iter()
            .all(|e| e["topic"].as_str().unwrap().starts_with("note/") || e["source"] == "locker")
    );
    assert_eq!(
        locker.status("contacts").await["loads"],
        0,
        "a non-matching subscriber is never loaded"
    );
    assert!(received(&locker, "contacts").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_fails_twice_gets_the_event_three_times() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    install(&root, &guest("subscriber"));
    let locker = Locker::start(&root, &["--event-backoff", "50ms"]);
    let id = publish(&locker, "note/changed", r#"{"fail_times":2}"#).await;
    let events = wait_for_events(&locker, "subscriber", 1).await;
    assert_eq!(events[0]["id"], id.as_str());
    // Give a wrongly repeated delivery the time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, attempts) = locker.get("/subscriber/attempts").await;
    assert_eq!(attempts.lines().count(), 3, "{attempts}");
    assert_eq!(received(&locker, "subscriber").await.len(), 1);
    assert_eq!(stats(&locker).await["pending"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_always_fails_ends_in_dead_letters_and_a_replay_delivers_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    install(&root, &guest("subscriber"));
    let locker = Locker::start(&root, &["--event-attempts", "3", "--event-backoff", "20ms"]);
    let id = publish(&locker, "note/changed", r#"{"always_fail":true}"#).await;
    // A later event is held back until the failing one is settled, then delivered.
    publish(&locker, "note/changed", r#"{"after":"it"}"#).await;
    wait_for_events(&locker, "subscriber", 1).await;

    let letters = cli_async(&root, &["dead-letters", "--json"]).await;
    assert!(letters.success, "{}", letters.stderr);
    let letters: Vec<Value> = serde_json::from_str(&letters.stdout).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["subscriber"], "subscriber");
    assert_eq!(letters[0]["event"]["id"], id.as_str());
    assert_eq!(letters[0]["attempts"], 3);
    assert!(
        letters[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("failing until fixed")
    );
    assert_eq!(stats(&locker).await["dead"], 1);

    assert_eq!(locker.post("/subscriber/fix", "").await.0, 200);
    let replay = cli_async(&root, &["replay", "--service", "subscriber"]).await;
    assert!(replay.success, "{}", replay.stderr);
    assert!(replay.stdout.contains("subscriber"), "{}", replay.stdout);
    let events = wait_for_events(&locker, "subscriber", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events_after = received(&locker, "subscriber").await;
    assert_eq!(
        events_after.len(),
        2,
        "replayed more than once: {events_after:?}"
    );
    assert_eq!(events[1]["id"], id.as_str());
    assert_eq!(stats(&locker).await["dead"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_event_survives_a_killed_host() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    install(&root, &guest("subscriber"));
    // Held back: the subscriber is stopped, so nothing is delivered before the kill.
    assert!(cli(&root, &["stop", "subscriber"]).success);
    let locker = Locker::start(&root, &[]);
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(publish(&locker, "note/changed", &format!("{{\"n\":{n}}}")).await);
    }
    drop(locker); // SIGKILL, right after the last publish returned

    let locker = Locker::start(&root, &[]);
    let out = cli_async(&root, &["start", "subscriber"]).await;
    assert!(out.success, "{}", out.stderr);
    let events = wait_for_events(&locker, "subscriber", 20).await;
    let delivered: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        delivered,
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_publishes_are_refused_and_nothing_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    subscriber(dir.path(), &root, "everything", &["*"]);
    let locker = Locker::start(&root, &[]);
    let cases = [
        (
            "note/secret",
            "{}".to_string(),
            "undeclared topic: note/secret",
        ),
        (
            "note/changed",
            "x".repeat(70 * 1024),
            "payload too large (limit 65536 bytes)",
        ),
        ("note/changed", "{not json".to_string(), "invalid JSON"),
        ("Note/Changed", "{}".to_string(), "invalid topic"),
    ];
    for (topic, payload, expected) in cases {
        let (code, body) = locker
            .post(&format!("/publisher/publish?topic={topic}"), payload)
            .await;
        assert_eq!(code, 400, "{topic}: {body}");
        assert!(body.contains(expected), "expected {expected:?} in {body:?}");
    }
    let (_, stored) = locker.get("/_locker/api/events?topic=note/*").await;
    assert_eq!(stored.trim(), "[]", "a refused event was stored");
    let delivered = received(&locker, "everything").await;
    assert!(
        delivered.iter().all(|e| e["source"] == "locker"),
        "{delivered:?}"
    );
    let log = std::fs::read_to_string(root.join("logs/publisher.log")).unwrap();
    assert!(log.contains("publish refused"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_events_announce_install_load_unload_and_failure() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    subscriber(dir.path(), &root, "watcher", &["locker/*"]);
    install(&root, &guest("unruly"));
    let locker = Locker::start(&root, &["--idle-timeout", "400ms"]);
    install_async(&root, &guest("hello-rs")).await;
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    locker
        .wait_for_status("hello-rs", Duration::from_secs(10), |s| {
            s["state"] == "installed"
        })
        .await;
    assert_eq!(locker.get("/unruly/panic").await.0, 500);

    let wanted = [
        ("locker/service.installed", "hello-rs"),
        ("locker/service.started", "hello-rs"),
        ("locker/service.stopped", "hello-rs"),
        ("locker/service.failed", "unruly"),
    ];
    let events = eventually(
        "the host events about hello-rs and unruly",
        Duration::from_secs(30),
        async || {
            let events = received(&locker, "watcher").await;
            let seen = |topic: &str, service: &str| {
                events.iter().any(|e| {
                        e["topic"] == topic
                            && e["source"] == "locker"
                            && serde_json::from_str::<Value>(e["payload"].as_str().unwrap())
                                .unwrap()["service"]
                                == service
                    })
            };
            if wanted.iter().all(|(topic, service)| seen(topic, service)) {
                Ok(events)
            } else {
                Err(Value::from(events))
            }
        },
    )
    .await;
    // The watcher is never told about its own loading and unloading.
    assert!(
        !events
            .iter()
            .any(|e| e["payload"].as_str().unwrap().contains("\"watcher\""))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_sees_events_live_and_unhandled_ones_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    let locker = Locker::start(&root, &[]);
    // Warm the publisher so that its own host event is out of the way.
    assert_eq!(
        locker.get("/publisher/whoami").await,
        (200, "publisher".into())
    );

    let mut stream = locker
        .http
        .get(locker.url("/_locker/api/events/stream?topic=note/*"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with(": connected"));
    let id = publish(&locker, "note/deleted", r#"{"gone":true}"#).await;
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains(&format!("id: {id}")), "{text}");
    assert!(text.contains("note/deleted"), "{text}");

    // Nobody subscribes to notes here: the event is counted as unhandled.
    assert!(stats(&locker).await["unhandled"].as_u64().unwrap() >= 1);
    let listing = cli_async(&root, &["events", "--topic", "note/*"]).await;
    assert!(listing.success, "{}", listing.stderr);
    assert!(
        listing.stdout.contains(&id) && listing.stdout.contains("unhandled"),
        "{}",
        listing.stdout
    );
    assert!(
        !listing.stdout.contains("locker/service"),
        "the topic filter let through: {}",
        listing.stdout
    );
    locker.stop();
    // Without a host, the history is read from the root directly.
    let offline = cli(&root, &["events", "--json"]);
    assert!(offline.success, "{}", offline.stderr);
    assert!(offline.stdout.contains(&id), "{}", offline.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn services_find_each_other_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    install(&root, &guest("subscriber"));
    install(&root, &guest("hello-rs"));
    let locker = Locker::start(&root, &[]);
    assert_eq!(
        locker.get("/publisher/whoami").await,
        (200, "publisher".into())
    );
    let names = |body: String| -> Vec<String> {
        let found: Vec<Value> = serde_json::from_str(&body).unwrap();
        found
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(locker.get("/publisher/find?pattern=note/*").await.1),
        ["publisher", "subscriber"]
    );
    assert_eq!(
        names(
            locker
                .get("/publisher/find?pattern=note/collection")
                .await
                .1
        ),
        ["subscriber"]
    );
    assert_eq!(
        names(locker.get("/publisher/find?pattern=demo/*").await.1),
        ["hello-rs"]
    );
    assert!(names(locker.get("/publisher/find?pattern=photo/*").await.1).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reinstalled_subscriber_gets_each_new_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    install(&root, &guest("subscriber"));
    let locker = Locker::start(&root, &[]);
    publish(&locker, "note/changed", r#"{"n":"before"}"#).await;
    wait_for_events(&locker, "subscriber", 1).await;
    let out = cli_async(&root, &["uninstall", "subscriber", "--keep-data"]).await;
    assert!(out.success, "{}", out.stderr);
    install_async(&root, &guest("subscriber")).await;
    for n in 0..50 {
        publish(&locker, "note/changed", &format!("{{\"n\":{n}}}")).await;
    }
    let events = wait_for_events(&locker, "subscriber", 51).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events_after = received(&locker, "subscriber").await;
    assert_eq!(
        events_after.len(),
        events.len(),
        "an event was delivered twice"
    );
    let ids: Vec<&str> = events_after
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "out of order or repeated: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_is_pruned_after_its_retention_but_never_an_event_still_owed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    install(&root, &guest("subscriber"));
    let flags = [
        "--event-retention",
        "2s",
        "--event-attempts",
        "2",
        "--event-backoff",
        "20ms",
    ];
    let locker = Locker::start(&root, &flags);
    let owed = publish(&locker, "note/changed", r#"{"always_fail":true}"#).await;
    let delivered = publish(&locker, "note/changed", r#"{"n":1}"#).await;
    let unhandled = publish(&locker, "bench/tick", "{}").await;
    wait_for_events(&locker, "subscriber", 1).await;
    let ids = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let history = |locker: &Locker| {
        let request = locker.http.get(locker.url("/_locker/api/events?limit=100"));
        async move {
            let events: Vec<Value> = request.send().await.unwrap().json().await.unwrap();
            events
        }
    };
    let before = ids(&history(&locker).await);
    for id in [&owed, &delivered, &unhandled] {
        assert!(before.contains(id), "{id} missing from {before:?}");
    }

    // Past the retention, delivered and unhandled events go; the dead letter stays.
    let after = eventually(
        "the history to be pruned",
        Duration::from_secs(30),
        async || {
            let after = ids(&history(&locker).await);
            if !after.contains(&delivered) && !after.contains(&unhandled) {
                Ok(after)
            } else {
                Err(format!("{after:?}"))
            }
        },
    )
    .await;
    assert!(
        after.contains(&owed),
        "a dead letter's event was pruned: {after:?}"
    );
    let letters = cli_async(&root, &["dead-letters", "--json"]).await;
    let letters: Vec<Value> = serde_json::from_str(&letters.stdout).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["event"]["id"], owed.as_str());
    assert!(locker.host_log().contains("pruned the event history"));

    // Ids are never reused, even after the newest events were pruned.
    let fresh = publish(&locker, "bench/tick", "{}").await;
    assert!(fresh > unhandled, "{fresh} after {unhandled}");
}

/// The host's own events on `topic`, as the admin API lists them.
async fn host_events(locker: &Locker, topic: &str) -> Vec<Value> {
    let (code, body) = locker
        .get(&format!("/_locker/api/events?topic={topic}&limit=100"))
        .await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Vec<Value>>(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_says_once_when_a_service_comes_online_and_when_an_event_goes_unhandled() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    let locker = Locker::start(&root, &["--idle-timeout", "300ms"]);
    let online = async |locker: &Locker, count: usize| {
        eventually(
            "locker/service.online",
            Duration::from_secs(10),
            async || {
                let events = host_events(locker, "locker/service.online").await;
                if events.len() == count {
                    Ok(events)
                } else {
                    Err(Value::from(events))
                }
            },
        )
        .await
    };

    // Its first load after install says it is online; an unload and a
    // second load do not say it again.
    publish(&locker, "note/changed", r#"{"n": 1}"#).await;
    let first = online(&locker, 1).await;
    let payload: Value = serde_json::from_str(first[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["service"], "publisher");
    assert_eq!(first[0]["source"], "locker");
    locker
        .wait_for_status("publisher", Duration::from_secs(10), |s| {
            s["state"] == "installed"
        })
        .await;
    publish(&locker, "note/changed", r#"{"n": 2}"#).await;
    assert_eq!(locker.status("publisher").await["loads"], 2);

    // Nobody subscribes to notes: each event is announced as unhandled,
    // once, and the announcement itself makes no other.
    let unhandled = eventually(
        "two locker/event.unhandled",
        Duration::from_secs(10),
        async || {
            let events = host_events(&locker, "locker/event.unhandled").await;
            if events.len() == 2 {
                Ok(events)
            } else {
                Err(Value::from(events))
            }
        },
    )
    .await;
    let about: Value = serde_json::from_str(unhandled[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(
        (about["topic"].as_str(), about["source"].as_str()),
        (Some("note/changed"), Some("publisher"))
    );
    // Exactly two: the host's own events nobody takes (`service.started`,
    // `service.online`, these two) are not announced.
    assert!(
        unhandled.iter().all(|e| !e["payload"]
            .as_str()
            .unwrap()
            .contains(r#""source":"locker""#)),
        "{unhandled:?}"
    );

    // Nor does a restart; an upgrade does, once.
    locker.stop();
    let locker = Locker::start(&root, &[]);
    publish(&locker, "note/changed", r#"{"n": 3}"#).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(host_events(&locker, "locker/service.online").await.len(), 1);
    let newer = guest_variant(dir.path(), "publisher", |m| {
        m.set("version", "0.2.0");
    });
    let out = cli_async(&root, &["upgrade", newer.to_str().unwrap()]).await;
    assert!(out.success, "{}", out.stderr);
    publish(&locker, "note/changed", r#"{"n": 4}"#).await;
    let after = online(&locker, 2).await;
    let versions: Vec<String> = after
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e["payload"].as_str().unwrap()).unwrap()["version"]
                .to_string()
        })
        .collect();
    assert!(versions.contains(&"\"0.2.0\"".to_string()), "{versions:?}");
}

const CARD_SCHEMA: &str = r#"{
  "type": "object",
  "required": ["name"],
  "properties": {"name": {"type": "string"}, "emails": {"type": "array", "items": {"type": "string"}}}
}"#;

/// A publisher whose package defines `contact/card` (with `schema`) and
/// binds `contact/changed` to it.
fn card_publisher(dir: &Path, name: &str, schema: &str) -> std::path::PathBuf {
    let package = guest_variant(dir, "publisher", |m| {
        let mut typed = toml::Table::new();
        typed.insert("topic".into(), "contact/changed".into());
        typed.insert("type".into(), "contact/card".into());
        m.set("name", name).set(
            "publishes",
            toml::Value::Array(vec!["note/changed".into(), typed.into()]),
        );
        let mut card = toml::Table::new();
        card.insert("schema".into(), "schemas/card.json".into());
        card.insert("description".into(), "A person's card".into());
        let mut types = toml::Table::new();
        types.insert("contact/card".into(), card.into());
        m.add("types", types);
    });
    std::fs::create_dir_all(package.join("schemas")).unwrap();
    std::fs::write(package.join("schemas/card.json"), schema).unwrap();
    package
}

#[tokio::test(flavor = "multi_thread")]
async fn a_typed_topic_takes_only_payloads_of_its_type() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &card_publisher(dir.path(), "publisher", CARD_SCHEMA));
    subscriber(dir.path(), &root, "cards", &["contact/*"]);
    // A second package may define the type again only with the same schema.
    install(
        &root,
        &card_publisher(dir.path(), "same-cards", CARD_SCHEMA),
    );
    let other = card_publisher(dir.path(), "other-cards", r#"{"type": "string"}"#);
    let out = cli(&root, &["install", other.to_str().unwrap()]);
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("type \"contact/card\" is already defined by service \"publisher\"")
            && out.stderr.contains("\"other-cards\""),
        "{}",
        out.stderr
    );
    // A schema that is not one, or that reaches outside the package, is refused.
    let broken = card_publisher(dir.path(), "broken-cards", r#"{"type": 12}"#);
    let out = cli(&root, &["install", broken.to_str().unwrap()]);
    assert!(
        out.stderr.contains("is not a JSON Schema"),
        "{}",
        out.stderr
    );
    let escaping = card_publisher(dir.path(), "escaping", CARD_SCHEMA);
    support::edit_manifest(&escaping, |m| {
        m.set("types.contact/card.schema", "../../../etc/passwd");
    });
    let out = cli(&root, &["install", escaping.to_str().unwrap()]);
    assert!(
        out.stderr.contains("must be a path inside the package"),
        "{}",
        out.stderr
    );

    let types = cli(&root, &["types"]);
    assert!(
        types.stdout.contains("contact/card")
            && types.stdout.contains("defined by: publisher, same-cards")
            && types.stdout.contains("topic publisher: contact/changed"),
        "{}",
        types.stdout
    );
    let locker = Locker::start(&root, &[]);

    // A card breaking the schema is refused with the violation named, and
    // nothing is stored; a valid one is delivered.
    let (code, body) = locker
        .post(
            "/publisher/publish?topic=contact/changed",
            r#"{"emails": ["ada@example.com"]}"#,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("not a \"contact/card\"") && body.contains("\"name\" is a required property"),
        "{body}"
    );
    let (code, body) = locker
        .post("/publisher/publish?topic=contact/changed", r#"{"name": 7}"#)
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at /name"), "{body}");
    publish(&locker, "contact/changed", r#"{"name": "Ada"}"#).await;
    // Untyped topics take any JSON.
    publish(&locker, "note/changed", r#"[1, 2]"#).await;
    let cards = wait_for_events(&locker, "cards", 1).await;
    let topics: Vec<&str> = cards
        .iter()
        .filter(|e| e["source"] != "locker")
        .map(|e| e["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["contact/changed"]);
    assert_eq!(cards.last().unwrap()["payload"], r#"{"name": "Ada"}"#);

    // The owner's own publish is held to the type too.
    let (code, body) = locker
        .post("/_locker/api/publish/contact/changed", r#"{"name": false}"#)
        .await;
    assert_eq!(code, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("not a \"contact/card\": at /name"),
        "{body}"
    );
    let (code, body) = locker.get("/_locker/api/types").await;
    assert_eq!(code, 200);
    let types: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(types[0]["schema"]["required"][0], "name");

    // A service that binds the type without defining it; once every
    // package that defined it is gone, its topic takes nothing (fails
    // closed, not open).
    let binder = card_publisher(dir.path(), "binder", CARD_SCHEMA);
    support::edit_manifest(&binder, |m| {
        m.remove("types");
    });
    support::install_async(&root, &binder).await;
    for gone in ["publisher", "same-cards"] {
        let out = cli_async(&root, &["uninstall", gone]).await;
        assert!(out.success, "{}", out.stderr);
    }
    let (code, body) = locker
        .post(
            "/binder/publish?topic=contact/changed",
            r#"{"name": "Ada"}"#,
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("no installed package defines this type"),
        "{body}"
    );
    locker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_from_outside_with_a_topic_token_reaches_its_subscribers_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    subscriber(dir.path(), &root, "hooks", &["hook/*"]);
    install(&root, &guest("hello-rs"));
    // Published while no host runs: stored, delivered once one does.
    let out = cli(&root, &["events", "publish", "hook/offline", r#"{"n": 0}"#]);
    assert!(out.success, "{}", out.stderr);
    let locker = Locker::start(&root, &[]);

    let out = cli_async(
        &root,
        &["token", "create", "--scope", "publish:hook/github"],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    let token = out.stdout.trim().to_string();
    let client = support::client_builder().build().unwrap();
    let send = async |method: reqwest::Method, path: &str, body: &str| {
        let response = client
            .request(method, locker.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    };
    // A webhook posts its JSON as is.
    let (code, body) = send(
        reqwest::Method::POST,
        "/_locker/api/publish/hook/github",
        r#"{"action": "opened"}"#,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["source"], "owner");
    let got = wait_for_events(&locker, "hooks", 2).await;
    let payloads: Vec<&str> = got
        .iter()
        .filter(|e| e["source"] == "owner")
        .map(|e| e["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, [r#"{"n": 0}"#, r#"{"action": "opened"}"#]);

    // The same token: no other topic, nothing else of the admin API, no service.
    for (method, path) in [
        (reqwest::Method::POST, "/_locker/api/publish/hook/gitlab"),
        (
            reqwest::Method::POST,
            "/_locker/api/publish/locker/service.started",
        ),
        (reqwest::Method::GET, "/_locker/api/services"),
        (reqwest::Method::GET, "/_locker/api/events"),
        (reqwest::Method::POST, "/_locker/api/tokens"),
        (reqwest::Method::DELETE, "/_locker/api/services/hello-rs"),
        (reqwest::Method::GET, "/hello-rs/"),
    ] {
        let (code, body) = send(method.clone(), path, "{}").await;
        assert_eq!(code, 403, "{method} {path}: {body}");
    }
    // The admin may publish any topic but the host's own, with the same checks.
    let out = cli_async(&root, &["events", "publish", "hook/cli", "{not json"]).await;
    assert!(out.stderr.contains("not JSON"), "{}", out.stderr);
    let out = cli_async(
        &root,
        &["events", "publish", "locker/service.started", "{}"],
    )
    .await;
    assert!(out.stderr.contains("the host's own"), "{}", out.stderr);
    let out = cli_async(&root, &["events", "publish", "hook/cli", r#"{"n": 2}"#]).await;
    assert!(out.success, "{}", out.stderr);
    wait_for_events(&locker, "hooks", 3).await;
    locker.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn events_for_a_service_missing_a_required_setting_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("publisher"));
    let package = guest_variant(dir.path(), "subscriber", |m| {
        let mut key = toml::Table::new();
        key.insert("description".into(), "Where to send them".into());
        key.insert("required".into(), true.into());
        let mut config = toml::Table::new();
        config.insert("target".into(), key.into());
        m.set("name", "needs-target")
            .set("subscribes", vec!["note/*"])
            .add("config", config);
    });
    install(&root, &package);
    // Retries that would use up two attempts within a fraction of a second.
    let locker = Locker::start(&root, &["--event-attempts", "2", "--event-backoff", "20ms"]);
    publish(&locker, "note/changed", r#"{"n": 1}"#).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let waiting = stats(&locker).await;
    assert_eq!(
        (&waiting["pending"], &waiting["dead"]),
        (&1.into(), &0.into()),
        "{waiting}"
    );

    let out = cli_async(&root, &["config", "set", "needs-target", "target", "here"]).await;
    assert!(out.success, "{}", out.stderr);
    let events = wait_for_events(&locker, "needs-target", 1).await;
    assert!(
        events.iter().any(|e| e["topic"] == "note/changed"),
        "{events:?}"
    );
    locker.stop();
}
