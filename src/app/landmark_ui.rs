//! Landmarks on screen: glyphs on their slice, error vectors through the
//! field, clicking and dragging in landmark mode, the side-panel controls
//! and the TRE table (the rows `warpscope eval` prints).

use eframe::egui;

use super::files::Pick;
use super::landmarks::{LandmarkFile, SortBy};
use super::viewer::ViewerApp;
use super::views::{screen_of, world_under};
use crate::landmarks::formats::{Format, Side};
use crate::metrics::tre::{Status, fmt_mm};
use crate::render::{Plane, SliceView};

/// How close (px) the pointer must be to grab a landmark.
const PICK_PX: f32 = 8.0;

impl ViewerApp {
    /// Distance (in slice steps) of a point from a view's slice.
    fn off_slice(&self, plane: Plane, p: [f64; 3]) -> f64 {
        let n = plane.normal_axis();
        (p[n] - self.view.nav.cursor_ras[n]).abs() / self.view.nav.step_mm.max(1e-9)
    }

    /// The landmark of the shown side under `pos` on this view's slice.
    pub(super) fn landmark_at(
        &self,
        plane: Plane,
        view: &SliceView,
        rect: egui::Rect,
        pos: egui::Pos2,
    ) -> Option<String> {
        let side = self.landmark_side();
        self.lm
            .editor
            .pairs()
            .iter()
            .filter_map(|p| {
                let x = p.get(side)?;
                (self.off_slice(plane, x) <= 0.5 + 1e-6)
                    .then(|| (p, screen_of(view, rect, x).distance(pos)))
            })
            .filter(|(_, d)| *d <= PICK_PX)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, _)| p.id.clone())
    }

    /// Landmark-mode mouse: click places or selects, drag moves a landmark.
    /// Returns true when it used the event (window/level then stays put).
    pub(super) fn landmark_mouse(
        &mut self,
        response: &egui::Response,
        plane: Plane,
        view: &SliceView,
        rect: egui::Rect,
    ) -> bool {
        if !self.lm.mode {
            return false;
        }
        let world = |p: egui::Pos2| world_under(view, rect, p);
        let side = self.landmark_side();
        // A drag starts once the pointer has moved past egui's threshold,
        // by then maybe off the glyph: hit-test where the button went down.
        if response.drag_started_by(egui::PointerButton::Primary)
            && let Some(pos) = response
                .ctx
                .input(|i| i.pointer.press_origin())
                .or_else(|| response.interact_pointer_pos())
            && let Some(id) = self.landmark_at(plane, view, rect, pos)
        {
            self.lm.editor.checkpoint();
            self.lm.selected = Some(id.clone());
            self.lm.rename = id.clone();
            self.lm.dragging = Some((id, side, plane));
        }
        // Only the view the drag started in follows it (every view runs this).
        if let Some((id, s, p)) = self.lm.dragging.clone()
            && p == plane
        {
            if response.dragged_by(egui::PointerButton::Primary)
                && let Some(pos) = response.interact_pointer_pos()
            {
                self.lm.editor.place(&id, s, world(pos));
            }
            if response.drag_stopped() || !response.dragged() {
                self.lm.dragging = None;
            }
            return true;
        }
        if response.clicked()
            && let Some(pos) = response.interact_pointer_pos()
        {
            match self.landmark_at(plane, view, rect, pos) {
                Some(id) => {
                    self.lm.selected = Some(id.clone());
                    self.lm.rename = id;
                }
                None => {
                    let w = world(pos);
                    self.place_landmark(w);
                    // The crosshair follows, so the other views show the new point.
                    self.view.nav.cursor_ras = w;
                }
            }
            return true;
        }
        false
    }

    /// Glyphs of the shown side on this slice (faint when within 3 slices),
    /// and with a field, each point's partner mapped into this space with
    /// the error vector to it.
    pub(super) fn draw_landmarks(
        &self,
        painter: &egui::Painter,
        plane: Plane,
        view: &SliceView,
        rect: egui::Rect,
    ) {
        if self.lm.editor.is_empty() {
            return;
        }
        let side = self.landmark_side();
        let flagged: std::collections::HashSet<&str> = self
            .lm
            .report
            .iter()
            .flat_map(|r| r.points.iter())
            .filter(|p| p.status != Status::Used)
            .map(|p| p.id.as_str())
            .collect();
        let font = egui::FontId::proportional(11.0);
        for p in self.lm.editor.pairs() {
            let Some(x) = p.get(side) else { continue };
            let off = self.off_slice(plane, x);
            if off > 3.0 {
                continue;
            }
            let at = screen_of(view, rect, x);
            let selected = self.lm.selected.as_deref() == Some(p.id.as_str());
            let colour = if flagged.contains(p.id.as_str()) {
                egui::Color32::from_rgb(255, 80, 60)
            } else if selected {
                egui::Color32::from_rgb(80, 230, 255)
            } else if side == Side::Fixed {
                egui::Color32::from_rgb(255, 210, 60)
            } else {
                egui::Color32::from_rgb(120, 255, 140)
            };
            if off > 0.5 + 1e-6 {
                painter.circle_filled(at, 2.0, colour.gamma_multiply(0.5));
                continue;
            }
            // Where the partner lands in this space, through the field.
            if self.field.loaded.is_some()
                && let Some((forward, back)) = self.lm.mapped.get(&p.id)
            {
                let other = if side == Side::Fixed { *back } else { *forward };
                if let Some(o) = other {
                    let to = screen_of(view, rect, o);
                    painter
                        .line_segment([at, to], egui::Stroke::new(1.5, colour.gamma_multiply(0.8)));
                    let d = 3.0;
                    let s = egui::Stroke::new(1.5, egui::Color32::WHITE);
                    painter.line_segment([to - egui::vec2(d, d), to + egui::vec2(d, d)], s);
                    painter.line_segment([to - egui::vec2(d, -d), to + egui::vec2(d, -d)], s);
                }
            }
            painter.circle_stroke(
                at,
                if selected { 6.5 } else { 5.0 },
                egui::Stroke::new(2.0, colour),
            );
            // A proposed point is labelled "id?" until moved or confirmed.
            let label = if p.proposed == Some(side) {
                format!("{}?", p.id)
            } else {
                p.id.clone()
            };
            painter.text(
                at + egui::vec2(7.0, -7.0),
                egui::Align2::LEFT_BOTTOM,
                label,
                font.clone(),
                colour,
            );
        }
    }

    /// Keys: K landmark mode, T fixed/moving, Enter confirms the selected
    /// pair's proposed point, Delete removes, ctrl-Z / ctrl-Y.
    pub(super) fn landmark_keys(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let (k, t, del, undo, redo, enter) = ctx.input(|i| {
            let cmd = i.modifiers.command || i.modifiers.ctrl;
            (
                i.key_pressed(egui::Key::K),
                i.key_pressed(egui::Key::T),
                i.key_pressed(egui::Key::Delete) || i.key_pressed(egui::Key::Backspace),
                cmd && !i.modifiers.shift && i.key_pressed(egui::Key::Z),
                cmd && (i.key_pressed(egui::Key::Y)
                    || (i.modifiers.shift && i.key_pressed(egui::Key::Z))),
                i.key_pressed(egui::Key::Enter),
            )
        });
        if enter
            && self.lm.mode
            && let Some(id) = self.lm.selected.clone()
        {
            self.lm.editor.confirm(&id);
        }
        if k {
            self.lm.mode = !self.lm.mode;
        }
        if t && self.lm.mode {
            self.lm.side = match self.lm.side {
                Side::Fixed => Side::Moving,
                Side::Moving => Side::Fixed,
            };
        }
        if del && let Some(id) = self.lm.selected.take() {
            self.lm.editor.remove(&id);
        }
        if undo {
            self.undo_landmarks();
        }
        if redo {
            self.redo_landmarks();
        }
    }

    /// The Landmarks section of the side panel.
    pub(super) fn landmark_controls(&mut self, ui: &mut egui::Ui) {
        ui.heading("Landmarks");
        ui.checkbox(&mut self.lm.mode, "landmark mode (K)")
            .on_hover_text(
                "Click to place, drag to move, Enter confirms a proposed point (id?), Delete \
                 to remove; ctrl-Z / ctrl-Y",
            );
        if self.lm.mode {
            ui.horizontal(|ui| {
                ui.label("show");
                ui.radio_value(&mut self.lm.side, Side::Fixed, "fixed");
                ui.radio_value(&mut self.lm.side, Side::Moving, "moving");
                ui.label("(T)");
            });
        }
        ui.horizontal(|ui| {
            if ui
                .add_enabled(self.lm.editor.can_undo(), egui::Button::new("undo"))
                .clicked()
            {
                self.undo_landmarks();
            }
            if ui
                .add_enabled(self.lm.editor.can_redo(), egui::Button::new("redo"))
                .clicked()
            {
                self.redo_landmarks();
            }
            let has = self.lm.selected.is_some();
            if ui
                .add_enabled(has, egui::Button::new("to crosshair"))
                .on_hover_text("Move the selected landmark (shown side) to the crosshair")
                .clicked()
            {
                self.snap_selected_to_crosshair();
            }
            if ui.add_enabled(has, egui::Button::new("delete")).clicked()
                && let Some(id) = self.lm.selected.take()
            {
                self.lm.editor.remove(&id);
            }
            let proposed = self
                .lm
                .selected
                .as_deref()
                .and_then(|id| self.lm.editor.get(id))
                .is_some_and(|p| p.proposed.is_some());
            if ui
                .add_enabled(proposed, egui::Button::new("confirm"))
                .on_hover_text(
                    "Accept the selected pair's proposed point where it is (Enter); \
                     until then, or until it is moved, TRE leaves the pair out",
                )
                .clicked()
                && let Some(id) = self.lm.selected.clone()
            {
                self.lm.editor.confirm(&id);
            }
        });
        if let Some(id) = self.lm.selected.clone() {
            ui.horizontal(|ui| {
                let edit =
                    ui.add(egui::TextEdit::singleline(&mut self.lm.rename).desired_width(90.0));
                let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("rename").clicked() || enter {
                    let new = self.lm.rename.clone();
                    match self.lm.editor.rename(&id, &new) {
                        Ok(()) => self.lm.selected = Some(new.trim().to_string()),
                        Err(e) => self.error(e),
                    }
                }
            });
        }
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.lm.path)
                    .hint_text("landmark file path")
                    .desired_width(150.0),
            );
            ui.menu_button("browse", |ui| {
                for (label, pick) in [
                    ("open pairs…", Pick::OpenLandmarks(LandmarkFile::Pairs)),
                    (
                        "open fixed…",
                        Pick::OpenLandmarks(LandmarkFile::One(Side::Fixed)),
                    ),
                    (
                        "open moving…",
                        Pick::OpenLandmarks(LandmarkFile::One(Side::Moving)),
                    ),
                    ("save pairs…", Pick::SaveLandmarks(LandmarkFile::Pairs)),
                    (
                        "save fixed…",
                        Pick::SaveLandmarks(LandmarkFile::One(Side::Fixed)),
                    ),
                    (
                        "save moving…",
                        Pick::SaveLandmarks(LandmarkFile::One(Side::Moving)),
                    ),
                ] {
                    if ui.button(label).clicked() {
                        self.files.pick(pick, None);
                        ui.close();
                    }
                }
            });
        });
        ui.horizontal_wrapped(|ui| {
            let path = std::path::PathBuf::from(self.lm.path.trim());
            let ok = !self.lm.path.trim().is_empty();
            for (label, what) in [
                ("open pairs", LandmarkFile::Pairs),
                ("open fixed", LandmarkFile::One(Side::Fixed)),
                ("open moving", LandmarkFile::One(Side::Moving)),
            ] {
                if ui.add_enabled(ok, egui::Button::new(label)).clicked() {
                    self.open_landmarks(what, &path);
                }
            }
        });
        ui.horizontal_wrapped(|ui| {
            egui::ComboBox::new("landmark format", "format")
                .selected_text(format_name(self.lm.format))
                .show_ui(ui, |ui| {
                    for f in [
                        Format::PairCsv,
                        Format::Fcsv,
                        Format::MrkJson,
                        Format::BratsCsv,
                    ] {
                        ui.selectable_value(&mut self.lm.format, f, format_name(f));
                    }
                });
            let path = std::path::PathBuf::from(self.lm.path.trim());
            let ok = !self.lm.path.trim().is_empty() && !self.lm.editor.is_empty();
            let format = self.lm.format;
            let targets: &[(&str, LandmarkFile)] = if format == Format::PairCsv {
                &[("save pairs", LandmarkFile::Pairs)]
            } else {
                &[
                    ("save fixed", LandmarkFile::One(Side::Fixed)),
                    ("save moving", LandmarkFile::One(Side::Moving)),
                ]
            };
            for (label, what) in targets {
                if ui.add_enabled(ok, egui::Button::new(*label)).clicked() {
                    self.save_landmarks(*what, format, &path);
                }
            }
        });
        if self.images.fixed.as_ref().is_some_and(|f| f.path.is_none())
            && ui
                .button("demo landmarks")
                .on_hover_text("The 120 pairs embedded with the demo")
                .clicked()
        {
            self.open_demo_landmarks();
        }
        if let Some(p) = &self.lm.autosave {
            ui.small(format!("autosave: {}", p.display()));
        }
    }

    /// The TRE table: summary, then one row per landmark (click: jump there).
    pub(super) fn landmark_table(&mut self, ui: &mut egui::Ui) {
        let Some(report) = &self.lm.report else {
            ui.label("open a fixed image to place landmarks");
            return;
        };
        let with_field = self.field.loaded.is_some();
        let proposed = self.lm.editor.proposed_ids();
        ui.horizontal_wrapped(|ui| {
            for l in report.summary_lines() {
                // Without a field there is no "after", and no robustness.
                if with_field || !(l.starts_with("after") || l.starts_with("robustness")) {
                    ui.label(l);
                    ui.separator();
                }
            }
            if !with_field {
                ui.label("after –  robustness –  (no field)");
                ui.separator();
            }
            if !proposed.is_empty() {
                ui.label(format!(
                    "{} unconfirmed (proposed by the field; move or confirm them)",
                    proposed.len()
                ));
            }
        });
        ui.horizontal(|ui| {
            ui.label("sort");
            ui.radio_value(&mut self.lm.sort, SortBy::Order, "as placed");
            ui.radio_value(
                &mut self.lm.sort,
                SortBy::ErrorAfter,
                "error after, largest first",
            );
            ui.radio_value(
                &mut self.lm.sort,
                SortBy::ErrorBefore,
                "error before, largest first",
            );
        });
        let mut rows: Vec<&crate::metrics::tre::LandmarkError> = report.points.iter().collect();
        match self.lm.sort {
            SortBy::Order => {}
            SortBy::ErrorAfter => rows.sort_by(|a, b| {
                b.after_mm
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&a.after_mm.unwrap_or(f64::NEG_INFINITY))
            }),
            SortBy::ErrorBefore => rows.sort_by(|a, b| b.before_mm.total_cmp(&a.before_mm)),
        }
        let mut jump = None;
        let extra_names = crate::landmarks::edit::PointPair::extra_names(self.lm.editor.pairs());
        let unpaired: Vec<String> = report
            .pairing
            .fixed_only
            .iter()
            .chain(&report.pairing.moving_only)
            .cloned()
            .collect();
        // Fill the panel: a table that grew with each new row would move the
        // views; wide tables (a file's extra columns) scroll sideways.
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                egui::Grid::new("tre table")
                    .striped(true)
                    .min_col_width(60.0)
                    .show(ui, |ui| {
                        for h in ["id", "fixed R, A, S (mm)", "before", "after", "status"] {
                            ui.strong(h);
                        }
                        // The file's own columns (e.g. in_resection).
                        for n in &extra_names {
                            ui.strong(n);
                        }
                        ui.end_row();
                        for r in rows {
                            let selected = self.lm.selected.as_deref() == Some(r.id.as_str());
                            if ui.selectable_label(selected, &r.id).clicked() {
                                jump = Some(r.id.clone());
                            }
                            let f = self.lm.editor.get(&r.id).and_then(|p| p.fixed);
                            ui.label(f.map_or("-".into(), |x| {
                                format!("{:.1}, {:.1}, {:.1}", x[0], x[1], x[2])
                            }));
                            ui.label(fmt_mm(r.before_mm));
                            ui.label(if with_field {
                                r.after_mm.map_or("-".into(), fmt_mm)
                            } else {
                                "no field".into()
                            });
                            if r.status == Status::Used {
                                ui.label(r.status.name());
                            } else if proposed.contains(r.id.as_str()) {
                                ui.colored_label(
                                    egui::Color32::from_rgb(255, 170, 60),
                                    "unconfirmed",
                                )
                                .on_hover_text(
                                    "One point was proposed (carried across by the field, or \
                                     copied without one): move it or confirm it (Enter)",
                                );
                            } else {
                                ui.colored_label(
                                    egui::Color32::from_rgb(255, 110, 90),
                                    r.status.name(),
                                );
                            }
                            let pair = self.lm.editor.get(&r.id);
                            for n in &extra_names {
                                let v = pair
                                    .and_then(|p| p.extra.iter().find(|(k, _)| k == n))
                                    .map_or("", |(_, v)| v.as_str());
                                ui.label(v);
                            }
                            ui.end_row();
                        }
                        for id in &unpaired {
                            if ui.selectable_label(false, id).clicked() {
                                jump = Some(id.clone());
                            }
                            ui.label("-");
                            ui.label("-");
                            ui.label("-");
                            ui.colored_label(egui::Color32::from_rgb(255, 170, 60), "unpaired");
                            ui.end_row();
                        }
                    });
            });
        if let Some(id) = jump {
            self.jump_to_landmark(&id);
        }
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::PairCsv => "pair CSV (both)",
        Format::Fcsv => "Slicer .fcsv",
        Format::MrkJson => "Slicer .mrk.json",
        Format::BratsCsv => "BraTS-Reg CSV",
    }
}
