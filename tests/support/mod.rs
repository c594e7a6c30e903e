#![allow(dead_code)] // each test file uses a different part
//! Shared by the end-to-end tests (each test file includes it as a module).
//!
//! Test support: a real `locker` process on loopback, real components built
//! from `guests/` by `scripts/build-guests`, and a small HTTP client.

pub mod carddav;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `locker` binary, built by cargo for these tests.
pub fn locker_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_locker"))
}

/// A package folder built by `scripts/build-guests`.
pub fn guest(name: &str) -> PathBuf {
    let dir = workspace().join("guests/out").join(name);
    assert!(
        dir.join("locker.toml").exists(),
        "{} is missing: run scripts/build-guests first",
        dir.display()
    );
    dir
}

/// A copy of a guest's package with its manifest edited, e.g. to rename it:
/// `guest_variant(dir, "notes", |m| { m.set("name", "alice"); })`.
pub fn guest_variant(dir: &Path, name: &str, edit: impl FnOnce(&mut Manifest)) -> PathBuf {
    let source = guest(name);
    let target = dir.join(format!("{name}-variant-{}", unique()));
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    edit_manifest(&target, edit);
    target
}

/// Edits the `locker.toml` of the package folder `package` in place.
pub fn edit_manifest(package: &Path, edit: impl FnOnce(&mut Manifest)) {
    let path = package.join("locker.toml");
    let mut manifest = Manifest::read(&path);
    edit(&mut manifest);
    manifest.write(&path);
}

/// A package manifest as TOML, edited key by key. A key is a dotted path,
/// with numbers for array items: `limits.timeout`, `schedule.0.cron`.
///
/// `set`, `remove` and `push` change what is there and panic, naming the key,
/// when it is not: a manifest that drifted from what a test expects fails the
/// test instead of leaving the package unchanged. Only `add` makes new keys.
/// The result need not be a valid manifest (tests of refusals rely on that),
/// only valid TOML.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Always a table.
    root: toml::Value,
}

