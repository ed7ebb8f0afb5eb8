//! The learned initial field (the `network` stage, methods.md §1 step 3):
//! the model shipped in `assets/models/` lowers TRE before any IO runs on
//! pairs it never saw; held as the IO's start, it lets `brats-ic` reach
//! brain shift that the IO alone does not; training lowers its loss, and a run stopped and
//! resumed from its checkpoint ends with the same weights as one that
//! never stopped; a model file that cannot be used is refused with a
//! message that says why, by the engine and by `register --init-model`.

mod common;

use std::path::Path;

use warpscope::landmarks::LandmarkSet;
use warpscope::register::model::train::{
    self, Ended, EpochReport, Monitor, Progress, Record, default_settings,
};
use warpscope::register::model::{Model, predict};
use warpscope::register::{self, Backend, Inputs, Link, Outcome, Pipeline, Status, make_device};
use warpscope::volume::nifti::{ReadOptions, read_file};

fn pair(name: &str) -> (Inputs, LandmarkSet, LandmarkSet) {
    common::shared_pair(name)
}

fn score(o: &Outcome, inputs: &Inputs, f: &LandmarkSet, m: &LandmarkSet) -> (f64, f64, f64) {
    common::score(o, &inputs.fixed.grid, f, m)
}

fn run(inputs: &Inputs, preset: &str, sets: &[&str]) -> Outcome {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let p = Pipeline::preset(preset)
        .expect("preset")
        .with_overrides(&sets)
        .expect("pipeline");
    let device = make_device(Backend::Cpu).expect("cpu");
    let o = register::register(inputs, p, &device, Link::default()).expect("register");
    assert_eq!(o.status, Status::Completed, "{sets:?}");
    o
}

/// The shipped model alone (no IO stage after it) on the two shared
/// pairs, neither of which it was trained on: brain2mm_syn from the
/// identity, brain2mm_resect (rotation, scaling, bias, a resection) after
/// the affine stage.
#[test]
fn the_shipped_model_lowers_tre_before_any_io() {
    let (inputs, f, m) = pair("brain2mm_syn");
    let net = run(
        &inputs,
        "fast",
        &[
            "affine.enabled=false",
            "deformable.enabled=false",
            "network.enabled=true",
        ],
    );
    let (before, after, folds) = score(&net, &inputs, &f, &m);
    println!(
        "brain2mm_syn: TRE {before:.3} -> {after:.3} mm with the network alone, {:.4} % folds",
        100.0 * folds
    );
    assert!(
        after < 0.85 * before,
        "brain2mm_syn: {before:.3} -> {after:.3} mm"
    );
    assert!(folds < 1e-3, "{:.4} % folds", 100.0 * folds);

    let (inputs, f, m) = pair("brain2mm_resect");
    let affine = run(&inputs, "fast", &["deformable.enabled=false"]);
    let net = run(
        &inputs,
        "fast",
        &["deformable.enabled=false", "network.enabled=true"],
    );
    let (before, affine_only, _) = score(&affine, &inputs, &f, &m);
    let (_, after, folds) = score(&net, &inputs, &f, &m);
    println!(
        "brain2mm_resect: TRE {before:.3} -> {affine_only:.3} mm (affine) -> {after:.3} mm (affine + network), {:.4} % folds",
        100.0 * folds
    );
    assert!(
        after < 0.9 * affine_only,
        "brain2mm_resect: affine {affine_only:.3} -> {after:.3} mm"
    );
    assert!(folds < 1e-3, "{:.4} % folds", 100.0 * folds);
}

