//! The view area: axial, coronal and sagittal views in a 2×2 grid (the
//! fourth tile holds the colour bars), or one view enlarged; each view drawn
//! by the composite shader through a paint callback, with the crosshair,
//! orientation letters and read-out drawn by egui on top.

use eframe::egui;

use super::callback::{ViewCallback, paint};
use super::data::{LoadedImage, value_at};
use super::viewer::ViewerApp;
use crate::landmarks::formats::Side;
use crate::render::{Composite, CompositeUniform, Mode, Overlays, Plane, SliceView, Slot};

const CAPTION_H: f32 = 22.0;

/// The world point (RAS mm, on the view's slice) under a screen position of
/// a view drawn in `rect`.
pub(super) fn world_under(view: &SliceView, rect: egui::Rect, pos: egui::Pos2) -> [f64; 3] {
    let size = [f64::from(rect.width()), f64::from(rect.height())];
    let uv = [
        f64::from((pos.x - rect.left()) / rect.width()),
        f64::from((pos.y - rect.top()) / rect.height()),
    ];
    view.world_at(uv, size)
}

/// Where a world point (projected onto the view's plane) is on screen.
pub(super) fn screen_of(view: &SliceView, rect: egui::Rect, world: [f64; 3]) -> egui::Pos2 {
    let size = [f64::from(rect.width()), f64::from(rect.height())];
    let uv = view.uv_of(world, size);
    egui::pos2(
        rect.left() + uv[0] as f32 * rect.width(),
        rect.top() + uv[1] as f32 * rect.height(),
    )
}
const GAP: f32 = 4.0;
/// Width of the colour-bar column beside an enlarged view or two runs.
const LEGEND_W: f32 = 220.0;

/// Which column a view tile belongs to: the main scene (with the run it
/// shows when runs are compared), or the compared run's scene.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Column {
    Main(Option<u32>),
    Compare(u32),
}

impl ViewerApp {
    /// The central area: banners, then the views.
    pub(super) fn view_area(&mut self, ui: &mut egui::Ui) {
        if let Some(gap) = self.images.no_overlap_mm {
            ui.colored_label(
                egui::Color32::from_rgb(255, 120, 90),
                format!(
                    "The moving image does not overlap the fixed image in world space \
                     ({gap:.0} mm apart): their headers place them in different positions. \
                     Check their sform/qform (warpscope info)."
                ),
            );
        }
        if self.images.fixed.is_none() && self.images.moving.is_none() {
            ui.centered_and_justified(|ui| {
                ui.label(if self.loader.pending() > 0 {
                    "Loading…"
                } else {
                    "Open a fixed image (menu File, Open fixed image…) or drop NIfTI files here."
                });
            });
            return;
        }
        let mut area = ui.available_rect_before_wrap();
        // One view enlarged, or two runs side by side: the colour bars go
        // in a column on the right (in the 2×2 layout, the fourth tile).
        if (self.view.nav.enlarged.is_some() || self.compared_runs().is_some())
            && area.width() > 1.8 * LEGEND_W
        {
            let legend =
                egui::Rect::from_min_max(egui::pos2(area.right() - LEGEND_W, area.top()), area.max);
            area.max.x -= LEGEND_W + GAP;
            let mut child = ui.new_child(egui::UiBuilder::new().max_rect(legend.shrink(6.0)));
            self.legend(&mut child);
        }
        if let Some((a, b)) = self.compared_runs() {
            // Two runs side by side: each plane in a row, run a left, run b right.
            let planes: Vec<Plane> = match self.view.nav.enlarged {
                Some(p) => vec![p],
                None => Plane::ALL.to_vec(),
            };
            let rows = planes.len() as f32;
            let w = (area.width() - GAP) / 2.0;
            let h = (area.height() - GAP * (rows - 1.0)) / rows;
            for (r, plane) in planes.into_iter().enumerate() {
                for (c, run) in [(0.0, a), (1.0, b)] {
                    let tile = egui::Rect::from_min_size(
                        area.min + egui::vec2(c * (w + GAP), r as f32 * (h + GAP)),
                        egui::vec2(w, h),
                    );
                    let side = if c == 0.0 {
                        Column::Main(Some(run))
                    } else {
                        Column::Compare(run)
                    };
                    self.view_tile(ui, plane, tile, side);
                }
            }
            return;
        }
        match self.view.nav.enlarged {
            Some(plane) => self.view_tile(ui, plane, area, Column::Main(None)),
            None => {
                let w = (area.width() - GAP) / 2.0;
                let h = (area.height() - GAP) / 2.0;
                let tile = |col: f32, row: f32| {
                    egui::Rect::from_min_size(
                        area.min + egui::vec2(col * (w + GAP), row * (h + GAP)),
                        egui::vec2(w, h),
                    )
                };
                self.view_tile(ui, Plane::Axial, tile(0.0, 0.0), Column::Main(None));
                self.view_tile(ui, Plane::Coronal, tile(1.0, 0.0), Column::Main(None));
                self.view_tile(ui, Plane::Sagittal, tile(0.0, 1.0), Column::Main(None));
                let legend = tile(1.0, 1.0);
                let mut child = ui.new_child(egui::UiBuilder::new().max_rect(legend.shrink(6.0)));
                self.legend(&mut child);
            }
        }
    }

