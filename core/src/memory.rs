//! The process-wide memory limit (`service.memory_limit`). Receivers ask [`admit`] before they
//! hand a request to the pipeline; near the limit they are refused with a retryable status, lower
//! SLA tiers first, so that the process stays under the limit and the best tiers are the last to
//! feel it.
//!
//! Thresholds, as shares of the limit: bronze (and tenants without a tier) are refused from 70%,
//! silver from 75%, gold and everything else from 80% (the soft limit of the contract). Above the
//! limit itself nothing is taken. Resident memory is read from `/proc/self/status` at most every
//! few milliseconds. The binary's allocator (mimalloc) hands freed memory back to the system on
//! its own, so that the figure falls again once queued data has been sent.
//!
//! Receivers ask twice: before reading a request's body ([`crate::ingress::Ingress::admit`], so
//! that refused requests cost no memory: counted as refused requests, their points unknown) and
//! before handing the decoded batch on (counted as refused points).

use crate::batch::Context;
use crate::component::{Refusal, RefusalKind};
use crate::telemetry::Telemetry;
use crate::tenancy::tier_rank;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shares of the limit above which a tier is refused, by [`tier_rank`] (gold, silver, bronze).
pub const THRESHOLDS: [f64; 3] = [0.80, 0.75, 0.70];

/// How stale the resident figure may be when a request asks.
const REFRESH: Duration = Duration::from_millis(5);

pub struct MemoryLimiter {
    limit: u64,
    start: Instant,
    /// Resident bytes at the last reading.
    resident: AtomicU64,
    /// Nanoseconds since `start` of the last reading.
    read_at: AtomicU64,
    resident_gauge: Gauge,
}

static LIMITER: OnceLock<MemoryLimiter> = OnceLock::new();

/// Sets the process's limit (once; later calls are ignored) and exports its gauges.
pub fn install(limit: u64, telemetry: &Telemetry) {
    let limiter = MemoryLimiter::new(limit);
    let limit_gauge = Gauge::<i64>::default();
    limit_gauge.set(limit as i64);
    telemetry.register(
        "sluice_memory_limit_bytes",
        "The process's memory limit (service.memory_limit)",
        limit_gauge,
    );
    telemetry.register(
        "sluice_memory_resident_bytes",
        "Resident memory at the memory limiter's last reading",
        limiter.resident_gauge.clone(),
    );
    let _ = LIMITER.set(limiter);
}

/// Whether a request of this context may be taken now; always when no limit is set.
pub fn admit(context: &Context) -> Result<(), Refusal> {
    match LIMITER.get() {
        Some(l) => l.admit(context),
        None => Ok(()),
    }
}

impl MemoryLimiter {
    pub fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit: limit.max(1),
            start: Instant::now(),
            resident: AtomicU64::new(0),
            read_at: AtomicU64::new(0),
            resident_gauge: Gauge::default(),
        }
    }

    pub fn admit(&self, context: &Context) -> Result<(), Refusal> {
        self.decide(self.resident(), context)
    }

    /// The decision for a given resident figure.
    fn decide(&self, resident: u64, context: &Context) -> Result<(), Refusal> {
        let rank = tier_rank(context.sla_tier());
        let threshold = (self.limit as f64 * THRESHOLDS[rank]) as u64;
        if resident < threshold {
            return Ok(());
        }
        Err(Refusal {
            kind: RefusalKind::MemoryLimit,
            message: format!(
                "sluice is near its memory limit ({} MiB of {} MiB resident); retry later",
                resident >> 20,
                self.limit >> 20
            ),
            retry_after: Some(Duration::from_secs(1)),
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Resident bytes, read again when the last reading is older than [`REFRESH`].
    fn resident(&self) -> u64 {
        let now = self.now();
        let at = self.read_at.load(Ordering::Relaxed);
        if at != 0 && now.saturating_sub(at) < REFRESH.as_nanos() as u64 {
            return self.resident.load(Ordering::Relaxed);
        }
        self.read_at.store(now.max(1), Ordering::Relaxed);
        let bytes = resident_bytes().unwrap_or(0);
        self.resident.store(bytes, Ordering::Relaxed);
        self.resident_gauge.set(bytes as i64);
        bytes
    }
}

/// Resident set size of this process (`VmRSS` of `/proc/self/status`, Linux).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::TenantInfo;
    use std::sync::Arc;

    fn ctx(tier: Option<&str>) -> Context {
        Context {
            tenant_info: tier.map(|t| {
                Arc::new(TenantInfo {
                    sla_tier: Some(Arc::from(t)),
                    ..Default::default()
                })
            }),
            ..Default::default()
        }
    }

    #[test]
    fn resident_memory_is_read() {
        assert!(resident_bytes().unwrap() > 0);
    }

    #[test]
    fn tiers_are_refused_in_order() {
        let l = MemoryLimiter::new(1000);
        let bronze = l.decide(720, &ctx(Some("bronze"))).unwrap_err();
        assert_eq!(bronze.kind, RefusalKind::MemoryLimit);
        assert!(bronze.retryable());
        assert!(
            bronze.message.contains("memory limit"),
            "{}",
            bronze.message
        );
        assert!(
            l.decide(720, &ctx(None)).is_err(),
            "no tier ranks with bronze"
        );
        assert!(l.decide(720, &ctx(Some("silver"))).is_ok());
        assert!(l.decide(760, &ctx(Some("silver"))).is_err());
        assert!(l.decide(760, &ctx(Some("gold"))).is_ok());
        assert!(l.decide(800, &ctx(Some("gold"))).is_err());
        assert!(l.decide(100, &ctx(None)).is_ok());
    }

    #[test]
    fn admit_reads_this_process() {
        let resident = resident_bytes().unwrap();
        assert!(MemoryLimiter::new(resident * 10).admit(&ctx(None)).is_ok());
        assert!(
            MemoryLimiter::new(resident / 2)
                .admit(&ctx(Some("gold")))
                .is_err()
        );
    }
}
