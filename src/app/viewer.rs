//! The main window: the fixed and moving images side by side in one plane,
//! slices linked, resliced in world coordinates by the WGSL slice shader.
//!
//! Mouse (as in ITK-SNAP / 3D Slicer): wheel = next slice, left drag =
//! window/level, right drag = zoom, middle drag = pan. Keys: A/C/S choose
//! the plane, Page Up/Down or arrow keys move the slice, R resets the view.

use std::collections::HashMap;

use eframe::egui;

use super::slice_widget::{SliceCallback, SliceResources, paint_slice};
use crate::render::{Convention, Plane, SlicePipeline, SliceUniform, SliceView, VolumeTexture};
use crate::volume::resample::{Border, Sampler};
use crate::volume::{Grid, Volume, intensity};

/// An image shown in the viewer.
pub struct Layer {
    pub name: String,
    pub volume: Volume,
    /// Display window (low, high) in the image's intensity units.
    pub window: (f32, f32),
}

impl Layer {
    pub fn new(name: impl Into<String>, volume: Volume) -> Self {
        let window = default_window(&volume);
        Self {
            name: name.into(),
            volume,
            window,
        }
    }
}

/// 0.5–99.5 percentile of the non-zero samples of channel 0 (ITK-SNAP-like auto contrast).
pub fn default_window(vol: &Volume) -> (f32, f32) {
    let mut v: Vec<f32> = vol
        .channel(0)
        .iter()
        .copied()
        .filter(|x| x.is_finite() && *x != 0.0)
        .collect();
    let lo = intensity::percentile(&mut v, 0.5);
    let hi = intensity::percentile(&mut v, 99.5);
    match (lo, hi) {
        (Some(lo), Some(hi)) if hi > lo => (lo, hi),
        _ => vol
            .range(0)
            .map(|(a, b)| if b > a { (a, b) } else { (a, a + 1.0) })
            .unwrap_or((0.0, 1.0)),
    }
}

pub struct ViewerApp {
    layers: Vec<Layer>,
    plane: Plane,
    convention: Convention,
    /// Slice position (mm) for each plane, shared by all layers.
    positions: HashMap<Plane, f64>,
    zoom: f64,
    pan_mm: [f64; 2],
    /// Grid that frames the views (the first layer's, i.e. the fixed image).
    frame: Grid,
    status: String,
    gpu_error: Option<String>,
}

impl ViewerApp {
    /// Build the app and upload every layer to the shared wgpu device.
    pub fn new(cc: &eframe::CreationContext<'_>, layers: Vec<Layer>) -> Result<Self, String> {
        let first = layers
            .first()
            .ok_or("nothing to show: no image was loaded")?;
        let frame = first.volume.grid.clone();
        let rs = cc
            .wgpu_render_state
            .as_ref()
            .ok_or("the wgpu renderer is not available")?;
        let mut textures = Vec::with_capacity(layers.len());
        for layer in &layers {
            textures.push(
                VolumeTexture::upload(&rs.device, &rs.queue, &layer.volume, 0)
                    .map_err(|e| format!("{}: {e}", layer.name))?,
            );
        }
        let pipeline = SlicePipeline::new(&rs.device, rs.target_format);
        rs.renderer
            .write()
            .callback_resources
            .insert(SliceResources {
                pipeline,
                textures,
                bindings: HashMap::new(),
            });
        let mut app = Self {
            layers,
            plane: Plane::Axial,
            convention: Convention::Radiological,
            positions: HashMap::new(),
            zoom: 1.0,
            pan_mm: [0.0, 0.0],
            frame,
            status: String::new(),
            gpu_error: None,
        };
        app.reset_view();
        Ok(app)
    }

    fn reset_view(&mut self) {
        for plane in Plane::ALL {
            let view = SliceView::centred(plane, &self.frame, self.convention);
            self.positions.insert(plane, view.position_mm);
        }
        self.zoom = 1.0;
        self.pan_mm = [0.0, 0.0];
    }

    fn view(&self) -> SliceView {
        let mut v = SliceView::centred(self.plane, &self.frame, self.convention);
        v.position_mm = self
            .positions
            .get(&self.plane)
            .copied()
            .unwrap_or(v.position_mm);
        v.zoom = self.zoom;
        v.pan_mm = self.pan_mm;
        v
    }

    fn step_slice(&mut self, steps: f64) {
        let view = self.view();
        let (lo, hi, step) = view.slice_range(&self.frame);
        let p = (view.position_mm + steps * step).clamp(lo, hi);
        self.positions.insert(self.plane, p);
    }

