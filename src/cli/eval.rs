//! `warpscope eval`: score a registration result.
//!
//! Three ways in:
//! - `--fixed F --moving M [--field FIELD]` with any of landmarks, labels,
//!   mask, lesion maps: a JSON report and a table;
//! - `--pair DIR`: a pair folder of the shared layout, scored with the
//!   shared protocol (same keys as `../shared/bench/evaluate.py`);
//! - `--dataset DIR`: every pair folder in DIR, one CSV row each plus a
//!   mean row; results are read from `--results DIR/<pair>/<--result-name>`.
//!
//! Without `--field` / `--results` the identity is scored ("before registration").

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{Map, Value, json};

use super::CliResult;
use crate::landmarks::formats::{IndexBase, Side, read_set};
use crate::metrics::protocol::{Pair, evaluate};
use crate::metrics::{FieldKind, Mapping, jacobian, lesions, opt, overlap, similarity, tre};
use crate::volume::Volume;
use crate::volume::nifti::{self, ReadOptions, WriteOptions};
use crate::volume::resample::{Border, Interp, resample};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Fixed image (the field's grid).
    #[arg(long, conflicts_with_all = ["pair", "dataset"])]
    pub fixed: Option<PathBuf>,
    /// Moving image.
    #[arg(long, requires = "fixed")]
    pub moving: Option<PathBuf>,
    /// Registration result on the fixed grid (see --field-kind); default: identity.
    #[arg(long)]
    pub field: Option<PathBuf>,
    /// Backward result (moving → fixed, on the moving grid) for the inverse-consistency error.
    #[arg(long)]
    pub inverse_field: Option<PathBuf>,
    /// Write the inverse-consistency error map (mm) here (needs --inverse-field).
    #[arg(long, requires = "inverse_field")]
    pub ic_out: Option<PathBuf>,
    /// How to read --field / result files: mapped (RAS mm of the moving point),
    /// disp-ras (RAS mm displacement), disp-vox (fixed-voxel displacement),
    /// ants (ITK/ANTs LPS mm displacement). Default: from the file's header.
    #[arg(long, value_parser = parse_kind)]
    pub field_kind: Option<FieldKind>,
    /// Landmarks: a pair CSV (id,fx,fy,fz,mx,my,mz,…).
    #[arg(long, conflicts_with_all = ["fixed_landmarks", "moving_landmarks"])]
    pub landmarks: Option<PathBuf>,
    /// Fixed-image landmarks (.fcsv, .mrk.json, BraTS-Reg CSV).
    #[arg(long, requires = "moving_landmarks")]
    pub fixed_landmarks: Option<PathBuf>,
    /// Moving-image landmarks, paired with the fixed ones by id.
    #[arg(long, requires = "fixed_landmarks")]
    pub moving_landmarks: Option<PathBuf>,
    /// BraTS-Reg CSV voxel indices count from 1 (default: from 0).
    #[arg(long)]
    pub one_based: bool,
    /// Fixed label map (Dice, Dice30, HD95).
    #[arg(long, requires = "moving_labels")]
    pub fixed_labels: Option<PathBuf>,
    #[arg(long, requires = "fixed_labels")]
    pub moving_labels: Option<PathBuf>,
    /// Fixed-grid mask restricting the voxel statistics.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Lesion maps (one id per lesion, same id in both): detection and disappearing rates.
    #[arg(long, requires = "moving_lesions")]
    pub fixed_lesions: Option<PathBuf>,
    #[arg(long, requires = "fixed_lesions")]
    pub moving_lesions: Option<PathBuf>,
    /// A pair folder (pair.json) scored with the shared protocol.
    #[arg(long, conflicts_with = "dataset")]
    pub pair: Option<PathBuf>,
    /// A folder of pair folders: one CSV row per pair.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// With --dataset: folder holding one result folder per pair.
    #[arg(long, requires = "dataset")]
    pub results: Option<PathBuf>,
    /// With --results: the result file inside each pair's folder.
    #[arg(long, default_value = "mapped.nii.gz")]
    pub result_name: String,
    /// Write the JSON report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With --dataset: write the CSV table here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the mapped-coordinate image (X×Y×Z×3, RAS mm) that evaluate.py reads.
    #[arg(long)]
    pub mapped_out: Option<PathBuf>,
    /// Write every landmark pair through the result: the fixed point mapped to
    /// moving space, the moving point mapped back (fixed-point iteration) with
    /// its residual, and the error (CSV, RAS mm).
    #[arg(long)]
    pub warped_landmarks: Option<PathBuf>,
    /// Write the fixed landmarks carried through the result into the moving
    /// image, as a landmark file the viewer and 3D Slicer open: `.fcsv` or
    /// `.mrk.json` (LPS, as Slicer writes them), or `.csv` (pair CSV: the
    /// fixed point and where the result puts it).
    #[arg(long)]
    pub warped_landmarks_out: Option<PathBuf>,
    /// Write the Jacobian determinant map.
    #[arg(long)]
    pub jacobian_out: Option<PathBuf>,
}

