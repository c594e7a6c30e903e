//! Several hosts, one locker: three `nats-server`s in a JetStream cluster
//! and three `locker serve --cluster` hosts on loopback, against one host
//! alone (SQLite).
//!
//! `cluster LOCKER_BIN NATS_SERVER_BIN [EVENTS] [DURATION]` prints one JSON
//! line per scenario:
//! - HTTP req/s of the Rust hello through the host that owns it and
//!   through one that forwards to it (wrk, 32 connections);
//! - failover: the owner killed (SIGKILL), until the first answer through
//!   another host;
//! - durable events per second, published through the admin API (32 at a
//!   time, through every host) until the subscriber has them all; the same
//!   through one host alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use locker_bench::guest;
use locker_bench::host::{Host, start_with};

const LEASE: &str = "2s";
const CONNECTIONS: usize = 32;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three nats-servers in one cluster; killed when dropped.
struct Nats {
    servers: Vec<Child>,
    urls: String,
}

impl Drop for Nats {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

fn start_nats(binary: &Path, dir: &Path) -> anyhow::Result<Nats> {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
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
                 cluster {{ name: bench, listen: 127.0.0.1:{route}, routes: [{}] }}\n",
                dir.join(format!("js-{i}")).display(),
                routes.join(", ")
            ),
        )?;
        servers.push(
            Command::new(binary)
                .arg("-c")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
    }
    let urls = ports
        .iter()
        .map(|(client, _)| format!("nats://127.0.0.1:{client}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(Nats { servers, urls })
}

/// A host's root whose services folder is the one the hosts share, and
/// whose `secrets.key` is too (as the owner copies it).
fn root(dir: &Path, i: usize) -> PathBuf {
    let root = dir.join(format!("host-{i}"));
    std::fs::create_dir_all(&root).unwrap();
    let key = dir.join("secrets.key");
    if !key.exists() {
        let mut bytes = [0u8; 32];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").unwrap(),
            &mut bytes,
        )
        .unwrap();
        std::fs::write(&key, bytes).unwrap();
    }
    std::fs::copy(&key, root.join("secrets.key")).unwrap();
    let shared = dir.join("services");
    std::fs::create_dir_all(&shared).unwrap();
    let _ = std::os::unix::fs::symlink(&shared, root.join("services"));
    root
}

