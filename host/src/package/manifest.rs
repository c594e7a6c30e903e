//! The service manifest, `locker.toml`: what a package is and what it may do.
//!
//! ```toml
//! name = "notes"                 # lowercase letters, digits and dashes
//! version = "0.1.0"              # semver
//! kind = "connector"             # connector | collection | app
//! description = "Keeps notes"
//! component = "notes.wasm"       # the component, next to the manifest
//! provides = ["note/files"]      # service types, `area/name`
//! publishes = ["note/changed",  # topics it may publish (patterns allowed); one bound
//!   { topic = "contact/changed", type = "contact/card" }]  # to a type is checked
//! subscribes = ["contact/*"]     # topic patterns delivered to its event handler
//! calls = ["contacts", "type:contact/*"]  # services it may call (`http://NAME.locker/`):
//!                                # by name, or every service providing a type
//!
//! [limits]                       # all optional; the host's defaults apply otherwise
//! memory = "64 MiB"              # linear memory of one instance
//! timeout = "10s"                # wall-clock deadline of one request
//! max_instances = 16             # instances running at once
//! max_body = "8 MiB"             # largest request body
//! idle_unload = "5m"             # unload after this long without requests
//! concurrency = 16               # WASI 0.3: requests one instance serves at once
//!
//! [network]
//! allow_hosts = ["api.example.com", "{{ server }}"]  # outbound HTTP; nothing else is
//!                                # reachable; `{{ key }}`: the host the owner sets there
//!
//! [types."contact/card"]          # a data type this package defines
//! schema = "schemas/card.json"   # its JSON Schema, in the package (read at install)
//!
//! [config.server]                # a setting the owner gives (`locker config set`)
//! description = "Your CardDAV server, as host or URL"
//! required = true                # no instance until it is set
//! [config.password]
//! description = "Its password"
//! secret = true                  # never shown, never logged; sealed at rest
//! [config.page_size]
//! description = "Contacts per page"
//! default = "50"
//!
//! [reuse]                        # WASI 0.2: opt in to one instance serving many requests
//! max_requests = 1000            # in turn, then a fresh one (0.3: always on, 1000)
//! idle = "30s"                   # an unused instance is dropped after this long
//!
//! [[schedule]]                   # jobs, run by the component's `job-handler`
//! name = "sync"                  # unique within the service
//! cron = "0 */15 * * * *"        # with seconds, UTC
//! payload = { full = false }     # optional; handed to every run as JSON
//! ```
//!
//! Unknown fields are errors, so a typo never silently drops a limit.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// Names that would collide with the host's own routes.
const RESERVED_NAMES: &[&str] = &["_locker", "locker", "api", "admin"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: semver::Version,
    pub kind: Kind,
    pub description: String,
    /// File name of the component, relative to the manifest.
    pub component: String,
    #[serde(default)]
    pub provides: Vec<String>,
    #[serde(default)]
    pub publishes: Vec<Published>,
    #[serde(default)]
    pub subscribes: Vec<String>,
    /// Services it may call over `http://NAME.locker/`: `NAME`, or
    /// `type:PATTERN` for every service providing a matching type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub network: Network,
    /// Opt-in reuse of an instance across HTTP requests (the default is a
    /// fresh instance per request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<Reuse>,
    /// Jobs registered at install, updated on upgrade, removed on uninstall.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<ScheduleEntry>,
    /// Paths anyone may reach without logging in (webhooks, OAuth
    /// callbacks): `/exact`, or a prefix ending in `*` (`/webhook/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public: Vec<String>,
    /// The data types it defines, each with a JSON Schema.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub types: BTreeMap<String, TypeDef>,
    /// The settings the owner gives the service, read through `wasi:config`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, ConfigKey>,
}

/// A `publishes` entry: a topic (pattern), or a topic bound to a type whose
/// schema every payload on it must match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Published {
    Topic(String),
    Typed(TypedTopic),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypedTopic {
    pub topic: String,
    #[serde(rename = "type")]
    pub data_type: String,
}

