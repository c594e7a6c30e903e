//! The `locker` command line.
//!
//! Every command takes `--root`. Commands other than `serve` work whether or
//! not a host serves that root: when one does (it holds the root's lock and
//! publishes its address in `host.json`), they go through its admin API;
//! otherwise they take the lock themselves and change the root directly. The
//! lock is what keeps two commands from ever changing a root at once.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};

use crate::bus::DeliveryPolicy;
use crate::catalog::{Catalog, InstalledService};
use crate::client::AdminClient;
use crate::event_store::EventStore;
use crate::package::Package;
use crate::root::{HostRecord, LockerRoot, RootAccess};
use crate::scheduler::JobPolicy;
use crate::service::{Defaults, ServiceStatus};
use crate::supervisor::{HostOptions, Supervisor};

#[derive(Parser)]
#[command(
    name = "locker",
    version,
    about = "A personal data locker whose services are WebAssembly components"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct RootArg {
    /// The locker root: one folder that holds everything of this locker.
    #[arg(
        long,
        env = "LOCKER_ROOT",
        default_value = "./locker-data",
        global = true
    )]
    root: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the locker: the admin API and every installed service.
    Serve(ServeArgs),
    /// Install a service from a package folder (locker.toml + component) or a .wasm.
    Install {
        /// A folder holding locker.toml and the component it names, or a .wasm file.
        path: PathBuf,
        /// The manifest, when PATH is a .wasm file.
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        root: RootArg,
    },
    /// Upgrade an installed service to a new package, keeping its data.
    Upgrade {
        /// A folder holding locker.toml and the component it names, or a .wasm file.
        path: PathBuf,
        /// The manifest, when PATH is a .wasm file.
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        root: RootArg,
    },
    /// List installed services and their state.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: RootArg,
    },
    /// Show one service's state, counters and last error.
    Status {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: RootArg,
    },
    /// Start a stopped service (and load it now, when a host is serving).
    Start {
        name: String,
        #[command(flatten)]
        root: RootArg,
    },
    /// Stop a service: unload it and refuse its requests until it is started.
    Stop {
        name: String,
        #[command(flatten)]
        root: RootArg,
    },
    /// Remove a service, and its data unless --keep-data.
    Uninstall {
        name: String,
        /// Keep the service's working directory and log.
        #[arg(long)]
        keep_data: bool,
        #[command(flatten)]
        root: RootArg,
    },
    /// Recent events, newest first; or follow them live.
    Events {
        /// Only topics matching this pattern (`contact/*`).
        #[arg(long)]
        topic: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print events as they are published (needs a serving host).
        #[arg(long, short)]
        follow: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: RootArg,
    },
    /// Deliveries that used up their attempts.
    DeadLetters {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: RootArg,
    },
    /// Deliver dead letters again: all, one service's, or one event's.
    Replay {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        event: Option<String>,
        #[command(flatten)]
        root: RootArg,
    },
    /// Scheduled jobs: each job, its next time, last run and result.
    Jobs {
        #[command(subcommand)]
        action: Option<JobsAction>,
        /// Only this service's jobs.
        #[arg(long)]
        service: Option<String>,
        #[arg(long, global = true)]
        json: bool,
        #[command(flatten)]
        root: RootArg,
    },
    /// Print a service's log (its stdout and stderr, and the host's notes).
    Logs {
        name: String,
        /// Keep printing as the log grows.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        root: RootArg,
    },
}

#[derive(Subcommand)]
enum JobsAction {
    /// Run a job now (its schedule does not change) and print how it went.
    Run {
        /// `SERVICE/JOB`, or just `JOB` when only one service has a job of that name.
        name: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; see host.json).
    #[arg(long, default_value = "127.0.0.1:8042")]
    listen: SocketAddr,
    /// Unload a service after this long without requests (unless its manifest says otherwise).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Default deadline of one request.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Default memory limit of one instance.
    #[arg(long, default_value = "128 MiB")]
    memory_limit: ByteSize,
    /// Where compiled code is cached (default: <root>/cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Attempts at delivering an event before it becomes a dead letter.
    #[arg(long, default_value_t = 5)]
    event_attempts: u32,
    /// Wait after a failed delivery; doubles with each further failure.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    event_backoff: Duration,
    /// How long delivered events stay in the history (one still owed to a
    /// subscriber, pending or dead, is kept however old).
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
    event_retention: Duration,
    /// Wait after a failed job run before retrying; doubles with each further failure.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    job_retry: Duration,
    #[command(flatten)]
    root: RootArg,
}

