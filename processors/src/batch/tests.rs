use super::*;
use sluice_core::component::{ComponentId, RefusalKind};
use sluice_core::proto::otlp::metrics::v1::{metric, number_data_point};
use sluice_core::test_util::{Capture, gauge_batch};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const PROCESSOR: &str = "batch/test";
const PIPELINE: &str = "metrics/test";

/// Takes batches while its budget lasts (unlimited by default), refusing with `Refusal::full`
/// once it is spent; what it takes is recorded in `capture`.
struct Next {
    capture: Arc<Capture>,
    budget: AtomicUsize,
}

impl Next {
    fn refuse(&self) {
        self.budget.store(0, Ordering::SeqCst);
    }
    fn accept(&self, batches: usize) {
        self.budget.store(batches, Ordering::SeqCst);
    }
    fn accept_all(&self) {
        self.accept(usize::MAX);
    }
}

impl Consumer for Next {
    fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        let took = self
            .budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| match b {
                0 => None,
                usize::MAX => Some(usize::MAX),
                n => Some(n - 1),
            });
        if took.is_err() {
            return Err(Refusal::full("next told to refuse"));
        }
        self.capture.consume(batch)
    }
}

struct Setup {
    p: Arc<dyn Processor>,
    next: Arc<Next>,
    telemetry: Arc<Telemetry>,
}

impl Setup {
    fn counter(&self, name: &str, reason: &str) -> f64 {
        self.telemetry.value(
            name,
            &[
                ("processor", PROCESSOR),
                ("pipeline", PIPELINE),
                ("reason", reason),
            ],
        )
    }
    fn sent_batches(&self, trigger: &str) -> f64 {
        self.counter("sluice_processor_batch_sent_batches_total", trigger)
    }
    fn dropped(&self, reason: &str) -> f64 {
        self.counter("sluice_processor_dropped_points_total", reason)
    }
    fn delivered(&self) -> Vec<Batch> {
        self.next.capture.batches.lock().clone()
    }
}

/// Builds the processor and lets its ticker take its first (immediate) tick, so that the next
/// timeout flush happens one full `timeout` from now.
async fn build(cfg: BatchConfig) -> Setup {
    let next = Arc::new(Next {
        capture: Capture::new(),
        budget: AtomicUsize::new(usize::MAX),
    });
    let telemetry = Arc::new(Telemetry::new());
    let p = cfg
        .build(ProcessorContext {
            id: ComponentId::parse(PROCESSOR).unwrap(),
            pipeline: PIPELINE.into(),
            next: next.clone(),
            telemetry: telemetry.clone(),
        })
        .expect("the processor builds");
    settle().await;
    Setup { p, next, telemetry }
}

fn cfg(send_batch_size: usize, timeout: Duration) -> BatchConfig {
    BatchConfig {
        send_batch_size,
        timeout: sluice_core::config::types::Duration(timeout),
        ..Default::default()
    }
}

/// Lets spawned tasks run without moving (paused) time.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Polls `cond` until it holds, failing the test at `within` (of tokio time, which auto-advances
/// while paused).
async fn eventually(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn context(tenant: Option<&str>) -> Context {
    Context {
        tenant: tenant.map(Arc::from),
        metadata: Vec::new(),
        ..Default::default()
    }
}

/// Gauge points named `name` whose values are the numbers of `values`, under `context`.
fn numbered(name: &str, context: Context, values: Range<usize>) -> Batch {
    let mut b = gauge_batch(name, values.len());
    b.context = context;
    let Some(metric::Data::Gauge(g)) = &mut b.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        unreachable!()
    };
    for (p, v) in g.data_points.iter_mut().zip(values) {
        p.value = Some(number_data_point::Value::AsDouble(v as f64));
    }
    b
}

/// Every (metric name, value) of the batches, in order.
fn points(batches: &[Batch]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for b in batches {
        for m in b
            .resource_metrics
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
        {
            let Some(metric::Data::Gauge(g)) = &m.data else {
                panic!("only gauges are used here")
            };
            for p in &g.data_points {
                let Some(number_data_point::Value::AsDouble(v)) = p.value else {
                    panic!("only doubles are used here")
                };
                out.push((m.name.clone(), v as usize));
            }
        }
    }
    out
}

fn named(name: &str, values: Range<usize>) -> Vec<(String, usize)> {
    values.map(|v| (name.to_string(), v)).collect()
}

