//! The desktop GUI (egui only; no algorithms here).
//!
//! - `viewer`: the state (images, field, products, navigation) and GPU sync.
//! - `views`: the slice views, mouse, crosshair; `legend`: colour bars.
//! - `panels`: menus and the side panel; `files`: dialogs, drops, recent files.
//! - `data`: loading off the UI thread; `navigation`: cursor, zoom, pan.
//! - `callback`: the egui-wgpu paint callback; `screenshot`: PNG export.
//! - `live`: a registration on its worker thread and its progress;
//!   `registration`: runs, previews, history, exports; `registration_ui`:
//!   their panel; `session`: session files.

pub mod bench;
mod callback;
pub mod data;
pub mod field_state;
mod files;
pub mod images;
mod landmark_ui;
pub mod landmarks;
mod legend;
pub mod live;
pub mod navigation;
pub mod notices;
mod panels;
pub mod registration;
mod registration_ui;
mod screenshot;
pub mod session;
pub mod view_state;
pub mod viewer;
mod views;

use std::sync::Arc;

use eframe::egui;
use eframe::egui_wgpu;

pub use data::Role;
pub use files::config_dir;
pub use landmarks::{LandmarkFile, SortBy};
pub use notices::Message;
pub use screenshot::utc_stamp;
pub use viewer::{Source, Startup, ViewerApp};

use files::{DropGuess, Pick, guess_role};
use screenshot::ShotTarget;

use view_state::{Drawable, ViewKeys};