impl Manifest {
    pub fn read(path: &Path) -> Manifest {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let table: toml::Table = text
            .parse()
            .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()));
        Manifest {
            root: toml::Value::Table(table),
        }
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, toml::to_string(&self.root).unwrap()).unwrap();
    }

    /// Replaces the value of `key`, which must be there.
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) -> &mut Self {
        *self.existing(key) = value.into();
        self
    }

    /// Removes `key`, which must be there.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        let (parent, last) = match key.rsplit_once('.') {
            Some((parent, last)) => (self.get_mut(parent), last),
            None => (Some(&mut self.root), key),
        };
        let removed = match parent {
            Some(toml::Value::Table(table)) => table.remove(last).is_some(),
            Some(toml::Value::Array(array)) => match last.parse::<usize>() {
                Ok(index) if index < array.len() => {
                    array.remove(index);
                    true
                }
                _ => false,
            },
            _ => false,
        };
        assert!(removed, "the manifest has no `{key}` to remove");
        self
    }

    /// Adds `key`, which must not be there yet; the tables on its way are
    /// made as needed (`add("limits.timeout", "5s")` makes `[limits]`).
    pub fn add(&mut self, key: &str, value: impl Into<toml::Value>) -> &mut Self {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap();
        let not_a_table = |depth: usize| -> ! {
            panic!(
                "cannot add `{key}`: `{}` is not a table",
                parts[..depth].join(".")
            )
        };
        let mut here = &mut self.root;
        for (depth, part) in parts.iter().enumerate() {
            let toml::Value::Table(table) = here else {
                not_a_table(depth)
            };
            here = table
                .entry(*part)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        }
        let toml::Value::Table(table) = here else {
            not_a_table(parts.len())
        };
        let previous = table.insert(last.to_string(), value.into());
        assert!(
            previous.is_none(),
            "cannot add `{key}`: the manifest has it already"
        );
        self
    }

    /// Appends `value` to the array at `key`, which must be there (e.g. one
    /// more `[[schedule]]` entry: `push("schedule", toml::toml! { .. })`).
    pub fn push(&mut self, key: &str, value: impl Into<toml::Value>) -> &mut Self {
        match self.existing(key) {
            toml::Value::Array(array) => array.push(value.into()),
            other => panic!("cannot push to `{key}`: it is `{other}`, not an array"),
        }
        self
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut toml::Value> {
        key.split('.')
            .try_fold(&mut self.root, |value, part| match value {
                toml::Value::Table(table) => table.get_mut(part),
                toml::Value::Array(array) => array.get_mut(part.parse::<usize>().ok()?),
                _ => None,
            })
    }

    fn existing(&mut self, key: &str) -> &mut toml::Value {
        self.get_mut(key)
            .unwrap_or_else(|| panic!("the manifest has no `{key}`"))
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A compiled-code cache shared by all tests, so each component is compiled once.
pub fn shared_cache() -> PathBuf {
    locker_bin().parent().unwrap().join("locker-test-cache")
}

/// The result of one CLI command.
pub struct CliOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `locker <args> --root <root>`.
pub fn cli(root: &Path, args: &[&str]) -> CliOutput {
    let output = Command::new(locker_bin())
        .args(args)
        .arg("--root")
        .arg(root)
        .env_remove("LOCKER_ROOT")
        .output()
        .expect("cannot run locker");
    CliOutput::from(output)
}

/// Runs `locker <args> --root <root>` without blocking the async runtime.
pub async fn cli_async(root: &Path, args: &[&str]) -> CliOutput {
    let output = tokio::process::Command::new(locker_bin())
        .args(args)
        .arg("--root")
        .arg(root)
        .env_remove("LOCKER_ROOT")
        .output()
        .await
        .expect("cannot run locker");
    CliOutput::from(output)
}

impl From<Output> for CliOutput {
    fn from(output: Output) -> CliOutput {
        CliOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Installs a package with the CLI and insists that it worked.
pub fn install(root: &Path, package: &Path) {
    let out = cli(root, &["install", package.to_str().unwrap()]);
    check_installed(package, &out);
}

/// Installs a package with the CLI, from async code, and insists that it worked.
pub async fn install_async(root: &Path, package: &Path) {
    let out = cli_async(root, &["install", package.to_str().unwrap()]).await;
    check_installed(package, &out);
}

fn check_installed(package: &Path, out: &CliOutput) {
    assert!(
        out.success,
        "install of {} failed: {}",
        package.display(),
        out.stderr
    );
}

/// How often `eventually` looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `probe` until it is ready, and returns what it found; after `limit`,
/// panics naming `what` it waited for and what the last probe saw. A probe
/// answers `true`, `Some(found)` or `Ok(found)` when ready; `false`, `None`,
/// or `Err(seen)` when not yet, `seen` being shown if time runs out:
///
/// ```ignore
/// let events = eventually("3 events", Duration::from_secs(10), async || {
///     let events = received().await;
///     if events.len() >= 3 { Ok(events) } else { Err(events.len()) }
/// })
/// .await;
/// ```
pub async fn eventually<P: Probe>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> P,
) -> P::Ready {
    let started = Instant::now();
    loop {
        match probe().await.check() {
            Ok(ready) => return ready,
            Err(seen) => assert!(
                started.elapsed() < limit,
                "gave up after {limit:?} waiting for {what}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The answer of one probe of `eventually`.
pub trait Probe {
    type Ready;
    /// What was found when ready; otherwise what was seen, as text.
    fn check(self) -> Result<Self::Ready, String>;
}

impl Probe for bool {
    type Ready = ();
    fn check(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("false".into()) }
    }
}

impl<T> Probe for Option<T> {
    type Ready = T;
    fn check(self) -> Result<T, String> {
        self.ok_or_else(|| "None".into())
    }
}

/// `Err(seen)` shows with `{:#}`: a `serde_json::Value` as pretty JSON.
impl<T, E: std::fmt::Display> Probe for Result<T, E> {
    type Ready = T;
    fn check(self) -> Result<T, String> {
        self.map_err(|seen| format!("{seen:#}"))
    }
}

/// Resolves every name to 127.0.0.1: the tests' servers all live on
/// loopback, and glibc does not resolve `*.localhost` as browsers do.
struct Loopback;

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let address: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
        Box::pin(async move { Ok(Box::new(std::iter::once(address)) as reqwest::dns::Addrs) })
    }
}

/// A client builder whose names all resolve to loopback.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().dns_resolver(std::sync::Arc::new(Loopback))
}

/// `builder`, trusting every certificate in the PEM file `chain` as a root.
pub fn trusting(mut builder: reqwest::ClientBuilder, chain: &Path) -> reqwest::ClientBuilder {
    let pem = std::fs::read(chain).unwrap();
    for certificate in reqwest::Certificate::from_pem_bundle(&pem).unwrap() {
        builder = builder.add_root_certificate(certificate);
    }
    builder
}

/// A running `locker serve` on a free loopback port; killed when dropped.
pub struct Locker {
    pub root: PathBuf,
    /// `http://127.0.0.1:PORT`, as `host.json` says.
    pub address: String,
    pub port: u16,
    /// `http`, or `https` when serving a certificate.
    pub scheme: &'static str,
    /// The certificate chain it serves, if any (its clients trust it).
    pub tls_cert: Option<PathBuf>,
    child: Child,
    /// The admin token `locker serve` left in the root for the local CLI.
    pub token: String,
    /// Sends `token` with every request: the owner, as a script.
    pub http: reqwest::Client,
    /// Sends no credentials and follows no redirects: anyone at all.
    pub anonymous: reqwest::Client,
}

impl Locker {
    /// Serves `root` with the shared code cache and extra `serve` arguments.
    pub fn start(root: &Path, extra: &[&str]) -> Locker {
        let cache = shared_cache();
        let mut args = vec!["--cache-dir", cache.to_str().unwrap()];
        args.extend_from_slice(extra);
        Locker::start_with(root, &args)
    }

    /// Serves `root` with exactly these extra `serve` arguments.
    pub fn start_with(root: &Path, extra: &[&str]) -> Locker {
        Locker::spawn(root, extra, Command::new(locker_bin()))
    }

    /// Serves `root` in a process whose address space is capped (`ulimit -v`).
    pub fn start_with_address_space(root: &Path, kib: u64) -> Locker {
        let mut command = Command::new("sh");
        command
            .args(["-c", &format!("ulimit -v {kib} && exec \"$0\" \"$@\"")])
            .arg(locker_bin());
        Locker::spawn(root, &[], command)
    }

    fn spawn(root: &Path, extra: &[&str], mut command: Command) -> Locker {
        std::fs::create_dir_all(root).unwrap();
        let log = std::fs::File::create(root.with_extension("host.log")).unwrap();
        command.arg("serve");
        if !extra.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        let child = command
            .arg("--root")
            .arg(root)
            .args(extra)
            .env_remove("LOCKER_ROOT")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start locker serve");
        let mut locker = Locker {
            root: root.to_path_buf(),
            address: String::new(),
            port: 0,
            scheme: "http",
            tls_cert: None,
            child,
            token: String::new(),
            http: reqwest::Client::new(),
            anonymous: reqwest::Client::new(),
        };
        let record = locker.wait_until_serving();
        locker.address = format!("http://{}", record["listen"].as_str().unwrap());
        locker.port = locker.address.rsplit(':').next().unwrap().parse().unwrap();
        if let Some(cert) = record["tls_cert"].as_str() {
            locker.scheme = "https";
            locker.tls_cert = Some(PathBuf::from(cert));
        }
        locker.token = std::fs::read_to_string(root.join("cli.token"))
            .expect("locker serve writes cli.token")
            .trim()
            .to_string();
        locker.http = locker.owner_client(client_builder());
        locker.anonymous = locker
            .trust(client_builder().redirect(reqwest::redirect::Policy::none()))
            .build()
            .unwrap();
        locker
    }

    /// `builder`, trusting the certificate this locker serves (if any; one
    /// from ACME is not there until it is issued).
    pub fn trust(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        match &self.tls_cert {
            Some(chain) if chain.exists() => trusting(builder, chain),
            _ => builder,
        }
    }

    /// `builder` finished as a client that sends the owner's admin token.
    pub fn owner_client(&self, builder: reqwest::ClientBuilder) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        self.trust(builder)
            .default_headers(headers)
            .build()
            .unwrap()
    }

    /// The locker's own origin: `http://locker.localhost:PORT`.
    pub fn origin(&self) -> String {
        format!("{}://locker.localhost:{}", self.scheme, self.port)
    }

    /// A service's origin: `http://NAME.locker.localhost:PORT`.
    pub fn service_origin(&self, name: &str) -> String {
        format!("{}://{name}.locker.localhost:{}", self.scheme, self.port)
    }

    /// Waits for this process's `host.json`, and returns it.
    fn wait_until_serving(&mut self) -> Value {
        let started = Instant::now();
        let record_path = self.root.join("host.json");
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("locker serve exited with {status}: {}", self.host_log());
            }
            if let Ok(text) = std::fs::read_to_string(&record_path)
                && let Ok(record) = serde_json::from_str::<Value>(&text)
                && record["pid"].as_u64() == Some(self.child.id() as u64)
            {
                return record;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "locker did not start: {}",
                self.host_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn host_log(&self) -> String {
        std::fs::read_to_string(self.root.with_extension("host.log")).unwrap_or_default()
    }

    /// The URL of `path` written as one path for the whole locker: `/` and
    /// `/_locker/…` on the locker's origin, `/<service>/<rest>` as `/<rest>`
    /// on the service's own origin.
    pub fn url(&self, path: &str) -> String {
        if path == "/" || path.starts_with("/_locker") {
            return format!("{}{path}", self.origin());
        }
        let below = path.strip_prefix('/').expect("a path starts with /");
        let (service, rest) = below.split_once('/').unwrap_or((below, ""));
        format!("{}/{rest}", self.service_origin(service))
    }

    /// Sends `request` as written over a fresh connection and returns what
    /// comes back until the host closes it (send `Connection: close`).
    pub async fn raw_request(&self, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.address.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the host kept the connection open for 10 s")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        self.send(self.http.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        self.send(self.http.post(self.url(path)).body(body)).await
    }

    pub async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        self.send(self.http.put(self.url(path)).body(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, String) {
        self.send(self.http.delete(self.url(path))).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, String) {
        let response = request.send().await.expect("request failed");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// A service's status from the admin API.
    pub async fn status(&self, service: &str) -> Value {
        let (code, body) = self.get(&format!("/_locker/api/services/{service}")).await;
        assert_eq!(code, 200, "status of {service}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls a service's status until `ready` holds (or panics after `limit`).
    pub async fn wait_for_status(
        &self,
        service: &str,
        limit: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let what = format!("{service} to reach the expected state");
        eventually(&what, limit, async || {
            let status = self.status(service).await;
            if ready(&status) {
                Ok(status)
            } else {
                Err(status)
            }
        })
        .await
    }

    /// Asks the host to shut down and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "locker did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the folder `from`, and everything in it, to `to` (which must not exist).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A listing of every file under `dir` with its size, to prove nothing changed.
pub fn snapshot(dir: &Path) -> Vec<(String, u64)> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(base).unwrap().display().to_string();
            if meta.is_dir() {
                out.push((format!("{rel}/"), 0));
                walk(base, &path, out);
            } else if !rel.starts_with("locker.db") && rel != "locker.lock" {
                out.push((rel, meta.len()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A plain HTTP server on loopback that answers every request with `body`
/// and counts the connections it got.
pub async fn loopback_server(
    body: &'static str,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = stream.read(&mut head).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, served)
}

/// Runs `locker <args> --root <root>` with `input` on its standard input.
pub async fn cli_with_input(root: &Path, args: &[&str], input: &str) -> CliOutput {
    cli_with(root, args, input, &[]).await
}

/// Runs `locker <args> --root <root>` with `input` on its standard input
/// and `env` set.
pub async fn cli_with(root: &Path, args: &[&str], input: &str, env: &[(&str, &Path)]) -> CliOutput {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(locker_bin())
        .args(args)
        .arg("--root")
        .arg(root)
        .env_remove("LOCKER_ROOT")
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run locker");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    CliOutput::from(child.wait_with_output().await.unwrap())
}

/// wkg, as `scripts/setup-test-tools` installs it; `None` (and a note
/// saying why) where it is missing.
pub fn wkg() -> Option<PathBuf> {
    let tools = std::env::var_os("LOCKER_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".local/share/locker-test-tools")
        });
    let wkg = tools.join("wkg-0.16.1/bin/wkg");
    if wkg.exists() {
        return Some(wkg);
    }
    eprintln!(
        "skipped: {} is missing (scripts/setup-test-tools installs it)",
        wkg.display()
    );
    None
}

/// A free port on loopback (bound, then let go).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the browser script `tests/browser/<script>` (Playwright driving
/// Debian's Chromium) with `args` as JSON, and returns the JSON it prints:
/// what it saw.
pub async fn browser_script(script: &str, args: &Value) -> Value {
    let run = tokio::process::Command::new("python3")
        .arg(workspace().join("tests/browser").join(script))
        .arg(args.to_string())
        .env("PYTHONPATH", workspace().join(".tools/browser"))
        .output()
        .await
        .expect("cannot run python3");
    assert!(
        run.status.success(),
        "the browser script failed (scripts/setup-test-tools installs Chromium and Playwright): {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

/// `locker publish DIR --to REGISTRY/NAMESPACE --key KEY`, insisting it worked.
pub async fn publish_to(registry: &str, key: &Path, package: &Path) {
    let out = tokio::process::Command::new(locker_bin())
        .arg("publish")
        .arg(package)
        .args(["--to", registry, "--key"])
        .arg(key)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate authority (`ca.pem`) and a certificate it signed for
/// `names`: `(chain.pem, key.pem)`, all in `dir`, the chain holding both.
pub fn certificate_for(
    dir: &std::path::Path,
    names: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Locker test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let leaf = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let chain = dir.join("chain.pem");
    let key_file = dir.join("key.pem");
    std::fs::write(&chain, leaf.pem() + &ca_cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    (chain, key_file)
}

/// Where a redirect points.
pub fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

/// The value a response sets for cookie `name`, checking its attributes.
pub fn cookie(response: &reqwest::Response, name: &str) -> String {
    let set = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"));
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");
    if name.starts_with("__Host-") {
        assert!(set.contains("; Secure") && set.contains("Path=/"), "{set}");
    }
    set.split(';').next().unwrap()[name.len() + 1..].to_string()
}
