//! The author's loop: `locker new`, `locker build`, `locker dev`.
//!
//! `dev` builds the service, serves it in a throw-away locker (a child
//! `locker serve` on a free port over a temporary root, removed on exit) or
//! in the one given, installs it, prints a link that logs the developer in
//! and opens it, streams its log, and rebuilds and upgrades it on every
//! save. `--event` and `--job` poke it once it serves.
//!
//! `locker publish` (`cli/publish`) starts from the package folder `build`
//! leaves.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::client::AdminClient;
use crate::develop::{self, BuildOptions, Built, Language, NewService, Sdk};
use crate::package::Package;
use crate::package::manifest::Kind;
use crate::store::LockerRoot;

#[derive(Args)]
pub(super) struct NewArgs {
    /// The service's name (and its folder's, unless --dir).
    name: String,
    #[arg(long, value_enum)]
    lang: Language,
    /// connector, collection or app.
    #[arg(long, default_value = "connector", value_parser = parse_kind)]
    kind: Kind,
    /// It receives events: an event handler and a subscription.
    #[arg(long)]
    events: bool,
    /// It has jobs: a job handler and a `[[schedule]]`.
    #[arg(long)]
    jobs: bool,
    /// Where to write it (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct BuildArgs {
    /// The service folder (default: here).
    dir: Option<PathBuf>,
    /// Build even if nothing changed.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub(super) struct DevArgs {
    /// The service folder (default: here).
    dir: Option<PathBuf>,
    /// Serve it in this locker root (through the host serving it, or a
    /// host started for it) instead of a throw-away one.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Serve it on the locker host at this URL (with --token).
    #[arg(long, requires = "token")]
    url: Option<String>,
    #[arg(long, env = "LOCKER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where a locker started for it listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Publish an event once it serves: `--event TOPIC JSON` (repeatable).
    #[arg(long, num_args = 2, value_names = ["TOPIC", "JSON"])]
    event: Vec<String>,
    /// Run one of its jobs once it serves (repeatable).
    #[arg(long)]
    job: Vec<String>,
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    match text {
        "connector" => Ok(Kind::Connector),
        "collection" => Ok(Kind::Collection),
        "app" => Ok(Kind::App),
        other => Err(format!(
            "{other:?} is not a kind: connector, collection or app"
        )),
    }
}

pub(super) fn new(args: NewArgs) -> Result<()> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let sdk = Sdk::ensure(&develop::tools_dir())?;
    let service = NewService {
        name: args.name,
        language: args.lang,
        kind: args.kind,
        events: args.events,
        jobs: args.jobs,
    };
    let written = develop::new_service(&dir, &service, &sdk)?;
    println!(
        "created {} {} {} in {}:",
        service.language.name(),
        service.kind,
        service.name,
        dir.display()
    );
    for file in written {
        println!("  {}", file.display());
    }
    println!(
        "next: cd {} && locker dev   (or `locker build`, then `locker install target/locker`)",
        dir.display()
    );
    Ok(())
}

pub(super) fn build(args: BuildArgs) -> Result<()> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let built = build_once(&dir, args.force)?;
    report(&built);
    Ok(())
}

pub(super) fn build_once(dir: &Path, force: bool) -> Result<Built> {
    let tools = develop::tools_dir();
    let sdk = Sdk::ensure(&tools)?;
    develop::build(dir, &sdk, &tools, &BuildOptions { force })
}

fn report(built: &Built) {
    let what = if built.rebuilt {
        "built"
    } else {
        "up to date:"
    };
    println!(
        "{what} {} ({}) in {:.1}s: {}",
        built.manifest.name,
        built.language.name(),
        built.took.as_secs_f64(),
        built.dir.display()
    );
}

/// A locker `dev` serves the service in, and what to undo on exit.
struct DevLocker {
    client: AdminClient,
    /// The locker's own origin, for links.
    origin: String,
    /// A host started for this session.
    child: Option<tokio::process::Child>,
    /// A throw-away root, removed on exit.
    scratch: Option<tempfile::TempDir>,
}

pub(super) async fn dev(args: DevArgs) -> Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .canonicalize()
        .context("no such service folder")?;
    let built = tokio::task::block_in_place(|| build_once(&dir, false))?;
    report(&built);
    let mut locker = DevLocker::start(&args).await?;
    let outcome = serve_and_watch(&dir, &built, &locker, &args).await;
    locker.stop().await;
    outcome
}

async fn serve_and_watch(
    dir: &Path,
    built: &Built,
    locker: &DevLocker,
    args: &DevArgs,
) -> Result<()> {
    let name = built.manifest.name.clone();
    deploy(&locker.client, built).await?;
    let service_origin = locker.service_origin(&name);
    println!("serving {name} on {service_origin}/");
    let next = form_urlencoded::Serializer::new(String::new())
        .append_pair("service", &name)
        .append_pair("path", "/")
        .finish();
    let link = locker.client.login_link().await?;
    let next = form_urlencoded::byte_serialize(format!("/_locker/ticket?{next}").as_bytes())
        .collect::<String>();
    println!("log in and open it: {link}&next={next}");
    for poke in args.event.chunks(2) {
        let event = locker.client.publish(&poke[0], &poke[1]).await?;
        println!("published {} on {}", event.id, event.topic);
    }
    for job in &args.job {
        let run = locker.client.run_job(&name, job).await?;
        println!("ran job {name}/{job}: {}", serde_json::to_string(&run)?);
    }
    println!(
        "watching {}: each save rebuilds and upgrades it (Ctrl-C ends)",
        dir.display()
    );

    let log = tokio::spawn(follow_log(locker.client.clone(), name.clone()));
    let watched = watch(dir, &locker.client).await;
    log.abort();
    watched
}

