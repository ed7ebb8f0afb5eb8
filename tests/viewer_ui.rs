//! The viewer as a user meets it, driven through egui_kittest with the wgpu
//! renderer (lavapipe without a GPU): files opened, the field's products
//! computed on the GPU, bad input answered on screen, keys, recent files.

#![allow(clippy::needless_range_loop)]

mod common;

use std::path::{Path, PathBuf};

use common::scratch_dir;
use common::ui::{click, harness, settle, startup, write};
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use warpscope::app::{Role, Startup, ViewerApp};
use warpscope::register::Pipeline;
use warpscope::render::{Mode, Slot};
use warpscope::volume::nifti::{self, ChannelLayout, WriteOptions};
use warpscope::volume::{Grid, Volume, affine};

fn grid() -> Grid {
    Grid::new([24, 20, 16], affine::diagonal([2.0, 2.0, 2.0]))
}

/// A smooth test image (values in [0, 1]).
fn image(grid: &Grid, phase: f64) -> Volume {
    let mut v = Volume::filled(grid.clone(), 1, 0.0);
    for i in 0..v.data.len() {
        let p = warpscope::volume::voxel_of(i, grid.dims);
        v.data[i] = (0.5 + 0.4 * (p[0] / 3.0 + phase).sin() * (p[1] / 4.0).cos()) as f32;
    }
    v
}

/// Fixed, moving and a uniform-scaling field (1.1 about the centre) on disk.
fn pair(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let g = grid();
    let (f, m, u) = (
        dir.join("fixed.nii.gz"),
        dir.join("moving.nii.gz"),
        dir.join("field_vox.nii.gz"),
    );
    write(&f, &image(&g, 0.0), "test");
    write(&m, &image(&g, 0.4), "test");
    write(
        &u,
        &common::scaling_disp_vox(&g, 1.1),
        "warpscope:field_vox fixed->moving",
    );
    (f, m, u)
}

#[test]
fn a_field_opened_with_its_images_gives_the_warped_image_and_det_j() {
    let dir = scratch_dir("ui_field");
    let (f, m, u) = pair(&dir);
    // The field is named before the fixed image has arrived: it waits for it.
    let mut h = harness(startup(&[
        (Role::Field, &u),
        (Role::Fixed, &f),
        (Role::Moving, &m),
    ]));
    settle(&mut h);
    let app = h.state();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    let stats = app
        .field
        .products
        .jacobian_stats
        .clone()
        .expect("det J read back");
    assert!(
        (stats.min - 1.331).abs() < 1e-3 && (stats.max - 1.331).abs() < 1e-3,
        "{stats:?}"
    );
    assert_eq!(app.view.b, Slot::Warped, "B switches to the warped image");
    // The GPU's warped image equals the CPU warp through the same field.
    let warped = app.field.products.warped.clone().expect("warped read back");
    let moving = nifti::read_file(&m, Default::default()).expect("moving").0;
    let cpu = app
        .field
        .loaded
        .as_ref()
        .expect("field")
        .mapping
        .warp(&moving, warpscope::volume::resample::Interp::Linear)
        .expect("cpu warp");
    let worst = warped
        .data
        .iter()
        .zip(&cpu.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "GPU vs CPU warp: {worst}");
    // The legend reports det J.
    h.get_by_label_contains("det J: min 1.331");
}

#[test]
fn the_warped_image_is_shown_whichever_of_field_and_moving_comes_last() {
    let dir = scratch_dir("ui_field_then_moving");
    let (f, m, u) = pair(&dir);
    // The field before the moving image (the order loads may finish in).
    let mut h = harness(startup(&[(Role::Fixed, &f), (Role::Field, &u)]));
    settle(&mut h);
    assert!(h.state().field.loaded.is_some() && h.state().images.moving.is_none());
    h.state_mut().open(Role::Moving, m);
    settle(&mut h);
    let app = h.state();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    assert_eq!(app.view.b, Slot::Warped, "B switches to the warped image");
}