// Guarantees: points wait until send_batch_size are pending for a context, then go on at once,
// within the consume call that completed the batch.
#[tokio::test(start_paused = true)]
async fn size_trigger_sends_once_send_batch_size_points_are_pending() {
    let s = build(cfg(10, Duration::from_secs(3600))).await;
    s.p.consume(numbered("m", context(None), 0..6)).unwrap();
    assert!(s.delivered().is_empty());
    s.p.consume(numbered("m", context(None), 6..10)).unwrap();
    let got = s.delivered();
    assert_eq!(got.len(), 1);
    assert_eq!(points(&got), named("m", 0..10));
    assert_eq!(s.sent_batches("size"), 1.0);

    s.p.consume(numbered("m", context(None), 10..13)).unwrap();
    assert_eq!(s.delivered().len(), 1, "3 points stay pending");
}

// Guarantees: points below send_batch_size are sent when `timeout` has passed, not before.
#[tokio::test(start_paused = true)]
async fn timeout_trigger_sends_after_timeout() {
    let timeout = Duration::from_millis(200);
    let s = build(cfg(1000, timeout)).await;
    s.p.consume(numbered("m", context(None), 0..5)).unwrap();

    tokio::time::advance(timeout - Duration::from_millis(1)).await;
    settle().await;
    assert!(s.delivered().is_empty(), "sent before the timeout");

    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    assert_eq!(points(&s.delivered()), named("m", 0..5));
    assert_eq!(s.sent_batches("timeout"), 1.0);
    assert_eq!(s.sent_batches("size"), 0.0);
}

// Guarantees: batches with different contexts (tenant, or carried metadata) are never merged, and
// each context's points arrive complete and in order.
#[tokio::test(start_paused = true)]
async fn different_contexts_are_never_merged() {
    let s = build(cfg(1000, Duration::from_secs(3600))).await;
    let with_metadata = Context {
        tenant: Some(Arc::from("a")),
        metadata: vec![(Arc::from("x-scope-orgid"), Arc::from("a"))],
        ..Default::default()
    };
    s.p.consume(numbered("a", context(Some("a")), 0..3))
        .unwrap();
    s.p.consume(numbered("b", context(Some("b")), 0..4))
        .unwrap();
    s.p.consume(numbered("none", context(None), 0..1)).unwrap();
    s.p.consume(numbered("a_md", with_metadata.clone(), 0..2))
        .unwrap();
    s.p.consume(numbered("a", context(Some("a")), 3..5))
        .unwrap();
    s.p.consume(numbered("b", context(Some("b")), 4..6))
        .unwrap();

    within(s.p.shutdown(Instant::now() + Duration::from_secs(1))).await;
    let got = s.delivered();
    assert_eq!(got.len(), 4, "one batch per context");
    let expect = [
        (context(Some("a")), named("a", 0..5)),
        (context(Some("b")), named("b", 0..6)),
        (context(None), named("none", 0..1)),
        (with_metadata, named("a_md", 0..2)),
    ];
    for (ctx, pts) in expect {
        let mine: Vec<Batch> = got.iter().filter(|b| b.context == ctx).cloned().collect();
        assert_eq!(mine.len(), 1, "{ctx:?}");
        assert_eq!(points(&mine), pts, "{ctx:?}");
    }
}

// Guarantees: with send_batch_max_size, what is sent is split into batches of at most that many
// points, none lost, none duplicated, in order.
#[tokio::test(start_paused = true)]
async fn send_batch_max_size_splits_and_conserves_points() {
    let s = build(BatchConfig {
        send_batch_max_size: 4,
        ..cfg(10, Duration::from_secs(3600))
    })
    .await;
    s.p.consume(numbered("x", context(None), 0..7)).unwrap();
    s.p.consume(numbered("y", context(None), 7..9)).unwrap();
    s.p.consume(numbered("z", context(None), 9..25)).unwrap();
    let got = s.delivered();
    let sizes: Vec<usize> = got.iter().map(Batch::point_count).collect();
    assert_eq!(sizes, vec![4, 4, 4, 4, 4, 4, 1]);
    let mut expected = named("x", 0..7);
    expected.extend(named("y", 7..9));
    expected.extend(named("z", 9..25));
    assert_eq!(points(&got), expected);
    assert_eq!(s.sent_batches("size"), 7.0);

    // A single batch over the limit is split too.
    s.p.consume(numbered("w", context(None), 0..9)).unwrap();
    within(s.p.shutdown(Instant::now() + Duration::from_secs(1))).await;
    let got = s.delivered();
    let sizes: Vec<usize> = got[7..].iter().map(Batch::point_count).collect();
    assert_eq!(sizes, vec![4, 4, 1]);
    assert_eq!(points(&got[7..]), named("w", 0..9));
}

