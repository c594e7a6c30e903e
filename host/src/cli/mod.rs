//! The `locker` command line: one module per group of commands.
//!
//! Every command takes `--root`. Commands other than `serve` work whether or
//! not a host serves that root: when one does (it holds the root's lock and
//! publishes its address in `host.json`), they go through its admin API
//! (`client`); otherwise they take the lock themselves and change the root
//! directly (`access`). The lock is what keeps two commands from ever
//! changing a root at once.

mod access;
mod backup;
pub mod client;
mod cluster;
mod config;
mod develop;
mod events;
mod jobs;
mod logs;
mod owner;
mod publish;
mod registry;
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

/// Which locker a command works on: a root on this machine (through the
/// host serving it, or directly), or a host elsewhere (`--url`, `--token`).
#[derive(Args, Clone)]
pub(crate) struct Target {
    /// The locker root: one folder that holds everything of this locker.
    #[arg(
        long,
        env = "LOCKER_ROOT",
        default_value = "./locker-data",
        global = true
    )]
    root: PathBuf,
    /// Work on the locker host at this URL instead, through its admin API.
    #[arg(long, env = "LOCKER_URL", global = true)]
    url: Option<String>,
    /// The API token for --url (on this machine the root's `cli.token` is used).
    #[arg(long, env = "LOCKER_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the locker: the admin API and every installed service.
    Serve(Box<ServeArgs>),
    /// Start a service: a working one from a template, in Rust, JavaScript or Python.
    New(develop::NewArgs),
    /// Build a service folder into a package folder (target/locker/), checked as install checks it.
    Build(develop::BuildArgs),
    /// Build a service, serve it in a throw-away locker, and rebuild it on each save.
    Dev(Box<develop::DevArgs>),
    /// Make a publisher key (Ed25519) to sign packages with.
    Keygen(publish::KeygenArgs),
    /// Sign a package and push it to an OCI registry as REGISTRY/NAMESPACE/NAME:VERSION.
    Publish(publish::PublishArgs),
    /// Install a service from a package folder (locker.toml + component), a
    /// .wasm, or a registry (REGISTRY/NAMESPACE/NAME[:VERSION|@sha256:…]).
    Install {
        /// A folder holding locker.toml and the component it names, a .wasm
        /// file, or a registry reference (`oci://` forces one).
        path: PathBuf,
        /// The manifest, when PATH is a .wasm file.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// From a registry: trust a publisher this locker does not know yet
        /// without asking.
        #[arg(long)]
        yes: bool,
        /// From a registry: trust only the publisher with this fingerprint
        /// (`SHA256:…`), as scripts should.
        #[arg(long)]
        trust: Option<String>,
        /// From a registry: speak plain HTTP to one that is not on this machine.
        #[arg(long)]
        insecure: bool,
        /// From a registry: take a component no Locker publisher signed
        /// (pushed by wkg, oras…); with --manifest, the manifest it gets,
        /// else the narrowest (no network, no events, no calls).
        #[arg(long)]
        allow_unsigned: bool,
        #[command(flatten)]
        root: Target,
    },
    /// Signed packages in a registry, by the service type they provide.
    Search {
        /// A type or pattern (`contact/*`); default: every package.
        service_type: Option<String>,
        /// The registry (`registry.example`, `localhost:5000`): its
        /// catalog; or `REGISTRY/NAMESPACE`: that namespace's index.
        #[arg(long)]
        registry: String,
        /// Speak plain HTTP to one that is not on this machine.
        #[arg(long)]
        insecure: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: Target,
    },
    /// Logins to registries: kept in the root for the host's pulls.
    Registry {
        #[command(subcommand)]
        action: registry::RegistryAction,
        #[command(flatten)]
        root: Target,
    },
    /// The publisher keys pinned for packages installed from registries.
    Trust {
        #[command(subcommand)]
        action: Option<TrustAction>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: Target,
    },
    /// Upgrade an installed service to a new package, keeping its data.
    Upgrade {
        /// A folder holding locker.toml and the component it names, or a
        /// .wasm file; or the name of a service installed from a registry,
        /// upgraded from there.
        path: PathBuf,
        /// The manifest, when PATH is a .wasm file.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// From a registry: this version instead of the newest.
        #[arg(long)]
        to: Option<String>,
        /// From a registry: speak plain HTTP to one that is not on this machine.
        #[arg(long)]
        insecure: bool,
        /// From a registry: accept what the new version reaches beyond the
        /// installed one without asking.
        #[arg(long)]
        yes: bool,
        /// From a registry: take an unsigned version (the service was
        /// installed unsigned).
        #[arg(long)]
        allow_unsigned: bool,
        #[command(flatten)]
        root: Target,
    },
    /// Go back to the version a service had before its last upgrade.
    Rollback {
        name: String,
        /// Put back its folder as that upgrade found it, too (what it wrote
        /// since is lost).
        #[arg(long)]
        data: bool,
        #[command(flatten)]
        root: Target,
    },
    /// List installed services and their state.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: Target,
    },
    /// Show one service's state, counters and last error; with no service
    /// named, the host's: its backups (schedule, last, kept).
    Status {
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: Target,
    },
    /// Start a stopped service (and load it now, when a host is serving).
    Start {
        name: String,
        #[command(flatten)]
        root: Target,
    },
    /// Stop a service: unload it and refuse its requests until it is started.
    Stop {
        name: String,
        #[command(flatten)]
        root: Target,
    },
    /// Remove a service, and its data unless --keep-data.
    Uninstall {
        name: String,
        /// Keep the service's working directory and log.
        #[arg(long)]
        keep_data: bool,
        #[command(flatten)]
        root: Target,
    },
    /// Recent events, newest first; or follow them live; or publish one.
    #[command(args_conflicts_with_subcommands = true)]
    Events {
        #[command(subcommand)]
        action: Option<EventsAction>,
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
        root: Target,
    },
    /// The installed data types: who defines and provides them, their
    /// topics and schemas.
    Types {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: Target,
    },
    /// Deliveries that used up their attempts.
    DeadLetters {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: Target,
    },
    /// Deliver dead letters again: all, one service's, or one event's.
    Replay {
        #[arg(long)]
        service: Option<String>,
        #[arg(long)]
        event: Option<String>,
        #[command(flatten)]
        root: Target,
    },
    /// The hosts sharing this locker (`serve --cluster`).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
        #[arg(long, global = true)]
        json: bool,
        #[command(flatten)]
        root: Target,
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
        root: Target,
    },
    /// API tokens for scripts and a CLI elsewhere: make, list, revoke.
    Token {
        #[command(subcommand)]
        action: TokenAction,
        #[arg(long, global = true)]
        json: bool,
        #[command(flatten)]
        root: Target,
    },
    /// The owner: a new set-up link, browser sessions.
    Owner {
        #[command(subcommand)]
        action: OwnerAction,
        #[command(flatten)]
        root: Target,
    },
    /// A service's settings (secrets show only whether they are set); or
    /// set and unset them.
    #[command(args_conflicts_with_subcommands = true)]
    Config {
        #[command(subcommand)]
        action: Option<ConfigAction>,
        /// The service whose settings to show.
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        root: Target,
    },
    /// Back the whole locker up into one archive, while it serves: one
    /// consistent snapshot (services' secrets sealed under a passphrase, or
    /// left out).
    Backup {
        /// The archive to write (`.tar.zst`: tar and zstd open it).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        secrets: backup::PassphraseSource,
        #[command(flatten)]
        root: Target,
    },
    /// Restore a backup into a new, empty root (--root); a damaged or
    /// truncated archive, or a wrong passphrase, leaves it empty.
    Restore {
        archive: PathBuf,
        #[command(flatten)]
        secrets: backup::PassphraseSource,
        #[command(flatten)]
        root: Target,
    },
    /// Write one service's folder (its plain files) into an archive.
    Export {
        name: String,
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        root: Target,
    },
    /// Replace a stopped service's folder with an export.
    Import {
        name: String,
        archive: PathBuf,
        #[command(flatten)]
        root: Target,
    },
    /// Print a service's log (its stdout and stderr, and the host's notes).
    Logs {
        name: String,
        /// Keep printing as the log grows.
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        root: Target,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Make a token; it is printed once, and only its hash is kept.
    Create {
        /// `admin` (everything), `read` (every GET of the admin API), or
        /// `service:NAME` (that service's origin).
        #[arg(long)]
        scope: String,
        /// A note saying what it is for.
        #[arg(long)]
        label: Option<String>,
        /// Stops working after this long (`30d`, `12h`); default: until revoked.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<std::time::Duration>,
    },
    /// Every token: id, scope, label, expiry, last use.
    List,
    /// Revoke a token at once.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum TrustAction {
    /// Every pinned key (the default).
    List,
    /// Forget the key pinned for a package: its next install asks again.
    Remove { package: String },
}

