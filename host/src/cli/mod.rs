//! The `locker` command line: one module per group of commands.
//!
//! Every command takes `--root`. Commands other than `serve` work whether or
//! not a host serves that root: when one does (it holds the root's lock and
//! publishes its address in `host.json`), they go through its admin API
//! (`client`); otherwise they take the lock themselves and change the root
//! directly (`access`). The lock is what keeps two commands from ever
//! changing a root at once.

mod access;
pub mod client;
mod events;
mod jobs;
mod logs;
mod serve;
mod services;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use serve::ServeArgs;
use services::Lifecycle;

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

pub fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::serve(args).await,
            Command::Install {
                path,
                manifest,
                root,
            } => services::install(&root.root, &path, manifest.as_deref()).await,
            Command::Upgrade {
                path,
                manifest,
                root,
            } => services::upgrade(&root.root, &path, manifest.as_deref()).await,
            Command::List { json, root } => services::list(&root.root, json).await,
            Command::Status { name, json, root } => services::status(&root.root, &name, json).await,
            Command::Start { name, root } => {
                services::lifecycle(&root.root, &name, Lifecycle::Start).await
            }
            Command::Stop { name, root } => {
                services::lifecycle(&root.root, &name, Lifecycle::Stop).await
            }
            Command::Uninstall {
                name,
                keep_data,
                root,
            } => services::lifecycle(&root.root, &name, Lifecycle::Uninstall { keep_data }).await,
            Command::Logs { name, follow, root } => logs::logs(&root.root, &name, follow).await,
            Command::Events {
                topic,
                limit,
                follow,
                json,
                root,
            } => events::events(&root.root, topic, limit, follow, json).await,
            Command::DeadLetters { json, root } => events::dead_letters(&root.root, json).await,
            Command::Replay {
                service,
                event,
                root,
            } => events::replay(&root.root, service, event).await,
            Command::Jobs {
                action: None,
                service,
                json,
                root,
            } => jobs::list(&root.root, service, json).await,
            Command::Jobs {
                action: Some(JobsAction::Run { name }),
                json,
                root,
                ..
            } => jobs::run(&root.root, &name, json).await,
        }
    })
}
