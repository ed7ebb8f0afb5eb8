//! Every named preset registers a small synthetic pair: it lowers the
//! landmark TRE and does not fold. The pair is brain2mm_syn brought to
//! 4 mm (54×63×52; its landmarks are in world mm, so they stay valid),
//! small enough for the slower presets on two cores.

mod common;

use warpscope::landmarks::LandmarkSet;
use warpscope::landmarks::formats::parse_pair_csv;
use warpscope::metrics::{jacobian, tre};
use warpscope::register::{self, Backend, Inputs, Link, Outcome, Pipeline, Status, make_device};
use warpscope::volume::nifti::{ReadOptions, read_file};

fn small_pair() -> (Inputs, LandmarkSet, LandmarkSet) {
    common::syn_pair_4mm()
}

fn mean_tre(o: &Outcome, inputs: &Inputs, f: &LandmarkSet, m: &LandmarkSet) -> f64 {
    let mapping = o.mapping(&inputs.fixed.grid);
    tre::tre(f, m, &mapping, None, &|_| false)
        .after
        .expect("landmarks mapped")
        .mean
}

/// methods.md §1 step 3: with `initial`, the deformable stage starts from
/// another preset's field. With no iterations of its own, the deformable
/// stage then returns fast's field, on the CPU and on the GPU kernels
/// alike.
#[test]
fn the_initial_field_is_where_the_deformable_stage_starts() {
    let (inputs, f, m) = small_pair();
    // One level: the start is read on the full-resolution grid. (Through
    // coarser levels it is resampled down and up, which loses detail: on
    // this pair 0.80 → 0.96 mm with fast's three levels.)
    let sets = [
        "initial.enabled=true",
        "deformable.levels=1",
        "deformable.iterations=0",
    ]
    .map(String::from);
    let mut cpu_tre: Option<f64> = None;
    for backend in [Backend::Cpu, Backend::Gpu] {
        let device = make_device(backend).expect("device (mesa-vulkan-drivers for wgpu)");
        let run = |p: Pipeline| {
            let o = register::register(&inputs, p, &device, Link::default()).expect("register");
            assert_eq!(o.status, Status::Completed);
            o
        };
        let fast = run(Pipeline::preset("fast").expect("fast"));
        let started = run(Pipeline::preset("fast")
            .expect("fast")
            .with_overrides(&sets)
            .expect("sets"));
        let stages: Vec<&str> = started
            .stage_seconds
            .iter()
            .map(|(s, _)| s.as_str())
            .collect();
        assert_eq!(stages, ["affine", "initial", "deformable"]);
        let (a, b) = (
            mean_tre(&fast, &inputs, &f, &m),
            mean_tre(&started, &inputs, &f, &m),
        );
        println!("{backend:?}: fast TRE {a:.3} mm, started from fast's field {b:.3} mm");
        assert!((a - b).abs() < 0.05, "{a} vs {b}");
        if let Some(c) = cpu_tre {
            assert!((a - c).abs() < 0.02, "CPU {c} vs GPU {a}");
        }
        cpu_tre = Some(a);
    }
}

#[test]
fn every_preset_lowers_tre_without_folding() {
    let (inputs, fixed_lm, moving_lm) = small_pair();
    let device = make_device(Backend::Cpu).expect("cpu device");
    let mut rows = Vec::new();
    for name in warpscope::register::params::PRESETS {
        let o = register::register(
            &inputs,
            Pipeline::preset(name).expect("preset"),
            &device,
            Link::default(),
        )
        .expect("register");
        assert_eq!(o.status, Status::Completed, "{name}");
        let mapping = o.mapping(&inputs.fixed.grid);
        let report = tre::tre(&fixed_lm, &moving_lm, &mapping, None, &|_| false);
        let (before, after) = (
            report.before.as_ref().expect("landmarks used").mean,
            report.after.as_ref().expect("landmarks mapped").mean,
        );
        let det = jacobian::determinant(&mapping);
        let folds = jacobian::stats(&det, &mapping, None)
            .expect("jacobian")
            .frac_nonpos;
        rows.push(format!(
            "{name:<10} TRE {before:.3} → {after:.3} mm, det J ≤ 0 at {:.4} %",
            100.0 * folds
        ));
        println!("{}", rows.last().expect("row"));
        assert!(
            after < 0.9 * before,
            "{name}: TRE {before:.3} → {after:.3} mm"
        );
        assert!(
            folds < 1e-4,
            "{name}: {:.4} % of voxels fold",
            100.0 * folds
        );
    }
}

