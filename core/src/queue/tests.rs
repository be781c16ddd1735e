use super::*;
use crate::batch::Context;
use crate::proto::otlp::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use std::time::Duration;

const EXPORTER: &str = "otlp/test";

/// A batch of `points` gauge points for `tenant`, tagged `tag` (in the metric name).
fn batch(tenant: Option<&str>, tag: &str, points: usize) -> Batch {
    let data_points = (0..points)
        .map(|i| NumberDataPoint {
            time_unix_nano: i as u64 + 1,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    Batch::new(
        Context {
            tenant: tenant.map(Into::into),
            metadata: vec![],
            ..Default::default()
        },
        vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: tag.into(),
                    data: Some(Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    )
}

/// A batch of `points` for `tenant` whose tenants-file entry has SLA tier `tier`.
fn tiered(tenant: &str, tier: &str, tag: &str, points: usize) -> Batch {
    let mut b = batch(Some(tenant), tag, points);
    b.context.tenant_info = Some(Arc::new(crate::tenancy::TenantInfo {
        sla_tier: Some(tier.into()),
        ..Default::default()
    }));
    b
}

/// Whether the queue has room for `b`.
fn room(q: &Queue, b: &Batch) -> bool {
    q.has_room_for(b, b.point_count())
}

fn tag(e: &Entry) -> &str {
    &e.batch.resource_metrics[0].scope_metrics[0].metrics[0].name
}

fn queue(capacity: usize, policy: FullPolicy) -> (Queue, Arc<Telemetry>) {
    let t = Arc::new(Telemetry::new());
    (Queue::new(EXPORTER.into(), capacity, policy, t.clone()), t)
}

fn queued_points(t: &Telemetry, tenant: &str) -> f64 {
    t.value(
        "sluice_exporter_queue_points",
        &[("exporter", EXPORTER), ("tenant", tenant)],
    )
}

fn queued_bytes(t: &Telemetry) -> f64 {
    t.value("sluice_exporter_queue_bytes", &[("exporter", EXPORTER)])
}

fn dropped(t: &Telemetry, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("exporter", EXPORTER)];
    all.extend_from_slice(labels);
    t.value("sluice_exporter_dropped_points_total", &all)
}

/// Pops with a timeout, so that a bug cannot hang the test run.
async fn pop(q: &Queue) -> Option<Entry> {
    tokio::time::timeout(Duration::from_secs(5), q.pop())
        .await
        .expect("pop did not return")
}

/// Pops and releases at once (a delivered batch); returns its tag and points.
async fn pop_release(q: &Queue) -> Option<(String, usize)> {
    let e = pop(q).await?;
    q.release(&e);
    Some((tag(&e).to_string(), e.points))
}

#[tokio::test]
async fn new_queue_reports_its_capacity_and_is_empty() {
    let (q, t) = queue(1234, FullPolicy::Block);
    assert_eq!(q.exporter(), EXPORTER);
    assert_eq!(q.len_points(), 0);
    assert_eq!(
        t.value(
            "sluice_exporter_queue_capacity_points",
            &[("exporter", EXPORTER)]
        ),
        1234.0
    );
    assert!(q.has_room(1));
    assert!(q.has_room(1234));
    assert!(!q.should_yield_oldest(""));
    assert_eq!(q.tenant_count(), 0);
}

#[tokio::test]
async fn push_pop_release_account_points_and_bytes_in_fifo_order() {
    let (q, t) = queue(10, FullPolicy::Block);
    let a = batch(None, "a", 4);
    let a_max_bytes = prost::Message::encoded_len(&a.to_request());
    q.push(a);
    assert_eq!(q.len_points(), 4);
    assert!(q.has_room(6));
    assert!(!q.has_room(7));
    q.push(batch(None, "b", 6));
    assert_eq!(q.len_points(), 10);
    assert_eq!(q.tenant_points(""), 10);
    assert!(!q.has_room(1));
    assert!(q.has_room(0));
    assert_eq!(queued_points(&t, ""), 10.0);
    let bytes_before = queued_bytes(&t);
    assert!(bytes_before > 0.0);

    let e = pop(&q).await.unwrap();
    assert_eq!((tag(&e), e.points), ("a", 4));
    assert_eq!(e.batch.context.tenant, None);
    assert_eq!(e.tenant(), "");
    assert!(
        e.bytes > 0 && e.bytes <= a_max_bytes,
        "{} vs {a_max_bytes}",
        e.bytes
    );
    assert!(e.enqueued <= std::time::Instant::now());

    // A popped batch is being sent: it still holds its room until released.
    assert_eq!(q.len_points(), 10);
    assert!(!q.has_room(1));
    assert_eq!(queued_points(&t, ""), 10.0);
    assert_eq!(queued_bytes(&t), bytes_before);

    q.release(&e);
    assert_eq!(q.len_points(), 6);
    assert!(q.has_room(4));
    assert!(!q.has_room(5));
    assert_eq!(queued_points(&t, ""), 6.0);
    assert_eq!(queued_bytes(&t), bytes_before - e.bytes as f64);

    assert_eq!(pop_release(&q).await, Some(("b".into(), 6)));
    assert_eq!(q.len_points(), 0);
    assert_eq!(queued_points(&t, ""), 0.0);
    assert_eq!(queued_bytes(&t), 0.0);
    // Nothing was dropped along the way, and the idle tenant is forgotten.
    assert_eq!(dropped(&t, &[]), 0.0);
    assert_eq!(q.tenant_count(), 0);
}

/// Prepares a batch as its tag, sized 1,000 bytes a point.
struct TagPreparer;

impl crate::component::Exporter for TagPreparer {
    fn send<'a>(
        &'a self,
        _batch: &'a Batch,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::component::Delivered, crate::component::SendError>,
    > {
        unreachable!("a prepared batch is sent prepared")
    }

    fn prepare(&self, batch: &Batch) -> Option<(Prepared, usize)> {
        let tag = batch.resource_metrics[0].scope_metrics[0].metrics[0]
            .name
            .clone();
        Some((Box::new(tag), 1000 * batch.point_count()))
    }

    fn prepares(&self) -> bool {
        true
    }
}

// Guarantees: a memory queue that prepares its batches counts each batch's bytes as its exporter
// sized the prepared form (not the points it no longer holds), and gives them back on release.
#[tokio::test]
async fn a_prepared_batch_counts_the_bytes_of_its_prepared_form() {
    let (q, t) = queue(10, FullPolicy::Block);
    let q = q.with_preparer(Arc::new(TagPreparer));
    q.push(batch(None, "a", 4));
    q.push(batch(None, "b", 2));
    assert_eq!(queued_bytes(&t), 6000.0);
    let e = pop(&q).await.unwrap();
    assert_eq!((e.points, e.bytes), (4, 4000));
    let prepared = e.prepared.as_ref().and_then(|p| p.downcast_ref::<String>());
    assert_eq!(prepared.map(String::as_str), Some("a"));
    q.release(&e);
    assert_eq!(queued_bytes(&t), 2000.0);
    let e = pop(&q).await.unwrap();
    q.release(&e);
    assert_eq!(queued_bytes(&t), 0.0);
}

#[tokio::test]
async fn batch_larger_than_capacity_is_taken_when_empty_only() {
    let (q, _t) = queue(5, FullPolicy::Block);
    assert!(q.has_room(100));
    q.push(batch(None, "big", 8));
    assert_eq!(q.len_points(), 8);
    // Now over capacity: nothing more until it is sent.
    assert!(!q.has_room(0));
    assert!(!q.has_room(1));
    assert!(!q.has_room(100));
    let e = pop(&q).await.unwrap();
    assert_eq!(e.points, 8);
    assert!(!q.has_room(1), "the batch being sent still counts");
    q.release(&e);
    assert!(q.has_room(100));
}

#[tokio::test]
async fn block_policy_refuses_when_full_and_never_drops() {
    let (q, t) = queue(6, FullPolicy::Block);
    q.push(batch(None, "a", 3));
    q.push(batch(None, "b", 3));
    assert!(!q.has_room(1));
    // A push past `has_room` (a concurrent overshoot) is kept, not dropped.
    q.push(batch(None, "c", 2));
    assert_eq!(q.len_points(), 8);
    assert!(
        !q.should_yield_oldest(""),
        "only drop_oldest gives up batches"
    );
    assert_eq!(dropped(&t, &[]), 0.0);
    let mut tags = Vec::new();
    for _ in 0..3 {
        tags.push(pop_release(&q).await.unwrap().0);
    }
    assert_eq!(tags, ["a", "b", "c"]);
}

#[tokio::test]
async fn drop_oldest_makes_room_and_counts_the_dropped_points() {
    let (q, t) = queue(10, FullPolicy::DropOldest);
    q.push(batch(Some("t1"), "a", 4));
    q.push(batch(Some("t1"), "b", 4));
    // Always room with drop_oldest.
    assert!(q.has_room(1_000));
    q.push(batch(Some("t1"), "c", 4));
    // `a` made room for `c`.
    assert_eq!(q.len_points(), 8);
    assert_eq!(dropped(&t, &[("reason", "queue_full")]), 4.0);
    assert_eq!(
        dropped(&t, &[("tenant", "t1"), ("reason", "queue_full")]),
        4.0
    );
    assert_eq!(queued_points(&t, "t1"), 8.0);

    // Two batches must go for this one.
    q.push(batch(Some("t1"), "d", 9));
    assert_eq!(q.len_points(), 9);
    assert_eq!(
        dropped(&t, &[("tenant", "t1"), ("reason", "queue_full")]),
        12.0
    );
    assert_eq!(queued_points(&t, "t1"), 9.0);

    assert_eq!(pop_release(&q).await, Some(("d".into(), 9)));
    assert_eq!(q.len_points(), 0);
    assert_eq!(queued_bytes(&t), 0.0);
}

#[tokio::test]
async fn drop_oldest_takes_an_oversized_batch_by_emptying_the_queue() {
    let (q, t) = queue(5, FullPolicy::DropOldest);
    q.push(batch(None, "a", 2));
    q.push(batch(None, "b", 3));
    q.push(batch(None, "huge", 50));
    assert_eq!(q.len_points(), 50);
    assert_eq!(
        dropped(&t, &[("tenant", ""), ("reason", "queue_full")]),
        5.0
    );
    // The next batch pushes the oversized one out.
    q.push(batch(None, "e", 1));
    assert_eq!(q.len_points(), 1);
    assert_eq!(dropped(&t, &[("reason", "queue_full")]), 55.0);
    assert_eq!(pop_release(&q).await, Some(("e".into(), 1)));
}

#[tokio::test]
async fn drop_oldest_does_not_drop_when_the_batch_fits() {
    let (q, t) = queue(10, FullPolicy::DropOldest);
    q.push(batch(None, "a", 5));
    q.push(batch(None, "b", 5));
    assert_eq!(q.len_points(), 10);
    assert!(!q.should_yield_oldest(""));
    assert_eq!(dropped(&t, &[]), 0.0);
}

#[tokio::test]
async fn drop_oldest_cannot_drop_batches_being_sent_and_asks_senders_to_yield() {
    let (q, t) = queue(10, FullPolicy::DropOldest);
    q.push(batch(None, "a", 4));
    let a = pop(&q).await.unwrap();
    q.push(batch(None, "b", 4));
    // `a` is being sent: only `b` can make room for `c`.
    q.push(batch(None, "c", 4));
    assert_eq!(dropped(&t, &[("reason", "queue_full")]), 4.0);
    assert_eq!(q.len_points(), 8);
    assert!(!q.should_yield_oldest(""));
    // `c` goes too, and still `d` does not fit beside `a`: the queue overshoots, and the sender of `a`
    // is asked to give it up.
    q.push(batch(None, "d", 8));
    assert_eq!(dropped(&t, &[("reason", "queue_full")]), 8.0);
    assert_eq!(q.len_points(), 12);
    assert!(q.should_yield_oldest(""));
    assert!(!q.should_yield_oldest("other"));
    q.release(&a);
    assert_eq!(q.len_points(), 8);
    assert!(!q.should_yield_oldest(""));
    assert_eq!(pop_release(&q).await, Some(("d".into(), 8)));
    assert_eq!(q.len_points(), 0);
    assert_eq!(queued_points(&t, ""), 0.0);
    assert_eq!(queued_bytes(&t), 0.0);
}

#[tokio::test]
async fn close_drains_then_pop_returns_none() {
    let (q, _t) = queue(10, FullPolicy::Block);
    q.push(batch(None, "a", 1));
    q.push(batch(None, "b", 2));
    q.close();
    assert!(!q.has_room(1), "a closed queue takes nothing");
    assert!(!q.has_room(0));
    assert_eq!(pop_release(&q).await, Some(("a".into(), 1)));
    assert_eq!(pop_release(&q).await, Some(("b".into(), 2)));
    assert!(pop(&q).await.is_none());
    assert!(pop(&q).await.is_none(), "stays closed");
    assert_eq!(q.len_points(), 0);
}

#[tokio::test]
async fn close_also_refuses_with_drop_oldest() {
    let (q, _t) = queue(10, FullPolicy::DropOldest);
    q.close();
    assert!(!q.has_room(1));
    assert!(pop(&q).await.is_none());
}

#[tokio::test]
async fn pop_waits_for_a_push() {
    let (q, _t) = queue(10, FullPolicy::Block);
    let q = Arc::new(q);
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { pop_release(&q).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !waiter.is_finished(),
        "pop returned from an empty, open queue"
    );
    q.push(batch(None, "late", 3));
    assert_eq!(waiter.await.unwrap(), Some(("late".to_string(), 3)));
}

#[tokio::test]
async fn close_wakes_every_waiting_consumer() {
    let (q, _t) = queue(10, FullPolicy::Block);
    let q = Arc::new(q);
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move { pop(&q).await.is_none() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(waiters.iter().all(|w| !w.is_finished()));
    q.close();
    for w in waiters {
        assert!(
            w.await.unwrap(),
            "a consumer got a batch from an empty queue"
        );
    }
}

#[tokio::test]
async fn drain_dropped_empties_and_counts_by_reason() {
    let (q, t) = queue(100, FullPolicy::Block);
    q.push(batch(Some("t1"), "a", 3));
    q.push(batch(Some("t2"), "b", 4));
    q.push(batch(Some("t1"), "c", 5));
    assert_eq!(q.drain_dropped("shutdown"), 12);
    assert_eq!(q.len_points(), 0);
    assert_eq!(dropped(&t, &[("reason", "shutdown")]), 12.0);
    assert_eq!(
        dropped(&t, &[("tenant", "t1"), ("reason", "shutdown")]),
        8.0
    );
    assert_eq!(
        dropped(&t, &[("tenant", "t2"), ("reason", "shutdown")]),
        4.0
    );
    assert_eq!(dropped(&t, &[("reason", "queue_full")]), 0.0);
    assert_eq!(queued_points(&t, "t1"), 0.0);
    assert_eq!(queued_points(&t, "t2"), 0.0);
    assert_eq!(queued_bytes(&t), 0.0);
    // Draining an empty queue counts nothing.
    assert_eq!(q.drain_dropped("shutdown"), 0);
    assert_eq!(dropped(&t, &[("reason", "shutdown")]), 12.0);
    // The queue still works afterwards.
    assert!(q.has_room(100));
    q.push(batch(None, "d", 1));
    q.close();
    assert_eq!(pop_release(&q).await, Some(("d".into(), 1)));
    assert!(pop(&q).await.is_none());
}

#[tokio::test]
async fn drain_dropped_leaves_batches_being_sent_to_their_senders() {
    let (q, t) = queue(100, FullPolicy::Block);
    q.push(batch(Some("t1"), "a", 3));
    q.push(batch(Some("t2"), "b", 4));
    let a = pop(&q).await.unwrap();
    assert_eq!(q.drain_dropped("shutdown"), 4);
    assert_eq!(dropped(&t, &[("reason", "shutdown")]), 4.0);
    assert_eq!(dropped(&t, &[("tenant", "t1")]), 0.0);
    // `a` still holds its room until its sender is done with it.
    assert_eq!(q.len_points(), 3);
    assert_eq!(queued_points(&t, "t1"), 3.0);
    q.release(&a);
    assert_eq!(q.len_points(), 0);
    assert_eq!(queued_points(&t, "t1"), 0.0);
    assert_eq!(queued_bytes(&t), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consumers_get_every_batch_exactly_once() {
    let (q, t) = queue(50, FullPolicy::Block);
    let q = Arc::new(q);
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(e) = pop(&q).await {
                    got.push(tag(&e).parse::<usize>().unwrap());
                    tokio::task::yield_now().await;
                    q.release(&e);
                }
                got
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for i in 0..500usize {
        let points = i % 7 + 1;
        while !q.has_room(points) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no room for batch {i}: {} points held",
                q.len_points()
            );
            tokio::task::yield_now().await;
        }
        q.push(batch(None, &i.to_string(), points));
        // Queued and in-flight points together stay within the capacity (one producer: no overshoot).
        assert!(q.len_points() <= 50, "{}", q.len_points());
    }
    q.close();
    let mut all = Vec::new();
    for c in consumers {
        let got = c.await.unwrap();
        // Each consumer sees batches in queue order.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(all, (0..500).collect::<Vec<_>>());
    assert_eq!(q.len_points(), 0);
    assert_eq!(queued_points(&t, ""), 0.0);
    assert_eq!(queued_bytes(&t), 0.0);
    assert_eq!(dropped(&t, &[]), 0.0);
}

#[test]
fn full_policy_deserializes_from_config_names() {
    let node = |s: &str| crate::config::Node {
        value: crate::config::Value::Str(s.into()),
        pos: crate::config::Pos { line: 3, column: 7 },
    };
    let parse = |s: &str| crate::config::from_node::<FullPolicy>(&node(s));
    assert_eq!(parse("drop_oldest").unwrap(), FullPolicy::DropOldest);
    assert_eq!(parse("block").unwrap(), FullPolicy::Block);
    let e = parse("drop_newest").unwrap_err();
    assert!(
        e.message.contains("drop_newest") && e.message.contains("drop_oldest"),
        "{e}"
    );
    assert_eq!((e.pos.line, e.pos.column), (3, 7));
    assert_eq!(FullPolicy::default(), FullPolicy::Block);
}

/// Pops `n` batches, releasing each at once; returns their tags.
async fn pop_tags(q: &Queue, n: usize) -> Vec<String> {
    let mut tags = Vec::new();
    for _ in 0..n {
        tags.push(pop_release(q).await.expect("a batch").0);
    }
    tags
}

// Guarantees: each tenant's part is bounded by `queue_size` on its own, so one tenant's full queue
// does not refuse another tenant's data.
#[tokio::test]
async fn each_tenant_has_its_own_capacity() {
    let (q, t) = queue(10, FullPolicy::Block);
    q.push(batch(Some("a"), "a1", 6));
    q.push(batch(Some("a"), "a2", 4));
    assert!(!room(&q, &batch(Some("a"), "a3", 1)));
    assert!(room(&q, &batch(Some("b"), "b1", 10)));
    assert!(room(&q, &batch(None, "n1", 10)));
    q.push(batch(Some("b"), "b1", 10));
    assert_eq!(q.len_points(), 20);
    assert_eq!((q.tenant_points("a"), q.tenant_points("b")), (10, 10));
    assert_eq!(q.tenant_count(), 2);
    assert_eq!(
        (queued_points(&t, "a"), queued_points(&t, "b")),
        (10.0, 10.0)
    );
    // Sending one of a's batches makes room for a only.
    let e = pop(&q).await.unwrap();
    assert_eq!(tag(&e), "a1");
    q.release(&e);
    assert!(room(&q, &batch(Some("a"), "a3", 6)));
    assert!(!room(&q, &batch(Some("b"), "b2", 1)));
    assert_eq!(dropped(&t, &[]), 0.0);
}

// Guarantees: all tenants together are bounded by `total_size`; as it fills, bronze (and
// untiered) tenants are refused first (above 80%), then silver (above 90%), and gold keeps room.
#[tokio::test]
async fn total_size_refuses_bronze_first_then_silver_and_keeps_room_for_gold() {
    let (q, _t) = queue(10, FullPolicy::Block);
    let q = q.with_total_size(50);
    for (i, tenant) in ["b1", "b2", "b3", "b4"].iter().enumerate() {
        q.push(tiered(tenant, "bronze", &format!("x{i}"), 10));
    }
    assert_eq!(q.len_points(), 40);
    // 40 of 50 held: bronze may hold 40, silver 45, gold 50.
    assert!(!room(&q, &tiered("b5", "bronze", "x", 1)));
    assert!(
        !room(&q, &batch(Some("plain"), "x", 1)),
        "untiered ranks with bronze"
    );
    assert!(room(&q, &tiered("s1", "silver", "x", 5)));
    assert!(!room(&q, &tiered("s1", "silver", "x", 6)));
    q.push(tiered("s1", "silver", "s", 5));
    assert!(!room(&q, &tiered("s2", "silver", "x", 1)));
    assert!(room(&q, &tiered("g1", "gold", "x", 5)));
    assert!(!room(&q, &tiered("g1", "gold", "x", 6)));
    // The tier is matched case-insensitively, as in the tenants file.
    assert!(room(&q, &tiered("g2", "Gold", "x", 5)));
}

#[tokio::test]
async fn total_size_is_at_least_the_tenant_capacity() {
    let (q, _t) = queue(10, FullPolicy::Block);
    let q = q.with_total_size(3);
    assert!(q.has_room(8));
    q.push(batch(None, "a", 8));
    assert!(q.has_room(0));
    assert!(!q.has_room(1), "80% of 10 are held");
}

// Guarantees: under drop_oldest a tenant's full part drops that tenant's oldest batches only.
#[tokio::test]
async fn drop_oldest_drops_within_the_pushing_tenant_only() {
    let (q, t) = queue(10, FullPolicy::DropOldest);
    q.push(batch(Some("a"), "a1", 5));
    q.push(batch(Some("b"), "b1", 5));
    q.push(batch(Some("a"), "a2", 5));
    q.push(batch(Some("a"), "a3", 5));
    assert_eq!(
        dropped(&t, &[("tenant", "a"), ("reason", "queue_full")]),
        5.0
    );
    assert_eq!(dropped(&t, &[("tenant", "b")]), 0.0);
    assert_eq!((q.tenant_points("a"), q.tenant_points("b")), (10, 5));
    let mut tags = pop_tags(&q, 3).await;
    tags.sort();
    assert_eq!(tags, ["a2", "a3", "b1"]);
}

// Guarantees: under drop_oldest, a full total sheds the worst-tiered tenants' oldest batches first
// (never a better tier's for a worse one).
#[tokio::test]
async fn drop_oldest_sheds_the_worst_tier_first_when_the_total_is_full() {
    let (q, t) = queue(10, FullPolicy::DropOldest);
    let q = q.with_total_size(20);
    q.push(tiered("g", "gold", "g1", 10));
    q.push(tiered("b", "bronze", "b1", 6));
    // Bronze may hold 16 of 20 in all: its own oldest goes, not gold's.
    q.push(tiered("b", "bronze", "b2", 6));
    assert_eq!(
        dropped(&t, &[("tenant", "b"), ("reason", "queue_full")]),
        6.0
    );
    assert_eq!(q.tenant_points("g"), 10);
    q.push(tiered("s", "silver", "s1", 8));
    // Silver may hold 18: bronze's b2 made room, gold kept everything.
    assert_eq!(
        dropped(&t, &[("tenant", "b"), ("reason", "queue_full")]),
        12.0
    );
    assert_eq!(dropped(&t, &[("tenant", "g")]), 0.0);
    assert_eq!((q.tenant_points("g"), q.tenant_points("s")), (10, 8));
    assert_eq!(q.tenant_points("b"), 0);
    // Gold may hold all 20: silver goes before gold.
    q.push(tiered("g2", "gold", "g2", 5));
    assert_eq!(
        dropped(&t, &[("tenant", "s"), ("reason", "queue_full")]),
        8.0
    );
    assert_eq!(dropped(&t, &[("tenant", "g")]), 0.0);
    assert_eq!(q.len_points(), 15);
    assert_eq!(queued_points(&t, "b"), 0.0);
    assert_eq!(queued_points(&t, "s"), 0.0);
}

// Guarantees: senders take gold's batches first, then silver's, then the rest.
#[tokio::test]
async fn pop_serves_gold_then_silver_then_bronze() {
    let (q, _t) = queue(100, FullPolicy::Block);
    q.push(tiered("b", "bronze", "b1", 1));
    q.push(batch(Some("n"), "n1", 1));
    q.push(tiered("s", "silver", "s1", 1));
    q.push(tiered("g", "gold", "g1", 1));
    q.push(tiered("s", "silver", "s2", 1));
    q.push(tiered("g", "gold", "g2", 1));
    let tags = pop_tags(&q, 6).await;
    assert_eq!(&tags[..4], ["g1", "g2", "s1", "s2"]);
    let mut rest = tags[4..].to_vec();
    rest.sort();
    assert_eq!(rest, ["b1", "n1"]);
}

// Guarantees: tenants of the same tier take turns, each in its own FIFO order.
#[tokio::test]
async fn pop_is_round_robin_among_tenants_of_a_tier() {
    let (q, _t) = queue(100, FullPolicy::Block);
    for tenant in ["a", "b", "c"] {
        for i in 1..=2 {
            q.push(tiered(tenant, "silver", &format!("{tenant}{i}"), 1));
        }
    }
    q.push(tiered("a", "silver", "a3", 1));
    assert_eq!(
        pop_tags(&q, 7).await,
        ["a1", "b1", "c1", "a2", "b2", "c2", "a3"]
    );
}

// Guarantees: a batch put back after a failed attempt waits at the front of its tenant's FIFO
// while senders serve the other tenants (even worse-tiered ones); then it goes first, in order.
#[tokio::test]
async fn a_tenant_in_backoff_does_not_hold_up_another() {
    let (q, t) = queue(100, FullPolicy::Block);
    q.push(tiered("a", "gold", "a1", 2));
    q.push(tiered("a", "gold", "a2", 2));
    q.push(tiered("b", "bronze", "b1", 3));
    q.push(tiered("b", "bronze", "b2", 3));
    let a1 = pop(&q).await.unwrap();
    assert_eq!(tag(&a1), "a1");
    q.retry_later(a1, Duration::from_millis(300));
    // Still held: the batch keeps its room while it waits.
    assert_eq!(q.tenant_points("a"), 4);
    assert_eq!(queued_points(&t, "a"), 4.0);
    assert_eq!(pop_tags(&q, 2).await, ["b1", "b2"]);
    // Then a's batches, in their order, once the wait is over.
    let a1 = pop(&q).await.unwrap();
    assert_eq!(tag(&a1), "a1");
    q.delivered(&a1);
    q.release(&a1);
    assert_eq!(pop_tags(&q, 1).await, ["a2"]);
    assert_eq!(q.len_points(), 0);
    assert_eq!(q.tenant_count(), 0);
}

// Guarantees: until one of its sends succeeds, a failing tenant has one batch in flight at a time
// (a slow or failing backend does not take every sender); a success lifts that.
#[tokio::test]
async fn a_failing_tenant_has_one_batch_in_flight_until_a_send_succeeds() {
    let (q, _t) = queue(100, FullPolicy::Block);
    for i in 1..=4 {
        q.push(batch(Some("a"), &format!("a{i}"), 1));
    }
    let a1 = pop(&q).await.unwrap();
    q.retry_later(a1, Duration::ZERO);
    let probe = pop(&q).await.unwrap();
    assert_eq!(tag(&probe), "a1");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), q.pop())
            .await
            .is_err(),
        "a second batch of a failing tenant was handed out"
    );
    // Another tenant is served meanwhile.
    q.push(batch(Some("b"), "b1", 1));
    assert_eq!(pop_tags(&q, 1).await, ["b1"]);
    q.delivered(&probe);
    q.release(&probe);
    // Healthy again: several in flight at once.
    let a2 = pop(&q).await.unwrap();
    let a3 = pop(&q).await.unwrap();
    assert_eq!((tag(&a2), tag(&a3)), ("a2", "a3"));
    q.release(&a2);
    q.release(&a3);
    assert_eq!(pop_tags(&q, 1).await, ["a4"]);
}

// Guarantees: a failed attempt that is given up (dropped, not delivered) keeps the tenant failing.
#[tokio::test]
async fn releasing_without_delivery_keeps_the_tenant_failing() {
    let (q, _t) = queue(100, FullPolicy::Block);
    for i in 1..=3 {
        q.push(batch(Some("a"), &format!("a{i}"), 1));
    }
    let a1 = pop(&q).await.unwrap();
    q.retry_later(a1, Duration::ZERO);
    let a1 = pop(&q).await.unwrap();
    q.retry_later(a1, Duration::ZERO);
    let a1 = pop(&q).await.unwrap();
    // Dropped (e.g. max_age): the next batch is the new probe, alone.
    q.release(&a1);
    let a2 = pop(&q).await.unwrap();
    assert_eq!(tag(&a2), "a2");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), q.pop())
            .await
            .is_err()
    );
    q.release(&a2);
}

