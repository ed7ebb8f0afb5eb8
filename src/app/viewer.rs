//! The viewer's state and its frame loop: images, field and maps as loaded,
//! kept in step with the GPU scene; field products (warped image, det J)
//! computed on the GPU and read back once for read-outs and statistics.
//!
//! Layout and mouse follow ITK-SNAP / 3D Slicer: axial, coronal and
//! sagittal views with a linked crosshair (one can be enlarged); wheel =
//! slice, ctrl-wheel or right drag = zoom, middle drag = pan, left drag =
//! window/level, left click = move the crosshair.

use std::path::PathBuf;

use eframe::egui;
use eframe::egui_wgpu;

use super::data::{Limits, Loaded, LoadedField, LoadedImage, Loader, Role, display_name};
use super::files::Files;
use super::landmarks::{LandmarkFile, LandmarkUi};
use super::navigation::Navigation;
use super::screenshot::Screenshots;
use crate::metrics::FieldKind;
use crate::render::{
    Composite, FieldCompute, GpuScene, GpuVolume, ImageStyle, Map, Mode, Overlays, Present,
    Readback, Slot,
};
use crate::volume::affine;
use crate::volume::{Grid, Volume, range_of};

/// Where an image comes from at start-up.
pub enum Source {
    Path(PathBuf),
    /// Already in memory.
    Volume {
        name: String,
        volume: Volume,
    },
    /// The embedded demo image of the role (fixed or moving).
    Demo,
}

/// What to open when the window appears.
#[derive(Default)]
pub struct Startup {
    pub images: Vec<(Role, Source)>,
    pub field_kind: Option<FieldKind>,
    pub labels_in_moving: bool,
    /// A `warpscope register --out` folder.
    pub result: Option<PathBuf>,
    /// Where recent files (and landmarks of embedded images) are kept
    /// (`None`: nowhere).
    pub config_dir: Option<PathBuf>,
    /// Landmark files to open once the images are loaded.
    pub landmarks: Vec<(LandmarkFile, PathBuf)>,
    /// A session file to open (images, landmarks, pipeline, view, history).
    pub session: Option<PathBuf>,
    /// Run the live-registration frame-time benchmark, then close.
    pub bench: Option<super::bench::LiveBench>,
}

/// A line shown to the user: errors stay until dismissed.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// det J statistics over the field's grid (from the GPU's map).
#[derive(Clone, Debug, PartialEq)]
pub struct JacobianStats {
    pub min: f32,
    pub max: f32,
    pub folds: usize,
    pub voxels: usize,
}

impl JacobianStats {
    pub fn from_values(v: &[f32]) -> Self {
        let (min, max) = range_of(v).unwrap_or((f32::NAN, f32::NAN));
        Self {
            min,
            max,
            folds: v.iter().filter(|&&x| x <= 0.0).count(),
            voxels: v.len(),
        }
    }

    pub fn fold_percent(&self) -> f64 {
        100.0 * self.folds as f64 / self.voxels.max(1) as f64
    }
}

/// The GPU-computed products of the field, as far as they have arrived.
#[derive(Default)]
pub struct Products {
    pub warped_ready: bool,
    /// CPU copy of the warped image (on the field's grid), for read-outs.
    pub warped: Option<Volume>,
    warped_rb: Option<Readback>,
    pub jacobian_ready: bool,
    pub jacobian: Option<Volume>,
    pub jacobian_stats: Option<JacobianStats>,
    jacobian_rb: Option<Readback>,
}

