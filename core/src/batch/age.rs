//! An exporter's `sample_age_limit`: points older than the limit when their batch is about to be
//! sent are dropped and counted (`sluice_exporter_dropped_points_total{reason="too_old"}`), as
//! Prometheus' `sample_age_limit` does, so that a backend coming back after a long outage gets
//! recent data rather than a backlog it would refuse or that nobody reads any more.
//!
//! A point's age is its `time_unix_nano`; a point without one (0) is kept, its age is not known.

use super::{Batch, metric_points};
use crate::component::{Delivered, SendError};
use crate::proto::otlp::metrics::v1::metric::Data;
use crate::telemetry::{ExporterLabels, Telemetry};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Keeps the points of any kind for which `keep(time_unix_nano)` holds.
fn retain_points(data: &mut Data, keep: impl Fn(u64) -> bool) {
    match data {
        Data::Gauge(g) => g.data_points.retain(|p| keep(p.time_unix_nano)),
        Data::Sum(s) => s.data_points.retain(|p| keep(p.time_unix_nano)),
        Data::Histogram(h) => h.data_points.retain(|p| keep(p.time_unix_nano)),
        Data::ExponentialHistogram(h) => h.data_points.retain(|p| keep(p.time_unix_nano)),
        Data::Summary(s) => s.data_points.retain(|p| keep(p.time_unix_nano)),
    }
}

/// Points of any kind for which `old(time_unix_nano)` holds.
fn count_points(data: &Data, old: impl Fn(u64) -> bool) -> usize {
    match data {
        Data::Gauge(g) => g
            .data_points
            .iter()
            .filter(|p| old(p.time_unix_nano))
            .count(),
        Data::Sum(s) => s
            .data_points
            .iter()
            .filter(|p| old(p.time_unix_nano))
            .count(),
        Data::Histogram(h) => h
            .data_points
            .iter()
            .filter(|p| old(p.time_unix_nano))
            .count(),
        Data::ExponentialHistogram(h) => h
            .data_points
            .iter()
            .filter(|p| old(p.time_unix_nano))
            .count(),
        Data::Summary(s) => s
            .data_points
            .iter()
            .filter(|p| old(p.time_unix_nano))
            .count(),
    }
}

/// Whether a point with this timestamp is older than `cutoff` (both in ns since the epoch).
fn is_older(time_unix_nano: u64, cutoff: u64) -> bool {
    time_unix_nano != 0 && time_unix_nano < cutoff
}

impl Batch {
    /// Points with a timestamp before `cutoff_unix_nano` (points without a timestamp are not).
    pub fn points_older_than(&self, cutoff_unix_nano: u64) -> u64 {
        self.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter_map(|m| m.data.as_ref())
            .map(|d| count_points(d, |t| is_older(t, cutoff_unix_nano)) as u64)
            .sum()
    }

    /// Removes the points with a timestamp before `cutoff_unix_nano` (points without a timestamp
    /// stay), then the metrics that lost all their points and the scopes and resources left with
    /// no metrics; returns how many points were removed.
    pub fn drop_points_older_than(&mut self, cutoff_unix_nano: u64) -> u64 {
        let mut dropped = 0;
        for rm in &mut self.resource_metrics {
            for sm in &mut rm.scope_metrics {
                sm.metrics.retain_mut(|m| {
                    let before = metric_points(m);
                    let Some(data) = m.data.as_mut().filter(|_| before > 0) else {
                        return true;
                    };
                    retain_points(data, |t| !is_older(t, cutoff_unix_nano));
                    let after = metric_points(m);
                    dropped += (before - after) as u64;
                    after > 0
                });
            }
            rm.scope_metrics.retain(|s| !s.metrics.is_empty());
        }
        self.resource_metrics
            .retain(|r| !r.scope_metrics.is_empty());
        dropped
    }
}

/// The time `limit` ago, in ns since the epoch: points stamped before it are too old.
pub fn cutoff_unix_nano(limit: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(limit).as_nanos() as u64
}

/// An exporter's `sample_age_limit`, with what it needs to count its drops.
pub struct AgeLimit {
    limit: Duration,
    exporter: String,
    telemetry: Arc<Telemetry>,
}

/// A batch without its points that were too old, and how many those were.
pub struct Fresh<'a> {
    pub batch: Cow<'a, Batch>,
    pub too_old: u64,
}

impl AgeLimit {
    /// `None` without a limit (the default) or with a limit of zero (as in Prometheus).
    pub fn new(limit: Option<Duration>, exporter: &str, telemetry: Arc<Telemetry>) -> Option<Self> {
        limit.filter(|l| !l.is_zero()).map(|limit| AgeLimit {
            limit,
            exporter: exporter.to_string(),
            telemetry,
        })
    }

    /// The cutoff now, in ns since the epoch.
    fn cutoff(&self) -> u64 {
        cutoff_unix_nano(self.limit)
    }

