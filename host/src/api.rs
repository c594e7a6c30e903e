//! What the admin API sends and receives: every wire type in one home, as
//! plain serializable data. The host fills them in (`runtime`, `jobs`,
//! `store`); `http::admin` serves them and `cli::client` reads them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the admin API lives on the host's listener.
pub const ADMIN_PREFIX: &str = "/_locker/api";

/// A service's state, as the admin API reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub description: String,
    pub provides: Vec<String>,
    pub publishes: Vec<String>,
    pub subscribes: Vec<String>,
    /// The services (or `type:…` providers) it may call.
    #[serde(default)]
    pub calls: Vec<String>,
    pub digest: String,
    pub installed_at: String,
    pub state: State,
    /// The WASI version its HTTP handler speaks (`0.2`, `0.3`), if it has one.
    #[serde(default)]
    pub wasi: Option<String>,
    pub loads: u64,
    pub requests: u64,
    /// Instances made since the host started (a fresh instance per request,
    /// or fewer with reuse and WASI 0.3's concurrency).
    #[serde(default)]
    pub instances: u64,
    pub in_flight: usize,
    pub last_error: Option<String>,
    pub last_load: Option<LoadReport>,
    /// A required setting that is unset: until the owner sets it, the
    /// service gets no instance.
    #[serde(default)]
    pub needs_setting: Option<String>,
    pub settings: Settings,
    /// The registry its package came from (`None`: a package folder).
    #[serde(default)]
    pub origin: Option<Origin>,
    /// Its compiled code: `ready` in the code cache, `compiling`, or
    /// `pending` (compiled at its first load, or soon in the background).
    #[serde(default)]
    pub code: CodeState,
}

/// Whether a service's compiled code waits in the code cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeState {
    #[default]
    Pending,
    Compiling,
    Ready,
}

/// What the admin API shows of a service's run-time state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Installed, not in memory.
    Installed,
    Loading,
    /// Loaded and serving at least one request.
    Running,
    /// Loaded, no request in flight; unloaded after its idle time.
    Idle,
    /// The last load failed; retried on a request after `retry_at`.
    Failed,
    /// Stopped by the owner.
    Stopped,
}

/// How the last load went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub outcome: CacheOutcome,
    pub millis: f64,
    pub at: String,
}

/// How a load obtained the service's compiled code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled: there was no entry.
    Compiled,
    /// Compiled: the entry was corrupt or stale, and has been replaced.
    Rebuilt,
}

impl CacheOutcome {
    /// Its name on the wire and in metrics.
    pub fn label(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Compiled => "compiled",
            CacheOutcome::Rebuilt => "rebuilt",
        }
    }
}

/// A service's limits with the host's defaults filled in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub memory: u64,
    pub max_instances: u32,
    pub max_body: u64,
    #[serde(with = "humantime_serde")]
    pub idle_unload: Duration,
    /// Requests one HTTP instance serves in turn (1: a fresh one for each).
    #[serde(default = "one")]
    pub reuse: u32,
    /// A reused instance unused this long is dropped.
    #[serde(default, with = "humantime_serde")]
    pub reuse_idle: Duration,
    /// Requests one instance of a WASI 0.3 service serves at once.
    #[serde(default = "one")]
    pub concurrency: u32,
}

fn one() -> u32 {
    1
}

/// A job as the admin API and `locker jobs` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub service: String,
    pub name: String,
    /// `cron` or `at`.
    pub kind: String,
    /// The cron expression or the time.
    pub schedule: String,
    pub payload: String,
    pub from_manifest: bool,
    pub next_run: Option<String>,
    pub running: bool,
    /// Due while its service is stopped; runs once when it is started.
    pub waiting_for_start: bool,
    pub runs: u64,
    pub failures: u64,
    pub skipped: u64,
    pub last_run: Option<RunView>,
}

/// One run (all attempts at one scheduled time) as shown to the owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunView {
    pub scheduled: String,
    pub started: String,
    pub finished: String,
    /// How long after its time the run started.
    pub late_ms: i64,
    pub took_ms: i64,
    pub attempts: u32,
    /// `ok` or `error`.
    pub result: String,
    pub error: Option<String>,
}

/// An event as stored, delivered and streamed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    pub id: String,
    /// Its place in publish order (the id says the same to people).
    #[serde(skip)]
    pub seq: i64,
    pub topic: String,
    pub source: String,
    pub time: String,
    /// JSON text.
    pub payload: String,
}

