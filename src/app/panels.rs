//! Menus and the side panel: images (channel, window presets, colour map),
//! the comparison mode, the field overlays, and opening files.

use eframe::egui;

use super::data::{LoadedImage, Role};
use super::files::{FIELD_KINDS, Pick, field_kind_name};
use super::screenshot::ShotTarget;
use super::viewer::ViewerApp;
use crate::render::{ColorMap, Convention, JacobianStyle, Mode, Plane, Slot};
use crate::volume::intensity::WindowPreset;

fn colour_edit(ui: &mut egui::Ui, c: &mut [f32; 3]) {
    ui.color_edit_button_rgb(c);
}

impl ViewerApp {
    pub(super) fn menu_bar(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                for role in Role::ALL {
                    if ui.button(format!("Open {}…", role.name())).clicked() {
                        let start = self.files.recent.first().and_then(|r| r.path.parent().map(|p| p.to_path_buf()));
                        self.files.pick(Pick::Open(role), start.as_deref());
                        ui.close();
                    }
                }
                if ui
                    .button("Open result folder…")
                    .on_hover_text("A folder written by `warpscope register --out`: its images, field and IC weights")
                    .clicked()
                {
                    self.files.pick(Pick::ResultFolder, None);
                    ui.close();
                }
                ui.separator();
                if ui
                    .button("Open session…")
                    .on_hover_text("A .warpscope.json file: images, landmarks, pipeline, view and run history")
                    .clicked()
                {
                    self.files.pick(Pick::OpenSession, None);
                    ui.close();
                }
                if ui.button("Save session").clicked() {
                    match self.session_path.clone() {
                        Some(p) => self.save_session(&p),
                        None => self.files.pick(Pick::SaveSession, None),
                    }
                    ui.close();
                }
                if ui.button("Save session as…").clicked() {
                    self.files.pick(Pick::SaveSession, None);
                    ui.close();
                }
                ui.separator();
                ui.menu_button("Open recent", |ui| {
                    if self.files.recent.is_empty() {
                        ui.label("(none yet)");
                    }
                    let mut chosen = None;
                    for r in &self.files.recent {
                        if ui
                            .button(format!("{}: {}", r.role.name(), r.path.display()))
                            .clicked()
                        {
                            chosen = Some(r.clone());
                        }
                    }
                    if let Some(r) = chosen {
                        self.open(r.role, r.path);
                        ui.close();
                    }
                });
                ui.separator();
                ui.menu_button("Screenshot", |ui| {
                    if ui.button("Window (F12)").clicked() {
                        self.screenshots.request(ui.ctx(), ShotTarget::Window, None);
                        ui.close();
                    }
                    for plane in Plane::ALL {
                        if let Some(rect) = self.view.rects[plane.index()]
                            && ui.button(format!("{} view", plane.name())).clicked()
                        {
                            self.screenshots
                                .request(ui.ctx(), ShotTarget::View(plane), Some(rect));
                            ui.close();
                        }
                    }
                    if ui.button("Folder…").clicked() {
                        self.files.pick(Pick::ScreenshotFolder, None);
                        ui.close();
                    }
                    ui.label(format!("saved in {}", self.screenshots.folder.display()));
                });
                ui.separator();
                if ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("View", |ui| {
                if ui.button("Three views (V)").clicked() {
                    self.view.nav.enlarged = None;
                    ui.close();
                }
                for plane in Plane::ALL {
                    let key = plane.name()[..1].to_uppercase();
                    if ui.button(format!("Enlarge {} ({key})", plane.name())).clicked() {
                        self.view.nav.enlarged = Some(plane);
                        ui.close();
                    }
                }
                ui.separator();
                ui.radio_value(&mut self.view.nav.convention, Convention::Radiological, "Radiological")
                    .on_hover_text("Patient's right on the screen's left (ITK-SNAP's default)");
                ui.radio_value(&mut self.view.nav.convention, Convention::Neurological, "Neurological")
                    .on_hover_text("Patient's right on the screen's right");
                ui.separator();
                if ui.button("Reset view (R)").clicked() {
                    self.view.nav.reset();
                    ui.close();
                }
            });
            ui.menu_button("Help", |ui| {
                ui.label(SHORTCUTS);
            });
            if self.reg.running() {
                ui.spinner();
                ui.label("registering…");
            } else if self.busy() {
                ui.spinner();
                ui.label("loading…");
            }
        });
    }

    pub(super) fn side_panel(&mut self, ui: &mut egui::Ui) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.heading("Images");
            self.image_controls(ui, Role::Fixed);
            self.image_controls(ui, Role::Moving);
            self.open_path(ui);
            ui.separator();
            self.compare_controls(ui);
            ui.separator();
            self.overlay_controls(ui);
            ui.separator();
            self.landmark_controls(ui);
        });
    }

    fn image_controls(&mut self, ui: &mut egui::Ui, role: Role) {
        let mut open = false;
        let mut add_sequence = false;
        let mut channel = None;
        let limits_notice;
        {
            let img: Option<&mut LoadedImage> = match role {
                Role::Fixed => self.images.fixed.as_mut(),
                Role::Moving => self.images.moving.as_mut(),
                Role::IcWeights => self.images.ic.as_mut(),
                Role::Labels => self.images.labels.as_mut(),
                Role::Mask => self.images.mask.as_mut(),
                Role::MovingLabels => self.images.moving_labels.as_mut(),
                Role::Field => None,
            };
            let has_image = img.is_some();
            ui.horizontal(|ui| {
                ui.strong(role.name());
                if ui.small_button("Open…").clicked() {
                    open = true;
                }
                if has_image
                    && matches!(role, Role::Fixed | Role::Moving)
                    && ui
                        .small_button("+ sequence…")
                        .on_hover_text(
                            "Add a sequence from a file of its own (T2, FLAIR…, on the same \
                             grid): stacked as a channel and registered with the others",
                        )
                        .clicked()
                {
                    add_sequence = true;
                }
            });
            let Some(img) = img else {
                ui.label("(none)");
                if open {
                    self.files.pick(Pick::Open(role), None);
                }
                return;
            };
            ui.label(&img.name).on_hover_text(
                img.path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "embedded".into()),
            );
            ui.small(&img.summary);
            limits_notice = img.notice.clone();
            if img.volume.channels > 1 {
                let mut c = img.channel;
                let name = |k: usize| {
                    let n = img.channel_names.get(k).map_or("", String::as_str);
                    format!("{} · {n}", k + 1)
                };
                egui::ComboBox::new((role.name(), "channel"), "channel")
                    .selected_text(name(c))
                    .show_ui(ui, |ui| {
                        for k in 0..img.volume.channels {
                            ui.selectable_value(&mut c, k, name(k));
                        }
                    });
                if matches!(role, Role::Fixed | Role::Moving) {
                    ui.small("every channel is registered");
                }
                if c != img.channel {
                    channel = Some(c);
                }
            }
            let mut preset = img.preset;
            egui::ComboBox::new((role.name(), "preset"), "window preset")
                .selected_text(preset.name())
                .show_ui(ui, |ui| {
                    for p in WindowPreset::ALL {
                        ui.selectable_value(&mut preset, p, p.name());
                    }
                });
            if preset != img.preset {
                img.apply_preset(preset);
            }
            ui.horizontal(|ui| {
                // Width and level, as radiology states windows (W80/L40).
                let (lo, hi) = img.style.window;
                let (mut w, mut l) = (hi - lo, 0.5 * (lo + hi));
                let speed = (w.abs() * 0.005).max(1e-6);
                let wl = ui.label("W");
                let cw = ui
                    .add(egui::DragValue::new(&mut w).speed(speed))
                    .labelled_by(wl.id)
                    .on_hover_text("Window width (left drag in a view: horizontal)")
                    .changed();
                let ll = ui.label("L");
                let cl = ui
                    .add(egui::DragValue::new(&mut l).speed(speed))
                    .labelled_by(ll.id)
                    .on_hover_text("Window level, the centre (left drag in a view: vertical)")
                    .changed();
                if cw || cl {
                    let w = w.max(1e-6);
                    img.style.window = (l - 0.5 * w, l + 0.5 * w);
                }
                ui.small(format!(
                    "({} to {})",
                    super::legend::fmt(lo),
                    super::legend::fmt(hi)
                ));
            });
            egui::ComboBox::new((role.name(), "map"), "colour map")
                .selected_text(img.style.colormap.name())
                .show_ui(ui, |ui| {
                    for m in ColorMap::IMAGE {
                        ui.selectable_value(&mut img.style.colormap, m, m.name());
                    }
                });
        }
        if let Some(n) = limits_notice {
            ui.colored_label(egui::Color32::from_rgb(240, 190, 80), n);
        }
        if let Some(c) = channel {
            self.select_channel(role, c);
        }
        if open {
            self.files.pick(Pick::Open(role), None);
        }
        if add_sequence {
            self.files.pick(Pick::AddSequence(role), None);
        }
    }

    /// A typed path, for desktops without a dialog service.
    fn open_path(&mut self, ui: &mut egui::Ui) {
        ui.collapsing("Open a path", |ui| {
            let label = ui.label("path");
            ui.add(
                egui::TextEdit::singleline(&mut self.files.typed_path)
                    .hint_text("/path/to/image.nii.gz"),
            )
            .labelled_by(label.id);
            ui.horizontal(|ui| {
                egui::ComboBox::new("typed role", "as")
                    .selected_text(self.files.typed_role.name())
                    .show_ui(ui, |ui| {
                        for r in Role::ALL {
                            ui.selectable_value(&mut self.files.typed_role, r, r.name());
                        }
                    });
                ui.checkbox(&mut self.files.typed_sequence, "as another sequence")
                    .on_hover_text(
                        "Stack it as a channel of the fixed or moving image (one file per \
                         sequence, on the same grid)",
                    );
                if ui.button("Open").clicked() && !self.files.typed_path.trim().is_empty() {
                    let p = std::path::PathBuf::from(self.files.typed_path.trim());
                    if p.is_dir() {
                        self.open_result_folder(p);
                    } else if p
                        .to_string_lossy()
                        .ends_with(crate::session_file::EXTENSION)
                    {
                        self.open_session(&p);
                    } else if self.files.typed_sequence {
                        self.add_sequence(self.files.typed_role, p);
                    } else {
                        self.open(self.files.typed_role, p);
                    }
                }
            });
        });
    }

    fn compare_controls(&mut self, ui: &mut egui::Ui) {
        ui.heading("Compare");
        let slot_combo =
            |ui: &mut egui::Ui, name: &str, s: &mut Slot, available: &dyn Fn(Slot) -> bool| {
                let label = ui.label(name);
                egui::ComboBox::from_id_salt(("slot", name))
                    .selected_text(s.name())
                    .show_ui(ui, |ui| {
                        for slot in Slot::ALL {
                            ui.add_enabled_ui(available(slot), |ui| {
                                ui.selectable_value(s, slot, slot.name());
                            });
                        }
                    })
                    .response
                    .labelled_by(label.id);
            };
        let have = |slot: Slot| self.slot_image(slot).is_some();
        let (mut a, mut b) = (self.view.a, self.view.b);
        ui.horizontal(|ui| {
            slot_combo(ui, "A", &mut a, &have);
            slot_combo(ui, "B", &mut b, &have);
            if ui
                .small_button("swap")
                .on_hover_text("Swap A and B (X)")
                .clicked()
            {
                std::mem::swap(&mut a, &mut b);
            }
        });
        self.view.a = a;
        self.view.b = b;
        for (i, m) in Mode::ALL.into_iter().enumerate() {
            ui.radio_value(&mut self.view.composite.mode, m, m.name())
                .on_hover_text(format!("key {}", i + 1));
        }
        let c = &mut self.view.composite;
        match c.mode {
            Mode::Checkerboard => {
                ui.add(
                    egui::Slider::new(&mut c.tile_mm, 1.0..=100.0)
                        .text("tile (mm)")
                        .logarithmic(true),
                );
            }
            Mode::Difference => {
                ui.add(
                    egui::Slider::new(&mut c.difference_gain, 1.0..=20.0)
                        .text("gain")
                        .logarithmic(true),
                );
            }
            Mode::Blend => {
                ui.add(egui::Slider::new(&mut c.blend, 0.0..=1.0).text("B fraction"));
            }
            Mode::Flicker => {
                ui.add(
                    egui::Slider::new(&mut c.flicker_period_s, 0.1..=3.0).text("seconds per image"),
                );
            }
            Mode::Swipe => {
                ui.add(egui::Slider::new(&mut c.swipe, 0.0..=1.0).text("divider"))
                    .on_hover_text("Or drag the white line in a view");
            }
            _ => {}
        }
        ui.checkbox(&mut c.interpolate, "trilinear interpolation")
            .on_hover_text("Off: nearest voxel (shows the voxel grid)");
    }

    fn overlay_controls(&mut self, ui: &mut egui::Ui) {
        ui.heading("Field");
        ui.horizontal(|ui| {
            egui::ComboBox::new("field kind", "kind")
                .selected_text(field_kind_name(self.field.kind))
                .show_ui(ui, |ui| {
                    for k in FIELD_KINDS {
                        ui.selectable_value(&mut self.field.kind, k, field_kind_name(k));
                    }
                })
                .response
                .on_hover_text("How the next field file is read");
            if ui.button("Open…").clicked() {
                self.files.pick(Pick::Open(Role::Field), None);
            }
        });
        match &self.field.loaded {
            Some(f) => {
                ui.label(format!("{} ({})", f.name, f.kind.name()));
                if let Some(n) = &f.notice {
                    ui.small(n);
                }
            }
            None => {
                ui.small("none: open a field written by `warpscope register` or an ANTs warp");
            }
        }
        let has_field = self.field_grid().is_some();
        let o = &mut self.view.overlays;
        ui.add_enabled_ui(has_field, |ui| {
            ui.checkbox(&mut o.grid.on, "deformation grid (G)");
            if o.grid.on {
                ui.horizontal(|ui| {
                    ui.add(
                        egui::DragValue::new(&mut o.grid.spacing_mm)
                            .range(0.5..=100.0)
                            .suffix(" mm"),
                    )
                    .on_hover_text("Grid spacing in the moving image");
                    ui.add(
                        egui::DragValue::new(&mut o.grid.width_px)
                            .range(0.5..=5.0)
                            .speed(0.05)
                            .suffix(" px"),
                    );
                    colour_edit(ui, &mut o.grid.colour);
                });
                ui.add(egui::Slider::new(&mut o.grid.opacity, 0.0..=1.0).text("opacity"));
            }
            ui.checkbox(&mut o.vectors.on, "motion vectors (M)");
            if o.vectors.on {
                ui.horizontal(|ui| {
                    ui.add(
                        egui::DragValue::new(&mut o.vectors.spacing_px)
                            .range(6.0..=200.0)
                            .suffix(" px"),
                    )
                    .on_hover_text("One arrow per cell of this size on screen");
                    ui.add(
                        egui::DragValue::new(&mut o.vectors.scale)
                            .range(0.1..=20.0)
                            .speed(0.05)
                            .prefix("×"),
                    )
                    .on_hover_text("Arrow length per displacement (×1 = true length)");
                    colour_edit(ui, &mut o.vectors.colour);
                });
                ui.add(egui::Slider::new(&mut o.vectors.opacity, 0.0..=1.0).text("opacity"));
            }
            ui.checkbox(&mut o.jacobian.on, "det J map (J)");
            if o.jacobian.on {
                ui.horizontal(|ui| {
                    ui.radio_value(&mut o.jacobian.style, JacobianStyle::Log, "log scale");
                    ui.radio_value(&mut o.jacobian.style, JacobianStyle::Signed, "signed (§5)");
                });
                ui.horizontal(|ui| {
                    ui.add(
                        egui::DragValue::new(&mut o.jacobian.range)
                            .range(1.01..=100.0)
                            .speed(0.01)
                            .prefix("range "),
                    )
                    .on_hover_text("Log: 1/range … range; signed: −range … range");
                    ui.label("folds");
                    colour_edit(ui, &mut o.jacobian.fold_colour);
                });
                if o.jacobian.style == JacobianStyle::Log {
                    ui.checkbox(&mut o.jacobian.fade, "clear near det J = 1")
                        .on_hover_text("Opacity grows with the distance from 1 on the log scale");
                }
                ui.add(egui::Slider::new(&mut o.jacobian.opacity, 0.0..=1.0).text("opacity"));
            }
        });
        ui.separator();
        self.image_controls_compact(ui, Role::IcWeights);
        if let Some(ic) = &mut self.images.ic {
            let o = &mut self.view.overlays.ic;
            ui.checkbox(&mut o.on, "IC weight map (I)");
            ui.horizontal(|ui| {
                let (lo, hi) = &mut ic.style.window;
                ui.label("window");
                ui.add(egui::DragValue::new(lo).speed(0.001))
                    .on_hover_text("Weight drawn fully coloured");
                ui.add(egui::DragValue::new(hi).speed(0.001))
                    .on_hover_text("Weight drawn clear");
            });
            ui.add(egui::Slider::new(&mut o.opacity, 0.0..=1.0).text("opacity"));
        }
        self.image_controls_compact(ui, Role::Mask);
        ui.small("registration compares only voxels inside the fixed mask");
        self.image_controls_compact(ui, Role::Labels);
        if self.images.labels.is_some() {
            ui.checkbox(&mut self.view.overlays.labels.on, "label outlines (L)");
            ui.add(
                egui::Slider::new(&mut self.view.overlays.labels.opacity, 0.0..=1.0)
                    .text("opacity"),
            );
            ui.add_enabled(
                self.field.loaded.is_some(),
                egui::Checkbox::new(
                    &mut self.images.labels_in_moving,
                    "labels of the moving image (drawn through the field)",
                ),
            );
        }
        self.image_controls_compact(ui, Role::MovingLabels);
        ui.small("with labels on the fixed grid: the Dice loss (deformable.dice)");
    }

    fn image_controls_compact(&mut self, ui: &mut egui::Ui, role: Role) {
        ui.horizontal(|ui| {
            ui.strong(role.name());
            if ui.small_button("Open…").clicked() {
                self.files.pick(Pick::Open(role), None);
            }
        });
        let img = match role {
            Role::IcWeights => &self.images.ic,
            Role::Mask => &self.images.mask,
            Role::MovingLabels => &self.images.moving_labels,
            _ => &self.images.labels,
        };
        let mut clear = false;
        match img {
            Some(i) => {
                ui.horizontal_wrapped(|ui| {
                    ui.small(format!("{} · {}", i.name, i.summary));
                    clear = matches!(role, Role::Mask | Role::MovingLabels)
                        && ui.small_button("clear").clicked();
                });
            }
            None => {
                ui.small("(none)");
            }
        }
        if clear {
            match role {
                Role::MovingLabels => self.images.moving_labels = None,
                _ => self.images.mask = None,
            }
        }
    }
}

pub const SHORTCUTS: &str = "\
Mouse (in a view)
  wheel: next / previous slice      ctrl-wheel or right drag: zoom
  left click: move the crosshair    left drag: window/level of A (shift: B)
  middle drag: pan                  double-click: enlarge / restore
Keys
  A, C, S: enlarge axial / coronal / sagittal;  V or Esc: three views
  Page Up / Page Down, arrow up / down: slice of the view under the mouse
  1–7: compare mode;  X: swap A and B;  R: reset the view
  G grid, M motion vectors, J det J, I IC weights, L labels
  F12: screenshot of the window; shift-F12: of the view under the mouse
Landmarks
  K: landmark mode on / off;  T: show the fixed / moving image
  click: place (its partner is proposed through the field, shown id?)
  drag a landmark: move it;  Enter: confirm the selected pair's proposed point
  Delete: remove the selected pair;  ctrl-Z / ctrl-Y: undo / redo";
