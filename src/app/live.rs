//! A registration running on a worker thread: the engine's events and the
//! UI's controls cross by channels; when the run ends the worker also
//! measures it and prepares its result for display, so the UI thread only
//! swaps it in. Progress bookkeeping (per stage and level: iterations,
//! rate, time left; the loss history with the moments parameters changed)
//! lives here too. No drawing.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;

use burn::tensor::Device;

use crate::landmarks::LandmarkSet;
use crate::metrics::{FieldKind, Mapping};
use crate::register::{self, Control, Event, Inputs, Link, Outcome, Pipeline, Progress};
use crate::results::{self, Products, RunMetrics};
use crate::volume::{Grid, Volume};

/// The name of engine worker threads (tests look for leaked ones by it).
pub const WORKER_THREAD: &str = "warpscope-run";

/// Where the viewer runs the engine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The viewer's GPU when it is a hardware one, else the CPU.
    #[default]
    Auto,
    /// The viewer's own wgpu device (shared), whatever the adapter.
    Gpu,
    Cpu,
}

impl DeviceChoice {
    pub const ALL: [DeviceChoice; 3] = [DeviceChoice::Auto, DeviceChoice::Gpu, DeviceChoice::Cpu];

    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Gpu => "gpu",
            DeviceChoice::Cpu => "cpu",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto (hardware GPU, else CPU)",
            DeviceChoice::Gpu => "GPU (the viewer's device)",
            DeviceChoice::Cpu => "CPU",
        }
    }
}

/// What a worker needs: the images, the pipeline, the device, and what the
/// result is measured against and displayed on.
pub struct Job {
    pub inputs: Inputs,
    pub pipeline: Pipeline,
    pub device: Device,
    /// Leave snapshots on the GPU (the device is the viewer's).
    pub device_snapshots: bool,
    pub landmarks: Option<(LandmarkSet, LandmarkSet)>,
    /// The fixed image's display grid (the final field is brought onto it).
    pub display: Grid,
    pub sources: results::RunSources,
    /// Live changes to replay at their iterations (a re-run).
    pub schedule: Vec<(usize, crate::register::Change)>,
}

/// A finished run, measured and ready to show.
pub struct Finished {
    pub outcome: Outcome,
    pub products: Products,
    pub metrics: RunMetrics,
    /// Displacement in voxels of the display grid, and its mapping.
    pub display_field: Volume,
    pub display_mapping: Mapping,
    pub sources: results::RunSources,
}

/// Measure the outcome and bring its field onto the display grid.
fn finish(job: &Job, outcome: Outcome) -> Result<Finished, String> {
    let fixed = &job.inputs.fixed;
    let products = Products::of(&fixed.grid, &job.inputs.moving, &outcome)?;
    let landmarks = job.landmarks.as_ref().map(|(f, m)| (f, m));
    let metrics = results::measure(
        &products,
        fixed,
        &job.inputs.moving.grid,
        landmarks,
        job.inputs.fixed_mask.as_ref(),
    );
    let (display_mapping, display_field) = if job.display.same_as(&fixed.grid) {
        (products.mapping.clone(), products.field_vox.clone())
    } else {
        let (m, _) = Mapping::from_field(&products.field_vox, FieldKind::DispVox, &job.display)
            .map_err(|e| e.to_string())?;
        let d = m.displacement_vox().map_err(|e| e.to_string())?;
        (m, d)
    };
    Ok(Finished {
        outcome,
        products,
        metrics,
        display_field,
        display_mapping,
        sources: job.sources.clone(),
    })
}

/// A run on its worker thread.
pub struct Worker {
    handle: Option<JoinHandle<()>>,
    /// The thread's id in the operating system (Linux), once it has started.
    os_thread: std::sync::Arc<std::sync::OnceLock<u64>>,
    control: Sender<Control>,
    events: Receiver<Event>,
    done: Receiver<Result<Finished, String>>,
}

