//! The egui-wgpu paint callback that draws one slice view with `GpuScene`
//! (kept in egui-wgpu's callback resources for the app's lifetime).

use eframe::egui;
use eframe::egui_wgpu;

use crate::render::{CompositeUniform, GpuScene, Slot};

/// The second scene: a compared run's result (same images, its own field).
pub struct CompareScene(pub GpuScene);

pub struct ViewCallback {
    pub id: u64,
    pub a: Slot,
    pub b: Slot,
    pub uniform: CompositeUniform,
    /// Draw from the comparison scene.
    pub compare: bool,
}

impl ViewCallback {
    fn scene<'a>(&self, resources: &'a egui_wgpu::CallbackResources) -> Option<&'a GpuScene> {
        if self.compare {
            resources.get::<CompareScene>().map(|c| &c.0)
        } else {
            resources.get::<GpuScene>()
        }
    }
}

impl egui_wgpu::CallbackTrait for ViewCallback {
    fn prepare(
        &self,
        device: &eframe::wgpu::Device,
        queue: &eframe::wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut eframe::wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<eframe::wgpu::CommandBuffer> {
        let scene = if self.compare {
            resources.get_mut::<CompareScene>().map(|c| &mut c.0)
        } else {
            resources.get_mut::<GpuScene>()
        };
        if let Some(scene) = scene {
            scene.prepare(device, queue, self.id, self.a, self.b, &self.uniform);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut eframe::wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        if let Some(scene) = self.scene(resources) {
            scene.draw(pass, self.id);
        }
    }
}

/// Queue the drawing of a view into `rect`.
pub fn paint(ui: &egui::Ui, rect: egui::Rect, callback: ViewCallback) {
    ui.painter()
        .add(egui_wgpu::Callback::new_paint_callback(rect, callback));
}