    fn keyboard(&mut self, ctx: &egui::Context) {
        ctx.input(|i| {
            if i.key_pressed(egui::Key::A) {
                self.plane = Plane::Axial;
            }
            if i.key_pressed(egui::Key::C) {
                self.plane = Plane::Coronal;
            }
            if i.key_pressed(egui::Key::S) {
                self.plane = Plane::Sagittal;
            }
        });
        let (up, down, reset) = ctx.input(|i| {
            (
                i.key_pressed(egui::Key::PageUp) || i.key_pressed(egui::Key::ArrowUp),
                i.key_pressed(egui::Key::PageDown) || i.key_pressed(egui::Key::ArrowDown),
                i.key_pressed(egui::Key::R),
            )
        });
        if up {
            self.step_slice(1.0);
        }
        if down {
            self.step_slice(-1.0);
        }
        if reset {
            self.reset_view();
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.strong("Warpscope");
            ui.separator();
            for plane in Plane::ALL {
                let key = plane.name()[..1].to_uppercase();
                ui.selectable_value(&mut self.plane, plane, plane.name())
                    .on_hover_text(format!("Show the {} plane ({key})", plane.name()));
            }
            ui.separator();
            egui::ComboBox::from_id_salt("convention")
                .selected_text(match self.convention {
                    Convention::Radiological => "Radiological",
                    Convention::Neurological => "Neurological",
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(
                        &mut self.convention,
                        Convention::Radiological,
                        "Radiological",
                    )
                    .on_hover_text("Patient's right on the screen's left");
                    ui.selectable_value(
                        &mut self.convention,
                        Convention::Neurological,
                        "Neurological",
                    )
                    .on_hover_text("Patient's right on the screen's right");
                });
            if ui
                .button("Reset view")
                .on_hover_text("Centre slices, zoom 1 (R)")
                .clicked()
            {
                self.reset_view();
            }
        });
    }

    fn side_panel(&mut self, ui: &mut egui::Ui) {
        let view = self.view();
        let (lo, hi, step) = view.slice_range(&self.frame);
        let mut pos = view.position_mm;
        ui.label(format!("{} slice (mm)", self.plane.name()));
        if ui
            .add(
                egui::Slider::new(&mut pos, lo..=hi)
                    .step_by(step)
                    .fixed_decimals(1),
            )
            .on_hover_text("Mouse wheel over a view, or Page Up / Page Down")
            .changed()
        {
            self.positions.insert(self.plane, pos);
        }
        ui.separator();
        for layer in &mut self.layers {
            let g = &layer.volume.grid;
            let sp = g.spacing_mm();
            ui.strong(&layer.name);
            ui.label(format!(
                "{}×{}×{} · {:.2}×{:.2}×{:.2} mm · {}",
                g.dims[0],
                g.dims[1],
                g.dims[2],
                sp[0],
                sp[1],
                sp[2],
                g.orientation()
            ));
            ui.horizontal(|ui| {
                let speed = ((layer.window.1 - layer.window.0).abs() * 0.005).max(1e-6);
                ui.label("window");
                ui.add(egui::DragValue::new(&mut layer.window.0).speed(speed))
                    .on_hover_text("Lowest value shown as black");
                ui.add(egui::DragValue::new(&mut layer.window.1).speed(speed))
                    .on_hover_text("Highest value shown as white");
            });
            ui.separator();
        }
        if let Some(e) = &self.gpu_error {
            ui.colored_label(egui::Color32::RED, e);
        }
    }

    fn views(&mut self, ui: &mut egui::Ui) {
        let n = self.layers.len().max(1);
        let avail = ui.available_rect_before_wrap();
        let gap = 6.0;
        let w = (avail.width() - gap * (n as f32 - 1.0)) / n as f32;
        let caption_h = 18.0;
        let mut hovered = None;
        for i in 0..self.layers.len() {
            let x0 = avail.left() + i as f32 * (w + gap);
            let caption =
                egui::Rect::from_min_size(egui::pos2(x0, avail.top()), egui::vec2(w, caption_h));
            let rect = egui::Rect::from_min_max(
                egui::pos2(x0, avail.top() + caption_h),
                egui::pos2(x0 + w, avail.bottom()),
            );
            ui.painter().text(
                caption.left_center(),
                egui::Align2::LEFT_CENTER,
                &self.layers[i].name,
                egui::FontId::proportional(14.0),
                ui.visuals().text_color(),
            );
            let response = ui.interact(
                rect,
                ui.scope_id().with(("slice", i)),
                egui::Sense::click_and_drag(),
            );
            self.interact(ui, &response, i, rect);
            let view = self.view();
            let size = [rect.width() as f64, rect.height() as f64];
            let layer = &self.layers[i];
            match SliceUniform::new(&view, &layer.volume.grid, size, layer.window) {
                Some(uniform) => paint_slice(
                    ui,
                    rect,
                    SliceCallback {
                        view: i,
                        layer: i,
                        uniform,
                    },
                ),
                None => {
                    self.gpu_error = Some(format!("{}: singular voxel-to-world matrix", layer.name))
                }
            }
            self.draw_orientation_labels(ui, rect, &view, size);
            if let Some(pos) = response.hover_pos() {
                hovered = Some((pos, rect));
            }
        }
        if let Some((pos, rect)) = hovered {
            self.status = self.cursor_readout(pos, rect);
        }
    }

    fn interact(
        &mut self,
        ui: &egui::Ui,
        response: &egui::Response,
        layer: usize,
        rect: egui::Rect,
    ) {
        if response.hovered() {
            // One slice per wheel notch (or per trackpad event), like ITK-SNAP.
            let steps: f64 = ui.input(|i| {
                i.raw
                    .events
                    .iter()
                    .map(|e| match e {
                        egui::Event::MouseWheel { delta, .. } if delta.y != 0.0 => {
                            f64::from(delta.y.signum())
                        }
                        _ => 0.0,
                    })
                    .sum()
            });
            if steps != 0.0 {
                self.step_slice(steps);
            }
        }
        let d = response.drag_delta();
        if d == egui::Vec2::ZERO {
            return;
        }
        if response.dragged_by(egui::PointerButton::Primary) {
            // Horizontal = window width, vertical = level, like ITK-SNAP.
            let (lo, hi) = self.layers[layer].window;
            let width = (hi - lo).max(1e-6);
            let level = 0.5 * (lo + hi) - d.y * width * 0.005;
            let width = (width * (1.0 + d.x * 0.005)).max(1e-6);
            self.layers[layer].window = (level - 0.5 * width, level + 0.5 * width);
        } else if response.dragged_by(egui::PointerButton::Secondary) {
            self.zoom = (self.zoom * (-d.y as f64 * 0.01).exp()).clamp(0.1, 50.0);
        } else if response.dragged_by(egui::PointerButton::Middle) {
            let view = self.view();
            let size = [rect.width() as f64, rect.height() as f64];
            let a = view.world_at([0.0, 0.0], size);
            let b = view.world_at([d.x as f64 / size[0], d.y as f64 / size[1]], size);
            let (h, v) = self.plane.in_plane_axes();
            self.pan_mm[0] -= b[h] - a[h];
            self.pan_mm[1] -= b[v] - a[v];
        }
    }

    /// Anatomical direction letters at the edges of a view.
    fn draw_orientation_labels(
        &self,
        ui: &egui::Ui,
        rect: egui::Rect,
        view: &SliceView,
        size: [f64; 2],
    ) {
        let dir = |from: [f64; 2], to: [f64; 2]| {
            let a = view.world_at(from, size);
            let b = view.world_at(to, size);
            let d = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
            let axis = (0..3)
                .max_by(|&i, &j| d[i].abs().total_cmp(&d[j].abs()))
                .unwrap_or(0);
            let (pos, neg) = [("R", "L"), ("A", "P"), ("S", "I")][axis];
            if d[axis] > 0.0 { pos } else { neg }
        };
        let color = egui::Color32::from_rgb(255, 200, 80);
        let font = egui::FontId::proportional(13.0);
        let p = ui.painter_at(rect);
        p.text(
            rect.left_center() + egui::vec2(4.0, 0.0),
            egui::Align2::LEFT_CENTER,
            dir([0.5, 0.5], [0.0, 0.5]),
            font.clone(),
            color,
        );
        p.text(
            rect.right_center() - egui::vec2(4.0, 0.0),
            egui::Align2::RIGHT_CENTER,
            dir([0.5, 0.5], [1.0, 0.5]),
            font.clone(),
            color,
        );
        p.text(
            rect.center_top() + egui::vec2(0.0, 4.0),
            egui::Align2::CENTER_TOP,
            dir([0.5, 0.5], [0.5, 0.0]),
            font.clone(),
            color,
        );
        p.text(
            rect.center_bottom() - egui::vec2(0.0, 4.0),
            egui::Align2::CENTER_BOTTOM,
            dir([0.5, 0.5], [0.5, 1.0]),
            font,
            color,
        );
    }

    /// World RAS mm under the cursor, and each layer's voxel index and value there.
    fn cursor_readout(&self, pos: egui::Pos2, rect: egui::Rect) -> String {
        let view = self.view();
        let size = [rect.width() as f64, rect.height() as f64];
        let uv = [
            ((pos.x - rect.left()) / rect.width()) as f64,
            ((pos.y - rect.top()) / rect.height()) as f64,
        ];
        let w = view.world_at(uv, size);
        let mut s = format!("RAS {:.1}, {:.1}, {:.1} mm", w[0], w[1], w[2]);
        for layer in &self.layers {
            let g = &layer.volume.grid;
            if let Some(ijk) = g.world_to_voxel(w) {
                let r = ijk.map(|v| (v + 0.5).floor());
                let inside = (0..3).all(|a| r[a] >= 0.0 && r[a] < g.dims[a] as f64);
                if inside {
                    let value = Sampler {
                        dims: g.dims,
                        border: Border::Constant(0.0),
                    }
                    .nearest(layer.volume.channel(0), ijk);
                    s += &format!(
                        "   {}: [{}, {}, {}] = {:.4}",
                        layer.name, r[0], r[1], r[2], value
                    );
                }
            }
        }
        s
    }
}

impl eframe::App for ViewerApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.keyboard(ui.ctx());
        egui::Panel::top("top").show(ui, |ui| self.top_bar(ui));
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.label(if self.status.is_empty() {
                "Move the mouse over a view to read coordinates and values"
            } else {
                &self.status
            });
        });
        egui::Panel::left("side")
            .default_size(230.0)
            .show(ui, |ui| self.side_panel(ui));
        egui::CentralPanel::default().show(ui, |ui| self.views(ui));
    }
}
