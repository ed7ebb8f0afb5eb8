//! Registration in the viewer: the pipeline being edited, the run on its
//! worker thread (on the viewer's own wgpu device, or the CPU), live
//! previews of its field, parameter changes while it runs, the run history
//! with kept results, comparisons and exports. The panel that draws all
//! this is `registration_ui`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use burn::tensor::Device;

use super::data::{LoadedField, LoadedImage, Role};
use super::live::{DeviceChoice, Finished, Job, RunProgress, Worker};
use super::viewer::ViewerApp;
use crate::gpu::TensorBuffer;
use crate::metrics::{FieldKind, Mapping};
use crate::register::change::is_live_key;
use crate::register::{Change, Control, Event, Inputs, Pipeline, Snapshot, SnapshotField, Status};
use crate::render::{GpuVolume, LevelPlacement, LevelSource, Map, Slot};
use crate::results::{self, Products, RunSources};
use crate::session_file::{self, RunRecord};
use crate::volume::Volume;

/// How often a running registration is asked for a preview: previews come
/// at 10 Hz, or at most one per frame where the viewer draws fewer frames.
pub const PREVIEW_PERIOD: Duration = Duration::from_millis(100);

/// How many finished runs keep their fields in memory (for showing,
/// comparing and exporting); older runs keep their figures only.
pub const KEPT_RESULTS: usize = 8;

/// A finished run's result, kept for showing, comparing and exporting.
pub struct RunData {
    pub outcome: crate::register::Outcome,
    pub products: Products,
    /// Displacement in display-grid voxels, and its mapping.
    pub display_field: Volume,
    pub display_mapping: Mapping,
    pub sources: RunSources,
    pub record: RunRecord,
}

/// The run in progress.
pub struct ActiveRun {
    pub id: u32,
    worker: Worker,
    pub progress: RunProgress,
    /// The pipeline as it started (live changes are in `progress.markers`).
    pub started_with: Pipeline,
    /// The live pipeline (changes applied as the engine confirms them).
    pub pipeline: Pipeline,
    pub paused: bool,
    pub stopping: bool,
    pub device_name: String,
    started: String,
    clock: Instant,
    /// Paused time so far, and since when the run is paused: left out of
    /// the run's seconds.
    paused_for: Duration,
    paused_since: Option<Instant>,
    /// When a preview was last asked for.
    snapshot_asked: Option<Instant>,
    /// Previews drawn so far (of which from the engine's GPU buffers, with
    /// no copy through the CPU), and the iteration of the latest.
    pub previews: usize,
    pub device_previews: usize,
    pub preview_at: Option<(String, usize, usize)>,
    /// Changes sent and not yet confirmed by a progress report.
    pub pending: Vec<Change>,
}

impl ActiveRun {
    /// Seconds since the run started, paused time left out.
    pub fn seconds(&self) -> f64 {
        let paused = self.paused_for + self.paused_since.map_or(Duration::ZERO, |t| t.elapsed());
        self.clock.elapsed().saturating_sub(paused).as_secs_f64()
    }

    /// Send a parameter change to the engine; pending until it reports it applied.
    fn send_change(&mut self, change: Change) {
        self.worker.send(Control::Set(change.clone()));
        self.pending.push(change);
    }
}

/// A result folder being written on a helper thread.
pub struct Export {
    pub run: u32,
    pub dir: PathBuf,
    /// (files done, files in all, file being written)
    pub progress: (usize, usize, String),
    rx: mpsc::Receiver<ExportMsg>,
    handle: Option<std::thread::JoinHandle<()>>,
}

enum ExportMsg {
    Progress(usize, usize, String),
    Done(Result<Vec<PathBuf>, String>),
}

