//! The queue with `storage: disk`: batches written before they are taken, replayed after a
//! restart, read back beyond the in-memory window, acknowledged when done, and `max_bytes`.

use super::*;
use crate::disk::{Fsync, LogSettings};
use crate::test_util::gauge_batch;
use std::path::Path;

const EXPORTER: &str = "otlp/disk";

fn batch(tenant: &str, tag: &str, points: usize) -> Batch {
    let mut b = gauge_batch(tag, points);
    b.context.tenant = (!tenant.is_empty()).then(|| tenant.into());
    b
}

fn tag(e: &Entry) -> &str {
    &e.batch.resource_metrics[0].scope_metrics[0].metrics[0].name
}

/// A disk queue in `dir` (segments of 4 KiB), with what the folder holds replayed.
fn disk_queue(dir: &Path, max_bytes: u64, policy: FullPolicy) -> (Queue, Arc<Telemetry>) {
    let t = Arc::new(Telemetry::new());
    let q = Queue::new(EXPORTER.into(), 1_000_000, policy, t.clone());
    let settings = LogSettings {
        segment_bytes: 4096,
        fsync: Fsync::Batch,
    };
    let (store, damage) = DiskStore::open(dir.into(), settings, max_bytes, |log, at, p| {
        q.restore(log, at, p).unwrap();
    })
    .unwrap();
    assert!(damage.is_empty());
    (q.with_disk(store), t)
}

async fn pop(q: &Queue) -> Entry {
    tokio::time::timeout(Duration::from_secs(5), q.pop())
        .await
        .expect("pop did not return")
        .expect("the queue is open")
}

/// Pops, releases and acknowledges (a delivered batch); returns its tag.
async fn deliver(q: &Queue) -> String {
    let e = pop(q).await;
    q.release(&e);
    e.stored().unwrap().ack();
    tag(&e).to_string()
}

fn dropped(t: &Telemetry, reason: &str) -> f64 {
    t.value(
        "sluice_exporter_dropped_points_total",
        &[("exporter", EXPORTER), ("reason", reason)],
    )
}

#[tokio::test]
async fn undelivered_batches_come_back_after_a_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, _) = disk_queue(dir.path(), 1 << 30, FullPolicy::Block);
        for i in 0..5 {
            q.try_push(batch("acme", &format!("a{i}"), 3)).unwrap();
        }
        q.try_push(batch("", "none", 2)).unwrap();
        assert!(dir.path().join("acme").is_dir());
        assert!(dir.path().join("_default").is_dir());
        // One delivered, one in flight when the process dies.
        let mut first = deliver(&q).await;
        let in_flight = pop(&q).await;
        if first == "none" {
            first = tag(&in_flight).to_string();
        }
        assert!(first.starts_with('a'));
        q.disk().unwrap().close();
    }
    let (q, _) = disk_queue(dir.path(), 1 << 30, FullPolicy::Block);
    assert_eq!(q.len_points(), 5 * 3 + 2 - 3);
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(deliver(&q).await);
    }
    got.sort();
    assert_eq!(got, vec!["a1", "a2", "a3", "a4", "none"]);
    // The batch keeps its context.
    q.try_push(batch("acme", "x", 1)).unwrap();
    let e = pop(&q).await;
    assert_eq!(e.batch.context.tenant.as_deref(), Some("acme"));
}

#[tokio::test]
async fn only_a_window_is_kept_in_memory_and_the_rest_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (q, _) = disk_queue(dir.path(), 1 << 30, FullPolicy::Block);
    for i in 0..50 {
        q.try_push(batch("acme", &format!("{i:02}"), 2)).unwrap();
    }
    {
        let s = q.state.lock();
        let t = &s.tenants["acme"];
        assert_eq!(t.loaded, WINDOW);
        assert_eq!(t.items.len(), 50);
    }
    for i in 0..50 {
        assert_eq!(deliver(&q).await, format!("{i:02}"));
    }
    assert_eq!(q.len_points(), 0);
    // Every record was acknowledged: only the active segment may be left, and it holds nothing.
    let store = q.disk().unwrap();
    assert!(store.bytes() < 4096, "{} bytes left", store.bytes());
}