/// methods.md §5's multi-step refinement: registering the warped image
/// again and composing beats one run of the same schedule (a short one,
/// which leaves something to refine), on the CPU and the GPU kernels.
#[test]
fn two_refinement_steps_beat_one() {
    let (inputs, f, m) = small_pair();
    for backend in [Backend::Cpu, Backend::Gpu] {
        let device = make_device(backend).expect("device (mesa-vulkan-drivers for wgpu)");
        let run = |steps: &str| {
            let p = Pipeline::preset("fast")
                .expect("fast")
                .with_overrides(&[
                    "affine.enabled=false".into(),
                    "deformable.iterations=8,6,4".into(),
                    format!("deformable.steps={steps}"),
                ])
                .expect("pipeline");
            let o = register::register(&inputs, p, &device, Link::default()).expect("register");
            assert_eq!(o.status, Status::Completed);
            o
        };
        let one = run("1");
        let two = run("2");
        let (a, b) = (
            mean_tre(&one, &inputs, &f, &m),
            mean_tre(&two, &inputs, &f, &m),
        );
        let stages: Vec<&str> = two.stage_seconds.iter().map(|(s, _)| s.as_str()).collect();
        println!("{backend:?}: one run {a:.3} mm, two (refined once) {b:.3} mm; stages {stages:?}");
        assert!(b < 0.95 * a, "{backend:?}: refined {b:.3} vs {a:.3} mm");
        let folds = folds(&two, &inputs);
        assert!(folds < 1e-4, "{backend:?}: {:.4} % folds", 100.0 * folds);
    }
}

fn folds(o: &Outcome, inputs: &Inputs) -> f64 {
    common::folds(o, &inputs.fixed.grid)
}

