//! What an API token may open. One syntax, meant to grow: `admin`, `read`,
//! `metrics`, `service:NAME`, or `publish:TOPIC` (a topic or a pattern:
//! `publish:contact/*`).

use std::fmt;
use std::str::FromStr;

use crate::package::manifest::validate_service_name;
use crate::package::topics;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole admin API and every service's origin: the owner.
    Admin,
    /// Every GET (and HEAD) of the admin API, and the metrics.
    Read,
    /// The metrics (`/_locker/metrics`) and nothing else: what a
    /// Prometheus server is given.
    Metrics,
    /// One service's origin.
    Service(String),
    /// Publishing events on topics matching the pattern, and nothing else:
    /// what a webhook sender is given.
    Publish(String),
}

/// What a request asks to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door<'a> {
    /// A GET or HEAD of the admin API.
    AdminRead,
    /// Anything else of the admin API.
    AdminChange,
    /// A service's origin.
    Service(&'a str),
    /// Publishing an event on this topic (`POST /_locker/api/publish/TOPIC`).
    Publish(&'a str),
    /// `GET /_locker/metrics`.
    Metrics,
    /// The owner's data whole: backups, a service's export or import.
    Archive,
}

impl Scope {
    pub fn opens(&self, door: Door<'_>) -> bool {
        match (self, door) {
            (Scope::Admin, _) => true,
            (Scope::Read, Door::AdminRead | Door::Metrics) => true,
            (Scope::Metrics, Door::Metrics) => true,
            (Scope::Service(name), Door::Service(wanted)) => name == wanted,
            (Scope::Publish(pattern), Door::Publish(topic)) => topics::matches(pattern, topic),
            _ => false,
        }
    }
}

impl FromStr for Scope {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> anyhow::Result<Scope> {
        match text {
            "admin" => Ok(Scope::Admin),
            "read" => Ok(Scope::Read),
            "metrics" => Ok(Scope::Metrics),
            _ => match text.split_once(':') {
                Some(("service", name)) => {
                    validate_service_name(name)?;
                    Ok(Scope::Service(name.to_string()))
                }
                Some(("publish", pattern)) => {
                    topics::validate_pattern(pattern)?;
                    // No pattern that could match a topic of the host's.
                    let reaches_host = match pattern.strip_suffix('*') {
                        Some(prefix) => {
                            prefix.starts_with(topics::HOST_PREFIX)
                                || topics::HOST_PREFIX.starts_with(prefix)
                        }
                        None => pattern.starts_with(topics::HOST_PREFIX),
                    };
                    if reaches_host {
                        anyhow::bail!(
                            "`publish:{pattern}`: topics under `locker/` are the host's own"
                        );
                    }
                    Ok(Scope::Publish(pattern.to_string()))
                }
                _ => anyhow::bail!(
                    "unknown scope {text:?}: use `admin`, `read`, `metrics`, `service:NAME` or `publish:TOPIC`"
                ),
            },
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Read => f.write_str("read"),
            Scope::Metrics => f.write_str("metrics"),
            Scope::Service(name) => write!(f, "service:{name}"),
            Scope::Publish(pattern) => write!(f, "publish:{pattern}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_print_and_open_only_their_doors() {
        for text in ["admin", "read", "metrics", "service:notes"] {
            assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
        }
        assert!("root".parse::<Scope>().is_err());
        assert!("service:Not/A/Name".parse::<Scope>().is_err());
        let read = Scope::Read;
        assert!(read.opens(Door::AdminRead));
        assert!(!read.opens(Door::AdminChange));
        assert!(!read.opens(Door::Service("notes")));
        assert!(read.opens(Door::Metrics));
        assert!(!read.opens(Door::Archive));
        assert!(!Scope::Metrics.opens(Door::Archive));
        assert!(Scope::Admin.opens(Door::Archive));
        assert!(Scope::Metrics.opens(Door::Metrics));
        assert!(!Scope::Metrics.opens(Door::AdminRead));
        assert!(!Scope::Metrics.opens(Door::Service("notes")));
        let notes = Scope::Service("notes".into());
        assert!(notes.opens(Door::Service("notes")));
        assert!(!notes.opens(Door::Service("photos")));
        assert!(!notes.opens(Door::AdminRead));
        assert!(!notes.opens(Door::Metrics));
        assert!(Scope::Admin.opens(Door::Service("photos")));
        let hook: Scope = "publish:contact/*".parse().unwrap();
        assert_eq!(hook.to_string(), "publish:contact/*");
        assert!(hook.opens(Door::Publish("contact/changed")));
        assert!(!hook.opens(Door::Publish("photo/changed")));
        assert!(!hook.opens(Door::AdminChange));
        assert!(!hook.opens(Door::AdminRead));
        assert!(!hook.opens(Door::Service("contacts")));
        assert!(Scope::Admin.opens(Door::Publish("photo/changed")));
        assert!(!Scope::Read.opens(Door::Publish("photo/changed")));
        for bad in [
            "publish:locker/service.started",
            "publish:*",
            "publish:Bad Topic",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
    }
}
