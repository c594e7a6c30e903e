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
