//! Shared helpers of the benchmark programs.

use std::time::Duration;

/// The value at quantile `q` (0..=1) of some durations, in milliseconds.
pub fn quantile_ms(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    if samples.is_empty() {
        return f64::NAN;
    }
    let index = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[index].as_secs_f64() * 1000.0
}

/// A package folder built by `scripts/build-guests`.
pub fn guest(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/out")
        .join(name);
    assert!(
        dir.join("locker.toml").exists(),
        "{} is missing: run scripts/build-guests",
        dir.display()
    );
    dir
}

/// A copy of a guest package under another service name (and manifest edits).
pub fn renamed_guest(
    dir: &std::path::Path,
    guest_name: &str,
    new_name: &str,
    edit: impl Fn(String) -> String,
) -> std::path::PathBuf {
    let source = guest(guest_name);
    let target = dir.join(new_name);
    std::fs::create_dir_all(&target).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
    }
    let manifest = std::fs::read_to_string(target.join("locker.toml")).unwrap();
    let manifest = manifest.replace(
        &format!("name = \"{guest_name}\""),
        &format!("name = \"{new_name}\""),
    );
    std::fs::write(target.join("locker.toml"), edit(manifest)).unwrap();
    target
}

/// Running `locker serve` as a separate process, as an owner would.
pub mod host {
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A `locker serve` process; killed when dropped.
    pub struct Host {
        pub child: Child,
        /// `http://127.0.0.1:PORT`, the listener.
        pub url: String,
        /// The admin token the host left in the root for the local CLI.
        pub token: String,
    }

    impl Host {
        /// `127.0.0.1:PORT`.
        pub fn address(&self) -> &str {
            self.url.trim_start_matches("http://")
        }

        /// The `Host` of a service's own origin: `NAME.locker.localhost:PORT`.
        pub fn service_host(&self, name: &str) -> String {
            let port = self.address().rsplit(':').next().unwrap_or_default();
            format!("{name}.locker.localhost:{port}")
        }
    }

    impl Drop for Host {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Starts `locker serve` and waits until it answers; returns how long that took.
    pub fn start(locker: &Path, root: &Path, cache: &Path) -> anyhow::Result<(Host, Duration)> {
        start_with(locker, root, cache, &[])
    }

    /// `start`, with more arguments to `locker serve`.
    pub fn start_with(
        locker: &Path,
        root: &Path,
        cache: &Path,
        extra: &[&str],
    ) -> anyhow::Result<(Host, Duration)> {
        let _ = std::fs::remove_file(root.join("host.json"));
        let started = Instant::now();
        let child = Command::new(locker)
            .args(["serve", "--listen", "127.0.0.1:0", "--root"])
            .arg(root)
            .arg("--cache-dir")
            .arg(cache)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("LOCKER_LOG", "warn")
            .spawn()?;
        let pid = child.id();
        let mut host = Host {
            child,
            url: String::new(),
            token: String::new(),
        };
        loop {
            if let Ok(text) = std::fs::read_to_string(root.join("host.json"))
                && let Ok(record) = serde_json::from_str::<serde_json::Value>(&text)
                && record["pid"].as_u64() == Some(pid as u64)
            {
                host.url = record["url"].as_str().unwrap().to_string();
                host.token = std::fs::read_to_string(root.join("cli.token"))?
                    .trim()
                    .to_string();
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the host did not start"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Ready means answering HTTP, not just listening.
        while std::net::TcpStream::connect(host.url.trim_start_matches("http://")).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok((host, started.elapsed()))
    }

    /// Resident memory of a process, in KiB.
    pub fn rss_kib(pid: u32) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// CPU time (user + system) a process has used so far.
    pub fn cpu_time(pid: u32) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) close with ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks: u64 = fields
            .get(11..13)
            .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
        // Linux reports CPU time in clock ticks of 1/100 s.
        Duration::from_millis(ticks * 10)
    }
}
