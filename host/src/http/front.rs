//! What the front door holds: the services, the owner, the origins, and
//! the rate limit of public routes.

use std::net::IpAddr;
use std::sync::Arc;

use super::origins::Origins;
use crate::owner::Owner;
use crate::supervisor::Supervisor;

/// What the front door needs: the services, the owner, the origins.
pub struct Front {
    pub supervisor: Arc<Supervisor>,
    pub owner: Arc<Owner>,
    pub origins: Origins,
    pub public_routes: PublicThrottle,
}

impl Front {
    pub fn new(supervisor: Arc<Supervisor>, owner: Arc<Owner>, origins: Origins) -> Front {
        Front {
            supervisor,
            owner,
            origins,
            public_routes: PublicThrottle::default(),
        }
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