/// Everything registration in the viewer keeps.
pub struct Registration {
    /// The pipeline the next run uses (edited in the panel).
    pub pipeline: Pipeline,
    pub device: DeviceChoice,
    /// Parameter fields being typed in, by key.
    pub texts: HashMap<String, String>,
    /// The last refusal of a parameter, by key.
    pub refused: HashMap<String, String>,
    /// Text of the "iterations left" field.
    pub iterations_left: String,
    /// Ask the engine for snapshots while it runs.
    pub live_preview: bool,
    pub run: Option<ActiveRun>,
    pub history: Vec<RunRecord>,
    /// Every finished run's progress (its loss curve and levels), by id:
    /// small, so kept for all runs of the session.
    pub curves: BTreeMap<u32, RunProgress>,
    /// A finished run whose total loss is drawn beside the shown curve.
    pub overlay: Option<u32>,
    pub kept: HashMap<u32, Arc<RunData>>,
    /// Runs picked for comparison (at most two), and whether the views show them side by side.
    pub compare_pick: Vec<u32>,
    pub side_by_side: bool,
    /// The run whose result the views show.
    pub shown: Option<u32>,
    pub exports: Vec<Export>,
    /// Typed folder / file for exports and the history CSV.
    pub export_path: String,
    pub plot_log: bool,
    next_id: u32,
    /// The engine's device on the viewer's GPU, once registered.
    shared_gpu: Option<Result<Device, String>>,
    /// The "software rasteriser: CPU" notice was given.
    software_notice: bool,
}

impl Default for Registration {
    fn default() -> Self {
        Self {
            pipeline: Pipeline::preset("fast").expect("the built-in fast preset"),
            device: DeviceChoice::Auto,
            texts: HashMap::new(),
            refused: HashMap::new(),
            iterations_left: String::new(),
            live_preview: true,
            run: None,
            history: Vec::new(),
            curves: BTreeMap::new(),
            overlay: None,
            kept: HashMap::new(),
            compare_pick: Vec::new(),
            side_by_side: false,
            shown: None,
            exports: Vec::new(),
            export_path: String::new(),
            plot_log: true,
            next_id: 1,
            shared_gpu: None,
            software_notice: false,
        }
    }
}

impl Registration {
    pub fn running(&self) -> bool {
        self.run.is_some()
    }

    /// Forget typed text (after the pipeline changed under the fields).
    pub fn reset_texts(&mut self) {
        self.texts.clear();
        self.refused.clear();
    }

    /// The next run id (history ids keep increasing across a session file).
    fn take_id(&mut self) -> u32 {
        let max = self.history.iter().map(|r| r.id).max().unwrap_or(0);
        self.next_id = self.next_id.max(max + 1);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Keep `data`, dropping the fields of the oldest kept runs beyond
    /// [`KEPT_RESULTS`] (their figures stay in the history).
    fn keep(&mut self, id: u32, data: RunData) {
        self.kept.insert(id, Arc::new(data));
        let mut ids: Vec<u32> = self.kept.keys().copied().collect();
        ids.sort_unstable();
        let excess = ids.len().saturating_sub(KEPT_RESULTS);
        for old in &ids[..excess] {
            if !self.compare_pick.contains(old) && self.shown != Some(*old) {
                self.kept.remove(old);
            }
        }
    }
}

/// A parameter change: refused with a message, applied to the next run, or
/// also sent to the running engine.
#[derive(Debug, PartialEq)]
pub enum Edit {
    Refused(String),
    NextRun,
    Live,
}

impl ViewerApp {
    /// The engine's device for the chosen device kind; a notice says why the
    /// CPU is used when the choice was automatic.
    fn engine_device(&mut self) -> Result<(Device, bool, String), String> {
        let info = self.rs.adapter.get_info();
        let software = info.device_type == wgpu::DeviceType::Cpu;
        let use_gpu = match self.reg.device {
            DeviceChoice::Cpu => false,
            DeviceChoice::Gpu => true,
            DeviceChoice::Auto => {
                if software && !self.reg.software_notice {
                    self.reg.software_notice = true;
                    self.notice(format!(
                        "the viewer's GPU adapter ({}) is a software rasteriser: registering on \
                         the CPU backend, which is faster there (choose GPU to use it anyway)",
                        info.name
                    ));
                }
                !software
            }
        };
        // The engine's own kernels need no optional feature; burn's
        // composed path (fused off, or a pipeline the kernels do not
        // compute) uses every shader type the adapter offers, so the device
        // must have been created with them (the app's is, unless the
        // adapter refused them).
        let composed = !self.reg.pipeline.fused
            || crate::gpu::engine::run::supported(&self.reg.pipeline).is_err();
        let wanted = self.rs.adapter.features()
            & (wgpu::Features::SHADER_INT64
                | wgpu::Features::SHADER_F64
                | wgpu::Features::SHADER_F16
                | wgpu::Features::SHADER_FLOAT32_ATOMIC);
        let missing = if composed {
            wanted - self.rs.device.features()
        } else {
            wgpu::Features::empty()
        };
        let cpu = || {
            let d = Device::flex();
            let name = crate::register::device::describe(&d);
            Ok((d, false, name))
        };
        if use_gpu && !missing.is_empty() {
            let why =
                format!("the viewer's GPU device lacks features the engine needs ({missing:?})");
            if self.reg.device == DeviceChoice::Gpu {
                return Err(why);
            }
            self.notice(format!("{why}: registering on the CPU backend"));
            return cpu();
        }
        if !use_gpu {
            return cpu();
        }
        let rs = &self.rs;
        let shared = self.reg.shared_gpu.get_or_insert_with(|| {
            crate::gpu::engine_on(&rs.instance, &rs.adapter, &rs.device, &rs.queue)
                .map_err(|e| e.to_string())
        });
        match shared {
            Ok(d) => Ok((
                d.clone(),
                true,
                format!("the viewer's GPU ({}, {:?})", info.name, info.backend),
            )),
            Err(e) => Err(e.clone()),
        }
    }

