//! Base-unit conversion of values: number points, histogram sums, bounds, min and max, summary sums
//! and quantiles, and exemplars. Exponential histograms are never converted (their bucket
//! boundaries are powers of a base and cannot be rescaled exactly); the rules withhold the
//! conversion for them. NaNs are left bit-exact (StaleNaN markers must survive).

use super::units::Scale;
use sluice_core::proto::otlp::metrics::v1::{
    Exemplar, NumberDataPoint, exemplar, metric::Data, number_data_point,
};

pub fn scale_data(data: &mut Data, s: Scale) {
    let f = |v: &mut f64| {
        if !v.is_nan() {
            *v = s.apply(*v);
        }
    };
    match data {
        Data::Gauge(g) => g.data_points.iter_mut().for_each(|p| number(p, s)),
        Data::Sum(x) => x.data_points.iter_mut().for_each(|p| number(p, s)),
        Data::Histogram(h) => {
            for p in &mut h.data_points {
                p.sum.iter_mut().for_each(f);
                p.min.iter_mut().for_each(f);
                p.max.iter_mut().for_each(f);
                p.explicit_bounds.iter_mut().for_each(f);
                p.exemplars.iter_mut().for_each(|e| exemplar(e, s));
            }
        }
        Data::Summary(x) => {
            for p in &mut x.data_points {
                f(&mut p.sum);
                p.quantile_values.iter_mut().for_each(|q| f(&mut q.value));
            }
        }
        Data::ExponentialHistogram(_) => {
            debug_assert!(false, "exponential histograms are never converted");
        }
    }
}

fn convert(v: f64, s: Scale) -> f64 {
    if v.is_nan() { v } else { s.apply(v) }
}

fn number(p: &mut NumberDataPoint, s: Scale) {
    p.value = match p.value {
        Some(number_data_point::Value::AsDouble(v)) => {
            Some(number_data_point::Value::AsDouble(convert(v, s)))
        }
        Some(number_data_point::Value::AsInt(i)) => {
            Some(number_data_point::Value::AsDouble(s.apply(i as f64)))
        }
        None => None,
    };
    p.exemplars.iter_mut().for_each(|e| exemplar(e, s));
}

fn exemplar(e: &mut Exemplar, s: Scale) {
    e.value = match e.value {
        Some(exemplar::Value::AsDouble(v)) => Some(exemplar::Value::AsDouble(convert(v, s))),
        Some(exemplar::Value::AsInt(i)) => Some(exemplar::Value::AsDouble(s.apply(i as f64))),
        None => None,
    };
}
