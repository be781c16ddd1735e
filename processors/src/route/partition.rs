//! Splits a batch's metrics into parts by target, per resource or per data point, keeping the order
//! of resources, scopes, metrics and points within each part.

use sluice_core::proto::otlp::common::v1::KeyValue;
use sluice_core::proto::otlp::metrics::v1::metric::Data;
use sluice_core::proto::otlp::metrics::v1::{
    ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum, Summary,
};

/// Where one resource's data goes.
pub enum Choice<C> {
    /// All of it to this target.
    Whole(usize),
    /// Point by point, as `by_point` decides from this state and each point's attributes.
    PerPoint(C),
}

/// Splits `resources` into `targets` parts (the part of target `t` is at index `t`; a part nothing
/// went to is empty). `by_resource` decides per resource; for `Choice::PerPoint` each data point
/// goes where `by_point` says (a target below `targets`). A resource, scope or metric split across
/// targets is copied (without its points) into each; points are moved, never copied.
pub fn partition<C>(
    resources: Vec<ResourceMetrics>,
    targets: usize,
    mut by_resource: impl FnMut(&ResourceMetrics) -> Choice<C>,
    mut by_point: impl FnMut(&C, &[KeyValue]) -> usize,
) -> Vec<Vec<ResourceMetrics>> {
    let mut parts: Vec<Vec<ResourceMetrics>> = (0..targets).map(|_| Vec::new()).collect();
    let mut choices = Vec::new();
    for rm in resources {
        match by_resource(&rm) {
            Choice::Whole(t) => parts[t].push(rm),
            Choice::PerPoint(state) => {
                let mut decide = |attrs: &[KeyValue]| by_point(&state, attrs);
                split_resource(rm, targets, &mut decide, &mut choices, &mut parts);
            }
        }
    }
    parts
}

fn split_resource(
    rm: ResourceMetrics,
    targets: usize,
    decide: &mut impl FnMut(&[KeyValue]) -> usize,
    choices: &mut Vec<usize>,
    parts: &mut [Vec<ResourceMetrics>],
) {
    let ResourceMetrics {
        resource,
        scope_metrics,
        schema_url,
    } = rm;
    let mut outs: Vec<Option<ResourceMetrics>> = (0..targets).map(|_| None).collect();
    for sm in scope_metrics {
        let ScopeMetrics {
            scope,
            metrics,
            schema_url: scope_url,
        } = sm;
        let mut scopes: Vec<Option<ScopeMetrics>> = (0..targets).map(|_| None).collect();
        for m in metrics {
            for (t, m) in split_metric(m, targets, decide, choices) {
                scopes[t]
                    .get_or_insert_with(|| ScopeMetrics {
                        scope: scope.clone(),
                        metrics: Vec::new(),
                        schema_url: scope_url.clone(),
                    })
                    .metrics
                    .push(m);
            }
        }
        for (t, s) in scopes.into_iter().enumerate() {
            if let Some(s) = s {
                outs[t]
                    .get_or_insert_with(|| ResourceMetrics {
                        resource: resource.clone(),
                        scope_metrics: Vec::new(),
                        schema_url: schema_url.clone(),
                    })
                    .scope_metrics
                    .push(s);
            }
        }
    }
    for (t, r) in outs.into_iter().enumerate() {
        if let Some(r) = r {
            parts[t].push(r);
        }
    }
}

/// A metric's points by target: the metric itself when they all go to one target, else copies
/// of it, each with its share of the points. A metric without points goes nowhere.
fn split_metric(
    mut m: Metric,
    targets: usize,
    decide: &mut impl FnMut(&[KeyValue]) -> usize,
    choices: &mut Vec<usize>,
) -> Vec<(usize, Metric)> {
    choices.clear();
    macro_rules! decide_all {
        ($points:expr) => {
            choices.extend($points.iter().map(|p| decide(&p.attributes)))
        };
    }
    match &m.data {
        Some(Data::Gauge(g)) => decide_all!(g.data_points),
        Some(Data::Sum(s)) => decide_all!(s.data_points),
        Some(Data::Histogram(h)) => decide_all!(h.data_points),
        Some(Data::ExponentialHistogram(h)) => decide_all!(h.data_points),
        Some(Data::Summary(s)) => decide_all!(s.data_points),
        None => {}
    }
    let Some(&first) = choices.first() else {
        return Vec::new();
    };
    if choices.iter().all(|&t| t == first) {
        return vec![(first, m)];
    }
    let datas: Vec<(usize, Data)> = match m.data.take() {
        Some(Data::Gauge(g)) => spread(g.data_points, choices, targets)
            .map(|(t, data_points)| (t, Data::Gauge(Gauge { data_points })))
            .collect(),
        Some(Data::Sum(s)) => spread(s.data_points, choices, targets)
            .map(|(t, data_points)| {
                let sum = Sum {
                    data_points,
                    aggregation_temporality: s.aggregation_temporality,
                    is_monotonic: s.is_monotonic,
                };
                (t, Data::Sum(sum))
            })
            .collect(),
        Some(Data::Histogram(h)) => spread(h.data_points, choices, targets)
            .map(|(t, data_points)| {
                let h = Histogram {
                    data_points,
                    aggregation_temporality: h.aggregation_temporality,
                };
                (t, Data::Histogram(h))
            })
            .collect(),
        Some(Data::ExponentialHistogram(h)) => spread(h.data_points, choices, targets)
            .map(|(t, data_points)| {
                let h = ExponentialHistogram {
                    data_points,
                    aggregation_temporality: h.aggregation_temporality,
                };
                (t, Data::ExponentialHistogram(h))
            })
            .collect(),
        Some(Data::Summary(s)) => spread(s.data_points, choices, targets)
            .map(|(t, data_points)| (t, Data::Summary(Summary { data_points })))
            .collect(),
        None => Vec::new(),
    };
    datas
        .into_iter()
        .map(|(t, data)| {
            let copy = Metric {
                name: m.name.clone(),
                description: m.description.clone(),
                unit: m.unit.clone(),
                data: Some(data),
                metadata: m.metadata.clone(),
            };
            (t, copy)
        })
        .collect()
}

/// Moves each point to the list of its target; yields the non-empty lists with their target.
fn spread<P>(
    points: Vec<P>,
    choices: &[usize],
    targets: usize,
) -> impl Iterator<Item = (usize, Vec<P>)> {
    let mut lists: Vec<Vec<P>> = (0..targets).map(|_| Vec::new()).collect();
    for (p, &t) in points.into_iter().zip(choices) {
        lists[t].push(p);
    }
    lists.into_iter().enumerate().filter(|(_, l)| !l.is_empty())
}
