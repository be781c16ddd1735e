//! One tenant's state: a token bucket for `rate`/`burst`, and the series seen in the last
//! 10 minutes for `max_series`. Admission is all or none: a batch either passes both limits and is
//! charged, or changes nothing.

use super::config::Effective;
use hashbrown::HashMap;
use std::time::{Duration, Instant};

/// How long a series counts as active after its last sample.
pub const SERIES_WINDOW: Duration = Duration::from_secs(600);
/// How often a tenant's series map is swept of expired entries (and at most how often a sweep is
/// tried when the map is full).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
const SWEEP_WHEN_FULL_EVERY: Duration = Duration::from_secs(1);
/// The retry hint when `max_series` is reached.
pub const SERIES_RETRY: Duration = Duration::from_secs(60);
/// A series being admitted, not yet confirmed.
const PENDING: u32 = u32::MAX;

/// Why a batch did not pass.
#[derive(Debug, PartialEq)]
pub enum Over {
    /// Not enough tokens: wait this long.
    Rate {
        retry_after: Duration,
        rate: f64,
        burst: f64,
    },
    /// Too many series: `would` active series against `max`.
    Series { would: usize, max: usize },
}

pub struct TenantState {
    /// `None` until a rate applies (the bucket starts full).
    tokens: Option<f64>,
    refilled: Instant,
    /// Series hash -> seconds since `epoch` when last seen.
    series: HashMap<u64, u32>,
    swept: Instant,
    pub last_seen: Instant,
}

impl TenantState {
    pub fn new(now: Instant) -> Self {
        TenantState {
            tokens: None,
            refilled: now,
            series: HashMap::new(),
            swept: now,
            last_seen: now,
        }
    }

    /// Series seen in the last 10 minutes (as of the last sweep).
    pub fn active_series(&self) -> usize {
        self.series.len()
    }

    /// Lets `points` samples of the given series hashes pass, or says which limit they are over.
    /// `epoch` is the processor's start, `now` the current time.
    pub fn admit(
        &mut self,
        limits: &Effective,
        points: usize,
        hashes: &[u64],
        epoch: Instant,
        now: Instant,
    ) -> Result<(), Over> {
        self.last_seen = now;
        let tokens = match limits.rate {
            Some((rate, burst)) => {
                let tokens = self.refill(rate, burst, now);
                let need = points as f64;
                // A batch larger than the bucket passes when the bucket is full (the tenant then
                // owes the difference), so that it is not refused forever.
                if need > tokens && tokens < burst {
                    let wait = (need.min(burst) - tokens) / rate;
                    return Err(Over::Rate {
                        retry_after: Duration::from_secs_f64(wait.max(1.0)),
                        rate,
                        burst,
                    });
                }
                Some(tokens - need)
            }
            None => None,
        };
        if let Some(max) = limits.max_series {
            self.admit_series(max, hashes, epoch, now)?;
        } else if !self.series.is_empty() {
            self.series = HashMap::new();
        }
        if tokens.is_some() {
            self.tokens = tokens;
        }
        Ok(())
    }

    /// Gives back the tokens of a batch that was admitted but not taken further on.
    pub fn refund(&mut self, points: usize, burst: f64) {
        if let Some(t) = &mut self.tokens {
            *t = (*t + points as f64).min(burst);
        }
    }

    /// The tokens now, after adding what `rate` gave since the last refill (at most `burst`).
    fn refill(&mut self, rate: f64, burst: f64, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let tokens = match self.tokens {
            Some(t) => (t + elapsed * rate).min(burst),
            None => burst,
        };
        self.tokens = Some(tokens);
        tokens
    }

    fn admit_series(
        &mut self,
        max: usize,
        hashes: &[u64],
        epoch: Instant,
        now: Instant,
    ) -> Result<(), Over> {
        let secs = now
            .saturating_duration_since(epoch)
            .as_secs()
            .min(PENDING as u64 - 1) as u32;
        if now.saturating_duration_since(self.swept) >= SWEEP_EVERY {
            self.sweep(secs, now);
        }
        if let Err(would) = self.insert_pending(max, hashes) {
            let swept = now.saturating_duration_since(self.swept) >= SWEEP_WHEN_FULL_EVERY;
            if !swept || {
                self.sweep(secs, now);
                self.insert_pending(max, hashes).is_err()
            } {
                return Err(Over::Series { would, max });
            }
        }
        for h in hashes {
            if let Some(seen) = self.series.get_mut(h) {
                *seen = secs;
            }
        }
        Ok(())
    }

    /// Adds the batch's new series as pending; when that would pass `max`, takes them out again
    /// and returns how many series the tenant would have had.
    fn insert_pending(&mut self, max: usize, hashes: &[u64]) -> Result<(), usize> {
        for (i, h) in hashes.iter().enumerate() {
            if self.series.contains_key(h) {
                continue;
            }
            if self.series.len() >= max {
                let would = self.series.len() + 1 + self.count_new(&hashes[i + 1..]);
                for h in &hashes[..i] {
                    if self.series.get(h) == Some(&PENDING) {
                        self.series.remove(h);
                    }
                }
                return Err(would);
            }
            self.series.insert(*h, PENDING);
        }
        Ok(())
    }

    /// Distinct hashes not in the map (an estimate is enough for the message: repeats count).
    fn count_new(&self, hashes: &[u64]) -> usize {
        hashes
            .iter()
            .filter(|h| !self.series.contains_key(*h))
            .count()
    }

    /// Forgets series not seen in the window.
    fn sweep(&mut self, secs: u32, now: Instant) {
        let oldest = secs.saturating_sub(SERIES_WINDOW.as_secs() as u32);
        self.series.retain(|_, seen| *seen >= oldest);
        self.swept = now;
    }
}
