//! The engine with a disk queue: acknowledged only once written, records acknowledged in the log
//! only once delivered (a hand-off exporter's completion included), what is left at shutdown
//! kept for the next start, and the fan-out's refusal at `max_bytes`.

use super::*;
use crate::batch::Batch;
use crate::component::{Consumer, Delivered, SendError};
use crate::test_util::gauge_batch;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;

const EXPORTER: &str = "otlp/disk";

/// An exporter that takes batches into a stage of its own, as remote_write does: it holds each
/// batch's completion part until told to finish it.
#[derive(Default)]
struct HandOff {
    held: Mutex<Vec<(String, Part)>>,
    down: std::sync::atomic::AtomicBool,
}

impl HandOff {
    /// Settles (delivers) every held part.
    fn deliver_all(&self) -> Vec<String> {
        let held = std::mem::take(&mut *self.held.lock());
        held.into_iter()
            .map(|(tag, part)| {
                part.settle();
                tag
            })
            .collect()
    }
}

impl Exporter for HandOff {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(SendError::retryable("down", None));
            }
            let tag = batch.resource_metrics[0].scope_metrics[0].metrics[0]
                .name
                .clone();
            let (completion, part) = Completion::new();
            self.held.lock().push((tag, part));
            Ok(Delivered {
                handed_off: true,
                completion: Some(completion),
                ..Default::default()
            })
        })
    }
}

fn settings(dir: &Path, max_bytes: u64) -> SendingSettings {
    SendingSettings {
        queue: QueueSettings {
            num_consumers: 2,
            storage: Storage::Disk,
            directory: Some(dir.display().to_string()),
            max_bytes: ByteSize(max_bytes),
            ..Default::default()
        },
        retry: RetrySettings {
            enabled: true,
            initial_interval: crate::config::types::Duration::from_millis(10),
            max_interval: crate::config::types::Duration::from_millis(50),
        },
        max_age: None,
    }
}

fn spawn(exporter: Arc<HandOff>, dir: &Path, max_bytes: u64) -> (ExporterRuntime, Arc<Telemetry>) {
    let telemetry = Arc::new(Telemetry::new());
    let rt = ExporterRuntime::spawn(
        ComponentId::parse(EXPORTER).unwrap(),
        exporter,
        settings(dir, max_bytes),
        telemetry.clone(),
    )
    .expect("the disk queue opens");
    (rt, telemetry)
}

async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..4_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn unacked(dir: &Path) -> usize {
    let mut n = 0;
    crate::disk::DiskStore::open(
        dir.into(),
        crate::disk::LogSettings {
            segment_bytes: 1 << 20,
            fsync: crate::disk::Fsync::Never,
        },
        1 << 30,
        |_, _, _| n += 1,
    )
    .unwrap();
    n
}

// Guarantees: a batch handed to an exporter's own stage is acknowledged in the log only once that
// stage settles it; one still held at shutdown is replayed at the next start, and the queue's room
// is released meanwhile (the stage bounds its own memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_off_acknowledges_the_record_only_when_the_stage_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Arc::new(HandOff::default());
    let (rt, t) = spawn(exporter.clone(), dir.path(), 1 << 30);
    let fanout = Fanout {
        queues: vec![rt.queue.clone()],
    };
    for tag in ["a", "b", "c"] {
        fanout.consume(gauge_batch(tag, 2)).unwrap();
    }
    until("all handed off", || exporter.held.lock().len() == 3).await;
    assert_eq!(rt.queue.len_points(), 0);
    assert_eq!(rt.queue.disk().unwrap().log("").unwrap().unacked(), 3);
    // "a" and "b" are delivered; "c" is still held when the process stops.
    let held = std::mem::take(&mut *exporter.held.lock());
    let mut held = held.into_iter();
    for (_, part) in held.by_ref().take(2) {
        part.settle();
    }
    assert_eq!(rt.queue.disk().unwrap().log("").unwrap().unacked(), 1);
    drop(held);
    rt.shutdown(Instant::now() + Duration::from_millis(500))
        .await;
    assert_eq!(
        t.value("sluice_exporter_dropped_points_total", &[]),
        0.0,
        "kept on disk, not dropped"
    );
    // The next start sends "c" again.
    let exporter = Arc::new(HandOff::default());
    let (rt, _) = spawn(exporter.clone(), dir.path(), 1 << 30);
    until("c resent", || exporter.held.lock().len() == 1).await;
    assert_eq!(exporter.deliver_all(), ["c"]);
    rt.shutdown(Instant::now() + Duration::from_millis(500))
        .await;
    assert_eq!(unacked(dir.path()), 0);
}

// Guarantees: what a down backend leaves queued at shutdown is not dropped but replayed, in order,
// by the next start on the same directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_queued_batches_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Arc::new(HandOff::default());
    exporter
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (rt, t) = spawn(exporter.clone(), dir.path(), 1 << 30);
    for i in 0..20 {
        rt.queue
            .try_push(gauge_batch(&format!("{i:02}"), 1))
            .unwrap();
    }
    rt.shutdown(Instant::now() + Duration::from_millis(200))
        .await;
    assert_eq!(t.value("sluice_exporter_dropped_points_total", &[]), 0.0);
    assert_eq!(unacked(dir.path()), 20);
    let exporter = Arc::new(HandOff::default());
    let (rt, _) = spawn(exporter.clone(), dir.path(), 1 << 30);
    until("all resent", || exporter.held.lock().len() == 20).await;
    let mut got = exporter.deliver_all();
    // Two senders: batches in flight together may swap; none is lost or doubled.
    got.sort();
    assert_eq!(got, (0..20).map(|i| format!("{i:02}")).collect::<Vec<_>>());
    rt.shutdown(Instant::now() + Duration::from_millis(500))
        .await;
    assert_eq!(unacked(dir.path()), 0);
}

// Guarantees: the fan-out refuses a batch (backpressure) once a disk queue's files reach
// `max_bytes`, and takes data again once delivered batches free their segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_refuses_at_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Arc::new(HandOff::default());
    exporter
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (rt, _) = spawn(exporter.clone(), dir.path(), 64 * 1024);
    let fanout = Fanout {
        queues: vec![rt.queue.clone()],
    };
    let mut refused = None;
    for i in 0..10_000 {
        if let Err(r) = fanout.consume(gauge_batch(&format!("{i}"), 20)) {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("the disk queue fills up");
    assert_eq!(refused.kind, crate::component::RefusalKind::Full);
    assert!(rt.queue.disk().unwrap().bytes() <= 64 * 1024);
    exporter
        .down
        .store(false, std::sync::atomic::Ordering::Relaxed);
    until("room again", || {
        exporter.deliver_all();
        fanout.consume(gauge_batch("more", 20)).is_ok()
    })
    .await;
    rt.shutdown(Instant::now() + Duration::from_millis(500))
        .await;
}

// Guarantees: a disk queue without a directory is an error at start, not a panic.
#[tokio::test]
async fn a_disk_queue_needs_a_directory() {
    let mut s = settings(Path::new("x"), 1 << 30);
    s.queue.directory = None;
    let err = ExporterRuntime::spawn(
        ComponentId::parse(EXPORTER).unwrap(),
        Arc::new(HandOff::default()),
        s,
        Arc::new(Telemetry::new()),
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("directory"), "{err}");
}