/// Installs the package, or upgrades the service to it.
async fn deploy(client: &AdminClient, built: &Built) -> Result<()> {
    let package = tokio::task::block_in_place(|| Package::read(&built.dir, None))?;
    let installed = client
        .services()
        .await?
        .iter()
        .any(|s| s.name == package.manifest.name);
    if installed {
        client.upgrade(&package).await?;
    } else {
        client.install(&package).await?;
    }
    Ok(())
}

/// Rebuilds and upgrades on every change to the folder's sources, until
/// Ctrl-C.
async fn watch(dir: &Path, client: &AdminClient) -> Result<()> {
    use notify::Watcher;
    let (changed, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let root = dir.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event.paths.iter().any(|p| is_source(&root, p))
        {
            let _ = changed.send(());
        }
    })
    .context("cannot watch the service folder")?;
    watcher
        .watch(dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            change = changes.recv() => if change.is_none() { return Ok(()) },
        }
        // An editor's save is several events: let them settle.
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(150)).await;
        while changes.try_recv().is_ok() {}
        let dir = dir.to_path_buf();
        match tokio::task::block_in_place(|| build_once(&dir, false)) {
            Ok(built) if !built.rebuilt => {}
            Ok(built) => match deploy(client, &built).await {
                Ok(()) => println!(
                    "rebuilt {} and serving it again in {:.1}s",
                    built.manifest.name,
                    started.elapsed().as_secs_f64()
                ),
                Err(error) => println!("the new build was refused: {error:#}"),
            },
            Err(error) => println!("build failed (the last good build still serves): {error:#}"),
        }
    }
}

/// Whether a changed path is one of the service's sources (not a build
/// output, nor an editor's or toolchain's leftovers).
fn is_source(root: &Path, path: &Path) -> bool {
    let Ok(relative) = path.strip_prefix(root) else {
        return false;
    };
    !relative.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        // Hidden files are an editor's swap files, `.git`, and the like.
        matches!(c.as_ref(), "target" | "node_modules" | "__pycache__")
            || c.starts_with('.')
            || c.ends_with('~')
    })
}

/// Prints the service's log as it grows.
async fn follow_log(client: AdminClient, name: String) {
    let mut from = 0;
    loop {
        // A host that is restarting answers nothing for a moment: try again.
        if let Ok((bytes, next)) = client.log(&name, from).await {
            if !bytes.is_empty() {
                print!("{}", String::from_utf8_lossy(&bytes));
            }
            from = next;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

impl DevLocker {
    async fn start(args: &DevArgs) -> Result<DevLocker> {
        if let (Some(url), Some(token)) = (&args.url, &args.token) {
            let client = AdminClient::new(url, token)?;
            return Ok(DevLocker {
                client,
                origin: url.trim_end_matches('/').to_string(),
                child: None,
                scratch: None,
            });
        }
        let (scratch, root_dir) = match &args.root {
            Some(root) => (None, root.clone()),
            None => {
                let scratch = tempfile::Builder::new().prefix("locker-dev-").tempdir()?;
                let dir = scratch.path().to_path_buf();
                (Some(scratch), dir)
            }
        };
        let root = LockerRoot::open(&root_dir)?;
        let child = match root.try_lock()? {
            None => None, // a host serves it already
            Some(lock) => {
                drop(lock);
                root.remove_host_record();
                Some(spawn_host(&root_dir, args.listen, scratch.is_some())?)
            }
        };
        println!(
            "locker root: {}{}",
            root.dir().display(),
            if scratch.is_some() {
                " (throw-away: removed on exit)"
            } else {
                ""
            }
        );
        let record = wait_for_host(&root, Duration::from_secs(30)).await?;
        let token = std::fs::read_to_string(root.dir().join("cli.token"))
            .context("the host left no cli.token")?;
        Ok(DevLocker {
            client: AdminClient::local(&record, token.trim())?,
            origin: record.origin.clone(),
            child,
            scratch,
        })
    }

    /// `http://NAME.<domain>:PORT`, from the locker's own origin.
    fn service_origin(&self, name: &str) -> String {
        match self.origin.split_once("://") {
            Some((scheme, host)) => format!("{scheme}://{name}.{host}"),
            None => format!("http://{name}.{}", self.origin),
        }
    }

    async fn stop(&mut self) {
        if let Some(child) = &mut self.child {
            if let Some(pid) = child.id() {
                // SIGTERM lets the host finish what it is doing.
                let _ = tokio::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        if let Some(scratch) = self.scratch.take() {
            let _ = scratch.close();
        }
    }
}

/// `locker serve` for the dev root, as a child process.
fn spawn_host(
    root: &Path,
    listen: std::net::SocketAddr,
    throw_away: bool,
) -> Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("cannot find the locker binary")?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("serve")
        .arg("--root")
        .arg(root)
        .arg("--listen")
        .arg(listen.to_string());
    if throw_away {
        // Compiled code outlives the throw-away root, so the next `locker
        // dev` of the same build starts warm.
        command
            .arg("--cache-dir")
            .arg(develop::tools_dir().join("cache"));
    }
    command
        .env(
            "LOCKER_LOG",
            std::env::var("LOCKER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start a locker host")
}

async fn wait_for_host(
    root: &LockerRoot,
    patience: Duration,
) -> Result<crate::store::root::HostRecord> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(record) = root.read_host_record()
            && root.dir().join("cli.token").is_file()
        {
            return Ok(record);
        }
        if Instant::now() > deadline {
            bail!("the locker host for {} did not start", root.dir().display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
