//! A guest that loops, hoards memory or crashes is stopped with a clear
//! error, and every other service keeps answering meanwhile; clients that
//! hold connections open without sending requests are closed, and cannot
//! starve the others.

mod support;

use std::time::{Duration, Instant};

use support::{Locker, guest, guest_variant, install};

async fn locker_with_unruly_and_hello(dir: &std::path::Path) -> Locker {
    let root = dir.join("root");
    install(&root, &guest("unruly"));
    install(&root, &guest("hello-rs"));
    Locker::start(&root, &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_loops_forever_gets_a_504_while_others_answer() {
    let dir = tempfile::tempdir().unwrap();
    let locker = locker_with_unruly_and_hello(dir.path()).await;
    // Warm both up so that the timings below are about the loop alone.
    assert_eq!(locker.get("/unruly/").await.0, 200);
    assert_eq!(locker.get("/hello-rs/").await.0, 200);

    let started = Instant::now();
    let looping = locker.get("/unruly/loop");
    let others = async {
        // While the loop spins, another service answers, many times over.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for _ in 0..20 {
            let (code, body) = locker.get("/hello-rs/during").await;
            assert_eq!(code, 200, "{body}");
        }
        // And so does the looping service itself, on another instance.
        locker.get("/unruly/still-there").await
    };
    let ((code, body), (other_code, _)) = tokio::join!(looping, others);
    let elapsed = started.elapsed();
    assert_eq!(code, 504, "{body}");
    assert!(
        body.contains("\\\"unruly\\\" did not answer within its deadline of 2s"),
        "{body}"
    );
    assert_eq!(other_code, 200);
    // The manifest's deadline is 2 s; a loop is stopped soon after it.
    assert!(
        elapsed < Duration::from_secs(6),
        "the loop ran for {elapsed:?}"
    );

    // A guest blocked on the clock rather than the CPU is cut off too.
    let (code, body) = locker.get("/unruly/sleep?ms=60000").await;
    assert_eq!(code, 504, "{body}");

    let status = locker.status("unruly").await;
    assert!(
        status["last_error"].as_str().unwrap().contains("deadline"),
        "{status:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_hoards_memory_is_stopped_at_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let locker = locker_with_unruly_and_hello(dir.path()).await;
    let (code, body) = locker.get("/unruly/grow").await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("\\\"unruly\\\" ran out of memory (its limit is 32.0 MiB)"),
        "{body}"
    );
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    assert_eq!(locker.get("/unruly/fine").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_traps_gets_a_500_and_the_host_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let locker = locker_with_unruly_and_hello(dir.path()).await;
    let (code, body) = locker.get("/unruly/panic").await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("\\\"unruly\\\" crashed"), "{body}");
    let (code, body) = locker.get("/unruly/recurse").await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("crashed"), "{body}");
    assert_eq!(locker.get("/unruly/fine").await.0, 200);
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    // The guest's own panic message is in its log.
    let log = std::fs::read_to_string(locker.root.join("logs/unruly.log")).unwrap();
    assert!(log.contains("unruly panics on purpose"), "{log}");
    assert!(log.contains("crashed"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_03_guest_that_loops_hoards_or_traps_is_stopped_while_a_02_one_answers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("unruly-p3"));
    install(&root, &guest("hello-rs"));
    let locker = Locker::start(&root, &[]);
    assert_eq!(locker.get("/unruly-p3/").await.0, 200);

    let started = Instant::now();
    let looping = locker.get("/unruly-p3/loop");
    let others = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        for _ in 0..20 {
            let (code, body) = locker.get("/hello-rs/during").await;
            assert_eq!(code, 200, "{body}");
        }
    };
    let ((code, body), ()) = tokio::join!(looping, others);
    assert_eq!(code, 504, "{body}");
    assert!(
        body.contains("\\\"unruly-p3\\\" did not answer within its deadline of 2s"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    let (code, body) = locker.get("/unruly-p3/grow").await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("\\\"unruly-p3\\\" ran out of memory (its limit is 32.0 MiB)"),
        "{body}"
    );
    let (code, body) = locker.get("/unruly-p3/panic").await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("\\\"unruly-p3\\\" crashed"), "{body}");

    // Each failure ended its instance; the next request gets a fresh one.
    assert_eq!(locker.get("/unruly-p3/fine").await.0, 200);
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
    let log = std::fs::read_to_string(root.join("logs/unruly-p3.log")).unwrap();
    assert!(log.contains("unruly-p3 panics on purpose"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_floods_its_log_is_cut_off_at_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let locker = locker_with_unruly_and_hello(dir.path()).await;
    let (code, body) = locker.get("/unruly/shout").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("printed 839"), "{body}");
    let log = std::fs::read_to_string(locker.root.join("logs/unruly.log")).unwrap();
    assert!(
        log.len() < (1 << 20) + 4096,
        "the log grew to {} bytes",
        log.len()
    );
    assert!(log.contains("output truncated"), "no truncation note");
    assert_eq!(locker.get("/hello-rs/").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_instances_are_capped_per_service() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let capped = guest_variant(dir.path(), "unruly", |m| {
        m.set("limits.timeout", "10s")
            .add("limits.max_instances", 1);
    });
    install(&root, &capped);
    let locker = Locker::start(&root, &[]);
    assert_eq!(locker.get("/unruly/").await.0, 200);
    // Three requests that each hold an instance for a while: with one
    // instance allowed they run one after another, never side by side.
    let requests = (0..3).map(|_| locker.get("/unruly/sleep?ms=700"));
    let watcher = async {
        let mut most = 0;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let in_flight = locker.status("unruly").await["in_flight"].as_u64().unwrap();
            most = most.max(in_flight);
        }
        most
    };
    let (responses, most_in_flight) = tokio::join!(futures::future::join_all(requests), watcher);
    for (code, body) in responses {
        assert_eq!(code, 200, "{body}");
    }
    assert_eq!(most_in_flight, 1);
}

/// Whether the host closed this connection within `limit` (end of stream or
/// a reset; whatever it wrote before closing is read and dropped).
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut sink = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_silent_connections_are_closed_and_cannot_starve_other_clients() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    let locker = Locker::start(
        &root,
        &[
            "--head-timeout",
            "3s",
            "--max-connections-per-client",
            "200",
        ],
    );
    let address = locker.address.trim_start_matches("http://").to_string();

    // All this address may hold: 120 clients that never finish their
    // request head, 20 that send the first byte of the HTTP/2 preface (or
    // all of it) and stop, 20 that keep their connection alive after one
    // request, 40 that send nothing.
    let mut slow = Vec::new();
    for n in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let first: &[u8] = match n {
            0..120 => b"GET /hello-rs/ HTTP/1.1\r\nHost: locker\r\n",
            120..130 => b"P",
            130..140 => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            140..160 => b"GET / HTTP/1.1\r\nHost: locker.localhost\r\n\r\n",
            _ => b"",
        };
        stream.write_all(first).await.unwrap();
        slow.push(stream);
    }
    // One more from the same address is closed at once, long before the
    // head timeout.
    let mut one_too_many = tokio::net::TcpStream::connect(&address).await.unwrap();
    assert!(
        closed_within(&mut one_too_many, Duration::from_millis(1500)).await,
        "a client past its share of connections was kept"
    );

    // Another client is served meanwhile.
    let other = locker.owner_client(
        support::client_builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()),
    );
    let answer = other.get(locker.url("/hello-rs/")).send().await.unwrap();
    assert_eq!(answer.status(), 200);

    // Every slow connection is closed within the bound.
    let started = Instant::now();
    for (n, stream) in slow.iter_mut().enumerate() {
        let left = Duration::from_secs(10).saturating_sub(started.elapsed());
        assert!(
            closed_within(stream, left).await,
            "slow connection {n} was still open {:?} after the others",
            started.elapsed()
        );
    }
    drop(slow);

    // With them gone, the first address is served again.
    let (code, body) = locker.get("/hello-rs/").await;
    assert_eq!((code, body.trim()), (200, "hello from rust at /, to owner"));
}
