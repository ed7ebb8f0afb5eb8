//! Evaluation metrics: agreement with the independent evaluate.py, analytic
//! cases, and bad input.

mod common;

use std::process::Command;

use common::{scratch_dir, shared};
use warpscope::landmarks::{Landmark, LandmarkSet};
use warpscope::metrics::jacobian::{determinant, ndv_percent, scaling_mapping, stats};
use warpscope::metrics::overlap::{dice, dice30, hd95};
use warpscope::metrics::protocol::{Pair, evaluate};
use warpscope::metrics::tre::{Status, tre};
use warpscope::metrics::{FieldKind, Mapping};
use warpscope::volume::affine::{self, Mat4};
use warpscope::volume::nifti::{self, ReadOptions};
use warpscope::volume::{Grid, Volume};

/// Figures from ../shared/bench/evaluate.py (nibabel 5, scipy 1.x), made with:
///   warpscope eval --pair ../shared/data/pairs/P [--field …/gt_disp.nii.gz --field-kind disp-ras] --mapped-out M
///   python evaluate.py --pair ../data/pairs/P [--mapped M] --json OUT
/// "id" is the identity (before registration), "gt" the pair's true field.
/// (pair, result, [(key, value)]).
type Reference = (&'static str, &'static str, &'static [(&'static str, f64)]);

const EVALUATE_PY: [Reference; 4] = [
    (
        "brain2mm_syn",
        "id",
        &[
            ("epe_mean", 2.198049545288086),
            ("tre_mean", 2.2364618680948087),
            ("tre_median", 2.171580933900257),
            ("tre_max", 4.672738602003873),
            ("dice_mean", 0.7163481704713704),
            ("jac_min", 0.9999933838987545),
            ("jac_logabs_std", 2.3986552650342454e-06),
            ("ncc", 0.8075485825538635),
            ("n_landmarks", 200.0),
        ],
    ),
    (
        "brain2mm_syn",
        "gt",
        &[
            ("epe_mean", 4.822600203624461e-06),
            ("tre_mean", 6.996150471401176e-05),
            ("tre_median", 6.944814064763024e-05),
            ("tre_max", 0.0001405807217801018),
            ("dice_mean", 0.975360676332038),
            ("jac_min", 0.7545432662349697),
            ("jac_logabs_std", 0.1059339635691021),
            ("ncc", 0.9817896485328674),
            ("n_landmarks", 200.0),
        ],
    ),
    (
        "brain2mm_resect",
        "id",
        &[
            ("epe_mean", 5.042906761169434),
            ("tre_mean", 4.814246360733711),
            ("tre_median", 4.573092511357855),
            ("tre_max", 10.083014230831042),
            ("dice_mean", 0.5427508007567355),
            ("jac_min", 0.9999933838987545),
            ("jac_logabs_std", 2.3986552650342454e-06),
            ("ncc", 0.5417448282241821),
            ("n_landmarks", 118.0),
        ],
    ),
    (
        "brain2mm_resect",
        "gt",
        &[
            ("epe_mean", 4.835104391531786e-06),
            ("tre_mean", 6.58295288631125e-05),
            ("tre_median", 6.44284080001723e-05),
            ("tre_max", 0.00013480142523896433),
            ("dice_mean", 0.974368843724673),
            ("jac_min", 0.659528863846858),
            ("jac_logabs_std", 0.09187652145734694),
            ("ncc", 0.9691351652145386),
            ("n_landmarks", 118.0),
        ],
    ),
];

/// 1e-3 relative, with an absolute floor for quantities that are zero up to
/// float32 rounding (the exact field's EPE/TRE, the identity's log-Jacobian spread).
fn agrees(ours: f64, theirs: f64, key: &str) -> bool {
    let floor = match key {
        k if k.starts_with("epe") || k.starts_with("tre") => 2e-4,
        "jac_logabs_std" => 1e-5,
        _ => 1e-9,
    };
    (ours - theirs).abs() <= 1e-3 * theirs.abs() + floor
}