fn parse_kind(s: &str) -> Result<FieldKind, String> {
    FieldKind::parse(s)
        .ok_or_else(|| format!("unknown field kind '{s}' (mapped, disp-ras, disp-vox, ants)"))
}

fn read(p: &Path) -> Result<Volume, Box<dyn std::error::Error>> {
    // Images may be DICOM series too (labels and masks are NIfTI in practice,
    // but a folder works the same way).
    Ok(crate::volume::open::read_image(p, ReadOptions::default(), None)?.0)
}

/// Load a field file as a mapping on `fixed`'s grid.
pub fn load_mapping(
    path: &Path,
    kind: Option<FieldKind>,
    fixed: &crate::volume::Grid,
) -> Result<Mapping, Box<dyn std::error::Error>> {
    let (m, _, notice) = Mapping::load(path, kind, fixed)?;
    if let Some(n) = notice {
        eprintln!("notice: {}: {n}", path.display());
    }
    Ok(m)
}

/// Write a mapping as the mapped-coordinate image evaluate.py reads.
pub fn write_mapped(path: &Path, m: &Mapping) -> CliResult {
    Ok(crate::results::write_mapped(path, m)?)
}

pub fn run(a: &EvalArgs) -> CliResult {
    if let Some(dir) = &a.dataset {
        return dataset(a, dir);
    }
    if let Some(dir) = &a.pair {
        let pair = Pair::open(dir)?;
        let fixed = read(&pair.fixed)?;
        let mapping = match &a.field {
            Some(f) => Some(load_mapping(f, a.field_kind, &fixed.grid)?),
            None => None,
        };
        let report = evaluate(&pair, mapping.as_ref())?;
        outputs(a, mapping.as_ref(), &fixed)?;
        print_flat(&report);
        return save_json(a, &report);
    }
    let (Some(fixed_path), Some(moving_path)) = (&a.fixed, &a.moving) else {
        return Err("give --fixed and --moving, or --pair DIR, or --dataset DIR".into());
    };
    let fixed = read(fixed_path)?;
    let moving = read(moving_path)?;
    let mapping = match &a.field {
        Some(f) => load_mapping(f, a.field_kind, &fixed.grid)?,
        None => Mapping::identity(&fixed.grid),
    };
    let report = generic(a, &fixed, &moving, &mapping)?;
    outputs(a, Some(&mapping), &fixed)?;
    print_flat(&report);
    save_json(a, &report)
}

fn outputs(a: &EvalArgs, mapping: Option<&Mapping>, fixed: &Volume) -> CliResult {
    let identity;
    let m = match mapping {
        Some(m) => m,
        None => {
            identity = Mapping::identity(&fixed.grid);
            &identity
        }
    };
    if let Some(p) = &a.mapped_out {
        write_mapped(p, m)?;
    }
    if let Some(p) = &a.jacobian_out {
        nifti::write_file(
            p,
            &jacobian::determinant(m),
            &WriteOptions {
                description: "warpscope:jacobian det".into(),
                ..Default::default()
            },
        )?;
    }
    Ok(())
}

fn save_json(a: &EvalArgs, report: &Value) -> CliResult {
    if let Some(p) = &a.out {
        let text = serde_json::to_string_pretty(report)? + "\n";
        crate::results::write_text(p, &text)?;
    }
    Ok(())
}

/// Labels on another grid are resampled (nearest) onto `grid`, with a notice.
fn on_grid(
    v: Volume,
    grid: &crate::volume::Grid,
    what: &str,
) -> Result<Volume, Box<dyn std::error::Error>> {
    if v.grid.same_as(grid) {
        return Ok(v);
    }
    eprintln!(
        "notice: {what} is on another grid than the fixed image: resampled (nearest neighbour)"
    );
    Ok(resample(&v, grid, Interp::Nearest, Border::Constant(0.0))?)
}

