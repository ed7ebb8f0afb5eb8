//! The registration panel: run controls and progress, the loss plot, the
//! pipeline editor (every parameter, typed as `--set` takes it, refused
//! with a message when it is nonsense), the run history and exports.

use eframe::egui;
use egui_plot::{Line, Plot, PlotPoints, VLine};

use super::files::Pick;
use super::live::{DeviceChoice, LossPoint, RunProgress};
use super::registration::Edit;
use super::viewer::ViewerApp;
use crate::register::Pipeline;
use crate::register::change::is_live_key;
use crate::register::keys;
use crate::register::params::PRESETS;
use crate::register::stages::{Row, STAGES};
use crate::session_file::RunRecord;

const REFUSED: egui::Color32 = egui::Color32::from_rgb(255, 110, 90);
const LIVE: egui::Color32 = egui::Color32::from_rgb(120, 200, 255);

/// Line colours of the loss plot: the total, then the terms.
const CURVES: [egui::Color32; 5] = [
    egui::Color32::from_rgb(240, 240, 240),
    egui::Color32::from_rgb(90, 170, 255),
    egui::Color32::from_rgb(255, 170, 60),
    egui::Color32::from_rgb(120, 210, 120),
    egui::Color32::from_rgb(230, 110, 200),
];
/// The compared run's total.
const OVERLAY: egui::Color32 = egui::Color32::from_rgb(190, 160, 255);

/// What a preset does, in a line (the README's table, shortened).
fn preset_summary(name: &str) -> &'static str {
    match name {
        "fast" => "MSE affine, then LNCC 5 with the gradient and field smoothed (our default)",
        "lumir" => "LUMIR's LNCC + 6·‖∇u‖², no affine",
        "brats-ic" => "fast, then inverse-consistency weighting (resection cavities)",
        "mse+ncc" => "both directions, MSE and NCC weighted equally",
        "symmetric" => "MICS: both directions, Jacobian and inverse-consistency losses",
        _ => "",
    }
}

/// A progress bar per stage level.
fn level_bars(ui: &mut egui::Ui, p: &RunProgress) {
    for row in &p.rows {
        let text = format!(
            "{} {}/{}  {}/{}",
            row.stage,
            row.level + 1,
            row.levels,
            row.iter,
            row.iters
        );
        ui.add(
            egui::ProgressBar::new(row.fraction())
                .text(text)
                .desired_height(14.0),
        );
    }
}

