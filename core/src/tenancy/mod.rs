//! Tenants: who a batch belongs to, what the tenants file says about them (SLA tier, limits), and
//! the order in which tiers are shed under overload.

use std::sync::Arc;

mod auth;
mod config;
mod file;
mod id;

pub use auth::{Authenticator, CHALLENGE, Denied, Identified};
pub use config::{
    AuthConfig, FileSettings, Identity, TenantConfig, check_metadata_keys, identity, resolve_paths,
    validate,
};
pub use file::{Tenant, Tenants};
pub use id::{MAX_TENANT_ID_BYTES, check_tenant_id};

/// A tenant's own limits from the tenants file; each overrides the `limits` processor's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TenantLimits {
    /// Samples (data points) per second.
    pub rate: Option<u64>,
    /// Samples that may arrive at once above the rate (default twice the rate).
    pub burst: Option<u64>,
    /// Series seen in the last 10 minutes.
    pub max_series: Option<u64>,
}

/// What the tenants file says about one tenant, carried in each of its batches' context.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TenantInfo {
    /// `gold`, `silver`, `bronze` or another name (ranked with bronze).
    pub sla_tier: Option<Arc<str>>,
    pub limits: TenantLimits,
}

/// The SLA tiers from first kept to first shed.
pub const TIERS: [&str; 3] = ["gold", "silver", "bronze"];

/// A tier's rank: 0 for gold, 1 for silver, 2 for bronze and for any other or no tier. Under
/// overload the highest rank is shed first.
pub fn tier_rank(tier: Option<&str>) -> usize {
    tier.and_then(|t| TIERS.iter().position(|x| x.eq_ignore_ascii_case(t)))
        .unwrap_or(TIERS.len() - 1)
}

#[cfg(test)]
mod tests;
