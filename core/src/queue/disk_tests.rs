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

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                std::fs::metadata(&p).map_or(0, |m| m.len())
            }
        })
        .sum()
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

/// A batch of `tenant` with an SLA tier.
fn tiered(tenant: &str, tier: &str, points: usize) -> Batch {
    let mut b = batch(tenant, "x", points);
    b.context.tenant_info = Some(Arc::new(crate::tenancy::TenantInfo {
        sla_tier: Some(tier.into()),
        ..Default::default()
    }));
    b
}

/// Pushes `make()` while the queue has room; returns how many were taken.
fn fill(q: &Queue, make: impl Fn() -> Batch) -> usize {
    let mut pushed = 0;
    while q.has_room_for(&make(), 20) {
        q.try_push(make()).unwrap();
        pushed += 1;
        assert!(pushed < 10_000);
    }
    pushed
}

// Guarantees: under `block`, the files are bounded by `max_bytes`, tiered as points are: bronze and
// untiered tenants are refused from 80% of it, silver from 90%, gold only when it is full; a refusal
// drops nothing, and delivering frees room again.
#[tokio::test]
async fn a_full_disk_queue_refuses_under_block_in_tier_order() {
    let dir = tempfile::tempdir().unwrap();
    let max = 64 * 1024;
    let (q, t) = disk_queue(dir.path(), max, FullPolicy::Block);
    let store = q.disk().unwrap();
    let pushed = fill(&q, || batch("acme", "x", 20));
    assert!(store.used() <= max * 8 / 10);
    assert!(store.used() > max * 7 / 10, "{}", store.used());
    let returned = q.try_push(batch("acme", "x", 20)).unwrap_err();
    assert_eq!(
        returned.batch.point_count(),
        20,
        "the refused batch comes back"
    );
    let refusal = returned.refusal;
    assert_eq!(refusal.kind, crate::component::RefusalKind::Full);
    fill(&q, || tiered("initech", "silver", 20));
    assert!(store.used() <= max * 9 / 10);
    assert!(store.used() > max * 8 / 10);
    fill(&q, || tiered("globex", "gold", 20));
    assert!(store.used() > max * 9 / 10);
    assert!(dir_bytes(dir.path()) <= max);
    assert!(q.try_push(tiered("globex", "gold", 20)).is_err());
    assert_eq!(dropped(&t, "queue_full"), 0.0);
    // Delivering acme's oldest frees their segments, and the queue takes data again.
    let mut delivered = 0;
    while delivered < pushed / 2 {
        let e = pop(&q).await;
        q.release(&e);
        e.stored().unwrap().ack();
        delivered += usize::from(e.tenant() == "acme");
    }
    assert!(q.has_room_for(&batch("acme", "x", 20), 20));
    q.try_push(batch("acme", "x", 20)).unwrap();
}

// Guarantees: a tenant whose backend is down fills at most its own share of the files: then it is
// refused (`block`) or its own oldest batches make room (`drop_oldest`), while another tenant's
// batches are still taken.
#[tokio::test]
async fn one_tenant_fills_only_its_share() {
    for policy in [FullPolicy::Block, FullPolicy::DropOldest] {
        let dir = tempfile::tempdir().unwrap();
        let max = 64 * 1024;
        let (q, t) = disk_queue(dir.path(), max, policy);
        let q = Queue {
            disk: q.disk.map(|d| d.with_tenant_limit(max / 4)),
            ..q
        };
        let store = q.disk().unwrap();
        for _ in 0..1000 {
            let _ = q.try_push(batch("stuck", "x", 20));
        }
        assert!(store.tenant_used("stuck") <= max / 4);
        assert!(store.tenant_used("stuck") > max / 5);
        match policy {
            FullPolicy::Block => {
                assert!(!q.has_room_for(&batch("stuck", "x", 20), 20));
                assert_eq!(dropped(&t, "queue_full"), 0.0);
            }
            FullPolicy::DropOldest => assert!(dropped(&t, "queue_full") > 0.0),
        }
        assert!(q.has_room_for(&batch("other", "x", 20), 20));
        q.try_push(batch("other", "x", 20)).unwrap();
        assert!(store.tenant_used("other") > 0);
    }
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
        // The cursor files count too (rewritten as dropped batches are acknowledged).
        assert!(dir_bytes(dir.path()) <= 64 * 1024);
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
