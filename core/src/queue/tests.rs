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
    assert!(!q.should_yield_oldest());
}

#[tokio::test]
async fn push_pop_release_account_points_and_bytes_in_fifo_order() {
    let (q, t) = queue(10, FullPolicy::Block);
    let a = batch(Some("t1"), "a", 4);
    let a_max_bytes = prost::Message::encoded_len(&a.to_request());
    q.push(a);
    assert_eq!(q.len_points(), 4);
    assert!(q.has_room(6));
    assert!(!q.has_room(7));
    q.push(batch(Some("t2"), "b", 6));
    assert_eq!(q.len_points(), 10);
    assert!(!q.has_room(1));
    assert!(q.has_room(0));
    assert_eq!(queued_points(&t, "t1"), 4.0);
    assert_eq!(queued_points(&t, "t2"), 6.0);
    let bytes_before = queued_bytes(&t);
    assert!(bytes_before > 0.0);

    let e = pop(&q).await.unwrap();
    assert_eq!((tag(&e), e.points), ("a", 4));
    assert_eq!(e.batch.context.tenant.as_deref(), Some("t1"));
    assert!(
        e.bytes > 0 && e.bytes <= a_max_bytes,
        "{} vs {a_max_bytes}",
        e.bytes
    );
    assert!(e.enqueued <= std::time::Instant::now());

    // A popped batch is being sent: it still holds its room until released.
    assert_eq!(q.len_points(), 10);
    assert!(!q.has_room(1));
    assert_eq!(queued_points(&t, "t1"), 4.0);
    assert_eq!(queued_bytes(&t), bytes_before);

    q.release(&e);
    assert_eq!(q.len_points(), 6);
    assert!(q.has_room(4));
    assert!(!q.has_room(5));
    assert_eq!(queued_points(&t, "t1"), 0.0);
    assert_eq!(queued_points(&t, "t2"), 6.0);
    assert_eq!(queued_bytes(&t), bytes_before - e.bytes as f64);

    assert_eq!(pop_release(&q).await, Some(("b".into(), 6)));
    assert_eq!(q.len_points(), 0);
    assert_eq!(queued_points(&t, "t2"), 0.0);
    assert_eq!(queued_bytes(&t), 0.0);
    // Nothing was dropped along the way.
    assert_eq!(dropped(&t, &[]), 0.0);
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
        !q.should_yield_oldest(),
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
    q.push(batch(Some("t2"), "b", 4));
    // Always room with drop_oldest.
    assert!(q.has_room(1_000));
    q.push(batch(Some("t1"), "c", 4));
    // `a` made room for `c`.
    assert_eq!(q.len_points(), 8);
    assert_eq!(dropped(&t, &[("reason", "queue_full")]), 4.0);
    assert_eq!(
        t.value(
            "sluice_exporter_dropped_points_total",
            &[("reason", "queue_full")]
        ),
        4.0
    );
    assert_eq!(
        dropped(&t, &[("tenant", "t1"), ("reason", "queue_full")]),
        4.0
    );
    assert_eq!(dropped(&t, &[("tenant", "t2")]), 0.0);
    assert_eq!(queued_points(&t, "t1"), 4.0);
    assert_eq!(queued_points(&t, "t2"), 4.0);

    // Two batches must go for this one.
    q.push(batch(Some("t2"), "d", 9));
    assert_eq!(q.len_points(), 9);
    assert_eq!(dropped(&t, &[("reason", "queue_full")]), 12.0);
    assert_eq!(
        dropped(&t, &[("tenant", "t2"), ("reason", "queue_full")]),
        4.0
    );
    assert_eq!(
        dropped(&t, &[("tenant", "t1"), ("reason", "queue_full")]),
        8.0
    );
    assert_eq!(queued_points(&t, "t1"), 0.0);
    assert_eq!(queued_points(&t, "t2"), 9.0);

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
    assert!(!q.should_yield_oldest());
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
    assert!(!q.should_yield_oldest());
    // `c` goes too, and still `d` does not fit beside `a`: the queue overshoots, and the sender of `a`
    // is asked to give it up.
    q.push(batch(None, "d", 8));
    assert_eq!(dropped(&t, &[("reason", "queue_full")]), 8.0);
    assert_eq!(q.len_points(), 12);
    assert!(q.should_yield_oldest());
    q.release(&a);
    assert_eq!(q.len_points(), 8);
    assert!(!q.should_yield_oldest());
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