#[test]
fn the_views_are_drawn_by_the_shader_inside_the_app() {
    let dir = scratch_dir("ui_draw");
    let g = grid();
    let f = dir.join("flat.nii.gz");
    write(&f, &Volume::filled(g, 1, 0.5), "test");
    let mut h = harness(startup(&[(Role::Fixed, &f)]));
    settle(&mut h);
    h.state_mut()
        .images
        .fixed
        .as_mut()
        .expect("fixed")
        .style
        .window = (0.0, 1.0);
    h.run_steps(2);
    let rect = h
        .state()
        .view_rect(warpscope::render::Plane::Axial)
        .expect("axial view on screen");
    let img = h.render().expect("render");
    let c = rect.center();
    let px = img.get_pixel(c.x as u32, c.y as u32).0;
    // 0.5 in the window [0, 1]: mid grey (the crosshair is drawn 6 px away from the centre).
    assert!(
        (i32::from(px[0]) - 128).abs() <= 2 && px[0] == px[1] && px[1] == px[2],
        "{px:?}"
    );
}

#[test]
fn a_file_that_fails_to_load_keeps_the_previous_image_and_says_why() {
    let dir = scratch_dir("ui_bad");
    let (f, m, _) = pair(&dir);
    let mut h = harness(startup(&[(Role::Fixed, &f), (Role::Moving, &m)]));
    settle(&mut h);
    let bytes = std::fs::read(&m).expect("read");
    let bad = dir.join("truncated.nii.gz");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).expect("write");
    let not_nifti = dir.join("notes.nii");
    std::fs::write(&not_nifti, b"this is not an image").expect("write");
    h.state_mut().open(Role::Moving, bad);
    h.state_mut().open(Role::Fixed, not_nifti);
    settle(&mut h);
    let app = h.state();
    let errors = app.errors().join("\n");
    assert!(errors.contains("truncated.nii.gz"), "{errors}");
    assert!(errors.contains("notes.nii"), "{errors}");
    assert_eq!(
        app.images.moving.as_ref().map(|i| i.name.as_str()),
        Some("moving.nii.gz")
    );
    assert_eq!(
        app.images.fixed.as_ref().map(|i| i.name.as_str()),
        Some("fixed.nii.gz")
    );
    // In the banner over the views and in the status bar.
    assert!(
        !h.query_all_by_label_contains("could not open")
            .collect::<Vec<_>>()
            .is_empty()
    );
}

#[test]
fn volumes_that_do_not_overlap_in_world_space_are_flagged_on_screen() {
    let dir = scratch_dir("ui_overlap");
    let (f, _, _) = pair(&dir);
    let mut far = grid();
    far.affine[0][3] = 500.0;
    let m = dir.join("far.nii.gz");
    write(&m, &image(&far, 0.0), "test");
    let mut h = harness(startup(&[(Role::Fixed, &f), (Role::Moving, &m)]));
    settle(&mut h);
    let gap = h.state().images.no_overlap_mm.expect("flagged");
    assert!((gap - 452.0).abs() < 1e-6, "{gap}");
    h.get_by_label_contains("does not overlap");
}

#[test]
fn a_five_channel_file_gets_a_channel_selector() {
    let dir = scratch_dir("ui_channels");
    let g = grid();
    let n = g.voxels();
    let data: Vec<f32> = (0..5)
        .flat_map(|c| std::iter::repeat_n(c as f32, n))
        .collect();
    let vol = Volume::from_data(g, 5, data).expect("sizes");
    let f = dir.join("five.nii.gz");
    nifti::write_file(
        &f,
        &vol,
        &WriteOptions {
            layout: ChannelLayout::Fourth,
            ..Default::default()
        },
    )
    .expect("write");
    let mut h = harness(startup(&[(Role::Fixed, &f)]));
    settle(&mut h);
    h.get_by_label_contains("5 channels");
    h.get_by_label("channel");
    h.state_mut().select_channel(Role::Fixed, 3);
    h.state_mut()
        .images
        .fixed
        .as_mut()
        .expect("fixed")
        .style
        .window = (0.0, 5.0);
    h.run_steps(3);
    let app = h.state();
    let img = app.images.fixed.as_ref().expect("fixed");
    assert_eq!(img.channel, 3);
    assert!(img.display.data.iter().all(|&v| v == 3.0));
    let rect = app
        .view_rect(warpscope::render::Plane::Coronal)
        .expect("coronal view");
    // Off the crosshair lines (which run through the centre).
    let px = h
        .render()
        .expect("render")
        .get_pixel(rect.center().x as u32 + 20, rect.center().y as u32 + 20)
        .0;
    assert!(
        (i32::from(px[0]) - 153).abs() <= 2,
        "channel 4 drawn at 3/5 grey: {px:?}"
    );
}

