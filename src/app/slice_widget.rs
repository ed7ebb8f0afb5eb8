//! An egui widget that draws one layer's slice with the WGSL slice renderer
//! through an egui-wgpu paint callback.

use std::collections::HashMap;

use eframe::egui;
use eframe::egui_wgpu;

use crate::render::{SliceBinding, SlicePipeline, SliceUniform, VolumeTexture};

/// GPU objects kept in egui-wgpu's callback resources for the app's lifetime.
pub struct SliceResources {
    pub pipeline: SlicePipeline,
    /// One texture per layer (index = layer).
    pub textures: Vec<VolumeTexture>,
    /// Uniforms and bind groups per (view, layer), made on first use.
    pub bindings: HashMap<(usize, usize), SliceBinding>,
}

/// Draw `layer` in the view numbered `view` with the given uniforms.
pub struct SliceCallback {
    pub view: usize,
    pub layer: usize,
    pub uniform: SliceUniform,
}

impl egui_wgpu::CallbackTrait for SliceCallback {
    fn prepare(
        &self,
        device: &eframe::wgpu::Device,
        queue: &eframe::wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut eframe::wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<eframe::wgpu::CommandBuffer> {
        let Some(res) = resources.get_mut::<SliceResources>() else {
            return Vec::new();
        };
        let SliceResources {
            pipeline,
            textures,
            bindings,
        } = res;
        if let Some(texture) = textures.get(self.layer) {
            let binding = bindings
                .entry((self.view, self.layer))
                .or_insert_with(|| SliceBinding::new(device, pipeline, texture));
            binding.write(queue, &self.uniform);
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut eframe::wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        if let Some(res) = resources.get::<SliceResources>()
            && let Some(binding) = res.bindings.get(&(self.view, self.layer))
        {
            res.pipeline.draw(pass, binding);
        }
    }
}

/// Queue the slice drawing into `rect`.
pub fn paint_slice(ui: &egui::Ui, rect: egui::Rect, callback: SliceCallback) {
    ui.painter()
        .add(egui_wgpu::Callback::new_paint_callback(rect, callback));
}
