//! `locker serve`: the host, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use clap::Args;

use super::Target;
use crate::bus::DeliveryPolicy;
use crate::cluster::{Cluster, ClusterOptions, NatsAccess};
use crate::http::certificates::{AcmeSettings, Certificates, keep_certified};
use crate::http::proxy::forwarded;
use crate::http::{ConnectionLimits, Front, Origins};
use crate::jobs::JobPolicy;
use crate::owner::{Owner, SessionPolicy};
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
    /// Compile each service into the code cache ahead of its first request:
    /// right after an install or upgrade, and at start for those not there.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    compile_ahead: bool,
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
    /// The locker's own host name: its dashboard and admin API live there,
    /// each service on `<service>.<domain>`.
    #[arg(long, env = "LOCKER_DOMAIN", default_value = "locker.localhost")]
    domain: String,
    /// A login session unused for this long ends.
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
    session_idle: Duration,
    /// A login session ends this long after login, however much it is used.
    #[arg(long, default_value = "30days", value_parser = humantime::parse_duration)]
    session_lifetime: Duration,
    /// Serve HTTPS with this certificate chain (PEM); it must name the
    /// domain and `*.<domain>` (a wildcard certificate covers every service).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with certificates from this ACME server (Let's Encrypt:
    /// https://acme-v02.api.letsencrypt.org/directory), naming the domain
    /// and every service; the server checks them on this port (tls-alpn-01).
    #[arg(long, conflicts_with = "tls_cert")]
    acme_directory: Option<String>,
    /// An address the ACME server may write to about the certificates.
    #[arg(long, requires = "acme_directory")]
    acme_contact: Option<String>,
    /// A CA certificate (PEM) to trust for the ACME server's own HTTPS
    /// (for a test server such as pebble).
    #[arg(long, requires = "acme_directory")]
    acme_server_root: Option<PathBuf>,
    /// Keep metrics for `/_locker/metrics` (a token of scope `metrics` or
    /// `read` reads them).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    metrics: bool,
    /// Share one locker with other hosts through these NATS servers (with
    /// JetStream): `nats://host:4222`, repeated or comma-separated; a login
    /// in them as `nats://user:password@host:4222` (or `tls://`). Every
    /// host must mount the same volume at `<root>/services`.
    #[arg(
        long,
        value_delimiter = ',',
        env = "LOCKER_CLUSTER",
        hide_env_values = true
    )]
    cluster: Vec<String>,
    /// A NATS credentials file (a user's JWT and nkey seed) to log in with.
    #[arg(long, requires = "cluster")]
    cluster_credentials: Option<PathBuf>,
    /// The certificate authority (PEM) whose certificates the NATS servers
    /// present; TLS is then required.
    #[arg(long, requires = "cluster")]
    cluster_ca: Option<PathBuf>,
    /// How many copies JetStream keeps of the cluster's buckets.
    #[arg(long, default_value_t = 3, requires = "cluster")]
    cluster_replicas: usize,
    /// How many times an event is handed to a subscriber's host without an
    /// answer (the host died each time) before it is a dead letter.
    #[arg(long, default_value_t = 20, requires = "cluster")]
    event_max_deliveries: i64,
    /// How long a host's hold on a service lasts without renewal: at most
    /// this long, a service whose host died waits for another.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, requires = "cluster")]
    lease: Duration,
    #[command(flatten)]
    root: Target,
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
        compile_ahead: args.compile_ahead,
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
        metrics: args.metrics,
        ..HostOptions::default()
    };
    let certificates = Arc::new(Certificates::default());
    let served_cert = match (&args.tls_cert, &args.tls_key, &args.acme_directory) {
        (Some(cert), Some(key), _) => {
            let read = |path: &PathBuf| {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
            };
            certificates
                .install(&read(cert)?, &read(key)?)
                .with_context(|| {
                    format!("cannot serve {} with {}", cert.display(), key.display())
                })?;
            Some(cert.canonicalize()?)
        }
        (_, _, Some(_)) => Some(root.dir().join("tls/cert.pem")),
        _ => None,
    };
    let tls = match served_cert {
        Some(_) => Some(certificates.acceptor()?),
        None => None,
    };
    let origins = Origins::new(&args.domain, tls.is_some())?;
    let supervisor = tokio::task::block_in_place(|| {
        let supervisor = Supervisor::new(root.clone(), options);
        crate::allocator::give_back_free_memory();
        supervisor
    })?;
    let owner = Arc::new(Owner::open(
        &root,
        SessionPolicy {
            idle: args.session_idle,
            lifetime: args.session_lifetime,
        },
    )?);
    owner.ensure_cli_token(&root)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    supervisor.runtime.own_listener.set(address);
    let origin = origins.locker_origin(&address.to_string());
    // Over TLS the CLI must ask for the name the certificate holds.
    let url = if tls.is_some() {
        origin.clone()
    } else {
        format!("http://{address}")
    };
    // In a cluster, the jobs and deliveries start once the host follows it.
    let mut front = Front::new(supervisor.clone(), owner.clone(), origins.clone());
    let cluster = if args.cluster.is_empty() {
        None
    } else {
        let options = ClusterOptions {
            nats: NatsAccess {
                urls: args.cluster,
                credentials: args.cluster_credentials,
                ca: args.cluster_ca,
            },
            replicas: args.cluster_replicas,
            lease: args.lease,
            host: crate::cluster::host_id(root.dir())?,
            url: url.clone(),
            request_timeout: args.request_timeout,
            event_retention: args.event_retention,
            event_max_deliveries: args.event_max_deliveries,
        };
        let joining = std::time::Instant::now();
        let cluster = Cluster::join(options, supervisor.clone(), owner.clone()).await?;
        tracing::info!(
            host = cluster.host(),
            "joined the cluster in {:.1?}",
            joining.elapsed()
        );
        front = front.in_cluster(cluster.clone());
        Some(cluster)
    };
    let background = supervisor.start_background();
    let acme = args.acme_directory.map(|directory| {
        let settings = AcmeSettings {
            directory,
            contact: args.acme_contact.into_iter().collect(),
            server_root: args.acme_server_root,
            dir: root.dir().join("tls"),
        };
        let (supervisor, domain) = (supervisor.clone(), origins.domain().to_string());
        let names = move || {
            let mut names = vec![domain.clone()];
            names.extend(
                supervisor
                    .statuses()
                    .into_iter()
                    .map(|s| format!("{}.{domain}", s.name)),
            );
            names
        };
        tokio::spawn(keep_certified(settings, certificates.clone(), names))
    });
    tracing::info!(
        root = %root.dir().display(),
        services = supervisor.statuses().len(),
        pooling = supervisor.runtime.pooling,
        "locker listening on {url}"
    );
    println!("locker listening on {url}: open {origin}/");
    if !owner.has_password() {
        let code = owner.new_setup_code()?;
        println!(
            "choose the owner's password (this link works once, for an hour): \
             {origin}/_locker/setup?code={code}"
        );
    }

    let limits = ConnectionLimits {
        head_timeout: args.head_timeout,
        max_open: args.max_connections,
        max_per_client: args.max_connections_per_client,
    };
    let front = Arc::new(front);
    if let Some(cluster) = &cluster {
        cluster.answer(forwarded(front.clone())).await?;
    }
    // Only now does the CLI find the host: in a cluster, after the join,
    // until which nothing would answer.
    root.write_host_record(&HostRecord {
        pid: std::process::id(),
        url: url.clone(),
        origin: origin.clone(),
        listen: Some(address),
        tls_cert: served_cert,
    })?;
    let served = crate::http::serve(front, listener, tls, limits, shutdown_signal()).await;
    if let Some(cluster) = cluster {
        cluster.leave().await;
    }
    drop(background);
    if let Some(acme) = acme {
        acme.abort();
    }
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
