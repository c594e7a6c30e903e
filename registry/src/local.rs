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
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
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
        let probe = registry.client();
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
}
