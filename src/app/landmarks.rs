//! Landmarks in the viewer: the editor's state, TRE against the current
//! field (the same `metrics::tre` report `warpscope eval` prints), import
//! and export in every landmark format, and the autosave sidecar that a
//! crash cannot lose.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use eframe::egui;

use super::viewer::ViewerApp;
use crate::landmarks::LandmarkSet;
use crate::landmarks::edit::{Editor, Placement, side_name};
use crate::landmarks::formats::{self, CoordinateSystem, Format, IndexBase, Side};
use crate::metrics::Mapping;
use crate::metrics::tre::{self, TreReport};

/// What a landmark file is opened as, or saved from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LandmarkFile {
    /// Both sides: the shared data's pair CSV (`id,fx,fy,fz,mx,my,mz`).
    Pairs,
    /// One side, in any single-set format (.fcsv, .mrk.json, BraTS-Reg CSV).
    One(Side),
}

/// Landmarks read from a file, on their way into the editor.
pub struct Import {
    what: LandmarkFile,
    fixed: LandmarkSet,
    moving: LandmarkSet,
    /// The file (or "the demo landmarks"), for messages.
    source: String,
}

/// A pair's points carried across by the field: the fixed point mapped to
/// moving space, the moving point mapped back to fixed space.
pub type Carried = (Option<[f64; 3]>, Option<[f64; 3]>);

/// How the table is ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    /// As placed or read.
    Order,
    /// Largest error after registration first.
    ErrorAfter,
    /// Largest error before registration first.
    ErrorBefore,
}

/// The viewer's landmark state.
pub struct LandmarkUi {
    pub editor: Editor,
    /// Landmark mode: clicks place points.
    pub mode: bool,
    /// The image the views show in landmark mode.
    pub side: Side,
    pub selected: Option<String>,
    /// A landmark being dragged, and the view it is dragged in (one undo step per drag).
    pub(super) dragging: Option<(String, Side, crate::render::Plane)>,
    pub sort: SortBy,
    pub rename: String,
    pub path: String,
    pub format: Format,
    /// TRE of the current pairs through the current field (identity without one).
    pub report: Option<TreReport>,
    /// For each pair, its points carried across by the field.
    pub mapped: HashMap<String, Carried>,
    report_key: Option<(u64, u64)>,
    identity: Option<Mapping>,
    /// An import that would replace points, waiting for the user's answer.
    pub replace_asked: Option<Import>,
    /// Where the autosave goes, and the generation last written.
    pub autosave: Option<PathBuf>,
    saved: u64,
}

impl Default for LandmarkUi {
    fn default() -> Self {
        Self {
            editor: Editor::default(),
            mode: false,
            side: Side::Fixed,
            selected: None,
            dragging: None,
            sort: SortBy::Order,
            rename: String::new(),
            path: String::new(),
            format: Format::PairCsv,
            report: None,
            mapped: HashMap::new(),
            report_key: None,
            identity: None,
            replace_asked: None,
            autosave: None,
            saved: 0,
        }
    }
}

/// Where the landmarks of a fixed image are autosaved: beside the image
/// (`NAME.warpscope-landmarks.json`) when it has a file, else in the config
/// folder (`autosave/NAME.json`).
pub fn autosave_path(
    fixed_path: Option<&Path>,
    name: &str,
    config: Option<&Path>,
) -> Option<PathBuf> {
    match fixed_path {
        Some(p) => {
            let file = p.file_name()?.to_string_lossy().into_owned();
            Some(p.with_file_name(format!("{file}.warpscope-landmarks.json")))
        }
        None => {
            let safe: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            config.map(|d| d.join("autosave").join(format!("{safe}.json")))
        }
    }
}

