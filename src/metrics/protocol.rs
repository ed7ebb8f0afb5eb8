//! The shared data's evaluation protocol for a pair folder (`pair.json`
//! beside fixed/moving images, masks, labels, `gt_disp` and landmarks), as
//! `../shared/bench/evaluate.py` defines it, so our figures and that
//! independent implementation can be compared key by key:
//! - voxels: the fixed brain mask, and for synthetic pairs only where the
//!   true correspondence lies at least 1 voxel inside the moving image;
//! - landmarks: those not in the resection and whose moving point lies at
//!   least 1 voxel inside the moving image;
//! - Dice: moving labels sampled at the mapping (nearest) vs fixed labels;
//! - Jacobian: over the mask minus the 6-neighbour dilation of unmapped voxels;
//! - NCC: fixed vs warped moving (trilinear) over the mask.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::jacobian;
use super::overlap::{dice, labels_of, neighbours6};
use super::similarity;
use super::tre::{Status, tre};
use super::{Mapping, Stats};
use crate::landmarks::formats::parse_pair_csv;
use crate::volume::nifti::{self, ReadOptions};
use crate::volume::resample::Interp;
use crate::volume::{Volume, VolumeError, VolumeErrorKind};

/// A pair folder's files, resolved from its `pair.json`.
#[derive(Clone, Debug)]
pub struct Pair {
    pub name: String,
    pub fixed: PathBuf,
    pub moving: PathBuf,
    pub fixed_mask: Option<PathBuf>,
    pub fixed_labels: Option<PathBuf>,
    pub moving_labels: Option<PathBuf>,
    pub gt_disp: Option<PathBuf>,
    pub landmarks: Option<PathBuf>,
    pub resection_fixed: Option<PathBuf>,
}

fn err(path: &Path, msg: impl Into<String>) -> VolumeError {
    VolumeError::new(
        path.display().to_string(),
        VolumeErrorKind::Invalid(msg.into()),
    )
}

impl Pair {
    pub fn open(dir: &Path) -> Result<Pair, VolumeError> {
        let json_path = dir.join("pair.json");
        let text = std::fs::read_to_string(&json_path).map_err(|e| {
            VolumeError::new(json_path.display().to_string(), VolumeErrorKind::Io(e))
        })?;
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| err(&json_path, format!("not valid JSON: {e}")))?;
        let file = |key: &str| doc.get(key).and_then(Value::as_str).map(|s| dir.join(s));
        Ok(Pair {
            name: dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            fixed: file("fixed").ok_or_else(|| err(&json_path, "no 'fixed' image"))?,
            moving: file("moving").ok_or_else(|| err(&json_path, "no 'moving' image"))?,
            fixed_mask: file("fixed_mask"),
            fixed_labels: file("fixed_labels"),
            moving_labels: file("moving_labels"),
            gt_disp: file("gt_disp"),
            landmarks: file("landmarks"),
            resection_fixed: file("resection_fixed"),
        })
    }
}

fn read(path: &Path) -> Result<Volume, VolumeError> {
    nifti::read_file(path, ReadOptions::default()).map(|(v, _)| v)
}

fn mask_of(path: &Path, n: usize) -> Result<Vec<bool>, VolumeError> {
    let v = read(path)?;
    if v.voxels() != n {
        return Err(err(path, "mask is not on the fixed grid"));
    }
    Ok(v.channel(0).iter().map(|x| *x > 0.0).collect())
}

fn put_stats(out: &mut Map<String, Value>, prefix: &str, stats: Option<Stats>) {
    if let Some(s) = stats {
        out.insert(format!("{prefix}_mean"), json!(s.mean));
        out.insert(format!("{prefix}_median"), json!(s.median));
        out.insert(format!("{prefix}_p95"), json!(s.p95));
        out.insert(format!("{prefix}_max"), json!(s.max));
        out.insert(format!("{prefix}_std"), json!(s.std));
    }
}

/// Dilate a mask by its 6-neighbourhood (scipy's default structuring element).
fn dilate6(m: &[bool], dims: [usize; 3]) -> Vec<bool> {
    (0..m.len())
        .map(|i| m[i] || neighbours6(i, dims).any(|k| m[k]))
        .collect()
}