    /// The burn device the engine uses on the viewer's GPU (registered on
    /// first use); tests compare its buffers with the renderer's device.
    pub fn shared_engine_device(&mut self) -> Result<Device, String> {
        let previous = self.reg.device;
        self.reg.device = DeviceChoice::Gpu;
        let r = self.engine_device().map(|(d, _, _)| d);
        self.reg.device = previous;
        r
    }

    /// Start a run of the edited pipeline on the loaded images.
    pub fn start_run(&mut self) {
        self.start_run_with(Vec::new());
    }

    /// Start a run that applies `schedule`'s changes at their iterations,
    /// as the engine applies live ones.
    fn start_run_with(&mut self, schedule: Vec<(usize, Change)>) {
        if self.reg.running() {
            self.error("a registration is already running: stop it first");
            return;
        }
        let (Some(fixed), Some(moving)) = (&self.images.fixed, &self.images.moving) else {
            self.error("open a fixed and a moving image before registering");
            return;
        };
        if let Err(e) = self.reg.pipeline.validate() {
            self.error(format!("the pipeline is refused: {e}"));
            return;
        }
        // The Dice loss compares the label maps of both images.
        let labels = if self.reg.pipeline.deformable.dice > 0.0 {
            match (&self.images.labels, &self.images.moving_labels) {
                (Some(f), Some(m)) if !self.images.labels_in_moving => {
                    Some(crate::register::Labels {
                        fixed: f.volume.clone(),
                        moving: m.volume.clone(),
                    })
                }
                _ => {
                    self.error(
                        "deformable.dice compares label maps: open the fixed image's as \"labels\" \
                         and the moving image's as \"moving labels\"",
                    );
                    return;
                }
            }
        } else {
            None
        };
        let inputs = Inputs {
            fixed: fixed.volume.clone(),
            moving: moving.volume.clone(),
            fixed_mask: self.images.mask.as_ref().map(|m| m.volume.clone()),
            labels,
        };
        let display = fixed.display.grid.clone();
        let sources = RunSources {
            fixed: fixed
                .source_names(None)
                .unwrap_or_else(|| vec![fixed.name.clone()]),
            moving: moving
                .source_names(None)
                .unwrap_or_else(|| vec![moving.name.clone()]),
            fixed_mask: self
                .images
                .mask
                .as_ref()
                .map(|m| m.source_name(None).unwrap_or_else(|| m.name.clone())),
            overrides: Vec::new(),
        };
        let (device, shared, device_name) = match self.engine_device() {
            Ok(d) => d,
            Err(e) => {
                self.error(e);
                return;
            }
        };
        let (f, m) = self.lm.editor.confirmed_sets();
        let landmarks = (!f.points.is_empty() && !m.points.is_empty()).then_some((f, m));
        let pipeline = self.reg.pipeline.clone();
        let job = Job {
            inputs,
            pipeline: pipeline.clone(),
            device,
            device_snapshots: shared,
            landmarks,
            display,
            sources,
            schedule,
        };
        let worker = match Worker::spawn(job) {
            Ok(w) => w,
            Err(e) => {
                self.error(e);
                return;
            }
        };
        let id = self.reg.take_id();
        // The run's result will be the field: the previous one leaves the views.
        self.field.loaded = None;
        self.clear_field_products();
        self.reg.shown = None;
        self.reg.side_by_side = false;
        self.clear_notices();
        self.notice(format!(
            "run {id} started: preset {} on {device_name}",
            pipeline.preset
        ));
        self.reg.run = Some(ActiveRun {
            id,
            worker,
            progress: RunProgress::new(&pipeline),
            started_with: pipeline.clone(),
            pipeline,
            paused: false,
            stopping: false,
            device_name,
            started: super::utc_stamp(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            ),
            clock: Instant::now(),
            paused_for: Duration::ZERO,
            paused_since: None,
            snapshot_asked: None,
            previews: 0,
            device_previews: 0,
            preview_at: None,
            pending: Vec::new(),
        });
    }

