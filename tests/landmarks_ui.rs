//! The landmark workflow through the viewer (egui_kittest, wgpu on
//! lavapipe): placing pairs by clicks, moving, undo/redo, the TRE table
//! against `warpscope eval`, the autosave, and bad landmark files.

mod common;

use std::path::Path;

use common::ui::{click, demo_copy, drag, harness, settle, startup, write};
use common::{scratch_dir, warpscope};
use eframe::egui;
use egui_kittest::kittest::Queryable;
use warpscope::app::{LandmarkFile, Role, Startup};
use warpscope::landmarks::formats::Side;
use warpscope::metrics::tre::Status;
use warpscope::render::geometry::world_bounds;
use warpscope::render::{Convention, Plane};
use warpscope::volume::Volume;
use warpscope::volume::nifti;

/// The fixed point of landmark `id`.
fn fixed_of(h: &egui_kittest::Harness<'static, warpscope::app::ViewerApp>, id: &str) -> [f64; 3] {
    h.state()
        .lm
        .editor
        .get(id)
        .and_then(|p| p.fixed)
        .unwrap_or_else(|| panic!("landmark {id} has a fixed point"))
}

fn close(a: [f64; 3], b: [f64; 3], tol: f64) -> bool {
    (0..3).all(|k| (a[k] - b[k]).abs() <= tol)
}

#[test]
fn pairs_placed_by_clicks_sit_where_the_mouse_was_in_both_conventions() {
    let dir = scratch_dir("lm_place");
    let (f, m, _) = demo_copy(&dir);
    let mut h = harness(Startup {
        config_dir: Some(dir.join("config")),
        ..startup(&[(Role::Fixed, &f), (Role::Moving, &m)])
    });
    settle(&mut h);
    h.key_press(egui::Key::K);
    h.run_steps(2);
    assert!(h.state().lm.mode, "K turns landmark mode on");
    let centre_x = {
        let b = h.state().view.nav.bounds;
        0.5 * (b.0[0] + b.1[0])
    };
    let mut placed = Vec::new();
    for (convention, spots) in [
        (
            Convention::Radiological,
            [(0.40, 0.35), (0.58, 0.45), (0.47, 0.62)],
        ),
        (
            Convention::Neurological,
            [(0.38, 0.55), (0.60, 0.30), (0.52, 0.70)],
        ),
    ] {
        h.state_mut().view.nav.convention = convention;
        h.run_steps(2);
        for (u, v) in spots {
            let rect = h.state().view_rect(Plane::Axial).expect("axial view");
            let size = [f64::from(rect.width()), f64::from(rect.height())];
            // Where the click should land: the axial view's slice stays, so its map is fixed.
            let want = h.state().view.nav.view(Plane::Axial).world_at([u, v], size);
            let pos = rect.min + egui::vec2(u as f32 * rect.width(), v as f32 * rect.height());
            click(&mut h, pos);
            let app = h.state();
            let id = app.lm.selected.clone().expect("the new pair is selected");
            let pair = app.lm.editor.get(&id).expect("placed").clone();
            let fixed = pair.fixed.expect("fixed point");
            assert!(
                close(fixed, want, 0.1),
                "{convention:?} ({u}, {v}): {fixed:?} vs {want:?}"
            );
            // Without a field the moving point starts at the same place.
            assert_eq!(pair.moving, Some(fixed));
            // Left of the view's centre is the patient's right (+x) only in radiological display.
            let right_of_patient = fixed[0] > centre_x;
            assert_eq!(
                right_of_patient,
                (u < 0.5) == (convention == Convention::Radiological)
            );
            // The crosshair follows the new point.
            assert!(
                close(app.view.nav.cursor_ras, fixed, 1e-9),
                "{:?} vs {fixed:?}",
                app.view.nav.cursor_ras
            );
            placed.push(id);
        }
    }
    assert_eq!(placed, vec!["1", "2", "3", "4", "5", "6"]);
    assert_eq!(h.state().lm.editor.pairs().len(), 6);

    // Move the last point by dragging its glyph, then undo and redo (ctrl-Z, ctrl-Y).
    let rect = h.state().view_rect(Plane::Axial).expect("axial view");
    let size = [f64::from(rect.width()), f64::from(rect.height())];
    let view = h.state().view.nav.view(Plane::Axial);
    let before = fixed_of(&h, "6");
    let uv = view.uv_of(before, size);
    let from = rect.min + egui::vec2(uv[0] as f32 * rect.width(), uv[1] as f32 * rect.height());
    let to = from + egui::vec2(30.0, -20.0);
    drag(&mut h, from, to);
    let want = view.world_at(
        [
            f64::from((to.x - rect.left()) / rect.width()),
            f64::from((to.y - rect.top()) / rect.height()),
        ],
        size,
    );
    let moved = fixed_of(&h, "6");
    assert!(close(moved, want, 0.1), "{moved:?} vs {want:?}");
    assert_eq!(h.state().lm.editor.pairs().len(), 6, "a drag adds nothing");
    h.key_press_modifiers(egui::Modifiers::CTRL, egui::Key::Z);
    h.run_steps(2);
    let undone = fixed_of(&h, "6");
    assert!(
        close(undone, before, 1e-9),
        "one undo reverts the whole drag"
    );
    h.key_press_modifiers(egui::Modifiers::CTRL, egui::Key::Y);
    h.run_steps(2);
    let redone = fixed_of(&h, "6");
    assert!(close(redone, moved, 1e-9));
    // Delete removes the selected pair; undo brings it back.
    h.key_press(egui::Key::Delete);
    h.run_steps(2);
    assert!(h.state().lm.editor.get("6").is_none());
    h.key_press_modifiers(egui::Modifiers::CTRL, egui::Key::Z);
    h.run_steps(2);
    assert!(h.state().lm.editor.get("6").is_some());
}

