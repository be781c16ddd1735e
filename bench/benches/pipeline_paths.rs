//! W1's and W2's work in one process, without the servers, the queue's threads or the network:
//! each body read by the receiver (W1: a remote_write 1.0 body, already decompressed, read and
//! built into OTLP resources; W2: an OTLP request decoded as the OTLP receiver decodes it, by
//! `sluice_core::otlp_protobuf`), passed through the `normalize` and `labels` processors configured as in W1 and W2,
//! taken by the `prometheus_remote_write` exporter's memory queue (which has the exporter translate
//! it), and written as a compressed request. The exporter's label cache is warm after the first
//! round, as in the scenarios, where every series comes back each round. It runs on Sluice's
//! allocator (mimalloc), as the binary does: the paths allocate and free many small strings.
//!
//! A change on these paths shows here to a percent or two, where a run swings by five to ten from
//! the machine's drift. Throughput is in elements: W1's samples, W2's data points.

use criterion::{Criterion, Throughput, criterion_group};
use parking_lot::Mutex;
use sluice_bench::scenarios::sluice_processors;
use sluice_bench::workload::{Format, Sizes, Workload};
use sluice_core::component::{
    Class, ComponentId, Consumer, ExporterConfig, ExporterContext, ProcessorConfig,
    ProcessorContext, Refusal, parse_config,
};
use sluice_core::config::{LoadContext, component_node};
use sluice_core::otlp_protobuf::decode_metrics;
use sluice_core::prometheus::Translation;
use sluice_core::queue::{FullPolicy, Queue};
use sluice_core::telemetry::Telemetry;
use sluice_core::{Batch, Context};
use sluice_exporters::remote_write::{Encoder, Protocol, RemoteWriteConfig};
use sluice_processors::labels::LabelsConfig;
use sluice_processors::normalize::NormalizeConfig;
use sluice_receivers::remote_write::fuzzing::{MetadataCache, decode_v1, v1};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The end of the pipeline: the exporter's memory queue (which has the exporter prepare each
/// batch as it takes it: translate and size it), then what a shard does with a batch it takes
/// from there (write the request).
struct QueueAndWrite {
    queue: Queue,
    runtime: tokio::runtime::Handle,
    encoder: Mutex<Encoder>,
}

impl Consumer for QueueAndWrite {
    fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        self.queue.try_push(batch).map_err(|r| r.refusal)?;
        let entry = self
            .runtime
            .block_on(self.queue.pop())
            .expect("the batch just queued");
        let translation = entry
            .prepared
            .as_ref()
            .and_then(|p| p.downcast_ref::<Translation>())
            .expect("the batch translated as it was queued");
        black_box(
            self.encoder
                .lock()
                .encode(&translation.series, Protocol::V1, false),
        );
        self.queue.release(&entry);
        Ok(())
    }
}

fn config<C: serde::de::DeserializeOwned + sluice_core::component::Validate>(
    text: &str,
    class: Class,
    id: &ComponentId,
) -> C {
    let node = component_node(text, class, id).expect("the component is in the text");
    let ctx = LoadContext {
        base_dir: std::path::Path::new(".").into(),
    };
    parse_config(&node, &ctx).unwrap_or_else(|e| panic!("{e:?}"))
}

fn processor(
    text: &str,
    name: &str,
    next: Arc<dyn Consumer>,
    telemetry: &Arc<Telemetry>,
) -> Arc<dyn Consumer> {
    let id = ComponentId::parse(name).expect("a component id");
    let ctx = ProcessorContext {
        id: id.clone(),
        pipeline: "metrics".into(),
        next,
        telemetry: telemetry.clone(),
    };
    let built = match name {
        "normalize" => config::<NormalizeConfig>(text, Class::Processor, &id).build(ctx),
        _ => config::<LabelsConfig>(text, Class::Processor, &id).build(ctx),
    };
    built.expect("the processor builds")
}

/// W1's bodies and the pipeline they go through.
/// Which scenario's path.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    W1,
    W2,
}