impl Published {
    pub fn topic(&self) -> &str {
        match self {
            Published::Topic(topic) => topic,
            Published::Typed(typed) => &typed.topic,
        }
    }

    pub fn data_type(&self) -> Option<&str> {
        match self {
            Published::Topic(_) => None,
            Published::Typed(typed) => Some(&typed.data_type),
        }
    }
}

/// A `[types."area/name"]` entry: a data type and its JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeDef {
    /// The schema's file, relative to the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The schema itself, as JSON text: read from `schema` when the package
    /// is read, and kept with the manifest from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A `[config.KEY]` entry: one setting of the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigKey {
    pub description: String,
    /// What the service reads while the owner has set nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Never shown, logged or returned once set; sealed at rest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// The service gets no instance until the owner sets it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// A `[[schedule]]` entry: a cron job declared by the package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleEntry {
    pub name: String,
    pub cron: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

impl ScheduleEntry {
    /// The payload as JSON text (`{}` when the manifest gives none).
    pub fn payload_json(&self) -> String {
        self.payload
            .as_ref()
            .map_or_else(|| "{}".to_string(), |p| p.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Connector,
    Collection,
    App,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Connector => "connector",
            Kind::Collection => "collection",
            Kind::App => "app",
        })
    }
}

/// Per-service limits; `None` means the host's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub max_instances: Option<u32>,
    pub max_body: Option<ByteSize>,
    #[serde(default, with = "humantime_serde")]
    pub idle_unload: Option<Duration>,
    /// Requests one instance of a WASI 0.3 service serves at once.
    pub concurrency: Option<u32>,
}

/// How far a service lets the host reuse its HTTP instances. A reused
/// instance serves one request at a time and only this service, but keeps
/// its memory between requests: a service opts in when that is safe for it
/// (no per-request state left in globals), and gains the start-up cost of
/// its runtime (JavaScript and Python most of all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reuse {
    /// Requests one instance serves, one after another, before it is replaced.
    pub max_requests: u32,
    /// An instance unused this long is dropped (default 30 s).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle: Option<Duration>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Hosts (optionally `host:port`) the service may send HTTP requests to.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
}

