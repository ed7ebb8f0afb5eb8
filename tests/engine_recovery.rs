//! Registration recovers the known deformations of the shared synthetic
//! pairs (../shared/data/pairs): landmark TRE, folding, affine recovery and
//! the benefit of inverse-consistency weighting near a resection.

// Small matrix maths indexes rows and columns in step.
#![allow(clippy::needless_range_loop)]

mod common;

use serde_json::Value;
use warpscope::metrics::protocol::{Pair, evaluate};
use warpscope::register::{self, Backend, Inputs, Link, Outcome, Pipeline, Status, make_device};
use warpscope::volume::nifti::{ReadOptions, read_file};
use warpscope::volume::{Volume, affine, voxel_of};

fn read(path: &std::path::Path) -> Volume {
    read_file(path, ReadOptions::default())
        .expect("read shared data")
        .0
}

fn pair(name: &str) -> (Pair, Inputs) {
    let dir = common::shared(&format!("pairs/{name}"));
    let p = Pair::open(&dir).expect("open pair");
    let inputs = Inputs {
        fixed: read(&p.fixed),
        moving: read(&p.moving),
        fixed_mask: None,
        labels: None,
    };
    (p, inputs)
}

fn run(inputs: &Inputs, pipeline: Pipeline) -> Outcome {
    let device = make_device(Backend::Cpu).expect("cpu device");
    let o = register::register(inputs, pipeline, &device, Link::default()).expect("register");
    assert_eq!(o.status, Status::Completed);
    o
}

fn metric(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("report has no {key}: {report}"))
}

fn score(p: &Pair, inputs: &Inputs, o: &Outcome) -> Value {
    evaluate(p, Some(&o.mapping(&inputs.fixed.grid))).expect("evaluate")
}

#[test]
fn fast_and_lumir_recover_the_synthetic_deformation() {
    let (p, inputs) = pair("brain2mm_syn");
    let before = evaluate(&p, None).expect("evaluate identity");
    assert!((metric(&before, "tre_mean") - 2.24).abs() < 0.01);
    for preset in ["fast", "lumir"] {
        let o = run(&inputs, Pipeline::preset(preset).expect("preset"));
        let r = score(&p, &inputs, &o);
        let tre = metric(&r, "tre_mean");
        let folds = 100.0 * metric(&r, "jac_frac_nonpos");
        println!(
            "{preset}: TRE mean {tre:.3} mm, median {:.3} mm, folds {folds:.4} %, {:?}",
            metric(&r, "tre_median"),
            o.stage_seconds
        );
        // fast: at or below elastix's 0.35 mm on this pair (README).
        let limit = if preset == "fast" { 0.35 } else { 0.6 };
        assert!(tre < limit, "{preset}: mean TRE {tre:.3} mm (2.24 before)");
        assert!(folds < 0.1, "{preset}: {folds:.3} % of voxels fold");
    }
}

