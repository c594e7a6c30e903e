//! Services in Rust, JavaScript and Python answer over real HTTP, cold-started
//! on their first request.

mod support;

use std::time::Duration;

use futures::future::join_all;
use support::{Locker, client_builder, guest, guest_variant, install};

#[tokio::test(flavor = "multi_thread")]
async fn hello_services_in_three_languages_answer_their_first_request() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for name in ["hello-rs", "hello-js", "hello-py", "hello-fixed"] {
        install(&root, &guest(name));
    }
    let locker = Locker::start(&root, &[]);
    for (name, language) in [
        ("hello-rs", "rust"),
        ("hello-js", "javascript"),
        ("hello-py", "python"),
    ] {
        let status = locker.status(name).await;
        assert_eq!(
            status["state"], "installed",
            "{name} must not be loaded before its first request"
        );
        let (code, body) = locker.get(&format!("/{name}/some/path?x=1")).await;
        assert_eq!(code, 200, "{name}: {body}");
        // The guest, on its own origin, sees its own path, and who is calling.
        assert_eq!(
            body.trim(),
            format!("hello from {language} at /some/path, to owner"),
            "{name}"
        );
        let status = locker.status(name).await;
        assert_eq!(status["loads"], 1);
        assert_eq!(status["state"], "idle");
    }
    // The Rust guest kit answers a whole body with its length, not chunked.
    let response = locker
        .http
        .get(locker.url("/hello-rs/"))
        .send()
        .await
        .unwrap();
    let length = response.headers()[reqwest::header::CONTENT_LENGTH].clone();
    assert!(response.headers().get("transfer-encoding").is_none());
    let body = response.bytes().await.unwrap();
    assert_eq!(length.to_str().unwrap(), body.len().to_string());
    // The benchmarks' match for native hyper's hello reads nothing of the request.
    assert_eq!(
        locker.get("/hello-fixed/any/path").await,
        (200, "hello from rust\n".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_stream_through_to_the_guest_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    install(&root, &guest("hello-py"));
    let locker = Locker::start(&root, &[]);
    // 3 MiB of varied bytes: more than any single buffer on the way.
    let body: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let response = locker
        .http
        .post(locker.url("/hello-rs/echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().to_vec(), body);

    let (code, echoed) = locker.post("/hello-py/echo", "a body for python").await;
    assert_eq!((code, echoed.as_str()), (200, "a body for python"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_03_components_built_with_the_spin_sdk_answer_beside_02_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for name in ["hello-spin", "unruly-p3", "hello-rs"] {
        install(&root, &guest(name));
    }
    // The owner sees which WASI each service speaks, before and while it runs.
    let listed = support::cli_async(&root, &["list"]).await;
    assert!(listed.success, "{}", listed.stderr);
    let row = |name: &str| {
        listed
            .stdout
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} is not listed: {}", listed.stdout))
            .split_whitespace()
            .nth(3)
            .unwrap()
            .to_string()
    };
    assert_eq!(
        (row("hello-spin"), row("hello-rs")),
        ("0.3".into(), "0.2".into())
    );
    let locker = Locker::start(&root, &[]);

    // The Spin SDK's README hello, unmodified.
    assert_eq!(
        locker.get("/hello-spin/").await,
        (200, "Hello, Spin".into())
    );
    let status = locker.status("hello-spin").await;
    assert_eq!(status["wasi"], "0.3", "{status:#}");
    assert_eq!(status["state"], "idle");
    assert_eq!(locker.status("hello-rs").await["wasi"], "0.2");
    assert_eq!(locker.get("/hello-rs/").await.0, 200);

    // Behind the same gate: a stranger is refused; the guest sees its own
    // origin, who calls, and none of the host's credentials.
    let answer = locker
        .anonymous
        .get(format!("{}/headers", locker.service_origin("unruly-p3")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let answer = locker
        .http
        .get(format!("{}/headers", locker.service_origin("unruly-p3")))
        .header("x-locker-caller", "service:forged")
        .header("cookie", "theme=dark; locker-grant=stolen")
        .send()
        .await
        .unwrap();
    let headers = answer.text().await.unwrap();
    assert!(
        headers.starts_with(&format!(
            "uri: {}/headers\n",
            locker.service_origin("unruly-p3")
        )),
        "{headers}"
    );
    assert!(headers.contains("x-locker-caller: owner\n"), "{headers}");
    assert!(
        !headers.contains("forged") && !headers.contains("stolen"),
        "{headers}"
    );
    assert!(headers.contains("cookie: theme=dark\n"), "{headers}");
    assert!(
        !headers.to_ascii_lowercase().contains("authorization"),
        "{headers}"
    );

    // 8 MiB streamed up in pieces and back as it arrives.
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = body
        .chunks(64 * 1024)
        .map(|piece| Ok(piece.to_vec()))
        .collect();
    let response = locker
        .http
        .post(locker.url("/unruly-p3/echo"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.bytes().await.unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(
        echoed.to_vec() == body,
        "the echo differs from what was sent"
    );

    // Trailers of a chunked request reach the guest.
    let host = locker.service_origin("unruly-p3");
    let answer = locker
        .raw_request(&format!(
            "POST /trailers HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Transfer-Encoding: chunked\r\nTrailer: x-checksum\r\nConnection: close\r\n\r\n\
             5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc123\r\n\r\n",
            host.trim_start_matches("http://"),
            locker.token
        ))
        .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("11 bytes\nx-checksum: abc123\n"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_first_requests_share_one_load() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // The Python service takes longest to load, so the requests surely overlap.
    install(&root, &guest("hello-py"));
    let locker = Locker::start(&root, &[]);
    let requests = (0..50).map(|i| {
        locker.get(if i % 2 == 0 {
            "/hello-py/a"
        } else {
            "/hello-py/b"
        })
    });
    let responses = join_all(requests).await;
    for (code, body) in &responses {
        assert_eq!(*code, 200, "{body}");
        assert!(body.starts_with("hello from python"), "{body}");
    }
    let status = locker.status("hello-py").await;
    assert_eq!(status["loads"], 1, "{status:#}");
    assert_eq!(status["requests"], 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_service_has_its_own_origin_and_old_paths_redirect_there() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    let locker = Locker::start(&root, &[]);
    let client = locker.owner_client(client_builder().redirect(reqwest::redirect::Policy::none()));
    let location = async |url: String| {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 308);
        response.headers()["location"].to_str().unwrap().to_string()
    };
    // The one-origin form of a path is sent to the service's origin.
    let hello = locker.service_origin("hello-rs");
    assert_eq!(
        location(format!("{}/hello-rs/x/y?q=1", locker.origin())).await,
        format!("{hello}/x/y?q=1")
    );
    assert_eq!(
        location(format!("{}/hello-rs?q=1", locker.origin())).await,
        format!("{hello}/?q=1")
    );
    // So is one that arrives at a loopback alias of the locker's origin.
    assert_eq!(
        location(format!("{}/hello-rs/", locker.address)).await,
        format!("{hello}/")
    );
    assert_eq!(
        locker.get("/hello-rs/x").await,
        (200, "hello from rust at /x, to owner\n".into())
    );

    let (code, body) = locker.get("/nobody/here").await;
    assert_eq!(code, 404);
    assert!(body.contains("no service named \\\"nobody\\\""), "{body}");
    // A doubled slash names no service; it is not read as `/hello-rs/x`.
    let answer = client
        .get(format!("{}//hello-rs/x", locker.origin()))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    // The host's paths stay the host's on a service's origin.
    let answer = client
        .get(format!("{hello}/_locker/api/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);

    // A name this locker does not answer for (DNS rebinding) is refused,
    // even carrying the owner's token.
    for host in [
        "evil.example",
        "hello-rs.evil.example",
        "locker.localhost.evil.example",
    ] {
        let answer = client
            .get(format!(
                "http://{host}:{}/_locker/api/services",
                locker.port
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 421, "{host}");
    }
    // The admin API answers on the loopback aliases too.
    let answer = client
        .get(format!("{}/_locker/api/services", locker.address))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_body_over_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let small = guest_variant(dir.path(), "hello-rs", |m| {
        m.add("limits.max_body", "1 KiB");
    });
    install(&root, &small);
    let locker = Locker::start(&root, &[]);
    let (code, body) = locker.post("/hello-rs/echo", vec![b'x'; 4096]).await;
    assert_eq!(code, 413, "{body}");
    assert!(
        body.contains("hello-rs") && body.contains("1.0 KiB"),
        "{body}"
    );
    // A streamed body without a length is cut at the limit too.
    let stream = futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
    let response = locker
        .http
        .post(locker.url("/hello-rs/echo"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    let echoed = match response {
        Ok(response) => response.bytes().await.map(|b| b.len()).unwrap_or(0),
        Err(_) => 0,
    };
    assert!(
        echoed <= 1024,
        "the guest received {echoed} bytes past the limit"
    );
    // And the service still answers.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        locker.post("/hello-rs/echo", "fits").await,
        (200, "fits".to_string())
    );
}