pub struct ViewerApp {
    pub(super) rs: egui_wgpu::RenderState,
    pub(super) compute: FieldCompute,
    pub(super) limits: Limits,
    pub fixed: Option<LoadedImage>,
    pub moving: Option<LoadedImage>,
    pub field: Option<LoadedField>,
    pub ic: Option<LoadedImage>,
    pub labels: Option<LoadedImage>,
    /// The fixed image's mask, for registration.
    pub mask: Option<LoadedImage>,
    /// Labels drawn in moving space (through the field) instead of fixed space.
    pub labels_in_moving: bool,
    pub products: Products,
    pub nav: Navigation,
    pub a: Slot,
    pub b: Slot,
    pub composite: Composite,
    pub overlays: Overlays,
    pub(super) flicker_shows_b: bool,
    pub(super) flicker_since: f64,
    pub messages: Vec<Message>,
    pub status: String,
    /// Set when fixed and moving do not overlap in world space: the gap (mm).
    pub no_overlap_mm: Option<f64>,
    /// A pair was shown in a comparison once: the first pair opens in the
    /// checkerboard, later ones keep the mode the user chose.
    pair_compared: bool,
    /// The window title last sent.
    pub(super) title: String,
    /// A DICOM folder of several series waiting for the user's pick.
    pub series_choice: Option<SeriesChoice>,
    pub(super) loader: Loader,
    /// Fields waiting for the fixed image (they are resampled onto its grid).
    deferred_fields: Vec<(PathBuf, Option<FieldKind>)>,
    /// The kind chosen for the next field opened ("auto" = from the header).
    pub field_kind: Option<FieldKind>,
    pub(super) files: Files,
    pub(super) screenshots: Screenshots,
    pub(super) dragging_divider: bool,
    /// Each plane's image rectangle this frame (screenshots of a view crop to it).
    pub(super) view_rects: [Option<egui::Rect>; 3],
    /// The view under the mouse (keys act on it).
    pub(super) hovered_plane: Option<crate::render::Plane>,
    /// Landmarks: editor, mode, TRE table, autosave.
    pub lm: LandmarkUi,
    /// Bumped whenever the field changes (TRE is recomputed on it).
    pub field_serial: u64,
    /// Landmark files named at start-up, opened once the images have loaded.
    pending_landmarks: Vec<(LandmarkFile, PathBuf)>,
    /// Registration: pipeline, the run, its previews, history, exports.
    pub reg: super::registration::Registration,
    /// The grid of the live preview's field while a run draws it (the field
    /// textures hold a preview, not a loaded field).
    pub preview_grid: Option<Grid>,
    /// The session file last opened or saved.
    pub session_path: Option<PathBuf>,
    /// A session's view state, applied once its fixed image has loaded.
    pub(super) pending_view: Option<serde_json::Value>,
    /// The frame-time benchmark, when asked for.
    pub(super) bench: Option<super::bench::BenchState>,
    pub(super) bench_done: bool,
    /// Time spent in the last frame's `ui` (ms), and the window's size.
    pub(super) last_ui_ms: f64,
    pub(super) window_size: [f32; 2],
}

/// The series of a DICOM folder, offered for `role`.
pub struct SeriesChoice {
    pub role: Role,
    pub path: PathBuf,
    pub series: Vec<crate::volume::dicom::SeriesSummary>,
}

impl ViewerApp {
    /// Build the app on eframe's wgpu device.
    pub fn new(cc: &eframe::CreationContext<'_>, startup: Startup) -> Result<Self, String> {
        let rs = cc
            .wgpu_render_state
            .clone()
            .ok_or("the wgpu renderer is not available")?;
        Self::with_render_state(rs, startup)
    }