/// An event as `locker events` shows it, with where its deliveries stand.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventSummary {
    #[serde(flatten)]
    pub event: EventRecord,
    /// How many subscribers it was addressed to (0: unhandled).
    pub subscribers: u32,
    pub pending: u32,
    pub dead: u32,
}

/// A delivery that used up its attempts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub subscriber: String,
    pub event: EventRecord,
    pub attempts: u32,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EventStats {
    pub published: u64,
    /// Events that no service subscribed to.
    pub unhandled: u64,
    pub pending: u64,
    pub dead: u64,
}

/// One of the owner's passkeys, as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub last_used: Option<String>,
}

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    /// `admin`, `read` or `service:NAME`.
    pub scope: String,
    pub label: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used: Option<String>,
    pub expired: bool,
}

/// What `POST /_locker/api/tokens` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRequest {
    pub scope: String,
    #[serde(default)]
    pub label: String,
    /// Seconds until it stops working; none: until revoked.
    pub expires_in_secs: Option<u64>,
}

/// A token just made: the only time the token itself is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewToken {
    pub token: String,
    #[serde(flatten)]
    pub view: TokenView,
}

/// One of the owner's browser sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionView {
    pub id: String,
    /// The session that asked (the dashboard marks it).
    #[serde(default)]
    pub current: bool,
    /// The address it logged in from.
    pub client: String,
    pub created_at: String,
    pub last_seen: String,
}

/// One setting of a service as the owner sees it (`locker config NAME`);
/// a secret's value is never in it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigEntry {
    pub key: String,
    /// From the manifest; `None` for a key it no longer declares.
    pub description: Option<String>,
    pub secret: bool,
    pub required: bool,
    pub default: Option<String>,
    /// The owner set a value.
    pub set: bool,
    /// What the service reads (the owner's value, else the default); never
    /// a secret's.
    pub value: Option<String>,
    /// Declared by the installed manifest. An inactive value (of a key an
    /// upgrade removed) is kept until uninstall, for a rollback.
    pub active: bool,
    /// The outbound hosts its value opens (`{{ key }}` in `allow_hosts`).
    pub opens: Vec<String>,
}

/// A value the owner sets (`PUT /_locker/api/services/{name}/config/{key}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigValue {
    pub value: String,
}

/// The header that tells a service who is calling: `owner`, `anonymous`
/// (a public route), or `service:NAME` (a call from another
/// service). The host always sets it; whatever a client sent is replaced.
pub const CALLER_HEADER: &str = "x-locker-caller";
/// The services a call between hosts came through (comma-separated): set
/// by the calling host, read by the owner's, removed from every request
/// from outside.
pub const CHAIN_HEADER: &str = "x-locker-call-chain";

/// A data type as `locker types` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TypeView {
    pub name: String,
    /// The services whose packages define it (all with this schema).
    pub defined_by: Vec<String>,
    /// The topics bound to it: `service: topic`.
    pub topics: Vec<String>,
    /// The services that provide it (`provides`).
    pub provided_by: Vec<String>,
    pub description: Option<String>,
    pub schema: serde_json::Value,
}

/// `PUT /_locker/api/trust/{package}`: pin a publisher key for a package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrustRequest {
    /// The Ed25519 public key, base64.
    pub public_key: String,
    pub fingerprint: String,
    /// Where the package came from (`registry/ns/name`).
    pub source: String,
}

/// A publisher key pinned for a package (`locker trust list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrustedPublisher {
    pub package: String,
    /// The Ed25519 public key, base64.
    pub public_key: String,
    /// `SHA256:…`, what the owner compared.
    pub fingerprint: String,
    /// Where the first install came from (`registry/ns/name`).
    pub source: String,
    pub trusted_at: String,
}

/// `POST /_locker/api/services/{name}/rollback`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Rollback {
    /// Put back the service's folder as the last upgrade found it, too.
    #[serde(default)]
    pub data: bool,
}

/// Where an installed service's package came from, when not from a folder
/// on the owner's machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// The repository: `registry/ns/name`.
    pub source: String,
    /// Exactly what was pulled: `registry/ns/name@sha256:…`.
    pub reference: String,
    /// The fingerprint of the key that signed it; `None`: it was unsigned
    /// and installed with `--allow-unsigned`.
    pub publisher: Option<String>,
}

