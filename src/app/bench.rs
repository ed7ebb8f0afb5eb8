//! `warpscope bench --live`: the viewer's frame time while it registers,
//! measured in a real window (eframe, the same code path a user gets). The
//! app drives itself through phases on the loaded pair — idle, registering
//! without live preview, registering with it (each with frames drawn back
//! to back, as while the user drags or zooms), and registering with the
//! viewer at its own pace (no input) — timing the interval between frames
//! (the UI's work, egui's drawing and the presentation together) and the
//! engine's iterations per second, then closes and prints the figures.

use std::time::Instant;

use eframe::egui;
use serde_json::{Value, json};

use super::live::DeviceChoice;
use super::viewer::ViewerApp;
use crate::register::Pipeline;

/// What to measure.
#[derive(Clone, Debug)]
pub struct LiveBench {
    /// Frames timed per phase.
    pub frames: usize,
    pub device: DeviceChoice,
    /// Where to write the figures as JSON (besides printing them).
    pub out: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Loading,
    Idle,
    Plain,
    Preview,
    /// Live preview, the viewer repainting at its own pace (no input).
    Watching,
    Done,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Plain => "registering, no preview",
            Phase::Preview => "registering, live preview",
            Phase::Watching => "same, no input (own pace)",
            _ => "",
        }
    }
}

/// The benchmark's state inside the app.
pub struct BenchState {
    spec: LiveBench,
    phase: Phase,
    last_frame: Option<Instant>,
    intervals: Vec<f64>,
    /// Work inside `ui` (ms) per frame, besides the interval.
    ui_ms: Vec<f64>,
    phase_start: Option<Instant>,
    engine_steps_at_start: usize,
    previews_at_start: usize,
    results: Vec<Value>,
    /// Frames to skip after a phase starts (pipelines built, run warming up).
    warmup: usize,
}

impl BenchState {
    pub fn new(spec: LiveBench) -> Self {
        Self {
            spec,
            phase: Phase::Loading,
            last_frame: None,
            intervals: Vec::new(),
            ui_ms: Vec::new(),
            phase_start: None,
            engine_steps_at_start: 0,
            previews_at_start: 0,
            results: Vec::new(),
            warmup: 10,
        }
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[((p / 100.0) * (s.len() - 1) as f64).round() as usize]
}

/// A run that outlasts the measurement: the fast preset's deformable
/// stage at full resolution, many iterations.
fn long_pipeline() -> Pipeline {
    let mut p = Pipeline::preset("fast").expect("the built-in fast preset");
    p.affine.enabled = false;
    p.deformable.levels = 1;
    p.deformable.iterations = vec![100_000];
    p
}

impl ViewerApp {
    /// One frame of the benchmark (called at the start of `ui`); `ui_ms` is
    /// the previous frame's work inside `ui`.
    pub(super) fn bench_frame(&mut self, ctx: &egui::Context, ui_ms: f64) {
        let Some(mut b) = self.bench.take() else {
            return;
        };
        ctx.request_repaint();
        let now = Instant::now();
        let interval = b.last_frame.map(|t| (now - t).as_secs_f64() * 1e3);
        b.last_frame = Some(now);
        match b.phase {
            Phase::Loading => {
                if self.images.fixed.is_some()
                    && self.images.moving.is_some()
                    && !self.busy()
                    && !self.reg.running()
                {
                    b.phase = Phase::Idle;
                    b.phase_start = Some(now);
                }
            }
            Phase::Idle | Phase::Plain | Phase::Preview | Phase::Watching => {
                if b.warmup > 0 {
                    b.warmup -= 1;
                    b.engine_steps_at_start = self.engine_steps();
                    b.previews_at_start = self.reg.run.as_ref().map_or(0, |r| r.previews);
                    b.phase_start = Some(now);
                } else if let Some(i) = interval {
                    b.intervals.push(i);
                    b.ui_ms.push(ui_ms);
                }
                if b.intervals.len() >= b.spec.frames {
                    self.end_phase(&mut b);
                }
            }
            Phase::Done => {}
        }
        self.bench = Some(b);
    }

    fn engine_steps(&self) -> usize {
        self.reg.run.as_ref().map_or(0, |r| r.progress.loss.len())
    }

    fn end_phase(&mut self, b: &mut BenchState) {
        let seconds = b
            .phase_start
            .map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
        let steps = self.engine_steps().saturating_sub(b.engine_steps_at_start);
        let previews = self
            .reg
            .run
            .as_ref()
            .map_or(0, |r| r.previews)
            .saturating_sub(b.previews_at_start);
        let median = percentile(&b.intervals, 50.0);
        let row = json!({
            "phase": b.phase.name(),
            "frames": b.intervals.len(),
            "frame_ms_median": median,
            "frame_ms_p95": percentile(&b.intervals, 95.0),
            "fps_median": 1e3 / median,
            "ui_ms_median": percentile(&b.ui_ms, 50.0),
            "engine_iterations_per_s": steps as f64 / seconds,
            "previews_per_s": previews as f64 / seconds,
            "device": self.reg.run.as_ref().map(|r| r.device_name.clone()),
        });
        println!(
            "{:<28} frame {:>7.1} ms median, {:>7.1} ms p95 ({:>5.1} fps); ui {:>5.1} ms; engine {:>6.1} it/s; previews {:>4.1}/s",
            b.phase.name(),
            median,
            percentile(&b.intervals, 95.0),
            1e3 / median,
            percentile(&b.ui_ms, 50.0),
            steps as f64 / seconds,
            previews as f64 / seconds,
        );
        b.results.push(row);
        b.intervals.clear();
        b.ui_ms.clear();
        b.warmup = 10;
        // Stop the run of this phase and wait for it (not timed).
        self.reg.run = None;
        b.phase = match b.phase {
            Phase::Idle => Phase::Plain,
            Phase::Plain => Phase::Preview,
            Phase::Preview => Phase::Watching,
            _ => Phase::Done,
        };
        match b.phase {
            Phase::Plain | Phase::Preview | Phase::Watching => {
                self.reg.live_preview = b.phase != Phase::Plain;
                self.reg.device = b.spec.device;
                self.set_pipeline(long_pipeline());
                self.start_run();
            }
            _ => {
                let report = json!({
                    "window": self.window_size,
                    "adapter": self.rs.adapter.get_info().name,
                    "phases": b.results,
                });
                if let Some(p) = &b.spec.out {
                    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
                    if let Err(e) = crate::results::write_text(p, &text) {
                        eprintln!("{e}");
                    }
                }
                self.bench_done = true;
            }
        }
    }

    /// Whether the benchmark has finished (the window then closes).
    pub fn bench_finished(&self) -> bool {
        self.bench_done
    }
}