    pub fn with_render_state(rs: egui_wgpu::RenderState, startup: Startup) -> Result<Self, String> {
        let scene = GpuScene::new(&rs.device, &rs.queue, rs.target_format);
        let compare = GpuScene::new(&rs.device, &rs.queue, rs.target_format);
        {
            let mut r = rs.renderer.write();
            r.callback_resources.insert(scene);
            r.callback_resources
                .insert(super::callback::CompareScene(compare));
        }
        let limits = Limits(rs.device.limits());
        let compute = FieldCompute::new(&rs.device);
        let placeholder = Grid::new([1, 1, 1], affine::IDENTITY);
        let mut app = Self {
            rs,
            compute,
            limits,
            fixed: None,
            moving: None,
            field: None,
            ic: None,
            labels: None,
            mask: None,
            labels_in_moving: startup.labels_in_moving,
            products: Products::default(),
            nav: Navigation::framing(&placeholder),
            a: Slot::Fixed,
            b: Slot::Moving,
            composite: Composite::default(),
            overlays: Overlays::default(),
            flicker_shows_b: false,
            flicker_since: 0.0,
            messages: Vec::new(),
            status: String::new(),
            no_overlap_mm: None,
            pair_compared: false,
            title: String::new(),
            series_choice: None,
            loader: Loader::default(),
            deferred_fields: Vec::new(),
            field_kind: startup.field_kind,
            files: Files::load(startup.config_dir.clone()),
            screenshots: Screenshots::default(),
            dragging_divider: false,
            view_rects: [None; 3],
            hovered_plane: None,
            lm: LandmarkUi::default(),
            field_serial: 0,
            pending_landmarks: startup.landmarks,
            reg: Default::default(),
            preview_grid: None,
            session_path: None,
            pending_view: None,
            bench: startup.bench.map(super::bench::BenchState::new),
            bench_done: false,
            last_ui_ms: 0.0,
            window_size: [0.0; 2],
        };
        for (role, source) in startup.images {
            match source {
                Source::Path(p) => app.open(role, p),
                Source::Volume { name, volume } => {
                    let prepared =
                        LoadedImage::for_role(role, name, None, volume, None, &app.limits);
                    if let Err(e) = prepared.and_then(|img| app.accept_image(role, img)) {
                        app.error(e);
                    }
                }
                Source::Demo => app.open_demo(role),
            }
        }
        if let Some(dir) = startup.result {
            app.loader.result_folder(dir);
        }
        if let Some(p) = startup.session {
            app.open_session(&p);
        }
        // The device was made without some optional features (the adapter
        // refused them): say so.
        if let Some(note) = crate::gpu::take_device_note() {
            app.notice(note);
        }
        Ok(app)
    }

    pub fn error(&mut self, text: impl Into<String>) {
        let text = printable(text.into());
        self.status = text.clone();
        self.messages.push(Message { text, error: true });
    }

    /// Drop the notices (not the errors): they spoke of the result that
    /// was shown, and another one takes its place.
    pub fn clear_notices(&mut self) {
        self.messages.retain(|m| m.error);
    }

    pub fn notice(&mut self, text: impl Into<String>) {
        let text = printable(text.into());
        self.status = text.clone();
        self.messages.push(Message { text, error: false });
    }

    /// The wgpu device, queue and renderer the viewer draws with (and the
    /// engine shares).
    pub fn render_state(&self) -> &egui_wgpu::RenderState {
        &self.rs
    }

    /// A plane's image rectangle in the last frame (`None` when not shown).
    pub fn view_rect(&self, plane: crate::render::Plane) -> Option<egui::Rect> {
        self.view_rects[plane.index()]
    }

    /// Whether flicker shows image B now.
    pub fn flicker_shows_b(&self) -> bool {
        self.flicker_shows_b
    }

    /// The view under the mouse in the last frame.
    pub fn hovered_view(&self) -> Option<crate::render::Plane> {
        self.hovered_plane
    }

    /// What the screenshots asked for so far name ("Window" or a plane).
    pub fn requested_shots(&self) -> Vec<String> {
        self.screenshots.requested.clone()
    }

    /// The device's largest 3-D texture edge (voxels).
    pub fn max_texture_3d(&self) -> u32 {
        self.limits.0.max_texture_dimension_3d
    }

    /// The recent-files list, newest first.
    pub fn recent_files(&self) -> Vec<(Role, PathBuf)> {
        self.files
            .recent
            .iter()
            .map(|r| (r.role, r.path.clone()))
            .collect()
    }

    pub fn errors(&self) -> Vec<&str> {
        self.messages
            .iter()
            .filter(|m| m.error)
            .map(|m| m.text.as_str())
            .collect()
    }

    /// Open a file in a role (read on a worker thread; applied when it arrives).
    pub fn open(&mut self, role: Role, path: PathBuf) {
        self.files.remember(role, &path);
        match role {
            Role::Field => match &self.fixed {
                Some(f) => self
                    .loader
                    .field(path, self.field_kind, f.display.grid.clone()),
                None => {
                    self.notice(format!(
                        "{}: waiting for the fixed image (a field lives on its grid)",
                        display_name(&path)
                    ));
                    self.deferred_fields.push((path, self.field_kind));
                }
            },
            _ => self.loader.image(role, path, None, self.limits.clone()),
        }
    }