/// The paper's pipeline (methods.md §1: affine → network → IO → IC
/// weighting) against the same without the network, on brain2mm_resect
/// with a few millimetres of brain shift added over a few centimetres
/// (`common::sharpened_pair`, which no model was trained on): `fast`'s IO
/// smooths its field at every step, so from the identity it cannot reach
/// deformation that sharp; from the network's field, held as it is
/// (`deformable.start = residual`), it refines instead of flattening it.
#[test]
fn brats_ic_with_the_network_beats_brats_ic_without_it_under_brain_shift() {
    let (inputs, f, m) = common::sharpened_pair("brain2mm_resect", 10.0, 6.0, 7);
    let without = run(&inputs, "brats-ic", &["network.enabled=false"]);
    let with = run(&inputs, "brats-ic", &["network.enabled=true"]);
    let (before, tre_without, folds_without) = score(&without, &inputs, &f, &m);
    let (_, tre_with, folds_with) = score(&with, &inputs, &f, &m);
    println!(
        "brain shift on brain2mm_resect: TRE {before:.3} mm before; brats-ic {tre_without:.3} mm \
         without the network ({:.4} % folds), {tre_with:.3} mm with it ({:.4} % folds)",
        100.0 * folds_without,
        100.0 * folds_with
    );
    assert!(
        tre_with < 0.95 * tre_without,
        "brats-ic {tre_without:.3} mm without the network, {tre_with:.3} mm with it"
    );
    assert!(folds_with < 1e-3, "{:.4} % folds", 100.0 * folds_with);
}