/// Rotation angle (degrees) of the orthogonal part of a 3×3 matrix.
fn rotation_deg(m: [[f64; 3]; 3]) -> f64 {
    // Polar decomposition by a few Newton steps: R = (R + R^-T) / 2.
    let mut r = m;
    for _ in 0..20 {
        let mut full = affine::IDENTITY;
        for i in 0..3 {
            for j in 0..3 {
                full[i][j] = r[i][j];
            }
        }
        let inv = affine::inverse(&full).expect("invertible");
        for i in 0..3 {
            for j in 0..3 {
                r[i][j] = 0.5 * (r[i][j] + inv[j][i]);
            }
        }
    }
    let tr = r[0][0] + r[1][1] + r[2][2];
    ((tr - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees()
}

/// Solve a 4×4 linear system by Gauss–Jordan with partial pivoting.
fn solve4(mut a: [[f64; 4]; 4], mut b: [[f64; 3]; 4]) -> [[f64; 3]; 4] {
    for col in 0..4 {
        let piv = (col..4)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .expect("rows");
        a.swap(col, piv);
        b.swap(col, piv);
        for r in 0..4 {
            if r != col {
                let f = a[r][col] / a[col][col];
                for c in 0..4 {
                    a[r][c] -= f * a[col][c];
                }
                for c in 0..3 {
                    b[r][c] -= f * b[col][c];
                }
            }
        }
    }
    for r in 0..4 {
        for c in 0..3 {
            b[r][c] /= a[r][r];
        }
    }
    b
}

/// The least-squares affine (world RAS, fixed → moving point) of the true
/// correspondence inside the fixed brain mask: the affine part of the
/// synthetic deformation, which the affine stage should find.
fn true_affine(p: &Pair, inputs: &Inputs) -> [[f64; 3]; 3] {
    let gt = read(p.gt_disp.as_ref().expect("gt_disp"));
    let mask = read(p.fixed_mask.as_ref().expect("mask"));
    let grid = &inputs.fixed.grid;
    let n = grid.voxels();
    let mut xtx = [[0.0; 4]; 4];
    let mut xty = [[0.0; 3]; 4];
    for i in (0..n).filter(|&i| mask.data[i] > 0.5) {
        let w = grid.voxel_to_world(voxel_of(i, grid.dims));
        let x = [w[0], w[1], w[2], 1.0];
        let y = [0, 1, 2].map(|c| w[c] + gt.data[c * n + i] as f64);
        for r in 0..4 {
            for c in 0..4 {
                xtx[r][c] += x[r] * x[c];
            }
            for c in 0..3 {
                xty[r][c] += x[r] * y[c];
            }
        }
    }
    let sol = solve4(xtx, xty);
    // y = Lᵀ x: L[i][j] = sol[j][i].
    std::array::from_fn(|i| std::array::from_fn(|j| sol[j][i]))
}

#[test]
fn affine_stage_recovers_the_rotation() {
    let (p, inputs) = pair("brain2mm_resect");
    let truth = true_affine(&p, &inputs);
    let true_angle = rotation_deg(truth);
    assert!(true_angle > 3.0, "the pair is rotated by {true_angle:.2}°");
    let pipeline = Pipeline::preset("fast")
        .expect("preset")
        .with_overrides(&["deformable.enabled=false".into()])
        .expect("set");
    let o = run(&inputs, pipeline);
    let wf = inputs.fixed.grid.affine;
    let world = affine::mul(
        &wf,
        &affine::mul(&o.affine_vox, &affine::inverse(&wf).expect("inv")),
    );
    let found: [[f64; 3]; 3] = std::array::from_fn(|i| std::array::from_fn(|j| world[i][j]));
    // Residual rotation: ours⁻¹ · truth (both near rotations about 4°).
    let mut full = affine::IDENTITY;
    for i in 0..3 {
        for j in 0..3 {
            full[i][j] = found[i][j];
        }
    }
    let inv = affine::inverse(&full).expect("invertible");
    let residual: [[f64; 3]; 3] = std::array::from_fn(|i| {
        std::array::from_fn(|j| (0..3).map(|k| inv[i][k] * truth[k][j]).sum())
    });
    let left = rotation_deg(residual);
    let r = score(&p, &inputs, &o);
    println!(
        "true rotation {true_angle:.2}°, found {:.2}°, residual {left:.2}°, TRE {:.3} → {:.3} mm",
        rotation_deg(found),
        metric(&r, "tre_before_mean"),
        metric(&r, "tre_mean")
    );
    assert!(
        left < 0.5,
        "rotation left after the affine stage: {left:.2}° of {true_angle:.2}°"
    );
    assert!(metric(&r, "tre_mean") < 0.6 * metric(&r, "tre_before_mean"));
}

/// Landmarks whose moving point lies within `within_mm` of the resected
/// region (the pair's `resection_moving` mask).
fn near_resection(p: &Pair, within_mm: f64) -> Vec<usize> {
    let region = read(&common::shared(&format!(
        "pairs/{}/resection_moving.nii.gz",
        p.name
    )));
    let voxels: Vec<[f64; 3]> = (0..region.voxels())
        .filter(|&i| region.data[i] > 0.5)
        .map(|i| region.grid.voxel_to_world(voxel_of(i, region.grid.dims)))
        .collect();
    assert!(!voxels.is_empty(), "the resection mask is empty");
    let text = std::fs::read_to_string(p.landmarks.as_ref().expect("landmarks")).expect("csv");
    text.lines()
        .skip(1)
        .enumerate()
        .filter_map(|(i, line)| {
            let m: Vec<f64> = line
                .split(',')
                .skip(4)
                .take(3)
                .map(|v| v.parse().expect("number"))
                .collect();
            let d = voxels
                .iter()
                .map(|v| {
                    ((m[0] - v[0]).powi(2) + (m[1] - v[1]).powi(2) + (m[2] - v[2]).powi(2)).sqrt()
                })
                .fold(f64::INFINITY, f64::min);
            (d <= within_mm).then_some(i)
        })
        .collect()
}

/// Mean TRE (mm) over the chosen landmarks, recomputed from the mapping.
fn tre_of(p: &Pair, inputs: &Inputs, o: &Outcome, chosen: &[usize]) -> f64 {
    let mapping = o.mapping(&inputs.fixed.grid);
    let text = std::fs::read_to_string(p.landmarks.as_ref().expect("landmarks")).expect("csv");
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .skip(1)
                .take(6)
                .map(|v| v.parse().expect("number"))
                .collect()
        })
        .collect();
    let errs: Vec<f64> = chosen
        .iter()
        .filter_map(|&i| {
            let r = &rows[i];
            let m = mapping.map_point([r[0], r[1], r[2]])?;
            Some(((m[0] - r[3]).powi(2) + (m[1] - r[4]).powi(2) + (m[2] - r[5]).powi(2)).sqrt())
        })
        .collect();
    assert!(!errs.is_empty());
    errs.iter().sum::<f64>() / errs.len() as f64
}