impl ViewerApp {
    pub(super) fn registration_panel(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Registration");
            self.run_controls(ui);
            self.run_progress(ui);
            self.loss_plot(ui);
            ui.separator();
            egui::CollapsingHeader::new("Pipeline")
                .default_open(true)
                .show(ui, |ui| self.pipeline_editor(ui));
            egui::CollapsingHeader::new("Runs")
                .default_open(true)
                .show(ui, |ui| self.history_table(ui));
        });
    }

    fn run_controls(&mut self, ui: &mut egui::Ui) {
        let running = self.reg.running();
        let paused = self.reg.run.as_ref().is_some_and(|r| r.paused);
        let ready = self.images.fixed.is_some() && self.images.moving.is_some();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!running && ready, egui::Button::new("Run"))
                .on_hover_text("Register the moving image to the fixed one with this pipeline")
                .clicked()
            {
                self.start_run();
            }
            if paused {
                if ui.button("Resume").clicked() {
                    self.resume_run();
                }
            } else if ui
                .add_enabled(running, egui::Button::new("Pause"))
                .on_hover_text("Hold the engine between two iterations")
                .clicked()
            {
                self.pause_run();
            }
            if ui
                .add_enabled(running, egui::Button::new("Stop"))
                .on_hover_text("End the run after this iteration, keeping its field")
                .clicked()
            {
                self.stop_run();
            }
        });
        ui.horizontal(|ui| {
            let label = ui.label("device");
            ui.add_enabled_ui(!running, |ui| {
                egui::ComboBox::from_id_salt("engine device")
                    .selected_text(self.reg.device.label())
                    .show_ui(ui, |ui| {
                        for d in DeviceChoice::ALL {
                            ui.selectable_value(&mut self.reg.device, d, d.label());
                        }
                    })
                    .response
                    .labelled_by(label.id);
            });
        });
        ui.checkbox(&mut self.reg.live_preview, "live preview")
            .on_hover_text(
                "Show the warped image, grid and det J as the field forms (5 times a second)",
            );
    }

    /// The curve the panel shows: the running run's, else the shown (or
    /// the last) finished run's, which stays after the run ends.
    fn shown_progress(&self) -> Option<(u32, &RunProgress)> {
        if let Some(r) = &self.reg.run {
            return Some((r.id, &r.progress));
        }
        let id = self
            .reg
            .shown
            .or_else(|| self.reg.history.last().map(|r| r.id))?;
        self.reg.curves.get(&id).map(|p| (id, p))
    }

    fn run_progress(&mut self, ui: &mut egui::Ui) {
        let Some(run) = &self.reg.run else {
            let Some((id, progress)) = self.shown_progress() else {
                if let Some(last) = self.reg.history.last() {
                    ui.small(super::registration::run_summary(last));
                }
                return;
            };
            if let Some(rec) = self.reg.history.iter().find(|r| r.id == id) {
                ui.small(super::registration::run_summary(rec));
            }
            level_bars(ui, progress);
            return;
        };
        let mut line = format!("run {} on {}", run.id, run.device_name);
        if run.paused {
            line += " · paused";
        }
        if run.stopping {
            line += " · stopping";
        }
        ui.label(line);
        let p = &run.progress;
        if let Some(cur) = p.current() {
            let mut s = format!(
                "{} level {}/{} · iteration {}/{}",
                cur.stage,
                cur.level + 1,
                cur.levels,
                cur.iter,
                cur.iters
            );
            if let Some(r) = cur.rate() {
                s += &format!(" · {r:.1} it/s");
            }
            if let Some((level, total)) = p.seconds_left() {
                s += &format!(" · {level:.0} s left in this level, about {total:.0} s in all");
            }
            ui.small(s);
        } else {
            ui.small(format!("preparing… {:.1} s", run.seconds()));
        }
        level_bars(ui, p);
        if run.previews > 0 {
            ui.small(format!("{} previews drawn", run.previews));
        }
        if !run.pending.is_empty() {
            ui.colored_label(
                LIVE,
                format!(
                    "sent, waiting for the next iteration: {}",
                    run.pending
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }

    fn loss_plot(&mut self, ui: &mut egui::Ui) {
        let Some((id, p)) = self.shown_progress() else {
            return;
        };
        if p.loss.is_empty() {
            return;
        }
        let mut log = self.reg.plot_log;
        let mut overlay = self.reg.overlay.filter(|o| *o != id);
        let others: Vec<u32> = self
            .reg
            .curves
            .keys()
            .copied()
            .filter(|k| *k != id)
            .collect();
        ui.horizontal(|ui| {
            ui.checkbox(&mut log, "log₁₀ scale");
            if !others.is_empty() {
                let label = ui.label("compare with");
                egui::ComboBox::from_id_salt("overlay curve")
                    .selected_text(overlay.map_or("–".to_string(), |o| format!("run {o}")))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut overlay, None, "–");
                        for o in &others {
                            ui.selectable_value(&mut overlay, Some(*o), format!("run {o}"));
                        }
                    })
                    .response
                    .labelled_by(label.id);
            }
        });
        // Log scale: values ≤ 0 (a zero field's regulariser) are left out.
        let y = |v: f64| {
            if log {
                (v > 0.0).then(|| v.log10())
            } else {
                Some(v)
            }
        };
        let names = p.term_names();
        let thin = |p: &RunProgress| -> Vec<LossPoint> {
            // At most ~2000 points a line: long runs stay cheap to draw.
            let every = p.loss.len().div_ceil(2000).max(1);
            p.loss.iter().step_by(every).cloned().collect()
        };
        let shown = thin(p);
        let other = overlay.and_then(|o| self.reg.curves.get(&o).map(|c| (o, thin(c))));
        let mut legend: Vec<(String, egui::Color32)> = Vec::new();
        // The panel scrolls with the wheel; the plot zooms by a dragged box
        // (double-click resets) and shows no legend over the curves.
        Plot::new("loss plot")
            .height(200.0)
            .allow_scroll(false)
            .allow_zoom(false)
            .x_axis_label("iteration")
            .y_axis_label(if log { "log₁₀ loss" } else { "loss" })
            .show(ui, |plot| {
                let total: PlotPoints = shown
                    .iter()
                    .filter_map(|l| y(l.total).map(|v| [l.step as f64, v]))
                    .collect();
                let name = format!("run {id} total (weighted)");
                plot.line(Line::new(name.clone(), total).color(CURVES[0]));
                legend.push((name, CURVES[0]));
                for (k, term) in names.iter().enumerate() {
                    let pts: PlotPoints = shown
                        .iter()
                        .filter_map(|l| {
                            l.terms
                                .iter()
                                .find(|(n, _)| n == term)
                                .and_then(|(_, v)| y(*v))
                                .map(|v| [l.step as f64, v])
                        })
                        .collect();
                    let c = CURVES[1 + k % (CURVES.len() - 1)];
                    let name = format!("{term} (unweighted)");
                    plot.line(Line::new(name.clone(), pts).color(c));
                    legend.push((name, c));
                }
                if let Some((o, pts)) = &other {
                    let total: PlotPoints = pts
                        .iter()
                        .filter_map(|l| y(l.total).map(|v| [l.step as f64, v]))
                        .collect();
                    let name = format!("run {o} total (weighted)");
                    plot.line(
                        Line::new(name.clone(), total)
                            .color(OVERLAY)
                            .style(egui_plot::LineStyle::dashed_loose()),
                    );
                    legend.push((name + ", dashed", OVERLAY));
                }
                for (step, change) in &p.markers {
                    plot.vline(VLine::new(change.clone(), *step as f64).color(LIVE));
                }
            });
        ui.horizontal_wrapped(|ui| {
            for (name, c) in &legend {
                ui.colored_label(*c, format!("— {name}"));
            }
        });
        if let Some((step, change)) = p.markers.last() {
            ui.small(format!("{change} took effect at iteration {step}"));
        }
        self.reg.plot_log = log;
        self.reg.overlay = overlay;
    }

    fn pipeline_editor(&mut self, ui: &mut egui::Ui) {
        let running = self.reg.running();
        ui.horizontal(|ui| {
            let label = ui.label("preset");
            let mut chosen = None;
            egui::ComboBox::from_id_salt("preset")
                .selected_text(self.reg.pipeline.preset.clone())
                .show_ui(ui, |ui| {
                    for name in PRESETS {
                        if ui
                            .selectable_label(self.reg.pipeline.preset == name, name)
                            .clicked()
                        {
                            chosen = Some(name);
                        }
                    }
                })
                .response
                .labelled_by(label.id)
                .on_hover_text(
                    "The shared methods.md presets; every parameter below can be edited",
                );
            if let Some(name) = chosen
                && let Ok(p) = Pipeline::preset(name)
            {
                self.set_pipeline(p);
            }
        });
        ui.small(preset_summary(&self.reg.pipeline.preset));
        let changes = self.reg.pipeline.changes_from_preset();
        if !changes.is_empty() {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!(
                    "{} change(s) from {}",
                    changes.len(),
                    self.reg.pipeline.preset
                ))
                .on_hover_text(changes.join("\n"));
                if ui
                    .add_enabled(!running, egui::Button::new("back to the preset").small())
                    .clicked()
                    && let Ok(p) = Pipeline::preset(&self.reg.pipeline.preset)
                {
                    self.set_pipeline(p);
                }
            });
        }
        if running {
            ui.small(
                "While the run goes, weights, learning rates and iterations left (marked live) \
                 change at its next iteration; the rest applies to the next run.",
            );
            ui.horizontal(|ui| {
                let label = ui.label("iterations left");
                let r = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.reg.iterations_left)
                            .desired_width(60.0),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("Iterations left at the running level (Enter to send)");
                if r.lost_focus() && !self.reg.iterations_left.trim().is_empty() {
                    let v = std::mem::take(&mut self.reg.iterations_left);
                    self.edit_parameter("iterations_left", &v);
                }
                ui.colored_label(LIVE, "live");
            });
            self.refusal(ui, "iterations_left");
        }
        // Every stage's parameters, behind one header: the preset is what
        // most runs need (the SlicerANTs review asked for this split).
        egui::CollapsingHeader::new("Advanced: every stage parameter")
            .id_salt("advanced parameters")
            .default_open(false)
            .show(ui, |ui| self.stage_editor(ui));
    }

    /// Every stage's parameters, as the stages describe them: a stage's
    /// `enabled` box, and its rows while it runs (or another stage reads
    /// them).
    fn stage_editor(&mut self, ui: &mut egui::Ui) {
        self.flag(ui, "normalize", "normalise intensities (0.5–99.5 %)");
        self.flag(ui, "fused", "fused kernels (CPU and GPU)");
        for stage in STAGES {
            ui.separator();
            let key = stage.key();
            self.flag(ui, &format!("{key}.enabled"), stage.title());
            if stage.shown(&self.reg.pipeline) {
                let rows = stage.rows(&self.reg.pipeline);
                self.params(ui, key, &rows);
            }
        }
    }

    /// A refusal under a parameter, if it was refused last.
    fn refusal(&self, ui: &mut egui::Ui, key: &str) {
        if let Some(why) = self.reg.refused.get(key) {
            ui.colored_label(REFUSED, why);
        }
    }

    /// A boolean parameter (structural: applies to the next run).
    fn flag(&mut self, ui: &mut egui::Ui, key: &str, label: &str) {
        let current = self.reg.pipeline.value_of(key).as_deref() == Some("true");
        let mut on = current;
        ui.checkbox(&mut on, label)
            .on_hover_text(format!("--set {key}=true|false"));
        if on != current {
            self.edit_parameter(key, if on { "true" } else { "false" });
        }
        self.refusal(ui, key);
    }

    /// Typed parameters in a grid: each committed when its field loses
    /// focus (Enter or a click elsewhere); a refused one shows why and reverts.
    fn params(&mut self, ui: &mut egui::Ui, id: &str, rows: &[Row]) {
        let running = self.reg.running();
        // One serialisation of the pipeline for every row of the frame.
        let values = keys::values(&self.reg.pipeline);
        let current = |key: &str| values.get(key).map(keys::written).unwrap_or_default();
        let (flags, rest): (Vec<&Row>, Vec<&Row>) = rows
            .iter()
            .partition(|r| values.get(&r.key).is_some_and(|v| v.is_boolean()));
        let (choices, typed): (Vec<&Row>, Vec<&Row>) =
            rest.into_iter().partition(|r| !r.choices.is_empty());
        for row in choices {
            let current = current(&row.key);
            let mut picked = current.clone();
            ui.horizontal(|ui| {
                ui.label(row.label.as_str()).on_hover_text(row.help);
                ui.add_enabled_ui(!running, |ui| {
                    for &c in row.choices {
                        ui.radio_value(&mut picked, c.to_string(), c);
                    }
                });
            });
            if picked != current {
                self.edit_parameter(&row.key, &picked);
            }
            self.refusal(ui, &row.key);
        }
        for row in flags {
            self.flag(ui, &row.key, &row.label);
        }
        let mut commits = Vec::new();
        let mut picks = Vec::new();
        egui::Grid::new(("params", id))
            .num_columns(3)
            .spacing([8.0, 4.0])
            .show(ui, |ui| {
                for row in &typed {
                    let key = row.key.as_str();
                    let current = current(key);
                    let mut text = self
                        .reg
                        .texts
                        .get(key)
                        .cloned()
                        .unwrap_or_else(|| current.clone());
                    let l = ui.label(row.label.as_str());
                    let r = ui
                        .add_sized([110.0, 18.0], egui::TextEdit::singleline(&mut text))
                        .labelled_by(l.id)
                        .on_hover_text(format!("{}\n--set {key}=…", row.help));
                    if r.changed() {
                        self.reg.texts.insert(key.to_string(), text.clone());
                    }
                    if r.lost_focus() && text.trim() != current {
                        commits.push((key.to_string(), text));
                    }
                    if !row.files.is_empty() {
                        let b = ui
                            .add_enabled(!running, egui::Button::new("…"))
                            .on_hover_text(format!("Choose the file for {key}"));
                        if b.clicked() {
                            picks.push((key.to_string(), row.files));
                        }
                    } else if running && is_live_key(key) {
                        ui.colored_label(LIVE, "live");
                    } else {
                        ui.label("");
                    }
                    ui.end_row();
                    if let Some(why) = self.reg.refused.get(key) {
                        ui.label("");
                        ui.colored_label(REFUSED, why);
                        ui.end_row();
                    }
                }
            });
        for (key, files) in picks {
            self.files.pick(Pick::ParameterFile(key, files), None);
        }
        for (key, text) in commits {
            if self.edit_parameter(&key, &text) == Edit::NextRun && self.reg.running() {
                ui.small(format!("{key}: applies to the next run"));
            }
        }
    }

    /// What differs between two runs' parameters as they started, and the
    /// changes each made while it ran.
    fn parameter_diff(&self, ui: &mut egui::Ui, a: u32, b: u32) {
        let find = |id| self.reg.history.iter().find(|r| r.id == id);
        let (Some(ra), Some(rb)) = (find(a), find(b)) else {
            return;
        };
        let lines = run_differences(ra, rb);
        egui::CollapsingHeader::new(format!("Parameters: run {a} against run {b}"))
            .id_salt("run diff")
            .default_open(true)
            .show(ui, |ui| {
                if lines.is_empty() {
                    ui.small("The same parameters, and no change during either run.");
                }
                for l in lines {
                    ui.small(l);
                }
            });
    }

    fn history_table(&mut self, ui: &mut egui::Ui) {
        if self.reg.history.is_empty() {
            ui.small("Finished runs are listed here with their figures.");
            return;
        }
        let mut actions = Vec::new();
        // Scrolled sideways, so that the table never widens the panel.
        egui::ScrollArea::horizontal()
            .id_salt("runs table")
            .show(ui, |ui| self.runs_grid(ui, &mut actions));
        self.run_actions(actions);
        let pair = match self.reg.compare_pick.as_slice() {
            [a, b] => Some((*a, *b)),
            _ => None,
        };
        ui.horizontal(|ui| {
            let on = self.reg.side_by_side;
            let text = if on {
                "End comparison"
            } else {
                "Compare side by side"
            };
            if ui
                .add_enabled(pair.is_some(), egui::Button::new(text))
                .on_hover_text("The two picked runs in linked views, same slices")
                .clicked()
            {
                match (on, pair) {
                    (true, _) => self.reg.side_by_side = false,
                    (false, Some((a, b))) => self.compare_runs(a, b),
                    _ => {}
                }
            }
        });
        if let Some((a, b)) = pair {
            self.parameter_diff(ui, a, b);
        }
        ui.horizontal(|ui| {
            let label = ui.label("export to");
            ui.add(
                egui::TextEdit::singleline(&mut self.reg.export_path)
                    .hint_text("folder, or runs.csv")
                    .desired_width(160.0),
            )
            .labelled_by(label.id)
            .on_hover_text("Typed path for exports (empty: a dialog asks)");
        });
        if ui.button("Save history as CSV").clicked() {
            match typed(&self.reg.export_path) {
                Some(p) => self.save_history(&p),
                None => self.files.pick(Pick::SaveHistory, None),
            }
        }
        for ex in &self.reg.exports {
            let (done, total, name) = &ex.progress;
            ui.add(
                egui::ProgressBar::new(*done as f32 / (*total).max(1) as f32).text(format!(
                    "run {} -> {}: {name}",
                    ex.run,
                    ex.dir.display()
                )),
            );
        }
    }
}