/// A smooth field (voxels) on the demo's fixed grid, up to 2 voxels.
fn demo_field(fixed: &Path, out: &Path) {
    let g = nifti::read_file(fixed, Default::default())
        .expect("fixed")
        .0
        .grid;
    let n = g.voxels();
    let mut u = Volume::filled(g.clone(), 3, 0.0);
    for i in 0..n {
        let p = warpscope::volume::voxel_of(i, g.dims);
        u.data[i] = (2.0 * (p[1] / 9.0).sin()) as f32;
        u.data[n + i] = (1.5 * (p[2] / 7.0).cos()) as f32;
        u.data[2 * n + i] = (1.0 * (p[0] / 8.0).sin()) as f32;
    }
    write(out, &u, "warpscope:field_vox fixed->moving");
}

#[test]
fn the_tre_table_equals_what_eval_prints_for_the_same_files() {
    let dir = scratch_dir("lm_table");
    let (f, m, l) = demo_copy(&dir);
    let u = dir.join("field_vox.nii.gz");
    demo_field(&f, &u);
    let mut h = harness(Startup {
        landmarks: vec![(LandmarkFile::Pairs, l.clone())],
        ..startup(&[(Role::Fixed, &f), (Role::Moving, &m), (Role::Field, &u)])
    });
    settle(&mut h);
    let app = h.state();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    assert_eq!(app.lm.editor.pairs().len(), 120);
    let shown = app.lm.report.as_ref().expect("TRE computed").table_text();
    let s = |p: &Path| p.display().to_string();
    let (ok, stdout, stderr) = warpscope(&[
        "eval",
        "--fixed",
        &s(&f),
        "--moving",
        &s(&m),
        "--field",
        &s(&u),
        "--landmarks",
        &s(&l),
    ]);
    assert!(ok, "{stderr}");
    let printed = stdout.split("\n\n").next().unwrap_or("").to_string() + "\n";
    assert_eq!(shown, printed, "the viewer's table and eval's");
    // And the table on screen shows those figures.
    let report = app.lm.report.clone().expect("report");
    let first = &report.points[0];
    let after = warpscope::metrics::tre::fmt_mm(first.after_mm.expect("mapped"));
    h.run_steps(2);
    assert!(
        !h.query_all_by_label(&after).collect::<Vec<_>>().is_empty(),
        "{after} on screen"
    );
    h.get_by_label_contains("120 of 120 paired landmarks used");
    // The file's own column is shown, and written back with the pairs.
    h.get_by_label("in_resection");
    let saved = dir.join("saved_pairs.csv");
    h.state_mut().save_landmarks(
        LandmarkFile::Pairs,
        warpscope::landmarks::formats::Format::PairCsv,
        &saved,
    );
    let text = std::fs::read_to_string(&saved).expect("saved pairs");
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.ends_with(",in_resection")),
        "{}",
        text.lines().next().unwrap_or("")
    );
    // A click on a row moves every view to that landmark.
    let id = report.points[3].id.clone();
    h.state_mut().jump_to_landmark(&id);
    let p = h
        .state()
        .lm
        .editor
        .get(&id)
        .and_then(|p| p.fixed)
        .expect("fixed point");
    assert!(close(h.state().view.nav.cursor_ras, p, 1e-9));
}