fn cli(locker: &Path, root: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(locker)
        .args(args)
        .arg("--root")
        .arg(root)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "locker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An admin token that opens every host (made through the first).
fn token(locker: &Path, root: &Path) -> anyhow::Result<String> {
    let made: serde_json::Value = serde_json::from_str(&cli(
        locker,
        root,
        &["token", "create", "--scope", "admin", "--json"],
    )?)?;
    Ok(made["token"].as_str().unwrap().to_string())
}

/// `GET /` of the hello through `host`: its status, or none.
fn hello(client: &reqwest::blocking::Client, host: &Host, token: &str) -> Option<u16> {
    client
        .get(format!("{}/", host.url))
        .header("host", host.service_host("hello-rs"))
        .bearer_auth(token)
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

/// wrk against the hello through `host`: requests per second.
fn wrk(host: &Host, token: &str, duration: &str) -> anyhow::Result<f64> {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{duration}")])
        .args(["-H", &format!("Host: {}", host.service_host("hello-rs"))])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{}/", host.url))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(!text.contains("Non-2xx"), "wrk saw errors: {text}");
    text.lines()
        .find(|line| line.starts_with("Requests/sec"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("wrk printed no rate: {text}"))
}

/// Publishes `events` through `hosts` (32 at a time, round-robin) and
/// waits until the subscriber in `shared` recorded them all: events/s.
fn events(hosts: &[&Host], token: &str, shared: &Path, events: usize) -> anyhow::Result<f64> {
    let received = shared.join("subscriber/events.jsonl");
    let before = std::fs::read_to_string(&received)
        .unwrap_or_default()
        .lines()
        .count();
    let started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for worker in 0..CONNECTIONS {
            let next = &next;
            scope.spawn(move || {
                let client = reqwest::blocking::Client::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= events {
                        break;
                    }
                    let host = hosts[(n + worker) % hosts.len()];
                    let sent = client
                        .post(format!("{}/_locker/api/publish/note/saved", host.url))
                        .bearer_auth(token)
                        .body(format!("{{\"n\": {n}}}"))
                        .send();
                    assert!(sent.is_ok_and(|r| r.status() == 201), "a publish failed");
                }
            });
        }
    });
    loop {
        let count = std::fs::read_to_string(&received)
            .unwrap_or_default()
            .lines()
            .count();
        if count >= before + events {
            return Ok(events as f64 / started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "events were lost"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let locker: PathBuf = args
        .next()
        .expect("usage: cluster LOCKER NATS_SERVER [EVENTS] [DURATION]")
        .into();
    let nats_binary: PathBuf = args
        .next()
        .expect("usage: cluster LOCKER NATS_SERVER")
        .into();
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let duration = args.next().unwrap_or_else(|| "10s".into());
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("cache");
    let client = reqwest::blocking::Client::new();

    // One host alone, as the baseline of events.
    {
        let alone = dir.path().join("alone");
        let (host, _) = start_with(&locker, &alone, &cache, &[])?;
        cli(
            &locker,
            &alone,
            &["install", guest("subscriber").to_str().unwrap()],
        )?;
        let rate = events(&[&host], &host.token, &alone.join("services"), count)?;
        println!(
            "{}",
            serde_json::json!({"scenario": "events, one host (SQLite)", "events": count, "events_per_s": rate})
        );
    }

    let nats = start_nats(&nats_binary, dir.path())?;
    let roots: Vec<PathBuf> = (0..3).map(|i| root(dir.path(), i)).collect();
    let extra = ["--cluster", nats.urls.as_str(), "--lease", LEASE];
    let mut hosts: Vec<Option<Host>> = Vec::new();
    for root in &roots {
        hosts.push(Some(start_with(&locker, root, &cache, &extra)?.0));
    }
    cli(
        &locker,
        &roots[0],
        &["install", guest("hello-rs").to_str().unwrap()],
    )?;
    cli(
        &locker,
        &roots[0],
        &["install", guest("subscriber").to_str().unwrap()],
    )?;
    let token = token(&locker, &roots[0])?;
    // Every host answers; the first to be asked owns the hello.
    let started = Instant::now();
    for host in hosts.iter().flatten() {
        while hello(&client, host, &token) != Some(200) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the hello never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let view: serde_json::Value =
        serde_json::from_str(&cli(&locker, &roots[0], &["cluster", "status", "--json"])?)?;
    let owner_id = view["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|lease| lease["service"] == "hello-rs")
        .and_then(|lease| lease["host"].as_str())
        .unwrap()
        .to_string();
    let owner = (0..3)
        .find(|&i| {
            std::fs::read_to_string(roots[i].join("cluster-host"))
                .unwrap()
                .trim()
                == owner_id
        })
        .unwrap();
    let forwarder = (owner + 1) % 3;
    for (label, i) in [
        ("through the host that owns it", owner),
        ("through a host that forwards to the owner", forwarder),
    ] {
        let rate = wrk(hosts[i].as_ref().unwrap(), &token, &duration)?;
        println!(
            "{}",
            serde_json::json!({"scenario": format!("HTTP, Rust hello, 3 hosts, {label}"), "requests_per_s": rate})
        );
    }

    let live: Vec<&Host> = hosts.iter().flatten().collect();
    let rate = events(&live, &token, &dir.path().join("services"), count)?;
    println!(
        "{}",
        serde_json::json!({"scenario": "events, 3 hosts (JetStream, R3), published through all three", "events": count, "events_per_s": rate})
    );

    // Failover: the owner dies; the first answer through another host.
    drop(hosts[owner].take());
    let killed = Instant::now();
    let survivor = hosts[forwarder].as_ref().unwrap();
    while hello(&client, survivor, &token) != Some(200) {
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(60),
            "no host took over"
        );
    }
    println!(
        "{}",
        serde_json::json!({"scenario": format!("failover: owner killed (SIGKILL), lease {LEASE}, first answer through another host"), "seconds": killed.elapsed().as_secs_f64()})
    );
    Ok(())
}