    /// `batch` without its points older than the limit (borrowed as it is when none is; copied
    /// only when some are). Nothing is counted yet: see [`AgeLimit::count`] and [`AgeLimit::settle`].
    pub fn filter<'a>(&self, batch: &'a Batch) -> Fresh<'a> {
        let cutoff = self.cutoff();
        if batch.points_older_than(cutoff) == 0 {
            return Fresh {
                batch: Cow::Borrowed(batch),
                too_old: 0,
            };
        }
        let mut fresh = batch.clone();
        let too_old = fresh.drop_points_older_than(cutoff);
        Fresh {
            batch: Cow::Owned(fresh),
            too_old,
        }
    }

    /// `batch` without its points older than `limit` (if any), those counted as dropped: for an
    /// exporter that takes the batch into a sending stage of its own ([`Delivered::handed_off`]),
    /// where taking it is the final outcome.
    pub fn apply<'a>(limit: Option<&Self>, batch: &'a Batch) -> Cow<'a, Batch> {
        let Some(limit) = limit else {
            return Cow::Borrowed(batch);
        };
        let fresh = limit.filter(batch);
        limit.count(&fresh);
        fresh.batch
    }

    /// Counts the too old points of `fresh` as dropped (`too_old`), for an exporter that takes
    /// the batch into a sending stage of its own ([`Delivered::handed_off`]).
    pub fn count(&self, fresh: &Fresh<'_>) {
        if fresh.too_old > 0 {
            tracing::debug!(exporter = %self.exporter, points = fresh.too_old, limit = ?self.limit, "points older than sample_age_limit dropped");
            self.telemetry.exporter_dropped(
                &self.exporter,
                fresh.batch.context.tenant_label(),
                "too_old",
                fresh.too_old,
            );
        }
    }

    /// The outcome of sending `fresh.batch` as the sending engine should see it. When points were
    /// dropped and the rest was delivered (or nothing was left to send: pass `Ok(Delivered)`),
    /// everything is counted here — too old points as dropped, the rest as sent, points the peer
    /// rejected as dropped `rejected` — and the engine is told the batch was handed off, so that
    /// it does not count the whole batch as sent. A failure is passed on as it is: a retried
    /// batch is filtered (and its too old points counted) again at its final attempt, and a
    /// permanent failure counts the whole batch, as without a limit.
    pub fn settle(
        &self,
        fresh: &Fresh<'_>,
        result: Result<Delivered, SendError>,
    ) -> Result<Delivered, SendError> {
        let delivered = match result {
            Ok(d) if fresh.too_old > 0 && !d.handed_off => d,
            other => return other,
        };
        self.count(fresh);
        let tenant = fresh.batch.context.tenant_label();
        let sent = (fresh.batch.point_count() as u64).saturating_sub(delivered.rejected_points);
        self.telemetry
            .exporter_sent
            .get_or_create(&ExporterLabels {
                exporter: self.exporter.clone(),
                tenant: tenant.to_string(),
            })
            .inc_by(sent);
        if delivered.rejected_points > 0 {
            tracing::warn!(exporter = %self.exporter, rejected = delivered.rejected_points, message = %delivered.message, "peer rejected some points");
            self.telemetry.exporter_dropped(
                &self.exporter,
                tenant,
                "rejected",
                delivered.rejected_points,
            );
        }
        Ok(Delivered {
            handed_off: true,
            ..delivered
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Context;
    use crate::proto::otlp::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
        Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    };

    /// A metric of each kind, with points at the timestamps `times`.
    fn metrics(times: &[u64]) -> Vec<Metric> {
        let number = || -> Vec<NumberDataPoint> {
            times
                .iter()
                .map(|&t| NumberDataPoint {
                    time_unix_nano: t,
                    ..Default::default()
                })
                .collect()
        };
        let data = vec![
            Data::Gauge(Gauge {
                data_points: number(),
            }),
            Data::Sum(Sum {
                data_points: number(),
                ..Default::default()
            }),
            Data::Histogram(Histogram {
                data_points: times
                    .iter()
                    .map(|&t| HistogramDataPoint {
                        time_unix_nano: t,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: times
                    .iter()
                    .map(|&t| ExponentialHistogramDataPoint {
                        time_unix_nano: t,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            Data::Summary(Summary {
                data_points: times
                    .iter()
                    .map(|&t| SummaryDataPoint {
                        time_unix_nano: t,
                        ..Default::default()
                    })
                    .collect(),
            }),
        ];
        data.into_iter()
            .enumerate()
            .map(|(i, d)| Metric {
                name: format!("m{i}"),
                data: Some(d),
                ..Default::default()
            })
            .collect()
    }

    fn batch(resources: Vec<Vec<Vec<Metric>>>) -> Batch {
        Batch::new(
            Context {
                tenant: Some("acme".into()),
                ..Default::default()
            },
            resources
                .into_iter()
                .map(|scopes| ResourceMetrics {
                    scope_metrics: scopes
                        .into_iter()
                        .map(|metrics| ScopeMetrics {
                            metrics,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        )
    }

    #[test]
    fn old_points_of_every_kind_are_dropped_and_the_rest_kept() {
        // Per kind: two old points, one at the cutoff (kept), one newer, one without a timestamp.
        let mut b = batch(vec![vec![metrics(&[10, 99, 100, 150, 0])]]);
        assert_eq!(b.point_count(), 25);
        assert_eq!(b.points_older_than(100), 10);
        assert_eq!(b.drop_points_older_than(100), 10);
        assert_eq!(b.point_count(), 15);
        assert_eq!(b.points_older_than(100), 0);
        for m in &b.resource_metrics[0].scope_metrics[0].metrics {
            assert_eq!(metric_points(m), 3, "{m:?}");
        }
        assert_eq!(b.drop_points_older_than(100), 0, "nothing left to drop");
    }

    #[test]
    fn metrics_scopes_and_resources_left_empty_are_removed() {
        let mut b = batch(vec![
            vec![metrics(&[1, 2])],                      // all old: the resource goes
            vec![metrics(&[1]), metrics(&[500])],        // the first scope goes
            vec![vec![Metric::default()], metrics(&[])], // no points: stays as it was
        ]);
        assert_eq!(b.drop_points_older_than(100), 15);
        assert_eq!(b.resource_metrics.len(), 2);
        assert_eq!(b.resource_metrics[0].scope_metrics.len(), 1);
        assert_eq!(b.resource_metrics[0].scope_metrics[0].metrics.len(), 5);
        assert_eq!(b.resource_metrics[1].scope_metrics.len(), 2);
        assert_eq!(b.point_count(), 5);
        let mut old = batch(vec![vec![metrics(&[1])]]);
        assert_eq!(old.drop_points_older_than(100), 5);
        assert!(old.is_empty() && old.resource_metrics.is_empty());
    }

    fn now_nanos() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }

    #[test]
    fn filter_borrows_a_fresh_batch_and_copies_an_aged_one() {
        let t = Arc::new(Telemetry::new());
        let limit = AgeLimit::new(Some(Duration::from_secs(3600)), "otlp", t.clone()).unwrap();
        let now = now_nanos();
        let fresh = batch(vec![vec![metrics(&[now])]]);
        let f = limit.filter(&fresh);
        assert!(matches!(f.batch, Cow::Borrowed(_)));
        assert_eq!(f.too_old, 0);
        let two_hours = 2 * 3600 * 1_000_000_000;
        let aged = batch(vec![vec![metrics(&[now - two_hours, now])]]);
        let f = limit.filter(&aged);
        assert_eq!((f.too_old, f.batch.point_count()), (5, 5));
        assert_eq!(aged.point_count(), 10, "the original is left as it was");
        assert!(AgeLimit::new(None, "otlp", t).is_none());
    }

    #[test]
    fn settle_counts_drops_once_and_only_for_a_final_outcome() {
        let t = Arc::new(Telemetry::new());
        let limit = AgeLimit::new(Some(Duration::from_secs(60)), "otlp", t.clone()).unwrap();
        let now = now_nanos();
        let aged = batch(vec![vec![metrics(&[1_000, now])]]);
        let dropped = |reason| {
            t.value(
                "sluice_exporter_dropped_points_total",
                &[("exporter", "otlp"), ("tenant", "acme"), ("reason", reason)],
            )
        };
        let sent = || t.value("sluice_exporter_sent_points_total", &[("exporter", "otlp")]);

        // A retryable failure: nothing counted, the engine retries the whole batch.
        let f = limit.filter(&aged);
        let failure = SendError::retryable("down", None);
        assert_eq!(limit.settle(&f, Err(failure.clone())), Err(failure));
        assert_eq!((dropped("too_old"), sent()), (0.0, 0.0));

        // Delivered, the peer rejecting one point: too old, sent and rejected counted here.
        let d = limit
            .settle(
                &f,
                Ok(Delivered {
                    rejected_points: 1,
                    ..Default::default()
                }),
            )
            .unwrap();
        assert!(d.handed_off, "the engine must not count the batch again");
        assert_eq!(
            (dropped("too_old"), dropped("rejected"), sent()),
            (5.0, 1.0, 4.0)
        );

        // Nothing too old: the outcome is the engine's to count.
        let fresh = batch(vec![vec![metrics(&[now])]]);
        let f = limit.filter(&fresh);
        assert_eq!(
            limit.settle(&f, Ok(Delivered::default())),
            Ok(Delivered::default())
        );
        assert_eq!(sent(), 4.0);

        // `count` is for exporters that take the batch over themselves.
        limit.count(&limit.filter(&aged));
        assert_eq!(dropped("too_old"), 10.0);
    }
}
