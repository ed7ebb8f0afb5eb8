//! A registration session: runs a pipeline of stages on one device, sends
//! [`Event`]s (progress every iteration, snapshots on request) and obeys
//! [`Control`] messages between iterations.

use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use burn::tensor::{Device, Tensor};

use super::adam::Adam;
use super::change::Change;
use super::params::Pipeline;
use super::smoothing::{self, Smoothing};
use crate::volume::affine::{self, Mat4};
use crate::volume::{Grid, Volume};

/// Commands from the UI or a test, applied between two iterations.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    Pause,
    Resume,
    Stop,
    /// A weight, a learning rate or the running level's iterations,
    /// parsed where it was typed.
    Set(Change),
    /// Send a [`Snapshot`] of the current field after the next iteration.
    Snapshot,
}

/// One iteration's report.
#[derive(Clone, Debug)]
pub struct Progress {
    pub stage: String,
    /// 0-based level index in this stage, coarse → fine.
    pub level: usize,
    pub levels: usize,
    /// 1-based iteration within the level.
    pub iter: usize,
    /// Iterations planned for this level (after any change).
    pub iters: usize,
    /// Each weighted term's unweighted value, by name.
    pub terms: Vec<(String, f64)>,
    /// The weighted total that was minimised.
    pub total: f64,
    pub elapsed_s: f64,
    /// Parameter changes that took effect at this iteration.
    pub applied: Vec<Change>,
}

/// Where a snapshot's field lives.
#[derive(Clone, Debug)]
pub enum SnapshotField {
    /// In host memory (CPU device, or when device snapshots are not wanted).
    Host(Volume),
    /// Still on the GPU: a `[3, N]` tensor in voxels of the snapshot's grid.
    /// A viewer on the same wgpu device can draw it without a CPU round trip.
    Device(Box<Tensor<2>>),
    /// Still on the GPU, written by the engine's kernels: one buffer per
    /// component, in voxels of the snapshot's grid.
    Gpu(Box<crate::gpu::engine::DeviceField>),
}

/// The current field, on request: displacement in voxels of `grid` (a
/// pyramid level of the fixed image), 3 channels, to be applied before
/// `affine_vox`: the mapping it stands for takes fixed voxel p to fixed-grid
/// voxel `affine_vox · (p + u(p))` of the moving image (u brought from the
/// level's grid to the fixed grid).
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub stage: String,
    pub level: usize,
    pub iter: usize,
    pub grid: Grid,
    pub field: SnapshotField,
    pub affine_vox: Mat4,
}