fn mapping_for(pair: &Pair, kind: &str) -> Option<Mapping> {
    (kind == "gt").then(|| {
        let (fixed, _) = nifti::read_file(&pair.fixed, ReadOptions::default()).expect("fixed");
        let gt = pair.gt_disp.as_ref().expect("gt_disp");
        let (field, _) = nifti::read_file(gt, ReadOptions::default()).expect("gt field");
        Mapping::from_field(&field, FieldKind::DispRasMm, &fixed.grid)
            .expect("mapping")
            .0
    })
}

#[test]
fn metrics_agree_with_evaluate_py_on_identity_and_true_field() {
    for (pair_name, kind, expected) in EVALUATE_PY {
        let pair = Pair::open(&shared(&format!("pairs/{pair_name}"))).expect("pair.json");
        let report = evaluate(&pair, mapping_for(&pair, kind).as_ref()).expect("evaluate");
        // BraTS-Reg robustness: nothing improves under the identity, everything under the truth.
        let want_robustness = if kind == "id" { 0.0 } else { 1.0 };
        assert_eq!(
            report["robustness"].as_f64(),
            Some(want_robustness),
            "{pair_name}/{kind}"
        );
        for (key, want) in expected {
            let got = report[*key]
                .as_f64()
                .unwrap_or_else(|| panic!("{pair_name}/{kind}: no {key}"));
            assert!(
                agrees(got, *want, key),
                "{pair_name}/{kind} {key}: ours {got}, evaluate.py {want}"
            );
        }
    }
}

#[test]
fn metrics_agree_with_evaluate_py_run_live_when_python_is_present() {
    let has_python = Command::new("python3")
        .args(["-c", "import nibabel, scipy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_python {
        eprintln!(
            "python3 with nibabel and scipy not found: the stored figures of the test above stand in"
        );
        return;
    }
    let dir = scratch_dir("eval_live");
    let pair_dir = shared("pairs/brain2mm_resect");
    let pair = Pair::open(&pair_dir).expect("pair");
    let mapping = mapping_for(&pair, "gt").expect("gt");
    // A non-trivial result: halfway between identity and the truth.
    let id = Mapping::identity(mapping.grid());
    let mut half = mapping.clone();
    for (h, i) in half.coords.data.iter_mut().zip(&id.coords.data) {
        *h = 0.5 * (*h + *i);
    }
    let mapped = dir.join("half.nii.gz");
    nifti::write_file(&mapped, &half.coords, &Default::default()).expect("write mapped");
    let out = dir.join("py.json");
    let script = shared("../bench/evaluate.py");
    let status = Command::new("python3")
        .arg(&script)
        .args([
            "--pair",
            pair_dir.to_str().expect("utf-8"),
            "--mapped",
            mapped.to_str().expect("utf-8"),
            "--json",
        ])
        .arg(&out)
        .output()
        .expect("run evaluate.py");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let theirs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("json")).expect("json");
    let ours = evaluate(&pair, Some(&half)).expect("evaluate");
    for key in [
        "epe_mean",
        "tre_mean",
        "tre_median",
        "dice_mean",
        "jac_min",
        "jac_frac_nonpos",
        "jac_logabs_std",
        "ncc",
    ] {
        let (a, b) = (
            ours[key].as_f64().expect("ours"),
            theirs[key].as_f64().expect("theirs"),
        );
        assert!(agrees(a, b, key), "{key}: ours {a}, evaluate.py {b}");
    }
}

fn grid(dims: [usize; 3], a: Mat4) -> Grid {
    Grid::new(dims, a)
}

#[test]
fn a_scaling_field_has_det_s_cubed_and_no_folds() {
    let g = grid([12, 10, 9], affine::diagonal([1.5, 1.0, 2.0]));
    for s in [0.8, 1.25] {
        let m = scaling_mapping(&g, s, [3.0, -2.0, 5.0]);
        let det = determinant(&m);
        assert!(
            det.data
                .iter()
                .all(|d| (f64::from(*d) - s * s * s).abs() < 1e-4),
            "s = {s}"
        );
        let st = stats(&det, &m, None).expect("stats");
        assert_eq!(st.frac_nonpos, 0.0);
        assert!(st.sd_jdet < 1e-4 && st.ndv_percent == 0.0);
    }
}

