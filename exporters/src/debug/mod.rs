//! Exporter `debug`: writes what passes to the log (a one-line summary per batch, the metric names
//! with `normal`), or each batch as OTLP/JSON on standard output with `verbosity: detailed`.

use futures::future::BoxFuture;
use serde::Deserialize;
use sluice_core::batch::Batch;
use sluice_core::component::{
    BoxError, Delivered, Exporter, ExporterConfig, ExporterContext, SendError, Validate,
};
use sluice_core::sending::{QueueSettings, SendingSettings};
use std::io::Write;
use std::sync::Arc;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebugExporterConfig {
    /// `basic` (default), `normal` or `detailed`.
    #[serde(default)]
    pub verbosity: Verbosity,
    #[serde(default)]
    pub sending_queue: QueueSettings,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

impl Validate for DebugExporterConfig {
    fn resolve_paths(&mut self, ctx: &sluice_core::config::LoadContext) {
        self.sending_queue.resolve_paths(ctx);
    }

    fn validate(
        &self,
        node: &sluice_core::config::Node,
        _: &sluice_core::config::LoadContext,
    ) -> Vec<sluice_core::config::DeError> {
        self.sending_queue
            .problems()
            .into_iter()
            .map(|m| sluice_core::config::DeError::new(node.pos, m))
            .collect()
    }
}

impl ExporterConfig for DebugExporterConfig {
    fn build(&self, ctx: ExporterContext) -> Result<Arc<dyn Exporter>, BoxError> {
        Ok(Arc::new(DebugExporter {
            name: ctx.id.to_string(),
            verbosity: self.verbosity,
        }))
    }

    fn sending(&self) -> SendingSettings {
        SendingSettings {
            queue: QueueSettings {
                num_consumers: 1,
                ..self.sending_queue.clone()
            },
            ..Default::default()
        }
    }
}

struct DebugExporter {
    name: String,
    verbosity: Verbosity,
}

impl Exporter for DebugExporter {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            let metrics: usize = batch
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .map(|s| s.metrics.len())
                .sum();
            let tenant = batch.context.tenant_label();
            match self.verbosity {
                Verbosity::Basic => tracing::info!(
                    exporter = %self.name, tenant, resources = batch.resource_metrics.len(), metrics, points = batch.point_count(), "batch"
                ),
                Verbosity::Normal => {
                    let mut names: Vec<&str> = batch
                        .resource_metrics
                        .iter()
                        .flat_map(|r| &r.scope_metrics)
                        .flat_map(|s| &s.metrics)
                        .map(|m| m.name.as_str())
                        .collect();
                    names.sort_unstable();
                    names.dedup();
                    tracing::info!(
                        exporter = %self.name, tenant, resources = batch.resource_metrics.len(), metrics, points = batch.point_count(),
                        names = %names.join(","), "batch"
                    )
                }
                Verbosity::Detailed => {
                    let json = sluice_core::otlp_json::to_json_string(&batch.to_request());
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{json}");
                }
            }
            Ok(Delivered::default())
        })
    }
}
