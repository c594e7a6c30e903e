//! The owner's doors, tried from the attacker's side: no credentials, a
//! foreign site, a sibling service, a token of too small a scope, a revoked
//! or expired token, a guessed password, a forged caller header. And the
//! owner's own way in: the set-up link, login, tickets to each service's
//! origin, logout, tokens for scripts and a CLI elsewhere.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use support::{
    Locker, certificate_for, cli_async, cookie, free_port, guest, guest_variant, install, location,
    snapshot,
};

const PASSWORD: &str = "correct horse battery staple";

/// The owner's browser, reduced to what these tests need: cookies by hand.
struct Browser<'a> {
    locker: &'a Locker,
    http: reqwest::Client,
}

impl<'a> Browser<'a> {
    fn new(locker: &'a Locker) -> Browser<'a> {
        let http = locker
            .trust(support::client_builder().redirect(reqwest::redirect::Policy::none()))
            .build()
            .unwrap();
        Browser { locker, http }
    }

    /// The session cookie's name: `__Host-` over TLS.
    fn session_cookie(&self) -> &'static str {
        match self.locker.scheme {
            "https" => "__Host-locker-session",
            _ => "locker-session",
        }
    }

    /// Chooses the password through a fresh set-up link; returns the session cookie.
    async fn set_up(&self) -> String {
        let out = cli_async(&self.locker.root, &["owner", "reset"]).await;
        assert!(out.success, "{}", out.stderr);
        let link = out.stdout.trim();
        assert!(
            link.starts_with(&format!("{}/_locker/setup?code=", self.locker.origin())),
            "{link}"
        );
        let page = self.http.get(link).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("Choose your password"));
        let code = link.split("code=").nth(1).unwrap();
        let response = self
            .http
            .post(format!("{}/_locker/setup", self.locker.origin()))
            .header("origin", self.locker.origin())
            .form(&[
                ("code", code),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        // The link works once.
        let again = self.http.get(link).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::FORBIDDEN);
        cookie(&response, self.session_cookie())
    }

    async fn log_in(&self, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/_locker/login", self.locker.origin()))
            .header("origin", self.locker.origin())
            .form(&[("password", password), ("next", "/")])
            .send()
            .await
            .unwrap()
    }