#[test]
fn a_planted_fold_is_counted() {
    // Identity on 1 mm voxels, except that along x two neighbouring columns
    // swap places in a 3×3 block of y, z: C_x(x=5) = 6, C_x(x=6) = 5.
    let g = grid([12, 12, 12], affine::IDENTITY);
    let mut m = Mapping::identity(&g);
    for z in 4..7 {
        for y in 4..7 {
            let i5 = (z * 12 + y) * 12 + 5;
            m.coords.data[i5] = 6.0;
            m.coords.data[i5 + 1] = 5.0;
        }
    }
    // Central differences cannot see a one-voxel swap: at x = 5 they give
    // (C(6) − C(4)) / 2 = 0.5 and at x = 6 (C(7) − C(5)) / 2 = 0.5 (Liu et al.'s point) …
    let det = determinant(&m);
    assert_eq!(det.data.iter().filter(|d| **d <= 0.0).count(), 0);
    // … but the one-sided schemes of NDV do (C(6) − C(5) = −1).
    assert!(ndv_percent(&m, None) > 0.0, "NDV must see the fold");
    // A fold that central differences do see: reverse x over 3 columns.
    let mut r = Mapping::identity(&g);
    for z in 0..12 {
        for y in 0..12 {
            for (x, v) in [(4usize, 8.0f32), (5, 7.0), (6, 6.0), (7, 5.0), (8, 4.0)] {
                r.coords.data[(z * 12 + y) * 12 + x] = v;
            }
        }
    }
    let det = determinant(&r);
    // dC_x/dx < 0 at x = 5, 6, 7 (−1), and at 4 and 8: (7 − 3)/2 > 0, (9 − 5)/2 > 0.
    let nonpos = det.data.iter().filter(|d| **d <= 0.0).count();
    assert_eq!(nonpos, 3 * 12 * 12);
}

#[test]
fn dice_and_hd95_analytic_cases() {
    let dims = [20, 16, 12];
    let n = dims.iter().product::<usize>();
    let idx = |x: usize, y: usize, z: usize| (z * dims[1] + y) * dims[0] + x;
    let mut labels = vec![0f32; n];
    for z in 3..9 {
        for y in 4..12 {
            for x in 5..15 {
                labels[idx(x, y, z)] = 2.0;
            }
        }
    }
    assert_eq!(dice(&labels, &labels, 2), Some(1.0));
    assert_eq!(dice(&labels, &labels, 7), None, "empty in both");
    // A slab across the whole field of view in y and z, shifted by k along x:
    // its only surfaces are the two x faces, each k voxels from its partner.
    let spacing = [1.5, 1.0, 2.0];
    for k in [1usize, 2, 3] {
        let slab = |shift: usize| -> Vec<bool> {
            (0..n)
                .map(|i| (6 + shift..12 + shift).contains(&(i % dims[0])))
                .collect()
        };
        let h = hd95(&slab(0), &slab(k), dims, spacing).expect("both non-empty");
        assert!((h - k as f64 * spacing[0]).abs() < 1e-9, "k = {k}: {h}");
    }
    // A single voxel moved diagonally by (1, 2, 2) voxels: HD95 is that distance in mm.
    let mut a = vec![false; n];
    let mut b = vec![false; n];
    a[idx(4, 4, 4)] = true;
    b[idx(5, 6, 6)] = true;
    let want = (1.5f64.powi(2) + 2.0f64.powi(2) + 4.0f64.powi(2)).sqrt();
    let h = hd95(&a, &b, dims, spacing).expect("non-empty");
    assert!((h - want).abs() < 1e-9, "{h} vs {want}");
    assert_eq!(hd95(&a, &vec![false; n], dims, spacing), None);
    assert_eq!(
        dice30(&[0.9, 0.5, 0.8, 0.7, 0.95, 0.6]),
        Some((0.5 + 0.6) / 2.0)
    );
}