/// methods.md §5's gradient parametrisation: with the same unregularised
/// schedule (no smoothing, no diffusion) the plain displacement folds a
/// fifth of the image; parametrised by its log-derivatives, the three
/// axis maps composed, the map does not fold, and it registers. (The map
/// is injective by construction; the voxel-grid det J that `eval` reports
/// can still dip below 0 where the log-derivative jumps between
/// neighbours, so the field is smoothed by σ 1 voxel after each step as
/// in `fast`: 0 folds. Unsmoothed at lr 0.01 on the 2 mm pair: 0.63 %.)
#[test]
fn the_gradient_parametrisation_does_not_fold_where_the_field_does() {
    let (inputs, f, m) = small_pair();
    let device = make_device(Backend::Cpu).expect("cpu");
    let run = |sets: &[&str]| {
        let mut all = vec![
            "affine.enabled=false",
            "finest_mm=0",
            "deformable.iterations=60,40,30",
            "deformable.smooth_grad_mm=0",
        ];
        all.extend_from_slice(sets);
        let p = Pipeline::preset("fast")
            .expect("fast")
            .with_overrides(&all.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("pipeline");
        let o = register::register(&inputs, p, &device, Link::default()).expect("register");
        assert_eq!(o.status, Status::Completed, "{sets:?}");
        o
    };
    let plain = run(&["deformable.lr=0.1", "deformable.smooth_warp_vox=0"]);
    let gradient = run(&[
        "deformable.lr=0.02",
        "deformable.smooth_warp_vox=1",
        "deformable.parametrisation=gradient",
    ]);
    let (tre_plain, tre_gradient) = (
        mean_tre(&plain, &inputs, &f, &m),
        mean_tre(&gradient, &inputs, &f, &m),
    );
    let (folds_plain, folds_gradient) = (folds(&plain, &inputs), folds(&gradient, &inputs));
    println!(
        "plain field: TRE {tre_plain:.3} mm, {:.3} % folds; gradient parametrisation: \
         TRE {tre_gradient:.3} mm, {:.4} % folds",
        100.0 * folds_plain,
        100.0 * folds_gradient
    );
    assert!(folds_plain > 0.01, "the plain field should fold here");
    assert_eq!(folds_gradient, 0.0);
    assert!(tre_gradient < 0.6 * 2.236, "TRE {tre_gradient:.3} mm");
    // A start field has no log-derivatives: refused, not ignored.
    let refused = Pipeline::preset("fast").expect("fast").with_overrides(&[
        "deformable.parametrisation=gradient".to_string(),
        "network.enabled=true".to_string(),
    ]);
    assert!(refused.is_err());
}

/// methods.md §5's Dice loss: with brain2mm_syn's tissue labels
/// (CSF, grey, white matter) and `deformable.dice`, the labels overlap
/// better after registration than with the image similarity alone, and
/// the landmarks do not suffer. The 2 mm pair registered on its 4 mm level
/// (`finest_mm` 4), the loss comparing the 2 mm label maps: label maps
/// brought down to 4 mm lose the thin CSF and mislead it.
#[test]
fn the_dice_loss_raises_dice() {
    use warpscope::metrics::overlap::label_scores;
    use warpscope::register::Labels;
    use warpscope::volume::resample::Interp;
    let dir = common::shared("pairs/brain2mm_syn");
    let read = |name: &str| {
        read_file(dir.join(name), ReadOptions::default())
            .expect("read")
            .0
    };
    let (lf, lm) = (read("fixed_labels.nii.gz"), read("moving_labels.nii.gz"));
    let mut inputs = Inputs {
        fixed: read("fixed.nii.gz"),
        moving: read("moving.nii.gz"),
        fixed_mask: None,
        labels: Some(Labels {
            fixed: lf.clone(),
            moving: lm.clone(),
        }),
    };
    let text = std::fs::read_to_string(dir.join("landmarks.csv")).expect("landmarks");
    let (f, m) = parse_pair_csv(&text, "landmarks.csv").expect("pair csv");
    let grid = inputs.fixed.grid.clone();
    let device = make_device(Backend::Cpu).expect("cpu");
    let mean_dice = |o: &Outcome| {
        let warped = o.mapping(&grid).warp(&lm, Interp::Nearest).expect("warp");
        let d: Vec<f64> = label_scores(&lf, &warped, false)
            .iter()
            .filter_map(|s| s.dice)
            .collect();
        assert_eq!(d.len(), 3, "three tissue labels");
        d.iter().sum::<f64>() / 3.0
    };
    let run = |inputs: &Inputs, dice: &str| {
        let p = Pipeline::preset("fast")
            .expect("fast")
            .with_overrides(&[
                "affine.enabled=false".into(),
                "finest_mm=4".into(),
                "deformable.iterations=150,100,20".into(),
                format!("deformable.dice={dice}"),
            ])
            .expect("pipeline");
        register::register(inputs, p, &device, Link::default())
    };
    let plain = run(&inputs, "0").expect("register");
    let with_dice = run(&inputs, "1").expect("register");
    assert_eq!(with_dice.status, Status::Completed);
    let (a, b) = (mean_dice(&plain), mean_dice(&with_dice));
    let (ta, tb) = (
        mean_tre(&plain, &inputs, &f, &m),
        mean_tre(&with_dice, &inputs, &f, &m),
    );
    println!("mean Dice {a:.4} -> {b:.4} with the Dice loss; TRE {ta:.3} -> {tb:.3} mm");
    assert!(b > a + 0.01, "Dice {a:.4} -> {b:.4}");
    assert!(tb < ta + 0.05, "TRE {ta:.3} -> {tb:.3} mm");
    assert!(
        with_dice.final_terms.iter().any(|(n, _)| n == "dice"),
        "{:?}",
        with_dice.final_terms
    );
    // Without label maps the weight is refused before anything runs.
    inputs.labels = None;
    let e = run(&inputs, "1").expect_err("no labels");
    assert!(e.0.contains("label maps"), "{e}");
}
