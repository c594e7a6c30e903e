//! Bounds on the connections the front door keeps open, so that slow or
//! idle clients cannot exhaust file descriptors while normal requests keep
//! being answered: a connection that has had no request in flight for
//! `head_timeout` is closed (`Activity`), whatever it is doing meanwhile:
//! sending nothing, a request head byte by byte, the first bytes of the
//! HTTP/2 preface, or waiting on keep-alive, over HTTP/1 or HTTP/2 alike;
//! and at most `max_open` connections are open at once, at most `max_per_client` from one client: one IPv4 address, or
//! one IPv6 `/64` (a single host is commonly given a whole `/64`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

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
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<ConnectionSlot> {
        let client = client_of(address);
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

/// Who a connection counts against: its IPv4 address (also when written as
/// IPv6), or the `/64` of its IPv6 address.
fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
        v4 => v4,
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

/// Whether a connection has a request in flight, and since when it has had
/// none: what its watchdog reads. A request is in flight from its head
/// until its response body is done, so a long download is not "idle".
/// Updating it costs two atomic operations per request and wakes nothing;
/// the watchdog looks only when its own timer fires.
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the last request ended.
    idle_since: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
        })
    }

    /// Counts a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Resolves once the connection has had nothing in flight for `bound`.
    pub async fn idle_for(&self, bound: Duration) {
        let mut wake = self.opened + bound;
        loop {
            tokio::time::sleep_until(wake).await;
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                wake = Instant::now() + bound;
                continue;
            }
            let since = self.opened + Duration::from_millis(self.idle_since.load(Ordering::SeqCst));
            if since + bound <= Instant::now() {
                return;
            }
            wake = since + bound;
        }
    }
}

/// One request in flight on a connection.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.opened.elapsed().as_millis() as u64;
        activity.idle_since.store(now, Ordering::SeqCst);
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
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

    #[tokio::test]
    async fn a_connection_is_idle_only_with_nothing_in_flight() {
        let activity = Activity::new();
        let bound = Duration::from_millis(200);
        let request = activity.begin();
        // In flight for well past the bound: not idle.
        let idle = tokio::time::timeout(bound * 3, activity.idle_for(bound)).await;
        assert!(idle.is_err(), "idle while a request was in flight");
        drop(request);
        let ended = Instant::now();
        activity.idle_for(bound).await;
        assert!(ended.elapsed() >= bound, "idle before the bound had passed");
    }

    #[test]
    fn an_ipv6_client_is_its_whole_64() {
        let open = OpenConnections::new(ConnectionLimits {
            max_per_client: 2,
            ..ConnectionLimits::default()
        });
        let _a = open.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        let _b = open.admit("2001:db8:1:2:ffff::9".parse().unwrap()).unwrap();
        assert!(
            open.admit("2001:db8:1:2:dead::1".parse().unwrap())
                .is_none()
        );
        assert!(open.admit("2001:db8:1:3::1".parse().unwrap()).is_some());
        let _c = open.admit("::ffff:10.0.0.1".parse().unwrap()).unwrap();
        let _d = open.admit("10.0.0.1".parse().unwrap()).unwrap();
        assert!(open.admit("10.0.0.1".parse().unwrap()).is_none());
    }
}
