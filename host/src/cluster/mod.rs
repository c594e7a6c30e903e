//! Several hosts serving one locker, over NATS JetStream
//! (`locker serve --cluster nats://…`).
//!
//! Each host keeps its own root (its SQLite store, its code cache) and
//! follows what the cluster's buckets say (`buckets`): the catalog and
//! the components (`catalog`), the owner's API tokens (`tokens`), the
//! hosts alive (`members`). A service runs on one host at a time, the
//! holder of its lease (`leases`); any host answers any request, and
//! carries one for a service owned elsewhere to its owner (`forward`);
//! each tick of a job runs once, on the owner (`jobs`).
//! Services' working directories must be on a volume every host mounts
//! at `<root>/services` (the lease keeps one writer at a time).

mod buckets;
mod catalog;
mod credentials;
mod events;
mod forward;
mod jobs;
mod leases;
mod logins;
mod members;
mod mirror;
mod nats;
mod schedules;
mod settings;
mod trust;
mod watch;

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::RequestErrorKind;
use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use tokio::task::AbortHandle;
use wasmtime_wasi_http::WasiBody;

pub use forward::ForwardError;
pub use leases::Placement;
pub use nats::NatsAccess;

use crate::api::{ClusterHost, ClusterView, LeaseView, NatsView};
use crate::changes::Changes;
use crate::clock::now_rfc3339;
use crate::owner::Owner;
use crate::supervisor::Supervisor;
use buckets::Buckets;
use forward::{Answer, Forwarded};
use leases::Leases;
use mirror::{Mirror, Mirrored};

/// Room left in a message for the request's or response's head.
const HEAD_ROOM: usize = 64 * 1024;
/// How long a joining host waits for JetStream to be ready.
const JETSTREAM_PATIENCE: Duration = Duration::from_secs(30);
/// How often a request whose owner is gone looks for the next one.
const RETRY: Duration = Duration::from_millis(100);

pub struct ClusterOptions {
    /// The NATS servers (any one of them is enough to join), and how to
    /// log in to them.
    pub nats: NatsAccess,
    /// How many copies JetStream keeps of each bucket.
    pub replicas: usize,
    /// How long a host's lease on a service lasts without renewal: the
    /// longest a service is without a host after its owner dies.
    pub lease: Duration,
    /// This host's id, the same across its restarts.
    pub host: String,
    /// Where this host's front door listens.
    pub url: String,
    /// How long a forwarded request may take (and an event's delivery).
    pub request_timeout: Duration,
    /// How long the events stream keeps an event.
    pub event_retention: Duration,
    /// How many times an event is handed out without an answer before
    /// JetStream gives it up (a dead letter).
    pub event_max_deliveries: i64,
}

/// What answers a request forwarded to this host: the service's name and
/// the request, through the same door a local one takes.
pub type Handler = Arc<
    dyn Fn(String, Request<WasiBody>) -> Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>
        + Send
        + Sync,
>;

/// Where a request goes.
pub enum Routed {
    /// To the service on this host.
    Here(Request<WasiBody>),
    /// It went to the owning host, which answered this.
    Answered(Response<Bytes>),
}

