//! What a registration produced, measured and written: the products of an
//! [`Outcome`] (mapping, warped image, det J), the figures a run is judged
//! by (TRE, folds, SDlogJ, NCC), and the result files of
//! `warpscope register --out` (also the viewer's export). Shared by the
//! command line and the GUI, so both write and score a run the same way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::landmarks::LandmarkSet;
use crate::metrics::{Mapping, jacobian, similarity, tre};
use crate::register::{Outcome, Status};
use crate::volume::nifti::{self, ChannelLayout, WriteOptions};
use crate::volume::resample::Interp;
use crate::volume::{Grid, Volume, affine};

/// The result on the fixed grid, computed once from an outcome.
pub struct Products {
    pub mapping: Mapping,
    /// Total displacement in fixed voxels (affine included).
    pub field_vox: Volume,
    pub warped: Volume,
    pub jacobian: Volume,
}

impl Products {
    /// `moving` is the original moving image (any grid): the warped image is
    /// interpolated once, through the composed mapping.
    pub fn of(fixed: &Grid, moving: &Volume, outcome: &Outcome) -> Result<Self, String> {
        let field_vox = outcome.total_field_vox(fixed);
        let mapping = outcome.mapping(fixed);
        let warped = mapping
            .warp(moving, Interp::Linear)
            .map_err(|e| e.to_string())?;
        let jacobian = jacobian::determinant(&mapping);
        Ok(Self {
            mapping,
            field_vox,
            warped,
            jacobian,
        })
    }
}

/// The figures a run is compared by (the GUI's run history, session files).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Landmark pairs used, and their TRE (mm) after registration.
    pub landmarks: Option<usize>,
    pub tre_mean_mm: Option<f64>,
    pub tre_median_mm: Option<f64>,
    /// Before registration (identity), for reference.
    pub tre_before_mm: Option<f64>,
    pub robustness: Option<f64>,
    /// % of voxels with det J ≤ 0, over the whole fixed grid (the headline).
    pub folds_percent: Option<f64>,
    /// SDlogJ over the whole fixed grid.
    pub sd_log_j: Option<f64>,
    /// The same two inside the fixed mask, when the run had one (what
    /// `eval --mask` and the benchmark protocol report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds_percent_in_mask: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sd_log_j_in_mask: Option<f64>,
    /// NCC between the fixed and the warped image (mean over channels).
    pub ncc: Option<f64>,
}

/// Score products against the fixed image and, if given, landmark pairs
/// (fixed set, moving set; RAS mm, paired by id) and the fixed mask (on
/// the fixed grid or resampled onto it).
pub fn measure(
    products: &Products,
    fixed: &Volume,
    moving_grid: &Grid,
    landmarks: Option<(&LandmarkSet, &LandmarkSet)>,
    fixed_mask: Option<&Volume>,
) -> RunMetrics {
    let mut m = RunMetrics::default();
    if let Some(s) = jacobian::stats(&products.jacobian, &products.mapping, None) {
        m.folds_percent = Some(100.0 * s.frac_nonpos);
        m.sd_log_j = Some(s.sd_log_j);
    }
    let inside = fixed_mask.and_then(|mk| crate::volume::resample::mask_on(mk, &fixed.grid).ok());
    if let Some(inside) = inside
        && let Some(s) = jacobian::stats(&products.jacobian, &products.mapping, Some(&inside))
    {
        m.folds_percent_in_mask = Some(100.0 * s.frac_nonpos);
        m.sd_log_j_in_mask = Some(s.sd_log_j);
    }
    let channels = fixed.channels.min(products.warped.channels);
    let nccs: Vec<f64> = (0..channels)
        .filter_map(|c| similarity::ncc(fixed.channel(c), products.warped.channel(c), None))
        .collect();
    if !nccs.is_empty() {
        m.ncc = Some(nccs.iter().sum::<f64>() / nccs.len() as f64);
    }
    landmark_metrics(&mut m, &products.mapping, moving_grid, landmarks);
    m
}

/// Set (or clear, without landmarks) the TRE figures of `m` for `mapping`:
/// a run scored again when landmarks arrive or change after it ended.
pub fn landmark_metrics(
    m: &mut RunMetrics,
    mapping: &crate::metrics::Mapping,
    moving_grid: &Grid,
    landmarks: Option<(&LandmarkSet, &LandmarkSet)>,
) {
    m.landmarks = None;
    m.tre_mean_mm = None;
    m.tre_median_mm = None;
    m.tre_before_mm = None;
    m.robustness = None;
    if let Some((f, mv)) = landmarks {
        let r = tre::tre(f, mv, mapping, Some((moving_grid, 0.0)), &|_| false);
        if let Some(after) = &r.after {
            m.landmarks = Some(after.n);
            m.tre_mean_mm = Some(after.mean);
            m.tre_median_mm = Some(after.median);
        }
        m.tre_before_mm = r.before.as_ref().map(|b| b.mean);
        m.robustness = r.robustness;
    }
}

