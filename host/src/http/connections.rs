//! Bounds on the connections the front door keeps open, so that slow or
//! idle clients cannot exhaust file descriptors while normal requests keep
//! being answered: a connection whose request head does not arrive within
//! `head_timeout` is closed (a keep-alive connection waiting for its next
//! request counts as one), and at most `max_open` connections are open at
//! once, at most `max_per_client` from one address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many connections, and for how long without a request head.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub head_timeout: Duration,
    pub max_open: usize,
    pub max_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            head_timeout: Duration::from_secs(10),
            max_open: 4096,
            max_per_client: 256,
        }
    }
}

/// The connections open now, in all and by client address.
pub struct OpenConnections {
    pub limits: ConnectionLimits,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; counted until dropped.
pub struct ConnectionSlot {
    open: Arc<OpenConnections>,
    client: IpAddr,
}

impl OpenConnections {
    pub fn new(limits: ConnectionLimits) -> Arc<OpenConnections> {
        Arc::new(OpenConnections {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A slot for a new connection from `client`, or `None` when the host
    /// or that client is at its limit.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Option<ConnectionSlot> {
        let mut counts = self.counts.lock().unwrap();
        let from_client = counts.by_client.get(&client).copied().unwrap_or(0);
        if counts.total >= self.limits.max_open || from_client >= self.limits.max_per_client {
            return None;
        }
        counts.total += 1;
        counts.by_client.insert(client, from_client + 1);
        Some(ConnectionSlot {
            open: self.clone(),
            client,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.open.counts.lock().unwrap();
        counts.total -= 1;
        if let Some(count) = counts.by_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                counts.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_all_and_per_client_and_freed_when_closed() {
        let open = OpenConnections::new(ConnectionLimits {
            max_open: 3,
            max_per_client: 2,
            ..ConnectionLimits::default()
        });
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        let first = open.admit(a).unwrap();
        let _second = open.admit(a).unwrap();
        assert!(open.admit(a).is_none(), "a client past its share");
        let _third = open.admit(b).unwrap();
        assert!(open.admit(c).is_none(), "the host past its total");
        drop(first);
        assert!(
            open.admit(c).is_some(),
            "a closed connection frees its slot"
        );
        assert!(!open.counts.lock().unwrap().by_client.contains_key(&c));
    }
}