// Guarantees: when the next stage refuses, the points stay pending (consume still succeeds) and
// are delivered once it accepts again: nothing lost, nothing duplicated, order kept, even when it
// refused in the middle of a split batch.
#[tokio::test(start_paused = true)]
async fn refused_points_stay_pending_and_are_delivered_in_order() {
    let timeout = Duration::from_millis(200);
    let s = build(BatchConfig {
        send_batch_max_size: 4,
        ..cfg(10, timeout)
    })
    .await;

    // The first piece is taken, then the next stage refuses.
    s.next.accept(1);
    s.p.consume(numbered("m", context(None), 0..10)).unwrap();
    assert_eq!(points(&s.delivered()), named("m", 0..4));
    // Newer points queue up behind the refused ones; the size trigger keeps being refused.
    s.p.consume(numbered("m", context(None), 10..12)).unwrap();
    s.p.consume(numbered("m", context(None), 12..15)).unwrap();
    // A timeout tick while still refused changes nothing.
    tokio::time::advance(timeout).await;
    settle().await;
    assert_eq!(s.delivered().len(), 1);

    s.next.accept_all();
    eventually("the pending points", Duration::from_secs(5), || {
        s.next.capture.points() == 15
    })
    .await;
    let got = s.delivered();
    assert_eq!(points(&got), named("m", 0..15));
    assert!(got.iter().all(|b| b.point_count() <= 4));
    assert_eq!(s.dropped("shutdown"), 0.0);
}

// Guarantees: once max_pending_points of a tenant are pending (the next stage refusing), consume
// refuses that tenant's data with a retryable `Full` refusal while other tenants' data is still
// taken, and takes it again once the pending points have gone on.
#[tokio::test(start_paused = true)]
async fn full_processor_refuses_with_a_retryable_refusal() {
    let s = build(BatchConfig {
        max_pending_points: Some(10),
        ..cfg(10, Duration::from_millis(200))
    })
    .await;
    s.next.refuse();
    s.p.consume(numbered("m", context(Some("t")), 0..9))
        .unwrap();
    s.p.consume(numbered("m", context(Some("t")), 9..10))
        .unwrap();
    // 10 points of tenant t are pending: nothing more of t fits.
    let r =
        s.p.consume(numbered("m", context(Some("t")), 10..11))
            .expect_err("the processor is full for t");
    assert_eq!(r.kind, RefusalKind::Full);
    assert!(r.retryable());
    assert!(r.retry_after.is_some());
    assert!(r.message.contains("tenant \"t\""), "{}", r.message);
    // Another tenant is not held back by t.
    s.p.consume(numbered("m", context(None), 0..10)).unwrap();
    assert!(s.delivered().is_empty());

    s.next.accept_all();
    eventually("the pending points", Duration::from_secs(5), || {
        s.next.capture.points() == 20
    })
    .await;
    s.p.consume(numbered("m", context(Some("t")), 10..11))
        .expect("room again");
}

// Guarantees: shutdown passes on everything pending, for every context, before returning.
#[tokio::test(start_paused = true)]
async fn shutdown_flushes_everything_pending() {
    let s = build(cfg(1000, Duration::from_secs(3600))).await;
    s.p.consume(numbered("a", context(Some("a")), 0..5))
        .unwrap();
    s.p.consume(numbered("b", context(Some("b")), 0..3))
        .unwrap();
    within(s.p.shutdown(Instant::now() + Duration::from_secs(1))).await;
    assert_eq!(s.next.capture.points(), 8);
    assert_eq!(s.sent_batches("shutdown"), 2.0);
    assert_eq!(s.dropped("shutdown"), 0.0);
}

// Guarantees: shutdown keeps offering pending points while the next stage refuses, so that they
// are delivered if it accepts before the deadline.
#[tokio::test(start_paused = true)]
async fn shutdown_retries_until_the_next_stage_accepts() {
    let s = build(cfg(1000, Duration::from_secs(3600))).await;
    s.next.refuse();
    s.p.consume(numbered("m", context(None), 0..5)).unwrap();
    let next = s.next.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        next.accept_all();
    });
    let start = Instant::now();
    within(s.p.shutdown(start + Duration::from_secs(1))).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(points(&s.delivered()), named("m", 0..5));
    assert_eq!(s.dropped("shutdown"), 0.0);
}

// Guarantees: shutdown while the next stage keeps refusing gives up at the deadline (not before,
// not much after) and counts the pending points as dropped with reason shutdown.
#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_at_the_deadline_and_counts_the_drop() {
    let s = build(cfg(1000, Duration::from_secs(3600))).await;
    s.next.refuse();
    s.p.consume(numbered("a", context(Some("a")), 0..4))
        .unwrap();
    s.p.consume(numbered("b", context(Some("b")), 0..3))
        .unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_millis(500);
    within(s.p.shutdown(deadline)).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_millis(600), "gave up late: {took:?}");
    assert!(s.delivered().is_empty());
    assert_eq!(s.dropped("shutdown"), 7.0);
}

/// Fails the test if `fut` takes longer than 10s (tokio time) instead of hanging.
async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("timed out")
}
