use super::*;
use crate::batch::{Batch, Context};
use crate::component::{Delivered, SendError};
use crate::proto::otlp::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

const EXPORTER: &str = "otlp/test";

/// A batch of `points` gauge points for `tenant`, tagged `tag` (in the metric name).
fn batch(tenant: &str, tag: &str, points: usize) -> Batch {
    let data_points = (0..points)
        .map(|i| NumberDataPoint {
            time_unix_nano: i as u64 + 1,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    Batch::new(
        Context {
            tenant: Some(tenant.into()),
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

/// An exporter that fails (retryably, with an optional hint) the batches of the tenants it is told
/// to, and records every attempt.
#[derive(Default)]
struct FakeExporter {
    /// Tenant -> the peer's Retry-After hint, while that tenant's backend is down.
    failing: Mutex<BTreeMap<String, Option<Duration>>>,
    /// Every attempt: tag, when, and whether it was delivered.
    attempts: Mutex<Vec<(String, Instant, bool)>>,
    /// Whether it encodes batches (into their tag) for the engine to send with `send_encoded`.
    encodes: bool,
    /// Batches encoded, and attempts made with `send`.
    encoded: Mutex<usize>,
    sent_as_batches: Mutex<usize>,
    /// Whether it prepares batches (into their tag) as the queue takes them, and how many it did.
    prepares: bool,
    prepared: Mutex<usize>,
}

impl FakeExporter {
    fn fail(&self, tenant: &str, hint: Option<Duration>) {
        self.failing.lock().insert(tenant.into(), hint);
    }

    fn recover(&self, tenant: &str) {
        self.failing.lock().remove(tenant);
    }

    fn delivered(&self) -> Vec<String> {
        let a = self.attempts.lock();
        a.iter().filter(|x| x.2).map(|x| x.0.clone()).collect()
    }

    fn attempts_of(&self, tag: &str) -> Vec<Instant> {
        let a = self.attempts.lock();
        a.iter().filter(|x| x.0 == tag).map(|x| x.1).collect()
    }

    /// One attempt at the batch tagged `tag` of `tenant`.
    fn attempt(&self, tenant: &str, tag: String) -> Result<Delivered, SendError> {
        let fail = self.failing.lock().get(tenant).copied();
        self.attempts
            .lock()
            .push((tag, Instant::now(), fail.is_none()));
        match fail {
            Some(hint) => Err(SendError::retryable("backend down", hint)),
            None => Ok(Delivered::default()),
        }
    }
}

fn tag_of(batch: &Batch) -> String {
    batch.resource_metrics[0].scope_metrics[0].metrics[0]
        .name
        .clone()
}

impl Exporter for FakeExporter {
    fn send<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<Delivered, SendError>> {
        *self.sent_as_batches.lock() += 1;
        Box::pin(async move { self.attempt(batch.context.tenant_label(), tag_of(batch)) })
    }

    fn encode(&self, batch: &Batch) -> Option<crate::component::EncodedBatch> {
        self.encodes.then(|| {
            *self.encoded.lock() += 1;
            crate::component::EncodedBatch {
                body: tag_of(batch).into(),
                tenant: batch.context.tenant_label().into(),
            }
        })
    }

    fn send_encoded<'a>(
        &'a self,
        encoded: &'a crate::component::EncodedBatch,
    ) -> BoxFuture<'a, Result<Delivered, SendError>> {
        let tag = String::from_utf8(encoded.body.to_vec()).expect("a tag");
        Box::pin(async move { self.attempt(&encoded.tenant, tag) })
    }

    fn prepare(&self, batch: &Batch) -> Option<(crate::component::Prepared, usize)> {
        self.prepares.then(|| {
            *self.prepared.lock() += 1;
            let tag = tag_of(batch);
            let bytes = tag.len();
            (Box::new(tag) as crate::component::Prepared, bytes)
        })
    }

    fn prepares(&self) -> bool {
        self.prepares
    }

    fn send_prepared<'a>(
        &'a self,
        context: &'a Context,
        prepared: &'a mut Option<crate::component::Prepared>,
    ) -> BoxFuture<'a, Result<Delivered, SendError>> {
        Box::pin(async move {
            let tag = prepared
                .as_ref()
                .and_then(|p| p.downcast_ref::<String>())
                .expect("the prepared tag, at every attempt")
                .clone();
            let result = self.attempt(context.tenant_label(), tag);
            if result.is_ok() {
                prepared.take();
            }
            result
        })
    }
}

fn spawn(
    exporter: Arc<FakeExporter>,
    consumers: usize,
    max_age: Option<Duration>,
) -> (ExporterRuntime, Arc<Telemetry>) {
    let telemetry = Arc::new(Telemetry::new());
    let settings = SendingSettings {
        queue: QueueSettings {
            queue_size: Some(1000),
            num_consumers: consumers,
            ..Default::default()
        },
        retry: RetrySettings {
            enabled: true,
            initial_interval: crate::config::types::Duration::from_millis(10),
            max_interval: crate::config::types::Duration::from_millis(100),
        },
        max_age,
    };
    let rt = ExporterRuntime::spawn(
        ComponentId::parse(EXPORTER).unwrap(),
        exporter,
        settings,
        telemetry.clone(),
    )
    .expect("a memory queue starts");
    (rt, telemetry)
}

/// Waits until `f` holds (for at most about 20 s).
async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..4_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

// Guarantees: with a single sender, a tenant whose backend fails does not keep that sender: the
// other tenant's batches are delivered meanwhile, and once the backend recovers the failing
// tenant's batches are delivered in their order.
#[tokio::test]
async fn a_failing_tenant_does_not_hold_the_only_sender() {
    let exporter = Arc::new(FakeExporter::default());
    exporter.fail("a", None);
    let (rt, t) = spawn(exporter.clone(), 1, None);
    for i in 1..=3 {
        rt.queue.push(batch("a", &format!("a{i}"), 2));
    }
    for i in 1..=3 {
        rt.queue.push(batch("b", &format!("b{i}"), 3));
    }
    until("b's batches delivered", || exporter.delivered().len() == 3).await;
    assert_eq!(exporter.delivered(), ["b1", "b2", "b3"]);
    assert_eq!(rt.queue.tenant_points("a"), 6);
    assert_eq!(rt.queue.tenant_points("b"), 0);
    // Only a1 was tried while a is failing.
    until("a1 retried", || exporter.attempts_of("a1").len() >= 3).await;
    assert!(exporter.attempts_of("a2").is_empty());
    exporter.recover("a");
    until("a's batches delivered", || exporter.delivered().len() == 6).await;
    assert_eq!(&exporter.delivered()[3..], ["a1", "a2", "a3"]);
    assert_eq!(rt.queue.len_points(), 0);
    assert_eq!(
        t.value(
            "sluice_exporter_sent_points_total",
            &[("exporter", EXPORTER), ("tenant", "a")]
        ),
        6.0
    );
    assert!(t.value("sluice_exporter_retries_total", &[("exporter", EXPORTER)]) >= 2.0);
    assert_eq!(t.value("sluice_exporter_dropped_points_total", &[]), 0.0);
    rt.shutdown(Instant::now() + Duration::from_secs(1)).await;
}

/// Queues a1 (tenant a, whose backend fails until a1 was tried three times) and b1, calling
/// `queued` once both are queued; checks that both are delivered, b1 first, none sent with `send`,
/// and counted as batches are: a1's points sent once and failed at each attempt before.
async fn a1_delivered_after_retries(exporter: &Arc<FakeExporter>, queued: impl FnOnce()) {
    exporter.fail("a", None);
    let (rt, t) = spawn(exporter.clone(), 1, None);
    rt.queue.push(batch("a", "a1", 2));
    rt.queue.push(batch("b", "b1", 3));
    queued();
    until("a1 retried", || exporter.attempts_of("a1").len() >= 3).await;
    exporter.recover("a");
    until("both delivered", || exporter.delivered().len() == 2).await;
    assert_eq!(exporter.delivered(), ["b1", "a1"]);
    assert_eq!(*exporter.sent_as_batches.lock(), 0);
    assert_eq!(rt.queue.len_points(), 0);
    assert_eq!(
        t.value(
            "sluice_exporter_sent_points_total",
            &[("exporter", EXPORTER), ("tenant", "a")]
        ),
        2.0
    );
    assert_eq!(
        t.value("sluice_exporter_failed_points_total", &[]),
        2.0 * (exporter.attempts_of("a1").len() - 1) as f64
    );
    rt.shutdown(Instant::now() + Duration::from_secs(1)).await;
}

// Guarantees: an exporter that encodes its batches has each encoded once, at its first attempt:
// every attempt, retries included, sends that encoding (the engine keeps no batch for it), and the
// points are counted as for a batch.
#[tokio::test]
async fn an_encoded_batch_is_encoded_once_and_retried_as_encoded() {
    let exporter = Arc::new(FakeExporter {
        encodes: true,
        ..Default::default()
    });
    a1_delivered_after_retries(&exporter, || ()).await;
    assert_eq!(
        *exporter.encoded.lock(),
        2,
        "a1 encoded once for all attempts"
    );
}

// Guarantees: an exporter that prepares its batches has each prepared once, as the memory queue
// takes it: every attempt, retries included, sends what was prepared with the batch's context (its
// tenant), and the points are counted as for a batch.
#[tokio::test]
async fn a_prepared_batch_is_prepared_once_as_queued_and_retried_as_prepared() {
    let exporter = Arc::new(FakeExporter {
        prepares: true,
        encodes: true,
        ..Default::default()
    });
    a1_delivered_after_retries(&exporter, || {
        assert_eq!(*exporter.prepared.lock(), 2, "prepared as they were queued");
    })
    .await;
    assert_eq!(
        *exporter.prepared.lock(),
        2,
        "a1 prepared once for all attempts"
    );
    assert_eq!(
        *exporter.encoded.lock(),
        0,
        "a prepared batch is not encoded"
    );
}

// Guarantees: the next attempt waits at least as long as the peer asked, while other tenants are
// served.
#[tokio::test]
async fn a_retry_waits_for_the_peers_hint_while_others_are_served() {
    let exporter = Arc::new(FakeExporter::default());
    exporter.fail("a", Some(Duration::from_millis(300)));
    let (rt, _t) = spawn(exporter.clone(), 1, None);
    rt.queue.push(batch("a", "a1", 1));
    until("a1 tried", || !exporter.attempts_of("a1").is_empty()).await;
    exporter.recover("a");
    rt.queue.push(batch("b", "b1", 1));
    until("both delivered", || exporter.delivered().len() == 2).await;
    assert_eq!(exporter.delivered(), ["b1", "a1"]);
    let a1 = exporter.attempts_of("a1");
    assert!(
        a1[1] - a1[0] >= Duration::from_millis(300),
        "{:?}",
        a1[1] - a1[0]
    );
    assert!(exporter.attempts_of("b1")[0] < a1[1]);
    rt.shutdown(Instant::now() + Duration::from_secs(1)).await;
}

// Guarantees: a batch whose next wait would take it past `max_age` is dropped and counted.
#[tokio::test]
async fn max_age_still_drops_a_batch_that_cannot_be_delivered_in_time() {
    let exporter = Arc::new(FakeExporter::default());
    exporter.fail("a", Some(Duration::from_secs(60)));
    let (rt, t) = spawn(exporter.clone(), 2, Some(Duration::from_secs(5)));
    rt.queue.push(batch("a", "a1", 4));
    until("a1 dropped", || rt.queue.len_points() == 0).await;
    assert_eq!(
        t.value(
            "sluice_exporter_dropped_points_total",
            &[("tenant", "a"), ("reason", "max_age")]
        ),
        4.0
    );
    rt.shutdown(Instant::now() + Duration::from_secs(1)).await;
}

// Guarantees: at the shutdown deadline, batches waiting for their retry are dropped and counted as
// `shutdown`, and the senders stop without waiting out the backoff.
#[tokio::test]
async fn shutdown_deadline_drops_and_counts_batches_waiting_for_a_retry() {
    let exporter = Arc::new(FakeExporter::default());
    exporter.fail("a", Some(Duration::from_secs(3600)));
    let (rt, t) = spawn(exporter.clone(), 2, None);
    rt.queue.push(batch("a", "a1", 4));
    rt.queue.push(batch("a", "a2", 5));
    until("a1 tried", || !exporter.attempts_of("a1").is_empty()).await;
    let queue = rt.queue.clone();
    let start = Instant::now();
    rt.shutdown(start + Duration::from_millis(200)).await;
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "waited out the backoff"
    );
    assert_eq!(
        t.value(
            "sluice_exporter_dropped_points_total",
            &[("tenant", "a"), ("reason", "shutdown")]
        ),
        9.0
    );
    assert_eq!(queue.len_points(), 0);
}