    pub fn pause_run(&mut self) {
        if let Some(r) = &mut self.reg.run {
            r.worker.send(Control::Pause);
            r.paused = true;
            r.paused_since.get_or_insert_with(Instant::now);
        }
    }

    pub fn resume_run(&mut self) {
        if let Some(r) = &mut self.reg.run {
            r.worker.send(Control::Resume);
            r.paused = false;
            if let Some(t) = r.paused_since.take() {
                r.paused_for += t.elapsed();
            }
        }
    }

    pub fn stop_run(&mut self) {
        if let Some(r) = &mut self.reg.run {
            r.worker.send(Control::Stop);
            r.stopping = true;
        }
    }

    /// Change a parameter (`key=value`, as `--set` takes it). Refused with a
    /// message when it does not parse or validate; while a run is going,
    /// weights, learning rates and `iterations_left` also go to the engine
    /// (applied at its next iteration); other keys wait for the next run.
    pub fn edit_parameter(&mut self, key: &str, value: &str) -> Edit {
        let value = value.trim();
        if key == "iterations_left" && self.reg.run.is_none() {
            return self.refuse(
                key,
                "no run is going: iterations left applies to a running level".into(),
            );
        }
        let live = key == "iterations_left" || is_live_key(key);
        if live && self.reg.run.is_some() {
            // Parsed and checked once, here; the engine and the run's
            // pipeline take it typed.
            let parsed = Change::parse(key, value)
                .and_then(|c| c.applied_to(&self.reg.pipeline).map(|p| (c, p)));
            let (change, next) = match parsed {
                Ok(x) => x,
                Err(e) => return self.refuse(key, e.to_string()),
            };
            self.reg.pipeline = next;
            self.reg.refused.remove(key);
            self.reg.texts.remove(key);
            if let Some(run) = &mut self.reg.run {
                run.send_change(change);
            }
            return Edit::Live;
        }
        let mut next = self.reg.pipeline.clone();
        if let Err(e) = next.set(key, value).and_then(|_| next.validate()) {
            return self.refuse(key, e.to_string());
        }
        self.reg.pipeline = next;
        self.reg.refused.remove(key);
        self.reg.texts.remove(key);
        if self.reg.run.is_some() {
            self.notice(format!(
                "{key}={value} applies to the next run (only weights, learning rates and \
                 iterations left change during a run)"
            ));
        }
        Edit::NextRun
    }

    fn refuse(&mut self, key: &str, why: String) -> Edit {
        self.error(format!("refused: {why}"));
        self.reg.refused.insert(key.to_string(), why.clone());
        self.reg.texts.remove(key);
        Edit::Refused(why)
    }

    /// Replace the edited pipeline (a preset, a run to repeat, a session).
    pub fn set_pipeline(&mut self, p: Pipeline) {
        self.reg.pipeline = p;
        self.reg.reset_texts();
    }

