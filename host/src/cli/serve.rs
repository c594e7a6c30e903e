//! `locker serve`: the host, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use clap::Args;

use super::RootArg;
use crate::bus::DeliveryPolicy;
use crate::http::ConnectionLimits;
use crate::jobs::JobPolicy;
use crate::runtime::Defaults;
use crate::store::LockerRoot;
use crate::store::root::HostRecord;
use crate::supervisor::{HostOptions, Supervisor};

#[derive(Args)]
pub(super) struct ServeArgs {
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
    /// Close a connection whose request head has not arrived in this long
    /// (an idle keep-alive connection too).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    head_timeout: Duration,
    /// Connections open at once, from all clients.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Connections open at once from one client address.
    #[arg(long, default_value_t = 256)]
    max_connections_per_client: usize,
    #[command(flatten)]
    root: RootArg,
}

pub(super) async fn serve(args: ServeArgs) -> Result<()> {
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
    let background = supervisor.start_background();
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

    let limits = ConnectionLimits {
        head_timeout: args.head_timeout,
        max_open: args.max_connections,
        max_per_client: args.max_connections_per_client,
    };
    let served = crate::http::serve(supervisor, listener, limits, shutdown_signal()).await;
    drop(background);
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