impl ViewerApp {
    /// One row per run, newest first: what is compared (TRE, folds) next
    /// to the run, its actions, then the rest, so that a narrow panel shows
    /// the figures without scrolling.
    fn runs_grid(&self, ui: &mut egui::Ui, actions: &mut Vec<RunAction>) {
        egui::Grid::new("runs")
            .striped(true)
            .num_columns(9)
            .show(ui, |ui| {
                for h in ["run", "TRE mm", "folds %", "preset", "", "status", "s", "SDlogJ", "NCC"] {
                    ui.strong(h);
                }
                ui.end_row();
                let opt = |v: Option<f64>, d: usize| {
                    v.map(|x| format!("{x:.d$}")).unwrap_or_else(|| "–".into())
                };
                for r in self.reg.history.iter().rev() {
                    let kept = self.reg.kept.contains_key(&r.id);
                    let mut picked = self.reg.compare_pick.contains(&r.id);
                    if ui
                        .add_enabled(kept, egui::Checkbox::new(&mut picked, r.id.to_string()))
                        .on_hover_text("Pick two runs to compare side by side")
                        .changed()
                    {
                        actions.push(RunAction::Pick(r.id, picked));
                    }
                    ui.label(opt(r.metrics.tre_mean_mm, 2)).on_hover_text(
                        "Mean TRE over the confirmed landmark pairs (rescored when they change)",
                    );
                    ui.label(opt(r.metrics.folds_percent, 3));
                    let changes = r.pipeline.changes_from_preset();
                    if changes.is_empty() {
                        ui.label(&r.pipeline.preset);
                    } else {
                        ui.label(format!("{} (edited)", r.pipeline.preset))
                            .on_hover_text(format!(
                                "Changed from the preset:\n{}",
                                changes.join("\n")
                            ));
                    }
                    ui.horizontal(|ui| {
                        if ui
                            .add_enabled(kept, egui::Button::new("show").small())
                            .on_hover_text("Show this run's result in the views")
                            .clicked()
                        {
                            actions.push(RunAction::Show(r.id));
                        }
                        if ui
                            .add_enabled(!self.reg.running(), egui::Button::new("re-run").small())
                            .on_hover_text("Run this pipeline again, replaying the changes made while it ran at the same iterations")
                            .clicked()
                        {
                            actions.push(RunAction::Rerun(r.id));
                        }
                        if ui
                            .add_enabled(kept, egui::Button::new("export").small())
                            .on_hover_text(
                                "Write its warped image, fields (field_vox, ANTs), det J, IC weights \
                                 and run report into a folder (the path below, or a dialog)",
                            )
                            .clicked()
                        {
                            actions.push(RunAction::Export(r.id));
                        }
                    });
                    ui.label(r.status.split(':').next().unwrap_or(""))
                        .on_hover_text(&r.status);
                    ui.label(format!("{:.1}", r.seconds));
                    ui.label(opt(r.metrics.sd_log_j, 3));
                    ui.label(opt(r.metrics.ncc, 4));
                    ui.end_row();
                }
            });
        // Room for the horizontal scroll bar under the last row.
        ui.add_space(14.0);
    }