/// eframe options that create the wgpu device with the adapter's full
/// features and limits, so that compute work can share it.
pub fn native_options() -> eframe::NativeOptions {
    let mut setup = egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    setup.device_descriptor = Arc::new(crate::gpu::gui_device_descriptor);
    eframe::NativeOptions {
        renderer: eframe::Renderer::Wgpu,
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1400.0, 900.0])
            .with_title("Warpscope")
            .with_drag_and_drop(true),
        wgpu_options: egui_wgpu::WgpuConfiguration {
            wgpu_setup: egui_wgpu::WgpuSetup::CreateNew(setup),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Open the viewer window.
pub fn run(startup: Startup) -> Result<(), String> {
    eframe::run_native(
        "Warpscope",
        native_options(),
        Box::new(move |cc| Ok(Box::new(ViewerApp::new(cc, startup)?) as Box<dyn eframe::App>)),
    )
    .map_err(|e| format!("could not open the window: {e}"))
}

impl ViewerApp {
    /// Stop the registration worker and wait for it (window closed).
    pub fn shutdown(&mut self) {
        // Dropping the worker sends Stop and joins its thread.
        self.reg.run = None;
        // Exports finish their files (each written atomically).
        self.wait_for_exports(std::time::Duration::from_secs(120));
    }

    fn keyboard(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let (keys, (shot, shift)) = ctx.input(|i| {
            let k = |key| i.key_pressed(key);
            use egui::Key;
            let keys = ViewKeys {
                enlarge: [k(Key::A), k(Key::C), k(Key::S)],
                three: k(Key::V) || k(Key::Escape),
                slice: (k(Key::PageUp) || k(Key::ArrowUp)) as i32
                    - (k(Key::PageDown) || k(Key::ArrowDown)) as i32,
                mode: [
                    Key::Num1,
                    Key::Num2,
                    Key::Num3,
                    Key::Num4,
                    Key::Num5,
                    Key::Num6,
                    Key::Num7,
                ]
                .iter()
                .position(|&key| k(key)),
                overlay: [k(Key::G), k(Key::M), k(Key::J), k(Key::I), k(Key::L)],
                swap: k(Key::X),
                reset: k(Key::R),
            };
            (keys, (k(Key::F12), i.modifiers.shift))
        });
        let have = Drawable {
            field: self.field_grid().is_some(),
            ic: self.images.ic.is_some(),
            labels: self.images.labels.is_some(),
        };
        for m in self.view.apply_keys(&keys, have) {
            self.notice(m);
        }
        if shot {
            match (shift, self.view.hovered) {
                (true, Some(p)) => {
                    let rect = self.view.rects[p.index()];
                    self.screenshots.request(ctx, ShotTarget::View(p), rect);
                }
                _ => self.screenshots.request(ctx, ShotTarget::Window, None),
            }
        }
    }

    /// Files dropped on the window: folders are result folders, fields are
    /// recognised by their header, images fill fixed then moving; anything
    /// else waits for the user to say what it is.
    fn dropped(&mut self, ctx: &egui::Context) {
        let paths: Vec<std::path::PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        for p in paths {
            match guess_role(&p) {
                Some(DropGuess::ResultFolder) => self.open_result_folder(p),
                Some(DropGuess::Session) => self.open_session(&p),
                Some(DropGuess::Landmarks(what)) => self.open_landmarks(what, &p),
                Some(DropGuess::LandmarksOneSide) => self.files.dropped.push(p),
                Some(DropGuess::Role(r)) => self.open(r, p),
                None if self.images.fixed.is_none() && !self.loader.pending_role(Role::Fixed) => {
                    self.open(Role::Fixed, p)
                }
                None if self.images.moving.is_none() && !self.loader.pending_role(Role::Moving) => {
                    self.open(Role::Moving, p)
                }
                None => self.files.dropped.push(p),
            }
        }
    }

    /// Ask what the dropped files are (when it could not be guessed).
    fn drop_chooser(&mut self, ctx: &egui::Context) {
        if self.files.dropped.is_empty() {
            return;
        }
        let mut chosen = None;
        let mut sequence = None;
        let mut cancel = false;
        egui::Window::new("Open dropped file as")
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                if let Some(p) = self.files.dropped.first() {
                    ui.label(p.display().to_string());
                    ui.horizontal_wrapped(|ui| {
                        for r in Role::ALL {
                            if ui.button(r.name()).clicked() {
                                chosen = Some((Some(r), None, p.clone()));
                            }
                        }
                        for r in [Role::Fixed, Role::Moving] {
                            if self.images.get(r).is_some()
                                && ui
                                    .button(format!("another {} sequence", r.name()))
                                    .on_hover_text(
                                        "Stacked as a channel and registered with the others \
                                         (one file per sequence, on the same grid)",
                                    )
                                    .clicked()
                            {
                                sequence = Some((r, p.clone()));
                            }
                        }
                        for (label, side) in [
                            ("fixed landmarks", crate::landmarks::formats::Side::Fixed),
                            ("moving landmarks", crate::landmarks::formats::Side::Moving),
                        ] {
                            if ui.button(label).clicked() {
                                chosen = Some((None, Some(LandmarkFile::One(side)), p.clone()));
                            }
                        }
                        if ui.button("skip").clicked() {
                            cancel = true;
                        }
                    });
                }
            });
        if let Some((role, p)) = sequence {
            self.files.dropped.remove(0);
            self.add_sequence(role, p);
        } else if let Some((role, landmarks, p)) = chosen {
            self.files.dropped.remove(0);
            match (role, landmarks) {
                (Some(r), _) => self.open(r, p),
                (None, Some(what)) => self.open_landmarks(what, &p),
                (None, None) => {}
            }
        } else if cancel {
            self.files.dropped.remove(0);
        }
    }

    /// Ask which series of a DICOM folder to open (when it holds several).
    fn series_chooser(&mut self, ctx: &egui::Context) {
        let Some(choice) = &self.series_choice else {
            return;
        };
        let mut picked = None;
        let mut cancel = false;
        egui::Window::new("Open which DICOM series?")
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                ui.label(format!(
                    "{} holds {} series; open which as the {}?",
                    choice.path.display(),
                    choice.series.len(),
                    choice.role.name()
                ));
                for s in &choice.series {
                    if ui
                        .button(s.label())
                        .on_hover_text(format!("SeriesInstanceUID {}", s.uid))
                        .clicked()
                    {
                        picked = Some(s.uid.clone());
                    }
                }
                if ui.button("cancel").clicked() {
                    cancel = true;
                }
            });
        if let Some(uid) = picked {
            if let Some(c) = self.series_choice.take() {
                self.open_series(c.role, c.path, uid);
            }
        } else if cancel {
            self.series_choice = None;
        }
    }

    fn dialogs(&mut self) {
        for answer in self.files.poll() {
            let Some(p) = answer.path else {
                if answer.open_for < files::NO_DIALOG {
                    self.notice(
                        "no file dialog is available on this desktop (it needs the xdg desktop \
                         portal or zenity): type a path under \"Open a path\", drop files on \
                         the window, or name them on the command line",
                    );
                }
                continue;
            };
            match answer.pick {
                Pick::Open(role) => self.open(role, p),
                Pick::AddSequence(role) => self.add_sequence(role, p),
                Pick::ResultFolder => self.open_result_folder(p),
                Pick::ScreenshotFolder => self.screenshots.folder = p,
                Pick::OpenLandmarks(what) => {
                    self.lm.path = p.display().to_string();
                    self.open_landmarks(what, &p);
                }
                Pick::SaveLandmarks(what) => {
                    self.lm.path = p.display().to_string();
                    let format = self.lm.format;
                    self.save_landmarks(what, format, &p);
                }
                Pick::OpenSession => self.open_session(&p),
                Pick::SaveSession => self.save_session(&p),
                Pick::ExportRun(id) => self.export_run(id, p),
                Pick::SaveHistory => self.save_history(&p),
                Pick::ParameterFile(key, _) => {
                    self.edit_parameter(&key, &p.display().to_string());
                }
            }
        }
    }

    fn flicker(&mut self, ctx: &egui::Context) {
        if let Some(left) = self.view.flicker(ctx.input(|i| i.time)) {
            ctx.request_repaint_after(std::time::Duration::from_secs_f64(left));
        }
    }

    fn save_screenshots(&mut self) {
        if self.screenshots.pending == 0 {
            return;
        }
        let description = self.describe();
        for r in self.screenshots.poll(&description) {
            match r {
                Ok(p) => self.notice(format!("screenshot saved: {}", p.display())),
                Err(e) => self.error(format!("screenshot not saved: {e}")),
            }
        }
    }

    fn error_banner(&mut self, ui: &mut egui::Ui) {
        let mut dismiss = false;
        if let Some(e) = self.notes.latest_error() {
            ui.horizontal_wrapped(|ui| {
                ui.colored_label(egui::Color32::from_rgb(255, 110, 90), &e.text);
                if ui.small_button("×").on_hover_text("Dismiss").clicked() {
                    dismiss = true;
                }
            });
        }
        if dismiss {
            self.notes.dismiss_latest_error();
        }
    }
}