#[test]
fn tre_reports_unpaired_outside_and_inverse_points() {
    let g = grid([10, 10, 10], affine::diagonal([2.0, 2.0, 2.0]));
    // Mapping: translation by (1, −2, 0.5) mm.
    let mut m = Mapping::identity(&g);
    let n = g.voxels();
    for (c, t) in [1.0f32, -2.0, 0.5].iter().enumerate() {
        for v in &mut m.coords.data[c * n..(c + 1) * n] {
            *v += t;
        }
    }
    let fixed = LandmarkSet::new(vec![
        Landmark::new("a", [4.0, 4.0, 4.0]),
        Landmark::new("b", [10.0, 6.0, 2.0]),
        Landmark::new("far", [100.0, 0.0, 0.0]),
        Landmark::new("lonely", [2.0, 2.0, 2.0]),
    ]);
    let moving = LandmarkSet::new(vec![
        Landmark::new("a", [5.0, 2.0, 4.5]),
        Landmark::new("b", [11.0, 4.0, 2.5]),
        Landmark::new("far", [101.0, -2.0, 0.5]),
        Landmark::new("extra", [0.0, 0.0, 0.0]),
    ]);
    let r = tre(&fixed, &moving, &m, Some((&g, 0.0)), &|_| false);
    assert_eq!(r.pairing.fixed_only, vec!["lonely".to_string()]);
    assert_eq!(r.pairing.moving_only, vec!["extra".to_string()]);
    assert_eq!(
        r.count(Status::OutsideFixed),
        1,
        "the far landmark is flagged"
    );
    let after = r.after.expect("two used");
    assert_eq!(after.n, 2);
    assert!(after.max < 1e-4, "a: exact; b: exact");
    assert!((r.points[1].before_mm - (1.0f64 + 4.0 + 0.25).sqrt()).abs() < 1e-9);
    assert_eq!(r.robustness, Some(1.0));
    // Inverse: the moving point of "a" maps back to the fixed one.
    let (back, residual) = m.inverse_point([5.0, 2.0, 4.5]).expect("inside");
    assert!(residual < 1e-4 && (back[0] - 4.0).abs() < 1e-4 && (back[1] - 4.0).abs() < 1e-4);
}

#[test]
fn field_conventions_reduce_to_the_same_mapping() {
    // A displacement of (+1, +2, −1) mm expressed four ways on an LPS-stored grid.
    let a: Mat4 = [
        [-2.0, 0.0, 0.0, 30.0],
        [0.0, -2.0, 0.0, 20.0],
        [0.0, 0.0, 2.0, -10.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let g = grid([6, 5, 4], a);
    let n = g.voxels();
    let fill = |v: [f32; 3]| {
        Volume::from_data(g.clone(), 3, v.iter().flat_map(|c| vec![*c; n]).collect())
            .expect("sizes")
    };
    let want = {
        let mut m = Mapping::identity(&g);
        for (c, t) in [1.0f32, 2.0, -1.0].iter().enumerate() {
            for v in &mut m.coords.data[c * n..(c + 1) * n] {
                *v += t;
            }
        }
        m
    };
    let cases = [
        (fill([1.0, 2.0, -1.0]), FieldKind::DispRasMm),
        (fill([-1.0, -2.0, -1.0]), FieldKind::AntsLpsMm),
        (fill([-0.5, -1.0, -0.5]), FieldKind::DispVox),
        (want.coords.clone(), FieldKind::Mapped),
    ];
    for (field, kind) in cases {
        let (m, notice) = Mapping::from_field(&field, kind, &g).expect("mapping");
        assert!(notice.is_none());
        let worst = m
            .coords
            .data
            .iter()
            .zip(&want.coords.data)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{kind:?}: {worst}");
    }
}

#[test]
fn eval_cli_scores_a_pair_and_a_dataset() {
    let dir = scratch_dir("eval_cli");
    let exe = env!("CARGO_BIN_EXE_warpscope");
    let pair = shared("pairs/brain2mm_syn");
    let out = dir.join("report.json");
    let mapped = dir.join("mapped.nii.gz");
    let o = Command::new(exe)
        .args(["eval", "--pair", pair.to_str().expect("utf-8"), "--field"])
        .arg(pair.join("gt_disp.nii.gz"))
        .args(["--field-kind", "disp-ras", "--out"])
        .arg(&out)
        .arg("--mapped-out")
        .arg(&mapped)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("report")).expect("json");
    assert!(r["tre_mean"].as_f64().expect("tre") < 1e-3);
    // The written mapped image is read back as a field (its header names its kind).
    let o = Command::new(exe)
        .args(["eval", "--fixed"])
        .arg(pair.join("fixed.nii.gz"))
        .arg("--moving")
        .arg(pair.join("moving.nii.gz"))
        .arg("--field")
        .arg(&mapped)
        .arg("--landmarks")
        .arg(pair.join("landmarks.csv"))
        .arg("--fixed-labels")
        .arg(pair.join("fixed_labels.nii.gz"))
        .arg("--moving-labels")
        .arg(pair.join("moving_labels.nii.gz"))
        .arg("--mask")
        .arg(pair.join("fixed_mask.nii.gz"))
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("tre.after_mm.mean") && text.contains("labels.hd95_mean_mm"),
        "{text}"
    );
    // Dataset mode over the shared pairs: identity scores, one row each and a mean row.
    let csv = dir.join("table.csv");
    let o = Command::new(exe)
        .args(["eval", "--dataset"])
        .arg(shared("pairs"))
        .arg("--csv")
        .arg(&csv)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = std::fs::read_to_string(&csv).expect("csv");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("pair,tre_mean,tre_median,robustness"));
    assert!(
        lines.iter().any(|l| l.starts_with("brain2mm_syn,2.236")),
        "{table}"
    );
    assert!(lines.last().expect("rows").starts_with("mean,"));
}