fn generic(
    a: &EvalArgs,
    fixed: &Volume,
    moving: &Volume,
    mapping: &Mapping,
) -> Result<Value, Box<dyn std::error::Error>> {
    let n = fixed.voxels();
    let mask: Option<Vec<bool>> = match &a.mask {
        Some(p) => Some(
            on_grid(read(p)?, &fixed.grid, "the mask")?
                .channel(0)
                .iter()
                .map(|v| *v > 0.0)
                .collect(),
        ),
        None => None,
    };
    if mask.as_ref().is_some_and(|m| !m.iter().any(|&x| x)) {
        return Err("the mask is empty".into());
    }
    let mut out = Map::new();
    let base = if a.one_based {
        IndexBase::One
    } else {
        IndexBase::Zero
    };
    let sets = match (&a.landmarks, &a.fixed_landmarks, &a.moving_landmarks) {
        (Some(p), _, _) => Some((
            read_set(p, None, base, Side::Fixed)?,
            read_set(p, None, base, Side::Moving)?,
        )),
        (None, Some(f), Some(m)) => Some((
            read_set(f, Some(&fixed.grid), base, Side::Fixed)?,
            read_set(m, Some(&moving.grid), base, Side::Moving)?,
        )),
        _ => None,
    };
    if let Some((f, m)) = sets {
        for (set, grid, what) in [
            (&f, &fixed.grid, "fixed landmarks"),
            (&m, &moving.grid, "moving landmarks"),
        ] {
            if let Some(n) = crate::landmarks::edit::Placement::of(set, grid).notice(what) {
                eprintln!("notice: {n}");
            }
        }
        let report = tre::tre(&f, &m, mapping, Some((&moving.grid, 0.0)), &|_| false);
        if let Some(notice) = report.pairing.notice() {
            eprintln!("notice: {notice}; computed on the pairs that match");
        }
        let outside =
            report.count(tre::Status::OutsideFixed) + report.count(tre::Status::OutsideMoving);
        if outside > 0 {
            eprintln!("notice: {outside} landmark(s) outside the image were excluded");
        }
        println!("{}", report.table_text());
        out.insert("tre".into(), report.to_json());
        if let Some(p) = &a.warped_landmarks {
            write_warped_landmarks(p, &f, &m, mapping)?;
        }
    }
    if let Some(p) = &a.warped_landmarks_out {
        let f = match (&a.landmarks, &a.fixed_landmarks) {
            (Some(l), _) | (None, Some(l)) => read_set(l, Some(&fixed.grid), base, Side::Fixed)?,
            (None, None) => {
                return Err(
                    "--warped-landmarks-out needs fixed landmarks (--landmarks or --fixed-landmarks)"
                        .into(),
                );
            }
        };
        let skipped = write_landmarks_through(p, &f, mapping)?;
        if skipped > 0 {
            eprintln!(
                "notice: {skipped} landmark(s) outside the field's grid were not written to {}",
                p.display()
            );
        }
    }
    if let (Some(fl), Some(ml)) = (&a.fixed_labels, &a.moving_labels) {
        let lf = on_grid(read(fl)?, &fixed.grid, "the fixed label map")?;
        let lm = read(ml)?;
        let warped = mapping.warp(&lm, Interp::Nearest)?;
        let scores = overlap::label_scores(&lf, &warped, true);
        if scores.is_empty() {
            eprintln!("notice: the fixed label map has no non-zero label");
        }
        let dices: Vec<f64> = scores.iter().filter_map(|s| s.dice).collect();
        let hds: Vec<f64> = scores.iter().filter_map(|s| s.hd95_mm).collect();
        out.insert(
            "labels".into(),
            json!({
                "dice_mean": opt((!dices.is_empty()).then(|| dices.iter().sum::<f64>() / dices.len() as f64)),
                "dice30": opt(overlap::dice30(&dices)),
                "hd95_mean_mm": opt((!hds.is_empty()).then(|| hds.iter().sum::<f64>() / hds.len() as f64)),
                "per_label": scores.iter().map(|s| json!({"label": s.label, "dice": opt(s.dice), "hd95_mm": opt(s.hd95_mm)})).collect::<Vec<_>>(),
            }),
        );
    }
    let det = jacobian::determinant(mapping);
    if let Some(js) = jacobian::stats(&det, mapping, mask.as_deref()) {
        out.insert("jacobian".into(), js.to_json());
    }
    if let (Some(fl), Some(ml)) = (&a.fixed_lesions, &a.moving_lesions) {
        let lf = on_grid(read(fl)?, &fixed.grid, "the fixed lesion map")?;
        out.insert(
            "lesions".into(),
            lesions::lesions(&lf, &read(ml)?, mapping)?.to_json(),
        );
    }
    if let Some(p) = &a.inverse_field {
        let backward = load_mapping(p, a.field_kind, &moving.grid)?;
        let err = crate::metrics::ic::ic_error(mapping, &backward);
        let vals: Vec<f64> = err
            .channel(0)
            .iter()
            .enumerate()
            .filter(|(i, v)| v.is_finite() && mask.as_ref().is_none_or(|m| m[*i]))
            .map(|(_, v)| f64::from(*v))
            .collect();
        let outside = err.channel(0).iter().filter(|v| !v.is_finite()).count();
        out.insert(
            "inverse_consistency_mm".into(),
            json!({ "stats": crate::metrics::Stats::of(&vals).map(|s| s.to_json()), "n_outside_backward_grid": outside }),
        );
        if let Some(o) = &a.ic_out {
            nifti::write_file(
                o,
                &err,
                &WriteOptions {
                    description: "warpscope:ic error mm".into(),
                    ..Default::default()
                },
            )?;
        }
    }
    let warped = mapping.warp(moving, Interp::Linear)?;
    let before = Mapping::identity(&fixed.grid).warp(moving, Interp::Linear)?;
    let m = mask.as_deref();
    let (f, w, b) = (fixed.channel(0), warped.channel(0), before.channel(0));
    out.insert(
        "similarity".into(),
        json!({
            "ncc": { "before": opt(similarity::ncc(f, b, m)), "after": opt(similarity::ncc(f, w, m)) },
            "mse": { "before": opt(similarity::mse(f, b, m)), "after": opt(similarity::mse(f, w, m)) },
            "mi": { "before": opt(similarity::mutual_information(f, b, m, 32)), "after": opt(similarity::mutual_information(f, w, m, 32)) },
        }),
    );
    out.insert(
        "voxels".into(),
        json!(
            mask.as_ref()
                .map_or(n, |m| m.iter().filter(|x| **x).count())
        ),
    );
    Ok(Value::Object(out))
}