    /// The two runs shown side by side, when they are.
    fn compared_runs(&self) -> Option<(u32, u32)> {
        match self.reg.compare_pick.as_slice() {
            [a, b] if self.reg.side_by_side && self.reg.shown == Some(*a) => Some((*a, *b)),
            _ => None,
        }
    }

    fn view_tile(&mut self, ui: &mut egui::Ui, plane: Plane, tile: egui::Rect, column: Column) {
        let caption = egui::Rect::from_min_size(tile.min, egui::vec2(tile.width(), CAPTION_H));
        let rect = egui::Rect::from_min_max(tile.min + egui::vec2(0.0, CAPTION_H), tile.max);
        if rect.width() < 8.0 || rect.height() < 8.0 {
            return;
        }
        let compare = matches!(column, Column::Compare(_));
        if !compare {
            self.view.rects[plane.index()] = Some(rect);
        }
        self.caption(ui, plane, caption, column);

        let id = ui.scope_id().with(("view", plane.index(), compare));
        let response = ui.interact(rect, id, egui::Sense::click_and_drag());
        self.interact(ui, &response, plane, rect);

        let view = self.view.nav.view(plane);
        let size = [f64::from(rect.width()), f64::from(rect.height())];
        // Landmark mode shows the side's image alone; the field overlays
        // live in fixed space and are kept off the moving image.
        let (a, composite, overlays) = if self.lm.mode {
            let slot = match self.lm.side {
                Side::Fixed => Slot::Fixed,
                Side::Moving => Slot::Moving,
            };
            let single = Composite {
                mode: Mode::Single,
                ..self.view.composite.clone()
            };
            let overlays = if slot == Slot::Fixed {
                self.view.overlays.clone()
            } else {
                Overlays::default()
            };
            (slot, single, overlays)
        } else {
            (
                self.view.a,
                self.view.composite.clone(),
                self.view.overlays.clone(),
            )
        };
        let mut present = self.present();
        present.a = self.slot_image(a);
        match CompositeUniform::new(&view, size, &present, &composite, &overlays) {
            Some(uniform) => paint(
                ui,
                rect,
                ViewCallback {
                    id: plane.index() as u64 + if compare { 16 } else { 0 },
                    a,
                    b: self.view.b,
                    uniform,
                    compare,
                },
            ),
            None => {
                ui.painter_at(rect).text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    "an image's world matrix is singular",
                    egui::FontId::proportional(14.0),
                    egui::Color32::RED,
                );
            }
        }
        let painter = ui.painter_at(rect);
        self.draw_crosshair(&painter, &view, rect);
        self.draw_landmarks(&painter, plane, &view, rect);
        draw_orientation_letters(&painter, &view, rect);
        self.draw_names(&painter, a, composite.mode, rect);
        if self.view.composite.mode == Mode::Swipe {
            let x = rect.left() + self.view.composite.swipe * rect.width();
            painter.line_segment(
                [egui::pos2(x, rect.top()), egui::pos2(x, rect.bottom())],
                egui::Stroke::new(2.0, egui::Color32::from_rgb(255, 255, 255)),
            );
        }
        if let Some(pos) = response.hover_pos() {
            self.view.hovered = Some(plane);
            self.notes.status = self.readout(&view, rect, pos);
        }
    }

    fn caption(&mut self, ui: &mut egui::Ui, plane: Plane, rect: egui::Rect, column: Column) {
        let mut child = ui.new_child(
            egui::UiBuilder::new()
                .max_rect(rect)
                .layout(egui::Layout::left_to_right(egui::Align::Center)),
        );
        let ui = &mut child;
        ui.strong(plane.name());
        if let Column::Main(Some(run)) | Column::Compare(run) = column {
            ui.colored_label(egui::Color32::from_rgb(120, 200, 255), format!("run {run}"));
        }
        let n = plane.normal_axis();
        let (lo, hi) = self.view.nav.slice_range(plane);
        let mut pos = self.view.nav.cursor_ras[n];
        let label = if matches!(column, Column::Main(None)) {
            0.0
        } else {
            50.0
        };
        ui.spacing_mut().slider_width = (rect.width() - 210.0 - label).max(40.0);
        let axis = ["x (R)", "y (A)", "z (S)"][n];
        if ui
            .add(
                egui::Slider::new(&mut pos, lo..=hi)
                    .step_by(self.view.nav.step_mm)
                    .fixed_decimals(1)
                    .suffix(" mm")
                    // Round only what the user edits: the crosshair set by a
                    // click must not be snapped to the slider's grid.
                    .clamping(egui::SliderClamping::Edits),
            )
            .on_hover_text(format!(
                "Slice position, {axis} in world mm. Mouse wheel over the view, or Page Up / Page Down"
            ))
            .changed()
        {
            self.view.nav.cursor_ras[n] = pos;
        }
        let (label, tip) = if self.view.nav.enlarged == Some(plane) {
            ("back", "Back to three views (V or Esc)")
        } else {
            ("enlarge", "Enlarge this view (A / C / S, or double-click)")
        };
        if ui.small_button(label).on_hover_text(tip).clicked() {
            self.view.toggle_enlarged(plane);
        }
    }

    /// The file each shown image comes from, in the view's lower-left
    /// corner (as Slicer and ITK-SNAP show them).
    fn draw_names(&self, painter: &egui::Painter, a: Slot, mode: Mode, rect: egui::Rect) {
        let name = |slot: Slot| -> Option<String> {
            let n = match slot {
                Slot::Fixed => self.images.fixed.as_ref()?.name.clone(),
                Slot::Moving => self.images.moving.as_ref()?.name.clone(),
                Slot::Warped => format!("{} warped", self.images.moving.as_ref()?.name),
            };
            Some(format!("{}: {n}", slot.name()))
        };
        let lines: Vec<String> = if mode == Mode::Single {
            name(a).into_iter().collect()
        } else {
            [("A", a), ("B", self.view.b)]
                .into_iter()
                .filter_map(|(k, s)| name(s).map(|n| format!("{k} {n}")))
                .collect()
        };
        let font = egui::FontId::proportional(11.0);
        let mut y = rect.bottom() - 4.0;
        for line in lines.iter().rev() {
            painter.text(
                egui::pos2(rect.left() + 5.0, y),
                egui::Align2::LEFT_BOTTOM,
                line,
                font.clone(),
                egui::Color32::from_rgb(230, 230, 150),
            );
            y -= 14.0;
        }
    }

    fn interact(
        &mut self,
        ui: &egui::Ui,
        response: &egui::Response,
        plane: Plane,
        rect: egui::Rect,
    ) {
        let view = self.view.nav.view(plane);
        let size = [f64::from(rect.width()), f64::from(rect.height())];
        if response.hovered() {
            let (zoom, ctrl, steps) = ui.input(|i| {
                let steps: f64 = i
                    .raw
                    .events
                    .iter()
                    .map(|e| match e {
                        egui::Event::MouseWheel { delta, .. } if delta.y != 0.0 => {
                            f64::from(delta.y.signum())
                        }
                        _ => 0.0,
                    })
                    .sum();
                (
                    i.zoom_delta(),
                    i.modifiers.command || i.modifiers.ctrl,
                    steps,
                )
            });
            if ctrl {
                // ctrl-wheel: zoom (egui reports it as a zoom delta).
                if zoom != 1.0 {
                    self.view.nav.zoom_by(plane, f64::from(zoom));
                } else if steps != 0.0 {
                    self.view.nav.zoom_by(plane, (0.15 * steps).exp());
                }
            } else if steps != 0.0 {
                // One slice per wheel notch, like ITK-SNAP.
                self.view.nav.step_slice(plane, steps);
            }
        }
        if self.landmark_mouse(response, plane, &view, rect) {
            return;
        }
        if response.double_clicked() {
            self.view.toggle_enlarged(plane);
        } else if response.clicked()
            && let Some(p) = response.interact_pointer_pos()
        {
            // Left click moves the crosshair; the other views follow.
            let w = world_under(&view, rect, p);
            let (h, v) = plane.in_plane_axes();
            self.view.nav.cursor_ras[h] = w[h];
            self.view.nav.cursor_ras[v] = w[v];
        }
        if response.drag_started_by(egui::PointerButton::Primary) {
            self.view.dragging_divider = self.view.composite.mode == Mode::Swipe
                && response.interact_pointer_pos().is_some_and(|p| {
                    (p.x - (rect.left() + self.view.composite.swipe * rect.width())).abs() < 8.0
                });
        }
        let d = response.drag_delta();
        if d == egui::Vec2::ZERO {
            return;
        }
        if response.dragged_by(egui::PointerButton::Primary) {
            if self.view.dragging_divider {
                if let Some(p) = response.interact_pointer_pos() {
                    self.view.composite.swipe =
                        ((p.x - rect.left()) / rect.width()).clamp(0.0, 1.0);
                }
            } else {
                // Window/level of image A (B with shift): horizontal = width, vertical = level.
                let b = ui.input(|i| i.modifiers.shift);
                self.drag_window(if b { self.view.b } else { self.view.a }, d);
            }
        } else if response.dragged_by(egui::PointerButton::Secondary) {
            self.view.nav.zoom_by(plane, (-f64::from(d.y) * 0.01).exp());
        } else if response.dragged_by(egui::PointerButton::Middle) {
            let a = view.world_at([0.0, 0.0], size);
            let b = view.world_at([f64::from(d.x) / size[0], f64::from(d.y) / size[1]], size);
            let (h, v) = plane.in_plane_axes();
            let pan = &mut self.view.nav.pan_mm[plane.index()];
            pan[0] -= b[h] - a[h];
            pan[1] -= b[v] - a[v];
        }
    }

    fn drag_window(&mut self, slot: crate::render::Slot, d: egui::Vec2) {
        let img = match slot {
            crate::render::Slot::Fixed => self.images.fixed.as_mut(),
            // The warped image shares the moving image's window.
            _ => self.images.moving.as_mut(),
        };
        if let Some(img) = img {
            let (lo, hi) = img.style.window;
            let width = (hi - lo).max(1e-6);
            let level = 0.5 * (lo + hi) - d.y * width * 0.005;
            let width = (width * (1.0 + d.x * 0.005)).max(1e-6);
            img.style.window = (level - 0.5 * width, level + 0.5 * width);
        }
    }

    fn draw_crosshair(&self, painter: &egui::Painter, view: &SliceView, rect: egui::Rect) {
        let egui::Pos2 { x, y } = screen_of(view, rect, self.view.nav.cursor_ras);
        let stroke = egui::Stroke::new(
            1.0,
            egui::Color32::from_rgba_unmultiplied(80, 200, 255, 150),
        );
        let gap = 6.0;
        painter.line_segment([egui::pos2(rect.left(), y), egui::pos2(x - gap, y)], stroke);
        painter.line_segment(
            [egui::pos2(x + gap, y), egui::pos2(rect.right(), y)],
            stroke,
        );
        painter.line_segment([egui::pos2(x, rect.top()), egui::pos2(x, y - gap)], stroke);
        painter.line_segment(
            [egui::pos2(x, y + gap), egui::pos2(x, rect.bottom())],
            stroke,
        );
    }

    /// RAS mm under the cursor; each image's voxel index and value there.
    fn readout(&self, view: &SliceView, rect: egui::Rect, pos: egui::Pos2) -> String {
        let w = world_under(view, rect, pos);
        let mut s = format!("RAS {:.1}, {:.1}, {:.1} mm", w[0], w[1], w[2]);
        let mut add = |name: &str, vol: Option<(&crate::volume::Volume, usize, &str)>| {
            if let Some((v, c, units)) = vol
                && let Some((ijk, value)) = value_at(v, c, w)
            {
                s += &format!(
                    "   {name} [{}, {}, {}] = {value:.4}{}{units}",
                    ijk[0],
                    ijk[1],
                    ijk[2],
                    if units.is_empty() { "" } else { " " }
                );
            }
        };
        fn image(i: &LoadedImage) -> (&crate::volume::Volume, usize, &str) {
            (&i.volume, i.channel, i.units)
        }
        add("fixed", self.images.fixed.as_ref().map(image));
        add("moving", self.images.moving.as_ref().map(image));
        let moving_units = self.images.moving.as_ref().map_or("", |m| m.units);
        add(
            "warped",
            self.field
                .products
                .warped
                .as_ref()
                .map(|v| (v, 0, moving_units)),
        );
        add(
            "det J",
            self.field.products.jacobian.as_ref().map(|v| (v, 0, "")),
        );
        add("IC", self.images.ic.as_ref().map(image));
        add("label", self.images.labels.as_ref().map(image));
        if let Some(f) = &self.field.loaded
            && let Some(m) = f.mapping.map_point(w)
        {
            let d = [m[0] - w[0], m[1] - w[1], m[2] - w[2]];
            s += &format!("   u = ({:.2}, {:.2}, {:.2}) mm", d[0], d[1], d[2]);
        }
        s
    }
}

/// Anatomical direction letters at the edges of a view.
fn draw_orientation_letters(painter: &egui::Painter, view: &SliceView, rect: egui::Rect) {
    let size = [f64::from(rect.width()), f64::from(rect.height())];
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
    for (anchor, align, to) in [
        (
            rect.left_center() + egui::vec2(4.0, 0.0),
            egui::Align2::LEFT_CENTER,
            [0.0, 0.5],
        ),
        (
            rect.right_center() - egui::vec2(4.0, 0.0),
            egui::Align2::RIGHT_CENTER,
            [1.0, 0.5],
        ),
        (
            rect.center_top() + egui::vec2(0.0, 4.0),
            egui::Align2::CENTER_TOP,
            [0.5, 0.0],
        ),
        (
            rect.center_bottom() - egui::vec2(0.0, 4.0),
            egui::Align2::CENTER_BOTTOM,
            [0.5, 1.0],
        ),
    ] {
        painter.text(anchor, align, dir([0.5, 0.5], to), font.clone(), color);
    }
}