#[test]
fn the_autosave_restores_every_point_after_the_app_is_gone() {
    let dir = scratch_dir("lm_autosave");
    let (f, m, _) = demo_copy(&dir);
    let mut h = harness(startup(&[(Role::Fixed, &f), (Role::Moving, &m)]));
    settle(&mut h);
    h.state_mut().lm.mode = true;
    let c = h.state().view.nav.cursor_ras;
    for k in 0..4 {
        h.state_mut()
            .place_landmark([c[0] + 7.0 * k as f64, c[1] - 3.0, c[2] + 1.5]);
    }
    h.state_mut().lm.side = Side::Moving;
    h.state_mut().lm.selected = Some("2".into());
    h.state_mut().place_landmark([c[0] + 9.0, c[1], c[2]]);
    h.run_steps(2);
    let pairs = h.state().lm.editor.pairs().to_vec();
    assert_eq!(pairs.len(), 4);
    let sidecar = dir.join("fixed.nii.gz.warpscope-landmarks.json");
    assert!(sidecar.is_file(), "written beside the fixed image");
    drop(h); // as good as a crash: nothing is saved on the way out
    let mut h = harness(startup(&[(Role::Fixed, &f), (Role::Moving, &m)]));
    settle(&mut h);
    assert_eq!(h.state().lm.editor.pairs(), pairs.as_slice());
    assert!(
        !h.query_all_by_label_contains("restored 4 landmark(s)")
            .collect::<Vec<_>>()
            .is_empty()
    );
}