impl Worker {
    pub fn spawn(job: Job) -> Result<Self, String> {
        let (ev_tx, events) = mpsc::channel();
        let (control, ctl_rx) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let os_thread = std::sync::Arc::new(std::sync::OnceLock::new());
        let tid = os_thread.clone();
        let handle = std::thread::Builder::new()
            .name(WORKER_THREAD.into())
            .spawn(move || {
                if let Some(t) = current_os_thread() {
                    let _ = tid.set(t);
                }
                lower_priority();
                let link = Link {
                    events: Some(ev_tx),
                    control: Some(ctl_rx),
                    device_snapshots: job.device_snapshots,
                    schedule: job.schedule.clone(),
                };
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    register::register(&job.inputs, job.pipeline.clone(), &job.device, link)
                        .map_err(|e| e.to_string())
                        .and_then(|o| finish(&job, o))
                }));
                let result = run.unwrap_or_else(|p| {
                    Err(format!(
                        "the registration failed unexpectedly: {}",
                        register::panic_message(&p)
                    ))
                });
                // Nobody listening means the viewer is gone: nothing to do.
                let _ = done_tx.send(result);
            })
            .map_err(|e| format!("could not start the registration thread: {e}"))?;
        Ok(Self {
            handle: Some(handle),
            os_thread,
            control,
            events,
            done,
        })
    }

    /// A control for the engine (applied between iterations).
    pub fn send(&self, c: Control) {
        // A closed channel means the run already ended.
        let _ = self.control.send(c);
    }

    /// Events that have arrived (never blocks).
    pub fn events(&self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(e) => out.push(e),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
            }
        }
    }

    /// The result, once the worker has finished (the thread is joined then).
    pub fn try_finish(&mut self) -> Option<Result<Finished, String>> {
        let r = match self.done.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => {
                Err("the registration thread ended without a result".into())
            }
        };
        self.join();
        Some(r)
    }

    fn join(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// The worker thread's id in the operating system (Linux: its entry in
    /// `/proc/self/task`), so that a test can see it is gone.
    pub fn os_thread(&self) -> Option<u64> {
        self.os_thread.get().copied()
    }
}

/// Run the engine below the UI's priority (Unix: nice +5 for this thread and
/// the helper threads it starts), so that on a CPU run the window keeps its
/// frame rate and the engine takes the time left.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with who = 0 changes only the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 5);
    }
}

/// This thread's id in the operating system, where `/proc` says it.
fn current_os_thread() -> Option<u64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

impl Drop for Worker {
    /// Stop the engine and wait for its thread: a closed viewer leaves no
    /// worker behind. A paused engine wakes on the stop (or on the closed
    /// channel); a running one stops after its current iteration.
    fn drop(&mut self) {
        let _ = self.control.send(Control::Stop);
        self.join();
    }
}

/// One stage level of the plan, as it progresses.
#[derive(Clone, Debug, PartialEq)]
pub struct LevelRow {
    pub stage: String,
    pub level: usize,
    pub levels: usize,
    /// Pyramid level (0 = full resolution): a level k costs about 8^−k of
    /// a full-resolution iteration.
    pub pyramid: usize,
    pub iter: usize,
    pub iters: usize,
    /// Run time (s) at this level's first and latest iteration.
    first_s: Option<f64>,
    last_s: f64,
}

impl LevelRow {
    fn new(stage: &str, level: usize, levels: usize, pyramid: usize, iters: usize) -> Self {
        Self {
            stage: stage.into(),
            level,
            levels,
            pyramid,
            iter: 0,
            iters,
            first_s: None,
            last_s: 0.0,
        }
    }

    /// Iterations per second at this level (after two iterations).
    pub fn rate(&self) -> Option<f64> {
        let first = self.first_s?;
        let dt = self.last_s - first;
        (self.iter > 1 && dt > 0.0).then(|| (self.iter - 1) as f64 / dt)
    }

    pub fn done(&self) -> bool {
        self.iter >= self.iters
    }

    pub fn fraction(&self) -> f32 {
        if self.iters == 0 {
            1.0
        } else {
            (self.iter as f32 / self.iters as f32).min(1.0)
        }
    }

    fn cost(&self) -> f64 {
        8f64.powi(-(self.pyramid as i32))
    }
}

/// The stages and levels a pipeline will run, in order.
pub fn plan(p: &Pipeline) -> Vec<LevelRow> {
    register::stages::schedule(p)
        .into_iter()
        .map(|l| LevelRow::new(l.stage, l.level, l.levels, l.pyramid, l.iterations))
        .collect()
}

/// One iteration's losses in the history.
#[derive(Clone, Debug, PartialEq)]
pub struct LossPoint {
    /// Iterations since the run started (1-based).
    pub step: usize,
    pub stage: String,
    pub level: usize,
    pub total: f64,
    pub terms: Vec<(String, f64)>,
}

