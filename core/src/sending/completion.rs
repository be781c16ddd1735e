//! Completion of a batch that an exporter handed over to a sending stage of its own (see
//! [`crate::component::Delivered::handed_off`]): the engine cannot tell when such a batch is
//! really sent, so the exporter says so. It gives every part of the batch (e.g. each of its
//! remote_write series) a clone of a [`Part`], and [`Part::settle`]s each once that part is sent
//! or dropped for a counted reason; when the last clone is gone, the batch is done. A clone
//! dropped without being settled (not sent at shutdown, or lost on an unforeseen path) marks the
//! batch abandoned, so that a disk queue keeps it for the next start: at-least-once.

use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

type Callback = Box<dyn FnOnce(bool) + Send>;

enum Slot {
    Waiting,
    Callback(Callback),
    /// Finished before the engine asked; `true` unless abandoned.
    Done(bool),
}

struct Shared {
    slot: Mutex<Slot>,
}

impl Shared {
    fn finish(&self, delivered: bool) {
        let prev = std::mem::replace(&mut *self.slot.lock(), Slot::Done(delivered));
        if let Slot::Callback(f) = prev {
            f(delivered);
        }
    }
}

/// The engine's side: learns when every [`Part`] of the batch is gone.
#[derive(Clone)]
pub struct Completion(Arc<Shared>);

/// The exporter's side: clone it into every part of the batch and settle each clone once that
/// part is sent or dropped for a counted reason (the one [`Completion::new`] gave too).
pub struct Part {
    inner: Arc<PartInner>,
    settled: bool,
}

struct PartInner {
    shared: Arc<Shared>,
    abandoned: AtomicBool,
}

impl Drop for PartInner {
    fn drop(&mut self) {
        self.shared.finish(!self.abandoned.load(Ordering::Relaxed));
    }
}

impl Completion {
    /// A completion and the part to hand out to the batch's pieces.
    pub fn new() -> (Completion, Part) {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::Waiting),
        });
        let part = Part {
            inner: Arc::new(PartInner {
                shared: shared.clone(),
                abandoned: AtomicBool::new(false),
            }),
            settled: false,
        };
        (Completion(shared), part)
    }

    /// Calls `f` once every part is gone (at once if they already are): with `true` when each was
    /// sent or dropped for a counted reason, `false` when one was abandoned.
    pub fn on_done(&self, f: impl FnOnce(bool) + Send + 'static) {
        let mut slot = self.0.slot.lock();
        match std::mem::replace(&mut *slot, Slot::Waiting) {
            Slot::Done(delivered) => {
                *slot = Slot::Done(delivered);
                drop(slot);
                f(delivered);
            }
            _ => *slot = Slot::Callback(Box::new(f)),
        }
    }
}

impl Part {
    /// This part was sent, or dropped for a counted reason.
    pub fn settle(mut self) {
        self.settled = true;
    }
}

impl Clone for Part {
    fn clone(&self) -> Self {
        Part {
            inner: self.inner.clone(),
            settled: false,
        }
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if !self.settled {
            self.inner.abandoned.store(true, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Completion")
    }
}

impl PartialEq for Completion {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Part {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Part")
    }
}