/// The network runs on whichever device the run uses: through burn's
/// conv3d on the wgpu device (lavapipe where there is no GPU) it predicts
/// the CPU's field.
#[test]
fn the_model_predicts_the_same_field_on_the_gpu_and_the_cpu() {
    let (inputs, _, _) = common::syn_pair_4mm();
    let sets: Vec<String> = [
        "affine.enabled=false",
        "deformable.enabled=false",
        "network.enabled=true",
    ]
    .map(String::from)
    .to_vec();
    let field = |backend| {
        let p = Pipeline::preset("fast")
            .expect("fast")
            .with_overrides(&sets)
            .expect("pipeline");
        let device = make_device(backend).expect("device (mesa-vulkan-drivers for wgpu)");
        let o = register::register(&inputs, p, &device, Link::default()).expect("register");
        assert_eq!(o.status, Status::Completed, "{backend:?}");
        o.field_vox.expect("a field")
    };
    let (cpu, gpu) = (field(Backend::Cpu), field(Backend::Gpu));
    let max_u = cpu.data.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_diff = cpu
        .data
        .iter()
        .zip(&gpu.data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("network field: up to {max_u:.3} voxels; CPU and GPU differ by up to {max_diff:.2e}");
    assert!(max_u > 0.2, "the field barely moved ({max_u})");
    assert!(
        max_diff < 0.01 * max_u,
        "CPU and GPU differ by {max_diff} (field up to {max_u})"
    );
}

/// A monitor that stops after `stop_after` iterations.
struct Counter {
    steps: usize,
    stop_after: Option<usize>,
    epochs: Vec<EpochReport>,
}

impl Monitor for Counter {
    fn step(&mut self, _p: &Progress) {
        self.steps += 1;
    }
    fn epoch(&mut self, r: &EpochReport, _c: &Path) {
        self.epochs.push(r.clone());
    }
    fn stop(&mut self) -> bool {
        self.stop_after.is_some_and(|k| self.steps >= k)
    }
}

fn record(epochs: usize) -> Record {
    let mut s = default_settings();
    s.epochs = epochs;
    s.supervised = 0.05;
    Record {
        settings: s,
        dataset: "test".into(),
        train_pairs: vec![],
        validation_pairs: vec![],
        epochs: vec![],
        iterations: 0,
        seconds: 0.0,
    }
}

/// Training on the 4 mm brain2mm_syn (its 16 and 8 mm levels) lowers the
/// loss and that pair's TRE; on it and brain2mm_resect, a run stopped in
/// the middle of an epoch and resumed from its checkpoint ends with the
/// weights of the run that never stopped.
#[test]
fn training_learns_and_resumes_where_it_stopped() {
    let device = make_device(Backend::Cpu).expect("cpu");
    let (inputs, f, m) = common::syn_pair_4mm();
    let gt = read_file(
        common::shared("pairs/brain2mm_syn/gt_disp.nii.gz"),
        ReadOptions::default(),
    )
    .expect("gt")
    .0;
    let gt = warpscope::volume::resample::resample(
        &gt,
        &inputs.fixed.grid,
        warpscope::volume::resample::Interp::Linear,
        warpscope::volume::resample::Border::Clamp,
    )
    .expect("gt at 4 mm");
    let s = record(3).settings;
    let syn = train::prepare_pair(
        "syn4",
        &inputs,
        Some(&gt),
        Some((f, m)),
        &s.architecture,
        &device,
    )
    .expect("pair");
    let (resect, _, _) = pair("brain2mm_resect");
    let down = |v: &warpscope::volume::Volume| warpscope::volume::pyramid::downsample2(v, 1.0);
    let resect = Inputs {
        fixed: down(&resect.fixed),
        moving: down(&resect.moving),
        fixed_mask: None,
        labels: None,
    };
    let resect = train::prepare_pair("resect4", &resect, None, None, &s.architecture, &device)
        .expect("pair");
    let pairs = vec![syn, resect];
    let validation = &pairs[..1];
    let dir = common::scratch_dir("learned_train");

    // Fitted to brain2mm_syn alone for 40 iterations, it learns that pair.
    let learned_out = dir.join("learned.wsm");
    let mut rec = record(40);
    let mut mon = Counter {
        steps: 0,
        stop_after: None,
        epochs: vec![],
    };
    let Ended::Completed(learned) = train::train(
        &mut rec,
        validation,
        validation,
        None,
        &learned_out,
        &device,
        &mut mon,
    )
    .expect("train") else {
        panic!("stopped")
    };
    let before = train::validation_tre(&s.architecture, &train::initial(&s, &device), validation)
        .expect("tre")
        .expect("landmarks");
    let after = mon
        .epochs
        .last()
        .and_then(|e| e.validation)
        .expect("validation");
    let losses: Vec<f64> = mon.epochs.iter().map(|e| e.mean_loss).collect();
    println!(
        "validation TRE: untrained {:.3} -> {:.3} mm, trained {:.3} mm; loss {:.4} -> {:.4}",
        before.0,
        before.1,
        after.1,
        losses[0],
        losses[losses.len() - 1]
    );
    assert!(
        after.1 < before.1 - 0.3,
        "untrained {:.3}, trained {:.3} mm",
        before.1,
        after.1
    );
    assert!(losses[losses.len() - 1] < losses[0]);
    assert_eq!(
        Model::read(&learned_out).expect("model").weights,
        learned.weights
    );

    // On both pairs, 3 epochs straight.
    let straight_out = dir.join("straight.wsm");
    let mut rec = record(3);
    let mut mon = Counter {
        steps: 0,
        stop_after: None,
        epochs: vec![],
    };
    let Ended::Completed(straight) = train::train(
        &mut rec,
        &pairs,
        validation,
        None,
        &straight_out,
        &device,
        &mut mon,
    )
    .expect("train") else {
        panic!("stopped")
    };

    // The same run, stopped after 3 of its 3 × 2 iterations (in the
    // middle of epoch 2), then resumed from its checkpoint.
    let out = dir.join("resumed.wsm");
    let mut rec = record(3);
    let mut mon = Counter {
        steps: 0,
        stop_after: Some(3),
        epochs: vec![],
    };
    let ended =
        train::train(&mut rec, &pairs, validation, None, &out, &device, &mut mon).expect("train");
    assert!(
        matches!(ended, Ended::Stopped { epoch: 1, step: 1 }),
        "stopped elsewhere"
    );
    let ckpt = Model::read(&train::checkpoint_path(&out)).expect("checkpoint");
    assert_eq!(
        ckpt.header.optimiser.as_ref().map(|o| o.iterations),
        Some(3)
    );
    let mut rec: Record = serde_json::from_value(ckpt.header.training.clone()).expect("record");
    let mut mon = Counter {
        steps: 0,
        stop_after: None,
        epochs: vec![],
    };
    let Ended::Completed(resumed) = train::train(
        &mut rec,
        &pairs,
        validation,
        Some(&ckpt),
        &out,
        &device,
        &mut mon,
    )
    .expect("resume") else {
        panic!("stopped")
    };
    assert_eq!(mon.steps, 3, "the resumed run did the 3 iterations left");
    assert_eq!(rec.epochs.len(), 3);
    for (a, b) in straight
        .weights
        .iter()
        .flatten()
        .zip(resumed.weights.iter().flatten())
    {
        assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
    }
}

/// A missing, truncated or foreign model file: the run fails with the
/// reason, and `register --init-model` refuses it before reading images.
#[test]
fn a_model_file_that_cannot_be_used_is_refused() {
    let dir = common::scratch_dir("learned_bad_models");
    let good = Model::builtin().expect("builtin").to_bytes();
    let truncated = dir.join("truncated.wsm");
    std::fs::write(&truncated, &good[..good.len() / 3]).expect("write");
    let foreign = dir.join("foreign.wsm");
    std::fs::write(&foreign, b"PK\x03\x04 a zip archive").expect("write");
    let mut newer = good.clone();
    newer[8] = 9;
    let version = dir.join("v9.wsm");
    std::fs::write(&version, &newer).expect("write");
    let missing = dir.join("missing.wsm");
    let cases = [
        (&missing, "no such file"),
        (&truncated, "truncated"),
        (&foreign, "not a Warpscope model"),
        (&version, "format version 9"),
    ];
    let (inputs, _, _) = common::syn_pair_4mm();
    let device = make_device(Backend::Cpu).expect("cpu");
    for (path, why) in cases {
        let p = Pipeline::preset("fast")
            .expect("fast")
            .with_overrides(&[
                "network.enabled=true".to_string(),
                format!("network.model={}", path.display()),
            ])
            .expect("pipeline");
        let o = register::register(&inputs, p, &device, Link::default()).expect("register");
        match &o.status {
            Status::Failed(m) => assert!(m.contains(why), "{}: {m}", path.display()),
            s => panic!("{}: {s:?}", path.display()),
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warpscope"))
            .args([
                "register",
                "--fixed",
                "/no/such/fixed.nii.gz",
                "--moving",
                "/no/such/moving.nii.gz",
            ])
            .arg("--init-model")
            .arg(path)
            .arg("--out")
            .arg(dir.join("out"))
            .output()
            .expect("run warpscope");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(why), "{}: {err}", path.display());
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The model's levels are at the voxel sizes it was trained at, whatever
/// the image's: a 2 mm image's 16, 8 and 4 mm pyramid levels as they are,
/// a 4 mm image's too (the last is the image itself), and a 2.5 mm
/// image's resampled to 16, 8 and 4 mm.
#[test]
fn the_model_levels_follow_the_voxel_size() {
    let model = Model::builtin().expect("builtin");
    let arch = model.architecture();
    assert_eq!(arch.levels_mm, [16.0, 8.0, 4.0]);
    let device = make_device(Backend::Cpu).expect("cpu");
    let (inputs, _, _) = pair("brain2mm_syn");
    let (small, _, _) = common::syn_pair_4mm();
    let g = &inputs.fixed.grid;
    let grid_25 = predict::grid_at(g, 2.5);
    let map = warpscope::volume::affine::inverse(&g.affine)
        .map(|inv| warpscope::volume::affine::mul(&inv, &grid_25.affine))
        .expect("invertible");
    let to_25 = |v: &warpscope::volume::Volume| {
        warpscope::volume::resample::resample_index_map(
            v,
            &grid_25,
            &map,
            warpscope::volume::resample::Interp::Linear,
            warpscope::volume::resample::Border::Clamp,
        )
    };
    let (f25, m25) = (to_25(&inputs.fixed), to_25(&inputs.moving));
    for (what, f, m) in [
        ("2 mm", &inputs.fixed, &inputs.moving),
        ("4 mm", &small.fixed, &small.moving),
        ("2.5 mm", &f25, &m25),
    ] {
        let lv = predict::levels(arch, f, m, &device);
        for (l, mm) in lv.iter().zip(&arch.levels_mm) {
            let s = l.grid.spacing_mm();
            for a in 0..3 {
                assert!((s[a] / mm - 1.0).abs() < 0.05, "{what}: {s:?} for {mm} mm");
                // The same field of view, to a voxel.
                let extent = |g: &warpscope::volume::Grid| g.dims[a] as f64 * g.spacing_mm()[a];
                assert!(
                    (extent(&l.grid) - extent(&f.grid)).abs() <= *mm + 1e-6,
                    "{what}: axis {a}"
                );
            }
        }
    }
    assert_eq!(predict::level_index(g, 16.0), 3);
    assert_eq!(predict::level_index(&small.fixed.grid, 16.0), 2);
    assert_eq!(predict::level_index(&grid_25, 16.0), 2);
}
