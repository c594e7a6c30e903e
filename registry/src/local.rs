//! A registry on this machine, for tests and benchmarks: Debian's
//! `docker-registry` (the CNCF distribution registry) on a free loopback
//! port, its storage in a temporary folder, stopped when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::Reference;

use crate::client::{Registry, parse_reference};

/// Where Debian installs it (`apt-get install docker-registry`).
pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";
/// Where Debian installs `htpasswd` (`apt-get install apache2-utils`).
pub const HTPASSWD: &str = "/usr/bin/htpasswd";

/// A `docker-registry` process, stopped when dropped.
pub struct LocalRegistry {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub address: String,
    _storage: tempfile::TempDir,
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LocalRegistry {
    /// `None` (and a note saying why) where Debian's `docker-registry` is
    /// not installed; `.ci/run` installs it.
    pub async fn start() -> Option<LocalRegistry> {
        LocalRegistry::serve(None).await
    }

    /// One that lets in only `user` with `password` (basic auth from an
    /// htpasswd file made by Debian's `htpasswd`, of apache2-utils); `None`
    /// where either program is missing.
    pub async fn start_with_login(user: &str, password: &str) -> Option<LocalRegistry> {
        LocalRegistry::serve(Some((user, password))).await
    }

    async fn serve(login: Option<(&str, &str)>) -> Option<LocalRegistry> {
        let binary = Path::new(DOCKER_REGISTRY);
        if !binary.exists() {
            eprintln!(
                "skipped: /usr/bin/docker-registry is missing (apt-get install docker-registry)"
            );
            return None;
        }
        let storage = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
            storage.path().join("data").display()
        );
        if let Some((user, password)) = login {
            let htpasswd = Path::new(HTPASSWD);
            if !htpasswd.exists() {
                eprintln!("skipped: /usr/bin/htpasswd is missing (apt-get install apache2-utils)");
                return None;
            }
            let made = Command::new(htpasswd)
                .args(["-Bbn", user, password])
                .output()
                .unwrap();
            assert!(made.status.success(), "htpasswd failed");
            let file = storage.path().join("htpasswd");
            std::fs::write(&file, made.stdout).unwrap();
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: locker-test\n    path: {}\n",
                file.display()
            ));
        }
        std::fs::write(&config, yaml).unwrap();
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = LocalRegistry {
            child,
            address,
            _storage: storage,
        };
        let probe = Registry::new(
            &registry.address,
            false,
            login.map(|(user, password)| (user.to_string(), password.to_string())),
        );
        let reference = registry.reference("probe/probe:0.0.0");
        let started = Instant::now();
        while probe.exists(&reference).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "docker-registry did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(registry)
    }

    pub fn client(&self) -> Registry {
        Registry::new(&self.address, false, None)
    }

    /// `ADDRESS/rest`, e.g. `reference("alice/notes:0.1.0")`.
    pub fn reference(&self, rest: &str) -> Reference {
        parse_reference(&format!("{}/{rest}", self.address)).unwrap()
    }

    /// Pushes a component as other tools (wkg, oras) do: the standard Wasm
    /// layout, with no Locker manifest and no signature.
    pub async fn push_unsigned(&self, rest: &str, component: Vec<u8>) -> anyhow::Result<()> {
        let config = serde_json::json!({
            "created": "2026-12-01T00:00:00Z",
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [crate::statement::sha256(&component)],
        });
        self.client()
            .put(
                &self.reference(rest),
                oci_client::client::ImageLayer::new(
                    component,
                    crate::artifact::WASM_MEDIA_TYPE.to_string(),
                    None,
                ),
                oci_client::client::Config::new(
                    serde_json::to_vec(&config)?,
                    crate::artifact::CONFIG_MEDIA_TYPE.to_string(),
                    None,
                ),
                None,
            )
            .await?;
        Ok(())
    }
}
