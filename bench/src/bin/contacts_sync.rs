//! The contacts services at scale, against a real CardDAV server
//! (Radicale from `.tools/radicale`, as `scripts/setup-test-tools` installs
//! it), through a real `locker serve`.
//!
//! `contacts_sync LOCKER_BIN [COUNT]` puts COUNT contacts (5,000) into an
//! address book, installs the `carddav` connector and the `contacts`
//! collection, and reports (JSON lines):
//! - the first sync (`locker jobs run carddav/sync`), in seconds, and until
//!   the collection has merged every contact: events delivered per second;
//! - a sync with nothing changed (the fixed cost: the token's report, the
//!   connector's state), and one after 10 contacts changed on the server;
//! - the collection's search over the merged contacts: p50/p99 latency.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use locker_bench::host::{Host, start};
use locker_bench::{guest, quantile_ms};

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";
const CHANGED: usize = 10;
const SEARCHES: usize = 500;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let locker = std::path::PathBuf::from(
        args.next()
            .expect("usage: contacts_sync LOCKER_BIN [COUNT]"),
    );
    let count: usize = args.next().map_or(Ok(5000), |n| n.parse())?;
    let dir = tempfile::tempdir()?;
    let radicale = Radicale::start(&dir.path().join("radicale"), count)?;

    let root = dir.path().join("root");
    let (host, _) = start(&locker, &root, &dir.path().join("cache"))?;
    for name in ["carddav", "contacts"] {
        cli(
            &locker,
            &root,
            &["install", guest(name).to_str().unwrap()],
            "",
        )?;
    }
    cli(
        &locker,
        &root,
        &["config", "set", "carddav", "server", &radicale.book()],
        "",
    )?;
    cli(
        &locker,
        &root,
        &["config", "set", "carddav", "user", USER],
        "",
    )?;
    cli(
        &locker,
        &root,
        &["config", "set", "carddav", "password"],
        PASSWORD,
    )?;
    let client = Client::new(&host)?;
    // Loaded (and compiled) before the clock starts.
    client.get("contacts", "/sources")?;
    client.get("carddav", "/status")?;

    let started = Instant::now();
    cli(&locker, &root, &["jobs", "run", "carddav/sync"], "")?;
    let synced = started.elapsed();
    wait_until(Duration::from_secs(600), || {
        Ok(client.get("contacts", "/sources")?["carddav"].as_u64() == Some(count as u64))
    })?;
    let merged = started.elapsed();
    println!(
        "{}",
        serde_json::json!({
            "scenario": format!("first sync of {count} contacts from Radicale"),
            "sync_s": synced.as_secs_f64(),
            "all_merged_s": merged.as_secs_f64(),
            "events_delivered_per_s": count as f64 / merged.as_secs_f64(),
        })
    );

    let started = Instant::now();
    cli(&locker, &root, &["jobs", "run", "carddav/sync"], "")?;
    let synced = started.elapsed();
    let status = client.get("carddav", "/status")?;
    println!(
        "{}",
        serde_json::json!({
            "scenario": format!("sync with nothing changed, {count} contacts"),
            "sync_s": synced.as_secs_f64(),
            "requests_to_server": status["last_sync"]["requests"],
        })
    );

    for i in 0..CHANGED {
        radicale.put(i, &format!("Changed Person {i}"))?;
    }
    let started = Instant::now();
    cli(&locker, &root, &["jobs", "run", "carddav/sync"], "")?;
    let synced = started.elapsed();
    wait_until(Duration::from_secs(60), || {
        let found = client.get("contacts", "/search?q=changed+person")?;
        Ok(found["total"].as_u64() == Some(CHANGED as u64))
    })?;
    let merged = started.elapsed();
    let status = client.get("carddav", "/status")?;
    println!(
        "{}",
        serde_json::json!({
            "scenario": format!("incremental sync, {CHANGED} of {count} changed"),
            "sync_s": synced.as_secs_f64(),
            "all_merged_s": merged.as_secs_f64(),
            "requests_to_server": status["last_sync"]["requests"],
            "changed": status["last_sync"]["changed"],
        })
    );

    for (label, query) in [("a name", "person+4"), ("everyone, first 50", "")] {
        let mut samples = Vec::with_capacity(SEARCHES);
        for i in 0..SEARCHES {
            let path = if query.is_empty() {
                "/search?limit=50".to_string()
            } else {
                format!("/search?q={query}{}&limit=20", i % 10)
            };
            let one = Instant::now();
            client.get("contacts", &path)?;
            samples.push(one.elapsed());
        }
        println!(
            "{}",
            serde_json::json!({
                "scenario": format!("search over {count} merged contacts: {label}"),
                "p50_ms": quantile_ms(&mut samples, 0.5),
                "p99_ms": quantile_ms(&mut samples, 0.99),
            })
        );
    }
    Ok(())
}