#[test]
fn a_volume_beyond_the_gpu_texture_limit_is_shown_reduced_with_a_notice() {
    let dir = scratch_dir("ui_large");
    let (f, _, _) = pair(&dir);
    let mut h = harness(startup(&[(Role::Fixed, &f)]));
    settle(&mut h);
    let max = h.state().max_texture_3d() as usize;
    let g = Grid::new([max + 40, 3, 2], affine::diagonal([0.5, 1.0, 1.0]));
    let big = dir.join("long.nii.gz");
    write(&big, &Volume::filled(g, 1, 0.25), "test");
    h.state_mut().open(Role::Moving, big);
    settle(&mut h);
    let app = h.state();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    let moving = app.images.moving.as_ref().expect("moving shown");
    assert_eq!(
        moving.volume.grid.dims[0],
        max + 40,
        "full resolution kept for read-outs"
    );
    assert_eq!(moving.display.grid.dims[0], (max + 40).div_ceil(2));
    assert!(
        moving
            .notice
            .as_deref()
            .unwrap_or("")
            .contains("1/2 resolution")
    );
    assert!(
        !h.query_all_by_label_contains("1/2 resolution")
            .collect::<Vec<_>>()
            .is_empty()
    );
}

/// A `register --out` folder in `dir`: fixed and moving images beside it,
/// its field, and a run.json naming the images plus `extra` (keys of
/// run.json). The viewer opens it with `--result` and settles.
fn open_result_folder(dir: &Path, extra: serde_json::Value) -> Harness<'static, ViewerApp> {
    let (f, m, _) = pair(dir);
    let out = dir.join("result");
    std::fs::create_dir_all(&out).expect("mkdir");
    let (_, _, u) = pair(&out);
    std::fs::rename(&u, out.join("field_vox.nii.gz")).expect("rename");
    let mut run = serde_json::json!({
        "fixed": [f.display().to_string()],
        "moving": [m.display().to_string()],
    });
    let extra = extra.as_object().expect("run.json keys");
    run.as_object_mut().expect("object").extend(extra.clone());
    std::fs::write(out.join("run.json"), run.to_string()).expect("run.json");
    let mut h = harness(Startup {
        result: Some(out),
        ..Default::default()
    });
    settle(&mut h);
    h
}

#[test]
fn a_result_folder_brings_its_images_field_and_ic_weights() {
    let dir = scratch_dir("ui_result");
    std::fs::create_dir_all(dir.join("result")).expect("mkdir");
    write(
        &dir.join("result").join("ic_weights.nii.gz"),
        &Volume::filled(grid(), 1, 0.9),
        "warpscope:ic weights",
    );
    let mask = dir.join("mask.nii.gz");
    write(&mask, &Volume::filled(grid(), 1, 1.0), "mask");
    // The pipeline as `register` writes it: a preset with an override.
    let ran = Pipeline::preset("brats-ic")
        .expect("preset")
        .with_overrides(&["ic.iterations=7".to_string()])
        .expect("override");
    let h = open_result_folder(
        &dir,
        serde_json::json!({
            "fixed_mask": mask.display().to_string(),
            "pipeline": ran.to_json(),
        }),
    );
    let app = h.state();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    assert_eq!(app.reg.pipeline, ran, "the panel holds the run's pipeline");
    assert!(app.images.mask.is_some(), "the run's mask");
    assert_eq!(
        app.images.fixed.as_ref().map(|i| i.name.as_str()),
        Some("fixed.nii.gz")
    );
    assert_eq!(
        app.images.moving.as_ref().map(|i| i.name.as_str()),
        Some("moving.nii.gz")
    );
    assert!(
        app.field.loaded.is_some()
            && app.images.ic.is_some()
            && app.field.products.warped.is_some()
    );
}

