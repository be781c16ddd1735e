//! The tenants' shard sets: a tenant's set starts (with `min_shards` shards) on its first batch,
//! is retired once it has held nothing for 30 shard update intervals (5 minutes by default; it
//! starts again on the tenant's next batch), and all are drained together at shutdown. Each set
//! has its own lock, so a tenant waiting for room in its full shards never holds up another's.

use super::shards::{ShardSet, Shared, Tenant};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// One tenant's entry: its shard set (`None` once retired or stopped) and its last input.
pub struct Entry {
    pub tenant: Arc<Tenant>,
    pub set: tokio::sync::Mutex<Option<ShardSet>>,
    last_input: Mutex<Instant>,
}

impl Entry {
    pub fn touch(&self) {
        *self.last_input.lock() = Instant::now();
    }
}

pub struct Tenants {
    shared: Arc<Shared>,
    /// `None` once shut down.
    map: Mutex<Option<HashMap<Arc<str>, Arc<Entry>>>>,
    last_sweep: Mutex<Instant>,
}

/// Idle shard sets are retired after this many shard update intervals.
const IDLE_INTERVALS: u32 = 30;

impl Tenants {
    pub fn new(shared: Arc<Shared>) -> Self {
        Tenants {
            shared,
            map: Mutex::new(Some(HashMap::new())),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// The tenant's entry, its shard set started if it is new; `None` once shut down.
    pub fn get(&self, tenant: &Arc<str>) -> Option<Arc<Entry>> {
        let mut map = self.map.lock();
        let map = map.as_mut()?;
        if let Some(e) = map.get(tenant) {
            return Some(e.clone());
        }
        let t = Arc::new(Tenant::new(&self.shared, tenant.clone()));
        let set = ShardSet::start(
            self.shared.clone(),
            t.clone(),
            self.shared.cfg.queue_config.min_shards,
        );
        tracing::debug!(exporter = %self.shared.name, tenant = %tenant, "shards started for a new tenant");
        let e = Arc::new(Entry {
            tenant: t,
            set: tokio::sync::Mutex::new(Some(set)),
            last_input: Mutex::new(Instant::now()),
        });
        map.insert(tenant.clone(), e.clone());
        Some(e)
    }

    pub fn is_shut_down(&self) -> bool {
        self.map.lock().is_none()
    }

    /// At most once per shard update interval: retires the sets of tenants idle for
    /// `IDLE_INTERVALS` intervals that hold nothing and that no batch is being handed to.
    pub async fn retire_idle(&self) {
        let interval = self.shared.cfg.queue_config.shard_update_interval.get();
        {
            let mut last = self.last_sweep.lock();
            if last.elapsed() < interval {
                return;
            }
            *last = Instant::now();
        }
        let idle_after = interval * IDLE_INTERVALS;
        let mut retired = Vec::new();
        if let Some(map) = self.map.lock().as_mut() {
            map.retain(|_, e| {
                if e.last_input.lock().elapsed() < idle_after || e.tenant.held() != 0 {
                    return true;
                }
                let Ok(mut set) = e.set.try_lock() else {
                    return true;
                };
                retired.extend(set.take());
                false
            });
        }
        for set in retired {
            tracing::debug!(exporter = %self.shared.name, tenant = %set.tenant.name, "idle tenant's shards stopped");
            set.stop().await;
        }
    }

    /// Shuts down: no new tenant; every set sends what it holds (until the hard stop).
    pub async fn stop(&self) {
        let Some(map) = self.map.lock().take() else {
            return;
        };
        let stops = map.into_values().map(|e| async move {
            if let Some(set) = e.set.lock().await.take() {
                set.stop().await;
            }
        });
        futures::future::join_all(stops).await;
    }
}