fn write_warped_landmarks(
    path: &Path,
    fixed: &crate::landmarks::LandmarkSet,
    moving: &crate::landmarks::LandmarkSet,
    mapping: &Mapping,
) -> CliResult {
    let mut text = String::from(
        "id,fx,fy,fz,mapped_x,mapped_y,mapped_z,mx,my,mz,inverse_x,inverse_y,inverse_z,inverse_residual_mm,error_mm\n",
    );
    let cell = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x:.4}"));
    for (i, j) in crate::landmarks::pair_by_id(fixed, moving).pairs {
        let (f, m) = (&fixed.points[i], &moving.points[j]);
        let mapped = mapping.map_point(f.ras_mm);
        let inverse = mapping.inverse_point(m.ras_mm);
        let error = mapped.map(|c| {
            (0..3)
                .map(|k| (c[k] - m.ras_mm[k]).powi(2))
                .sum::<f64>()
                .sqrt()
        });
        let mut row = vec![f.id.clone()];
        row.extend(f.ras_mm.iter().map(|v| format!("{v:.4}")));
        row.extend((0..3).map(|k| cell(mapped.map(|c| c[k]))));
        row.extend(m.ras_mm.iter().map(|v| format!("{v:.4}")));
        row.extend((0..3).map(|k| cell(inverse.map(|(x, _)| x[k]))));
        row.push(cell(inverse.map(|(_, r)| r)));
        row.push(cell(error));
        text += &(crate::landmarks::formats::csv_line(&row) + "\n");
    }
    crate::results::write_text(path, &text)?;
    Ok(())
}

/// Write `fixed` carried into the moving image through `mapping`, in the
/// format the file name says; returns how many points could not be mapped.
fn write_landmarks_through(
    path: &Path,
    fixed: &crate::landmarks::LandmarkSet,
    mapping: &Mapping,
) -> Result<usize, Box<dyn std::error::Error>> {
    use crate::landmarks::formats::{self, CoordinateSystem};
    let mut mapped = fixed.clone();
    mapped.points.clear();
    let mut skipped = 0;
    for p in &fixed.points {
        match mapping.map_point(p.ras_mm) {
            Some(q) => mapped.points.push(crate::landmarks::Landmark {
                ras_mm: q,
                ..p.clone()
            }),
            None => skipped += 1,
        }
    }
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".fcsv") {
        formats::write_fcsv(path, &mapped, CoordinateSystem::Lps)?;
    } else if name.ends_with(".json") {
        formats::write_mrk_json(path, &mapped, CoordinateSystem::Lps)?;
    } else if name.ends_with(".csv") {
        formats::write_pair_csv(path, fixed, &mapped)?;
    } else {
        return Err(format!(
            "{}: name the landmark file .fcsv, .mrk.json or .csv (pair CSV)",
            path.display()
        )
        .into());
    }
    Ok(skipped)
}