impl Manifest {
    /// Parses and checks a manifest; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest> {
        let manifest: Manifest =
            toml::from_str(text).with_context(|| format!("invalid manifest {origin}"))?;
        manifest
            .validate()
            .with_context(|| format!("invalid manifest {origin}"))?;
        Ok(manifest)
    }

    pub fn read(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        Manifest::parse(&text, &path.display().to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a manifest always serializes")
    }

    /// The topics (patterns) it may publish.
    pub fn published_topics(&self) -> Vec<String> {
        self.publishes
            .iter()
            .map(|p| p.topic().to_string())
            .collect()
    }

    /// Whether its `calls` let it call the service `name` that provides
    /// `provides`.
    pub fn may_call(&self, name: &str, provides: &[String]) -> bool {
        may_call(&self.calls, name, provides)
    }

    /// Whether `path` is one of the service's public routes. A path that a
    /// guest might read as another one (dot segments, encoded slashes or
    /// dots, backslashes) is never public: `/webhook/../private` must not
    /// pass as `/webhook/*`.
    pub fn is_public(&self, path: &str) -> bool {
        let lowered = path.to_ascii_lowercase();
        let ambiguous = path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
            || ["%2e", "%2f", "%5c", "\\"]
                .iter()
                .any(|s| lowered.contains(s));
        !ambiguous
            && self
                .public
                .iter()
                .any(|route| match route.strip_suffix('*') {
                    Some(prefix) => path.starts_with(prefix),
                    None => path == route,
                })
    }

    fn validate(&self) -> Result<()> {
        validate_service_name(&self.name)?;
        for route in &self.public {
            let body = route.strip_suffix('*').unwrap_or(route);
            if !route.starts_with('/') || body.contains('*') || body.starts_with("/_locker/") {
                bail!(
                    "`public` route {route:?} must be a path (`/hook`) or a prefix ending in `*` \
                     (`/webhook/*`), outside `/_locker/`"
                );
            }
        }
        if self.description.trim().is_empty() {
            bail!("`description` must not be empty");
        }
        let component = Path::new(&self.component);
        if self.component.is_empty()
            || component.components().count() != 1
            || !self.component.ends_with(".wasm")
        {
            bail!(
                "`component` must be the file name of a `.wasm` next to the manifest, not {:?}",
                self.component
            );
        }
        for service_type in &self.provides {
            validate_service_type(service_type)?;
        }
        for (name, def) in &self.types {
            validate_service_type(name).context("in `[types]`")?;
            if let Some(path) = &def.schema
                && (path.is_empty()
                    || Path::new(path).is_absolute()
                    || Path::new(path)
                        .components()
                        .any(|c| !matches!(c, std::path::Component::Normal(_))))
            {
                bail!("`types.\"{name}\".schema` must be a path inside the package, not {path:?}");
            }
            if def.schema.is_none() && def.schema_json.is_none() {
                bail!("`types.\"{name}\"` needs its `schema` (a JSON Schema file in the package)");
            }
        }
        for entry in &self.publishes {
            let topic = entry.topic();
            if let Some(data_type) = entry.data_type() {
                validate_service_type(data_type)
                    .with_context(|| format!("in `publishes` entry for {topic:?}"))?;
            }
            super::topics::validate_pattern(topic).context("in `publishes`")?;
            if topic.starts_with(super::topics::HOST_PREFIX) || topic == "*" {
                bail!("`publishes` entry {topic:?}: topics under `locker/` are the host's own");
            }
        }
        for pattern in &self.subscribes {
            super::topics::validate_pattern(pattern).context("in `subscribes`")?;
        }
        for callee in &self.calls {
            match callee.strip_prefix("type:") {
                Some(pattern) => super::topics::validate_pattern(pattern)
                    .with_context(|| format!("in `calls` entry {callee:?}"))?,
                None => validate_service_name(callee)
                    .with_context(|| format!("in `calls` entry {callee:?} (or `type:PATTERN`)"))?,
            }
        }
        let limits = &self.limits;
        if limits.memory.is_some_and(|m| m.as_u64() < 64 * 1024) {
            bail!("`limits.memory` must be at least 64 KiB (one wasm page)");
        }
        if limits.timeout.is_some_and(|t| t.is_zero()) {
            bail!("`limits.timeout` must be more than zero");
        }
        if limits.max_instances == Some(0) {
            bail!("`limits.max_instances` must be at least 1");
        }
        if limits.concurrency == Some(0) {
            bail!("`limits.concurrency` must be at least 1");
        }
        if let Some(reuse) = &self.reuse {
            if reuse.max_requests == 0 {
                bail!("`reuse.max_requests` must be at least 1");
            }
            if reuse.idle.is_some_and(|idle| idle.is_zero()) {
                bail!("`reuse.idle` must be more than zero");
            }
        }
        let mut job_names = std::collections::HashSet::new();
        for entry in &self.schedule {
            super::job_spec::validate_name(&entry.name).context("in `[[schedule]]`")?;
            if !job_names.insert(&entry.name) {
                bail!("`[[schedule]]` names job {:?} twice", entry.name);
            }
            super::job_spec::parse_cron(&entry.cron)
                .with_context(|| format!("in `[[schedule]]` job {:?}", entry.name))?;
        }
        for (key, entry) in &self.config {
            super::config_key::validate(key)?;
            if entry.secret && entry.default.is_some() {
                bail!("`config.{key}` is a secret and cannot have a default: a package is public");
            }
            if entry.required && entry.default.is_some() {
                bail!("`config.{key}` is required and has a default: one or the other");
            }
        }
        for host in &self.network.allow_hosts {
            if let Some(template) = super::host_template::HostTemplate::parse(host)? {
                let key = template.key();
                match self.config.get(key) {
                    None => bail!(
                        "`network.allow_hosts` entry {host:?} names `{key}`, which `[config]` \
                         does not declare"
                    ),
                    Some(entry) if entry.secret => bail!(
                        "`network.allow_hosts` entry {host:?} names `{key}`, a secret: the \
                         hosts a service may reach are shown to the owner"
                    ),
                    Some(_) => continue,
                }
            }
            let network = host.parse::<ipnet::IpNet>().is_ok();
            if host.is_empty() || (!network && host.contains(['/', ' ', '@'])) {
                bail!(
                    "`network.allow_hosts` entry {host:?} is not a host name, an IP address \
                     or a network (`10.0.0.0/8`)"
                );
            }
        }
        Ok(())
    }
}