#[test]
fn bad_landmark_files_are_flagged_not_dropped() {
    let dir = scratch_dir("lm_bad");
    let (f, m, l) = demo_copy(&dir);
    let mut h = harness(startup(&[(Role::Fixed, &f), (Role::Moving, &m)]));
    settle(&mut h);
    let grid = h
        .state()
        .images
        .fixed
        .as_ref()
        .expect("fixed")
        .volume
        .grid
        .clone();

    // Landmarks of another image: the demo's pairs moved 300 mm to the right.
    let text = std::fs::read_to_string(&l).expect("landmarks");
    let mut shifted = String::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            shifted += line;
        } else {
            let mut c: Vec<String> = line.split(',').map(String::from).collect();
            for k in [1, 4] {
                c[k] = format!("{}", c[k].parse::<f64>().expect("x") + 300.0);
            }
            shifted += &c.join(",");
        }
        shifted.push('\n');
    }
    let other = dir.join("other_image.csv");
    std::fs::write(&other, shifted).expect("write");
    h.state_mut().open_landmarks(LandmarkFile::Pairs, &other);
    h.state_mut().wait_for_loads(common::ui::WAIT);
    h.run_steps(2);
    let app = h.state();
    assert_eq!(app.lm.editor.pairs().len(), 120, "kept");
    let report = app.lm.report.as_ref().expect("report");
    assert_eq!(report.count(Status::OutsideFixed), 120, "flagged");
    let notices: Vec<&str> = app.notes.messages.iter().map(|m| m.text.as_str()).collect();
    assert!(
        notices
            .iter()
            .any(|n| n.contains("120 of 120 fixed landmarks lie outside")),
        "{notices:?}"
    );
    assert!(
        !h.query_all_by_label_contains("lie outside the image")
            .collect::<Vec<_>>()
            .is_empty()
    );

    // Duplicate ids: renamed, each kept.
    let dup = dir.join("dup.fcsv");
    std::fs::write(
        &dup,
        "# Markups fiducial file version = 4.11\n# CoordinateSystem = RAS\n\
         # columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n\
         a,1,2,3,0,0,0,1,1,1,0,F-1,,\n\
         b,4,5,6,0,0,0,1,1,1,0,F-1,,\n\
         c,7,8,9,0,0,0,1,1,1,0,F-2,,\n",
    )
    .expect("write");
    h.state_mut()
        .open_landmarks(LandmarkFile::One(Side::Fixed), &dup);
    h.run_steps(2);
    // It replaces the fixed points there: the viewer asks first.
    h.get_by_label("Replace").click();
    h.run_steps(2);
    let app = h.state();
    // The fixed side is replaced; the earlier pairs keep their moving points.
    let with_fixed: Vec<&str> = app
        .lm
        .editor
        .pairs()
        .iter()
        .filter(|p| p.fixed.is_some())
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(with_fixed, vec!["F-1", "F-1#2", "F-2"]);
    assert!(
        app.notes
            .messages
            .iter()
            .any(|m| m.text.contains("F-1 as F-1#2"))
    );

    // A header that says RAS over LPS coordinates: points near the back of
    // the head, whose LPS y lies beyond the front of the image.
    let (lo, hi) = world_bounds(&grid);
    assert!(-(lo[1] + 12.0) > hi[1], "the image is not symmetric in y");
    let pts = [[10.0, lo[1] + 12.0, 20.0], [-15.0, lo[1] + 15.0, 5.0]];
    let mut text = String::from(
        "# CoordinateSystem = RAS\n# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n",
    );
    for (i, p) in pts.iter().enumerate() {
        // Written in LPS: x and y negated.
        text += &format!("{i},{},{},{},0,0,0,1,1,1,0,P{i},,\n", -p[0], -p[1], p[2]);
    }
    let wrong = dir.join("wrong_system.fcsv");
    std::fs::write(&wrong, text).expect("write");
    h.state_mut()
        .open_landmarks(LandmarkFile::One(Side::Fixed), &wrong);
    h.run_steps(2);
    // It replaces the fixed points there: the viewer asks first.
    h.get_by_label("Replace").click();
    h.run_steps(2);
    let app = h.state();
    let fixed_count = |app: &warpscope::app::ViewerApp| {
        app.lm
            .editor
            .pairs()
            .iter()
            .filter(|p| p.fixed.is_some())
            .count()
    };
    assert_eq!(fixed_count(app), 2, "kept");
    let last = app
        .notes
        .messages
        .last()
        .map(|m| m.text.clone())
        .unwrap_or_default();
    assert!(
        last.contains("2 of 2 fixed landmarks lie outside") && last.contains("coordinate system"),
        "{last}"
    );
    // An unknown CoordinateSystem is refused with its line, and nothing changes.
    let unknown = dir.join("unknown.fcsv");
    std::fs::write(
        &unknown,
        "# CoordinateSystem = XYZ\n# columns = label,x,y,z\nA,1,2,3\n",
    )
    .expect("write");
    h.state_mut()
        .open_landmarks(LandmarkFile::One(Side::Fixed), &unknown);
    let app = h.state();
    assert!(
        app.errors()
            .iter()
            .any(|e| e.contains("unknown.fcsv:1") && e.contains("XYZ")),
        "{:?}",
        app.errors()
    );
    assert_eq!(fixed_count(app), 2);
}

/// A file dropped on the window.
#[derive(Debug)]
struct Dropped(std::path::PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn a_dropped_pair_csv_opens_as_landmarks_and_a_one_sided_file_asks_whose_it_is() {
    let dir = scratch_dir("lm_drop");
    let (f, m, l) = demo_copy(&dir);
    let mut h = harness(startup(&[(Role::Fixed, &f), (Role::Moving, &m)]));
    settle(&mut h);
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(l.clone())));
    h.run_steps(3);
    assert_eq!(h.state().lm.editor.pairs().len(), 120);
    // Save the fixed side as Slicer .fcsv, drop it back: the viewer asks.
    let fcsv = dir.join("fixed.fcsv");
    h.state_mut().save_landmarks(
        LandmarkFile::One(Side::Fixed),
        warpscope::landmarks::formats::Format::Fcsv,
        &fcsv,
    );
    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(fcsv.clone())));
    h.run_steps(3);
    h.get_by_label("fixed landmarks").click();
    h.run_steps(3);
    let app = h.state();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    // The .fcsv (LPS on disk) came back to the same RAS points.
    let (fixed, _) = app.lm.editor.to_sets();
    let original = warpscope::landmarks::formats::parse_pair_csv(
        &std::fs::read_to_string(&l).expect("read"),
        "landmarks.csv",
    )
    .expect("parse")
    .0;
    assert_eq!(fixed.points.len(), 120);
    for (a, b) in fixed.points.iter().zip(&original.points) {
        assert_eq!(a.id, b.id);
        assert!(
            close(a.ras_mm, b.ras_mm, 1e-6),
            "{}: {:?} vs {:?}",
            a.id,
            a.ras_mm,
            b.ras_mm
        );
    }
}