/// A fan-out to one memory queue of `capacity` points per tenant, and its telemetry.
fn fanout_of_one_queue(capacity: usize) -> (Fanout, Arc<Telemetry>) {
    let telemetry = Arc::new(Telemetry::new());
    let queue = Queue::new(
        EXPORTER.into(),
        capacity,
        crate::queue::FullPolicy::Block,
        telemetry.clone(),
    );
    let fanout = Fanout {
        queues: vec![Arc::new(queue)],
    };
    (fanout, telemetry)
}

// The fan-out hands a batch refused for room back whole (the batch processor keeps it without
// copying it first), and takes it once there is room.
#[test]
fn offer_hands_a_refused_batch_back_whole() {
    use crate::component::Consumer;
    let (fanout, _) = fanout_of_one_queue(10);
    fanout.offer(batch("a", "first", 10)).expect("room for 10");
    let returned = fanout
        .offer(batch("a", "second", 3))
        .expect_err("the queue is full");
    assert_eq!(returned.batch.point_count(), 3);
    assert_eq!(returned.batch.context.tenant.as_deref(), Some("a"));
    assert!(
        returned.refusal.to_string().contains("is full"),
        "{}",
        returned.refusal
    );
}

// A receiver asks for room for a request as large as the tenant's last one before reading the
// next: a queue with room left for part of such a request refuses it unread, instead of taking it
// to be decoded and processed, then refused whole. Another tenant's sizes do not count.
#[test]
fn a_receiver_asks_for_room_for_a_request_as_large_as_the_tenants_last() {
    let (fanout, telemetry) = fanout_of_one_queue(3000);
    let ingress =
        crate::ingress::Ingress::new("otlp".into(), Arc::new(fanout), telemetry.clone(), &[]);
    let context = batch("a", "first", 0).context;
    ingress.ready(&context).expect("an empty queue has room");
    assert_eq!(ingress.deliver(batch("a", "first", 2000)), Ok(2000));
    // Room for 1,000 more points: not for another request of 2,000.
    let refusal = ingress
        .ready(&context)
        .expect_err("no room for 2,000 points");
    assert!(refusal.to_string().contains("is full"), "{refusal}");
    assert_eq!(
        telemetry.value(
            "sluice_receiver_refused_requests_total",
            &[("receiver", "otlp"), ("reason", "queue_full")]
        ),
        1.0
    );
    // Tenant b sends requests of 100 points and has room for one more; a's last request (500
    // points) does not make b's next one wait.
    for _ in 0..29 {
        assert_eq!(ingress.deliver(batch("b", "small", 100)), Ok(100));
    }
    assert_eq!(ingress.deliver(batch("a", "second", 500)), Ok(500));
    ingress
        .ready(&batch("b", "small", 0).context)
        .expect("room for b's 100 more");
    ingress.ready(&context).expect("room for a's 500 more");
}
