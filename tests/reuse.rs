//! Opt-in instance reuse: a service whose manifest has `[reuse]` has its
//! HTTP requests served in turn by one instance, up to `max_requests`, never
//! shared with another service, and dropped after a trap, a memory hit or
//! its idle time. `unruly`'s `/count` says how many requests the instance
//! answering has served.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Locker, edit_manifest, guest, guest_variant, install};

/// A copy of `guest` named `name`, with these `[reuse]` settings.
fn reusing(dir: &Path, guest: &str, name: &str, reuse: toml::Table) -> PathBuf {
    guest_variant(dir, guest, |m| {
        m.set("name", name).add("reuse", reuse);
    })
}

/// `/count` of a service, `times` times in a row.
async fn counts(locker: &Locker, service: &str, times: usize) -> Vec<String> {
    let mut counts = Vec::new();
    for _ in 0..times {
        let (code, body) = locker.get(&format!("/{service}/count")).await;
        assert_eq!(code, 200, "{body}");
        counts.push(body);
        // The instance goes back to the pool just after its response ends.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_serves_up_to_max_requests_only_when_the_service_opts_in() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("unruly"));
    install(
        &root,
        &reusing(
            dir.path(),
            "unruly",
            "reused",
            toml::toml! { max_requests = 3 },
        ),
    );
    install(
        &root,
        &reusing(
            dir.path(),
            "unruly",
            "other",
            toml::toml! { max_requests = 100 },
        ),
    );
    let locker = Locker::start(&root, &[]);

    assert_eq!(counts(&locker, "unruly", 3).await, ["1", "1", "1"]);
    assert_eq!(
        counts(&locker, "reused", 7).await,
        ["1", "2", "3", "1", "2", "3", "1"]
    );
    // Another service never gets this one's instance.
    assert_eq!(counts(&locker, "other", 2).await, ["1", "2"]);
    assert_eq!(counts(&locker, "reused", 1).await, ["2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_instance_is_dropped_after_a_trap_a_memory_hit_or_its_idle_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let package = reusing(
        dir.path(),
        "unruly",
        "reused",
        toml::toml! { max_requests = 100 idle = "300ms" },
    );
    install(&root, &package);
    let locker = Locker::start(&root, &[]);

    assert_eq!(counts(&locker, "reused", 2).await, ["1", "2"]);
    assert_eq!(locker.get("/reused/panic").await.0, 500);
    assert_eq!(
        counts(&locker, "reused", 2).await,
        ["1", "2"],
        "fresh after a trap"
    );
    let (code, body) = locker.get("/reused/grow").await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("ran out of memory"), "{body}");
    assert_eq!(
        counts(&locker, "reused", 1).await,
        ["1"],
        "fresh after a memory hit"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        counts(&locker, "reused", 1).await,
        ["1"],
        "fresh after its idle time"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn javascript_and_python_services_answer_every_request_from_a_reused_instance() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // Its manifest opts into reuse (a `fetch` listener cannot: StarlingMonkey#247).
    install(&root, &guest("hello-js-wasi"));
    install(
        &root,
        &reusing(
            dir.path(),
            "hello-py",
            "py",
            toml::toml! { max_requests = 50 },
        ),
    );
    let locker = Locker::start(&root, &[]);
    for round in 0..5 {
        let (code, body) = locker.get(&format!("/hello-js-wasi/page-{round}")).await;
        let expected = format!("hello from javascript at /page-{round}, to owner\n");
        assert_eq!((code, body), (200, expected));
        let echo = format!("echo {round}");
        let (code, body) = locker.get("/py/page").await;
        assert_eq!(
            (code, body.as_str()),
            (200, "hello from python at /page, to owner\n")
        );
        assert_eq!(locker.post("/py/echo", echo.clone()).await, (200, echo));
        assert_eq!(
            locker.get("/py/visits").await,
            (200, (round + 1).to_string())
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reuse_is_turned_off_for_a_service_whose_instance_cannot_answer_twice() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // StarlingMonkey's `fetch` listener answers one request per instance
    // (bytecodealliance/StarlingMonkey#247): it returns from the second
    // without an answer.
    let package = reusing(
        dir.path(),
        "hello-js",
        "js",
        toml::toml! { max_requests = 50 },
    );
    edit_manifest(&package, |m| {
        m.add("limits.timeout", "2s");
    });
    install(&root, &package);
    let locker = Locker::start(&root, &[]);

    assert_eq!(locker.get("/js/").await.0, 200);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (code, body) = locker.get("/js/").await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("did not send a response"), "{body}");
    let log = std::fs::read_to_string(root.join("logs/js.log")).unwrap();
    assert!(log.contains("reuse is off for this service"), "{log}");
    for _ in 0..3 {
        let (code, body) = locker.get("/js/again").await;
        assert_eq!(
            (code, body.as_str()),
            (200, "hello from javascript at /again, to owner\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_request_to_a_reused_instance_has_its_own_log_budget() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(
        &root,
        &reusing(
            dir.path(),
            "unruly",
            "reused",
            toml::toml! { max_requests = 100 },
        ),
    );
    let locker = Locker::start(&root, &[]);
    for _ in 0..2 {
        let (code, body) = locker.get("/reused/shout").await;
        assert_eq!(code, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Both were served by one instance...
    assert_eq!(counts(&locker, "reused", 1).await, ["3"]);
    // ...and each wrote its own 1 MiB before being cut off.
    let log = std::fs::read_to_string(root.join("logs/reused.log")).unwrap();
    assert_eq!(log.matches("output truncated").count(), 2, "{}", log.len());
    assert!(log.len() >= 2 << 20, "the log holds {} bytes", log.len());
}

/// `/instance?ms=N` of a WASI 0.3 service, `times` at once: which instance
/// answered each.
async fn instances_at_once(locker: &Locker, service: &str, times: usize, ms: u64) -> Vec<String> {
    let requests = (0..times).map(|_| {
        let path = format!("/{service}/instance?ms={ms}");
        async move { locker.get(&path).await }
    });
    futures::future::join_all(requests)
        .await
        .into_iter()
        .map(|(code, body)| {
            assert_eq!(code, 200, "{body}");
            body.split_whitespace().next().unwrap().to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_03_instance_serves_several_requests_at_once_and_only_its_own_service() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("unruly-p3"));
    install(
        &root,
        &guest_variant(dir.path(), "unruly-p3", |m| {
            m.set("name", "four-at-once")
                .add("limits.concurrency", 4)
                .add("limits.max_instances", 20);
        }),
    );
    install(
        &root,
        &guest_variant(dir.path(), "unruly-p3", |m| {
            m.set("name", "one-instance").add("limits.max_instances", 1);
        }),
    );
    let locker = Locker::start(&root, &[]);

    // 40 requests at once to each of two services, each request waiting
    // 400 ms inside its instance: they overlap.
    let (default, four) = tokio::join!(
        instances_at_once(&locker, "unruly-p3", 40, 400),
        instances_at_once(&locker, "four-at-once", 40, 400),
    );
    let distinct = |ids: &[String]| {
        ids.iter()
            .cloned()
            .collect::<std::collections::HashSet<_>>()
    };
    let (default_ids, four_ids) = (distinct(&default), distinct(&four));
    assert!(
        default_ids.len() < 40 / 2,
        "40 requests took {} instances of unruly-p3",
        default_ids.len()
    );
    // Four at a time per instance: at least ten instances for forty.
    assert!(
        (10..40).contains(&four_ids.len()),
        "40 requests took {} instances of four-at-once",
        four_ids.len()
    );
    assert!(
        default_ids.is_disjoint(&four_ids),
        "an instance answered for two services"
    );
    // The admin API counts the instances each service made: fewer than
    // requests (some may have been started for a request another instance
    // took first, so at least as many as answered).
    for (service, answered) in [
        ("unruly-p3", default_ids.len()),
        ("four-at-once", four_ids.len()),
    ] {
        let status = locker.status(service).await;
        assert_eq!(status["requests"], 40);
        let made = status["instances"].as_u64().unwrap() as usize;
        assert!(
            (answered..40).contains(&made),
            "{service}: {answered} answered, {status:#}"
        );
    }

    // A trap ends the instance; the next request gets a fresh one.
    let before = instances_at_once(&locker, "one-instance", 5, 100).await;
    assert_eq!(distinct(&before).len(), 1, "{before:?}");
    assert_eq!(locker.get("/one-instance/panic").await.0, 500);
    let after = instances_at_once(&locker, "one-instance", 1, 0).await;
    assert_ne!(after[0], before[0], "the trapped instance served again");
    assert_eq!(locker.status("one-instance").await["instances"], 2);

    // Stopped and started again, the service's idle instance is gone with
    // its load: its one slot is free for a new instance at once.
    for command in ["stop", "start"] {
        let out = support::cli_async(&locker.root, &[command, "one-instance"]).await;
        assert!(out.success, "{}", out.stderr);
    }
    let again = instances_at_once(&locker, "one-instance", 1, 0).await;
    assert_ne!(
        again[0], after[0],
        "an instance outlived its service's stop"
    );
}
