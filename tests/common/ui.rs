//! Driving the viewer in tests: egui_kittest with the wgpu renderer
//! (lavapipe without a GPU), files written for it, mouse gestures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use eframe::egui;
use egui_kittest::Harness;
use warpscope::app::{Role, Source, Startup, ViewerApp};
use warpscope::volume::Volume;
use warpscope::volume::nifti::{self, WriteOptions};

pub const WAIT: Duration = Duration::from_secs(60);

/// The viewer in a harness whose wgpu device is made as the app makes its
/// own (the adapter's full features and limits, which the engine needs),
/// on a software adapter where there is one.
pub fn harness(startup: Startup) -> Harness<'static, ViewerApp> {
    harness_with(startup, warpscope::gpu::gui_device_descriptor)
}

/// As [`harness`], with the device made from `descriptor` (a GPU with
/// smaller limits, say).
pub fn harness_with(
    startup: Startup,
    descriptor: fn(&wgpu::Adapter) -> wgpu::DeviceDescriptor<'static>,
) -> Harness<'static, ViewerApp> {
    let setup = match egui_kittest::wgpu::default_wgpu_setup() {
        eframe::egui_wgpu::WgpuSetup::CreateNew(mut c) => {
            c.device_descriptor = std::sync::Arc::new(descriptor);
            eframe::egui_wgpu::WgpuSetup::CreateNew(c)
        }
        other => other,
    };
    Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .wgpu_setup(setup)
        .build_eframe(|cc| ViewerApp::new(cc, startup).expect("the viewer starts"))
}

/// Load everything asked for, then draw a few frames.
pub fn settle(h: &mut Harness<'static, ViewerApp>) {
    h.state_mut().wait_for_loads(WAIT);
    h.run_steps(4);
}

pub fn write(path: &Path, vol: &Volume, description: &str) {
    let opts = WriteOptions {
        description: description.into(),
        ..Default::default()
    };
    nifti::write_file(path, vol, &opts).expect("write test volume");
}

pub fn startup(paths: &[(Role, &Path)]) -> Startup {
    Startup {
        images: paths
            .iter()
            .map(|(r, p)| (*r, Source::Path(p.to_path_buf())))
            .collect(),
        ..Default::default()
    }
}

fn button(h: &Harness<'static, ViewerApp>, pos: egui::Pos2, pressed: bool) {
    h.event(egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed,
        modifiers: egui::Modifiers::NONE,
    });
}

/// A left click at `pos`.
pub fn click(h: &mut Harness<'static, ViewerApp>, pos: egui::Pos2) {
    h.event(egui::Event::PointerMoved(pos));
    h.run_steps(1);
    button(h, pos, true);
    h.run_steps(1);
    button(h, pos, false);
    h.run_steps(2);
}

/// A left drag from `from` to `to` in a few moves.
pub fn drag(h: &mut Harness<'static, ViewerApp>, from: egui::Pos2, to: egui::Pos2) {
    h.event(egui::Event::PointerMoved(from));
    h.run_steps(1);
    button(h, from, true);
    h.run_steps(1);
    for k in 1..=6 {
        let t = k as f32 / 6.0;
        h.event(egui::Event::PointerMoved(from + (to - from) * t));
        h.run_steps(1);
    }
    button(h, to, false);
    h.run_steps(2);
}

/// Copies of the demo pair (images and landmarks) in `dir`, so that
/// autosaves land there and not in the repository.
pub fn demo_copy(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let out: Vec<PathBuf> = ["fixed.nii.gz", "moving.nii.gz", "landmarks.csv"]
        .iter()
        .map(|n| {
            let to = dir.join(n);
            std::fs::copy(assets.join(n), &to).expect("copy demo file");
            to
        })
        .collect();
    (out[0].clone(), out[1].clone(), out[2].clone())
}