/// Whether a service declaring `calls` may call the service `name`, which
/// provides the types `provides`.
pub fn may_call(calls: &[String], name: &str, provides: &[String]) -> bool {
    calls
        .iter()
        .any(|callee| match callee.strip_prefix("type:") {
            Some(pattern) => provides
                .iter()
                .any(|provided| super::topics::matches(pattern, provided)),
            None => callee == name,
        })
}

/// A service name is also its URL prefix and folder name, so it is kept plain.
pub fn validate_service_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "service name {name:?} must be 1-63 lowercase letters, digits or dashes, starting with a letter"
        );
    }
    if RESERVED_NAMES.contains(&name) {
        bail!("service name {name:?} is reserved by the host");
    }
    Ok(())
}

fn validate_service_type(service_type: &str) -> Result<()> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    match service_type.split_once('/') {
        Some((area, name)) if part_ok(area) && part_ok(name) => Ok(()),
        _ => bail!("service type {service_type:?} must look like `contact/feed`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "notes"
        version = "0.1.0"
        kind = "connector"
        description = "Keeps notes"
        component = "notes.wasm"
        provides = ["note/files"]
        [limits]
        memory = "32 MiB"
        timeout = "2s"
        [[schedule]]
        name = "sync"
        cron = "0 */15 * * * *"
        payload = { full = false, pages = [1, 2] }
    "#;

    #[test]
    fn public_routes_are_exact_paths_or_prefixes() {
        let manifest =
            Manifest::parse(&format!("public = [\"/hook\", \"/oauth/*\"]\n{GOOD}"), "t").unwrap();
        assert!(manifest.is_public("/hook"));
        assert!(!manifest.is_public("/hook/more"));
        assert!(manifest.is_public("/oauth/callback"));
        assert!(!manifest.is_public("/oauth"));
        assert!(!manifest.is_public("/"));
        for sneaky in [
            "/oauth/../private",
            "/oauth/./x",
            "/oauth/%2e%2e/private",
            "/oauth/a%2Fb",
            "/oauth/..\\x",
        ] {
            assert!(!manifest.is_public(sneaky), "{sneaky}");
        }
    }

    #[test]
    fn parses_a_full_manifest() {
        let manifest = Manifest::parse(GOOD, "test").unwrap();
        assert_eq!(manifest.name, "notes");
        assert_eq!(manifest.kind, Kind::Connector);
        assert_eq!(manifest.limits.memory, Some(ByteSize::mib(32)));
        assert_eq!(manifest.limits.timeout, Some(Duration::from_secs(2)));
        assert_eq!(
            manifest.schedule[0].payload_json(),
            r#"{"full":false,"pages":[1,2]}"#
        );
        let again = Manifest::parse(&manifest.to_toml(), "round trip").unwrap();
        assert_eq!(again, manifest);
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", Manifest::parse(text, "test").unwrap_err())
    }

    #[test]
    fn names_the_problem() {
        assert!(error_of(&GOOD.replace("name = \"notes\"", "")).contains("missing field `name`"));
        assert!(
            error_of(&GOOD.replace("connector", "daemon")).contains("unknown variant `daemon`")
        );
        assert!(error_of(&GOOD.replace("0.1.0", "one")).contains("version"));
        assert!(error_of(&GOOD.replace("\"notes\"", "\"Notes!\"")).contains("service name"));
        assert!(error_of(&GOOD.replace("notes.wasm", "../x.wasm")).contains("`component`"));
        assert!(error_of(&GOOD.replace("note/files", "notes")).contains("service type"));
        assert!(error_of(&format!("{GOOD}\nmemroy = 1")).contains("unknown field `memroy`"));
        assert!(error_of(&GOOD.replace("\"2s\"", "\"soon\"")).contains("timeout"));
        assert!(error_of(&GOOD.replace("\"notes\"", "\"_locker\"")).contains("service name"));
        assert!(error_of(&format!("public = [\"hook\"]\n{GOOD}")).contains("`public` route"));
        assert!(error_of(&format!("public = [\"/a*b\"]\n{GOOD}")).contains("`public` route"));
        let publishes =
            |topics: &str| GOOD.replace("provides", &format!("publishes = {topics}\nprovides"));
        assert!(error_of(&publishes("[\"locker/service.started\"]")).contains("the host's own"));
        assert!(error_of(&publishes("[\"Notes\"]")).contains("in `publishes`"));
        let subscribes = GOOD.replace("provides", "subscribes = [\"a/*/b\"]\nprovides");
        assert!(error_of(&subscribes).contains("in `subscribes`"));
        let bad_cron = error_of(&GOOD.replace("0 */15 * * * *", "0 */15 * * * * * *"));
        assert!(bad_cron.contains("job \"sync\"") && bad_cron.contains("\"0 */15 * * * * * *\""));
        let twice = format!("{GOOD}\n[[schedule]]\nname = \"sync\"\ncron = \"* * * * * *\"");
        assert!(error_of(&twice).contains("names job \"sync\" twice"));
        let calls = |list: &str| GOOD.replace("provides", &format!("calls = {list}\nprovides"));
        assert!(error_of(&calls("[\"Contacts!\"]")).contains("in `calls` entry \"Contacts!\""));
        assert!(error_of(&calls("[\"type:a/*/b\"]")).contains("in `calls` entry \"type:a/*/b\""));
    }

    #[test]
    fn calls_name_services_or_the_types_they_provide() {
        let text = GOOD.replace(
            "provides",
            "calls = [\"contacts\", \"type:photo/*\"]\nprovides",
        );
        let manifest = Manifest::parse(&text, "t").unwrap();
        assert!(manifest.may_call("contacts", &[]));
        assert!(manifest.may_call("flickr", &["photo/flickr".to_string()]));
        assert!(!manifest.may_call("flickr", &["contact/flickr".to_string()]));
        assert!(!manifest.may_call("contactsx", &[]));
    }

    #[test]
    fn config_keys_are_declared_with_what_they_are() {
        let with = |config: &str| format!("{GOOD}\n{config}");
        let manifest = Manifest::parse(
            &with(
                "[network]\nallow_hosts = [\"{{ server }}\"]\n\
                 [config.server]\ndescription = \"the server\"\nrequired = true\n\
                 [config.token]\ndescription = \"its token\"\nsecret = true",
            ),
            "t",
        )
        .unwrap();
        assert!(manifest.config["server"].required);
        assert!(manifest.config["token"].secret);
        assert_eq!(
            Manifest::parse(&manifest.to_toml(), "again").unwrap(),
            manifest
        );

        let bad = |config: &str| error_of(&with(config));
        assert!(bad("[config.Server]\ndescription = \"x\"").contains("config key \"Server\""));
        assert!(
            bad("[config.a]\ndescription = \"x\"\nsecret = true\ndefault = \"y\"")
                .contains("cannot have a default")
        );
        assert!(
            bad("[config.a]\ndescription = \"x\"\nrequired = true\ndefault = \"y\"")
                .contains("one or the other")
        );
        assert!(bad("[config.a]\ndescriptoin = \"x\"").contains("unknown field"));
        assert!(bad("[network]\nallow_hosts = [\"{{ host }}\"]").contains("does not declare"));
        assert!(bad(
            "[network]\nallow_hosts = [\"{{ a }}\"]\n[config.a]\ndescription = \"x\"\nsecret = true"
        )
        .contains("a secret"));
        assert!(bad("[network]\nallow_hosts = [\"{{ a \"]").contains("`{{ key }}`"));
    }
}