    fn run_actions(&mut self, actions: Vec<RunAction>) {
        for a in actions {
            match a {
                RunAction::Pick(id, true) => {
                    self.reg.compare_pick.push(id);
                    if self.reg.compare_pick.len() > 2 {
                        self.reg.compare_pick.remove(0);
                    }
                }
                RunAction::Pick(id, false) => {
                    self.reg.compare_pick.retain(|&r| r != id);
                    self.reg.side_by_side = false;
                }
                RunAction::Show(id) => {
                    self.reg.side_by_side = false;
                    self.show_run(id);
                }
                RunAction::Rerun(id) => self.rerun(id),
                RunAction::Export(id) => match typed(&self.reg.export_path) {
                    Some(p) => self.export_run(id, p),
                    None => self.files.pick(Pick::ExportRun(id), None),
                },
            }
        }
    }
}

enum RunAction {
    Pick(u32, bool),
    Show(u32),
    Rerun(u32),
    Export(u32),
}

fn typed(s: &str) -> Option<std::path::PathBuf> {
    let t = s.trim();
    (!t.is_empty()).then(|| std::path::PathBuf::from(t))
}

/// The lines of a parameter diff between runs `a` and `b`: each key whose
/// starting value differs (`key: a's → b's`), the presets when their names
/// differ, and each run's live changes with the iteration they took effect.
pub fn run_differences(a: &RunRecord, b: &RunRecord) -> Vec<String> {
    let mut lines = Vec::new();
    if a.pipeline.preset != b.pipeline.preset {
        lines.push(format!(
            "preset: {} -> {}",
            a.pipeline.preset, b.pipeline.preset
        ));
    }
    for (k, va, vb) in a.pipeline.differences(&b.pipeline) {
        lines.push(format!("{k}: {va} -> {vb}"));
    }
    for r in [a, b] {
        for (step, change) in &r.changes {
            lines.push(format!("run {}: {change} at iteration {step}", r.id));
        }
    }
    lines
}