#[derive(Subcommand)]
enum OwnerAction {
    /// Print a new one-time link to choose the owner's password.
    Reset,
    /// Print a one-time link that logs a browser in (for ten minutes).
    LoginLink,
    /// The owner's browser sessions.
    Sessions {
        #[arg(long)]
        json: bool,
    },
    /// End a browser session.
    Logout { id: String },
}

#[derive(Subcommand)]
enum EventsAction {
    /// Publish an event as the owner, with the checks a service's publish
    /// gets (a topic bound to a data type takes only payloads of that type).
    Publish {
        topic: String,
        /// The payload, JSON; `-` or nothing: read from standard input.
        payload: Option<String>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Set one: VALUE, or read from standard input (a secret only so, never
    /// from the command line, where the shell's history and the process
    /// list would keep it).
    Set {
        name: String,
        key: String,
        value: Option<String>,
    },
    /// Unset one: the service reads its default again, if it has one.
    Unset { name: String, key: String },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// The hosts alive, which host owns each service, and this host's NATS connection.
    Status,
}

#[derive(Subcommand)]
enum JobsAction {
    /// Run a job now, one attempt (its schedule does not change), and print how it went.
    Run {
        /// `SERVICE/JOB`, or just `JOB` when only one service has a job of that name.
        name: String,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    // Two TLS stacks' providers are linked (ring, the host's; aws-lc-rs,
    // the registry client's): name the host's, so that nothing that asks
    // rustls for the process's default finds two.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Moving a locker's data in or out yields to the services it serves:
    // the runtime's threads inherit the priority of this one.
    if matches!(
        cli.command,
        Command::Backup { .. } | Command::Restore { .. } | Command::Export { .. }
    ) {
        crate::backup::lower_priority();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::serve(*args).await,
            Command::New(args) => develop::new(args),
            Command::Build(args) => tokio::task::block_in_place(|| develop::build(args)),
            Command::Dev(args) => develop::dev(*args).await,
            Command::Keygen(args) => publish::keygen(args),
            Command::Publish(args) => publish::publish(args).await,
            Command::Install {
                path,
                manifest,
                yes,
                trust,
                insecure,
                allow_unsigned,
                root,
            } => match crate::distribution::registry_reference(&path.to_string_lossy()) {
                Some(reference) => {
                    let consent = registry::Consent {
                        yes,
                        trust,
                        insecure,
                        allow_unsigned,
                        manifest: registry::manifest_text(manifest.as_deref())?,
                    };
                    registry::install(&root, &reference, &consent).await
                }
                None => services::install(&root, &path, manifest.as_deref()).await,
            },
            Command::Search {
                service_type,
                registry,
                insecure,
                json,
                root,
            } => registry::search(&root, service_type.as_deref(), &registry, insecure, json).await,
            Command::Registry { action, root } => registry::registry(&root, action).await,
            Command::Trust { action, json, root } => match action {
                None | Some(TrustAction::List) => registry::list(&root, json).await,
                Some(TrustAction::Remove { package }) => registry::remove(&root, &package).await,
            },
            Command::Upgrade {
                path,
                manifest,
                to,
                insecure,
                yes,
                allow_unsigned,
                root,
            } => {
                let name = path.to_string_lossy().to_string();
                if !path.exists()
                    && manifest.is_none()
                    && crate::package::manifest::validate_service_name(&name).is_ok()
                {
                    let request = crate::api::UpgradeOfferRequest {
                        to,
                        insecure,
                        allow_unsigned,
                    };
                    registry::upgrade(&root, &name, &request, yes).await
                } else {
                    services::upgrade(&root, &path, manifest.as_deref()).await
                }
            }
            Command::Rollback { name, data, root } => services::rollback(&root, &name, data).await,
            Command::List { json, root } => services::list(&root, json).await,
            Command::Status {
                name: Some(name),
                json,
                root,
            } => services::status(&root, &name, json).await,
            Command::Status {
                name: None,
                json,
                root,
            } => backup::host_status(&root, json).await,
            Command::Backup { to, secrets, root } => backup::backup(&root, &to, &secrets).await,
            Command::Restore {
                archive,
                secrets,
                root,
            } => backup::restore(&root, &archive, &secrets).await,
            Command::Export { name, to, root } => backup::export(&root, &name, &to).await,
            Command::Import {
                name,
                archive,
                root,
            } => backup::import(&root, &name, &archive).await,
            Command::Start { name, root } => {
                services::lifecycle(&root, &name, Lifecycle::Start).await
            }
            Command::Stop { name, root } => {
                services::lifecycle(&root, &name, Lifecycle::Stop).await
            }
            Command::Uninstall {
                name,
                keep_data,
                root,
            } => services::lifecycle(&root, &name, Lifecycle::Uninstall { keep_data }).await,
            Command::Token { action, json, root } => match action {
                TokenAction::Create {
                    scope,
                    label,
                    expires,
                } => owner::create_token(&root, &scope, label, expires, json).await,
                TokenAction::List => owner::list_tokens(&root, json).await,
                TokenAction::Revoke { id } => owner::revoke_token(&root, &id).await,
            },
            Command::Owner { action, root } => match action {
                OwnerAction::Reset => owner::reset(&root).await,
                OwnerAction::LoginLink => owner::login_link(&root).await,
                OwnerAction::Sessions { json } => owner::sessions(&root, json).await,
                OwnerAction::Logout { id } => owner::logout(&root, &id).await,
            },
            Command::Logs { name, follow, root } => logs::logs(&root, &name, follow).await,
            Command::Config {
                action,
                name,
                json,
                root,
            } => match (action, name) {
                (Some(ConfigAction::Set { name, key, value }), _) => {
                    config::set(&root, &name, &key, value).await
                }
                (Some(ConfigAction::Unset { name, key }), _) => {
                    config::unset(&root, &name, &key).await
                }
                (None, Some(name)) => config::show(&root, &name, json).await,
                (None, None) => anyhow::bail!(
                    "name a service: `locker config NAME`, `locker config set NAME KEY`"
                ),
            },
            Command::Events {
                action: Some(EventsAction::Publish { topic, payload }),
                root,
                ..
            } => events::publish(&root, &topic, payload).await,
            Command::Types { json, root } => events::types(&root, json).await,
            Command::Events {
                action: None,
                topic,
                limit,
                follow,
                json,
                root,
            } => events::events(&root, topic, limit, follow, json).await,
            Command::DeadLetters { json, root } => events::dead_letters(&root, json).await,
            Command::Replay {
                service,
                event,
                root,
            } => events::replay(&root, service, event).await,
            Command::Cluster {
                action: ClusterAction::Status,
                json,
                root,
            } => cluster::status(&root, json).await,
            Command::Jobs {
                action: None,
                service,
                json,
                root,
            } => jobs::list(&root, service, json).await,
            Command::Jobs {
                action: Some(JobsAction::Run { name }),
                json,
                root,
                ..
            } => jobs::run(&root, &name, json).await,
        }
    })
}