// Guarantees: a closed queue still hands out batches waiting for their retry, then ends.
#[tokio::test]
async fn close_waits_for_batches_in_backoff() {
    let (q, _t) = queue(100, FullPolicy::Block);
    q.push(batch(Some("a"), "a1", 1));
    let a1 = pop(&q).await.unwrap();
    q.retry_later(a1, Duration::from_millis(30));
    q.close();
    let a1 = pop(&q).await.expect("the batch in backoff");
    assert_eq!(tag(&a1), "a1");
    assert!(
        a1.backoff.is_none(),
        "the queue leaves the backoff to the sender"
    );
    q.release(&a1);
    assert!(pop(&q).await.is_none());
}

#[tokio::test]
async fn drain_dropped_counts_batches_in_backoff() {
    let (q, t) = queue(100, FullPolicy::Block);
    q.push(batch(Some("a"), "a1", 3));
    q.push(batch(Some("b"), "b1", 4));
    let a1 = pop(&q).await.unwrap();
    q.retry_later(a1, Duration::from_secs(3600));
    assert_eq!(q.drain_dropped("shutdown"), 7);
    assert_eq!(dropped(&t, &[("tenant", "a"), ("reason", "shutdown")]), 3.0);
    assert_eq!(dropped(&t, &[("tenant", "b"), ("reason", "shutdown")]), 4.0);
    assert_eq!(q.len_points(), 0);
    assert_eq!(q.tenant_count(), 0);
    assert_eq!(queued_bytes(&t), 0.0);
    q.close();
    assert!(pop(&q).await.is_none());
}

