//! The locker root: one directory that holds everything of one locker.
//!
//! ```text
//! <root>/
//!   locker.db          durable state (SQLite, versioned schema): the catalog, events, jobs
//!   locker.lock        held by whoever mutates the root: a serving host, or an offline CLI
//!   host.json          where the host serving this root listens (present while it runs)
//!   cli.token          the local CLI's admin token (mode 0600; made by `locker serve`)
//!   secrets.key        seals the secret values of services' config (mode 0600; keep a
//!                      backup of it apart from the root's)
//!   packages/<name>/   the installed package: locker.toml + component.wasm
//!   services/<name>/   the service's working directory, the only files it can see
//!   previous/<name>/   the version before its last upgrade: package/, and data/ (a
//!                      copy of its working directory as the upgrade found it)
//!   logs/<name>.log    the service's stdout and stderr, and the host's notes about it
//!   cache/             compiled code, keyed by component digest and engine settings
//!   tmp/               staging area for installs and backups; emptied at start
//!   host.toml          the host's own settings (`[backup]`), if any
//!   backups/           backups made by the host (unless `[backup] dir` says elsewhere)
//!   tls/               the certificate ACME issued, and its account
//! ```
//!
//! `locker backup` makes one consistent archive of it while a host serves
//! (`crate::backup`); copying the directory while nothing runs does too
//! (with `secrets.key` in the copy, whoever holds it can read the services'
//! secrets).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Paths inside a locker root.
#[derive(Debug, Clone)]
pub struct LockerRoot {
    dir: PathBuf,
}

impl LockerRoot {
    /// Opens (and creates if needed) the root directory and its sub-folders.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create locker root {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("cannot resolve locker root {}", dir.display()))?;
        let root = LockerRoot { dir };
        for sub in [
            root.packages_dir(),
            root.services_dir(),
            root.logs_dir(),
            root.tmp_dir(),
        ] {
            std::fs::create_dir_all(&sub)
                .with_context(|| format!("cannot create {}", sub.display()))?;
        }
        Ok(root)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("locker.db")
    }

    /// A connection to the root's SQLite database, as every part uses it.
    pub fn open_database(&self) -> Result<rusqlite::Connection> {
        let path = self.db_path();
        let mut db = rusqlite::Connection::open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // WAL lets readers (the CLI) proceed while the host writes; the busy
        // timeout makes concurrent writers wait instead of failing; FULL
        // makes a commit durable before it returns.
        db.busy_timeout(Duration::from_secs(10))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        super::schema::migrate(&mut db)
            .with_context(|| format!("cannot bring {} up to date", path.display()))?;
        Ok(db)
    }
    /// The key that seals secret config values (see `store::config`).
    pub fn secrets_key_path(&self) -> PathBuf {
        self.dir.join("secrets.key")
    }
    /// The admin token the CLI on this machine uses to reach the host.
    pub fn cli_token_path(&self) -> PathBuf {
        self.dir.join("cli.token")
    }
    pub fn packages_dir(&self) -> PathBuf {
        self.dir.join("packages")
    }
    pub fn package_dir(&self, name: &str) -> PathBuf {
        self.packages_dir().join(name)
    }
    pub fn services_dir(&self) -> PathBuf {
        self.dir.join("services")
    }
    /// The working directory of a service: the only part of the file system it sees.
    pub fn work_dir(&self, name: &str) -> PathBuf {
        self.services_dir().join(name)
    }
    /// The version a service had before its last upgrade (`locker rollback`).
    pub fn previous_dir(&self, name: &str) -> PathBuf {
        self.dir.join("previous").join(name)
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }
    pub fn default_cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }
    fn lock_path(&self) -> PathBuf {
        self.dir.join("locker.lock")
    }
    fn host_record_path(&self) -> PathBuf {
        self.dir.join("host.json")
    }

    /// Takes the root's exclusive lock without waiting; `None` when someone else holds it.
    pub fn try_lock(&self) -> Result<Option<RootLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.lock_path())
            .with_context(|| format!("cannot open {}", self.lock_path().display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(RootLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", self.lock_path().display()))
            }
        }
    }

    /// Where the host that serves this root listens, if one does.
    ///
    /// A host holds the root lock for as long as it runs, so a record whose
    /// lock is free is stale and ignored.
    pub fn read_host_record(&self) -> Option<HostRecord> {
        let text = std::fs::read_to_string(self.host_record_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write_host_record(&self, record: &HostRecord) -> Result<()> {
        write_atomically(
            &self.host_record_path(),
            serde_json::to_string_pretty(record)?.as_bytes(),
            &self.tmp_dir(),
        )
    }

    pub fn remove_host_record(&self) {
        let _ = std::fs::remove_file(self.host_record_path());
    }

    /// Either the lock (nobody serves the root) or the serving host's record.
    ///
    /// Waits while another short-lived command holds the lock, up to `patience`.
    pub fn lock_or_find_host(&self, patience: Duration) -> Result<RootAccess> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(lock) = self.try_lock()? {
                return Ok(RootAccess::Offline(lock));
            }
            if let Some(record) = self.read_host_record() {
                return Ok(RootAccess::Served(record));
            }
            if Instant::now() >= deadline {
                bail!(
                    "locker root {} is locked by another command; try again",
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How a command reaches the root: directly, or through the host serving it.
pub enum RootAccess {
    Offline(RootLock),
    Served(HostRecord),
}

/// The root's exclusive lock; released when dropped (or when the process dies).
pub struct RootLock {
    _file: File,
}

/// What a serving host writes to `host.json` so that commands can find it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostRecord {
    pub pid: u32,
    /// Base URL of the host, e.g. `http://127.0.0.1:8042`.
    pub url: String,
    /// The locker's origin in a browser, e.g. `http://locker.localhost:8042`.
    #[serde(default)]
    pub origin: String,
    /// The address it listens on (`url` may name the domain instead).
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// The certificate it serves over TLS, for the local CLI to trust.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
}

/// Writes a file so that readers see either the old or the new content, never
/// half. The file is readable and writable by its owner only (0600, as
/// `tempfile` makes it), so it may hold a secret.
pub fn write_atomically(path: &Path, bytes: &[u8], tmp_dir: &Path) -> Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(tmp_dir)
        .with_context(|| format!("cannot create a temporary file in {}", tmp_dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