    /// Follows the ticket round into `service` as a browser would; returns
    /// the grant cookie of its origin.
    async fn enter(&self, session: &str, service: &str) -> String {
        let origin = self.locker.service_origin(service);
        let first = self
            .http
            .get(format!("{origin}/page?x=1"))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(first.status(), StatusCode::SEE_OTHER);
        let to_ticket = location(&first);
        assert!(to_ticket.starts_with(&format!("{}/_locker/ticket?", self.locker.origin())));
        let ticket = self
            .http
            .get(&to_ticket)
            .header("cookie", format!("locker-session={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(ticket.status(), StatusCode::SEE_OTHER);
        let enter = location(&ticket);
        assert!(
            enter.starts_with(&format!("{origin}/_locker/enter?ticket=")),
            "{enter}"
        );
        let granted = self.http.get(&enter).send().await.unwrap();
        assert_eq!(granted.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&granted), "/page?x=1");
        // A ticket is good once.
        let replayed = self.http.get(&enter).send().await.unwrap();
        assert_eq!(replayed.status(), StatusCode::FORBIDDEN);
        cookie(&granted, "locker-grant")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_credentials_only_public_routes_answer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(
        &root,
        &guest_variant(dir.path(), "hello-rs", |m| {
            m.add("public", vec!["/hook/*"]);
        }),
    );
    let locker = Locker::start(&root, &[]);
    let anyone = &locker.anonymous;
    let hello = locker.service_origin("hello-rs");

    let answer = anyone
        .get(locker.url("/_locker/api/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let answer = anyone
        .get(format!("{}/_locker/api/services", locker.address))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let answer = anyone.get(locker.origin() + "/").send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), "/_locker/login?next=%2F");
    // A script gets 401; a browser is sent round the ticket door (and from
    // there to the login).
    let answer = anyone.get(format!("{hello}/private")).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let answer = anyone
        .get(format!("{hello}/private"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let ticket_door = location(&answer);
    assert_eq!(
        ticket_door,
        format!(
            "{}/_locker/ticket?service=hello-rs&path=%2Fprivate",
            locker.origin()
        )
    );
    let answer = anyone.get(&ticket_door).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert!(location(&answer).starts_with("/_locker/login?next="));
    // Whether a service is installed is not for a stranger to find out.
    let answer = anyone
        .get(format!("{}/private", locker.service_origin("no-such-app")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    // A host whose port is not a number would end up in redirects.
    for host in [
        "locker.localhost:@evil.example",
        "hello-rs.locker.localhost:1@evil.example",
    ] {
        let head = locker
            .raw_request(&format!(
                "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert!(head.starts_with("HTTP/1.1 421"), "{host}: {head}");
    }
    // Nobody can make a token or a set-up link without being the owner.
    let answer = anyone
        .post(locker.url("/_locker/api/tokens"))
        .json(&serde_json::json!({ "scope": "admin" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let answer = anyone
        .post(locker.url("/_locker/api/owner/setup-link"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    // A declared public route answers anyone, who is `anonymous` whatever
    // caller header and credentials they send; the guest sees neither.
    let answer = anyone
        .get(format!("{hello}/hook/github"))
        .header("x-locker-caller", "owner")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        "hello from rust at /hook/github, to anonymous\n"
    );
    let answer = locker
        .http
        .get(format!("{hello}/headers"))
        .header("x-locker-caller", "anonymous")
        // Between hosts of a cluster, the chain of a call; never from outside.
        .header("x-locker-call-chain", "stolen")
        .header(
            "cookie",
            "theme=dark; locker-grant=stolen; locker-session=stolen",
        )
        .send()
        .await
        .unwrap();
    let headers = answer.text().await.unwrap();
    assert!(headers.contains("x-locker-caller: owner\n"), "{headers}");
    assert_eq!(headers.matches("x-locker-caller").count(), 1, "{headers}");
    assert!(headers.contains("cookie: theme=dark\n"), "{headers}");
    assert!(!headers.contains("stolen"), "{headers}");
    assert!(
        !headers.to_ascii_lowercase().contains("authorization"),
        "{headers}"
    );
    assert!(!headers.contains(&locker.token), "{headers}");

    // Public routes are open, but not to a flood from one client.
    let mut codes = Vec::new();
    for _ in 0..300 {
        let answer = anyone
            .get(format!("{hello}/hook/flood"))
            .send()
            .await
            .unwrap();
        codes.push(answer.status().as_u16());
    }
    assert!(codes.contains(&200), "{codes:?}");
    assert!(
        codes.contains(&429),
        "300 requests in a row were all let through"
    );

    // A service's answers stay on its origin: no other page may frame
    // them or load them as a resource.
    let answer = locker.http.get(format!("{hello}/x")).send().await.unwrap();
    let policies: Vec<_> = answer
        .headers()
        .get_all("content-security-policy")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        policies.contains(&"frame-ancestors 'self'".to_string()),
        "{policies:?}"
    );
    assert_eq!(
        answer.headers()["cross-origin-resource-policy"],
        "same-origin"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_other_origin_can_act_as_the_owner_through_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    let locker = Locker::start(&root, &[]);
    let browser = Browser::new(&locker);
    let session = browser.set_up().await;
    let session_cookie = format!("locker-session={session}");
    let services_before = snapshot(&root.join("packages"));

    // The install a page on any site could send: a multipart form, no preflight.
    let install_from = async |origin: Option<&str>, extra: Option<(&str, &str)>| {
        let form = reqwest::multipart::Form::new()
            .text(
                "manifest",
                std::fs::read_to_string(guest("hello-fixed").join("locker.toml")).unwrap(),
            )
            .part(
                "component",
                reqwest::multipart::Part::bytes(
                    std::fs::read(guest("hello-fixed").join("hello_fixed_rs.wasm")).unwrap(),
                ),
            );
        let mut request = browser
            .http
            .post(locker.url("/_locker/api/services"))
            .header("cookie", &session_cookie)
            .multipart(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    };
    let sibling = locker.service_origin("hello-rs");
    for (origin, extra) in [
        (Some("http://evil.example"), None),
        (Some("http://evil.example"), Some(("x-locker-request", "1"))),
        (Some(sibling.as_str()), Some(("x-locker-request", "1"))),
        (None, Some(("sec-fetch-site", "same-site"))),
        // From the locker's own origin, but a form could have sent it.
        (Some(locker.origin().as_str()), None),
    ] {
        let (status, body) = install_from(origin, extra).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{origin:?} {extra:?}: {body}"
        );
    }
    assert_eq!(
        snapshot(&root.join("packages")),
        services_before,
        "the root changed"
    );
    let (code, list) = locker.get("/_locker/api/services").await;
    assert_eq!(code, 200);
    assert!(!list.contains("hello-fixed"), "{list}");
    // The owner's own page, sending the header, can.
    let (status, body) = install_from(
        Some(locker.origin().as_str()),
        Some(("x-locker-request", "1")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // The session cookie means nothing at a service's origin; a grant is
    // good only at the service it was made for.
    let answer = browser
        .http
        .get(format!("{sibling}/x"))
        .header("cookie", &session_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let grant = browser.enter(&session, "hello-rs").await;
    let grant_cookie = format!("locker-grant={grant}");
    let answer = browser
        .http
        .get(format!("{sibling}/x"))
        .header("cookie", &grant_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.text().await.unwrap(),
        "hello from rust at /x, to owner\n"
    );
    let fixed = locker.service_origin("hello-fixed");
    let answer = browser
        .http
        .get(format!("{fixed}/x"))
        .header("cookie", &grant_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::UNAUTHORIZED,
        "a grant for hello-rs opened hello-fixed"
    );
    // A grant is no way into the admin API either.
    let answer = browser
        .http
        .get(locker.url("/_locker/api/services"))
        .header("cookie", format!("locker-session={grant}"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    // At a service's origin a change comes only from that origin.
    let echo = async |origin: &str| {
        browser
            .http
            .post(format!("{sibling}/echo"))
            .header("cookie", &grant_cookie)
            .header("origin", origin)
            .body("change")
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(echo(&fixed).await, StatusCode::FORBIDDEN);
    assert_eq!(echo("http://evil.example").await, StatusCode::FORBIDDEN);
    assert_eq!(echo(&sibling).await, StatusCode::OK);

    // Logging out ends the session and every grant it made.
    let out = browser
        .http
        .post(format!("{}/_locker/logout", locker.origin()))
        .header("cookie", &session_cookie)
        .header("origin", locker.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let answer = browser
        .http
        .get(format!("{sibling}/x"))
        .header("cookie", &grant_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let answer = browser
        .http
        .get(locker.url("/_locker/api/services"))
        .header("cookie", &session_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_are_rate_limited_and_sessions_can_be_listed_and_ended() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let locker = Locker::start(&root, &[]);
    let browser = Browser::new(&locker);
    browser.set_up().await;

    let good = browser.log_in(PASSWORD).await;
    assert_eq!(good.status(), StatusCode::SEE_OTHER);
    let session = cookie(&good, "locker-session");
    // A login from another site's form is refused.
    let forged = browser
        .http
        .post(format!("{}/_locker/login", locker.origin()))
        .header("origin", "http://evil.example")
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(browser.log_in("guess").await.status());
    }
    // Past the limit even the right password waits.
    let limited = browser.log_in(PASSWORD).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
    assert!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::UNAUTHORIZED)
            .count()
            >= 3,
        "{statuses:?}"
    );

    // Guesses spread over many addresses meet the limit of all logins.
    let mut overall_limited = false;
    'addresses: for last in 10..20u8 {
        let guesser = support::client_builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .build()
            .unwrap();
        for _ in 0..5 {
            let answer = guesser
                .post(format!("{}/_locker/login", locker.origin()))
                .header("origin", locker.origin())
                .form(&[("password", "guess")])
                .send()
                .await
                .unwrap();
            if answer.status() == StatusCode::TOO_MANY_REQUESTS {
                overall_limited = true;
                break 'addresses;
            }
        }
    }
    assert!(
        overall_limited,
        "50 guesses from ten addresses were all tried"
    );

    let out = cli_async(&root, &["owner", "sessions", "--json"]).await;
    assert!(out.success, "{}", out.stderr);
    let sessions: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(sessions.len(), 2, "the set-up's session and the login's");
    let page = browser
        .http
        .get(locker.origin() + "/")
        .header("cookie", format!("locker-session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    for listed in &sessions {
        let id = listed["id"].as_str().unwrap();
        let out = cli_async(&root, &["owner", "logout", id]).await;
        assert!(out.success, "{}", out.stderr);
    }
    let page = browser
        .http
        .get(locker.origin() + "/")
        .header("cookie", format!("locker-session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        StatusCode::SEE_OTHER,
        "an ended session still opened the dashboard"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_open_what_their_scope_names_until_revoked_or_expired() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    install(&root, &guest("hello-fixed"));
    let locker = Locker::start(&root, &[]);
    let token = async |args: &[&str]| {
        let mut all = vec!["token", "create"];
        all.extend_from_slice(args);
        let out = cli_async(&root, &all).await;
        assert!(out.success, "{}", out.stderr);
        out.stdout.trim().to_string()
    };
    let with = |token: &str| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        support::client_builder()
            .default_headers(headers)
            .build()
            .unwrap()
    };
    let status = async |client: &reqwest::Client, method: reqwest::Method, url: String| {
        client.request(method, url).send().await.unwrap().status()
    };
    use reqwest::Method;

    let read = with(&token(&["--scope", "read", "--label", "monitoring"]).await);
    assert_eq!(
        status(&read, Method::GET, locker.url("/_locker/api/services")).await,
        200
    );
    assert_eq!(
        status(
            &read,
            Method::POST,
            locker.url("/_locker/api/services/hello-rs/stop")
        )
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&read, Method::GET, locker.url("/hello-rs/")).await,
        StatusCode::FORBIDDEN
    );
    // Nor install: the package is refused before it is read.
    let package = reqwest::multipart::Form::new()
        .text(
            "manifest",
            std::fs::read_to_string(guest("notes").join("locker.toml")).unwrap(),
        )
        .part(
            "component",
            reqwest::multipart::Part::bytes(
                std::fs::read(guest("notes").join("notes_rs.wasm")).unwrap(),
            ),
        );
    let install = read
        .post(locker.url("/_locker/api/services"))
        .multipart(package)
        .send()
        .await
        .unwrap();
    assert_eq!(install.status(), StatusCode::FORBIDDEN);
    assert!(!root.join("packages/notes").exists());

    let hello_only = with(&token(&["--scope", "service:hello-rs"]).await);
    assert_eq!(
        status(&hello_only, Method::GET, locker.url("/hello-rs/")).await,
        200
    );
    assert_eq!(
        status(&hello_only, Method::GET, locker.url("/hello-fixed/")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(
            &hello_only,
            Method::GET,
            locker.url("/_locker/api/services")
        )
        .await,
        StatusCode::FORBIDDEN
    );

    let short = with(&token(&["--scope", "admin", "--expires", "1s"]).await);
    assert_eq!(
        status(&short, Method::GET, locker.url("/_locker/api/health")).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status(&short, Method::GET, locker.url("/_locker/api/health")).await,
        StatusCode::UNAUTHORIZED
    );

    // Revoked: refused at once, everywhere.
    let out = cli_async(&root, &["token", "list", "--json"]).await;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        !out.stdout.contains("locker_"),
        "a listing shows a token: {}",
        out.stdout
    );
    let monitoring = listed.iter().find(|t| t["label"] == "monitoring").unwrap();
    assert_eq!(monitoring["scope"], "read");
    assert!(monitoring["last_used"].is_string());
    assert!(listed.iter().any(|t| t["expired"] == true));
    let out = cli_async(
        &root,
        &["token", "revoke", monitoring["id"].as_str().unwrap()],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(
        status(&read, Method::GET, locker.url("/_locker/api/services")).await,
        StatusCode::UNAUTHORIZED
    );
    let garbage = with("locker_0000_0000");
    assert_eq!(
        status(&garbage, Method::GET, locker.url("/hello-rs/")).await,
        StatusCode::UNAUTHORIZED
    );

    // A CLI on another machine: --url and a token; without one it is refused.
    let admin = token(&["--scope", "admin"]).await;
    let elsewhere = dir.path().join("elsewhere");
    let out = cli_async(
        &elsewhere,
        &["list", "--url", &locker.origin(), "--token", &admin],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("hello-fixed"), "{}", out.stdout);
    let out = cli_async(
        &elsewhere,
        &[
            "logs",
            "hello-rs",
            "--url",
            &locker.origin(),
            "--token",
            &admin,
        ],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("loaded"), "{}", out.stdout);
    let out = cli_async(
        &elsewhere,
        &[
            "stop",
            "hello-fixed",
            "--url",
            &locker.origin(),
            "--token",
            "locker_0_0",
        ],
    )
    .await;
    assert!(!out.success);
    assert!(out.stderr.contains("not valid"), "{}", out.stderr);
    assert_eq!(locker.status("hello-fixed").await["state"], "installed");
}

#[tokio::test(flavor = "multi_thread")]
async fn in_chromium_no_app_can_read_or_change_another_or_act_as_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    install(&root, &guest("notes"));
    install(&root, &guest("config-reader"));
    let locker = Locker::start(&root, &[]);
    assert_eq!(
        locker
            .put("/notes/file?path=secret.txt", "B's secret")
            .await
            .0,
        201
    );
    let out = cli_async(&root, &["owner", "reset"]).await;
    assert!(out.success, "{}", out.stderr);
    let screenshots = support::workspace().join("target/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let args = serde_json::json!({
        "setup_link": out.stdout.trim(),
        "locker": locker.origin(),
        "a": locker.service_origin("hello-rs"),
        "b": locker.service_origin("notes"),
        "unconfigured": locker.service_origin("config-reader"),
        "password": PASSWORD,
        "manifest": std::fs::read_to_string(guest("hello-fixed").join("locker.toml")).unwrap(),
        "component": guest("hello-fixed").join("hello_fixed_rs.wasm"),
        "screenshots": screenshots,
    });
    let seen = support::browser_script("owner.py", &args).await;

    // The owner's own way: set-up, dashboard, a wrong then a right
    // password, app A, app B.
    let dashboard = seen["dashboard"].as_str().unwrap();
    assert!(
        dashboard.contains("hello-rs")
            && dashboard.contains("notes")
            && dashboard.contains("needs its setting server"),
        "{dashboard}"
    );
    assert_eq!(seen["wrong_password"], "Wrong password.");
    assert_eq!(seen["a_page"], "hello from rust at /, to owner\n");
    assert_eq!(seen["b_page"], "B's secret");
    assert_eq!(seen["b_own_write"], 201);
    let unconfigured = seen["unconfigured"].as_str().unwrap();
    assert!(
        unconfigured.contains("config-reader is not set up yet")
            && unconfigured.contains("It needs its setting server")
            && unconfigured.contains("locker config set config-reader server VALUE"),
        "{unconfigured}"
    );

    // What A's script got back: nothing of B's or the locker's.
    let attack = &seen["attack"];
    // B's answers are not even delivered to A's page as opaque ones: they
    // are B's alone (`Cross-Origin-Resource-Policy`).
    for read in [
        "read_b",
        "read_b_no_cors",
        "read_admin",
        "write_b_put",
        "make_token",
    ] {
        assert!(
            attack[read]["error"]
                .as_str()
                .is_some_and(|e| e.contains("Failed to fetch")),
            "{read}: {}",
            attack[read]
        );
    }
    for opaque in ["write_b", "stop_b", "install"] {
        assert_eq!(
            attack[opaque]["type"], "opaque",
            "{opaque}: {}",
            attack[opaque]
        );
        assert_eq!(attack[opaque]["body"], "", "{opaque}: {}", attack[opaque]);
    }
    // A cannot frame B (to lure the owner's clicks there), nor the locker.
    assert_eq!(seen["frames"]["b"], "blocked", "{}", seen["frames"]);
    assert_eq!(seen["frames"]["locker"], "blocked", "{}", seen["frames"]);
    // And nothing changed at B or at the locker.
    let files = root.join("services/notes");
    assert!(!files.join("pwned.txt").exists(), "A's script wrote to B");
    assert!(
        !files.join("pwned-too.txt").exists(),
        "A's script wrote to B"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("own.txt")).unwrap(),
        "mine"
    );
    assert_ne!(locker.status("notes").await["state"], "stopped");
    let (_, services) = locker.get("/_locker/api/services").await;
    assert!(!services.contains("hello-fixed"), "{services}");
    let (_, tokens) = locker.get("/_locker/api/tokens").await;
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&tokens)
            .unwrap()
            .len(),
        1,
        "only the CLI's token: {tokens}"
    );

    // Logging out closed both apps: each sends the browser to the login.
    for after in ["a_after_logout", "b_after_logout"] {
        let url = seen[after].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/_locker/login", locker.origin())),
            "{after}: {url}"
        );
    }
}

/// A certificate for the locker and every service (a wildcard).
fn wildcard_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    certificate_for(dir, &["locker.localhost", "*.locker.localhost"])
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_every_origin_is_https_and_the_cookies_are_host_only_and_secure() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    let (chain, key) = wildcard_certificate(dir.path());
    let tls = [
        "--tls-cert",
        chain.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let locker = Locker::start(&root, &tls);
    assert_eq!(
        locker.origin(),
        format!("https://locker.localhost:{}", locker.port)
    );

    // A script with a token, and the CLI on this machine (which trusts the
    // certificate the host serves), over HTTPS.
    assert_eq!(
        locker.get("/hello-rs/x").await,
        (200, "hello from rust at /x, to owner\n".into())
    );
    let out = cli_async(&root, &["list"]).await;
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("hello-rs"), "{}", out.stdout);
    // Plain HTTP on the same port is not answered.
    let plain = support::client_builder().build().unwrap();
    assert!(
        plain
            .get(format!("http://locker.localhost:{}/", locker.port))
            .send()
            .await
            .is_err()
    );

    // The owner's cookies: `__Host-`, Secure, on their own origin.
    Browser::new(&locker).set_up().await;
    // A browser sent to a service goes round the ticket door on https.
    let answer = locker
        .anonymous
        .get(format!("{}/page", locker.service_origin("hello-rs")))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert!(
        location(&answer).starts_with(&format!("{}/_locker/ticket?", locker.origin())),
        "{}",
        location(&answer)
    );
    locker.stop();

    // A key that does not go with the certificate is named at start.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, other_key) = wildcard_certificate(&other);
    let out = cli_async(
        &root,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            chain.to_str().unwrap(),
            "--tls-key",
            other_key.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("does not go with the certificate"),
        "{}",
        out.stderr
    );
}

/// Debian's pebble (Let's Encrypt's test ACME server) and its mock DNS,
/// which answers 127.0.0.1 for every name; pebble checks `tls-alpn-01`
/// challenges on `tls_port`. Killed when dropped.
struct Pebble {
    directory: String,
    management: String,
    /// The CA of pebble's own HTTPS (not of the certificates it issues).
    server_ca: std::path::PathBuf,
    children: Vec<std::process::Child>,
}

impl Pebble {
    fn start(dir: &std::path::Path, tls_port: u16) -> Pebble {
        let (chain, key) = certificate_for(dir, &["localhost", "127.0.0.1"]);
        let (listen, management, dns) = (free_port(), free_port(), free_port());
        let config = dir.join("pebble.json");
        std::fs::write(
            &config,
            serde_json::json!({ "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": chain, "privateKey": key,
                "httpPort": free_port(), "tlsPort": tls_port,
                "ocspResponderURL": "", "externalAccountBindingRequired": false,
            }})
            .to_string(),
        )
        .unwrap();
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let dns_server = std::process::Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-http01",
                "",
                "-https01",
                "",
            ])
            .args(["-tlsalpn01", "", "-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{}", free_port())])
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .expect("pebble-challtestsrv (Debian's pebble; scripts/setup-test-tools installs it)");
        let pebble = std::process::Command::new("pebble")
            .args(["-config", config.to_str().unwrap(), "-strict=false"])
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("pebble (Debian's; scripts/setup-test-tools installs it)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
            assert!(started.elapsed().as_secs() < 20, "pebble did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management: format!("https://127.0.0.1:{management}"),
            server_ca: dir.join("ca.pem"),
            children: vec![dns_server, pebble],
        }
    }

    /// The root that signs the certificates pebble issues (made at its start).
    async fn issuing_root(&self) -> String {
        let client = support::trusting(reqwest::Client::builder(), &self.server_ca)
            .build()
            .unwrap();
        let response = client
            .get(format!("{}/roots/0", self.management))
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn acme_certificates_from_pebble_name_the_locker_and_every_service() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    let port = free_port();
    let pebble = Pebble::start(dir.path(), port);
    let listen = format!("127.0.0.1:{port}");
    let locker = Locker::start(
        &root,
        &[
            "--listen",
            &listen,
            "--acme-directory",
            &pebble.directory,
            "--acme-server-root",
            pebble.server_ca.to_str().unwrap(),
        ],
    );
    assert_eq!(locker.scheme, "https");
    let issuing_root = dir.path().join("issuing-root.pem");
    std::fs::write(&issuing_root, pebble.issuing_root().await).unwrap();
    let client = locker.owner_client(support::trusting(support::client_builder(), &issuing_root));
    let answer = async |service: &str| {
        let url = format!("{}/x", locker.service_origin(service));
        match client.get(url).send().await {
            Ok(response) => Ok(response.text().await.unwrap()),
            Err(error) => Err(format!("{error:?}")),
        }
    };
    let hello = support::eventually(
        "a certificate from pebble",
        Duration::from_secs(60),
        async || answer("hello-rs").await,
    )
    .await;
    assert_eq!(hello, "hello from rust at /x, to owner\n");

    // A service installed later gets its name on a new certificate.
    assert!(
        answer("notes").await.is_err(),
        "notes has no certificate yet"
    );
    let out = cli_async(&root, &["install", guest("notes").to_str().unwrap()]).await;
    assert!(out.success, "{}", out.stderr);
    support::eventually(
        "a certificate naming notes",
        Duration::from_secs(60),
        async || answer("notes").await,
    )
    .await;
    let names = std::fs::read_to_string(root.join("tls/names.json")).unwrap();
    assert!(names.contains("\"notes.locker.localhost\""), "{names}");
    // One removed is left off the next certificate.
    let out = cli_async(&root, &["uninstall", "hello-rs"]).await;
    assert!(out.success, "{}", out.stderr);
    support::eventually(
        "a certificate without hello-rs",
        Duration::from_secs(60),
        async || {
            let names = std::fs::read_to_string(root.join("tls/names.json")).unwrap_or_default();
            if names.contains("\"notes.locker.localhost\"")
                && !names.contains("hello-rs.locker.localhost")
            {
                Ok(())
            } else {
                Err(names)
            }
        },
    )
    .await;
    let key = std::fs::metadata(root.join("tls/key.pem")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o077,
        0
    );
    locker.stop();

    // After a restart the stored certificate is served at once.
    let locker = Locker::start(
        &root,
        &[
            "--listen",
            &listen,
            "--acme-directory",
            &pebble.directory,
            "--acme-server-root",
            pebble.server_ca.to_str().unwrap(),
        ],
    );
    let client = locker.owner_client(support::trusting(support::client_builder(), &issuing_root));
    let response = client
        .get(format!("{}/", locker.service_origin("notes")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "notes answers its own 404 for /");
}

/// The host's metrics, parsed by prometheus-client's OpenMetrics parser
/// (Python, the reference parser): `(name, labels, value)` per sample.
async fn parse_metrics(text: &str) -> Vec<(String, serde_json::Value, f64)> {
    use tokio::io::AsyncWriteExt;
    let mut parser = tokio::process::Command::new("python3")
        .arg(support::workspace().join("tests/browser/metrics.py"))
        .env("PYTHONPATH", support::workspace().join(".tools/browser"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = parser.stdin.take().unwrap();
    input.write_all(text.as_bytes()).await.unwrap();
    drop(input);
    let out = parser.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "the metrics do not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, serde_json::Value, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    samples
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(
    samples: &[(String, serde_json::Value, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[k] == *v))
        .map_or(0.0, |(_, _, value)| *value)
}

/// `/_locker/metrics` parses with the reference parser, its counters move
/// as requests, events and jobs happen, and it opens only to a token of
/// scope `metrics`, `read` or `admin`.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_events_and_jobs_and_open_only_to_their_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    install(&root, &guest("subscriber"));
    install(&root, &guest("ticker"));
    let locker = Locker::start(&root, &["--event-attempts", "2", "--event-backoff", "20ms"]);
    let token = |scope: &'static str| {
        let root = root.clone();
        async move {
            let out = cli_async(&root, &["token", "create", "--scope", scope, "--json"]).await;
            assert!(out.success, "{}", out.stderr);
            let made: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            made["token"].as_str().unwrap().to_string()
        }
    };
    let (metrics, read, service) = (
        token("metrics").await,
        token("read").await,
        token("service:hello-rs").await,
    );
    let client = support::client_builder().build().unwrap();
    let fetch = async |token: Option<&str>| {
        let mut request = client.get(locker.url("/_locker/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    };

    // The wrong ways in.
    assert_eq!(fetch(None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(fetch(Some("not-a-token")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(fetch(Some(&service)).await.0, StatusCode::FORBIDDEN);
    // A metrics token opens nothing else.
    let admin = client
        .get(locker.url("/_locker/api/services"))
        .bearer_auth(&metrics)
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::FORBIDDEN);
    let app = client
        .get(format!("{}/", locker.service_origin("hello-rs")))
        .bearer_auth(&metrics)
        .send()
        .await
        .unwrap();
    assert_eq!(app.status(), StatusCode::FORBIDDEN);

    let (status, text) = fetch(Some(&metrics)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let before = parse_metrics(&text).await;
    assert_eq!(fetch(Some(&read)).await.0, StatusCode::OK);

    // Requests (one a 404 of the guest's), a publish taken by a subscriber,
    // one it fails into a dead letter, and a job run now.
    for path in ["/", "/", "/nothing-here"] {
        let response = client
            .get(format!("{}{path}", locker.service_origin("hello-rs")))
            .bearer_auth(&service)
            .send()
            .await
            .unwrap();
        assert!(response.status().as_u16() < 500);
    }
    assert_eq!(
        locker
            .post("/_locker/api/publish/note/created", r#"{"n": 1}"#)
            .await
            .0,
        201
    );
    assert_eq!(
        locker
            .post(
                "/_locker/api/publish/note/created",
                r#"{"always_fail": true}"#
            )
            .await
            .0,
        201
    );
    let (status, ran) = locker.post("/_locker/api/jobs/ticker/tick/run", "").await;
    assert_eq!(status, 200, "{ran}");

    let after = support::eventually(
        "the metrics to count the dead letter",
        Duration::from_secs(30),
        async || {
            let samples = parse_metrics(&fetch(Some(&metrics)).await.1).await;
            let dead = sample(
                &samples,
                "locker_deliveries_total",
                &[("subscriber", "subscriber"), ("outcome", "dead_letter")],
            );
            (dead >= 1.0).then_some(samples)
        },
    )
    .await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let hello = [("service", "hello-rs")];
    assert_eq!(
        moved(
            "locker_requests_total",
            &[("service", "hello-rs"), ("status", "2xx")]
        ) + moved(
            "locker_requests_total",
            &[("service", "hello-rs"), ("status", "4xx")]
        ),
        3.0
    );
    assert_eq!(moved("locker_request_seconds_count", &hello), 3.0);
    assert!(sample(&after, "locker_loads_total", &hello) >= 1.0);
    assert!(sample(&after, "locker_load_seconds_count", &hello) >= 1.0);
    assert_eq!(
        moved("locker_events_published_total", &[("source", "owner")]),
        2.0
    );
    assert!(
        moved(
            "locker_deliveries_total",
            &[("subscriber", "subscriber"), ("outcome", "delivered")]
        ) >= 1.0
    );
    assert!(
        moved(
            "locker_deliveries_total",
            &[("subscriber", "subscriber"), ("outcome", "retried")]
        ) >= 1.0
    );
    assert!(
        moved(
            "locker_job_runs_total",
            &[("service", "ticker"), ("job", "tick"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(
        sample(
            &after,
            "locker_job_lateness_seconds_count",
            &[("service", "ticker")]
        ) >= 1.0
    );
    assert!(
        after
            .iter()
            .any(|(name, labels, _)| name == "locker_instances_in_use"
                && labels["service"] == "hello-rs"),
        "{after:?}"
    );
    locker.stop();

    // A host started without metrics has none to show.
    let locker = Locker::start(&root, &["--metrics", "false"]);
    let (status, text) = {
        let response = client
            .get(locker.url("/_locker/metrics"))
            .bearer_auth(&metrics)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("--metrics false"), "{text}");
}

/// The owner runs the locker from the dashboard in Chromium: installs by
/// upload and from a registry, opens a service, watches an event arrive
/// live, replays a dead letter, sets a secret, runs a job, makes and
/// revokes a token, signs in with a passkey, and uninstalls. The script
/// asserts on each page; this checks the locker's side of each step.
#[tokio::test(flavor = "multi_thread")]
async fn in_chromium_the_owner_runs_the_locker_from_the_dashboard() {
    use locker_registry::keys::PublisherKey;
    use locker_registry::local::LocalRegistry;

    let registry = LocalRegistry::start()
        .await
        .expect("Debian's docker-registry (scripts/setup-test-tools installs it)");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("alice.key");
    let publisher = PublisherKey::generate().unwrap();
    publisher.save(&key).unwrap();
    let fingerprint = publisher.public().fingerprint();
    let namespace = format!("{}/alice", registry.address);
    support::publish_to(&namespace, &key, &guest("notes")).await;
    let next = support::guest_variant(dir.path(), "notes", |manifest| {
        manifest.set("version", "0.2.0");
    });

    let root = dir.path().join("root");
    for name in ["subscriber", "ticker", "config-reader"] {
        install(&root, &guest(name));
    }
    let locker = Locker::start(&root, &["--event-attempts", "2", "--event-backoff", "20ms"]);
    let out = cli_async(&root, &["owner", "reset"]).await;
    assert!(out.success, "{}", out.stderr);
    let screenshots = support::workspace().join("target/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let hello = guest("hello-rs");
    let secret = "s3cr3t-token-value-0451";
    let args = serde_json::json!({
        "setup_link": out.stdout.trim(),
        "locker": locker.origin(),
        "password": PASSWORD,
        "admin_token": std::fs::read_to_string(root.join("cli.token")).unwrap().trim(),
        "registry": namespace,
        "hello_manifest": hello.join("locker.toml"),
        "hello_component": hello.join("hello_rs.wasm"),
        "subscriber_origin": locker.service_origin("subscriber"),
        "secret": secret,
        "backup_passphrase": "a passphrase for the backup",
        // The publisher's next release, published while the owner looks.
        "publish_next": [
            support::locker_bin(), "publish", next, "--to", namespace, "--key", key,
        ],
        "screenshots": screenshots,
    });
    let seen = support::browser_script("dashboard.py", &args).await;
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen:#}");

    // The list, and the keyboard's way in.
    let services = seen["services"].as_str().unwrap();
    assert!(
        services.contains("ticker") && services.contains("connector"),
        "{services}"
    );
    assert_eq!(seen["first_tab"], "Skip to content");
    assert_eq!(seen["after_skip"], "view");
    // A broken manifest: the reason, named.
    let bad = seen["bad_upload"].as_str().unwrap();
    assert!(bad.contains("version") || bad.contains("name"), "{bad}");
    // Opened on its own origin, as the owner.
    assert_eq!(seen["opened"]["body"], "hello from rust at /, to owner\n");
    assert!(
        seen["opened"]["url"]
            .as_str()
            .unwrap()
            .starts_with(&locker.service_origin("hello-rs")),
        "{}",
        seen["opened"]
    );
    // The registry's package, with its publisher's key, pinned on install.
    assert_eq!(seen["offer_fingerprint"], fingerprint.as_str());
    let (_, trust) = locker.get("/_locker/api/trust").await;
    assert!(trust.contains(&fingerprint), "{trust}");
    // Upgraded to the next release from the page, then rolled back.
    assert!(
        seen["upgrade_offer"]
            .as_str()
            .unwrap()
            .contains(&fingerprint),
        "{}",
        seen["upgrade_offer"]
    );
    assert!(seen["after_rollback"].as_str().unwrap().contains("0.1.0"));
    assert_eq!(locker.status("notes").await["version"], "0.1.0");
    assert_eq!(
        locker.status("notes").await["origin"]["publisher"],
        fingerprint.as_str()
    );
    // The event seen live, the filter applied, the dead letter replayed
    // and delivered once the subscriber was fixed.
    assert!(
        seen["live_event"]
            .as_str()
            .unwrap()
            .contains("from outside")
    );
    assert_eq!(seen["filtered_topics"], serde_json::json!(["photo/added"]));
    assert_eq!(seen["fix_status"], 200);
    support::eventually(
        "the replayed event to be delivered",
        Duration::from_secs(30),
        async || {
            let (_, dead) = locker.get("/_locker/api/dead-letters").await;
            let (_, stats) = locker.get("/_locker/api/events/stats").await;
            let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
            (dead == "[]" && stats["pending"] == 0).then_some(())
        },
    )
    .await;
    // The secret: kept sealed, never in the page.
    assert_eq!(seen["secret_in_page"], false);
    let (_, config) = locker
        .get("/_locker/api/services/config-reader/config")
        .await;
    assert!(!config.contains(secret), "{config}");
    assert!(config.contains("sync.example.org"), "{config}");
    let sealed = std::fs::read(root.join("locker.db")).unwrap();
    assert!(
        !sealed.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret is stored in the clear"
    );
    // The job ran, and its run is on record.
    assert!(
        seen["job_result"].as_str().unwrap().starts_with("ok in"),
        "{}",
        seen["job_result"]
    );
    let (_, jobs) = locker.get("/_locker/api/jobs?service=ticker").await;
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    assert_eq!(jobs[0]["last_run"]["result"], "ok", "{jobs:#}");
    // The token read the metrics (parsed by the reference parser) and
    // nothing else, until it was revoked.
    assert_eq!(seen["metrics_with_token"], 200);
    assert_eq!(seen["admin_with_metrics_token"], 403);
    assert_eq!(seen["metrics_after_revoke"], 401);
    assert!(
        seen["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s[0] == "locker_requests_total" && s[1]["service"] == "hello-rs"),
        "{}",
        seen["metrics"]
    );
    // Signed in with the passkey, which was then removed.
    assert_eq!(seen["signed_in_with_passkey"], true);
    // The backup made from the page, downloaded, restores with its secret.
    assert!(
        seen["backup_last"].as_str().unwrap().contains("held still"),
        "{}",
        seen["backup_last"]
    );
    let passphrase = dir.path().join("passphrase");
    std::fs::write(&passphrase, "a passphrase for the backup\n").unwrap();
    let restored = dir.path().join("restored");
    let out = cli_async(
        &restored,
        &[
            "restore",
            seen["backup_download"].as_str().unwrap(),
            "--passphrase-file",
            passphrase.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    assert!(restored.join("services/ticker").is_dir() && restored.join("secrets.key").is_file());
    let (_, passkeys) = locker.get("/_locker/api/passkeys").await;
    assert_eq!(passkeys, "[]");
    // Uninstalled after a confirmation naming its folder, which is gone.
    let confirm = seen["confirm"].as_str().unwrap();
    assert!(confirm.contains("services/hello-rs"), "{confirm}");
    assert!(!root.join("services/hello-rs").exists());
    let (status, _) = locker.get("/_locker/api/services/hello-rs").await;
    assert_eq!(status, 404);
    assert_eq!(seen["phone_overflows"], false);
}

/// The doors the dashboard added, tried the wrong way: a passkey sign-in
/// from another origin, with a made-up ceremony or answer, or before any
/// passkey exists; a password change without the current password, too
/// short, or with a token instead of a browser. A right change ends every
/// other session, and the old password stops working.
#[tokio::test(flavor = "multi_thread")]
async fn passkey_sign_in_and_password_change_refuse_the_wrong_way_in() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    install(&root, &guest("hello-rs"));
    let locker = Locker::start(&root, &[]);
    let browser = Browser::new(&locker);
    let session = browser.set_up().await;
    let other = cookie(&browser.log_in(PASSWORD).await, browser.session_cookie());
    let origin = locker.origin();
    let post = |path: &str, from: &str, body: serde_json::Value| {
        browser
            .http
            .post(format!("{origin}{path}"))
            .header("origin", from)
            .json(&body)
    };

    // No passkey yet: nothing to sign in with.
    let start = post("/_locker/passkey/start", &origin, serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::NOT_FOUND);
    // From a service's page (a sibling origin): refused before anything.
    let sibling = locker.service_origin("hello-rs");
    for path in ["/_locker/passkey/start", "/_locker/passkey/finish"] {
        let response = post(path, &sibling, serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // Garbage, then a well-formed answer to a ceremony that never was.
    let garbage = post(
        "/_locker/passkey/finish",
        &origin,
        serde_json::json!({"x": 1}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    let forged = serde_json::json!({
        "ceremony": "0".repeat(64),
        "credential": {
            "id": "AAAA", "rawId": "AAAA", "type": "public-key",
            "response": {"clientDataJSON": "AAAA", "authenticatorData": "AAAA", "signature": "AAAA"},
        },
    });
    let response = post("/_locker/passkey/finish", &origin, forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("set-cookie").is_none());

    // Registering a passkey is the owner's: not without a session, not
    // from a sibling origin, not as a simple (form-like) request.
    let register = |cookie: Option<&str>, from: &str| {
        let mut request = browser
            .http
            .post(format!("{origin}/_locker/api/passkeys"))
            .header("origin", from)
            .header("content-type", "application/json")
            .body(r#"{"name": "mine"}"#);
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("locker-session={cookie}"));
        }
        request
    };
    assert_eq!(
        register(None, &origin).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        register(Some(&session), &sibling)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let started = register(Some(&session), &origin).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::OK);
    let started: serde_json::Value = started.json().await.unwrap();
    let public_key = &started["options"]["publicKey"];
    assert_eq!(public_key["rp"]["id"], "locker.localhost", "{started}");
    assert!(
        public_key["challenge"]
            .as_str()
            .is_some_and(|c| c.len() >= 32)
    );

    // The password: a token is not a browser, the current one must be
    // right, the new one long enough.
    let change = |cookie: &str, current: &str, new: &str| {
        browser
            .http
            .post(format!("{origin}/_locker/api/owner/password"))
            .header("origin", &origin)
            .header("cookie", format!("locker-session={cookie}"))
            .json(&serde_json::json!({"current": current, "new": new}))
    };
    let (status, body) = locker
        .post(
            "/_locker/api/owner/password",
            r#"{"current": "correct horse battery staple", "new": "a new long password"}"#,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let wrong = change(&session, "not it", "a new long password")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("current password is not right")
    );
    let short = change(&session, PASSWORD, "short").send().await.unwrap();
    assert_eq!(short.status(), StatusCode::BAD_REQUEST);
    assert!(short.text().await.unwrap().contains("at least"));
    let right = change(&session, PASSWORD, "a new long password")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    // This browser stays in, the other session is over, and the old
    // password no longer logs in.
    let sessions = |cookie: String| {
        browser
            .http
            .get(format!("{origin}/_locker/api/sessions"))
            .header("cookie", format!("locker-session={cookie}"))
            .send()
    };
    let mine = sessions(session.clone()).await.unwrap();
    assert_eq!(mine.status(), StatusCode::OK);
    let listed: serde_json::Value = mine.json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["current"], true);
    assert_eq!(
        sessions(other).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        browser.log_in(PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Passkey attempts count against the same limit as passwords: after
    // two logins and three passkey tries, even the right password waits.
    assert_eq!(
        browser.log_in("a new long password").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}