    /// Events from the running engine; the finished run. Called every frame.
    pub(super) fn poll_registration(&mut self, ctx: Option<&eframe::egui::Context>) {
        self.poll_exports();
        let Some(run) = &mut self.reg.run else {
            return;
        };
        let events = run.worker.events();
        // Only the newest preview of this frame is drawn.
        let newest = events.iter().rposition(|e| matches!(e, Event::Snapshot(_)));
        for (i, e) in events.into_iter().enumerate() {
            self.engine_event(e, Some(i) == newest);
        }
        self.ask_for_preview();
        let finished = match &mut self.reg.run {
            Some(run) => run.worker.try_finish(),
            None => None,
        };
        if let Some(r) = finished {
            // Events sent before the end (the last iterations, notices).
            if let Some(run) = &self.reg.run {
                for e in run.worker.events() {
                    self.engine_event(e, false);
                }
            }
            self.finish_run(r);
        }
        // Progress and previews at 10 Hz; input repaints at once. A faster
        // cadence would take the CPU from a CPU run where drawing is in
        // software (lavapipe), for nothing the eye can use.
        if let Some(ctx) = ctx
            && self.reg.running()
        {
            ctx.request_repaint_after(PREVIEW_PERIOD);
        }
    }

    /// The running worker's thread id in the operating system (tests).
    pub fn run_worker_thread(&self) -> Option<u64> {
        self.reg.run.as_ref().and_then(|r| r.worker.os_thread())
    }

    /// Whether the run's worker thread has ended (tests).
    pub fn run_worker_finished(&self) -> bool {
        self.reg.run.as_ref().is_none_or(|r| r.worker.is_finished())
    }

    /// One event from the engine; a snapshot is drawn when `draw` (the
    /// newest of a frame, while the run goes).
    fn engine_event(&mut self, e: Event, draw: bool) {
        match e {
            Event::Snapshot(s) if draw => self.apply_snapshot(*s),
            Event::Progress(p) => {
                if let Some(run) = &mut self.reg.run {
                    for change in &p.applied {
                        change.apply(&mut run.pipeline);
                        run.pending.retain(|c| c != change);
                    }
                    run.progress.update(&p);
                }
            }
            Event::Notice(n) => {
                if let Some(run) = &mut self.reg.run {
                    run.pending.retain(|c| !n.contains(&c.to_string()));
                }
                self.error(n);
            }
            Event::IcWeights(w) => self.show_ic_weights(w, "IC weights (live)"),
            // Stage times come with the outcome; a stale preview is skipped.
            Event::StageDone { .. } | Event::Snapshot(_) => {}
        }
    }

    fn show_ic_weights(&mut self, w: Volume, name: &str) {
        let img = LoadedImage::for_role(Role::IcWeights, name.into(), None, w, None, &self.limits);
        if let Err(e) = img.and_then(|i| self.accept_image(Role::IcWeights, i)) {
            self.error(e);
        }
    }

    /// Ask for a preview every [`PREVIEW_PERIOD`] (the engine merges
    /// requests it has not answered yet, so asking ahead costs nothing and
    /// keeps one preview in flight while the last one is drawn).
    fn ask_for_preview(&mut self) {
        let preview = self.reg.live_preview;
        let Some(run) = &mut self.reg.run else { return };
        if !preview || run.paused || run.stopping {
            return;
        }
        if run
            .snapshot_asked
            .is_none_or(|t| t.elapsed() >= PREVIEW_PERIOD)
        {
            run.worker.send(Control::Snapshot);
            run.snapshot_asked = Some(Instant::now());
        }
    }