/// Where the inputs of a run came from, for its report.
#[derive(Clone, Debug, Default)]
pub struct RunSources {
    pub fixed: Vec<String>,
    pub moving: Vec<String>,
    pub fixed_mask: Option<String>,
    pub overrides: Vec<String>,
}

pub fn status_text(status: &Status) -> String {
    match status {
        Status::Completed => "completed".to_string(),
        Status::Stopped => "stopped".to_string(),
        Status::Failed(m) => format!("failed: {m}"),
    }
}

/// `run.json`: status, versions, device, inputs, pipeline, times, losses, metrics.
pub fn run_report(sources: &RunSources, o: &Outcome, metrics: &RunMetrics) -> Value {
    json!({
        "status": status_text(&o.status),
        "warpscope": env!("CARGO_PKG_VERSION"),
        "burn": "0.22.1",
        "device": o.device,
        "fixed": sources.fixed,
        "moving": sources.moving,
        "fixed_mask": sources.fixed_mask,
        "overrides": sources.overrides,
        "pipeline": o.pipeline.to_json(),
        "stage_seconds": o.stage_seconds.iter().map(|(s, t)| json!({"stage": s, "seconds": t})).collect::<Vec<_>>(),
        "iterations": o.iterations,
        "final_total": o.final_total,
        "final_terms": o.final_terms.iter().map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "jacobian_folds_percent": metrics.folds_percent,
        "jacobian_scope": "whole fixed grid (metrics.*_in_mask: inside the fixed mask)",
        "metrics": metrics,
        "files": {
            "warped.nii.gz": "moving image resampled onto the fixed grid through the result",
            "field_vox.nii.gz": "displacement in voxels of the fixed grid (components i, j, k): fixed voxel p corresponds to fixed-grid voxel p + u(p) of the moving image",
            "warp_ants.nii.gz": "ITK/ANTs displacement, LPS mm, 5-D vector image, fixed -> moving (antsApplyTransforms -t)",
            "mapped.nii.gz": "for each fixed voxel the RAS mm point of the moving image (evaluate.py)",
            "jacobian.nii.gz": "det of the Jacobian of the fixed -> moving mapping",
            "affine.txt": "ITK transform file of the affine stage (LPS)",
        },
    })
}

/// ITK/ANTs displacement: LPS mm, fixed point → moving point, 5-D vector image.
pub fn ants_field(mapping: &Mapping) -> Volume {
    let grid = mapping.grid().clone();
    let world = crate::metrics::mapping::world_coordinates(&grid);
    let n = grid.voxels();
    let mut out = Volume::filled(grid, 3, 0.0);
    for c in 0..3 {
        let sign = crate::metrics::mapping::LPS_SIGN[c];
        for i in 0..n {
            out.data[c * n + i] = sign * (mapping.coords.data[c * n + i] - world.data[c * n + i]);
        }
    }
    out
}