impl ViewerApp {
    /// The pairs' TRE through the current field, recomputed when either changed.
    pub(super) fn refresh_landmarks(&mut self) {
        let key = (self.lm.editor.generation(), self.field.serial);
        if self.lm.report_key == Some(key) {
            return;
        }
        self.lm.report_key = Some(key);
        let Some(fixed) = &self.images.fixed else {
            self.lm.report = None;
            return;
        };
        let grid = fixed.volume.grid.clone();
        let mapping = match &self.field.loaded {
            Some(f) => &f.mapping,
            None => {
                if self.lm.identity.as_ref().is_none_or(|m| m.grid() != &grid) {
                    self.lm.identity = Some(Mapping::identity(&grid));
                }
                match &self.lm.identity {
                    Some(m) => m,
                    None => return,
                }
            }
        };
        let (f, m) = self.lm.editor.to_sets();
        let moving_grid = self.images.moving.as_ref().map(|m| (&m.volume.grid, 0.0));
        // A proposed point was put where the field (or the identity) says:
        // its error would measure the field against itself.
        let proposed = self.lm.editor.proposed_ids();
        self.lm.report = Some(tre::tre(&f, &m, mapping, moving_grid, &|l| {
            proposed.contains(l.id.as_str())
        }));
        self.lm.mapped = self
            .lm
            .editor
            .pairs()
            .iter()
            .map(|p| {
                let forward = p.fixed.and_then(|x| mapping.map_point(x));
                let back = p
                    .moving
                    .and_then(|y| mapping.inverse_point(y).map(|(x, _)| x));
                (p.id.clone(), (forward, back))
            })
            .collect();
        self.rescore_runs();
        self.autosave_landmarks();
    }

    /// The TRE of every finished run whose result is kept, against the
    /// landmarks as they are now: runs made before the landmarks were
    /// loaded (or edited) are scored too.
    fn rescore_runs(&mut self) {
        let Some(moving) = &self.images.moving else {
            return;
        };
        let (f, m) = self.lm.editor.confirmed_sets();
        let landmarks = (!f.points.is_empty() && !m.points.is_empty()).then_some((&f, &m));
        for rec in &mut self.reg.history {
            if let Some(data) = self.reg.kept.get(&rec.id) {
                crate::results::landmark_metrics(
                    &mut rec.metrics,
                    &data.products.mapping,
                    &moving.volume.grid,
                    landmarks,
                );
            }
        }
    }

    /// Write the autosave when the pairs changed since the last write.
    fn autosave_landmarks(&mut self) {
        let generation = self.lm.editor.generation();
        if generation == self.lm.saved {
            return;
        }
        let Some(path) = self.lm.autosave.clone() else {
            return;
        };
        let text = self.lm.editor.to_autosave();
        let write = |p: &Path| {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            crate::atomic::write_text(p, &text)
        };
        match write(&path) {
            Ok(()) => self.lm.saved = generation,
            Err(e) => {
                // Beside the image may be read-only: fall back to the config folder.
                let name = self
                    .images
                    .fixed
                    .as_ref()
                    .map(|f| f.name.clone())
                    .unwrap_or_default();
                let fallback = autosave_path(None, &name, self.files.config_dir());
                match fallback.filter(|f| *f != path) {
                    Some(f) => {
                        self.notice(format!(
                            "landmarks cannot be autosaved beside the image ({e}): saving to {}",
                            f.display()
                        ));
                        self.lm.autosave = Some(f);
                        self.autosave_landmarks();
                    }
                    None => {
                        self.error(format!(
                            "landmarks could not be autosaved: {}: {e}",
                            path.display()
                        ));
                        self.lm.saved = generation;
                    }
                }
            }
        }
    }