    /// Draw a snapshot: field placed on the display grid by the GPU (from
    /// the engine's own buffer when the device is shared), then det J and
    /// the warped image from it.
    fn apply_snapshot(&mut self, s: Snapshot) {
        let Some(fixed) = &self.images.fixed else {
            return;
        };
        let display = fixed.display.grid.clone();
        let Some(place) = LevelPlacement::new(&s.grid, &fixed.volume.grid, &display, &s.affine_vox)
        else {
            return;
        };
        let (device, queue) = (self.rs.device.clone(), self.rs.queue.clone());
        let mut in_place = false;
        let field = match &s.field {
            SnapshotField::Device(t) => match TensorBuffer::of(t) {
                Ok(tb) => {
                    in_place = true;
                    self.compute.field_from_level(
                        &device,
                        &queue,
                        LevelSource::Buffer {
                            buffer: tb.buffer(),
                            offset: tb.offset(),
                        },
                        &place,
                    )
                }
                // Not readable in place (another layout): through the host.
                Err(_) => s.field_volume().map_err(|e| e.to_string()).and_then(|v| {
                    self.compute.field_from_level(
                        &device,
                        &queue,
                        LevelSource::Host(&v.data),
                        &place,
                    )
                }),
            },
            // The engine's kernels on this very device: read in place.
            SnapshotField::Gpu(f) if f.gpu.device == device => {
                in_place = true;
                let [x, y, z] = &f.components;
                self.compute.field_from_level(
                    &device,
                    &queue,
                    LevelSource::Components([&x.buffer, &y.buffer, &z.buffer]),
                    &place,
                )
            }
            SnapshotField::Gpu(_) => s.field_volume().map_err(|e| e.to_string()).and_then(|v| {
                self.compute
                    .field_from_level(&device, &queue, LevelSource::Host(&v.data), &place)
            }),
            SnapshotField::Host(v) => {
                self.compute
                    .field_from_level(&device, &queue, LevelSource::Host(&v.data), &place)
            }
        };
        let field = match field {
            Ok(f) => f,
            Err(e) => {
                self.error(format!("live preview: {e}"));
                self.reg.live_preview = false;
                return;
            }
        };
        if let Err(e) = self.show_field_texture(field) {
            self.error(format!("live preview: {e}"));
            return;
        }
        self.field.preview_grid = Some(display);
        if let Some(run) = &mut self.reg.run {
            run.previews += 1;
            run.device_previews += usize::from(in_place);
            run.preview_at = Some((s.stage.clone(), s.level, s.iter));
        }
        if self.view.b == Slot::Moving && self.field.products.warped_ready {
            self.view.b = Slot::Warped;
        }
    }

    /// Put a preview's field texture (display grid) in the scene with what
    /// the views show of it: the warped image when A or B shows it, det J
    /// when its overlay is on (each a compute pass: on a software
    /// rasteriser they run on this thread). Nothing is read back.
    fn show_field_texture(&mut self, field: GpuVolume) -> Result<(), String> {
        let (device, queue) = (self.rs.device.clone(), self.rs.queue.clone());
        let jac = if self.view.overlays.jacobian.on {
            Some(self.compute.jacobian(&device, &queue, &field)?)
        } else {
            None
        };
        let wants_warped = self.view.a == Slot::Warped
            || self.view.b == Slot::Warped
            || self.view.b == Slot::Moving;
        let warped = match &self.images.fixed {
            Some(fixed) if wants_warped => {
                let grid = fixed.display.grid.clone();
                self.warp_moving(Some(&field), &grid)?
            }
            _ => None,
        };
        self.field.products.jacobian_ready = jac.is_some();
        self.field.products.warped_ready = warped.is_some();
        self.scene(|s| {
            s.set_map(Map::Field, Some(field));
            s.set_map(Map::Jacobian, jac);
            s.set_image(Slot::Warped, warped);
        });
        Ok(())
    }

    fn finish_run(&mut self, r: Result<Finished, String>) {
        let Some(run) = self.reg.run.take() else {
            return;
        };
        self.field.preview_grid = None;
        if !run.progress.loss.is_empty() {
            self.reg.curves.insert(run.id, run.progress.clone());
        }
        let f = match r {
            Ok(f) => f,
            Err(e) => {
                self.error(format!("run {} did not run: {e}", run.id));
                return;
            }
        };
        let record = RunRecord {
            id: run.id,
            started: run.started.clone(),
            pipeline: run.started_with.clone(),
            device: run.device_name.clone(),
            status: results::status_text(&f.outcome.status),
            seconds: run.seconds(),
            stage_seconds: f.outcome.stage_seconds.clone(),
            iterations: f.outcome.iterations,
            final_total: f.outcome.final_total,
            final_terms: f.outcome.final_terms.clone(),
            changes: run
                .progress
                .markers
                .iter()
                .map(|(s, c)| (*s, c.clone()))
                .collect(),
            metrics: f.metrics.clone(),
        };
        let summary = run_summary(&record);
        match &f.outcome.status {
            Status::Failed(m) => self.error(format!(
                "run {} failed on {}: {m} — the last good result is kept",
                run.id, run.device_name
            )),
            _ => self.notice(summary),
        }
        self.reg.history.push(record.clone());
        let id = run.id;
        let data = RunData {
            outcome: f.outcome,
            products: f.products,
            display_field: f.display_field,
            display_mapping: f.display_mapping,
            sources: f.sources,
            record,
        };
        self.reg.keep(id, data);
        self.show_run(id);
    }