#[test]
fn eval_cli_refuses_bad_fields_with_clear_messages() {
    let exe = env!("CARGO_BIN_EXE_warpscope");
    let pair = shared("pairs/brain2mm_syn");
    // A scalar image is not a field.
    let o = Command::new(exe)
        .args(["eval", "--pair"])
        .arg(&pair)
        .arg("--field")
        .arg(pair.join("moving.nii.gz"))
        .args(["--field-kind", "mapped"])
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("3 components") && !err.contains("panicked"),
        "{err}"
    );
    // A field whose kind cannot be told from its header.
    let o = Command::new(exe)
        .args(["eval", "--pair"])
        .arg(&pair)
        .arg("--field")
        .arg(pair.join("gt_disp.nii.gz"))
        .output()
        .expect("run");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--field-kind"));
}

#[test]
fn inverse_consistency_and_lesion_rates() {
    use warpscope::metrics::ic::ic_error;
    use warpscope::metrics::lesions::lesions;
    let g = grid([16, 16, 16], affine::IDENTITY);
    let n = g.voxels();
    let shifted = |t: [f32; 3]| {
        let mut m = Mapping::identity(&g);
        for (c, tc) in t.iter().enumerate() {
            for v in &mut m.coords.data[c * n..(c + 1) * n] {
                *v += tc;
            }
        }
        m
    };
    // Exact inverses: zero error wherever the round trip stays inside.
    let e = ic_error(&shifted([1.0, 0.0, -2.0]), &shifted([-1.0, 0.0, 2.0]));
    let finite: Vec<f32> = e.data.iter().copied().filter(|v| v.is_finite()).collect();
    assert!(finite.len() > n / 2 && finite.iter().all(|v| *v < 1e-5));
    // A backward map that undershoots by 0.5 mm along y leaves 0.5 mm everywhere.
    let e = ic_error(&shifted([0.0, 1.0, 0.0]), &shifted([0.0, -0.5, 0.0]));
    assert!(
        e.data
            .iter()
            .filter(|v| v.is_finite())
            .all(|v| (v - 0.5).abs() < 1e-5)
    );

    // Lesions: id 1 in both maps (found), id 2 only in the moving map (vanishing).
    let mut fixed = Volume::filled(g.clone(), 1, 0.0);
    let mut moving = Volume::filled(g.clone(), 1, 0.0);
    for z in 4..8 {
        for y in 4..8 {
            for x in 4..8 {
                let i = fixed.index(x, y, z);
                fixed.data[i] = 1.0;
                moving.data[i] = 1.0;
            }
        }
    }
    for z in 10..14 {
        for y in 10..14 {
            for x in 10..14 {
                let i = moving.index(x, y, z);
                moving.data[i] = 2.0;
            }
        }
    }
    let r = lesions(&fixed, &moving, &Mapping::identity(&g)).expect("lesions");
    assert_eq!(r.detection_rate(), Some(1.0));
    assert_eq!(
        r.mean_disappearing_rate(),
        Some(0.0),
        "the identity shrinks nothing"
    );
    // A mapping that contracts the neighbourhood of lesion 2 to half its size
    // (samples it twice as far from its centre) makes it shrink by 7/8.
    let mut m = Mapping::identity(&g);
    let centre = 11.5f32;
    for c in 0..3 {
        for v in &mut m.coords.data[c * n..(c + 1) * n] {
            if *v >= 8.0 {
                *v = centre + 2.0 * (*v - centre);
            }
        }
    }
    let r = lesions(&fixed, &moving, &m).expect("lesions");
    let rate = r.mean_disappearing_rate().expect("one vanishing lesion");
    assert!((rate - 0.875).abs() < 1e-9, "{rate}");
}