/// Print a report as `key  value` lines (nested keys joined with '.').
fn print_flat(v: &Value) {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, x, out);
                }
            }
            Value::Array(_) => {}
            Value::Number(n) => {
                let s = n.as_f64().map_or_else(
                    || n.to_string(),
                    |f| {
                        if f.fract() == 0.0 && f.abs() < 1e15 {
                            format!("{f}")
                        } else {
                            readable(f, 4)
                        }
                    },
                );
                out.push((prefix.to_string(), s));
            }
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut rows = Vec::new();
    walk("", v, &mut rows);
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, val) in rows {
        println!("{k:<w$}  {val}");
    }
}

/// A figure with `digits` decimals, or in scientific notation where those
/// would show a small non-zero value as 0 (a fold fraction of 3.96e-5
/// printed "0.0000" read as "no folds").
pub fn readable(v: f64, digits: usize) -> String {
    if v != 0.0 && v.is_finite() && v.abs() < 10f64.powi(-(digits as i32) + 2) {
        format!("{v:.3e}")
    } else {
        format!("{v:.digits$}")
    }
}

/// Columns of the dataset table, in order.
const TABLE: [&str; 12] = [
    "tre_mean",
    "tre_median",
    "robustness",
    "epe_mean",
    "dice_mean",
    "dice30",
    "jac_frac_nonpos",
    "jac_sd_log_j",
    "jac_ndv_percent",
    "ncc",
    "n_landmarks",
    "n_mapped_outside_fov",
];

/// The pair folders (those holding a pair.json) of a dataset folder, sorted
/// by name.
pub fn pair_folders(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut pairs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("pair.json").is_file())
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        return Err(format!(
            "{}: no pair folders (with pair.json) inside",
            dir.display()
        ));
    }
    Ok(pairs)
}

/// The dataset table (CSV): one row per pair's report, then the mean of
/// each column over the pairs that have it.
pub fn table(rows: &[(String, &Value)]) -> String {
    let mut text = format!("pair,{}\n", TABLE.join(","));
    let mut sums = vec![(0f64, 0usize); TABLE.len()];
    for (name, r) in rows {
        let mut row = vec![name.clone()];
        for (k, key) in TABLE.iter().enumerate() {
            match r.get(*key).and_then(Value::as_f64) {
                Some(v) => {
                    row.push(readable(v, 6));
                    sums[k].0 += v;
                    sums[k].1 += 1;
                }
                None => row.push(String::new()),
            }
        }
        text += &(row.join(",") + "\n");
    }
    let mean: Vec<String> = sums
        .iter()
        .map(|(s, n)| {
            if *n > 0 {
                readable(s / *n as f64, 6)
            } else {
                String::new()
            }
        })
        .collect();
    text += &format!("mean,{}\n", mean.join(","));
    text
}

fn dataset(a: &EvalArgs, dir: &Path) -> CliResult {
    let pairs = pair_folders(dir)?;
    let mut rows: Vec<(String, Value)> = Vec::new();
    let mut failures = 0;
    for p in &pairs {
        let result = (|| -> Result<Value, Box<dyn std::error::Error>> {
            let pair = Pair::open(p)?;
            let mapping = match &a.results {
                Some(r) => {
                    let fixed = read(&pair.fixed)?;
                    Some(load_mapping(
                        &r.join(&pair.name).join(&a.result_name),
                        a.field_kind,
                        &fixed.grid,
                    )?)
                }
                None => None,
            };
            Ok(evaluate(&pair, mapping.as_ref())?)
        })();
        let name = p
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match result {
            Ok(r) => rows.push((name, r)),
            Err(e) => {
                eprintln!("warpscope: error: {name}: {e}");
                failures += 1;
            }
        }
    }
    let text = table(&rows.iter().map(|(n, r)| (n.clone(), r)).collect::<Vec<_>>());
    print!("{text}");
    if let Some(p) = &a.csv {
        crate::results::write_text(p, &text)?;
    }
    save_json(a, &Value::Array(rows.into_iter().map(|(_, r)| r).collect()))?;
    if failures > 0 {
        return Err(format!(
            "{failures} of {} pair(s) could not be evaluated",
            pairs.len()
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::readable;

    #[test]
    fn small_fractions_stay_visible() {
        assert_eq!(readable(3.96e-5, 4), "3.960e-5");
        assert_eq!(readable(0.0, 4), "0.0000");
        assert_eq!(readable(0.1234567, 4), "0.1235");
        assert_eq!(readable(0.5, 6), "0.500000");
        assert_eq!(readable(2.5e-7, 6), "2.500e-7");
        assert_eq!(readable(-0.004, 4), "-4.000e-3");
    }
}
