//! `{{ key }}` in `network.allow_hosts`: the host a service may reach is
//! the one the owner sets in its config (Spin's `allowed_outbound_hosts =
//! ["https://{{ host }}"]`), so a connector reaches the server the owner
//! names and nothing else.

use anyhow::{Result, bail};

/// An `allow_hosts` entry that names a config key: `{{ key }}`, or
/// `{{ key }}:port`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTemplate {
    key: String,
    port: Option<u16>,
}

impl HostTemplate {
    /// `None` for a plain entry; an error for a malformed template.
    pub fn parse(entry: &str) -> Result<Option<HostTemplate>> {
        if !entry.contains("{{") && !entry.contains("}}") {
            return Ok(None);
        }
        let malformed = || {
            anyhow::anyhow!(
                "`network.allow_hosts` entry {entry:?}: a setting is written `{{{{ key }}}}`, \
                 alone or with a port (`{{{{ key }}}}:8443`)"
            )
        };
        let rest = entry.strip_prefix("{{").ok_or_else(malformed)?;
        let (key, after) = rest.split_once("}}").ok_or_else(malformed)?;
        let key = key.trim();
        super::config_key::validate(key).map_err(|_| malformed())?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .and_then(|port| port.parse::<u16>().ok())
                    .ok_or_else(malformed)?,
            ),
        };
        Ok(Some(HostTemplate {
            key: key.to_string(),
            port,
        }))
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The entry with the owner's `value` in it: a host (`dav.example.com`,
    /// `192.168.1.5`, `[::1]`), `host:port`, or a URL whose host (and port)
    /// are taken.
    pub fn resolve(&self, value: &str) -> Result<String> {
        let value = value.trim();
        let authority = match value.split_once("://") {
            Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or_default(),
            None => value,
        };
        let plain = !authority.is_empty()
            && !authority.contains(['/', ' ', '@', '{', '}', '\\'])
            && !authority.chars().any(|c| c.is_control());
        let parsed = plain
            .then(|| http::uri::Authority::try_from(authority).ok())
            .flatten();
        let Some(parsed) = parsed else {
            // The value is not repeated: it may be meant to be private.
            bail!(
                "`{}` must be a host name or address, `host:port`, or a URL",
                self.key
            );
        };
        let host = parsed.host();
        Ok(match (self.port, parsed.port_u16()) {
            (Some(port), _) => format!("{host}:{port}"),
            (None, Some(port)) => format!("{host}:{port}"),
            (None, None) => host.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_a_key_alone_or_with_a_port() {
        let plain = HostTemplate::parse("{{ server }}").unwrap().unwrap();
        assert_eq!(plain.key(), "server");
        assert_eq!(plain.resolve("dav.example.com").unwrap(), "dav.example.com");
        assert_eq!(
            plain
                .resolve("https://dav.example.com:8443/dav/me/")
                .unwrap(),
            "dav.example.com:8443"
        );
        assert_eq!(plain.resolve("127.0.0.1:5232").unwrap(), "127.0.0.1:5232");
        let with_port = HostTemplate::parse("{{server}}:8443").unwrap().unwrap();
        assert_eq!(
            with_port.resolve("https://dav.example.com/").unwrap(),
            "dav.example.com:8443"
        );
        assert_eq!(HostTemplate::parse("api.example.com").unwrap(), None);
    }

    #[test]
    fn refuses_what_is_not_one_host() {
        for entry in [
            "{{ server",
            "x{{ server }}",
            "{{ server }}/path",
            "{{ a b }}",
            "{{ s }}:x",
        ] {
            assert!(HostTemplate::parse(entry).is_err(), "{entry}");
        }
        let template = HostTemplate::parse("{{ server }}").unwrap().unwrap();
        for value in [
            "",
            "a b",
            "user@evil.example",
            "10.0.0.0/8",
            "{{ other }}",
            "https://",
        ] {
            assert!(template.resolve(value).is_err(), "{value:?}");
        }
    }
}