/// Issue 17: a plain drag that starts on a landmark moves it, even when the
/// pointer is already past the glyph by the time egui calls it a drag (a
/// quick hand moves 20 px or more in the first frame); window/level stays
/// put, and one undo reverts the move.
#[test]
fn a_quick_plain_drag_on_a_landmark_moves_it_and_not_the_window() {
    let dir = scratch_dir("lm_quick_drag");
    let (f, m, _) = demo_copy(&dir);
    let mut h = harness(Startup {
        config_dir: Some(dir.join("config")),
        ..startup(&[(Role::Fixed, &f), (Role::Moving, &m)])
    });
    settle(&mut h);
    h.key_press(egui::Key::K);
    h.run_steps(2);
    let rect = h.state().view_rect(Plane::Axial).expect("axial view");
    let at = |u: f32, v: f32| rect.min + egui::vec2(u * rect.width(), v * rect.height());
    let from = at(0.45, 0.5);
    click(&mut h, from);
    assert_eq!(h.state().lm.editor.pairs().len(), 1);
    let id = h.state().lm.editor.pairs()[0].id.clone();
    let before = fixed_of(&h, &id);
    let window = h.state().images.fixed.as_ref().expect("fixed").style.window;
    // Press on the glyph, then two large moves and the release.
    let to = from + egui::vec2(40.0, 24.0);
    h.event(egui::Event::PointerMoved(from));
    h.run_steps(1);
    h.event(egui::Event::PointerButton {
        pos: from,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: egui::Modifiers::NONE,
    });
    h.run_steps(1);
    for p in [from + egui::vec2(25.0, 15.0), to] {
        h.event(egui::Event::PointerMoved(p));
        h.run_steps(1);
    }
    h.event(egui::Event::PointerButton {
        pos: to,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: egui::Modifiers::NONE,
    });
    h.run_steps(2);
    let size = [f64::from(rect.width()), f64::from(rect.height())];
    let want = h.state().view.nav.view(Plane::Axial).world_at(
        [
            f64::from((to.x - rect.left()) / rect.width()),
            f64::from((to.y - rect.top()) / rect.height()),
        ],
        size,
    );
    let moved = fixed_of(&h, &id);
    assert!(close(moved, want, 0.1), "{moved:?} vs {want:?}");
    assert_eq!(
        h.state().images.fixed.as_ref().expect("fixed").style.window,
        window,
        "the drag changed window/level"
    );
    assert_eq!(h.state().lm.editor.pairs().len(), 1, "a drag adds nothing");
    h.key_press_modifiers(egui::Modifiers::CTRL, egui::Key::Z);
    h.run_steps(2);
    assert!(
        close(fixed_of(&h, &id), before, 1e-9),
        "one undo step reverts the drag"
    );
}