#[test]
fn eval_cli_resamples_labels_on_another_grid_and_refuses_an_empty_mask() {
    let dir = scratch_dir("eval_grids");
    let exe = env!("CARGO_BIN_EXE_warpscope");
    let pair = shared("pairs/brain2mm_syn");
    // Fixed labels on a coarser grid (nearest-neighbour resampled onto a 4 mm grid).
    let (labels, _) =
        nifti::read_file(pair.join("fixed_labels.nii.gz"), ReadOptions::default()).expect("labels");
    let coarse = warpscope::volume::pyramid::half_grid(&labels.grid);
    let moved = warpscope::volume::resample::resample(
        &labels,
        &coarse,
        warpscope::volume::resample::Interp::Nearest,
        warpscope::volume::resample::Border::Constant(0.0),
    )
    .expect("resample");
    let coarse_path = dir.join("labels_4mm.nii.gz");
    nifti::write_file(&coarse_path, &moved, &Default::default()).expect("write");
    let run = |extra: &[&std::path::Path]| {
        let mut c = Command::new(exe);
        c.args(["eval", "--fixed"])
            .arg(pair.join("fixed.nii.gz"))
            .arg("--moving")
            .arg(pair.join("moving.nii.gz"));
        for (i, p) in extra.iter().enumerate() {
            c.arg(["--fixed-labels", "--moving-labels", "--mask"][i])
                .arg(p);
        }
        c.output().expect("run")
    };
    let o = run(&[&coarse_path, &pair.join("moving_labels.nii.gz")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resampled (nearest neighbour)"));
    assert!(String::from_utf8_lossy(&o.stdout).contains("labels.dice_mean"));
    // An all-zero mask.
    let empty = dir.join("empty_mask.nii.gz");
    let zeros = Volume::filled(labels.grid.clone(), 1, 0.0);
    nifti::write_file(&empty, &zeros, &Default::default()).expect("write");
    let o = run(&[
        &pair.join("fixed_labels.nii.gz"),
        &pair.join("moving_labels.nii.gz"),
        &empty,
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("the mask is empty"));
}

#[test]
fn eval_cli_writes_landmarks_through_the_result_and_back() {
    let dir = scratch_dir("eval_warped_lm");
    let pair = shared("pairs/brain2mm_resect");
    let out = dir.join("warped.csv");
    let o = Command::new(env!("CARGO_BIN_EXE_warpscope"))
        .args(["eval", "--fixed"])
        .arg(pair.join("fixed.nii.gz"))
        .arg("--moving")
        .arg(pair.join("moving.nii.gz"))
        .arg("--field")
        .arg(pair.join("gt_disp.nii.gz"))
        .args(["--field-kind", "disp-ras", "--landmarks"])
        .arg(pair.join("landmarks.csv"))
        .arg("--warped-landmarks")
        .arg(&out)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&out).expect("csv");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .skip(1)
                .map(|v| v.parse().expect("number"))
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 120);
    for r in rows {
        // Through the true field: mapped = moving point, inverse = fixed point.
        assert!((0..3).all(|k| (r[3 + k] - r[6 + k]).abs() < 2e-3), "{r:?}");
        assert!((0..3).all(|k| (r[9 + k] - r[k]).abs() < 2e-3), "{r:?}");
        assert!(r[12] < 1e-3 && r[13] < 2e-3);
    }
}