struct Setup {
    path: Path,
    raws: Vec<Vec<u8>>,
    samples: u64,
    cache: MetadataCache,
    first: Arc<dyn Consumer>,
    /// Kept for the exporter and the queue.
    runtime: tokio::runtime::Runtime,
}

impl Setup {
    fn new(path: Path) -> Setup {
        let format = match path {
            Path::W1 => Format::RemoteWrite,
            Path::W2 => Format::Otlp,
        };
        let w = Workload::build(format, Sizes::ONE_ROUND, 1_700_000_000_000);
        let raws: Vec<Vec<u8>> = w
            .bodies
            .iter()
            .map(|b| match path {
                Path::W1 => snap::raw::Decoder::new()
                    .decompress_vec(b)
                    .expect("valid snappy"),
                Path::W2 => b.to_vec(),
            })
            .collect();
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let _entered = runtime.enter();
        let telemetry = Arc::new(Telemetry::new());
        let id = ComponentId::parse("prometheus_remote_write").expect("a component id");
        let exporter_text = "exporters:\n  prometheus_remote_write:\n    endpoint: http://127.0.0.1:9/api/v1/write\n";
        let exporter = config::<RemoteWriteConfig>(exporter_text, Class::Exporter, &id)
            .build(ExporterContext {
                id,
                telemetry: telemetry.clone(),
            })
            .expect("the exporter builds");
        let queue = Queue::new(
            "prometheus_remote_write".into(),
            100_000,
            FullPolicy::Block,
            telemetry.clone(),
        )
        .with_preparer(exporter);
        let end = Arc::new(QueueAndWrite {
            queue,
            runtime: runtime.handle().clone(),
            encoder: Mutex::default(),
        });
        let processors = sluice_processors();
        let labels = processor(&processors, "labels", end, &telemetry);
        let first = processor(&processors, "normalize", labels, &telemetry);
        Setup {
            path,
            raws,
            samples: w.points,
            cache: MetadataCache::default(),
            first,
            runtime,
        }
    }

    /// One round: every body through the pipeline.
    fn round(&self) {
        let _entered = self.runtime.enter();
        for r in &self.raws {
            let batch = match self.path {
                Path::W1 => {
                    let mut req = decode_v1(r).expect("valid");
                    let decoded = v1(&mut req, &self.cache, r.len());
                    Batch::new(Context::default(), decoded.resource_metrics)
                }
                Path::W2 => Batch::from_request(
                    Context::default(),
                    decode_metrics(r.as_slice()).expect("valid"),
                ),
            };
            self.first.consume(batch).expect("taken");
        }
    }
}

/// `rounds` rounds, for an instruction count (`W1_PATH_ROUNDS`, `W2_PATH_ROUNDS`: see `main`).
#[inline(never)]
fn counted_rounds(setup: &Setup, rounds: u64) {
    for _ in 0..rounds {
        setup.round();
    }
}

fn pipeline(c: &mut Criterion) {
    for (path, group) in [(Path::W1, "w1_path"), (Path::W2, "w2_path")] {
        let setup = Setup::new(path);
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(setup.samples));
        g.bench_function("pipeline", |b| b.iter(|| setup.round()));
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(2));
    targets = pipeline
}

/// With `W1_PATH_ROUNDS=n` (or `W2_PATH_ROUNDS=n`), that path's one warming round and then `n`
/// rounds in `counted_rounds`, and no timing: for counting instructions, which the machine's
/// drift does not move, e.g.
/// `W1_PATH_ROUNDS=2 valgrind --tool=callgrind --toggle-collect='*counted_rounds*' <bench binary>`.
fn main() {
    for (path, var) in [(Path::W1, "W1_PATH_ROUNDS"), (Path::W2, "W2_PATH_ROUNDS")] {
        if let Some(rounds) = std::env::var(var).ok().and_then(|v| v.parse().ok()) {
            let setup = Setup::new(path);
            setup.round();
            counted_rounds(&setup, rounds);
            return;
        }
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
