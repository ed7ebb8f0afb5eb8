//! Lesion detection and disappearing rates (methods.md §4, MIRRBA).
//!
//! Lesion maps give each lesion its own integer id, with the same id for the
//! same lesion in the fixed and the moving map (0 = background). Choices
//! ours, as the paper leaves them open:
//! - a lesion present in both maps is *detected* when the warped moving
//!   lesion covers more than 50 % of the fixed lesion's voxels;
//! - a lesion present only in the moving map is *vanishing*; its
//!   disappearing rate is 1 − V_warped / V_moving (volumes in mm³), i.e. how
//!   much the registration shrank it (1 = gone, 0 = unchanged).

use serde_json::{Value, json};

use super::overlap::labels_of;
use super::{Mapping, opt};
use crate::volume::resample::Interp;
use crate::volume::{Volume, VolumeError};

#[derive(Clone, Debug)]
pub struct LesionReport {
    pub detected: Vec<(i64, f64)>,
    pub missed: Vec<(i64, f64)>,
    /// (id, disappearing rate) of lesions present only in the moving map.
    pub vanishing: Vec<(i64, f64)>,
}

pub fn lesions(
    fixed: &Volume,
    moving: &Volume,
    mapping: &Mapping,
) -> Result<LesionReport, VolumeError> {
    let warped = mapping.warp(moving, Interp::Nearest)?;
    let (f, w, m) = (fixed.channel(0), warped.channel(0), moving.channel(0));
    let fixed_ids = labels_of(f);
    let voxel_mm3 = |v: &Volume| {
        let s = v.grid.spacing_mm();
        s[0] * s[1] * s[2]
    };
    let mut report = LesionReport {
        detected: Vec::new(),
        missed: Vec::new(),
        vanishing: Vec::new(),
    };
    for id in labels_of(m) {
        let count = |v: &[f32]| v.iter().filter(|x| x.round() as i64 == id).count();
        if fixed_ids.contains(&id) {
            let in_fixed = count(f);
            let covered = f
                .iter()
                .zip(w)
                .filter(|(a, b)| a.round() as i64 == id && b.round() as i64 == id)
                .count();
            let frac = covered as f64 / in_fixed.max(1) as f64;
            if frac > 0.5 {
                report.detected.push((id, frac))
            } else {
                report.missed.push((id, frac))
            }
        } else {
            let before = count(m) as f64 * voxel_mm3(moving);
            let after = count(w) as f64 * voxel_mm3(&warped);
            report.vanishing.push((
                id,
                if before > 0.0 {
                    1.0 - after / before
                } else {
                    0.0
                },
            ));
        }
    }
    Ok(report)
}

impl LesionReport {
    pub fn detection_rate(&self) -> Option<f64> {
        let n = self.detected.len() + self.missed.len();
        (n > 0).then(|| self.detected.len() as f64 / n as f64)
    }

    pub fn mean_disappearing_rate(&self) -> Option<f64> {
        (!self.vanishing.is_empty())
            .then(|| self.vanishing.iter().map(|v| v.1).sum::<f64>() / self.vanishing.len() as f64)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "detection_rate": opt(self.detection_rate()),
            "n_detected": self.detected.len(),
            "n_missed": self.missed.len(),
            "mean_disappearing_rate": opt(self.mean_disappearing_rate()),
            "vanishing": self.vanishing.iter().map(|(id, r)| json!({"id": id, "disappearing_rate": r})).collect::<Vec<_>>(),
        })
    }
}