/// A run's progress as the UI shows it.
#[derive(Clone, Debug, Default)]
pub struct RunProgress {
    pub rows: Vec<LevelRow>,
    pub loss: Vec<LossPoint>,
    /// (step, what changed): live parameter changes as the engine applied them.
    pub markers: Vec<(usize, String)>,
    pub elapsed_s: f64,
    pub last: Option<Progress>,
}

impl RunProgress {
    pub fn new(p: &Pipeline) -> Self {
        Self {
            rows: plan(p),
            ..Default::default()
        }
    }

    /// Take one iteration's report.
    pub fn update(&mut self, p: &Progress) {
        let step = self.loss.len() + 1;
        let i = match self
            .rows
            .iter()
            .position(|r| r.stage == p.stage && r.level == p.level)
        {
            Some(i) => i,
            None => {
                // A stage the plan did not foresee: show it all the same.
                self.rows
                    .push(LevelRow::new(&p.stage, p.level, p.levels, 0, p.iters));
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[i];
        row.iter = p.iter;
        row.iters = p.iters;
        row.levels = p.levels;
        if row.first_s.is_none() || p.iter == 1 {
            row.first_s = Some(p.elapsed_s);
        }
        row.last_s = p.elapsed_s;
        // Levels before this one are over (a level can end early when its
        // iterations are cut while it runs).
        for r in &mut self.rows[..i] {
            r.iters = r.iters.min(r.iter);
        }
        self.elapsed_s = p.elapsed_s;
        for change in &p.applied {
            self.markers.push((step, change.to_string()));
        }
        self.loss.push(LossPoint {
            step,
            stage: p.stage.clone(),
            level: p.level,
            total: p.total,
            terms: p.terms.clone(),
        });
        self.last = Some(p.clone());
    }

    /// The row being run.
    pub fn current(&self) -> Option<&LevelRow> {
        let last = self.last.as_ref()?;
        self.rows
            .iter()
            .find(|r| r.stage == last.stage && r.level == last.level)
    }

    /// Seconds left: this level's at its own rate; the levels after it by
    /// their voxel counts relative to this one.
    pub fn seconds_left(&self) -> Option<(f64, f64)> {
        let cur = self.current()?;
        let rate = cur.rate()?;
        let level = (cur.iters.saturating_sub(cur.iter)) as f64 / rate;
        let at = self.rows.iter().position(|r| std::ptr::eq(r, cur))?;
        let later: f64 = self.rows[at + 1..]
            .iter()
            .map(|r| r.iters.saturating_sub(r.iter) as f64 * r.cost())
            .sum::<f64>()
            / (rate * cur.cost());
        Some((level, level + later))
    }

    /// Every term name seen, in order of appearance.
    pub fn term_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for p in &self.loss {
            for (n, _) in &p.terms {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(stage: &str, level: usize, iter: usize, iters: usize, t: f64) -> Progress {
        Progress {
            stage: stage.into(),
            level,
            levels: 3,
            iter,
            iters,
            terms: vec![("lncc".into(), 0.5), ("diffusion".into(), 0.01)],
            total: 0.503,
            elapsed_s: t,
            applied: if iter == 3 {
                vec![crate::register::Change::parse("deformable.diffusion", "1").expect("live")]
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn rows_follow_the_plan_and_rates_come_from_the_clock() {
        let p = Pipeline::preset("fast").expect("fast");
        let mut r = RunProgress::new(&p);
        // 3 affine levels, 3 deformable levels.
        assert_eq!(r.rows.len(), 6);
        assert_eq!(r.rows[0].pyramid, 2);
        assert_eq!(r.rows[5].pyramid, 0);
        for (k, t) in [(1, 10.0), (2, 10.5), (3, 11.0), (4, 11.5)] {
            r.update(&progress("deformable", 0, k, 150, t));
        }
        let row = r.current().expect("current row");
        assert_eq!(
            (row.stage.as_str(), row.level, row.iter),
            ("deformable", 0, 4)
        );
        assert!((row.rate().expect("rate") - 2.0).abs() < 1e-9);
        let (level, total) = r.seconds_left().expect("estimate");
        assert!((level - 73.0).abs() < 1e-9, "{level}");
        // Next levels: 100 iterations at 8× and 50 at 64× the cost of level 0's.
        assert!(
            (total - (73.0 + (100.0 * 8.0 + 50.0 * 64.0) / 2.0)).abs() < 1e-6,
            "{total}"
        );
        assert_eq!(r.markers, vec![(3, "deformable.diffusion=1".to_string())]);
        assert_eq!(r.term_names(), vec!["lncc", "diffusion"]);
    }
}
