//! `warpscope register`: run a registration pipeline headless and write
//! every result file (see the README for their conventions).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use super::CliResult;
use super::interrupt::{self, Interrupted};
use crate::landmarks::LandmarkSet;
use crate::landmarks::edit::Editor;
use crate::register::{self, Backend, Control, Event, Inputs, Link, Outcome, Pipeline, Status};
use crate::results::{self, Products, RunMetrics, RunSources};
use crate::session_file::{ImageSource, SessionFile};
use crate::volume::Volume;

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Fixed image (NIfTI, DICOM folder or DICOM file); repeat for several
    /// sequences (channels).
    #[arg(long, required_unless_present = "session")]
    pub fixed: Vec<PathBuf>,
    /// Moving image; repeat in the same order as --fixed.
    #[arg(long, required_unless_present = "session")]
    pub moving: Vec<PathBuf>,
    /// Which series of a --fixed DICOM folder holding several (SeriesNumber,
    /// UID or position in `warpscope info --list-series`).
    #[arg(long)]
    pub fixed_series: Option<String>,
    /// Which series of a --moving DICOM folder holding several.
    #[arg(long)]
    pub moving_series: Option<String>,
    /// A session file (`.warpscope.json`, saved by the viewer): its images,
    /// mask, landmarks, pipeline and device, reproduced exactly. --fixed,
    /// --moving, --preset, --set and --device given too take precedence.
    #[arg(long)]
    pub session: Option<PathBuf>,
    /// Fixed-image mask: the similarity counts only voxels inside it.
    #[arg(long)]
    pub fixed_mask: Option<PathBuf>,
    /// Fixed-image label map (integer labels, 0 = background), for the Dice
    /// loss (`--set deformable.dice=W`).
    #[arg(long, requires = "moving_labels")]
    pub fixed_labels: Option<PathBuf>,
    /// Moving-image label map (the labels both maps hold are compared).
    #[arg(long, requires = "fixed_labels")]
    pub moving_labels: Option<PathBuf>,
    /// Named preset: fast (default), lumir, brats-ic, mse+ncc, symmetric.
    #[arg(long)]
    pub preset: Option<String>,
    /// Override a preset parameter, e.g. --set deformable.diffusion=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// A trained model (`.wsm`, from `warpscope train`) whose prediction
    /// starts the deformable stage (the `network` stage, after the affine);
    /// `builtin` names the model shipped with Warpscope.
    #[arg(long, value_name = "MODEL")]
    pub init_model: Option<String>,
    /// auto (a hardware GPU if present, else the CPU; the default), gpu (wgpu, any adapter) or cpu.
    #[arg(long)]
    pub device: Option<String>,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// No progress display.
    #[arg(long)]
    pub quiet: bool,
}

fn read_stack(
    sources: &[ImageSource],
    what: &str,
    series: Option<&str>,
) -> Result<Volume, Box<dyn std::error::Error>> {
    let mut parts = Vec::new();
    for p in sources {
        parts.push(match (p, series) {
            (ImageSource::Path(path), Some(s)) => {
                crate::volume::open::read_image(path, Default::default(), Some(s))?.0
            }
            _ => p.read()?,
        });
    }
    Volume::stack(&parts).map_err(|e| format!("{what} images: {e}").into())
}

/// The run a command line asks for: its inputs, pipeline and device name,
/// from the session file (if any) overridden by the other arguments.
struct Plan {
    fixed: Vec<ImageSource>,
    moving: Vec<ImageSource>,
    mask: Option<ImageSource>,
    pipeline: Pipeline,
    device: String,
    landmarks: Option<(LandmarkSet, LandmarkSet)>,
    sources: RunSources,
}