// Guarantees: many senders and tenants, with retries, get every batch exactly once, each tenant's
// accounting returns to zero, and idle tenants are forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consumers_with_retries_deliver_every_batch_once() {
    let (q, t) = queue(20, FullPolicy::Block);
    let q = Arc::new(q);
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(e) = pop(&q).await {
                    let n: usize = tag(&e).parse().unwrap();
                    tokio::task::yield_now().await;
                    // Every third batch fails once.
                    if n.is_multiple_of(3) && e.backoff.is_none() {
                        let mut e = e;
                        e.backoff = Some(crate::backoff::Backoff::new(
                            Duration::from_millis(1),
                            Duration::from_millis(1),
                        ));
                        q.retry_later(e, Duration::from_millis(1));
                        continue;
                    }
                    got.push(n);
                    q.delivered(&e);
                    q.release(&e);
                }
                got
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let tiers = ["gold", "silver", "bronze", "tin"];
    for i in 0..400usize {
        let b = tiered(
            &format!("t{}", i % 5),
            tiers[i % 4],
            &i.to_string(),
            i % 4 + 1,
        );
        while !room(&q, &b) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no room for batch {i}"
            );
            tokio::task::yield_now().await;
        }
        q.push(b);
    }
    q.close();
    let mut all = Vec::new();
    for c in consumers {
        all.extend(c.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<_>>());
    assert_eq!(q.len_points(), 0);
    assert_eq!(q.tenant_count(), 0);
    for i in 0..5 {
        assert_eq!(queued_points(&t, &format!("t{i}")), 0.0);
    }
    assert_eq!(queued_bytes(&t), 0.0);
    assert_eq!(dropped(&t, &[]), 0.0);
}

