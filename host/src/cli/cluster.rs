//! `locker cluster status`: the hosts sharing this locker, which host owns
//! each service, and the serving host's NATS connection.

use anyhow::{Result, bail};

use super::Target;
use super::access::{Access, access};

pub(super) async fn status(root: &Target, json: bool) -> Result<()> {
    let Access::Host(client) = access(root)? else {
        bail!("no host serves this root: `locker serve --cluster nats://…` it first");
    };
    let view = client.cluster().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    println!(
        "this host: {} (NATS {}, {})",
        view.host, view.nats.server, view.nats.state
    );
    println!("hosts alive: {}", view.hosts.len());
    println!("{:<20} {:<32} {:<26} NATS SERVER", "HOST", "URL", "JOINED");
    for host in &view.hosts {
        println!(
            "{:<20} {:<32} {:<26} {}",
            host.host, host.url, host.joined_at, host.nats_server
        );
    }
    println!(
        "services with an owner: {} (a lease lasts {}s without renewal)",
        view.leases.len(),
        view.lease_seconds
    );
    for lease in &view.leases {
        println!("  {:<24} {}", lease.service, lease.host);
    }
    Ok(())
}
