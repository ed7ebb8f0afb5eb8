//! The fourth tile: colour bars with values for what is coloured (image A's
//! map, det J, IC weights), det J statistics and the latest messages.
//! Colours come from `render::colormap::lut_sample`, what the shader draws.

use eframe::egui;

use super::viewer::ViewerApp;
use crate::render::colormap::{ColorMap, lut_sample};
use crate::render::{JacobianStyle, Mode};

/// A horizontal colour bar with tick values.
fn colour_bar(ui: &mut egui::Ui, title: &str, map: ColorMap, ticks: &[(f32, String)]) {
    ui.label(title);
    let (rect, _) = ui.allocate_exact_size(
        egui::vec2(ui.available_width().min(320.0), 14.0),
        egui::Sense::hover(),
    );
    let painter = ui.painter_at(rect.expand(1.0));
    let steps = 96;
    for i in 0..steps {
        let t0 = i as f32 / steps as f32;
        let t1 = (i + 1) as f32 / steps as f32;
        let [r, g, b] = lut_sample(map, 0.5 * (t0 + t1));
        let r0 = egui::Rect::from_min_max(
            egui::pos2(rect.left() + t0 * rect.width(), rect.top()),
            egui::pos2(rect.left() + t1 * rect.width() + 0.5, rect.bottom()),
        );
        painter.rect_filled(
            r0,
            0.0,
            egui::Color32::from_rgb((r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8),
        );
    }
    let (tick_rect, _) =
        ui.allocate_exact_size(egui::vec2(rect.width(), 14.0), egui::Sense::hover());
    let p = ui.painter_at(tick_rect.expand2(egui::vec2(30.0, 0.0)));
    for (t, text) in ticks {
        let x = rect.left() + t.clamp(0.0, 1.0) * rect.width();
        let align = if *t <= 0.01 {
            egui::Align2::LEFT_TOP
        } else if *t >= 0.99 {
            egui::Align2::RIGHT_TOP
        } else {
            egui::Align2::CENTER_TOP
        };
        p.text(
            egui::pos2(x, tick_rect.top()),
            align,
            text,
            egui::FontId::proportional(11.0),
            ui.visuals().text_color(),
        );
    }
    ui.add_space(4.0);
}

/// A value as the colour bars and the window fields label it.
pub(super) fn fmt(v: f32) -> String {
    if v.abs() >= 1000.0 || (v != 0.0 && v.abs() < 0.01) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

impl ViewerApp {
    /// The image the views show as A this frame: the landmark side in
    /// landmark mode, flicker's current image, else A.
    pub(super) fn legend_slot(&self) -> crate::render::Slot {
        use crate::landmarks::formats::Side;
        use crate::render::Slot;
        if self.lm.mode {
            match self.lm.side {
                Side::Fixed => Slot::Fixed,
                Side::Moving => Slot::Moving,
            }
        } else if self.view.composite.mode == Mode::Flicker && self.view.flicker_shows_b {
            self.view.b
        } else {
            self.view.a
        }
    }

    pub(super) fn legend(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            let shown = self.legend_slot();
            if let Some((_, style)) = self.slot_image(shown) {
                let (lo, hi) = style.window;
                let difference = self.view.composite.mode == Mode::Difference && !self.lm.mode;
                let title = if difference {
                    format!(
                        "|{} − {}| (windowed)",
                        self.view.a.name(),
                        self.view.b.name()
                    )
                } else {
                    format!("{} ({})", shown.name(), style.colormap.name())
                };
                let ticks = if difference {
                    let g = self.view.composite.difference_gain.max(1e-6);
                    vec![(0.0, "0".into()), (1.0, fmt(1.0 / g))]
                } else {
                    vec![(0.0, fmt(lo)), (0.5, fmt(0.5 * (lo + hi))), (1.0, fmt(hi))]
                };
                colour_bar(ui, &title, style.colormap, &ticks);
            }
            if self.view.composite.mode == Mode::GreenMagenta && !self.lm.mode {
                ui.label(format!(
                    "green: {}, magenta: {}, grey where they agree",
                    self.view.a.name(),
                    self.view.b.name()
                ));
            }
            let j = &self.view.overlays.jacobian;
            if j.on && self.field_grid().is_some() {
                let r = j.range.max(1.0001);
                match j.style {
                    JacobianStyle::Log => colour_bar(
                        ui,
                        "det J (log scale; folds in the fold colour)",
                        ColorMap::JacobianLog,
                        &[
                            (0.0, format!("≤{}", fmt(1.0 / r))),
                            (0.25, fmt(1.0 / r.sqrt())),
                            (0.5, "1".into()),
                            (0.75, fmt(r.sqrt())),
                            (1.0, format!("≥{}", fmt(r))),
                        ],
                    ),
                    JacobianStyle::Signed => colour_bar(
                        ui,
                        "det J (red negative, white 0, blue positive)",
                        ColorMap::JacobianSigned,
                        &[
                            (0.0, format!("≤−{}", fmt(r))),
                            (0.5, "0".into()),
                            (1.0, format!("≥{}", fmt(r))),
                        ],
                    ),
                }
            }
            if let Some(s) = &self.field.products.jacobian_stats {
                ui.label(format!(
                    "det J: min {:.3}, max {:.3}, ≤ 0 at {} voxels ({:.3} %)",
                    s.min,
                    s.max,
                    s.folds,
                    s.fold_percent()
                ));
            }
            if self.view.overlays.ic.on
                && let Some(ic) = &self.images.ic
            {
                let (lo, hi) = ic.style.window;
                colour_bar(
                    ui,
                    "IC weight (clear at the highest weight)",
                    self.view.overlays.ic.colormap,
                    &[(0.0, fmt(hi)), (0.5, fmt(0.5 * (lo + hi))), (1.0, fmt(lo))],
                );
            }
            if let Some(f) = &self.field.loaded {
                ui.label(format!("field: {} ({})", f.name, f.kind.name()));
            } else if let Some(run) = &self.reg.run
                && let Some((stage, level, iter)) = &run.preview_at
            {
                ui.label(format!(
                    "field: live preview of run {} ({stage}, level {}, iteration {iter})",
                    run.id,
                    level + 1
                ));
            }
            ui.separator();
            let mut dismiss = None;
            for (i, text) in self.notes.latest_notices(8) {
                ui.horizontal_wrapped(|ui| {
                    ui.label(text);
                    if ui.small_button("×").on_hover_text("Dismiss").clicked() {
                        dismiss = Some(i);
                    }
                });
            }
            if let Some(i) = dismiss {
                self.notes.dismiss(i);
            }
        });
    }
}
