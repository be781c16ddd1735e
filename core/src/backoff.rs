//! Exponential backoff with jitter, separate from deciding whether to retry.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            next: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
        }
    }

    /// The next wait: the current interval with ±20% jitter; the interval then doubles up to `max`.
    pub fn next_wait(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = 0.8 + fastrand::f64() * 0.4;
        base.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_max() {
        let mut b = Backoff::new(Duration::from_millis(30), Duration::from_secs(5));
        let waits: Vec<_> = (0..12).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= Duration::from_millis(24) && waits[0] <= Duration::from_millis(36));
        assert!(waits[1] >= Duration::from_millis(48) && waits[1] <= Duration::from_millis(72));
        for w in &waits[9..] {
            assert!(
                *w >= Duration::from_secs(4) && *w <= Duration::from_secs(6),
                "{w:?}"
            );
        }
    }
}