// Guarantees: with several senders, a tenant holding all senders but one gives way to a tenant of
// its tier with fewer batches in flight (a slow backend leaves a sender to its peers), but never
// to a worse tier, and still gets every sender when it is alone.
#[tokio::test]
async fn a_tenant_holding_all_senders_but_one_gives_way_to_its_peers_only() {
    let (q, _t) = queue(100, FullPolicy::Block);
    let q = q.with_senders(3);
    for i in 1..=4 {
        q.push(tiered("a", "silver", &format!("a{i}"), 1));
    }
    let a1 = pop(&q).await.unwrap();
    let a2 = pop(&q).await.unwrap();
    // a holds two of three senders; b, of the same tier, goes first though a comes first in turn.
    q.push(tiered("b", "silver", "b1", 1));
    q.push(tiered("c", "bronze", "c1", 1));
    let b1 = pop(&q).await.unwrap();
    assert_eq!(tag(&b1), "b1");
    // No silver peer is waiting: a goes before the bronze tenant, past its share.
    let a3 = pop(&q).await.unwrap();
    let a4 = pop(&q).await.unwrap();
    assert_eq!((tag(&a3), tag(&a4)), ("a3", "a4"));
    let c1 = pop(&q).await.unwrap();
    assert_eq!(tag(&c1), "c1");
    for e in [a1, a2, b1, a3, a4, c1] {
        q.release(&e);
    }
    assert_eq!(q.len_points(), 0);
}