    /// Open one series of a DICOM folder (the user's pick among several).
    pub fn open_series(&mut self, role: Role, path: PathBuf, series: String) {
        self.files.remember(role, &path);
        self.loader
            .image(role, path, Some(series), self.limits.clone());
    }

    pub fn open_result_folder(&mut self, dir: PathBuf) {
        self.loader.result_folder(dir);
    }

    /// Block until every pending load has arrived and been applied, fields
    /// that waited for the fixed image included (tests, start-up scripts).
    pub fn wait_for_loads(&mut self, timeout: std::time::Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.loader.wait_one(left) {
                Some(job) => self.apply_job(job),
                None => break,
            }
            self.start_deferred_fields();
        }
        self.wait_for_products();
        self.open_pending_landmarks();
        self.apply_pending_view();
        self.refresh_landmarks();
    }

    /// Landmark files named at start-up, once no image is loading (a
    /// BraTS-Reg CSV needs its image's grid).
    fn open_pending_landmarks(&mut self) {
        if self.pending_landmarks.is_empty() || self.loader.pending() > 0 {
            return;
        }
        for (what, path) in std::mem::take(&mut self.pending_landmarks) {
            self.open_landmarks(what, &path);
        }
    }

    /// Block until the field products have been read back.
    pub fn wait_for_products(&mut self) {
        if let Some(rb) = self.products.jacobian_rb.take() {
            let r = rb.wait(&self.rs.device);
            self.accept_jacobian(r);
        }
        if let Some(rb) = self.products.warped_rb.take() {
            let r = rb.wait(&self.rs.device);
            self.accept_warped(r);
        }
    }

    /// Open the embedded demo image of `role` (fixed or moving).
    pub fn open_demo(&mut self, role: Role) {
        let (read, name, embedded) = match role {
            Role::Fixed => (
                crate::demo::fixed(),
                "fixed (demo)",
                crate::session_file::DEMO_FIXED,
            ),
            Role::Moving => (
                crate::demo::moving(),
                "moving (demo)",
                crate::session_file::DEMO_MOVING,
            ),
            _ => return,
        };
        let prepared = read.map_err(|e| e.to_string()).and_then(|(volume, info)| {
            LoadedImage::for_role(
                role,
                name.into(),
                None,
                volume,
                Some(&crate::volume::open::ImageInfo::Nifti(info)),
                &self.limits,
            )
        });
        match prepared {
            Ok(mut img) => {
                img.embedded = Some(embedded);
                if let Err(e) = self.accept_image(role, img) {
                    self.error(e);
                }
            }
            Err(e) => self.error(format!("the embedded demo image: {e}")),
        }
    }

    pub(super) fn poll_jobs(&mut self) {
        for job in self.loader.poll() {
            self.apply_job(job);
        }
        self.start_deferred_fields();
        self.open_pending_landmarks();
        self.apply_pending_view();
        if let Some(rb) = &self.products.jacobian_rb
            && let Some(r) = rb.try_take(&self.rs.device)
        {
            self.products.jacobian_rb = None;
            self.accept_jacobian(r);
        }
        if let Some(rb) = &self.products.warped_rb
            && let Some(r) = rb.try_take(&self.rs.device)
        {
            self.products.warped_rb = None;
            self.accept_warped(r);
        }
    }

    pub fn busy(&self) -> bool {
        self.loader.pending() > 0
            || !self.reg.exports.is_empty()
            || self.products.jacobian_rb.is_some()
            || self.products.warped_rb.is_some()
    }

    fn apply_job(&mut self, job: super::data::Job) {
        match job.result {
            Err(e) => self.error(format!("could not open {}: {e}", job.label)),
            Ok(Loaded::Image { role, image }) => {
                if let Err(e) = self.accept_image(role, image) {
                    self.error(e);
                }
            }
            Ok(Loaded::Field {
                path,
                kind,
                mapping,
                disp_vox,
                notice,
            }) => {
                // The fixed image may have changed while the field was read.
                let current = self.fixed.as_ref().map(|f| f.display.grid.clone());
                if current.as_ref() != Some(&disp_vox.grid) {
                    self.deferred_fields.push((path, Some(kind)));
                    return;
                }
                let field = LoadedField {
                    name: display_name(&path),
                    path: Some(path),
                    kind,
                    disp_vox,
                    mapping,
                    notice,
                };
                if let Err(e) = self.accept_field(field) {
                    self.error(e);
                }
            }
            Ok(Loaded::SeriesChoice { role, path, series }) => {
                self.series_choice = Some(SeriesChoice { role, path, series });
            }
            Ok(Loaded::ResultFolder {
                dir,
                files,
                missing,
            }) => {
                for m in missing {
                    self.notice(format!("{}: not found: {m}", display_name(&dir)));
                }
                let mut kinds = Vec::new();
                for (role, p) in files {
                    if role == Role::Field {
                        kinds.push(p);
                    } else {
                        self.open(role, p);
                    }
                }
                for p in kinds {
                    // The fixed image named in run.json is still loading: wait for it.
                    let kind = self.field_kind;
                    self.files.remember(Role::Field, &p);
                    self.deferred_fields.push((p, kind));
                }
                self.start_deferred_fields();
            }
        }
    }

    fn start_deferred_fields(&mut self) {
        if self.deferred_fields.is_empty() {
            return;
        }
        if let Some(f) = &self.fixed
            && !self.loader.pending_role(Role::Fixed)
        {
            let grid = f.display.grid.clone();
            for (p, k) in std::mem::take(&mut self.deferred_fields) {
                self.loader.field(p, k, grid.clone());
            }
        }
    }

    pub(super) fn scene<R>(&self, f: impl FnOnce(&mut GpuScene) -> R) -> Option<R> {
        let mut r = self.rs.renderer.write();
        r.callback_resources.get_mut::<GpuScene>().map(f)
    }

    /// Put an image's texture where its role is drawn from.
    fn set_texture(&self, role: Role, t: GpuVolume) {
        self.scene(|s| match role {
            Role::Fixed => s.set_image(Slot::Fixed, Some(t)),
            Role::Moving => s.set_image(Slot::Moving, Some(t)),
            Role::IcWeights => s.set_map(Map::IcWeights, Some(t)),
            Role::Labels => s.set_map(Map::Labels, Some(t)),
            Role::Field | Role::Mask => {}
        });
    }

    fn upload(&self, img: &LoadedImage) -> Result<GpuVolume, String> {
        GpuVolume::scalar(
            &self.rs.device,
            &self.rs.queue,
            &img.name,
            img.display.grid.dims,
            &img.display.data,
        )
    }

    /// Take a prepared image into a role: uploaded, then swapped in; the
    /// previous one is replaced only if the upload succeeds.
    pub fn accept_image(&mut self, role: Role, img: LoadedImage) -> Result<(), String> {
        if role == Role::Field {
            return Err("a field is read through Loader::field".into());
        }
        let texture = self.upload(&img)?;
        if matches!(role, Role::Fixed | Role::Moving) && self.reg.running() {
            // The run registers the images it started with: stop it.
            self.stop_run();
            self.notice(format!(
                "the {} changed: the running registration was stopped",
                role.name()
            ));
        }
        if let Some(n) = &img.notice {
            self.notice(n.clone());
        }
        let name = img.name.clone();
        self.set_texture(role, texture);
        match role {
            Role::Fixed => {
                let grid_changed = self
                    .fixed
                    .as_ref()
                    .is_none_or(|f| f.display.grid != img.display.grid);
                self.nav.reframe(&img.display.grid);
                self.fixed = Some(img);
                self.landmarks_for_new_fixed();
                if grid_changed && let Some(f) = self.field.take() {
                    // The field lives on the fixed grid: read it again onto the new one.
                    self.clear_field_products();
                    match f.path {
                        Some(p) => self.deferred_fields.push((p, Some(f.kind))),
                        None => self.notice(
                            "the field was closed: it belonged to the previous fixed image",
                        ),
                    }
                }
            }
            Role::Moving => {
                self.moving = Some(img);
                self.recompute_warped();
                // As when a field arrives after its images: B shows the
                // warped image, whichever of the two came last.
                if self.field.is_some() && self.products.warped_ready {
                    self.b = Slot::Warped;
                }
            }
            Role::IcWeights => {
                self.ic = Some(img);
                self.overlays.ic.on = true;
            }
            Role::Labels => {
                // Labels on the moving grid (and not the fixed one) are drawn through the field.
                let on = |other: &Option<LoadedImage>| {
                    other
                        .as_ref()
                        .is_some_and(|o| o.volume.grid.same_as(&img.volume.grid))
                };
                match (on(&self.fixed), on(&self.moving)) {
                    (false, true) => self.labels_in_moving = true,
                    (true, false) => self.labels_in_moving = false,
                    _ => {}
                }
                self.labels = Some(img);
                self.overlays.labels.on = true;
            }
            Role::Mask => {
                let inside = img.volume.data.iter().filter(|&&v| v > 0.5).count();
                self.notice(format!(
                    "fixed mask {}: registration compares only the {inside} voxels inside it",
                    img.name
                ));
                self.mask = Some(img);
            }
            Role::Field => {}
        }
        self.check_overlap();
        if self.fixed.is_some() && self.moving.is_some() && !self.pair_compared {
            // What a clinician looks at first: fixed and moving together.
            self.pair_compared = true;
            if self.composite.mode == Mode::Single {
                self.composite.mode = Mode::Checkerboard;
            }
        }
        self.status = format!("opened {} as the {}", name, role.name());
        Ok(())
    }

    fn check_overlap(&mut self) {
        self.no_overlap_mm = match (&self.fixed, &self.moving) {
            (Some(f), Some(m)) => crate::volume::world_gap_mm(&f.volume.grid, &m.volume.grid),
            _ => None,
        };
    }

    pub(super) fn clear_field_products(&mut self) {
        self.preview_grid = None;
        self.products = Products::default();
        self.field_serial += 1;
        self.scene(|s| {
            s.set_map(Map::Field, None);
            s.set_map(Map::Jacobian, None);
            s.set_image(Slot::Warped, None);
        });
    }

    /// Take a field (already on the fixed display grid): upload, then det J
    /// and the warped image on the GPU.
    pub fn accept_field(&mut self, field: LoadedField) -> Result<(), String> {
        let g = &field.disp_vox.grid;
        let texture = GpuVolume::field(
            &self.rs.device,
            &self.rs.queue,
            &field.name,
            g.dims,
            &field.disp_vox.data,
        )?;
        let jac = self
            .compute
            .jacobian(&self.rs.device, &self.rs.queue, &texture)?;
        let rb = Readback::start(&self.rs.device, &self.rs.queue, &jac)?;
        if let Some(n) = &field.notice {
            self.notice(format!("{}: {n}", field.name));
        }
        self.status = format!("opened {} as the field ({})", field.name, field.kind.name());
        self.preview_grid = None;
        self.reg.shown = None;
        self.products = Products::default();
        self.products.jacobian_rb = Some(rb);
        self.products.jacobian_ready = true;
        self.scene(|s| {
            s.set_map(Map::Field, Some(texture));
            s.set_map(Map::Jacobian, Some(jac));
        });
        self.field = Some(field);
        self.field_serial += 1;
        self.recompute_warped();
        if self.products.warped_ready {
            self.b = Slot::Warped;
        }
        Ok(())
    }

    /// Warp the moving image through the field on the GPU (when both exist).
    fn recompute_warped(&mut self) {
        let Some(grid) = self.field.as_ref().map(|f| f.disp_vox.grid.clone()) else {
            return;
        };
        match self.warp_moving(None, &grid) {
            Ok(Some(warped)) => match Readback::start(&self.rs.device, &self.rs.queue, &warped) {
                Ok(rb) => {
                    self.products.warped_rb = Some(rb);
                    self.products.warped = None;
                    self.products.warped_ready = true;
                    self.scene(|s| s.set_image(Slot::Warped, Some(warped)));
                }
                Err(e) => self.error(e),
            },
            Ok(None) => {}
            Err(e) => self.error(e),
        }
    }

    /// The moving image warped on the GPU through `field` (by default the
    /// scene's field texture) on `grid`, the field's grid; `None` without a
    /// moving image or a field on the GPU.
    pub(super) fn warp_moving(
        &self,
        field: Option<&GpuVolume>,
        grid: &Grid,
    ) -> Result<Option<GpuVolume>, String> {
        let Some(moving) = &self.moving else {
            return Ok(None);
        };
        let inv = affine::inverse(&moving.display.grid.affine)
            .ok_or("the moving image's world matrix is singular")?;
        let m = affine::mul(&inv, &grid.affine);
        let (device, queue) = (&self.rs.device, &self.rs.queue);
        self.scene(
            |s| match (s.image(Slot::Moving), field.or(s.map(Map::Field))) {
                (Some(mv), Some(f)) => self.compute.warp(device, queue, mv, f, &m).map(Some),
                _ => Ok(None),
            },
        )
        .unwrap_or(Ok(None))
    }

    fn accept_jacobian(&mut self, r: Result<Vec<f32>, String>) {
        let grid = self.field.as_ref().map(|f| f.disp_vox.grid.clone());
        match (r, grid) {
            (Ok(values), Some(grid)) => {
                let stats = JacobianStats::from_values(&values);
                if stats.folds > 0 {
                    self.notice(format!(
                        "det J ≤ 0 at {} voxels ({:.3} %): the field folds",
                        stats.folds,
                        stats.fold_percent()
                    ));
                }
                self.products.jacobian_stats = Some(stats);
                self.products.jacobian = Volume::from_data(grid, 1, values).ok();
            }
            (Err(e), _) => self.error(e),
            (Ok(_), None) => {}
        }
    }

    fn accept_warped(&mut self, r: Result<Vec<f32>, String>) {
        let grid = self.field.as_ref().map(|f| f.disp_vox.grid.clone());
        match (r, grid) {
            (Ok(values), Some(grid)) => {
                self.products.warped = Volume::from_data(grid, 1, values).ok()
            }
            (Err(e), _) => self.error(e),
            (Ok(_), None) => {}
        }
    }

    /// Show another channel of a multi-channel image.
    pub fn select_channel(&mut self, role: Role, c: usize) {
        let limits = self.limits.clone();
        let labels = matches!(role, Role::Labels | Role::Mask);
        let Some(img) = slot_mut(self, role) else {
            return;
        };
        let previous = img.channel;
        if let Err(e) = img.select_channel(c, &limits, labels) {
            self.error(e);
            return;
        }
        let result = match slot_ref(self, role) {
            Some(img) => self.upload(img),
            None => return,
        };
        match result {
            Ok(t) => {
                self.set_texture(role, t);
                if role == Role::Moving {
                    self.recompute_warped();
                }
            }
            Err(e) => {
                if let Some(img) = slot_mut(self, role) {
                    let _ = img.select_channel(previous, &limits, labels);
                }
                self.error(e);
            }
        }
    }

    /// The grid of the field in the scene: a loaded field's, or the live
    /// preview's while a run draws it.
    pub fn field_grid(&self) -> Option<&Grid> {
        self.field
            .as_ref()
            .map(|f| &f.disp_vox.grid)
            .or(self.preview_grid.as_ref())
    }

    /// The image in a slot, its grid and style (warped: the field's grid, the moving style).
    pub fn slot_image(&self, slot: Slot) -> Option<(&Grid, ImageStyle)> {
        match slot {
            Slot::Fixed => self.fixed.as_ref().map(|i| (&i.display.grid, i.style)),
            Slot::Moving => self.moving.as_ref().map(|i| (&i.display.grid, i.style)),
            Slot::Warped => match (self.field_grid(), &self.moving) {
                (Some(g), Some(m)) if self.products.warped_ready => Some((g, m.style)),
                _ => None,
            },
        }
    }

    /// Which textures and grids the views draw this frame.
    pub fn present(&self) -> Present<'_> {
        Present {
            a: self.slot_image(self.a),
            b: self.slot_image(self.b),
            field: self.field_grid(),
            jacobian: self.products.jacobian_ready,
            ic: self.ic.as_ref().map(|i| (&i.display.grid, i.style.window)),
            labels: self
                .labels
                .as_ref()
                .map(|l| (&l.display.grid, self.labels_in_moving)),
            flicker_shows_b: self.flicker_shows_b,
        }
    }

    /// Mode, windows, overlays and cursor as JSON (screenshots record it).
    pub fn describe(&self) -> serde_json::Value {
        let img = |i: &Option<LoadedImage>| {
            i.as_ref().map(|i| {
                serde_json::json!({
                    "name": i.name,
                    "path": i.path.as_ref().map(|p| p.display().to_string()),
                    "channel": i.channel,
                    "window": [i.style.window.0, i.style.window.1],
                    "colormap": i.style.colormap.name(),
                })
            })
        };
        serde_json::json!({
            "software": format!("warpscope {}", env!("CARGO_PKG_VERSION")),
            "a": self.a.name(),
            "b": if self.composite.mode.uses_b() { Some(self.b.name()) } else { None },
            "composite": self.composite,
            "overlays": self.overlays,
            "navigation": self.nav,
            "fixed": img(&self.fixed),
            "moving": img(&self.moving),
            "field": self.field.as_ref().map(|f| serde_json::json!({
                "name": f.name,
                "path": f.path.as_ref().map(|p| p.display().to_string()),
                "kind": f.kind.name(),
            })),
            "ic_weights": img(&self.ic),
            "labels": img(&self.labels),
        })
    }
}

