//! The viewer's state and its frame loop: images, field and maps as loaded,
//! kept in step with the GPU scene; field products (warped image, det J)
//! computed on the GPU and read back once for read-outs and statistics.
//!
//! Layout and mouse follow ITK-SNAP / 3D Slicer: axial, coronal and
//! sagittal views with a linked crosshair (one can be enlarged); wheel =
//! slice, ctrl-wheel or right drag = zoom, middle drag = pan, left drag =
//! window/level, left click = move the crosshair.

use std::path::{Path, PathBuf};

use eframe::egui;
use eframe::egui_wgpu;

use super::data::{Limits, Loaded, LoadedField, LoadedImage, Loader, Role, display_name};
use super::field_state::FieldState;
use super::files::Files;
use super::images::Images;
use super::landmarks::{LandmarkFile, LandmarkUi};
use super::notices::Notices;
use super::screenshot::Screenshots;
use super::view_state::ViewState;
use crate::metrics::FieldKind;
use crate::register::Pipeline;
use crate::render::{FieldCompute, GpuScene, GpuVolume, ImageStyle, Map, Present, Readback, Slot};
use crate::volume::affine;
use crate::volume::{Grid, Volume};

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

pub struct ViewerApp {
    pub(super) rs: egui_wgpu::RenderState,
    pub(super) compute: FieldCompute,
    pub(super) limits: Limits,
    /// The images in their roles.
    pub images: Images,
    /// The field shown and its products.
    pub field: FieldState,
    /// How the views show them: navigation, slots, mode, overlays.
    pub view: ViewState,
    /// The status line, notices and errors.
    pub notes: Notices,
    /// The window title last sent.
    pub(super) title: String,
    /// A DICOM folder of several series waiting for the user's pick.
    pub series_choice: Option<SeriesChoice>,
    pub(super) loader: Loader,
    pub(super) files: Files,
    pub(super) screenshots: Screenshots,
    /// Landmarks: editor, mode, TRE table, autosave.
    pub lm: LandmarkUi,
    /// Landmark files named at start-up, opened once the images have loaded.
    pending_landmarks: Vec<(LandmarkFile, PathBuf)>,
    /// Further sequences of the fixed or moving image, read one at a time
    /// (in order) once the image itself has loaded.
    pending_sequences: Vec<(Role, PathBuf)>,
    /// Registration: pipeline, the run, its previews, history, exports.
    pub reg: super::registration::Registration,
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
        let mut app = Self {
            rs,
            compute,
            limits,
            images: Images::new(startup.labels_in_moving),
            field: FieldState::new(startup.field_kind),
            view: ViewState::default(),
            notes: Notices::default(),
            title: String::new(),
            series_choice: None,
            loader: Loader::default(),
            files: Files::load(startup.config_dir.clone()),
            screenshots: Screenshots::default(),
            lm: LandmarkUi::default(),
            pending_landmarks: startup.landmarks,
            pending_sequences: Vec::new(),
            reg: Default::default(),
            session_path: None,
            pending_view: None,
            bench: startup.bench.map(super::bench::BenchState::new),
            bench_done: false,
            last_ui_ms: 0.0,
            window_size: [0.0; 2],
        };
        let mut seen = Vec::new();
        for (role, source) in startup.images {
            match source {
                // A role named again (`--fixed t1 --fixed flair`): a sequence.
                Source::Path(p) if seen.contains(&role) => app.add_sequence(role, p),
                Source::Path(p) => {
                    seen.push(role);
                    app.open(role, p)
                }
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
        self.notes.error(text);
    }

    /// Drop the notices (not the errors): they spoke of the result that
    /// was shown, and another one takes its place.
    pub fn clear_notices(&mut self) {
        self.notes.clear();
    }

    pub fn notice(&mut self, text: impl Into<String>) {
        self.notes.notice(text);
    }

    /// The wgpu device, queue and renderer the viewer draws with (and the
    /// engine shares).
    pub fn render_state(&self) -> &egui_wgpu::RenderState {
        &self.rs
    }

    /// A plane's image rectangle in the last frame (`None` when not shown).
    pub fn view_rect(&self, plane: crate::render::Plane) -> Option<egui::Rect> {
        self.view.rects[plane.index()]
    }

    /// The view under the mouse in the last frame.
    pub fn hovered_view(&self) -> Option<crate::render::Plane> {
        self.view.hovered
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
        self.notes.errors()
    }

    /// Open a file in a role (read on a worker thread; applied when it arrives).
    pub fn open(&mut self, role: Role, path: PathBuf) {
        self.files.remember(role, &path);
        match role {
            Role::Field => match &self.images.fixed {
                Some(f) => self
                    .loader
                    .field(path, self.field.kind, f.display.grid.clone()),
                None => {
                    self.notice(format!(
                        "{}: waiting for the fixed image (a field lives on its grid)",
                        display_name(&path)
                    ));
                    self.field.deferred.push((path, self.field.kind));
                }
            },
            _ => self.loader.image(role, path, None, self.limits.clone()),
        }
    }

    /// Add a further sequence (a file of its own, on the same grid) to the
    /// fixed or moving image: stacked as a channel, registered with the
    /// others. Read once the image itself has loaded; several in order.
    pub fn add_sequence(&mut self, role: Role, path: PathBuf) {
        if !matches!(role, Role::Fixed | Role::Moving) {
            self.error(format!(
                "{}: only the fixed and moving images take further sequences",
                display_name(&path)
            ));
            return;
        }
        self.files.remember(role, &path);
        self.pending_sequences.push((role, path));
        self.start_pending_sequences();
    }

    /// The next waiting sequence of each role, once its image is there and
    /// nothing else for the role is loading.
    fn start_pending_sequences(&mut self) {
        for role in [Role::Fixed, Role::Moving] {
            if self.loader.pending_role(role) {
                continue;
            }
            let Some(i) = self.pending_sequences.iter().position(|(r, _)| *r == role) else {
                continue;
            };
            if self.images.get(role).is_none() {
                continue;
            }
            let (_, path) = self.pending_sequences.remove(i);
            self.loader.sequence(role, path, self.limits.clone());
        }
    }

    /// Stack a sequence that arrived onto its image (a run going with the
    /// image stops: it registers what it started with).
    fn accept_sequence(&mut self, role: Role, seq: LoadedImage) -> Result<(), String> {
        let name = seq.name.clone();
        let img = self
            .images
            .get_mut(role)
            .ok_or_else(|| format!("{name}: the {} was closed", role.name()))?;
        img.add_sequence(seq)?;
        let channels = img.volume.channels;
        self.stop_run_for_changed(role);
        self.notes.status = format!(
            "{name} added to the {}: {channels} sequences, registered together",
            role.name()
        );
        Ok(())
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
            self.start_pending_sequences();
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
        if let Some(rb) = self.field.products.jacobian_rb.take() {
            let r = rb.wait(&self.rs.device);
            self.accept_jacobian(r);
        }
        if let Some(rb) = self.field.products.warped_rb.take() {
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
        self.start_pending_sequences();
        self.open_pending_landmarks();
        self.apply_pending_view();
        if let Some(rb) = &self.field.products.jacobian_rb
            && let Some(r) = rb.try_take(&self.rs.device)
        {
            self.field.products.jacobian_rb = None;
            self.accept_jacobian(r);
        }
        if let Some(rb) = &self.field.products.warped_rb
            && let Some(r) = rb.try_take(&self.rs.device)
        {
            self.field.products.warped_rb = None;
            self.accept_warped(r);
        }
    }

    pub fn busy(&self) -> bool {
        self.loader.pending() > 0
            || !self.reg.exports.is_empty()
            || self.field.products.jacobian_rb.is_some()
            || self.field.products.warped_rb.is_some()
    }

    fn apply_job(&mut self, job: super::data::Job) {
        match job.result {
            Err(e) => self.error(format!("could not open {}: {e}", job.label)),
            Ok(Loaded::Image {
                role,
                image,
                sequence,
            }) => {
                let accepted = if sequence {
                    self.accept_sequence(role, image)
                } else {
                    self.accept_image(role, image)
                };
                if let Err(e) = accepted {
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
                let current = self.images.fixed.as_ref().map(|f| f.display.grid.clone());
                if current.as_ref() != Some(&disp_vox.grid) {
                    self.field.deferred.push((path, Some(kind)));
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
                pipeline,
            }) => {
                for m in missing {
                    self.notice(format!("{}: not found: {m}", display_name(&dir)));
                }
                self.take_run_pipeline(&dir, pipeline);
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
                    let kind = self.field.kind;
                    self.files.remember(Role::Field, &p);
                    self.field.deferred.push((p, kind));
                }
                self.start_deferred_fields();
            }
        }
    }

    /// The panel takes the pipeline a result folder's run used, so that
    /// running again repeats it (not while a registration runs).
    fn take_run_pipeline(&mut self, dir: &Path, pipeline: Option<Result<Pipeline, String>>) {
        let name = display_name(dir);
        match pipeline {
            None => {}
            Some(Err(e)) => self.notice(format!("{name}/run.json: {e}; the panel keeps its own")),
            Some(Ok(_)) if self.reg.running() => self.notice(format!(
                "{name}/run.json: its pipeline was not taken: a registration is running"
            )),
            Some(Ok(p)) => {
                let preset = p.preset.clone();
                self.set_pipeline(p);
                self.notice(format!(
                    "{name}: the panel holds the pipeline this run used (preset {preset})"
                ));
            }
        }
    }

    fn start_deferred_fields(&mut self) {
        if self.field.deferred.is_empty() {
            return;
        }
        if let Some(f) = &self.images.fixed
            && !self.loader.pending_role(Role::Fixed)
        {
            let grid = f.display.grid.clone();
            for (p, k) in std::mem::take(&mut self.field.deferred) {
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
            Role::Field | Role::Mask | Role::MovingLabels => {}
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

    /// A run registers the images it started with: when the fixed or
    /// moving image changes, a running registration stops, and says why.
    fn stop_run_for_changed(&mut self, role: Role) {
        if matches!(role, Role::Fixed | Role::Moving) && self.reg.running() {
            self.stop_run();
            self.notice(format!(
                "the {} changed: the running registration was stopped",
                role.name()
            ));
        }
    }

    /// Take a prepared image into a role: uploaded, then swapped in; the
    /// previous one is replaced only if the upload succeeds.
    pub fn accept_image(&mut self, role: Role, img: LoadedImage) -> Result<(), String> {
        if role == Role::Field {
            return Err("a field is read through Loader::field".into());
        }
        let texture = self.upload(&img)?;
        self.stop_run_for_changed(role);
        if let Some(n) = &img.notice {
            self.notice(n.clone());
        }
        let name = img.name.clone();
        self.set_texture(role, texture);
        if role == Role::Fixed {
            self.view.nav.reframe(&img.display.grid);
        }
        let placed = self.images.place(role, img);
        if let Some(n) = placed.notice {
            self.notice(n);
        }
        match role {
            Role::Fixed => {
                self.landmarks_for_new_fixed();
                if placed.fixed_grid_changed
                    && let Some(f) = self.field.loaded.take()
                {
                    // The field lives on the fixed grid: read it again onto the new one.
                    self.clear_field_products();
                    match f.path {
                        Some(p) => self.field.deferred.push((p, Some(f.kind))),
                        None => self.notice(
                            "the field was closed: it belonged to the previous fixed image",
                        ),
                    }
                }
            }
            Role::Moving => {
                self.recompute_warped();
                // As when a field arrives after its images: B shows the
                // warped image, whichever of the two came last.
                if self.field.loaded.is_some() && self.field.products.warped_ready {
                    self.view.b = Slot::Warped;
                }
            }
            Role::IcWeights => self.view.overlays.ic.on = true,
            Role::Labels => self.view.overlays.labels.on = true,
            Role::Mask | Role::Field | Role::MovingLabels => {}
        }
        if self.images.pair() {
            self.view.pair_loaded();
        }
        self.notes.status = format!("opened {} as the {}", name, role.name());
        Ok(())
    }

    pub(super) fn clear_field_products(&mut self) {
        self.field.clear_products();
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
        self.notes.status = format!("opened {} as the field ({})", field.name, field.kind.name());
        self.reg.shown = None;
        self.scene(|s| {
            s.set_map(Map::Field, Some(texture));
            s.set_map(Map::Jacobian, Some(jac));
        });
        self.field.take(field, rb);
        self.recompute_warped();
        if self.field.products.warped_ready {
            self.view.b = Slot::Warped;
        }
        Ok(())
    }

    /// Warp the moving image through the field on the GPU (when both exist).
    fn recompute_warped(&mut self) {
        let Some(grid) = self.field.loaded.as_ref().map(|f| f.disp_vox.grid.clone()) else {
            return;
        };
        match self.warp_moving(None, &grid) {
            Ok(Some(warped)) => match Readback::start(&self.rs.device, &self.rs.queue, &warped) {
                Ok(rb) => {
                    self.field.products.warped_rb = Some(rb);
                    self.field.products.warped = None;
                    self.field.products.warped_ready = true;
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
        let Some(moving) = &self.images.moving else {
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
        match r.map(|values| self.field.accept_jacobian(values)) {
            Ok(Some(n)) => self.notice(n),
            Ok(None) => {}
            Err(e) => self.error(e),
        }
    }

    fn accept_warped(&mut self, r: Result<Vec<f32>, String>) {
        match r {
            Ok(values) => self.field.accept_warped(values),
            Err(e) => self.error(e),
        }
    }

    /// Show another channel of a multi-channel image.
    pub fn select_channel(&mut self, role: Role, c: usize) {
        let limits = self.limits.clone();
        let labels = matches!(role, Role::Labels | Role::Mask | Role::MovingLabels);
        let Some(img) = self.images.get_mut(role) else {
            return;
        };
        let previous = img.channel;
        if let Err(e) = img.select_channel(c, &limits, labels) {
            self.error(e);
            return;
        }
        let result = match self.images.get(role) {
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
                if let Some(img) = self.images.get_mut(role) {
                    let _ = img.select_channel(previous, &limits, labels);
                }
                self.error(e);
            }
        }
    }

    /// The grid of the field in the scene: a loaded field's, or the live
    /// preview's while a run draws it.
    pub fn field_grid(&self) -> Option<&Grid> {
        self.field.grid()
    }

    /// The image in a slot, its grid and style (warped: the field's grid, the moving style).
    pub fn slot_image(&self, slot: Slot) -> Option<(&Grid, ImageStyle)> {
        match slot {
            Slot::Fixed => self
                .images
                .fixed
                .as_ref()
                .map(|i| (&i.display.grid, i.style)),
            Slot::Moving => self
                .images
                .moving
                .as_ref()
                .map(|i| (&i.display.grid, i.style)),
            Slot::Warped => match (self.field_grid(), &self.images.moving) {
                (Some(g), Some(m)) if self.field.products.warped_ready => Some((g, m.style)),
                _ => None,
            },
        }
    }

    /// Which textures and grids the views draw this frame.
    pub fn present(&self) -> Present<'_> {
        Present {
            a: self.slot_image(self.view.a),
            b: self.slot_image(self.view.b),
            field: self.field_grid(),
            jacobian: self.field.products.jacobian_ready,
            ic: self
                .images
                .ic
                .as_ref()
                .map(|i| (&i.display.grid, i.style.window)),
            labels: self
                .images
                .labels
                .as_ref()
                .map(|l| (&l.display.grid, self.images.labels_in_moving)),
            flicker_shows_b: self.view.flicker_shows_b,
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
            "a": self.view.a.name(),
            "b": if self.view.composite.mode.uses_b() { Some(self.view.b.name()) } else { None },
            "composite": self.view.composite,
            "overlays": self.view.overlays,
            "navigation": self.view.nav,
            "fixed": img(&self.images.fixed),
            "moving": img(&self.images.moving),
            "field": self.field.loaded.as_ref().map(|f| serde_json::json!({
                "name": f.name,
                "path": f.path.as_ref().map(|p| p.display().to_string()),
                "kind": f.kind.name(),
            })),
            "ic_weights": img(&self.images.ic),
            "labels": img(&self.images.labels),
        })
    }
}