/// The affine as an ITK transform file (LPS, fixed → moving physical point),
/// plus the RAS and voxel matrices as comments.
pub fn affine_text(outcome: &Outcome, fixed: &Grid) -> String {
    let wf = fixed.affine;
    let world = affine::inverse(&wf)
        .map(|inv| affine::mul(&wf, &affine::mul(&outcome.affine_vox, &inv)))
        .unwrap_or(affine::IDENTITY);
    // LPS = F · RAS with F = diag(−1, −1, 1): M_lps = F M F, t_lps = F t.
    let f = crate::metrics::mapping::LPS_SIGN.map(f64::from);
    let mut params = Vec::new();
    for r in 0..3 {
        for c in 0..3 {
            params.push(f[r] * world[r][c] * f[c]);
        }
    }
    for r in 0..3 {
        params.push(f[r] * world[r][3]);
    }
    let fmt = |m: &affine::Mat4| {
        m.iter()
            .take(3)
            .map(|r| format!("#   {:.9} {:.9} {:.9} {:.9}", r[0], r[1], r[2], r[3]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\nParameters: {}\nFixedParameters: 0 0 0\n\
         # Warpscope affine stage, fixed point -> moving point.\n# World RAS mm:\n{}\n# Fixed voxel -> fixed-grid voxel:\n{}\n",
        params
            .iter()
            .map(|v| format!("{v:.9}"))
            .collect::<Vec<_>>()
            .join(" "),
        fmt(&world),
        fmt(&outcome.affine_vox)
    )
}

fn opts(description: &str) -> WriteOptions {
    WriteOptions {
        description: description.into(),
        ..Default::default()
    }
}

/// Write a mapped-coordinate image (what `evaluate.py` and `eval` read).
pub fn write_mapped(path: &Path, m: &Mapping) -> Result<(), String> {
    let o = WriteOptions {
        layout: ChannelLayout::Fourth,
        ..opts("warpscope:mapped RAS mm")
    };
    nifti::write_file(path, &m.coords, &o).map_err(|e| e.to_string())
}

/// Write a text file atomically.
pub fn write_text(path: &Path, text: &str) -> Result<(), String> {
    crate::atomic::write_text(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The result files, in the order they are written; `ic_weights.nii.gz`
/// only when the outcome has weights.
pub fn file_names(outcome: &Outcome) -> Vec<&'static str> {
    let mut v = vec![
        "warped.nii.gz",
        "field_vox.nii.gz",
        "warp_ants.nii.gz",
        "mapped.nii.gz",
        "jacobian.nii.gz",
    ];
    if outcome.ic_weights.is_some() {
        v.push("ic_weights.nii.gz");
    }
    v.extend(["affine.txt", "run.json"]);
    v
}

/// Make sure results can be written into `dir` before a run starts: create
/// it, write and remove a probe file, and sweep temporary files that an
/// interrupted earlier run left there (theirs, not a running process's).
/// Returns how many were swept.
pub fn prepare_out_dir(dir: &Path) -> Result<usize, String> {
    let shown = dir.display();
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the output folder {shown}: {e}"))?;
    let probe = dir.join(format!(".warpscope-write-test.{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| format!("cannot write into the output folder {shown}: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(crate::atomic::sweep_stale(dir))
}

/// Write every result file into `dir` (created if missing), each
/// atomically; `progress(done, total, name)` is called before each file.
/// Returns the paths written.
pub fn write_files(
    dir: &Path,
    products: &Products,
    outcome: &Outcome,
    report: &Value,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the output folder {}: {e}", dir.display()))?;
    let names = file_names(outcome);
    let total = names.len();
    let grid = products.mapping.grid();
    let mut written = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        progress(i, total, name);
        let path = dir.join(name);
        // The reader's and writer's errors already name the file.
        let nii = |v: &Volume, o: &WriteOptions| {
            nifti::write_file(&path, v, o).map_err(|e| e.to_string())
        };
        match name {
            "warped.nii.gz" => nii(&products.warped, &opts("warpscope:warped"))?,
            "field_vox.nii.gz" => nii(
                &products.field_vox,
                &opts("warpscope:field_vox fixed->moving"),
            )?,
            "warp_ants.nii.gz" => nii(
                &ants_field(&products.mapping),
                &WriteOptions {
                    layout: ChannelLayout::Vector,
                    ..opts("ITK displacement LPS mm")
                },
            )?,
            "mapped.nii.gz" => write_mapped(&path, &products.mapping)?,
            "jacobian.nii.gz" => nii(&products.jacobian, &opts("warpscope:jacobian det"))?,
            "ic_weights.nii.gz" => {
                if let Some(w) = &outcome.ic_weights {
                    nii(w, &opts("warpscope:ic weights"))?;
                }
            }
            "affine.txt" => write_text(&path, &affine_text(outcome, grid))?,
            _ => write_text(
                &path,
                &(serde_json::to_string_pretty(report).map_err(|e| e.to_string())? + "\n"),
            )?,
        }
        written.push(path);
    }
    progress(total, total, "");
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_folder_is_checked_and_swept_before_a_run() {
        let dir = std::env::temp_dir().join(format!("warpscope-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        // A dead process's leftover, ours (alive) and a user's file.
        let dead = dir.join(".warped.nii.gz.999999999.0.tmp");
        let live = dir.join(format!(".run.json.{}.0.tmp", std::process::id()));
        let user = dir.join("notes.txt");
        for p in [&dead, &live, &user] {
            std::fs::write(p, b"x").expect("write");
        }
        assert_eq!(prepare_out_dir(&dir), Ok(1));
        assert!(!dead.exists() && live.exists() && user.exists());
        // A file where the folder should be cannot hold results.
        let e = prepare_out_dir(&user).expect_err("a file is not a folder");
        assert!(
            e.contains("notes.txt") && e.contains("output folder"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
