//! Packages pushed to and pulled from a real registry on loopback: Debian's
//! `docker-registry` (the CNCF distribution registry), one per test, on a
//! free port, with its storage in a temporary folder.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use locker_registry::artifact::{Artifact, PackageFiles, pack};
use locker_registry::client::DEFAULT_MAX_COMPONENT;
use locker_registry::keys::PublisherKey;
use locker_registry::local::LocalRegistry;

fn guest_package(name: &str) -> (PackageFiles, Vec<u8>) {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/out")
        .join(name);
    let manifest = std::fs::read_to_string(dir.join("locker.toml")).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run scripts/build-guests first",
            dir.display()
        )
    });
    let component_file = manifest
        .lines()
        .find_map(|l| l.strip_prefix("component = \"")?.strip_suffix('"'))
        .unwrap()
        .to_string();
    let files = PackageFiles {
        name: name.into(),
        version: "0.1.0".into(),
        manifest,
        schemas: Default::default(),
    };
    (files, std::fs::read(dir.join(component_file)).unwrap())
}

fn signed(key: &PublisherKey) -> Artifact {
    let (files, component) = guest_package("hello-rs");
    pack(&files, component, "2026-12-01T00:00:00Z", key).unwrap()
}

#[tokio::test]
async fn a_published_package_pulls_back_verified_and_a_version_is_published_once() {
    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let key = PublisherKey::generate().unwrap();
    let artifact = signed(&key);
    let client = registry.client();
    let reference = registry.reference("alice/hello-rs:0.1.0");
    client.push(&reference, &artifact).await.unwrap();

    let pinned = key.public();
    let pulled = client
        .pull(&reference, Some(&pinned), DEFAULT_MAX_COMPONENT)
        .await
        .unwrap();
    assert_eq!(pulled.component, artifact.component);
    assert_eq!(pulled.files.name, "hello-rs");
    assert!(pulled.files.manifest.contains("name = \"hello-rs\""));
    assert_eq!(pulled.publisher, key.public());
    assert!(pulled.manifest_digest.starts_with("sha256:"));
    // The same digest pulls by digest too.
    let by_digest = registry.reference(&format!("alice/hello-rs@{}", pulled.manifest_digest));
    assert!(
        client
            .pull(&by_digest, Some(&pinned), DEFAULT_MAX_COMPONENT)
            .await
            .is_ok()
    );
    assert_eq!(client.tags(&reference).await.unwrap(), vec!["0.1.0"]);

    let again = client.push(&reference, &signed(&key)).await.unwrap_err();
    assert!(
        format!("{again:#}").contains("published already"),
        "{again:#}"
    );
}

#[tokio::test]
async fn a_tampered_package_is_refused_naming_what_was_changed() {
    let Some(registry) = LocalRegistry::start().await else {
        return;
    };
    let key = PublisherKey::generate().unwrap();
    let client = registry.client();
    let pinned = key.public();
    let refusal = |tag: &'static str| {
        let reference = registry.reference(&format!("alice/hello-rs:{tag}"));
        let client = &client;
        async move {
            let error = client
                .pull(&reference, Some(&pinned), DEFAULT_MAX_COMPONENT)
                .await
                .unwrap_err();
            format!("{error:#}")
        }
    };

    // Its locker.toml widened after signing.
    let mut widened = signed(&key);
    let manifest = widened.annotations.get_mut("dev.locker.manifest").unwrap();
    let wider = format!(
        "{}calls = [\"bank\"]\n",
        String::from_utf8(STANDARD.decode(&*manifest).unwrap()).unwrap()
    );
    *manifest = STANDARD.encode(wider);
    client
        .push(&registry.reference("alice/hello-rs:widened"), &widened)
        .await
        .unwrap();
    let said = refusal("widened").await;
    assert!(
        said.contains("dev.locker.manifest") && said.contains("not the one signed"),
        "{said}"
    );

    // Another component under the signed annotations.
    let mut swapped = signed(&key);
    swapped.component.extend_from_slice(b"\0\0");
    client
        .push(&registry.reference("alice/hello-rs:swapped"), &swapped)
        .await
        .unwrap();
    let said = refusal("swapped").await;
    assert!(said.contains("was not signed"), "{said}");

    // Signed by someone else than the key trusted for it.
    let other = PublisherKey::generate().unwrap();
    client
        .push(&registry.reference("alice/hello-rs:other"), &signed(&other))
        .await
        .unwrap();
    let said = refusal("other").await;
    assert!(
        said.contains(&other.public().fingerprint()) && said.contains(&pinned.fingerprint()),
        "{said}"
    );

    // Larger than a pull takes.
    let reference = registry.reference("alice/hello-rs:0.1.0");
    client.push(&reference, &signed(&key)).await.unwrap();
    let error = client
        .pull(&reference, Some(&pinned), 1024)
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("more than the 1024"),
        "{error:#}"
    );
}