// Guarantees: when all tenants together overshoot (batches in flight cannot be dropped), a failing
// sender of a worse tier gives its batch up, a gold one does not.
#[tokio::test]
async fn only_tiers_over_their_share_of_the_total_are_asked_to_yield() {
    let (q, _t) = queue(10, FullPolicy::DropOldest);
    let q = q.with_total_size(20);
    q.push(tiered("g", "gold", "g1", 10));
    let g1 = pop(&q).await.unwrap();
    q.push(tiered("b", "bronze", "b1", 6));
    let b1 = pop(&q).await.unwrap();
    // Bronze may fill 16 of 20; nothing queued can go, so the total overshoots.
    q.push(tiered("b", "bronze", "b2", 4));
    assert_eq!(q.len_points(), 20);
    assert!(q.should_yield_oldest("b"));
    assert!(!q.should_yield_oldest("g"));
    assert!(!q.should_yield_oldest("unknown"));
    q.release(&g1);
    assert!(!q.should_yield_oldest("b"));
    q.release(&b1);
}

// Once a receiver's probe finds a tenant's part full, receivers wait until it has drained to nine
// tenths before reading that tenant's requests again, rather than taking one request each time a
// send frees a little room; a batch already decoded is taken whenever it fits, and the wait is the
// tenant's own.
#[tokio::test]
async fn receivers_wait_for_a_full_part_to_drain_to_nine_tenths() {
    let (q, _t) = queue(100, FullPolicy::Block);
    for tag in ["a", "b", "c", "d", "e"] {
        q.push(batch(Some("t1"), tag, 19));
    }
    q.push(batch(Some("t1"), "f", 5));
    let probe = batch(Some("t1"), "probe", 0);
    let other = batch(Some("t2"), "probe", 0);
    assert!(!q.ready_for(&probe, 10), "100 held: no room for 10");
    assert!(q.ready_for(&other, 10), "t2's part is empty");
    assert_eq!(pop_release(&q).await.unwrap(), ("a".to_string(), 19));
    // 81 held: room for 10 more, and nine tenths drained to, so requests are read again.
    assert!(room(&q, &batch(Some("t1"), "g", 10)));
    assert!(q.ready_for(&probe, 10));
    assert!(
        q.ready_for(&probe, 10),
        "the wait is over until the part is full again"
    );

    // Full again at 100; a release to 95 lets a decoded batch of 5 in, but no request is read.
    q.push(batch(Some("t1"), "g", 19));
    assert!(!q.ready_for(&probe, 10));
    let (tag, points) = pop_release(&q).await.unwrap();
    assert_eq!((tag.as_str(), points), ("b", 19));
    q.push(batch(Some("t1"), "h", 14));
    assert_eq!(q.len_points(), 95);
    assert!(room(&q, &batch(Some("t1"), "i", 5)));
    assert!(!q.ready_for(&probe, 5), "95 held: over nine tenths");
    pop_release(&q).await.unwrap();
    assert!(q.ready_for(&probe, 5), "76 held");
}
