use serde::Deserialize;
use sluice_core::component::Validate;
use sluice_core::config::types::Duration;
use sluice_core::config::{DeError, LoadContext, Node};

/// `processors.batch`: gathers points into larger batches, per tenant context.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Send as soon as this many points are pending for one context (default 8192).
    #[serde(default = "default_send_batch_size")]
    pub send_batch_size: usize,
    /// Split what is sent into batches of at most this many points; 0 means no limit (default 0).
    #[serde(default)]
    pub send_batch_max_size: usize,
    /// Send what is pending at least this often (default 200ms).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Refuse a tenant's new data (retryable) while this many of its points are pending because the
    /// next stage is full (default 10 x the larger of send_batch_size and send_batch_max_size).
    #[serde(default)]
    pub max_pending_points: Option<usize>,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            send_batch_size: default_send_batch_size(),
            send_batch_max_size: 0,
            timeout: default_timeout(),
            max_pending_points: None,
        }
    }
}

fn default_send_batch_size() -> usize {
    8192
}
fn default_timeout() -> Duration {
    Duration::from_millis(200)
}

impl BatchConfig {
    pub fn max_pending(&self) -> usize {
        self.max_pending_points
            .unwrap_or(10 * self.send_batch_size.max(self.send_batch_max_size).max(1))
    }
}

impl Validate for BatchConfig {
    fn validate(&self, node: &Node, _: &LoadContext) -> Vec<DeError> {
        let mut errs = Vec::new();
        if self.send_batch_max_size != 0 && self.send_batch_max_size < self.send_batch_size {
            errs.push(DeError::new(
                node.pos,
                "send_batch_max_size must be 0 (no limit) or at least send_batch_size",
            ));
        }
        if self.timeout.get().is_zero() {
            errs.push(DeError::new(node.pos, "timeout must be above 0"));
        }
        errs
    }
}
