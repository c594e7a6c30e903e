//! Cold start and idle cost, measured on a real `locker serve` process.
//!
//! `coldstart LOCKER_BIN SERVICES [GUEST]` installs SERVICES copies of a hello
//! service (`hello-rs` by default; `hello-js`, `hello-py`) into a fresh root,
//! then reports (as JSON lines):
//! - the host's start time and resident memory with all of them installed
//!   and none loaded;
//! - first request → response for each service, with the compiled-code
//!   cache cold (compiling) and warm (after a host restart), p50 and p99.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use locker_bench::host::{Host, rss_kib, start_with};
use locker_bench::{quantile_ms, renamed_guest};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let locker: PathBuf = args
        .next()
        .expect("usage: coldstart LOCKER_BIN SERVICES")
        .into();
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let hello = args.next().unwrap_or_else(|| "hello-rs".into());
    let greeting = match hello.as_str() {
        "hello-rs" => "hello from rust",
        "hello-js" => "hello from javascript",
        "hello-py" => "hello from python",
        other => anyhow::bail!("no hello service named {other}"),
    };
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    let packages = dir.path().join("packages");
    let names: Vec<String> = (0..services).map(|n| format!("{hello}-{n}")).collect();
    let install_started = Instant::now();
    for name in &names {
        // Each copy is a distinct component (its own digest), so each
        // compiles on its own, as different services would.
        let package = renamed_guest(&packages, &hello, name, |m| m);
        let wasm = std::fs::read_dir(&package)?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .find(|path| path.extension().is_some_and(|e| e == "wasm"))
            .ok_or_else(|| anyhow::anyhow!("{hello} has no component"))?;
        let mut bytes = std::fs::read(&wasm)?;
        append_custom_section(&mut bytes, name);
        std::fs::write(&wasm, bytes)?;
        let status = Command::new(&locker)
            .args(["install", package.to_str().unwrap(), "--root"])
            .arg(&root)
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "install of {name} failed");
    }
    let install_seconds = install_started.elapsed().as_secs_f64();

    let cache = dir.path().join("cache");
    // Compiling at first request is what is measured cold: no compiling ahead.
    let start = |root: &std::path::Path, cache: &std::path::Path| {
        start_with(&locker, root, cache, &["--compile-ahead", "false"])
    };
    let (host, startup) = start(&root, &cache)?;
    let rss = rss_kib(host.child.id());
    println!(
        "{}",
        serde_json::json!({
            "scenario": format!("{services} installed {hello} services, none loaded"),
            "host_start_ms": startup.as_secs_f64() * 1000.0,
            "host_rss_mib": rss as f64 / 1024.0,
            "install_seconds_total": install_seconds,
        })
    );
    let sample: Vec<&String> = names.iter().take(200).collect();
    let cold = first_requests(&host, &sample, greeting)?;
    drop(host);
    let (host, _) = start(&root, &cache)?;
    let warm = first_requests(&host, &sample, greeting)?;
    let rss_after = rss_kib(host.child.id());
    for (label, mut samples) in [
        ("compiled-code cache cold (compile)", cold),
        ("compiled-code cache warm", warm),
    ] {
        println!(
            "{}",
            serde_json::json!({
                "scenario": format!("{hello} cold start, {label}, {} services", samples.len()),
                "p50_ms": quantile_ms(&mut samples, 0.5),
                "p99_ms": quantile_ms(&mut samples, 0.99),
            })
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "scenario": format!("host memory after loading {} services", sample.len()),
            "host_rss_mib": rss_after as f64 / 1024.0,
        })
    );
    Ok(())
}

fn first_requests(host: &Host, names: &[&String], greeting: &str) -> anyhow::Result<Vec<Duration>> {
    names
        .iter()
        .map(|name| {
            let started = Instant::now();
            let body = http_get::get(host.address(), &host.service_host(name), &host.token)?;
            anyhow::ensure!(body.contains(greeting), "{name}: {body}");
            Ok(started.elapsed())
        })
        .collect()
}

/// Appends a custom section so that otherwise identical components differ.
fn append_custom_section(bytes: &mut Vec<u8>, name: &str) {
    let section_name = b"locker-bench";
    let mut payload = vec![section_name.len() as u8];
    payload.extend_from_slice(section_name);
    payload.extend_from_slice(name.as_bytes());
    bytes.push(0); // custom section id
    leb128(bytes, payload.len() as u64);
    bytes.extend_from_slice(&payload);
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A tiny blocking HTTP/1.1 GET over a kept-alive connection (std only), so
/// that the measured time is the host's, not a client library's.
mod http_get {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    /// `GET /` of the origin `host`, at `address`, with the owner's token.
    pub fn get(address: &str, host: &str, token: &str) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        )?;
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status)?;
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut body = String::new();
        reader.read_to_string(&mut body)?;
        anyhow::ensure!(status.contains(" 200 "), "{status}{body}");
        Ok(body)
    }
}