impl Snapshot {
    /// The field in host memory (read from the device if it is there).
    pub fn field_volume(&self) -> Result<Volume, super::EngineError> {
        match &self.field {
            SnapshotField::Host(v) => Ok(v.clone()),
            SnapshotField::Device(t) => super::tensor_to_volume((**t).clone(), &self.grid),
            SnapshotField::Gpu(f) => f.to_volume(&self.grid).map_err(super::EngineError),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Event {
    Progress(Progress),
    Snapshot(Box<Snapshot>),
    /// The inverse-consistency weight map, as soon as it is computed (on
    /// the fixed grid's finest level).
    IcWeights(Volume),
    /// A stage finished, with its wall time.
    StageDone {
        stage: String,
        seconds: f64,
    },
    /// Something the user should know (a refused parameter change, …).
    Notice(String),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Completed,
    Stopped,
    Failed(String),
}

/// Why an optimisation loop returned early.
#[derive(Debug)]
pub enum Halt {
    Stopped,
    Failed(String),
}

/// The channels a session talks through; both optional (the CLI may only listen).
#[derive(Default)]
pub struct Link {
    pub events: Option<Sender<Event>>,
    pub control: Option<Receiver<Control>>,
    /// Snapshots of a GPU run stay on the device ([`SnapshotField::Device`]):
    /// set by a viewer that shares the engine's wgpu device.
    pub device_snapshots: bool,
    /// Parameter changes to apply as if sent live, each before the
    /// iteration (1-based, counted over the whole run) at which it took
    /// effect in an earlier run: a re-run replays them exactly.
    pub schedule: Vec<(usize, Change)>,
}

/// A check a live change must pass (see [`Runner::live_guard`]).
pub type LiveGuard = Box<dyn Fn(&Pipeline) -> bool>;

/// Live state shared by the stages: the pipeline (which controls may edit),
/// the device, the clock and the channels.
pub struct Runner {
    pub pipeline: Pipeline,
    pub device: Device,
    pub link: Link,
    start: Instant,
    /// Seconds spent paused (blocked on the control channel), left out of
    /// every reported time.
    paused_s: f64,
    snapshot_wanted: bool,
    /// `Link::schedule`, soonest first, and the run's iteration count when
    /// the current level began.
    schedule: std::collections::VecDeque<(usize, Change)>,
    level_first: usize,
    /// Final term values of the last level run, for the report.
    pub last_terms: Vec<(String, f64)>,
    pub last_total: f64,
    pub iterations_done: usize,
    /// While set, a live change is refused unless the changed pipeline
    /// passes this check (an optimiser that computes a subset of terms).
    pub live_guard: Option<LiveGuard>,
    /// The affine that applies after the running stage's field (identity
    /// during the affine stage; its result afterwards).
    pub affine_vox: Mat4,
}

/// A snapshot of `field` (`[3, N]` on `grid`): left on the device when the
/// listener shares it (`device_snapshots`), else copied to the host.
fn snapshot_field(
    device_snapshots: &bool,
    device: &Device,
    field: Tensor<2>,
    grid: &Grid,
) -> Result<SnapshotField, super::EngineError> {
    if *device_snapshots && !super::device::is_cpu(device) {
        Ok(SnapshotField::Device(Box::new(field.without_autodiff())))
    } else {
        super::tensor_to_volume(field, grid).map(SnapshotField::Host)
    }
}

/// What one iteration's loss closure returns: the total to minimise and each
/// term's (name, weight, value).
pub struct Loss {
    pub total: Tensor<1>,
    pub terms: Vec<(String, Tensor<1>)>,
}

/// What one iteration reports back to the loop.
pub struct Step {
    pub total: f64,
    pub terms: Vec<(String, f64)>,
    /// The field, when a snapshot was asked for.
    pub snapshot: Option<Result<SnapshotField, super::EngineError>>,
}

/// Where a loop is, for events and messages, and how its parameters
/// become a voxel displacement field on `grid` (for snapshots).
pub struct Place<'a> {
    pub stage: &'a str,
    pub level: usize,
    pub levels: usize,
    pub grid: &'a Grid,
    pub to_field: &'a dyn Fn(&[Tensor<2>]) -> Tensor<2>,
}

impl Runner {
    pub fn new(pipeline: Pipeline, device: Device, link: Link) -> Self {
        let mut schedule = link.schedule.clone();
        schedule.sort_by_key(|(step, _)| *step);
        Self {
            pipeline,
            device,
            link,
            start: Instant::now(),
            paused_s: 0.0,
            snapshot_wanted: false,
            schedule: schedule.into(),
            level_first: 0,
            last_terms: Vec::new(),
            last_total: f64::NAN,
            iterations_done: 0,
            live_guard: None,
            affine_vox: affine::IDENTITY,
        }
    }

    /// Seconds since the run started, paused time left out.
    pub fn active_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64() - self.paused_s
    }

    pub fn send(&self, e: Event) {
        if let Some(tx) = &self.link.events {
            // A closed receiver only means nobody listens any more.
            let _ = tx.send(e);
        }
    }

    /// Iterations the current level may run from its iteration `done` before
    /// a scheduled change must be applied (at least 1; unbounded without one).
    pub fn iterations_before_scheduled(&self, done: usize) -> usize {
        match self.schedule.front() {
            Some((step, _)) => step.saturating_sub(1 + self.level_first + done).max(1),
            None => usize::MAX,
        }
    }

    /// Apply pending controls; blocks while paused. Returns the changes applied.
    fn poll(&mut self, iters: &mut usize, done: usize) -> Result<Vec<Change>, Halt> {
        self.poll_with(iters, done, &mut |_| {})
    }

    /// As `poll`, calling `before_pause` once before blocking on a pause
    /// (an optimiser with work in flight reports it first).
    pub fn poll_with(
        &mut self,
        iters: &mut usize,
        done: usize,
        before_pause: &mut dyn FnMut(&mut Runner),
    ) -> Result<Vec<Change>, Halt> {
        let mut applied = Vec::new();
        if done == 0 {
            self.level_first = self.iterations_done;
        }
        // Scheduled changes due before the next iteration (a re-run's replay).
        let next = self.level_first + done + 1;
        while self.schedule.front().is_some_and(|(step, _)| *step <= next) {
            let Some((_, change)) = self.schedule.pop_front() else {
                break;
            };
            self.apply_change(change, iters, done, &mut applied);
        }
        let mut paused = false;
        let mut flushed = false;
        loop {
            if paused && !flushed {
                flushed = true;
                before_pause(self);
            }
            let msg = match &self.link.control {
                None => return Ok(applied),
                Some(rx) if paused => {
                    let t = Instant::now();
                    let m = rx.recv();
                    self.paused_s += t.elapsed().as_secs_f64();
                    match m {
                        Ok(m) => m,
                        // The controller is gone: nobody can resume us.
                        Err(_) => return Err(Halt::Stopped),
                    }
                }
                Some(rx) => match rx.try_recv() {
                    Ok(m) => m,
                    Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(applied),
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return Ok(applied),
                },
            };
            match msg {
                Control::Pause => paused = true,
                Control::Resume => paused = false,
                Control::Stop => return Err(Halt::Stopped),
                Control::Snapshot => self.snapshot_wanted = true,
                Control::Set(change) => self.apply_change(change, iters, done, &mut applied),
            }
        }
    }

    /// One parameter change, live or scheduled: applied (and listed in
    /// `applied`) or refused with a notice. It was parsed where it was
    /// typed; here it is only checked against the running pipeline.
    fn apply_change(
        &mut self,
        change: Change,
        iters: &mut usize,
        done: usize,
        applied: &mut Vec<Change>,
    ) {
        if let Change::IterationsLeft(left) = change {
            *iters = done + left;
            applied.push(change);
            return;
        }
        match change.applied_to(&self.pipeline) {
            Ok(next) if self.live_guard.as_ref().is_some_and(|ok| !ok(&next)) => {
                self.send(Event::Notice(format!(
                    "refused {change}: the running optimiser does not compute this \
                     term; it can be switched on for the next run"
                )))
            }
            Ok(next) => {
                self.pipeline = next;
                applied.push(change);
            }
            Err(e) => self.send(Event::Notice(format!("refused {change}: {e}"))),
        }
    }

    /// The iteration loop shared by every optimiser: applies controls
    /// between iterations, calls `step` (which evaluates the objective,
    /// refuses a non-finite one with [`Runner::non_finite`] before touching
    /// the parameters, and updates them), and reports progress and, on
    /// request, a snapshot of the field.
    pub fn iterate(
        &mut self,
        place: &Place,
        iters: usize,
        mut step: impl FnMut(&Pipeline, usize, bool) -> Result<Step, Halt>,
    ) -> Result<(), Halt> {
        let mut iters = iters;
        let mut done = 0;
        while done < iters {
            let applied = self.poll(&mut iters, done)?;
            if done >= iters {
                break;
            }
            let want = self.snapshot_wanted && self.link.events.is_some();
            let out = step(&self.pipeline, done, want)?;
            done += 1;
            self.iterations_done += 1;
            self.last_total = out.total;
            self.last_terms = out.terms;
            self.send(Event::Progress(Progress {
                stage: place.stage.to_string(),
                level: place.level,
                levels: place.levels,
                iter: done,
                iters,
                terms: self.last_terms.clone(),
                total: out.total,
                elapsed_s: self.active_s(),
                applied,
            }));
            if want {
                self.snapshot_wanted = false;
                match out.snapshot {
                    Some(Ok(field)) => self.send(Event::Snapshot(Box::new(Snapshot {
                        stage: place.stage.to_string(),
                        level: place.level,
                        iter: done,
                        grid: place.grid.clone(),
                        field,
                        affine_vox: self.affine_vox,
                    }))),
                    Some(Err(e)) => self.send(Event::Notice(format!("snapshot failed: {e}"))),
                    None => {}
                }
            }
        }
        Ok(())
    }

    /// Record a finished iteration (1-based `iter` of `iters` in its level)
    /// and send its progress report.
    #[allow(clippy::too_many_arguments)]
    pub fn report(
        &mut self,
        stage: &str,
        level: usize,
        levels: usize,
        iter: usize,
        iters: usize,
        terms: Vec<(String, f64)>,
        total: f64,
        applied: Vec<Change>,
    ) {
        self.iterations_done += 1;
        self.last_total = total;
        self.last_terms = terms;
        self.send(Event::Progress(Progress {
            stage: stage.to_string(),
            level,
            levels,
            iter,
            iters,
            terms: self.last_terms.clone(),
            total,
            elapsed_s: self.active_s(),
            applied,
        }));
    }

    /// Whether a listener (the viewer) receives this run's events.
    pub fn wants_events(&self) -> bool {
        self.link.events.is_some()
    }

    /// Whether a listener asked for a snapshot (and clears the request).
    pub fn take_snapshot_request(&mut self) -> bool {
        let want = self.snapshot_wanted && self.link.events.is_some();
        self.snapshot_wanted = false;
        want
    }

    /// Send a snapshot of `field` (voxels of `grid`, before the runner's affine).
    pub fn send_snapshot(
        &self,
        stage: &str,
        level: usize,
        iter: usize,
        grid: &Grid,
        field: SnapshotField,
    ) {
        self.send(Event::Snapshot(Box::new(Snapshot {
            stage: stage.to_string(),
            level,
            iter,
            grid: grid.clone(),
            field,
            affine_vox: self.affine_vox,
        })));
    }

    /// The failure for a loss that is NaN or infinite.
    pub fn non_finite(place: &Place, iter: usize, total: f64) -> Halt {
        Halt::Failed(format!(
            "the loss became {total} in stage {}, level {}, iteration {}: stopped, keeping the last good field",
            place.stage,
            place.level + 1,
            iter + 1
        ))
    }

    /// Adam on `params` (burn tensors, gradients by autodiff) for `iters`
    /// iterations (changeable by control). `lr` reads the live pipeline;
    /// `loss` gets the live pipeline and the tracked parameters. On a
    /// non-finite loss the parameters keep their last good value and the
    /// loop fails.
    pub fn optimise(
        &mut self,
        place: &Place,
        iters: usize,
        params: &mut [Tensor<2>],
        lr: impl Fn(&Pipeline) -> f64,
        smooth: Option<(Smoothing, [usize; 3])>,
        mut loss: impl FnMut(&Pipeline, &[Tensor<2>]) -> Loss,
    ) -> Result<(), Halt> {
        let mut adams: Vec<Adam> = params.iter().map(Adam::new).collect();
        // The latest parameters whose loss was finite (tensors are
        // immutable: keeping them costs no copy).
        let mut good: Vec<Tensor<2>> = params.to_vec();
        let (link, device) = (self.link.device_snapshots, self.device.clone());
        self.iterate(place, iters, |pipeline, done, want| {
            let tracked: Vec<Tensor<2>> = params
                .iter()
                .map(|p| p.clone().autodiff().require_grad())
                .collect();
            let l = loss(pipeline, &tracked);
            // One read for all values (one device sync per iteration).
            let mut parts = vec![l.total.clone().detach().reshape([1])];
            parts.extend(l.terms.iter().map(|(_, t)| t.clone().detach().reshape([1])));
            let values = Tensor::cat(parts, 0)
                .without_autodiff()
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| {
                    Halt::Failed(format!("could not read the loss from the device: {e:?}"))
                })?;
            let total = values[0] as f64;
            if !total.is_finite() {
                params.clone_from_slice(&good);
                return Err(Self::non_finite(place, done, total));
            }
            good = params.to_vec();
            let grads = l.total.backward();
            let rate = lr(pipeline);
            for (i, t) in tracked.iter().enumerate() {
                let Some(g) = t.grad(&grads) else { continue };
                let mut g = g.without_autodiff();
                if let Some((Smoothing { grad: Some(r), .. }, dims)) = &smooth {
                    g = smoothing::tensor(r, g, *dims);
                }
                let mut next = adams[i].step(params[i].clone(), g, rate);
                if let Some((Smoothing { warp: Some(r), .. }, dims)) = &smooth {
                    next = smoothing::tensor(r, next, *dims);
                }
                params[i] = next;
            }
            let snapshot =
                want.then(|| snapshot_field(&link, &device, (place.to_field)(params), place.grid));
            Ok(Step {
                total,
                terms: l
                    .terms
                    .iter()
                    .zip(values.iter().skip(1))
                    .map(|((n, _), v)| (n.clone(), *v as f64))
                    .collect(),
                snapshot,
            })
        })
    }
}