pub struct Cluster {
    client: async_nats::Client,
    options: ClusterOptions,
    buckets: Buckets,
    leases: Arc<Leases>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// This host's id in a cluster: made once, kept in the root.
pub fn host_id(root: &Path) -> Result<String> {
    let path = root.join("cluster-host");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = format!("host-{}", crate::owner::secret::new_id());
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

impl Cluster {
    /// Connects, follows the cluster's catalog and tokens (adding what only
    /// this host has), and starts the watches, the heartbeat and the lease
    /// renewals.
    pub async fn join(
        options: ClusterOptions,
        supervisor: Arc<Supervisor>,
        owner: Arc<Owner>,
    ) -> Result<Arc<Cluster>> {
        let name = format!("locker {}", options.host);
        let client = patiently(
            &format!("connect to NATS at {}", options.nats.shown()),
            async || options.nats.connect(&name).await,
        )
        .await??;
        // Short enough that a join retries soon while JetStream elects leaders.
        let jetstream = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .build(client.clone());
        let buckets = patiently("open the cluster's buckets", async || {
            Buckets::open(&jetstream, options.replicas, options.lease).await
        })
        .await?;
        let leases = Arc::new(Leases::new(
            buckets.leases.clone(),
            options.host.clone(),
            options.lease,
        ));
        let cluster = Arc::new(Cluster {
            client,
            buckets,
            leases,
            options,
            tasks: Mutex::default(),
        });

        // Before anything is written: a host that would seal secrets with
        // another key is turned away.
        let settings = settings::Settings(supervisor.clone());
        let config = cluster.buckets.config.clone();
        patiently("check the secrets key", async || {
            settings.check_key(&config).await
        })
        .await??;

        let buckets = vec![
            cluster.buckets.owner.clone(),
            cluster.buckets.passes.clone(),
        ];
        let credentials = credentials::Credentials(owner.clone());
        cluster
            .mirror("credentials", credentials, buckets, &owner.announced)
            .await?;
        let trusted = trust::Trusted(supervisor.clone());
        let buckets = vec![cluster.buckets.trust.clone()];
        cluster
            .mirror(
                "trusted publishers",
                trusted,
                buckets,
                &supervisor.trust.announced,
            )
            .await?;

        let mut catalog = catalog::CatalogSync::new(
            supervisor.clone(),
            cluster.buckets.catalog.clone(),
            cluster.buckets.packages.clone(),
        );
        let from = patiently("follow the cluster's catalog", async || {
            catalog.join().await
        })
        .await?;
        let announced = supervisor
            .announced
            .listen()
            .context("this host has joined a cluster already")?;
        cluster.spawn("catalog sync", catalog.run(from, announced));

        // After the catalog: a setting follows its service.
        let buckets = vec![cluster.buckets.config.clone()];
        cluster
            .mirror("settings", settings, buckets, &supervisor.announced_config)
            .await?;
        let logins = logins::Logins(supervisor.clone());
        let buckets = vec![cluster.buckets.logins.clone()];
        cluster
            .mirror(
                "registry logins",
                logins,
                buckets,
                &supervisor.logins.announced,
            )
            .await?;
        let schedules = schedules::Schedules(supervisor.scheduler.clone());
        let buckets = vec![cluster.buckets.schedules.clone()];
        cluster
            .mirror(
                "schedules",
                schedules,
                buckets,
                &supervisor.scheduler.announced,
            )
            .await?;

        let leases = cluster.leases.clone();
        cluster.spawn("lease watch", async move {
            leases.watch().await;
            Ok(())
        });
        let (leases, services) = (cluster.leases.clone(), supervisor.clone());
        cluster.spawn("lease renewal", async move {
            leases
                .renew(|service| {
                    if let Some(service) = services.service(service) {
                        service.unload("another host serves it now");
                    }
                })
                .await;
            Ok(())
        });
        let events = patiently("make the events stream", async || {
            events::JetStreamEvents::open(
                &jetstream,
                cluster.leases.clone(),
                supervisor.services.clone(),
                cluster.options.replicas,
                cluster.options.event_retention,
                cluster.options.request_timeout + Duration::from_secs(2),
                cluster.options.event_max_deliveries,
            )
            .await
        })
        .await?;
        let events = Arc::new(events);
        supervisor.bus.share(events.clone());
        let bus = supervisor.bus.clone();
        cluster.spawn("live events", async move { events.tell_live(bus).await });
        supervisor.services.call_elsewhere(cluster.clone());
        let slots = patiently("read the locker's downtimes", async || {
            jobs::JobSlots::join(
                cluster.buckets.jobs.clone(),
                cluster.leases.clone(),
                cluster.options.host.clone(),
                cluster.options.lease,
            )
            .await
        })
        .await?;
        supervisor.jobs.share_slots(Arc::new(slots));
        let (kv, lease) = (cluster.buckets.jobs.clone(), cluster.options.lease);
        cluster.spawn("alive stamp", async move {
            jobs::JobSlots::stay_alive(kv, lease).await;
            Ok(())
        });
        let member = ClusterHost {
            host: cluster.options.host.clone(),
            url: cluster.options.url.clone(),
            joined_at: now_rfc3339(),
            nats_server: server_label(&cluster.client.server_info()),
        };
        let (hosts, lease) = (cluster.buckets.hosts.clone(), cluster.options.lease);
        cluster.spawn("heartbeat", async move {
            members::beat(hosts, member, lease).await;
            Ok(())
        });
        Ok(cluster)
    }

    /// Keeps `part`'s records in step with `buckets` from now on.
    async fn mirror<M: Mirrored>(
        &self,
        what: &'static str,
        part: M,
        buckets: Vec<async_nats::jetstream::kv::Store>,
        announced: &Changes<M::Item>,
    ) -> Result<()> {
        let mirror = Mirror::new(part, buckets);
        let from = patiently(&format!("follow the cluster's {what}"), async || {
            mirror.join().await
        })
        .await?;
        let announced = announced
            .listen()
            .context("this host has joined a cluster already")?;
        self.spawn(what, mirror.run(from, announced));
        Ok(())
    }

    fn spawn(&self, what: &'static str, work: impl Future<Output = Result<()>> + Send + 'static) {
        let task = tokio::spawn(async move {
            if let Err(error) = work.await {
                tracing::error!("the cluster's {what} stopped: {error:#}");
            }
        });
        self.tasks.lock().unwrap().push(task.abort_handle());
    }

    /// This host's id.
    pub fn host(&self) -> &str {
        &self.options.host
    }

    /// The most one forwarded request or response may carry.
    fn body_limit(&self) -> usize {
        self.client
            .server_info()
            .max_payload
            .saturating_sub(HEAD_ROOM)
    }

    /// Sends `request` for `service` where the service is served: back to
    /// the caller if here, else to its owner. While the owner is gone (its
    /// lease not yet expired), waits for the next one, at most a lease time.
    pub async fn route(
        &self,
        service: &str,
        request: Request<WasiBody>,
    ) -> Result<Routed, ForwardError> {
        let started = Instant::now();
        let mut host = match self.placement(service, started).await? {
            Placement::Here => return Ok(Routed::Here(request)),
            Placement::Elsewhere(host) => host,
        };
        let limit = self.body_limit();
        let forwarded = Forwarded::read(service, request, limit).await?;
        let payload = Bytes::from(
            postcard::to_allocvec(&forwarded).map_err(|e| ForwardError::Cluster(e.into()))?,
        );
        loop {
            let asked = async_nats::Request::new()
                .payload(payload.clone())
                .timeout(Some(self.options.request_timeout + Duration::from_secs(1)));
            match self
                .client
                .send_request(forward::subject(&host), asked)
                .await
            {
                Ok(message) => {
                    let answer: Answer = postcard::from_bytes(&message.payload)
                        .map_err(|e| ForwardError::Cluster(e.into()))?;
                    if let Some(response) = answer.response().map_err(ForwardError::Cluster)? {
                        return Ok(Routed::Answered(response));
                    }
                }
                // Nobody got it: safe to send again, once the lease moves.
                Err(error) if error.kind() == RequestErrorKind::NoResponders => {}
                Err(error) if error.kind() == RequestErrorKind::TimedOut => {
                    return Err(ForwardError::OwnerGone {
                        service: service.to_string(),
                        host,
                        waited: started.elapsed(),
                    });
                }
                Err(error) => return Err(ForwardError::Cluster(error.into())),
            }
            if started.elapsed() > self.patience() {
                return Err(ForwardError::OwnerGone {
                    service: service.to_string(),
                    host,
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(RETRY).await;
            match self.placement(service, started).await? {
                Placement::Here => {
                    let request = forwarded.request().map_err(ForwardError::Cluster)?;
                    return Ok(Routed::Here(request));
                }
                Placement::Elsewhere(next) => host = next,
            }
        }
    }

    /// How long a request waits for its service's next owner: a lease time
    /// and a margin.
    fn patience(&self) -> Duration {
        self.options.lease + Duration::from_secs(2)
    }

    /// Where `service` is served; while the leases cannot be read (a NATS
    /// server died and its streams elect new leaders), asks again until the
    /// request's patience since `started` runs out.
    async fn placement(&self, service: &str, started: Instant) -> Result<Placement, ForwardError> {
        loop {
            match self.leases.placement(service).await {
                Ok(placement) => return Ok(placement),
                Err(error) if started.elapsed() > self.patience() => {
                    return Err(ForwardError::Cluster(error));
                }
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        }
    }

    /// Answers requests other hosts forward to this one with `handler`,
    /// for the services whose lease this host holds.
    pub async fn answer(self: &Arc<Self>, handler: Handler) -> Result<()> {
        let mut requests = self
            .client
            .subscribe(forward::subject(&self.options.host))
            .await
            .context("cannot listen for forwarded requests")?;
        let cluster = self.clone();
        self.spawn("forwarded requests", async move {
            while let Some(message) = requests.next().await {
                let Some(reply) = message.reply.clone() else {
                    continue;
                };
                let (cluster, handler) = (cluster.clone(), handler.clone());
                tokio::spawn(async move {
                    let answer = cluster.serve_forwarded(&message.payload, &handler).await;
                    let mut bytes = postcard::to_allocvec(&answer).expect("serializable");
                    if bytes.len() > cluster.client.server_info().max_payload {
                        let too_large = error_response(
                            StatusCode::BAD_GATEWAY,
                            "the response is larger than one message between hosts may carry",
                        );
                        bytes = postcard::to_allocvec(&Answer::served(too_large))
                            .expect("serializable");
                    }
                    if let Err(error) = cluster.client.publish(reply, bytes.into()).await {
                        tracing::warn!("cannot answer a forwarded request: {error}");
                    }
                });
            }
            Ok(())
        });
        Ok(())
    }

    async fn serve_forwarded(&self, payload: &[u8], handler: &Handler) -> Answer {
        let forwarded: Forwarded = match postcard::from_bytes(payload) {
            Ok(forwarded) => forwarded,
            Err(error) => {
                let message = format!("unreadable forwarded request: {error}");
                return Answer::served(error_response(StatusCode::BAD_REQUEST, &message));
            }
        };
        if !self.leases.holds(&forwarded.service) {
            return Answer::NotHere;
        }
        match forwarded.request() {
            Ok(request) => Answer::served(handler(forwarded.service, request).await),
            Err(error) => {
                let message = format!("unreadable forwarded request: {error:#}");
                Answer::served(error_response(StatusCode::BAD_REQUEST, &message))
            }
        }
    }

    /// The hosts, the leases and this host's connection.
    pub async fn view(&self) -> Result<ClusterView> {
        let info = self.client.server_info();
        let mut urls = info.connect_urls.clone();
        urls.sort();
        Ok(ClusterView {
            host: self.options.host.clone(),
            nats: NatsView {
                state: match self.client.connection_state() {
                    async_nats::connection::State::Connected => "connected",
                    async_nats::connection::State::Pending => "pending",
                    async_nats::connection::State::Disconnected => "disconnected",
                }
                .to_string(),
                server: server_label(&info),
                urls,
            },
            hosts: members::alive(&self.buckets.hosts).await?,
            leases: self
                .leases
                .holders()
                .into_iter()
                .map(|(service, host)| LeaseView { service, host })
                .collect(),
            lease_seconds: self.options.lease.as_secs_f64(),
        })
    }

    /// Leaves the cluster: gives up this host's leases and its entry, so
    /// the others need not wait for them to expire.
    pub async fn leave(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
        self.leases.release_all().await;
        let _ = self.buckets.hosts.delete(&self.options.host).await;
        let _ = self.client.flush().await;
    }
}

/// `step`, tried again while JetStream is not ready, for a while.
async fn patiently<T>(what: &str, mut step: impl AsyncFnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    loop {
        match step().await {
            Ok(done) => return Ok(done),
            Err(error) if started.elapsed() < JETSTREAM_PATIENCE => {
                tracing::info!("cannot {what} yet ({error:#}); trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error).with_context(|| format!("cannot {what}")),
        }
    }
}

impl crate::runtime::registry::Elsewhere for Cluster {
    fn route(
        &self,
        service: &str,
        request: Request<WasiBody>,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<Result<Response<WasiBody>, Request<WasiBody>>, String>>
                + Send
                + '_,
        >,
    > {
        let service = service.to_string();
        Box::pin(async move {
            match Cluster::route(self, &service, request).await {
                Ok(Routed::Here(request)) => Ok(Err(request)),
                Ok(Routed::Answered(response)) => Ok(Ok(response.map(forward::full))),
                Err(error) => Err(error.to_string()),
            }
        })
    }
}

fn error_response(status: StatusCode, message: &str) -> Response<Bytes> {
    let body = serde_json::json!({ "error": message }).to_string();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(body))
        .expect("a valid response")
}

/// A NATS server as the status names it: its name and port.
fn server_label(info: &async_nats::ServerInfo) -> String {
    format!("{} on port {}", info.server_name, info.port)
}