    /// A new fixed image: landmarks autosave beside it; restore an autosave
    /// when nothing is being edited.
    pub(super) fn landmarks_for_new_fixed(&mut self) {
        let Some(f) = &self.images.fixed else { return };
        let path = autosave_path(f.path.as_deref(), &f.name, self.files.config_dir());
        self.lm.autosave = path.clone();
        self.lm.report_key = None;
        let Some(path) = path else { return };
        if !self.lm.editor.is_empty() || !path.is_file() {
            self.lm.saved = self.lm.editor.generation();
            return;
        }
        match std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| Editor::from_autosave(&t))
        {
            Ok(editor) => {
                let n = editor.pairs().len();
                self.lm.editor = editor;
                self.lm.saved = self.lm.editor.generation();
                self.notice(format!(
                    "restored {n} landmark(s) from the autosave {}",
                    path.display()
                ));
            }
            Err(e) => self.error(format!("{}: {e}", path.display())),
        }
    }

    /// Read a landmark file into the editor (one undoable edit); points
    /// outside their image are kept and flagged.
    pub fn open_landmarks(&mut self, what: LandmarkFile, path: &Path) {
        let base = IndexBase::Zero;
        let result = match what {
            LandmarkFile::Pairs => std::fs::read_to_string(path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|t| {
                    formats::parse_pair_csv(&t, &path.display().to_string())
                        .map_err(|e| e.to_string())
                }),
            LandmarkFile::One(side) => {
                formats::read_set(path, self.side_grid(side).as_ref(), base, side)
                    .map(|s| (s.clone(), s))
                    .map_err(|e| e.to_string())
            }
        };
        let (f, m) = match result {
            Ok(sets) => sets,
            Err(e) => {
                self.error(format!("could not open landmarks: {e}"));
                return;
            }
        };
        self.import_landmarks(Import {
            what,
            fixed: f,
            moving: m,
            source: path.display().to_string(),
        });
    }

    /// Points that an import would replace: the pairs, or one side's points.
    fn replaced_by(&self, what: LandmarkFile) -> usize {
        let pairs = self.lm.editor.pairs();
        match what {
            LandmarkFile::Pairs => pairs.len(),
            LandmarkFile::One(side) => pairs.iter().filter(|p| p.get(side).is_some()).count(),
        }
    }

    /// Bring read landmarks into the editor, after asking when they would
    /// replace points already there.
    fn import_landmarks(&mut self, import: Import) {
        if self.replaced_by(import.what) > 0 {
            self.lm.replace_asked = Some(import);
        } else {
            self.apply_import(import);
        }
    }

    /// The "replace the landmarks?" question, while one is pending.
    pub(super) fn replace_question(&mut self, ctx: &egui::Context) {
        let Some(import) = &self.lm.replace_asked else {
            return;
        };
        let n = self.replaced_by(import.what);
        let what = match import.what {
            LandmarkFile::Pairs => format!("the {n} landmark pair(s)"),
            LandmarkFile::One(side) => format!("the {n} {} point(s)", side_name(side)),
        };
        let mut answer = None;
        egui::Window::new("Replace the landmarks?")
            .collapsible(false)
            .resizable(false)
            .show(ctx, |ui| {
                ui.label(format!(
                    "Opening {} replaces {what} placed or opened before (ctrl-Z undoes it).",
                    import.source
                ));
                ui.horizontal(|ui| {
                    if ui.button("Replace").clicked() {
                        answer = Some(true);
                    }
                    if ui.button("Keep mine").clicked() {
                        answer = Some(false);
                    }
                });
            });
        match answer {
            Some(true) => {
                if let Some(import) = self.lm.replace_asked.take() {
                    self.apply_import(import);
                }
            }
            Some(false) => self.lm.replace_asked = None,
            None => {}
        }
    }

    fn apply_import(&mut self, import: Import) {
        let Import {
            what,
            fixed: f,
            moving: m,
            source,
        } = import;
        let notice = match what {
            LandmarkFile::Pairs => self.lm.editor.replace_all(&f, &m),
            LandmarkFile::One(side) => self.lm.editor.replace_side(side, &f),
        };
        if let Some(n) = notice {
            self.notice(n);
        }
        let checks = match what {
            LandmarkFile::Pairs => vec![(Side::Fixed, &f), (Side::Moving, &m)],
            LandmarkFile::One(side) => vec![(side, &f)],
        };
        for (side, set) in checks {
            if let Some(g) = self.side_grid(side)
                && let Some(n) =
                    Placement::of(set, &g).notice(&format!("{} landmarks", side_name(side)))
            {
                self.notice(n);
            }
        }
        self.notes.status = format!(
            "{} landmark pair(s) from {source}",
            self.lm.editor.pairs().len(),
        );
    }

    /// Write landmarks: pairs as a pair CSV, or one side in `format`.
    pub fn save_landmarks(&mut self, what: LandmarkFile, format: Format, path: &Path) {
        let (f, m) = self.lm.editor.to_sets();
        let result = match what {
            LandmarkFile::Pairs => formats::write_pair_csv(path, &f, &m),
            LandmarkFile::One(side) => {
                let set = if side == Side::Fixed { &f } else { &m };
                match format {
                    Format::Fcsv => formats::write_fcsv(path, set, CoordinateSystem::Lps),
                    Format::MrkJson => formats::write_mrk_json(path, set, CoordinateSystem::Lps),
                    Format::BratsCsv => match self.side_grid(side) {
                        Some(g) => formats::write_brats_csv(path, set, &g, IndexBase::Zero),
                        None => {
                            self.error("a BraTS-Reg CSV holds voxel indices: open the image first");
                            return;
                        }
                    },
                    Format::PairCsv => formats::write_pair_csv(path, &f, &m),
                }
            }
        };
        match result {
            Ok(()) => self.notice(format!("landmarks saved: {}", path.display())),
            Err(e) => self.error(format!("landmarks not saved: {e}")),
        }
    }

    /// The full-resolution grid of the image a side's landmarks belong to.
    fn side_grid(&self, side: Side) -> Option<crate::volume::Grid> {
        match side {
            Side::Fixed => self.images.fixed.as_ref(),
            Side::Moving => self.images.moving.as_ref(),
        }
        .map(|i| i.volume.grid.clone())
    }

    /// The embedded demo's landmarks (pair CSV), when the demo pair is shown.
    pub fn open_demo_landmarks(&mut self) {
        match formats::parse_pair_csv(crate::demo::LANDMARKS_CSV, "demo/landmarks.csv") {
            Ok((f, m)) => self.import_landmarks(Import {
                what: LandmarkFile::Pairs,
                fixed: f,
                moving: m,
                source: "the demo landmarks".into(),
            }),
            Err(e) => self.error(e.to_string()),
        }
    }

    /// Make `id` the selected landmark and move every view to it.
    pub fn jump_to_landmark(&mut self, id: &str) {
        let Some(p) = self.lm.editor.get(id) else {
            return;
        };
        let side = if self.lm.mode {
            self.lm.side
        } else {
            Side::Fixed
        };
        if let Some(x) = p.get(side).or(p.fixed).or(p.moving) {
            self.view.nav.cursor_ras = x;
        }
        self.lm.selected = Some(id.to_string());
        self.lm.rename = id.to_string();
    }

    /// Move the selected landmark (on the shown side) to the crosshair.
    pub fn snap_selected_to_crosshair(&mut self) {
        if let Some(id) = self.lm.selected.clone() {
            let side = self.landmark_side();
            self.lm
                .editor
                .set_point(&id, side, self.view.nav.cursor_ras);
        }
    }

    /// The side whose points the views show: in landmark mode the chosen
    /// one; otherwise the side of image A (moving for the moving image).
    pub fn landmark_side(&self) -> Side {
        if self.lm.mode {
            self.lm.side
        } else if self.view.a == crate::render::Slot::Moving {
            Side::Moving
        } else {
            Side::Fixed
        }
    }

    /// Place a landmark where the user clicked (world RAS on the shown side):
    /// on the fixed image a new pair, its moving point placed through the
    /// field (or at the same position without one); on the moving image the
    /// selected pair's moving point, or a new pair mapped back.
    pub fn place_landmark(&mut self, ras_mm: [f64; 3]) -> String {
        let side = self.landmark_side();
        let mapping = self.field.loaded.as_ref().map(|f| &f.mapping);
        let id = match side {
            Side::Fixed => {
                let partner = mapping.and_then(|m| m.map_point(ras_mm)).unwrap_or(ras_mm);
                self.lm
                    .editor
                    .add_proposed(Some(ras_mm), Some(partner), Some(Side::Moving))
            }
            Side::Moving => match self
                .lm
                .selected
                .clone()
                .filter(|s| self.lm.editor.get(s).is_some())
            {
                Some(id) => {
                    self.lm.editor.set_point(&id, Side::Moving, ras_mm);
                    id
                }
                None => {
                    let partner = mapping
                        .and_then(|m| m.inverse_point(ras_mm).map(|(x, _)| x))
                        .unwrap_or(ras_mm);
                    self.lm
                        .editor
                        .add_proposed(Some(partner), Some(ras_mm), Some(Side::Fixed))
                }
            },
        };
        self.lm.selected = Some(id.clone());
        self.lm.rename = id.clone();
        id
    }

    /// Undo / redo the last landmark edit.
    pub fn undo_landmarks(&mut self) -> bool {
        self.lm.editor.undo()
    }

    pub fn redo_landmarks(&mut self) -> bool {
        self.lm.editor.redo()
    }
}