/// Runs `locker ARGS --root ROOT` with `input` on its standard input.
fn cli(locker: &Path, root: &Path, args: &[&str], input: &str) -> anyhow::Result<String> {
    use std::io::Write;
    let mut child = Command::new(locker)
        .args(args)
        .arg("--root")
        .arg(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().unwrap().write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "locker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_until(
    limit: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while !ready()? {
        anyhow::ensure!(started.elapsed() < limit, "gave up after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The owner's HTTP client, on each service's own origin.
struct Client<'a> {
    host: &'a Host,
    http: reqwest::blocking::Client,
}

impl<'a> Client<'a> {
    fn new(host: &'a Host) -> anyhow::Result<Self> {
        let listener: std::net::SocketAddr = host.address().parse()?;
        let mut builder = reqwest::blocking::Client::builder().timeout(Duration::from_secs(600));
        for name in ["carddav", "contacts"] {
            let origin = host.service_host(name);
            builder = builder.resolve(origin.split(':').next().unwrap_or_default(), listener);
        }
        Ok(Client {
            host,
            http: builder.build()?,
        })
    }

    fn get(&self, service: &str, path: &str) -> anyhow::Result<serde_json::Value> {
        let answer = self
            .http
            .get(format!("http://{}{path}", self.host.service_host(service)))
            .bearer_auth(&self.host.token)
            .send()?;
        anyhow::ensure!(
            answer.status().is_success(),
            "{service}{path}: {}",
            answer.status()
        );
        Ok(answer.json()?)
    }
}

/// Radicale with one address book of `count` contacts, written straight
/// into its storage (a PUT each would time Radicale, not the locker), and
/// listed once so that its item cache is warm.
struct Radicale {
    port: u16,
    child: Child,
}

impl Radicale {
    fn start(dir: &Path, count: usize) -> anyhow::Result<Radicale> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let book_dir = dir.join(format!("collections/collection-root/{USER}/contacts"));
        std::fs::create_dir_all(&book_dir)?;
        std::fs::write(
            book_dir.join(".Radicale.props"),
            r#"{"D:displayname": "Contacts", "tag": "VADDRESSBOOK"}"#,
        )?;
        for i in 0..count {
            std::fs::write(
                book_dir.join(format!("p{i}.vcf")),
                vcard(i, &format!("Person {i}")),
            )?;
        }
        std::fs::write(dir.join("users"), format!("{USER}:{PASSWORD}\n"))?;
        std::fs::write(
            dir.join("config"),
            format!(
                "[server]\nhosts = 127.0.0.1:{port}\n[auth]\ntype = htpasswd\nhtpasswd_filename = {}\n\
                 htpasswd_encryption = plain\n[storage]\nfilesystem_folder = {}\n[rights]\ntype = owner_only\n\
                 [logging]\nlevel = warning\n",
                dir.join("users").display(),
                dir.join("collections").display()
            ),
        )?;
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/radicale");
        anyhow::ensure!(
            tools.join("radicale").is_dir(),
            "Radicale is missing: run scripts/setup-test-tools"
        );
        let child = Command::new("python3")
            .args(["-m", "radicale", "--config"])
            .arg(dir.join("config"))
            .env("PYTHONPATH", tools)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let radicale = Radicale { port, child };
        wait_until(Duration::from_secs(30), || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        })?;
        let listed = radicale.http("PROPFIND", &radicale.book(), "1", "")?;
        anyhow::ensure!(listed == 207, "Radicale listed the book with {listed}");
        Ok(radicale)
    }

    fn book(&self) -> String {
        format!("http://127.0.0.1:{}/{USER}/contacts/", self.port)
    }

    /// Changes contact `i` over HTTP, as a client of the server would.
    fn put(&self, i: usize, name: &str) -> anyhow::Result<()> {
        let status = self.http(
            "PUT",
            &format!("{}p{i}.vcf", self.book()),
            "",
            &vcard(i, name),
        )?;
        anyhow::ensure!(matches!(status, 201 | 204), "PUT p{i}: {status}");
        Ok(())
    }

    fn http(&self, method: &str, url: &str, depth: &str, body: &str) -> anyhow::Result<u16> {
        let mut request = reqwest::blocking::Client::new()
            .request(method.parse()?, url)
            .basic_auth(USER, Some(PASSWORD))
            .body(body.to_string());
        if !depth.is_empty() {
            request = request.header("depth", depth);
        }
        Ok(request.send()?.status().as_u16())
    }
}

impl Drop for Radicale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn vcard(i: usize, name: &str) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:p{i}\r\nFN:{name}\r\nEMAIL:p{i}@example.org\r\n\
         TEL:+1 555 {:03} {:04}\r\nORG:Example {}\r\nEND:VCARD\r\n",
        i / 10000,
        i % 10000,
        i % 50
    )
}
