//! Installing from a registry on loopback (Debian's `docker-registry`),
//! through a real `locker serve`.
//!
//! `registry_install LOCKER_BIN` publishes the Rust and the Python hello
//! (80 KB and 18 MB components) signed, then for each reports (JSON lines):
//! - a first install with the compiled-code cache cold: the `locker
//!   install` command (offer, consent, pull, checks, commit), then until
//!   its code is ready in the cache, then its first request;
//! - the same digest installed into a second root sharing that cache: the
//!   compiled code is there, and the component is not downloaded again
//!   (bytes from the registry counted by a proxy in front of it).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use locker_bench::guest;
use locker_bench::host::start;
use locker_registry::keys::PublisherKey;
use locker_registry::local::LocalRegistry;

fn main() -> anyhow::Result<()> {
    let locker = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: registry_install LOCKER_BIN"),
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let Some(registry) = runtime.block_on(LocalRegistry::start()) else {
        anyhow::bail!("docker-registry is missing (apt-get install docker-registry)");
    };
    let (proxy, from_registry) = counting_proxy(&registry.address)?;
    let dir = tempfile::tempdir()?;
    let key_path = dir.path().join("publisher.key");
    let key = PublisherKey::generate()?;
    key.save(&key_path)?;
    let fingerprint = key.public().fingerprint();
    for hello in ["hello-rs", "hello-py"] {
        let published = Command::new(&locker)
            .arg("publish")
            .arg(guest(hello))
            .args(["--to", &format!("{}/bench", registry.address), "--key"])
            .arg(&key_path)
            .output()?;
        anyhow::ensure!(published.status.success(), "publish of {hello} failed");
        let reference = format!("{proxy}/bench/{hello}:0.1.0");
        let cache = dir.path().join(format!("cache-{hello}"));
        for (round, label) in [(0, "cold cache"), (1, "same digest again, cache warm")] {
            let root = dir.path().join(format!("root-{hello}-{round}"));
            let (host, _) = start(&locker, &root, &cache)?;
            let before = from_registry.load(Ordering::SeqCst);
            let started = Instant::now();
            let installed = Command::new(&locker)
                .args(["install", &reference, "--trust", &fingerprint, "--root"])
                .arg(&root)
                .output()?;
            anyhow::ensure!(
                installed.status.success(),
                "install of {hello} failed: {}",
                String::from_utf8_lossy(&installed.stderr)
            );
            let install = started.elapsed();
            let bytes = from_registry.load(Ordering::SeqCst) - before;
            while status(&host, hello)?["code"] != "ready" {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(300),
                    "{hello} never became ready"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let ready = started.elapsed();
            let first = Instant::now();
            let origin = host.service_host(hello);
            let listener: std::net::SocketAddr = host.address().parse()?;
            let client = reqwest::blocking::Client::builder()
                .resolve(origin.split(':').next().unwrap_or_default(), listener)
                .build()?;
            let answer = client
                .get(format!("http://{origin}/"))
                .bearer_auth(&host.token)
                .send()?;
            anyhow::ensure!(answer.status().is_success(), "{hello} did not answer");
            let first_request = first.elapsed();
            println!(
                "{}",
                serde_json::json!({
                    "scenario": format!("install {hello} from the registry, {label}"),
                    "install_ms": install.as_secs_f64() * 1000.0,
                    "until_code_ready_ms": ready.as_secs_f64() * 1000.0,
                    "first_request_ms": first_request.as_secs_f64() * 1000.0,
                    "bytes_from_registry": bytes,
                })
            );
        }
    }
    Ok(())
}

fn status(host: &locker_bench::host::Host, name: &str) -> anyhow::Result<serde_json::Value> {
    Ok(reqwest::blocking::Client::new()
        .get(format!("{}/_locker/api/services/{name}", host.url))
        .bearer_auth(&host.token)
        .send()?
        .json()?)
}

/// A TCP proxy to `upstream` on a free loopback port; counts the bytes
/// that come back from it.
fn counting_proxy(upstream: &str) -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    let counted = Arc::new(AtomicU64::new(0));
    let upstream = upstream.to_string();
    let counter = counted.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut client_in, mut server_out) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut server_out);
                let _ = server_out.shutdown(std::net::Shutdown::Write);
            });
            let counter = counter.clone();
            let (mut server_in, mut client_out) = (server, client);
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64 * 1024];
                while let Ok(read) = server_in.read(&mut buffer) {
                    if read == 0 || client_out.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                    counter.fetch_add(read as u64, Ordering::SeqCst);
                }
                let _ = client_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    Ok((address, counted))
}
