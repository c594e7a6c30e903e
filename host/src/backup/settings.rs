//! `[backup]` in the host's settings (`<root>/host.toml`): when backups are
//! made on their own, where they go, how many are kept, and the file holding
//! the passphrase that seals their secrets.
//!
//! ```toml
//! [backup]
//! schedule = "0 0 3 * * *"       # cron with seconds, UTC: every night at 03:00
//! dir = "/mnt/usb/locker"         # default: <root>/backups (relative: to the root)
//! keep = 7                        # the newest this many are kept (default 7)
//! passphrase_file = "/etc/locker/backup-passphrase"   # without it: secrets left out
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The host's own settings file, in the root.
pub const HOST_SETTINGS: &str = "host.toml";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    #[serde(default)]
    pub backup: BackupSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// A cron expression with seconds (UTC), as a manifest's `[[schedule]]`.
    pub schedule: Option<String>,
    pub dir: Option<PathBuf>,
    #[serde(default = "default_keep")]
    pub keep: usize,
    pub passphrase_file: Option<PathBuf>,
}

fn default_keep() -> usize {
    7
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            schedule: None,
            dir: None,
            keep: default_keep(),
            passphrase_file: None,
        }
    }
}

impl HostSettings {
    /// Reads `host.toml` in `root_dir`; its absence means every default.
    pub fn read(root_dir: &Path) -> Result<HostSettings> {
        let path = root_dir.join(HOST_SETTINGS);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let settings: HostSettings =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        settings
            .backup
            .check()
            .with_context(|| format!("{}: [backup]", path.display()))?;
        Ok(settings)
    }
}

impl BackupSettings {
    fn check(&self) -> Result<()> {
        if let Some(schedule) = &self.schedule {
            crate::package::job_spec::parse_cron(schedule)?;
        }
        if self.keep == 0 {
            bail!("keep = 0 would delete each backup as soon as it is made; keep at least 1");
        }
        Ok(())
    }

    /// The folder backups go to.
    pub fn dir(&self, root_dir: &Path) -> PathBuf {
        match &self.dir {
            Some(dir) => root_dir.join(dir),
            None => root_dir.join("backups"),
        }
    }

    /// The schedule, checked.
    pub fn timing(&self) -> Option<cron::Schedule> {
        self.schedule
            .as_deref()
            .and_then(|s| crate::package::job_spec::parse_cron(s).ok())
    }

    /// The passphrase for scheduled backups, read from its file (its first
    /// line, without the line's end).
    pub fn passphrase(&self) -> Result<Option<age::secrecy::SecretString>> {
        self.passphrase_file
            .as_deref()
            .map(super::secrets::read_passphrase_file)
            .transpose()
    }
}