fn plan(a: &RegisterArgs) -> Result<Plan, Box<dyn std::error::Error>> {
    let session = match &a.session {
        Some(p) => Some((p.clone(), SessionFile::read(p)?)),
        None => None,
    };
    let paths = |v: &[PathBuf]| v.iter().cloned().map(ImageSource::Path).collect::<Vec<_>>();
    let from_session = |names: &[String]| match &session {
        Some((p, _)) => names.iter().map(|n| SessionFile::resolve(p, n)).collect(),
        None => Vec::new(),
    };
    let (mut fixed, mut moving, mut mask) = (paths(&a.fixed), paths(&a.moving), None);
    if let Some((p, s)) = &session {
        if fixed.is_empty() {
            fixed = from_session(&s.images.fixed);
        }
        if moving.is_empty() {
            moving = from_session(&s.images.moving);
        }
        mask = s
            .images
            .fixed_mask
            .as_ref()
            .map(|m| SessionFile::resolve(p, m));
    }
    if let Some(m) = &a.fixed_mask {
        mask = Some(ImageSource::Path(m.clone()));
    }
    if fixed.len() != moving.len() {
        return Err(format!(
            "{} fixed and {} moving file(s): give one moving file per fixed file, in the same order",
            fixed.len(),
            moving.len()
        )
        .into());
    }
    let base = match (&a.preset, &session) {
        (Some(name), _) => Pipeline::preset(name)?,
        (None, Some((_, s))) => s.pipeline.clone(),
        (None, None) => Pipeline::preset("fast")?,
    };
    let mut overrides = a.sets.clone();
    if let Some(m) = &a.init_model {
        overrides.push("network.enabled=true".into());
        overrides.push(format!("network.model={m}"));
    }
    let pipeline = base.with_overrides(&overrides)?;
    // A model file that cannot be used stops the run before anything else.
    if pipeline.network.enabled {
        crate::register::model::Model::open(&pipeline.network.model)?;
    }
    let device = a
        .device
        .clone()
        .or_else(|| session.as_ref().map(|(_, s)| s.device.clone()))
        .unwrap_or_else(|| "auto".into());
    let landmarks = session
        .as_ref()
        .filter(|(_, s)| !s.landmarks.is_empty())
        .map(|(_, s)| Editor::from_pairs(s.landmarks.clone()).map(|e| e.to_sets()))
        .transpose()?;
    let sources = RunSources {
        fixed: fixed.iter().map(ImageSource::name).collect(),
        moving: moving.iter().map(ImageSource::name).collect(),
        fixed_mask: mask.as_ref().map(ImageSource::name),
        overrides,
    };
    Ok(Plan {
        fixed,
        moving,
        mask,
        pipeline,
        device,
        landmarks,
        sources,
    })
}

