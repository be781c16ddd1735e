//! Send slots: the exporter-wide limit on remote_write requests in flight (`max_shards`), shared by
//! every tenant's shards. When all slots are taken, the next free one goes to a waiting shard of
//! the best SLA tier (gold, then silver, then bronze and the rest), first come first served within
//! a tier: under saturation bronze waits first. A shard holds a slot only while its request is in
//! flight, never while it sleeps before a retry, so a tenant whose backend refuses does not keep
//! others from sending.

use sluice_core::tenancy::TIERS;
use std::collections::VecDeque;
use tokio::sync::oneshot;

pub struct Slots {
    state: parking_lot::Mutex<State>,
}

struct State {
    free: usize,
    /// Waiting shards by tier rank (0 = gold).
    waiting: [VecDeque<oneshot::Sender<()>>; TIERS.len()],
}

/// A slot held; given back (to the best waiting shard) when dropped.
pub struct Slot<'a> {
    slots: &'a Slots,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.release();
    }
}

/// A shard waiting for a slot; if it stops waiting after it was granted one, the slot goes back.
struct Waiter<'a> {
    rx: oneshot::Receiver<()>,
    slots: &'a Slots,
    granted: bool,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if !self.granted {
            self.rx.close();
            if self.rx.try_recv().is_ok() {
                self.slots.release();
            }
        }
    }
}

impl Slots {
    pub fn new(n: usize) -> Self {
        Slots {
            state: parking_lot::Mutex::new(State {
                free: n.max(1),
                waiting: Default::default(),
            }),
        }
    }

    /// Waits for a slot; `rank` is the tenant's tier rank (`tier_rank`), 0 served first.
    pub async fn acquire(&self, rank: usize) -> Slot<'_> {
        let rx = {
            let mut s = self.state.lock();
            if s.free > 0 {
                s.free -= 1;
                return Slot { slots: self };
            }
            let (tx, rx) = oneshot::channel();
            s.waiting[rank.min(TIERS.len() - 1)].push_back(tx);
            rx
        };
        let mut waiter = Waiter {
            rx,
            slots: self,
            granted: false,
        };
        // The senders live in `state` and are only dropped after sending, so this is a grant.
        let _ = (&mut waiter.rx).await;
        waiter.granted = true;
        Slot { slots: self }
    }

    /// Slots neither held nor granted (for tests and logs).
    #[cfg(test)]
    pub fn free(&self) -> usize {
        self.state.lock().free
    }

    fn release(&self) {
        let mut s = self.state.lock();
        for queue in s.waiting.iter_mut() {
            while let Some(tx) = queue.pop_front() {
                if tx.send(()).is_ok() {
                    return;
                }
            }
        }
        s.free += 1;
    }
}