/// What a package may reach beyond its own folder: what the owner accepts
/// before a first install from a registry, and again for whatever an
/// upgrade adds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    /// Hosts its outgoing HTTP may reach (`{{ key }}` is the owner's setting).
    #[serde(default)]
    pub outbound: Vec<String>,
    /// Services it may call, by name or `type:PATTERN`.
    #[serde(default)]
    pub calls: Vec<String>,
    /// Service types it provides: services that may call that type reach it.
    #[serde(default)]
    pub provides: Vec<String>,
    /// Topics it may publish on.
    #[serde(default)]
    pub publishes: Vec<String>,
    /// Topics whose events it receives.
    #[serde(default)]
    pub subscribes: Vec<String>,
    /// Routes anyone may open without logging in.
    #[serde(default)]
    pub public_routes: Vec<String>,
    /// Secrets it asks the owner for.
    #[serde(default)]
    pub secrets: Vec<String>,
}

impl Reach {
    fn parts(&self) -> [(&'static str, &Vec<String>); 7] {
        [
            ("outbound HTTP to", &self.outbound),
            ("calls to", &self.calls),
            ("called as the provider of", &self.provides),
            ("publishes on", &self.publishes),
            ("receives events on", &self.subscribes),
            ("public (no login) routes", &self.public_routes),
            ("secrets", &self.secrets),
        ]
    }

    /// What this reaches that `accepted` does not.
    pub fn beyond(&self, accepted: &Reach) -> Reach {
        let new = |mine: &Vec<String>, theirs: &Vec<String>| -> Vec<String> {
            mine.iter()
                .filter(|x| !theirs.contains(x))
                .cloned()
                .collect()
        };
        Reach {
            outbound: new(&self.outbound, &accepted.outbound),
            calls: new(&self.calls, &accepted.calls),
            provides: new(&self.provides, &accepted.provides),
            publishes: new(&self.publishes, &accepted.publishes),
            subscribes: new(&self.subscribes, &accepted.subscribes),
            public_routes: new(&self.public_routes, &accepted.public_routes),
            secrets: new(&self.secrets, &accepted.secrets),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts().iter().all(|(_, items)| items.is_empty())
    }

    /// One line per kind of reach, for the owner to read.
    pub fn lines(&self) -> Vec<String> {
        self.parts()
            .iter()
            .filter(|(_, items)| !items.is_empty())
            .map(|(what, items)| {
                // A manifest's text may hold anything: never let it steer the terminal.
                let shown: Vec<String> = items
                    .iter()
                    .map(|item| item.chars().flat_map(char::escape_debug).collect())
                    .collect();
                format!("{what}: {}", shown.join(", "))
            })
            .collect()
    }
}

/// `POST /_locker/api/registry/offer`: what installing a package from a
/// registry would mean, before anything is installed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OfferRequest {
    /// `registry/ns/name[:version|@sha256:…]`.
    pub reference: String,
    /// Plain HTTP to a registry not on this machine.
    #[serde(default)]
    pub insecure: bool,
    /// Take a component no Locker publisher signed (pushed by another tool).
    #[serde(default)]
    pub allow_unsigned: bool,
    /// The manifest (`locker.toml`'s text) for an unsigned component;
    /// without one it gets the narrowest: no network, no events, no calls.
    #[serde(default)]
    pub manifest: Option<String>,
}

/// How the key that signed an offered package stands with this locker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// No key is pinned for the package yet: installing pins this one.
    FirstInstall,
    /// Signed by the key pinned for it.
    Pinned,
    /// Unsigned: nothing to pin, nothing to check later.
    Unsigned,
}

/// A package offered for install or upgrade: who signed it and what it
/// may reach, for the owner to accept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer {
    pub name: String,
    pub version: String,
    pub kind: String,
    pub description: String,
    /// What to install: the manifest's digest, so exactly this is installed.
    pub reference: String,
    /// `registry/ns/name`.
    pub source: String,
    /// The fingerprint of the signing key (`None` when unsigned).
    pub publisher: Option<String>,
    pub standing: Standing,
    pub reach: Reach,
    /// The version installed now, when this is an upgrade.
    #[serde(default)]
    pub installed: Option<String>,
    /// What it reaches that the installed version does not (upgrades).
    #[serde(default)]
    pub widens: Reach,
    /// For an unsigned component: the manifest it would get (the owner's,
    /// or the narrowest), to send back with the accepted offer.
    #[serde(default)]
    pub manifest: Option<String>,
}