pub fn run(a: &RegisterArgs) -> CliResult {
    let plan = plan(a)?;
    // Before anything long: the results must have somewhere to go.
    let swept = results::prepare_out_dir(&a.out)?;
    if swept > 0 && !a.quiet {
        eprintln!(
            "notice: removed {swept} temporary file(s) an interrupted run left in {}",
            a.out.display()
        );
    }
    interrupt::install();
    let fixed = read_stack(&plan.fixed, "fixed", a.fixed_series.as_deref())?;
    let moving = read_stack(&plan.moving, "moving", a.moving_series.as_deref())?;
    let fixed_mask = match &plan.mask {
        Some(m) => Some(m.read()?),
        None => None,
    };
    let device = match plan.device.as_str() {
        "auto" => {
            let (d, notice) = register::device::auto_device();
            if let Some(n) = notice {
                eprintln!("notice: {n}");
            }
            d
        }
        other => {
            let b = Backend::parse(other)
                .ok_or_else(|| format!("unknown device '{other}' (auto, gpu, cpu)"))?;
            register::make_device(b)?
        }
    };
    if let Some(note) = crate::gpu::take_device_note() {
        eprintln!("notice: {note}");
    }
    if let Some(sig) = interrupt::received() {
        return Err(
            Interrupted::new(sig, "before the registration started; nothing was written").into(),
        );
    }
    // Label maps serve the Dice loss only: read where it is on.
    let labels = match (&a.fixed_labels, &a.moving_labels) {
        (Some(f), Some(m)) if plan.pipeline.deformable.dice > 0.0 => Some(register::Labels {
            fixed: ImageSource::Path(f.clone()).read()?,
            moving: ImageSource::Path(m.clone()).read()?,
        }),
        (Some(_), Some(_)) => None,
        _ if plan.pipeline.deformable.dice > 0.0 => {
            return Err("deformable.dice needs --fixed-labels and --moving-labels".into());
        }
        _ => None,
    };
    let inputs = Inputs {
        fixed,
        moving,
        fixed_mask,
        labels,
    };
    let (tx, rx) = mpsc::channel();
    let (control, control_rx) = mpsc::channel();
    let quiet = a.quiet;
    let pipeline = plan.pipeline.clone();
    let started = Instant::now();
    let finished = AtomicBool::new(false);
    let outcome = std::thread::scope(|s| {
        s.spawn(move || show_progress(rx, quiet));
        // A signal becomes a stop request: the run ends after its current
        // iteration with the last good result.
        s.spawn(|| {
            while !finished.load(Ordering::SeqCst) {
                if interrupt::received().is_some() {
                    let _ = control.send(Control::Stop);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let link = Link {
            events: Some(tx),
            control: Some(control_rx),
            ..Default::default()
        };
        let r = register::register(&inputs, pipeline, &device, link);
        finished.store(true, Ordering::SeqCst);
        r
    })?;
    let landmarks = plan.landmarks.as_ref().map(|(f, m)| (f, m));
    let metrics = write_outputs(a, &inputs, &outcome, &plan.sources, landmarks)?;
    if !a.quiet {
        println!(
            "{}",
            summary(&a.out, &outcome, &metrics, started.elapsed().as_secs_f64())
        );
    }
    match (&outcome.status, interrupt::received()) {
        (Status::Failed(m), _) => Err(format!(
            "{m} (the last good result was written to {})",
            a.out.display()
        )
        .into()),
        (_, Some(sig)) => Err(Interrupted::new(
            sig,
            format!(
                "stopped after {} iteration(s); the result so far is in {} (run.json: status \"{}\")",
                outcome.iterations,
                a.out.display(),
                results::status_text(&outcome.status)
            ),
        )
        .into()),
        _ => Ok(()),
    }
}

/// The closing lines of a run: where its files are, and how it did.
fn summary(out: &Path, o: &Outcome, m: &RunMetrics, seconds: f64) -> String {
    let stages: Vec<String> = o
        .stage_seconds
        .iter()
        .map(|(s, t)| format!("{s} {t:.1} s"))
        .collect();
    let mut text = format!(
        "{} in {seconds:.1} s on {} ({}), {} iteration(s)",
        results::status_text(&o.status),
        o.device,
        stages.join(", "),
        o.iterations
    );
    let mut figures = Vec::new();
    if let Some(n) = m.ncc {
        figures.push(format!("NCC {n:.4}"));
    }
    if let Some(f) = m.folds_percent {
        let mut s = format!("det J ≤ 0 at {} of the fixed grid", percent(f));
        if let Some(fm) = m.folds_percent_in_mask {
            s += &format!(" ({} inside the mask)", percent(fm));
        }
        figures.push(s);
    }
    if let (Some(t), Some(n)) = (m.tre_mean_mm, m.landmarks) {
        let before = m
            .tre_before_mm
            .map_or(String::new(), |b| format!(", {b:.3} mm before"));
        figures.push(format!("TRE {t:.3} mm over {n} landmark(s){before}"));
    }
    if !figures.is_empty() {
        text += &format!("\n{}", figures.join("; "));
    }
    text + &format!(
        "\nresults in {}: {}",
        out.display(),
        results::file_names(o).join(", ")
    )
}

/// A percentage readable at any size: "0 %", "0.0040 %", "1.25 %".
pub fn percent(p: f64) -> String {
    if p == 0.0 {
        "0 %".into()
    } else if p.abs() < 0.01 {
        format!("{p:.2e} %")
    } else {
        format!("{p:.3} %")
    }
}

/// One status line per iteration on a terminal; otherwise (a log file, a
/// pipe) a line every few seconds and at the end of each level.
fn show_progress(rx: mpsc::Receiver<Event>, quiet: bool) {
    const LOG_EVERY: Duration = Duration::from_secs(5);
    let tty = std::io::stderr().is_terminal();
    let mut err = std::io::stderr();
    let mut last_line = Instant::now();
    for e in rx {
        if quiet {
            continue;
        }
        match e {
            Event::Progress(p) => {
                let width = 24;
                let filled = (p.iter * width) / p.iters.max(1);
                let line = format!(
                    "{:<12} level {}/{} [{}{}] {:>4}/{:<4} loss {:.5}  {:.1} s",
                    p.stage,
                    p.level + 1,
                    p.levels,
                    "#".repeat(filled),
                    " ".repeat(width - filled.min(width)),
                    p.iter,
                    p.iters,
                    p.total,
                    p.elapsed_s
                );
                if tty {
                    let _ = write!(err, "\r{line}");
                    if p.iter == p.iters {
                        let _ = writeln!(err);
                    }
                } else if p.iter == p.iters || last_line.elapsed() >= LOG_EVERY {
                    let _ = writeln!(err, "{line}");
                    last_line = Instant::now();
                }
            }
            Event::StageDone { stage, seconds } => {
                let _ = writeln!(err, "{stage}: {seconds:.2} s");
            }
            Event::Notice(n) => {
                let _ = writeln!(err, "notice: {n}");
            }
            Event::Snapshot(_) | Event::IcWeights(_) => {}
        }
    }
}

fn write_outputs(
    a: &RegisterArgs,
    inputs: &Inputs,
    outcome: &Outcome,
    sources: &RunSources,
    landmarks: Option<(&LandmarkSet, &LandmarkSet)>,
) -> Result<RunMetrics, Box<dyn std::error::Error>> {
    let products = Products::of(&inputs.fixed.grid, &inputs.moving, outcome)?;
    let metrics = results::measure(
        &products,
        &inputs.fixed,
        &inputs.moving.grid,
        landmarks,
        inputs.fixed_mask.as_ref(),
    );
    let report = results::run_report(sources, outcome, &metrics);
    results::write_files(&a.out, &products, outcome, &report, &mut |_, _, _| {})?;
    Ok(metrics)
}