/// methods.md §1 step 5 on the resection pair: the round-trip error map
/// marks the cavity (it is down-weighted at least twice as much as the
/// rest of the brain), and brats-ic, which is fast plus the IC weighting,
/// lowers TRE at the landmarks within 15 mm of it without raising it
/// overall.
#[test]
fn ic_weighting_helps_near_the_resection() {
    let (p, mut inputs) = pair("brain2mm_resect");
    inputs.fixed_mask = None;
    let near = near_resection(&p, 15.0);
    assert!(
        near.len() >= 3,
        "only {} landmarks near the resection",
        near.len()
    );
    let with_ic = run(&inputs, Pipeline::preset("brats-ic").expect("preset"));
    let weights = with_ic.ic_weights.as_ref().expect("IC weights computed");
    let (lo, hi) = warpscope::volume::range_of(&weights.data).expect("range");
    assert!(
        lo >= -1e-4 && hi <= 1.0 + 1e-4 && hi - lo > 0.1,
        "weights span [{lo}, {hi}]"
    );
    let cavity = read(&common::shared(
        "pairs/brain2mm_resect/resection_fixed.nii.gz",
    ));
    let brain = read(&common::shared("pairs/brain2mm_resect/fixed_mask.nii.gz"));
    let mean_where = |keep: &dyn Fn(usize) -> bool| {
        let (s, n) = (0..weights.voxels())
            .filter(|&i| keep(i))
            .fold((0.0, 0), |(s, n), i| (s + weights.data[i] as f64, n + 1));
        s / n as f64
    };
    let in_cavity = mean_where(&|i| cavity.data[i] > 0.5);
    let elsewhere = mean_where(&|i| brain.data[i] > 0.5 && cavity.data[i] <= 0.5);
    let fast = run(&inputs, Pipeline::preset("fast").expect("preset"));
    let (a, b) = (
        tre_of(&p, &inputs, &with_ic, &near),
        tre_of(&p, &inputs, &fast, &near),
    );
    let (all_ic, all_fast) = (
        metric(&score(&p, &inputs, &with_ic), "tre_mean"),
        metric(&score(&p, &inputs, &fast), "tre_mean"),
    );
    println!(
        "mean weight in the cavity {in_cavity:.3}, elsewhere in the brain {elsewhere:.3}; \
         {} landmarks within 15 mm: brats-ic {a:.3} mm, fast {b:.3} mm; \
         overall brats-ic {all_ic:.3} mm, fast {all_fast:.3} mm",
        near.len()
    );
    // The cavity's down-weighting, 1 − w, at least twice the rest's.
    assert!(
        1.0 - in_cavity > 2.0 * (1.0 - elsewhere),
        "the map does not mark the cavity: {in_cavity:.3} vs {elsewhere:.3}"
    );
    assert!(
        a < b,
        "IC weighting: {a:.3} mm near the resection, fast {b:.3} mm"
    );
    assert!(
        all_ic <= all_fast,
        "overall {all_ic:.3} vs {all_fast:.3} mm"
    );
}

/// The GPU kernels (lavapipe where there is no GPU) register the shared
/// pair as the CPU does: `fast` on brain2mm_syn, TRE within 0.02 mm of the
/// CPU's, no more folds, every stage on the kernels.
#[test]
fn fast_on_the_gpu_matches_the_cpu_tre() {
    let (p, inputs) = pair("brain2mm_syn");
    let cpu = run(&inputs, Pipeline::preset("fast").expect("fast"));
    let device = make_device(Backend::Gpu).expect("wgpu device (mesa-vulkan-drivers)");
    let gpu = register::register(
        &inputs,
        Pipeline::preset("fast").expect("fast"),
        &device,
        Link::default(),
    )
    .expect("register");
    assert_eq!(gpu.status, Status::Completed);
    assert_eq!(
        common::dispatched_stages(&gpu),
        ["affine", "deformable"],
        "the GPU kernels ran every stage"
    );
    let (rc, rg) = (score(&p, &inputs, &cpu), score(&p, &inputs, &gpu));
    let (tc, tg) = (metric(&rc, "tre_mean"), metric(&rg, "tre_mean"));
    let (fc, fg) = (
        metric(&rc, "jac_frac_nonpos"),
        metric(&rg, "jac_frac_nonpos"),
    );
    println!(
        "fast: CPU TRE {tc:.4} mm ({:?}), GPU TRE {tg:.4} mm ({:?}); folds {fc:.2e} vs {fg:.2e}",
        cpu.stage_seconds, gpu.stage_seconds
    );
    assert!((tc - tg).abs() < 0.02, "TRE CPU {tc} vs GPU {tg}");
    assert!(fg <= fc + 1e-4, "folds CPU {fc} vs GPU {fg}");
}
