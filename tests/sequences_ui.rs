//! Multi-sequence pairs in the viewer (one file per sequence, as BraTS
//! ships T1, T1ce, T2 and FLAIR): sequences added to the fixed and moving
//! images are stacked as channels, shown by name, registered together as
//! `register --fixed a --fixed b` does, kept in sessions, and a sequence on
//! another grid is refused with a message.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::scratch_dir;
use common::ui::{harness, settle, write};
use egui_kittest::kittest::Queryable;
use warpscope::app::{Role, Source, Startup};
use warpscope::volume::{Grid, Volume, affine};

fn grid() -> Grid {
    Grid::new([20, 18, 14], affine::diagonal([2.0, 2.0, 2.0]))
}

/// A smooth blob shifted by `dx` voxels; `invert` gives the second
/// sequence its own contrast (dark where the first is bright).
fn sequence(g: &Grid, dx: f64, invert: bool) -> Volume {
    let mut v = Volume::filled(g.clone(), 1, 0.0);
    let c = [9.5 + dx, 8.5, 6.5];
    for i in 0..v.data.len() {
        let p = warpscope::volume::voxel_of(i, g.dims);
        let r2: f64 = (0..3).map(|a| (p[a] - c[a]).powi(2)).sum();
        let b = (-r2 / 18.0).exp() as f32;
        v.data[i] = if invert { 1.0 - b } else { b };
    }
    v
}

/// fixed_t1, fixed_t2, moving_t1, moving_t2 on disk.
fn files(dir: &Path) -> [PathBuf; 4] {
    let g = grid();
    let names = ["fixed_t1", "fixed_t2", "moving_t1", "moving_t2"];
    let paths = names.map(|n| dir.join(format!("{n}.nii.gz")));
    for (k, p) in paths.iter().enumerate() {
        let dx = if k < 2 { 0.0 } else { 1.5 };
        write(p, &sequence(&g, dx, k % 2 == 1), "test");
    }
    paths
}

#[test]
fn sequences_stack_register_together_and_survive_a_session() {
    let dir = scratch_dir("ui_sequences");
    let [f1, f2, m1, m2] = files(&dir);
    // Repeated roles at start-up (`warpscope --fixed a --fixed b`) add sequences.
    let mut h = harness(Startup {
        images: vec![
            (Role::Fixed, Source::Path(f1.clone())),
            (Role::Moving, Source::Path(m1.clone())),
            (Role::Fixed, Source::Path(f2.clone())),
        ],
        ..Default::default()
    });
    settle(&mut h);
    // The moving image's second sequence through the panel's typed path.
    h.get_by_label("Open a path").click();
    h.run_steps(2);
    h.get_by_label("path").focus();
    h.run_steps(1);
    h.get_by_label("path").type_text(&m2.display().to_string());
    h.run_steps(1);
    h.get_by_label("as").click();
    h.run_steps(2);
    // The combo's popup is drawn last.
    h.query_all_by_label("moving image")
        .last()
        .expect("the role list is open")
        .click();
    h.run_steps(1);
    h.get_by_label("as another sequence").click();
    h.run_steps(1);
    h.get_by_label("Open").click();
    h.run_steps(2);
    settle(&mut h);
    let app = h.state();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    for (role, names) in [
        (Role::Fixed, ["fixed_t1.nii.gz", "fixed_t2.nii.gz"]),
        (Role::Moving, ["moving_t1.nii.gz", "moving_t2.nii.gz"]),
    ] {
        let img = app.images.get(role).expect("loaded");
        assert_eq!(img.volume.channels, 2, "{role:?}");
        assert_eq!(img.channel_names, names, "{role:?}");
        // The second channel is the second file's data.
        let n = img.volume.grid.voxels();
        assert!((img.volume.data[n + 5] - (1.0 - img.volume.data[5])).abs() < 1e-3);
    }

    // Both sequences go to the engine (as register --fixed a --fixed b).
    let mut p = warpscope::register::Pipeline::preset("fast").expect("fast");
    p.affine.enabled = false;
    p.deformable.levels = 1;
    p.deformable.iterations = vec![10];
    h.state_mut().set_pipeline(p);
    h.state_mut().reg.device = warpscope::app::live::DeviceChoice::Cpu;
    h.state_mut().start_run();
    let deadline = Instant::now() + Duration::from_secs(120);
    while h.state().reg.running() {
        assert!(Instant::now() < deadline, "the run did not end");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    let app = h.state();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    let kept = app.reg.kept.get(&1).expect("run 1 kept");
    assert_eq!(kept.sources.fixed.len(), 2, "{:?}", kept.sources.fixed);
    assert_eq!(kept.sources.moving.len(), 2, "{:?}", kept.sources.moving);
    assert_eq!(app.reg.history[0].status, "completed");

    // A session keeps every sequence; opening it stacks them again.
    let session = dir.join("pair.warpscope.json");
    h.state_mut().save_session(&session);
    let saved = warpscope::session_file::SessionFile::read(&session).expect("saved");
    assert_eq!(saved.images.fixed, ["fixed_t1.nii.gz", "fixed_t2.nii.gz"]);
    assert_eq!(
        saved.images.moving,
        ["moving_t1.nii.gz", "moving_t2.nii.gz"]
    );
    let mut h2 = harness(Startup {
        session: Some(session),
        ..Default::default()
    });
    settle(&mut h2);
    settle(&mut h2);
    let app = h2.state();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    assert_eq!(
        app.images.fixed.as_ref().map(|i| i.volume.channels),
        Some(2)
    );
    assert_eq!(
        app.images.moving.as_ref().map(|i| i.volume.channels),
        Some(2)
    );
}

#[test]
fn a_sequence_on_another_grid_is_refused_and_the_image_is_kept() {
    let dir = scratch_dir("ui_sequences_grid");
    let [f1, ..] = files(&dir);
    let other = dir.join("other.nii.gz");
    let g = Grid::new([10, 9, 7], affine::diagonal([4.0, 4.0, 4.0]));
    write(&other, &sequence(&g, 0.0, false), "test");
    let mut h = harness(Startup {
        images: vec![(Role::Fixed, Source::Path(f1))],
        ..Default::default()
    });
    settle(&mut h);
    h.state_mut().add_sequence(Role::Fixed, other);
    settle(&mut h);
    let app = h.state();
    let errors = app.errors();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("other.nii.gz") && e.contains("grid")),
        "{errors:?}"
    );
    let img = app.images.fixed.as_ref().expect("kept");
    assert_eq!(img.volume.channels, 1);
    assert_eq!(img.channel_names, ["fixed_t1.nii.gz"]);
}