/// Issue 17: a point placed through a field puts its partner where the
/// field says, so its error would be 0 by construction. It is marked
/// unconfirmed and left out of TRE until moved or confirmed (Enter). With
/// no field, robustness reads "–", not 0.
#[test]
fn points_proposed_by_the_field_stay_out_of_tre_until_confirmed() {
    let dir = scratch_dir("lm_proposed");
    let (f, m, _) = demo_copy(&dir);
    let u = dir.join("field_vox.nii.gz");
    demo_field(&f, &u);
    // Without a field first.
    let mut h = harness(Startup {
        config_dir: Some(dir.join("config")),
        ..startup(&[(Role::Fixed, &f), (Role::Moving, &m)])
    });
    settle(&mut h);
    h.key_press(egui::Key::K);
    h.run_steps(2);
    let rect = h.state().view_rect(Plane::Axial).expect("axial view");
    click(
        &mut h,
        rect.min + egui::vec2(0.45 * rect.width(), 0.5 * rect.height()),
    );
    h.run_steps(2);
    assert!(
        h.query_all_by_label_contains("robustness 0.0000")
            .next()
            .is_none(),
        "robustness without a field"
    );
    h.get_by_label_contains("robustness –");
    drop(h);

    let mut h = harness(Startup {
        config_dir: Some(dir.join("config2")),
        ..startup(&[(Role::Fixed, &f), (Role::Moving, &m), (Role::Field, &u)])
    });
    settle(&mut h);
    h.key_press(egui::Key::K);
    h.run_steps(2);
    let rect = h.state().view_rect(Plane::Axial).expect("axial view");
    let at = |u: f32, v: f32| rect.min + egui::vec2(u * rect.width(), v * rect.height());
    click(&mut h, at(0.45, 0.5));
    click(&mut h, at(0.55, 0.4));
    h.run_steps(2);
    let report = h.state().lm.report.clone().expect("report");
    assert_eq!(report.points.len(), 2);
    assert_eq!(report.count(Status::Used), 0, "proposed pairs are left out");
    assert!(report.after.is_none() && report.robustness.is_none());
    h.get_by_label_contains("0 of 2 paired landmarks used");
    h.get_by_label_contains("2 unconfirmed");
    // Enter confirms the selected pair (the last placed): it now counts.
    h.key_press(egui::Key::Enter);
    h.run_steps(2);
    let report = h.state().lm.report.clone().expect("report");
    assert_eq!(report.count(Status::Used), 1);
    // Moving the other pair's proposed (moving) point places it.
    h.key_press(egui::Key::T);
    h.run_steps(2);
    let first = h.state().lm.editor.pairs()[0].clone();
    let view = h.state().view.nav.view(Plane::Axial);
    let size = [f64::from(rect.width()), f64::from(rect.height())];
    let uv = view.uv_of(first.moving.expect("moving point"), size);
    let from = rect.min + egui::vec2(uv[0] as f32 * rect.width(), uv[1] as f32 * rect.height());
    drag(&mut h, from, from + egui::vec2(12.0, 6.0));
    let report = h.state().lm.report.clone().expect("report");
    assert_eq!(report.count(Status::Used), 2);
    let moved = report
        .points
        .iter()
        .find(|p| p.id == first.id)
        .and_then(|p| p.after_mm)
        .expect("after");
    assert!(
        moved > 1.0,
        "the moved point measures the field: {moved} mm"
    );
}

/// Issue 17: opening landmarks over points already placed asks first
/// ("Keep mine" keeps them; "Replace" replaces them, one undo step).
#[test]
fn opening_landmarks_over_placed_points_asks_first() {
    let dir = scratch_dir("lm_replace");
    let (f, m, _) = demo_copy(&dir);
    let mut h = harness(Startup {
        config_dir: Some(dir.join("config")),
        ..startup(&[(Role::Fixed, &f), (Role::Moving, &m)])
    });
    settle(&mut h);
    h.key_press(egui::Key::K);
    h.run_steps(2);
    let rect = h.state().view_rect(Plane::Axial).expect("axial view");
    click(
        &mut h,
        rect.min + egui::vec2(0.45 * rect.width(), 0.5 * rect.height()),
    );
    assert_eq!(h.state().lm.editor.pairs().len(), 1);
    h.state_mut().open_demo_landmarks();
    h.run_steps(2);
    h.get_by_label_contains("replaces the 1 landmark pair(s)");
    h.get_by_label("Keep mine").click();
    h.run_steps(2);
    assert_eq!(h.state().lm.editor.pairs().len(), 1, "kept");
    assert!(h.state().lm.replace_asked.is_none());
    h.state_mut().open_demo_landmarks();
    h.run_steps(2);
    h.get_by_label("Replace").click();
    h.run_steps(2);
    assert_eq!(h.state().lm.editor.pairs().len(), 120, "replaced");
    h.key_press_modifiers(egui::Modifiers::CTRL, egui::Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().lm.editor.pairs().len(), 1, "one undo step");
}