    /// Show a kept run's result in the views (field, det J, warped, IC weights).
    pub fn show_run(&mut self, id: u32) {
        if self.reg.shown.is_some_and(|s| s != id) {
            self.clear_notices();
        }
        let Some(data) = self.reg.kept.get(&id).cloned() else {
            self.error(format!(
                "run {id}'s field is no longer kept in memory: re-run it to see it"
            ));
            return;
        };
        let field = LoadedField {
            name: format!("run {id}"),
            path: None,
            kind: FieldKind::DispVox,
            disp_vox: data.display_field.clone(),
            mapping: data.display_mapping.clone(),
            notice: None,
        };
        if let Err(e) = self.accept_field(field) {
            self.error(e);
            return;
        }
        if let Some(w) = &data.outcome.ic_weights {
            self.show_ic_weights(w.clone(), &format!("IC weights (run {id})"));
        }
        self.reg.shown = Some(id);
    }

    /// The run's pipeline in the editor, and a new run started that applies
    /// the changes made while it ran at the same iterations.
    pub fn rerun(&mut self, id: u32) {
        let Some(rec) = self.reg.history.iter().find(|r| r.id == id).cloned() else {
            return;
        };
        // The pipeline as it started, and its live changes replayed at the
        // iterations where they took effect: the same run again.
        self.set_pipeline(rec.pipeline.clone());
        let mut schedule = Vec::new();
        for (step, written) in &rec.changes {
            match Change::parse_written(written) {
                Ok(c) => schedule.push((*step, c)),
                Err(e) => {
                    self.error(format!("run {id} cannot be repeated exactly: {e}"));
                    return;
                }
            }
        }
        self.start_run_with(schedule);
    }

    /// Write a kept run's result files into `dir` on a helper thread.
    pub fn export_run(&mut self, id: u32, dir: PathBuf) {
        let Some(data) = self.reg.kept.get(&id).cloned() else {
            self.error(format!(
                "run {id}'s result is no longer kept in memory: re-run it to export it"
            ));
            return;
        };
        let (tx, rx) = mpsc::channel();
        let target = dir.clone();
        let handle = std::thread::Builder::new()
            .name("warpscope-export".into())
            .spawn(move || {
                let report =
                    results::run_report(&data.sources, &data.outcome, &data.record.metrics);
                let progress_tx = tx.clone();
                let r = results::write_files(
                    &target,
                    &data.products,
                    &data.outcome,
                    &report,
                    &mut |done, total, name| {
                        let _ = progress_tx.send(ExportMsg::Progress(done, total, name.into()));
                    },
                );
                let _ = tx.send(ExportMsg::Done(r));
            });
        match handle {
            Ok(h) => self.reg.exports.push(Export {
                run: id,
                dir,
                progress: (0, 1, String::new()),
                rx,
                handle: Some(h),
            }),
            Err(e) => self.error(format!("could not start the export: {e}")),
        }
    }

