//! Evaluation metrics. Each is a plain function whose doc comment names the
//! definition it follows. Everything is computed from a [`Mapping`] (fixed
//! voxel → moving world point), so any tool's result can be scored.

pub mod ic;
pub mod jacobian;
pub mod lesions;
pub mod mapping;
pub mod overlap;
pub mod protocol;
pub mod similarity;
pub mod tre;

pub use mapping::{FieldKind, Mapping};

use serde_json::{Value, json};

/// Summary of a list of non-negative errors (mm or other units).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    /// Population standard deviation (NumPy's default, ddof = 0).
    pub std: f64,
    pub p95: f64,
    pub max: f64,
}

impl Stats {
    /// `None` for an empty list. Median and p95 follow NumPy (linear interpolation).
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Stats {
            n,
            mean,
            median: percentile_sorted(&sorted, 50.0),
            std: var.sqrt(),
            p95: percentile_sorted(&sorted, 95.0),
            max: sorted[n - 1],
        })
    }

    pub fn to_json(&self) -> Value {
        json!({ "n": self.n, "mean": self.mean, "median": self.median, "std": self.std, "p95": self.p95, "max": self.max })
    }
}

/// NumPy-style percentile (linear) of sorted values.
pub fn percentile_sorted(sorted: &[f64], pct: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = pct.clamp(0.0, 100.0) / 100.0 * (sorted.len() - 1) as f64;
    let k = pos.floor() as usize;
    let f = pos - k as f64;
    if k + 1 < sorted.len() {
        sorted[k] + f * (sorted[k + 1] - sorted[k])
    } else {
        sorted[k]
    }
}

/// JSON for an optional value, `null` when missing or not finite.
pub fn opt(v: Option<f64>) -> Value {
    match v {
        Some(x) if x.is_finite() => json!(x),
        _ => Value::Null,
    }
}