/// A result folder whose run.json holds a pipeline this version cannot
/// take still opens its images and field; the panel keeps its pipeline
/// and says why.
#[test]
fn a_result_folder_with_a_bad_pipeline_keeps_the_panels() {
    let dir = scratch_dir("ui_result_bad_pipeline");
    let mut bad = Pipeline::preset("fast").expect("preset").to_json();
    bad["deformable"]["iterations"] = serde_json::json!("many");
    let h = open_result_folder(&dir, serde_json::json!({ "pipeline": bad }));
    let app = h.state();
    assert!(app.errors().is_empty(), "{:?}", app.errors());
    assert!(app.field.loaded.is_some(), "the field still opens");
    assert_eq!(app.reg.pipeline, Pipeline::preset("fast").expect("fast"));
    assert!(
        app.notes
            .messages
            .iter()
            .any(|m| m.text.contains("run.json") && m.text.contains("pipeline could not be read")),
        "{:?}",
        app.notes.messages
    );
}

#[test]
fn keys_switch_modes_overlays_and_layout() {
    let dir = scratch_dir("ui_keys");
    let (f, m, u) = pair(&dir);
    let mut h = harness(startup(&[
        (Role::Fixed, &f),
        (Role::Moving, &m),
        (Role::Field, &u),
    ]));
    settle(&mut h);
    h.key_press(egui::Key::Num2);
    h.key_press(egui::Key::G);
    h.key_press(egui::Key::J);
    h.key_press(egui::Key::S);
    h.run_steps(2);
    let app = h.state();
    assert_eq!(app.view.composite.mode, Mode::Checkerboard);
    assert!(app.view.overlays.grid.on && app.view.overlays.jacobian.on);
    assert_eq!(
        app.view.nav.enlarged,
        Some(warpscope::render::Plane::Sagittal)
    );
    assert!(
        app.view_rect(warpscope::render::Plane::Axial).is_none(),
        "only the enlarged view"
    );
    h.key_press(egui::Key::X);
    h.key_press(egui::Key::Escape);
    h.run_steps(2);
    let app = h.state();
    assert_eq!((app.view.a, app.view.b), (Slot::Warped, Slot::Fixed));
    assert_eq!(app.view.nav.enlarged, None);
}

#[test]
fn recent_files_are_remembered_between_sessions() {
    let dir = scratch_dir("ui_recent");
    let (f, _, _) = pair(&dir);
    let config = dir.join("config");
    let mut h = harness(Startup {
        config_dir: Some(config.clone()),
        ..startup(&[(Role::Fixed, &f)])
    });
    settle(&mut h);
    drop(h);
    let text = std::fs::read_to_string(config.join("recent.json")).expect("saved");
    assert!(text.contains("fixed.nii.gz"), "{text}");
    let h = harness(Startup {
        config_dir: Some(config),
        ..Default::default()
    });
    let recent = h.state().recent_files();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].0, Role::Fixed);
    assert!(recent[0].1.ends_with("fixed.nii.gz"));
}

#[test]
fn shift_f12_asks_for_a_screenshot_of_the_view_under_the_mouse() {
    let dir = scratch_dir("ui_shot");
    let (f, _, _) = pair(&dir);
    let mut h = harness(startup(&[(Role::Fixed, &f)]));
    settle(&mut h);
    let rect = h
        .state()
        .view_rect(warpscope::render::Plane::Coronal)
        .expect("coronal view");
    h.hover_at(rect.center() + egui::vec2(15.0, 15.0));
    h.run_steps(2);
    assert_eq!(
        h.state().hovered_view(),
        Some(warpscope::render::Plane::Coronal)
    );
    h.key_press_modifiers(egui::Modifiers::SHIFT, egui::Key::F12);
    h.run_steps(1);
    assert_eq!(
        h.state().requested_shots(),
        vec![format!("{:?}", warpscope::render::Plane::Coronal)]
    );
}