/// Evaluate `mapping` (on the fixed grid; `None` = identity) on a pair.
/// Keys follow evaluate.py's (`tre_mean`, `dice_mean`, `jac_min`, …) plus ours.
pub fn evaluate(pair: &Pair, mapping: Option<&Mapping>) -> Result<Value, VolumeError> {
    let fixed = read(&pair.fixed)?;
    let moving = read(&pair.moving)?;
    let identity;
    let mapping = match mapping {
        Some(m) => m,
        None => {
            identity = Mapping::identity(&fixed.grid);
            &identity
        }
    };
    if mapping.grid().dims != fixed.grid.dims {
        return Err(err(&pair.fixed, "the mapping is not on the fixed grid"));
    }
    let n = fixed.voxels();
    let mut mask = match &pair.fixed_mask {
        Some(p) => mask_of(p, n)?,
        None => vec![true; n],
    };
    let unmapped = mapping.unmapped(&moving.grid)?;
    let mut out = Map::new();
    out.insert("pair".into(), json!(pair.name));
    let resection = match &pair.resection_fixed {
        Some(p) => mask_of(p, n)?,
        None => vec![false; n],
    };

    if let Some(gt_path) = &pair.gt_disp {
        let gt = read(gt_path)?;
        let (truth, _) = Mapping::from_field(&gt, super::FieldKind::DispRasMm, &fixed.grid)?;
        let t = &truth.coords.data;
        let valid: Vec<bool> = (0..n)
            .map(|i| {
                moving
                    .grid
                    .contains_world([t[i] as f64, t[n + i] as f64, t[2 * n + i] as f64], 1.0)
            })
            .collect();
        out.insert(
            "n_excluded_gt_outside_fov".into(),
            json!(mask.iter().zip(&valid).filter(|(m, v)| **m && !**v).count()),
        );
        for i in 0..n {
            mask[i] &= valid[i];
        }
        let c = &mapping.coords.data;
        let epe: Vec<f64> = (0..n)
            .map(|i| {
                let d = |k: usize| f64::from(c[k * n + i]) - f64::from(t[k * n + i]);
                (d(0).powi(2) + d(1).powi(2) + d(2).powi(2)).sqrt()
            })
            .collect();
        let pick = |f: &dyn Fn(usize) -> bool| -> Vec<f64> {
            (0..n).filter(|&i| f(i)).map(|i| epe[i]).collect()
        };
        put_stats(&mut out, "epe", Stats::of(&pick(&|i| mask[i])));
        if resection.iter().any(|&r| r) {
            put_stats(
                &mut out,
                "epe_outside_resection",
                Stats::of(&pick(&|i| mask[i] && !resection[i])),
            );
            put_stats(
                &mut out,
                "epe_in_resection",
                Stats::of(&pick(&|i| mask[i] && resection[i])),
            );
        }
    }
    out.insert(
        "n_mapped_outside_fov".into(),
        json!(
            mask.iter()
                .zip(&unmapped)
                .filter(|(m, u)| **m && **u)
                .count()
        ),
    );
    if let Some(lm) = &pair.landmarks {
        let text = std::fs::read_to_string(lm)
            .map_err(|e| VolumeError::new(lm.display().to_string(), VolumeErrorKind::Io(e)))?;
        let (f, m) =
            parse_pair_csv(&text, &lm.display().to_string()).map_err(|e| err(lm, e.to_string()))?;
        let report = tre(&f, &m, mapping, Some((&moving.grid, 1.0)), &|p| {
            p.extra("in_resection").is_some_and(|v| v.trim() == "1")
        });
        put_stats(&mut out, "tre", report.after);
        out.insert("n_landmarks".into(), json!(report.count(Status::Used)));
        out.insert("robustness".into(), super::opt(report.robustness));
        put_stats(&mut out, "tre_before", report.before);
    }
    if let (Some(fl), Some(ml)) = (&pair.fixed_labels, &pair.moving_labels) {
        let lf = read(fl)?;
        let lm = read(ml)?;
        let warped = mapping.warp(&lm, Interp::Nearest)?;
        let scores: Vec<(i64, Option<f64>)> = labels_of(lf.channel(0))
            .into_iter()
            .map(|l| (l, dice(lf.channel(0), warped.channel(0), l)))
            .collect();
        let valid: Vec<f64> = scores.iter().filter_map(|s| s.1).collect();
        if !valid.is_empty() {
            out.insert(
                "dice_mean".into(),
                json!(valid.iter().sum::<f64>() / valid.len() as f64),
            );
            out.insert("dice30".into(), super::opt(super::overlap::dice30(&valid)));
        }
        let per: Map<String, Value> = scores
            .iter()
            .map(|(l, d)| (l.to_string(), super::opt(*d)))
            .collect();
        out.insert("dice_per_label".into(), Value::Object(per));
    }
    let det = jacobian::determinant(mapping);
    let near_unmapped = dilate6(&unmapped, fixed.grid.dims);
    let jmask: Vec<bool> = (0..n).map(|i| mask[i] && !near_unmapped[i]).collect();
    if let Some(js) = jacobian::stats(&det, mapping, Some(&jmask)) {
        out.insert("jac_min".into(), json!(js.min));
        out.insert("jac_frac_nonpos".into(), json!(js.frac_nonpos));
        out.insert("jac_logabs_std".into(), json!(js.log_abs_std));
        out.insert("jac_sd_jdet".into(), json!(js.sd_jdet));
        out.insert("jac_sd_log_j".into(), json!(js.sd_log_j));
        out.insert("jac_ndv_percent".into(), json!(js.ndv_percent));
    }
    let warped = mapping.warp(&moving, Interp::Linear)?;
    let (a, b) = (fixed.channel(0), warped.channel(0));
    out.insert("ncc".into(), super::opt(similarity::ncc(a, b, Some(&mask))));
    out.insert("mse".into(), super::opt(similarity::mse(a, b, Some(&mask))));
    out.insert(
        "mi".into(),
        super::opt(similarity::mutual_information(a, b, Some(&mask), 32)),
    );
    Ok(Value::Object(out))
}