pub fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Install {
                path,
                manifest,
                root,
            } => install(&root.root, &path, manifest.as_deref()).await,
            Command::Upgrade {
                path,
                manifest,
                root,
            } => upgrade(&root.root, &path, manifest.as_deref()).await,
            Command::List { json, root } => list(&root.root, json).await,
            Command::Status { name, json, root } => status(&root.root, &name, json).await,
            Command::Start { name, root } => lifecycle(&root.root, &name, Lifecycle::Start).await,
            Command::Stop { name, root } => lifecycle(&root.root, &name, Lifecycle::Stop).await,
            Command::Uninstall {
                name,
                keep_data,
                root,
            } => lifecycle(&root.root, &name, Lifecycle::Uninstall { keep_data }).await,
            Command::Logs { name, follow, root } => logs(&root.root, &name, follow).await,
            Command::Events {
                topic,
                limit,
                follow,
                json,
                root,
            } => crate::cli_events::events(&root.root, topic, limit, follow, json).await,
            Command::DeadLetters { json, root } => {
                crate::cli_events::dead_letters(&root.root, json).await
            }
            Command::Replay {
                service,
                event,
                root,
            } => crate::cli_events::replay(&root.root, service, event).await,
            Command::Jobs {
                action: None,
                service,
                json,
                root,
            } => crate::cli_jobs::list(&root.root, service, json).await,
            Command::Jobs {
                action: Some(JobsAction::Run { name }),
                json,
                root,
                ..
            } => crate::cli_jobs::run(&root.root, &name, json).await,
        }
    })
}

async fn serve(args: ServeArgs) -> Result<()> {
    let root = LockerRoot::open(&args.root.root)?;
    let Some(_lock) = root.try_lock()? else {
        let by = root
            .read_host_record()
            .map(|r| format!(" by pid {} at {}", r.pid, r.url))
            .unwrap_or_default();
        bail!("locker root {} is already in use{by}", root.dir().display());
    };
    let options = HostOptions {
        defaults: Defaults {
            idle_unload: args.idle_timeout,
            timeout: args.request_timeout,
            memory: args.memory_limit,
            ..Defaults::default()
        },
        cache_dir: args.cache_dir,
        delivery: DeliveryPolicy {
            attempts: args.event_attempts,
            backoff: args.event_backoff,
            ..DeliveryPolicy::default()
        },
        jobs: JobPolicy {
            first_retry: args.job_retry,
            ..JobPolicy::default()
        },
        event_retention: args.event_retention,
        ..HostOptions::default()
    };
    let supervisor = tokio::task::block_in_place(|| Supervisor::new(root.clone(), options))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    root.write_host_record(&HostRecord {
        pid: std::process::id(),
        url: url.clone(),
    })?;
    tracing::info!(
        root = %root.dir().display(),
        services = supervisor.statuses().len(),
        pooling = supervisor.runtime.pooling,
        "locker listening on {url}"
    );
    println!("locker listening on {url}");

    let reaper = {
        let supervisor = supervisor.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(supervisor.reap_interval()).await;
                supervisor.reap_idle();
            }
        })
    };
    let pruner = {
        let supervisor = supervisor.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = supervisor.prune_events().await {
                    tracing::warn!("cannot prune the event history: {e:#}");
                }
                tokio::time::sleep(supervisor.prune_interval()).await;
            }
        })
    };
    let served = crate::server::serve(supervisor, listener, shutdown_signal()).await;
    reaper.abort();
    pruner.abort();
    root.remove_host_record();
    served
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("cannot listen for SIGTERM");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Reaches the root: through the serving host, or directly under its lock.
pub(crate) enum Access {
    Host(AdminClient),
    Offline {
        catalog: Catalog,
        _lock: crate::root::RootLock,
    },
}

impl Access {
    /// The root's event store, when no host serves it.
    pub(crate) fn offline_events(&self) -> Result<Option<EventStore>> {
        match self {
            Access::Host(_) => Ok(None),
            Access::Offline { catalog, .. } => Ok(Some(EventStore::open(catalog.root())?)),
        }
    }
}

pub(crate) fn access(root_dir: &Path) -> Result<Access> {
    let root = LockerRoot::open(root_dir)?;
    Ok(match root.lock_or_find_host(Duration::from_secs(30))? {
        RootAccess::Served(record) => Access::Host(AdminClient::new(&record.url)),
        RootAccess::Offline(lock) => Access::Offline {
            catalog: Catalog::open(&root)?,
            _lock: lock,
        },
    })
}

