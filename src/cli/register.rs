//! `warpscope register`: run a registration pipeline headless and write
//! every result file (see the README for their conventions).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::mpsc;

use clap::Args;

use super::CliResult;
use crate::landmarks::LandmarkSet;
use crate::landmarks::edit::Editor;
use crate::register::{self, Backend, Event, Inputs, Link, Outcome, Pipeline, Status};
use crate::results::{self, Products, RunSources};
use crate::session_file::{ImageSource, SessionFile};
use crate::volume::Volume;

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Fixed image; repeat for several sequences (channels).
    #[arg(long, required_unless_present = "session")]
    pub fixed: Vec<PathBuf>,
    /// Moving image; repeat in the same order as --fixed.
    #[arg(long, required_unless_present = "session")]
    pub moving: Vec<PathBuf>,
    /// A session file (`.warpscope.json`, saved by the viewer): its images,
    /// mask, landmarks, pipeline and device, reproduced exactly. --fixed,
    /// --moving, --preset, --set and --device given too take precedence.
    #[arg(long)]
    pub session: Option<PathBuf>,
    /// Fixed-image mask: the similarity counts only voxels inside it.
    #[arg(long)]
    pub fixed_mask: Option<PathBuf>,
    /// Named preset: fast (default), lumir, brats-ic, mse+ncc, symmetric.
    #[arg(long)]
    pub preset: Option<String>,
    /// Override a preset parameter, e.g. --set deformable.diffusion=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
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

fn read_stack(sources: &[ImageSource], what: &str) -> Result<Volume, Box<dyn std::error::Error>> {
    let mut parts = Vec::new();
    for p in sources {
        parts.push(p.read()?);
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
    let pipeline = base.with_overrides(&a.sets)?;
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
        overrides: a.sets.clone(),
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
    let fixed = read_stack(&plan.fixed, "fixed")?;
    let moving = read_stack(&plan.moving, "moving")?;
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
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let inputs = Inputs {
        fixed,
        moving,
        fixed_mask,
    };
    let (tx, rx) = mpsc::channel();
    let quiet = a.quiet;
    let pipeline = plan.pipeline.clone();
    let outcome = std::thread::scope(|s| {
        s.spawn(move || show_progress(rx, quiet));
        let link = Link {
            events: Some(tx),
            ..Default::default()
        };
        register::register(&inputs, pipeline, &device, link)
    })?;
    let landmarks = plan.landmarks.as_ref().map(|(f, m)| (f, m));
    write_outputs(a, &inputs, &outcome, &plan.sources, landmarks)?;
    match &outcome.status {
        Status::Failed(m) => Err(format!(
            "{m} (the last good result was written to {})",
            a.out.display()
        )
        .into()),
        _ => Ok(()),
    }
}

/// One status line per iteration on a terminal, one line per level otherwise.
fn show_progress(rx: mpsc::Receiver<Event>, quiet: bool) {
    let tty = std::io::stderr().is_terminal();
    let mut err = std::io::stderr();
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
                } else if p.iter == p.iters {
                    let _ = writeln!(err, "{line}");
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
) -> CliResult {
    let products = Products::of(&inputs.fixed.grid, &inputs.moving, outcome)?;
    let metrics = results::measure(&products, &inputs.fixed, &inputs.moving.grid, landmarks);
    let report = results::run_report(sources, outcome, &metrics);
    results::write_files(&a.out, &products, outcome, &report, &mut |_, _, _| {})?;
    Ok(())
}