/// `POST /_locker/api/registry/install` (and `…/upgrade`): the offer the
/// owner accepted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AcceptedOffer {
    /// The offer's `reference` (pinned by digest).
    pub reference: String,
    /// The publisher the owner accepted (the offer's fingerprint); must
    /// match the key pinned for the package, if one is.
    #[serde(default)]
    pub publisher: Option<String>,
    /// What the owner accepted that it may reach: a package reaching more
    /// (more than the installed version, for an upgrade) is refused.
    #[serde(default)]
    pub reach: Reach,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub allow_unsigned: bool,
    #[serde(default)]
    pub manifest: Option<String>,
}

/// `POST /_locker/api/services/{name}/upgrade-offer`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpgradeOfferRequest {
    /// A version; default: the newest release.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub allow_unsigned: bool,
}

/// The answer to an upgrade offer request: an offer, or why there is none.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpgradeOffer {
    pub offer: Option<Offer>,
    /// Set when there is nothing newer: the newest version there.
    #[serde(default)]
    pub newest: Option<String>,
}

/// One package a registry search found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Found {
    pub reference: String,
    pub name: String,
    pub version: String,
    pub kind: String,
    pub provides: Vec<String>,
    pub description: String,
    pub publisher: String,
    pub versions: Vec<String>,
}

/// A registry login kept in the root (never its password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryLogin {
    pub registry: String,
    pub username: String,
    pub saved_at: String,
}

/// `PUT /_locker/api/registry/logins/{registry}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// `POST /_locker/api/backups` and `/backups/stream`: what to do with the
/// services' secrets.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BackupRequest {
    /// Seals the secrets key into the backup (age, scrypt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// Leave the secrets out instead.
    #[serde(default)]
    pub no_secrets: bool,
}

/// How one backup went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupOutcome {
    /// The archive's name in the backups folder (a download's is `stream`).
    pub name: String,
    /// `now` (the owner asked), `schedule`, or `download` (streamed to the CLI).
    pub trigger: String,
    pub started: String,
    pub finished: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Files and bytes of data in it, and the archive's own size.
    pub files: u64,
    pub data_bytes: u64,
    pub archive_bytes: u64,
    /// How long the services were held still for the snapshot.
    pub paused_ms: u64,
    /// `sealed`, `left-out` or `none`.
    pub secrets: String,
}

/// A backup being made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunningBackup {
    pub name: String,
    pub trigger: String,
    pub started: String,
    /// `copying`, `quieting`, `archiving`, `finished`.
    pub phase: String,
    pub done: u64,
    pub total: u64,
}

/// An archive in the backups folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupArchive {
    pub name: String,
    pub bytes: u64,
    pub created: String,
}

/// `GET /_locker/api/backups`: the schedule, what runs, how the last went,
/// and the archives kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupsView {
    /// Where scheduled and dashboard backups go.
    pub dir: String,
    /// The cron expression of `[backup] schedule`, if any.
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    pub keep: usize,
    /// Whether scheduled backups seal the secrets (a passphrase file is set).
    pub seals_secrets: bool,
    #[serde(default)]
    pub running: Option<RunningBackup>,
    #[serde(default)]
    pub last: Option<BackupOutcome>,
    pub archives: Vec<BackupArchive>,
}

/// What an import put in a service's folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportView {
    pub service: String,
    /// The service the archive was exported from.
    pub from: String,
    pub files: u64,
    pub bytes: u64,
}

/// `GET /_locker/api/cluster`: the hosts sharing this locker, which owns
/// what, and this host's NATS connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView {
    /// The host that answered.
    pub host: String,
    pub nats: NatsView,
    /// The hosts alive now.
    pub hosts: Vec<ClusterHost>,
    /// Each owned service and the host that holds its lease.
    pub leases: Vec<LeaseView>,
    /// How long a lease lasts without renewal.
    pub lease_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatsView {
    /// `connected`, `pending` (reconnecting) or `disconnected`.
    pub state: String,
    /// The server this host is connected to.
    pub server: String,
    /// The servers the client knows of.
    pub urls: Vec<String>,
}

/// What a host of the cluster says of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterHost {
    pub host: String,
    /// Where its front door listens.
    pub url: String,
    /// When it joined (RFC 3339).
    pub joined_at: String,
    /// The NATS server it is connected to.
    pub nats_server: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseView {
    pub service: String,
    pub host: String,
}