async fn install(root: &Path, path: &Path, manifest: Option<&Path>) -> Result<()> {
    let package = tokio::task::block_in_place(|| Package::read(path, manifest))?;
    let status = match access(root)? {
        Access::Host(client) => client.install(&package).await?,
        Access::Offline { catalog, .. } => offline_status(catalog.install(&package)?),
    };
    println!(
        "installed {} {} ({}, {})",
        status.name, status.version, status.kind, status.digest
    );
    Ok(())
}

async fn upgrade(root: &Path, path: &Path, manifest: Option<&Path>) -> Result<()> {
    let package = tokio::task::block_in_place(|| Package::read(path, manifest))?;
    let status = match access(root)? {
        Access::Host(client) => client.upgrade(&package).await?,
        // The jobs of its new manifest are registered when a host next starts.
        Access::Offline { catalog, .. } => offline_status(catalog.upgrade(&package)?.1),
    };
    println!(
        "upgraded {} to {} ({})",
        status.name, status.version, status.digest
    );
    Ok(())
}

async fn list(root: &Path, json: bool) -> Result<()> {
    let statuses = match access(root)? {
        Access::Host(client) => client.services().await?,
        Access::Offline { catalog, .. } => {
            catalog.list()?.into_iter().map(offline_status).collect()
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:<11} {:<10} {:>6} {:>9}  LAST ERROR",
        "NAME", "VERSION", "KIND", "STATE", "LOADS", "REQUESTS"
    );
    for s in statuses {
        let state = serde_json::to_value(s.state)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        println!(
            "{:<20} {:<10} {:<11} {:<10} {:>6} {:>9}  {}",
            s.name,
            s.version,
            s.kind,
            state,
            s.loads,
            s.requests,
            s.last_error.unwrap_or_default()
        );
    }
    Ok(())
}

async fn status(root: &Path, name: &str, json: bool) -> Result<()> {
    let status = match access(root)? {
        Access::Host(client) => client.service(name).await?,
        Access::Offline { catalog, .. } => offline_status(catalog.require(name)?),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", toml::to_string(&status)?);
    }
    Ok(())
}

enum Lifecycle {
    Start,
    Stop,
    Uninstall { keep_data: bool },
}

async fn lifecycle(root: &Path, name: &str, action: Lifecycle) -> Result<()> {
    let status = match (access(root)?, &action) {
        (Access::Host(client), Lifecycle::Start) => client.start(name).await?,
        (Access::Host(client), Lifecycle::Stop) => client.stop(name).await?,
        (Access::Host(client), Lifecycle::Uninstall { keep_data }) => {
            client.uninstall(name, *keep_data).await?
        }
        (Access::Offline { catalog, .. }, Lifecycle::Start) => {
            offline_status(catalog.set_stopped(name, false)?)
        }
        (Access::Offline { catalog, .. }, Lifecycle::Stop) => {
            offline_status(catalog.set_stopped(name, true)?)
        }
        (Access::Offline { catalog, .. }, Lifecycle::Uninstall { keep_data }) => {
            offline_status(catalog.uninstall(name, *keep_data)?)
        }
    };
    let done = match action {
        Lifecycle::Start => "started",
        Lifecycle::Stop => "stopped",
        Lifecycle::Uninstall { keep_data: true } => "uninstalled (data kept)",
        Lifecycle::Uninstall { keep_data: false } => "uninstalled",
    };
    println!("{done} {}", status.name);
    Ok(())
}

/// The status of a service when no host runs it: nothing is loaded.
fn offline_status(installed: InstalledService) -> ServiceStatus {
    ServiceStatus::unloaded(&installed, Supervisor::settings_of(&installed))
}

async fn logs(root_dir: &Path, name: &str, follow: bool) -> Result<()> {
    crate::manifest::validate_service_name(name)?;
    let root = LockerRoot::open(root_dir)?;
    let path = root.log_path(name);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => {
            bail!(
                "service {name:?} has no log yet ({} does not exist)",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut stdout = std::io::stdout();
    std::io::copy(&mut file, &mut stdout)?;
    stdout.flush()?;
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let position = file.stream_position()?;
        if file.metadata()?.len() < position {
            // Truncated or replaced: start again from the top.
            file.seek(SeekFrom::Start(0))?;
        }
        let mut chunk = Vec::new();
        file.read_to_end(&mut chunk)?;
        stdout.write_all(&chunk)?;
        stdout.flush()?;
    }
}
