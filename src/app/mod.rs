//! The desktop GUI (egui only; no algorithms here).

mod slice_widget;
pub mod viewer;

use std::sync::Arc;

use eframe::egui_wgpu;

pub use viewer::{Layer, ViewerApp};

/// Open the viewer window with the given layers (fixed first).
pub fn run(layers: Vec<Layer>) -> Result<(), String> {
    let mut setup = egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    // Full adapter features and limits, so that compute work can share this device.
    setup.device_descriptor = Arc::new(crate::gpu::full_device_descriptor);
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Wgpu,
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 720.0])
            .with_title("Warpscope"),
        wgpu_options: egui_wgpu::WgpuConfiguration {
            wgpu_setup: egui_wgpu::WgpuSetup::CreateNew(setup),
            ..Default::default()
        },
        ..Default::default()
    };
    eframe::run_native(
        "Warpscope",
        options,
        Box::new(move |cc| Ok(Box::new(ViewerApp::new(cc, layers)?) as Box<dyn eframe::App>)),
    )
    .map_err(|e| format!("could not open the window: {e}"))
}
