use serde::Deserialize;
use sluice_core::component::Validate;
use sluice_core::config::{DeError, LoadContext, Node};
use sluice_core::tenancy::TenantLimits;
use std::collections::HashMap;

/// `processors.limits`: per-tenant limits; every setting is optional (absent: unlimited).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// The limits of every tenant (the empty tenant included).
    #[serde(default)]
    pub default: LimitSettings,
    /// Per tenant, settings that override `default` (the tenants file overrides both).
    #[serde(default)]
    pub tenants: HashMap<String, LimitSettings>,
}

/// One set of limits; each unset field falls back to the next, less specific, place.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Samples (data points) per second.
    #[serde(default)]
    pub rate: Option<u64>,
    /// Samples that may arrive at once (default twice the rate).
    #[serde(default)]
    pub burst: Option<u64>,
    /// Series seen in the last 10 minutes.
    #[serde(default)]
    pub max_series: Option<u64>,
    /// Attributes (labels) a data point may carry; points with more are dropped.
    #[serde(default)]
    pub max_label_names_per_series: Option<usize>,
    /// Bytes in a label name; points with a longer one are dropped.
    #[serde(default)]
    pub max_label_name_length: Option<usize>,
    /// Bytes in a (string) label value; points with a longer one are dropped.
    #[serde(default)]
    pub max_label_value_length: Option<usize>,
}

/// The limits that apply to one batch, resolved from the tenants file, `tenants.<name>` and
/// `default`, in that order.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Effective {
    /// Samples per second and the bucket's size.
    pub rate: Option<(f64, f64)>,
    pub max_series: Option<usize>,
    pub labels: LabelLimits,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LabelLimits {
    pub names: Option<usize>,
    pub name_length: Option<usize>,
    pub value_length: Option<usize>,
}

impl LabelLimits {
    pub fn any(&self) -> bool {
        self.names.is_some() || self.name_length.is_some() || self.value_length.is_some()
    }
}

impl Effective {
    pub fn any(&self) -> bool {
        self.rate.is_some() || self.max_series.is_some() || self.labels.any()
    }
}

impl LimitsConfig {
    /// The limits of `tenant`, whose tenants-file limits are `file` (if any). Each setting comes
    /// from the most specific place that sets it; `burst`, when neither the place that gives
    /// `rate` nor a more specific one sets it, is twice that rate.
    pub fn effective(&self, tenant: &str, file: Option<&TenantLimits>) -> Effective {
        let file = file.map(|f| LimitSettings {
            rate: f.rate,
            burst: f.burst,
            max_series: f.max_series,
            ..Default::default()
        });
        let levels: [Option<&LimitSettings>; 3] =
            [file.as_ref(), self.tenants.get(tenant), Some(&self.default)];
        let first =
            |f: fn(&LimitSettings) -> Option<u64>| levels.iter().flatten().find_map(|l| f(l));
        let first_usize =
            |f: fn(&LimitSettings) -> Option<usize>| levels.iter().flatten().find_map(|l| f(l));
        let rate = levels
            .iter()
            .enumerate()
            .find_map(|(i, l)| l.and_then(|l| l.rate).map(|r| (i, r)))
            .map(|(i, rate)| {
                let burst = levels[..=i]
                    .iter()
                    .flatten()
                    .find_map(|l| l.burst)
                    .unwrap_or(rate.saturating_mul(2));
                (rate as f64, burst as f64)
            });
        Effective {
            rate,
            max_series: first(|l| l.max_series).map(|n| n as usize),
            labels: LabelLimits {
                names: first_usize(|l| l.max_label_names_per_series),
                name_length: first_usize(|l| l.max_label_name_length),
                value_length: first_usize(|l| l.max_label_value_length),
            },
        }
    }
}

impl LimitSettings {
    fn check(&self, what: &str, node: &Node, errs: &mut Vec<DeError>) {
        let zero = [
            ("rate", self.rate.map(|v| v as usize)),
            ("burst", self.burst.map(|v| v as usize)),
            ("max_series", self.max_series.map(|v| v as usize)),
            (
                "max_label_names_per_series",
                self.max_label_names_per_series,
            ),
            ("max_label_name_length", self.max_label_name_length),
            ("max_label_value_length", self.max_label_value_length),
        ];
        for (key, v) in zero {
            if v == Some(0) {
                errs.push(DeError::new(
                    node.pos,
                    format!("{what}.{key} must be above 0 (leave it out for no limit)"),
                ));
            }
        }
    }
}

impl Validate for LimitsConfig {
    fn validate(&self, node: &Node, _: &LoadContext) -> Vec<DeError> {
        let mut errs = Vec::new();
        self.default.check("default", node, &mut errs);
        let mut names: Vec<&String> = self.tenants.keys().collect();
        names.sort();
        for t in names {
            self.tenants[t].check(&format!("tenants.{t}"), node, &mut errs);
        }
        errs
    }
}