#[tokio::test]
async fn a_full_disk_queue_refuses_under_block() {
    let dir = tempfile::tempdir().unwrap();
    let (q, t) = disk_queue(dir.path(), 64 * 1024, FullPolicy::Block);
    let mut pushed = 0;
    while q.has_room_for(&batch("acme", "x", 20), 20) {
        q.try_push(batch("acme", "x", 20)).unwrap();
        pushed += 1;
        assert!(pushed < 10_000);
    }
    let store = q.disk().unwrap();
    assert!(store.bytes() <= 64 * 1024);
    assert!(store.bytes() > 60 * 1024);
    let refusal = q.try_push(batch("acme", "x", 20)).unwrap_err();
    assert_eq!(refusal.kind, crate::component::RefusalKind::Full);
    assert_eq!(dropped(&t, "queue_full"), 0.0);
    // Delivering the oldest frees their segments, and the queue takes data again.
    for _ in 0..pushed / 2 {
        deliver(&q).await;
    }
    assert!(q.has_room_for(&batch("acme", "x", 20), 20));
    q.try_push(batch("acme", "x", 20)).unwrap();
}

#[tokio::test]
async fn a_full_disk_queue_drops_the_oldest_under_drop_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let (q, t) = disk_queue(dir.path(), 64 * 1024, FullPolicy::DropOldest);
    let per_batch = 20;
    let total = 2000;
    for i in 0..total {
        q.try_push(batch("acme", &format!("{i:05}"), per_batch))
            .unwrap();
        assert!(q.disk().unwrap().bytes() <= 64 * 1024);
    }
    let dropped_points = dropped(&t, "queue_full") as usize;
    assert!(dropped_points > 0);
    let kept = q.len_points() / per_batch;
    assert_eq!(kept * per_batch + dropped_points, total * per_batch);
    // What is left is the newest, in order.
    for i in total - kept..total {
        assert_eq!(deliver(&q).await, format!("{i:05}"));
    }
}

#[tokio::test]
async fn a_record_damaged_after_it_was_written_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (q, t) = disk_queue(dir.path(), 1 << 30, FullPolicy::Block);
    for i in 0..WINDOW + 2 {
        q.try_push(batch("acme", &format!("{i:02}"), 5)).unwrap();
    }
    // Damage the last record (beyond the window: it is read back from disk).
    let seg = std::fs::read_dir(dir.path().join("acme"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .unwrap();
    let mut data = std::fs::read(&seg).unwrap();
    let n = data.len();
    data[n - 3] ^= 0xff;
    std::fs::write(&seg, data).unwrap();
    for i in 0..WINDOW + 1 {
        assert_eq!(deliver(&q).await, format!("{i:02}"));
    }
    // The damaged one is skipped; the queue goes on.
    q.try_push(batch("acme", "after", 1)).unwrap();
    assert_eq!(deliver(&q).await, "after");
    assert_eq!(dropped(&t, "corrupt"), 5.0);
    assert_eq!(q.len_points(), 0);
}

#[tokio::test]
async fn shutdown_keeps_the_disk_queue_instead_of_dropping_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (q, t) = disk_queue(dir.path(), 1 << 30, FullPolicy::Block);
        q.try_push(batch("acme", "kept", 4)).unwrap();
        q.close();
        assert_eq!(q.drain_dropped("shutdown"), 0);
        assert_eq!(dropped(&t, "shutdown"), 0.0);
        q.disk().unwrap().close();
    }
    let (q, _) = disk_queue(dir.path(), 1 << 30, FullPolicy::Block);
    assert_eq!(deliver(&q).await, "kept");
}
