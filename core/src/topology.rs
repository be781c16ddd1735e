//! Builds the running graph from a config and takes it down in stages.
//!
//! Receivers call their pipeline's first processor synchronously; processors pass batches on; the
//! last hands each batch to every exporter's bounded queue (all or none). A full queue refuses, and
//! the refusal travels back to the receiver, which answers its client with a retryable status: that
//! is the backpressure. Each exporter drains its own queue, so one stalled exporter does not hold up
//! the others until its queue is full.

use crate::batch::Batch;
use crate::component::{
    BoxError, ComponentId, Consumer, ExporterContext, Processor, ProcessorContext, ReceiverContext,
    Refusal,
};
use crate::config::Config;
use crate::sending::{ExporterRuntime, Fanout};
use crate::telemetry::Telemetry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct Running {
    receivers: Vec<(ComponentId, JoinHandle<()>)>,
    receivers_stop: CancellationToken,
    /// Per pipeline, its processors from first to last.
    processors: Vec<Vec<(ComponentId, Arc<dyn Processor>)>>,
    exporters: Vec<ExporterRuntime>,
    pub telemetry: Arc<Telemetry>,
}

#[derive(Debug, thiserror::Error)]
#[error("{component}: {source}")]
pub struct StartError {
    pub component: String,
    #[source]
    pub source: BoxError,
}

/// Sends each batch to several pipelines (a receiver used by more than one).
struct PipelinesFanout(Vec<Arc<dyn Consumer>>);

impl Consumer for PipelinesFanout {
    fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        let (last, rest) = self.0.split_last().expect("at least one pipeline");
        for p in rest {
            p.consume(batch.clone())?;
        }
        last.consume(batch)
    }

    fn ready(&self, context: &crate::batch::Context, points: usize) -> Result<(), Refusal> {
        self.0.iter().try_for_each(|p| p.ready(context, points))
    }
}

/// Builds every component and starts the receivers last, so that nothing is accepted before the
/// whole graph can take it.
pub async fn start(config: &Config, telemetry: Arc<Telemetry>) -> Result<Running, StartError> {
    let err = |id: &ComponentId, class: &str, e: BoxError| StartError {
        component: format!("{class}.{id}"),
        source: e,
    };

    let mut exporters = Vec::new();
    let mut queues = BTreeMap::new();
    let used_exporters: std::collections::BTreeSet<_> = config
        .service
        .pipelines
        .iter()
        .flat_map(|p| p.exporters.iter().map(|e| e.value.clone()))
        .collect();
    for id in &used_exporters {
        let cfg = &config.exporters[id];
        let exporter = cfg
            .build(ExporterContext {
                id: id.clone(),
                telemetry: telemetry.clone(),
            })
            .map_err(|e| err(id, "exporters", e))?;
        exporter
            .start()
            .await
            .map_err(|e| err(id, "exporters", e))?;
        let rt = ExporterRuntime::spawn(id.clone(), exporter, cfg.sending(), telemetry.clone())
            .map_err(|e| err(id, "exporters", e))?;
        queues.insert(id.clone(), rt.queue.clone());
        exporters.push(rt);
    }

    let mut entries: BTreeMap<ComponentId, Vec<Arc<dyn Consumer>>> = BTreeMap::new();
    let mut processors = Vec::new();
    for p in &config.service.pipelines {
        let fanout = Fanout {
            queues: p
                .exporters
                .iter()
                .map(|e| queues[&e.value].clone())
                .collect(),
        };
        let mut next: Arc<dyn Consumer> = Arc::new(fanout);
        let mut chain = Vec::new();
        for pid in p.processors.iter().rev() {
            let proc = config.processors[&pid.value]
                .build(ProcessorContext {
                    id: pid.value.clone(),
                    pipeline: p.id.clone(),
                    next,
                    telemetry: telemetry.clone(),
                })
                .map_err(|e| err(&pid.value, "processors", e))?;
            next = proc.clone();
            chain.push((pid.value.clone(), proc));
        }
        chain.reverse();
        processors.push(chain);
        for r in &p.receivers {
            entries
                .entry(r.value.clone())
                .or_default()
                .push(next.clone());
        }
    }

    let receivers_stop = CancellationToken::new();
    let mut receivers = Vec::new();
    for (id, mut consumers) in entries {
        let next: Arc<dyn Consumer> = if consumers.len() == 1 {
            consumers.pop().expect("one")
        } else {
            Arc::new(PipelinesFanout(consumers))
        };
        let ctx = ReceiverContext {
            id: id.clone(),
            next,
            shutdown: receivers_stop.child_token(),
            telemetry: telemetry.clone(),
        };
        match config.receivers[&id].start(ctx).await {
            Ok(task) => receivers.push((id, task)),
            Err(e) => {
                receivers_stop.cancel();
                return Err(err(&id, "receivers", e));
            }
        }
    }
    telemetry.set_ready(true);
    Ok(Running {
        receivers,
        receivers_stop,
        processors,
        exporters,
        telemetry,
    })
}

impl Running {
    /// Staged shutdown: receivers stop taking requests and answer those in flight; processors pass
    /// on what they hold; exporters send what is queued. All within `timeout`; what is still queued
    /// at the end is dropped and counted.
    pub async fn shutdown(self, timeout: Duration) {
        let start = Instant::now();
        let deadline = start + timeout;
        self.telemetry.set_ready(false);
        self.receivers_stop.cancel();
        let receivers_deadline = start + timeout / 4;
        for (id, task) in self.receivers {
            if tokio::time::timeout_at(receivers_deadline, task)
                .await
                .is_err()
            {
                tracing::warn!(receiver = %id, "receiver did not stop in time");
            }
        }
        let processors_deadline = start + timeout / 2;
        for chain in &self.processors {
            for (_, p) in chain {
                p.shutdown(processors_deadline).await;
            }
        }
        futures::future::join_all(self.exporters.into_iter().map(|e| e.shutdown(deadline))).await;
        tracing::info!(took = ?start.elapsed(), "shutdown complete");
    }
}
