//! Target registration error on paired landmarks.
//!
//! A fixed landmark x maps to C(x) in moving space (trilinear sampling of the
//! mapped-coordinate image); its error is the Euclidean distance in mm to
//! its moving partner. "Before" is the same with C = identity. BraTS-Reg
//! (Baheti et al., 2021) scores a pair by the median of these errors and by
//! robustness: the fraction of landmarks whose error decreased (by more
//! than [`IMPROVEMENT_MM`], so float rounding of an unchanged point does not
//! count as progress).

use serde_json::{Value, json};

use super::{Mapping, Stats, opt};
use crate::landmarks::{LandmarkSet, Pairing, pair_by_id};
use crate::volume::Grid;

/// Smallest decrease of a landmark's error that counts towards robustness.
pub const IMPROVEMENT_MM: f64 = 1e-4;

/// Why a landmark was left out of the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Used,
    /// The fixed point lies outside the fixed grid: the field says nothing there.
    OutsideFixed,
    /// The moving point lies outside the moving grid (less than the margin inside).
    OutsideMoving,
    /// Excluded by the caller's rule (e.g. inside the resection cavity).
    Excluded,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Used => "used",
            Status::OutsideFixed => "outside fixed image",
            Status::OutsideMoving => "outside moving image",
            Status::Excluded => "excluded",
        }
    }
}

/// A distance as the TRE table writes it (mm, 4 decimals): `eval` and the
/// viewer show the same figures.
pub fn fmt_mm(v: f64) -> String {
    format!("{v:.4}")
}

#[derive(Clone, Debug)]
pub struct LandmarkError {
    pub id: String,
    pub before_mm: f64,
    pub after_mm: Option<f64>,
    pub status: Status,
}

#[derive(Clone, Debug)]
pub struct TreReport {
    pub points: Vec<LandmarkError>,
    pub before: Option<Stats>,
    pub after: Option<Stats>,
    /// Fraction of used landmarks whose error decreased (BraTS-Reg robustness).
    pub robustness: Option<f64>,
    pub pairing: Pairing,
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// TRE of `mapping` on landmarks paired by id. `moving_grid` with
/// `margin_vox` flags moving points less than that many voxels inside the
/// moving image; `exclude` drops landmarks by the caller's rule.
pub fn tre(
    fixed: &LandmarkSet,
    moving: &LandmarkSet,
    mapping: &Mapping,
    moving_grid: Option<(&Grid, f64)>,
    exclude: &dyn Fn(&crate::landmarks::Landmark) -> bool,
) -> TreReport {
    let pairing = pair_by_id(fixed, moving);
    let mut points = Vec::with_capacity(pairing.pairs.len());
    for &(i, j) in &pairing.pairs {
        let (f, m) = (&fixed.points[i], &moving.points[j]);
        let before = dist(f.ras_mm, m.ras_mm);
        let moving_inside =
            moving_grid.is_none_or(|(g, margin)| g.contains_world(m.ras_mm, margin));
        let mapped = mapping.map_point(f.ras_mm);
        let status = if exclude(f) {
            Status::Excluded
        } else if mapped.is_none() {
            Status::OutsideFixed
        } else if !moving_inside {
            Status::OutsideMoving
        } else {
            Status::Used
        };
        points.push(LandmarkError {
            id: f.id.clone(),
            before_mm: before,
            after_mm: mapped.map(|c| dist(c, m.ras_mm)),
            status,
        });
    }
    let used: Vec<&LandmarkError> = points.iter().filter(|p| p.status == Status::Used).collect();
    let before: Vec<f64> = used.iter().map(|p| p.before_mm).collect();
    let after: Vec<f64> = used.iter().filter_map(|p| p.after_mm).collect();
    let improved = used
        .iter()
        .filter(|p| p.after_mm.is_some_and(|a| a < p.before_mm - IMPROVEMENT_MM))
        .count();
    TreReport {
        before: Stats::of(&before),
        after: Stats::of(&after),
        robustness: (!used.is_empty()).then(|| improved as f64 / used.len() as f64),
        points,
        pairing,
    }
}

impl TreReport {
    pub fn count(&self, status: Status) -> usize {
        self.points.iter().filter(|p| p.status == status).count()
    }

    /// The summary lines under the table: landmarks used, before/after
    /// statistics, robustness, and what did not pair.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{} of {} paired landmarks used",
            self.count(Status::Used),
            self.points.len()
        )];
        for (name, s) in [("before", &self.before), ("after", &self.after)] {
            if let Some(s) = s {
                out.push(format!(
                    "{name:<7} mean {}  median {}  std {}  max {}",
                    fmt_mm(s.mean),
                    fmt_mm(s.median),
                    fmt_mm(s.std),
                    fmt_mm(s.max)
                ));
            }
        }
        if let Some(r) = self.robustness {
            out.push(format!(
                "robustness {r:.4} (fraction whose error decreased)"
            ));
        }
        if let Some(n) = self.pairing.notice() {
            out.push(n);
        }
        out
    }

    /// The per-landmark table and its summary, as `warpscope eval` prints it.
    pub fn table_text(&self) -> String {
        let w = self
            .points
            .iter()
            .map(|p| p.id.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let mut t = format!(
            "TRE per landmark (mm): fixed point through the mapping vs its moving partner\n{:<w$}  {:>10}  {:>10}  status\n",
            "id", "before", "after"
        );
        for p in &self.points {
            t += &format!(
                "{:<w$}  {:>10}  {:>10}  {}\n",
                p.id,
                fmt_mm(p.before_mm),
                p.after_mm.map_or_else(|| "-".to_string(), fmt_mm),
                p.status.name()
            );
        }
        for l in self.summary_lines() {
            t += &l;
            t.push('\n');
        }
        t
    }

    pub fn to_json(&self) -> Value {
        json!({
            "n_used": self.count(Status::Used),
            "n_outside_fixed": self.count(Status::OutsideFixed),
            "n_outside_moving": self.count(Status::OutsideMoving),
            "n_excluded": self.count(Status::Excluded),
            "unpaired_fixed": self.pairing.fixed_only,
            "unpaired_moving": self.pairing.moving_only,
            "duplicate_ids": self.pairing.duplicates,
            "before_mm": self.before.map(|s| s.to_json()),
            "after_mm": self.after.map(|s| s.to_json()),
            "robustness": opt(self.robustness),
            "per_landmark": self.points.iter().map(|p| json!({
                "id": p.id,
                "before_mm": p.before_mm,
                "after_mm": opt(p.after_mm),
                "status": format!("{:?}", p.status),
            })).collect::<Vec<_>>(),
        })
    }
}
