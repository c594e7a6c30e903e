//! What the front door holds: the services, the owner, the origins, the
//! rate limit of public routes, and the cluster if the host is in one.

use std::net::IpAddr;
use std::sync::Arc;

use super::origins::Origins;
use crate::cluster::Cluster;
use crate::owner::Owner;
use crate::supervisor::Supervisor;

/// What the front door needs: the services, the owner, the origins.
pub struct Front {
    pub supervisor: Arc<Supervisor>,
    pub owner: Arc<Owner>,
    pub origins: Origins,
    pub public_routes: PublicThrottle,
    /// The cluster this host is one of, if any.
    pub cluster: Option<Arc<Cluster>>,
}

impl Front {
    pub fn new(supervisor: Arc<Supervisor>, owner: Arc<Owner>, origins: Origins) -> Front {
        Front {
            supervisor,
            owner,
            origins,
            public_routes: PublicThrottle::default(),
            cluster: None,
        }
    }

    /// The front door of one host of `cluster`.
    pub fn in_cluster(mut self, cluster: Arc<Cluster>) -> Front {
        self.cluster = Some(cluster);
        self
    }
}

/// Public routes need no login, so they are rate-limited per client.
pub struct PublicThrottle(governor::DefaultKeyedRateLimiter<IpAddr>);

impl Default for PublicThrottle {
    fn default() -> Self {
        let quota = governor::Quota::per_second(std::num::NonZeroU32::new(50).unwrap())
            .allow_burst(std::num::NonZeroU32::new(200).unwrap());
        PublicThrottle(governor::RateLimiter::keyed(quota))
    }
}

impl PublicThrottle {
    pub fn admit(&self, client: IpAddr) -> bool {
        if self.0.len() > 100_000 {
            self.0.retain_recent();
        }
        self.0.check_key(&client).is_ok()
    }
}
