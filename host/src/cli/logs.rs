//! `locker logs`: a service's log, and `--follow` to keep printing it;
//! read from the root's file, or through the admin API with `--url`.

use super::Target;
use super::access::{Access, access};
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::store::LockerRoot;

pub(super) async fn logs(target: &Target, name: &str, follow: bool) -> Result<()> {
    crate::package::manifest::validate_service_name(name)?;
    if target.url.is_some() {
        return remote(target, name, follow).await;
    }
    let root = LockerRoot::open(&target.root)?;
    let path = root.log_path(name);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => {
            bail!(
                "service {name:?} has no log yet ({} does not exist)",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut stdout = std::io::stdout();
    std::io::copy(&mut file, &mut stdout)?;
    stdout.flush()?;
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let position = file.stream_position()?;
        if file.metadata()?.len() < position {
            // Truncated or replaced: start again from the top.
            file.seek(SeekFrom::Start(0))?;
        }
        let mut chunk = Vec::new();
        file.read_to_end(&mut chunk)?;
        stdout.write_all(&chunk)?;
        stdout.flush()?;
    }
}

/// The log of a service on a host elsewhere, through its admin API.
async fn remote(target: &Target, name: &str, follow: bool) -> Result<()> {
    let Access::Host(client) = access(target)? else {
        unreachable!("--url always goes through the admin API");
    };
    let mut stdout = std::io::stdout();
    let mut from = 0;
    loop {
        let (bytes, next) = client.log(name, from).await?;
        stdout.write_all(&bytes)?;
        stdout.flush()?;
        if bytes.is_empty() {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        from = next;
    }
}