/// Messages from other libraries (a shader compiler's report, say) may
/// draw boxes with characters the UI font lacks: they become ASCII.
fn printable(text: String) -> String {
    if !text.chars().any(|c| ('\u{2500}'..='\u{257F}').contains(&c)) {
        return text;
    }
    const VERTICAL: &str = "│┃┆┇┊┋╎╏║╵╷╹╻╽╿";
    const HORIZONTAL: &str = "─━┄┅┈┉╌╍═╴╶╸╺╼╾";
    text.chars()
        .map(|c| match c {
            '\u{2500}'..='\u{257F}' if VERTICAL.contains(c) => '|',
            '\u{2500}'..='\u{257F}' if HORIZONTAL.contains(c) => '-',
            '\u{2500}'..='\u{257F}' => '+',
            other => other,
        })
        .collect()
}

fn slot_ref(app: &ViewerApp, role: Role) -> Option<&LoadedImage> {
    match role {
        Role::Fixed => app.fixed.as_ref(),
        Role::Moving => app.moving.as_ref(),
        Role::IcWeights => app.ic.as_ref(),
        Role::Labels => app.labels.as_ref(),
        Role::Mask => app.mask.as_ref(),
        Role::Field => None,
    }
}

fn slot_mut(app: &mut ViewerApp, role: Role) -> Option<&mut LoadedImage> {
    match role {
        Role::Fixed => app.fixed.as_mut(),
        Role::Moving => app.moving.as_mut(),
        Role::IcWeights => app.ic.as_mut(),
        Role::Labels => app.labels.as_mut(),
        Role::Mask => app.mask.as_mut(),
        Role::Field => None,
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn box_drawing_becomes_ascii() {
        let naga =
            "   ┌─ kernel:56:11\n   │\n56 │ let v = u64(32);\n   │         ^^^^^^^\n   ╰── here";
        let p = printable(naga.to_string());
        assert_eq!(
            p,
            "   +- kernel:56:11\n   |\n56 | let v = u64(32);\n   |         ^^^^^^^\n   +-- here"
        );
        assert_eq!(printable("det J ≥ 0 · 1–7".into()), "det J ≥ 0 · 1–7");
    }
}
