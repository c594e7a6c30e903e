//! What a package may reach beyond its own folder, read from its manifest:
//! the hosts its outgoing HTTP may reach, the services it may call, the
//! topics it publishes and receives, its public routes and the secrets it
//! asks for. The owner sees and accepts this before a first install from a
//! registry, and again whatever an upgrade adds to it.

use super::manifest::Manifest;
use crate::api::Reach;

pub fn reach_of(manifest: &Manifest) -> Reach {
    Reach {
        outbound: manifest
            .network
            .allow_hosts
            .iter()
            .map(|entry| outbound_of(manifest, entry))
            .collect(),
        provides: manifest.provides.clone(),
        calls: manifest.calls.clone(),
        publishes: manifest.published_topics(),
        subscribes: manifest.subscribes.clone(),
        public_routes: manifest.public.clone(),
        secrets: manifest
            .config
            .iter()
            .filter(|(_, key)| key.secret)
            .map(|(name, _)| name.clone())
            .collect(),
    }
}

/// An `allow_hosts` entry as the owner must see it: a `{{ key }}` names
/// the default it opens until the owner sets the key.
fn outbound_of(manifest: &Manifest, entry: &str) -> String {
    let default = super::host_template::HostTemplate::parse(entry)
        .ok()
        .flatten()
        .and_then(|template| manifest.config.get(template.key())?.default.clone());
    match default {
        Some(default) => format!("{entry} (until set: {default})"),
        None => entry.to_string(),
    }
}

/// The manifest an unsigned component gets when the owner gives none: the
/// narrowest there is (no network, no events, no calls, no public routes),
/// named after its repository and versioned by its tag.
pub fn narrowest_manifest(name: &str, version: &str, source: &str) -> String {
    format!(
        "name = {name:?}\nversion = {version:?}\nkind = \"app\"\ndescription = {description:?}\ncomponent = \"component.wasm\"\n",
        description = format!("installed unsigned from {source}")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_widens_by_what_it_adds() {
        let old = Manifest::parse(
            "name = \"c\"\nversion = \"0.1.0\"\nkind = \"connector\"\ndescription = \"d\"\ncomponent = \"c.wasm\"\n[network]\nallow_hosts = [\"a.example\"]\n",
            "old",
        )
        .unwrap();
        let new = Manifest::parse(
            "name = \"c\"\nversion = \"0.2.0\"\nkind = \"connector\"\ndescription = \"d\"\ncomponent = \"c.wasm\"\npublic = [\"/hook\"]\n[network]\nallow_hosts = [\"a.example\", \"b.example\"]\n[config.token]\ndescription = \"t\"\nsecret = true\n",
            "new",
        )
        .unwrap();
        let widens = reach_of(&new).beyond(&reach_of(&old));
        assert_eq!(widens.outbound, ["b.example"]);
        assert_eq!(widens.public_routes, ["/hook"]);
        assert_eq!(widens.secrets, ["token"]);
        assert!(reach_of(&old).beyond(&reach_of(&new)).is_empty());
        // A template shows what it opens until the owner sets it; text that
        // could steer a terminal is shown escaped.
        let templated = Manifest::parse(
            "name = \"c\"\nversion = \"0.1.0\"\nkind = \"connector\"\ndescription = \"d\"\ncomponent = \"c.wasm\"\npublic = [\"/a\\u001b[2K\"]\n[network]\nallow_hosts = [\"{{ server }}\"]\n[config.server]\ndescription = \"s\"\ndefault = \"evil.example\"\n",
            "templated",
        )
        .unwrap();
        let lines = reach_of(&templated).lines().join("\n");
        assert!(
            lines.contains("{{ server }} (until set: evil.example)"),
            "{lines}"
        );
        assert!(
            !lines.contains('\u{1b}') && lines.contains("\\u{1b}"),
            "{lines}"
        );
        let narrow = Manifest::parse(&narrowest_manifest("x", "1.0.0", "r/x"), "narrow").unwrap();
        assert!(reach_of(&narrow).is_empty());
    }
}