#[test]
fn a_click_moves_the_crosshair_and_the_other_views_follow() {
    let dir = scratch_dir("ui_click");
    let (f, m, _) = pair(&dir);
    let mut h = harness(startup(&[(Role::Fixed, &f), (Role::Moving, &m)]));
    settle(&mut h);
    let axial = warpscope::render::Plane::Axial;
    let rect = h.state().view_rect(axial).expect("axial view");
    let before = h.state().view.nav.cursor_ras;
    let pos = rect.min + egui::vec2(0.3 * rect.width(), 0.65 * rect.height());
    click(&mut h, pos);
    let app = h.state();
    let size = [f64::from(rect.width()), f64::from(rect.height())];
    let want = app.view.nav.view(axial).world_at([0.3, 0.65], size);
    let got = app.view.nav.cursor_ras;
    assert!(
        (got[0] - want[0]).abs() < 0.5 && (got[1] - want[1]).abs() < 0.5,
        "{got:?} vs {want:?}"
    );
    assert_eq!(got[2], before[2], "the axial slice stays");
    assert!(
        (got[0] - before[0]).abs() > 2.0,
        "the click moved the crosshair"
    );
    // The coronal and sagittal views now cut through the clicked point.
    assert_eq!(
        app.view
            .nav
            .view(warpscope::render::Plane::Coronal)
            .position_mm,
        got[1]
    );
    assert_eq!(
        app.view
            .nav
            .view(warpscope::render::Plane::Sagittal)
            .position_mm,
        got[0]
    );
}

#[test]
fn flicker_alternates_the_two_images_on_its_timer() {
    let dir = scratch_dir("ui_flicker");
    let (f, m, _) = pair(&dir);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .with_step_dt(0.05)
        .wgpu()
        .build_eframe(|cc| {
            ViewerApp::new(cc, startup(&[(Role::Fixed, &f), (Role::Moving, &m)]))
                .expect("the viewer starts")
        });
    settle(&mut h);
    h.state_mut().view.composite.mode = Mode::Flicker;
    h.state_mut().view.composite.flicker_period_s = 0.2;
    let mut phases = Vec::new();
    for _ in 0..24 {
        h.step();
        phases.push(h.state().view.flicker_shows_b);
    }
    let switches = phases.windows(2).filter(|w| w[0] != w[1]).count();
    // 24 steps of 50 ms = 1.2 s at 0.2 s per image: about 6 switches.
    assert!(
        (4..=7).contains(&switches),
        "{switches} switches: {phases:?}"
    );
}

/// Issue 17: the colour bar names the image shown (the moving one in
/// landmark mode on its moving side), stays when one view is enlarged;
/// overlay keys with nothing to draw say so instead of ticking a greyed
/// box; a NIfTI CT opens in the CT brain window, shown as W/L.
#[test]
fn the_legend_follows_what_is_shown_and_overlay_keys_need_their_data() {
    let dir = scratch_dir("ui_legend");
    let (f, m, _) = pair(&dir);
    let mut h = harness(startup(&[(Role::Fixed, &f), (Role::Moving, &m)]));
    settle(&mut h);
    h.get_by_label_contains("fixed (grey)");
    h.key_press(egui::Key::G);
    h.key_press(egui::Key::J);
    h.run_steps(2);
    let app = h.state();
    assert!(!app.view.overlays.grid.on && !app.view.overlays.jacobian.on);
    for key in ["G", "J"] {
        let text = format!("{key} needs a deformation field");
        assert!(
            h.query_all_by_label_contains(&text).next().is_some(),
            "{text}"
        );
    }
    // Landmark mode on the moving side: the views and the bar show moving.
    h.key_press(egui::Key::K);
    h.key_press(egui::Key::T);
    h.run_steps(2);
    h.get_by_label_contains("moving (grey)");
    assert!(
        h.query_all_by_label_contains("fixed (grey)")
            .next()
            .is_none()
    );
    // One view enlarged: the bar is still there.
    h.key_press(egui::Key::A);
    h.run_steps(2);
    assert_eq!(
        h.state().view.nav.enlarged,
        Some(warpscope::render::Plane::Axial)
    );
    h.get_by_label_contains("moving (grey)");
    drop(h);

    let ct = dir.join("head_ct.nii.gz");
    write(&ct, &common::head_ct(24), "a head CT in HU");
    let mut h = harness(startup(&[(Role::Fixed, &ct)]));
    settle(&mut h);
    let fixed = h.state().images.fixed.as_ref().expect("CT");
    assert_eq!(
        fixed.preset,
        warpscope::volume::intensity::WindowPreset::CtBrain
    );
    assert_eq!(fixed.style.window, (0.0, 80.0), "W80/L40");
    h.get_by_label_contains("(0 to 80)");
}