impl ViewerApp {
    /// The window's title: the program and the files shown.
    fn window_title(&mut self, ctx: &egui::Context) {
        let title = self.images.title();
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    /// The status bar's right end: the engine's speed while it runs, and
    /// the viewer's frame time.
    fn status_readout(&self, ctx: &egui::Context) -> String {
        let mut parts = Vec::new();
        if let Some(run) = &self.reg.run {
            let rate = run.progress.current().and_then(|c| c.rate());
            parts.push(match (run.paused, rate) {
                (true, _) => format!("run {} paused", run.id),
                (false, Some(r)) => format!("engine {r:.1} it/s"),
                (false, None) => format!("run {} starting", run.id),
            });
        }
        let dt = ctx.input(|i| i.stable_dt);
        parts.push(format!(
            "frame {:.1} ms (UI {:.1} ms)",
            1000.0 * dt,
            self.last_ui_ms
        ));
        parts.join(" · ")
    }
}

impl eframe::App for ViewerApp {
    /// Closing the window stops a running registration and waits for its
    /// worker (one iteration at most); no file is left half-written.
    fn on_exit(&mut self) {
        self.shutdown();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = std::time::Instant::now();
        let ctx = ui.ctx().clone();
        self.window_size = ctx.content_rect().size().into();
        self.bench_frame(&ctx, self.last_ui_ms);
        if self.bench_done {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        self.poll_jobs();
        self.poll_registration(Some(&ctx));
        self.dialogs();
        self.dropped(&ctx);
        self.save_screenshots();
        self.keyboard(&ctx);
        self.landmark_keys(&ctx);
        self.refresh_landmarks();
        self.flicker(&ctx);
        if self.busy() || self.files.dialog_open || self.screenshots.pending > 0 {
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
        self.view.hovered = None;
        self.view.rects = [None; 3];
        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui));
        self.window_title(&ctx);
        let readout = self.status_readout(&ctx);
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    ui.small(readout);
                    if self.lm.mode {
                        let side = crate::landmarks::edit::side_name(self.lm.side);
                        ui.colored_label(
                            egui::Color32::from_rgb(255, 200, 60),
                            format!("LANDMARK MODE · {side} image (K to leave, T to switch)"),
                        );
                    }
                    ui.with_layout(egui::Layout::left_to_right(egui::Align::Center), |ui| {
                        ui.label(if self.notes.status.is_empty() {
                            "Move the mouse over a view to read coordinates and values"
                        } else {
                            &self.notes.status
                        });
                    });
                });
            });
        });
        if self.lm.mode || !self.lm.editor.is_empty() {
            egui::Panel::bottom("landmark table")
                .resizable(true)
                .default_size(170.0)
                .show(ui, |ui| self.landmark_table(ui));
        }
        egui::Panel::left("side")
            .default_size(270.0)
            .show(ui, |ui| self.side_panel(ui));
        egui::Panel::right("registration")
            .default_size(330.0)
            .max_size(520.0)
            .resizable(true)
            .show(ui, |ui| self.registration_panel(ui));
        egui::CentralPanel::default().show(ui, |ui| {
            self.error_banner(ui);
            self.view_area(ui);
        });
        self.drop_chooser(&ctx);
        self.series_chooser(&ctx);
        self.replace_question(&ctx);
        let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
        if hovering {
            let screen = ctx.content_rect();
            egui::Area::new(egui::Id::unique("drop hint"))
                .fixed_pos(screen.center())
                .pivot(egui::Align2::CENTER_CENTER)
                .show(&ctx, |ui| {
                    ui.label(
                        egui::RichText::new("Drop NIfTI images, fields or a result folder")
                            .heading(),
                    );
                });
        }
        self.last_ui_ms = started.elapsed().as_secs_f64() * 1e3;
    }
}
