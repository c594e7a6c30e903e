//! Many installed services, none of them used: how soon a real `locker
//! serve` answers, and how much memory it holds.
//!
//! `installed LOCKER_BIN [SERVICES] [ROUNDS]` installs SERVICES copies of the
//! Rust hello (10,000 by default) into a fresh root, through the host's own
//! install path in this process (the CLI would start a process per install),
//! then starts `locker serve` on that root ROUNDS times (3 by default) and
//! prints one JSON line per round: the time until its health check answers,
//! and its resident memory two seconds later. The first start also
//! compiles the hello ahead (all copies share one component), once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use locker::package::Package;
use locker::store::LockerRoot;
use locker::supervisor::{HostOptions, Supervisor};
use locker_bench::host::{rss_kib, start_with};
use locker_bench::renamed_guest;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let locker: PathBuf = args
        .next()
        .expect("usage: installed LOCKER_BIN [SERVICES] [ROUNDS]")
        .into();
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);

    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    let cache = dir.path().join("cache");
    let packages = dir.path().join("packages");
    let install_started = Instant::now();
    {
        let options = HostOptions {
            cache_dir: Some(cache.clone()),
            compile_ahead: false,
            ..HostOptions::default()
        };
        let opened = LockerRoot::open(&root)?;
        let supervisor = tokio::task::block_in_place(|| Supervisor::new(opened, options))?;
        let hello = Package::read(&renamed_guest(&packages, "hello-rs", "hello", |m| m), None)?;
        for n in 0..services {
            let mut manifest = hello.manifest.clone();
            manifest.name = format!("hello-{n:05}");
            supervisor
                .install(Package {
                    manifest,
                    component: hello.component.clone(),
                    digest: hello.digest.clone(),
                    exports: hello.exports.clone(),
                    origin: None,
                })
                .await?;
        }
    }
    let install_seconds = install_started.elapsed().as_secs_f64();

    for round in 1..=rounds {
        let started = Instant::now();
        let (host, _) = start_with(&locker, &root, &cache, &[])?;
        // Answering: the health check's answer, which comes after every
        // service is registered. Memory: once the start has settled.
        let health = health(host.address(), &host.token)?;
        anyhow::ensure!(health.starts_with("HTTP/1.1 200"), "health: {health}");
        let answering = started.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let rss = rss_kib(host.child.id());
        println!(
            "{}",
            serde_json::json!({
                "scenario": format!(
                    "{services} installed services, none loaded, {}",
                    if round == 1 { "first start (compiles the hello ahead)" } else { "a later start" }
                ),
                "answering_ms": answering.as_secs_f64() * 1000.0,
                "host_rss_mib": rss as f64 / 1024.0,
                "install_seconds_total": install_seconds,
            })
        );
    }
    Ok(())
}

/// `GET /_locker/api/health`, the whole answer as text.
fn health(address: &str, token: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(
        stream,
        "GET /_locker/api/health HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}