    fn poll_exports(&mut self) {
        let mut messages = Vec::new();
        self.reg.exports.retain_mut(|ex| {
            for m in ex.rx.try_iter() {
                match m {
                    ExportMsg::Progress(d, t, n) => ex.progress = (d, t, n),
                    ExportMsg::Done(r) => {
                        if let Some(h) = ex.handle.take() {
                            let _ = h.join();
                        }
                        messages.push(match r {
                            Ok(files) => Ok(format!(
                                "run {} exported: {} files in {}",
                                ex.run,
                                files.len(),
                                ex.dir.display()
                            )),
                            Err(e) => Err(format!("run {} was not exported: {e}", ex.run)),
                        });
                        return false;
                    }
                }
            }
            true
        });
        for m in messages {
            match m {
                Ok(t) => self.notice(t),
                Err(e) => self.error(e),
            }
        }
    }

    /// Wait for exports to finish (tests).
    pub fn wait_for_exports(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.reg.exports.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            self.poll_exports();
        }
    }

    /// Write the run history as CSV (atomically).
    pub fn save_history(&mut self, path: &std::path::Path) {
        match results::write_text(path, &session_file::history_csv(&self.reg.history)) {
            Ok(()) => self.notice(format!(
                "run history ({} runs) saved: {}",
                self.reg.history.len(),
                path.display()
            )),
            Err(e) => self.error(format!("run history not saved: {e}")),
        }
    }

    /// Compare two kept runs side by side: the first in the main views,
    /// the second in the comparison views (same slices, linked).
    pub fn compare_runs(&mut self, a: u32, b: u32) {
        let Some(data_b) = self.reg.kept.get(&b).cloned() else {
            self.error(format!("run {b}'s field is no longer kept in memory"));
            return;
        };
        self.show_run(a);
        if self.reg.shown != Some(a) {
            return;
        }
        match self.compare_scene_for(&data_b) {
            Ok(()) => {
                self.reg.compare_pick = vec![a, b];
                self.reg.side_by_side = true;
                if self.view.b == Slot::Moving {
                    self.view.b = Slot::Warped;
                }
            }
            Err(e) => self.error(format!("run {b} cannot be shown: {e}")),
        }
    }

    /// Fill the comparison scene: the main scene's images, run `data`'s field.
    fn compare_scene_for(&mut self, data: &RunData) -> Result<(), String> {
        let (device, queue) = (self.rs.device.clone(), self.rs.queue.clone());
        let g = &data.display_field.grid;
        let field = GpuVolume::field(
            &device,
            &queue,
            "compared field",
            g.dims,
            &data.display_field.data,
        )?;
        let jac = self.compute.jacobian(&device, &queue, &field)?;
        let warped = self.warp_moving(Some(&field), g)?;
        let images = self
            .scene(|s| {
                [
                    s.image(Slot::Fixed).cloned(),
                    s.image(Slot::Moving).cloned(),
                ]
            })
            .ok_or("the views are not ready")?;
        let ic = match &data.outcome.ic_weights {
            Some(w) => Some(GpuVolume::scalar(
                &device,
                &queue,
                "compared IC",
                w.grid.dims,
                &w.data,
            )?),
            None => None,
        };
        let labels = self.scene(|s| s.map(Map::Labels).cloned()).flatten();
        let mut r = self.rs.renderer.write();
        let c = r
            .callback_resources
            .get_mut::<super::callback::CompareScene>()
            .ok_or("the comparison views are not ready")?;
        let s = &mut c.0;
        s.set_image(Slot::Fixed, images[0].clone());
        s.set_image(Slot::Moving, images[1].clone());
        s.set_image(Slot::Warped, warped);
        s.set_map(Map::Field, Some(field));
        s.set_map(Map::Jacobian, Some(jac));
        s.set_map(Map::IcWeights, ic);
        s.set_map(Map::Labels, labels);
        Ok(())
    }
}

/// One line on a finished run: status, time, TRE, folds.
pub fn run_summary(r: &RunRecord) -> String {
    let m = &r.metrics;
    let mut s = format!("run {} {} in {:.1} s", r.id, r.status, r.seconds);
    if let Some(t) = m.tre_mean_mm {
        s += &format!(
            ", TRE {t:.2} mm (before {:.2})",
            m.tre_before_mm.unwrap_or(f64::NAN)
        );
    }
    if let Some(f) = m.folds_percent {
        s += &format!(", det J ≤ 0 at {f:.3} %");
    }
    if let Some(n) = m.ncc {
        s += &format!(", NCC {n:.4}");
    }
    s
}
