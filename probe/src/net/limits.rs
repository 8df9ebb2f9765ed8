//! How many connections each network may have open at once (`networks.<name>.maxTasks`).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::NetworksConfig;
use crate::model::Network;

/// One semaphore per network. Cheap to clone (the semaphores are shared).
#[derive(Clone)]
pub struct NetworkLimits {
    sems: Arc<HashMap<Network, Arc<Semaphore>>>,
    sizes: HashMap<Network, usize>,
}

impl NetworkLimits {
    pub fn new(networks: &NetworksConfig) -> Self {
        let sizes: HashMap<Network, usize> = Network::ALL
            .into_iter()
            .map(|n| (n, networks.get(n).max_tasks.max(1)))
            .collect();
        let sems = sizes
            .iter()
            .map(|(n, size)| (*n, Arc::new(Semaphore::new(*size))))
            .collect();
        NetworkLimits {
            sems: Arc::new(sems),
            sizes,
        }
    }

    /// Waits for a free slot on `network`; the slot is held until the permit drops.
    pub async fn acquire(&self, network: Network) -> Option<OwnedSemaphorePermit> {
        match self.sems.get(&network) {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// Slots of `networks` together: how much work is worth keeping in flight.
    pub fn total(&self, networks: &[Network]) -> usize {
        networks
            .iter()
            .map(|n| self.sizes.get(n).copied().unwrap_or(1))
            .sum::<usize>()
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_network_has_its_own_slots() {
        let mut cfg = NetworksConfig::default();
        cfg.clearnet.max_tasks = Some(2);
        cfg.tor.max_tasks = Some(1);
        let l = NetworkLimits::new(&cfg);
        let a = l.acquire(Network::Clearnet).await;
        let _b = l.acquire(Network::Clearnet).await;
        assert_eq!(l.sems[&Network::Clearnet].available_permits(), 0);
        let _t = l.acquire(Network::Tor).await;
        assert_eq!(l.sems[&Network::Tor].available_permits(), 0);
        drop(a);
        assert_eq!(l.sems[&Network::Clearnet].available_permits(), 1);
        assert_eq!(l.total(&[Network::Clearnet, Network::Tor]), 3);
    }
}
