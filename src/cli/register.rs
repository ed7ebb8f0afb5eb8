//! `warpscope register`: run a registration pipeline headless and write
//! every result file (see the README for their conventions).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use clap::Args;
use serde_json::{Value, json};

use super::CliResult;
use crate::metrics::{Mapping, jacobian};
use crate::register::{self, Backend, Event, Inputs, Link, Outcome, Pipeline, Status};
use crate::volume::nifti::{self, ChannelLayout, ReadOptions, WriteOptions};
use crate::volume::resample::Interp;
use crate::volume::{Grid, Volume, affine};

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// Fixed image; repeat for several sequences (channels).
    #[arg(long, required = true)]
    pub fixed: Vec<PathBuf>,
    /// Moving image; repeat in the same order as --fixed.
    #[arg(long, required = true)]
    pub moving: Vec<PathBuf>,
    /// Fixed-image mask: the similarity counts only voxels inside it.
    #[arg(long)]
    pub fixed_mask: Option<PathBuf>,
    /// Named preset: fast, lumir, brats-ic, mse+ncc, symmetric.
    #[arg(long, default_value = "fast")]
    pub preset: String,
    /// Override a preset parameter, e.g. --set deformable.diffusion=2 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// auto (a hardware GPU if present, else the CPU), gpu (wgpu, any adapter) or cpu.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// No progress display.
    #[arg(long)]
    pub quiet: bool,
}

fn read_stack(paths: &[PathBuf], what: &str) -> Result<Volume, Box<dyn std::error::Error>> {
    let mut parts = Vec::new();
    for p in paths {
        parts.push(nifti::read_file(p, ReadOptions::default())?.0);
    }
    Volume::stack(&parts).map_err(|e| format!("{what} images: {e}").into())
}

pub fn run(a: &RegisterArgs) -> CliResult {
    if a.fixed.len() != a.moving.len() {
        return Err(format!(
            "{} fixed and {} moving file(s): give one moving file per fixed file, in the same order",
            a.fixed.len(),
            a.moving.len()
        )
        .into());
    }
    let pipeline = Pipeline::preset(&a.preset)?.with_overrides(&a.sets)?;
    let fixed = read_stack(&a.fixed, "fixed")?;
    let moving = read_stack(&a.moving, "moving")?;
    let fixed_mask = match &a.fixed_mask {
        Some(p) => Some(nifti::read_file(p, ReadOptions::default())?.0),
        None => None,
    };
    let device = match a.device.as_str() {
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
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let inputs = Inputs {
        fixed,
        moving,
        fixed_mask,
    };
    let (tx, rx) = mpsc::channel();
    let quiet = a.quiet;
    let outcome = std::thread::scope(|s| {
        s.spawn(move || show_progress(rx, quiet));
        let link = Link {
            events: Some(tx),
            control: None,
        };
        register::register(&inputs, pipeline, &device, link)
    })?;
    write_outputs(a, &inputs, &outcome)?;
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
            Event::Snapshot(_) => {}
        }
    }
}

fn f32_opts(description: &str) -> WriteOptions {
    WriteOptions {
        description: description.into(),
        ..Default::default()
    }
}

/// ITK/ANTs displacement: LPS mm, fixed point → moving point, 5-D vector image.
pub fn ants_field(mapping: &Mapping) -> Volume {
    let grid = mapping.grid().clone();
    let world = crate::metrics::mapping::world_coordinates(&grid);
    let n = grid.voxels();
    let mut out = Volume::filled(grid, 3, 0.0);
    for c in 0..3 {
        let sign = crate::metrics::mapping::LPS_SIGN[c];
        for i in 0..n {
            out.data[c * n + i] = sign * (mapping.coords.data[c * n + i] - world.data[c * n + i]);
        }
    }
    out
}

/// The affine as an ITK transform file (LPS, fixed → moving physical point),
/// plus the RAS and voxel matrices as comments.
fn affine_text(outcome: &Outcome, fixed: &Grid) -> String {
    let wf = fixed.affine;
    let world = affine::inverse(&wf)
        .map(|inv| affine::mul(&wf, &affine::mul(&outcome.affine_vox, &inv)))
        .unwrap_or(affine::IDENTITY);
    // LPS = F · RAS with F = diag(−1, −1, 1): M_lps = F M F, t_lps = F t.
    let f = crate::metrics::mapping::LPS_SIGN.map(f64::from);
    let mut params = Vec::new();
    for r in 0..3 {
        for c in 0..3 {
            params.push(f[r] * world[r][c] * f[c]);
        }
    }
    for r in 0..3 {
        params.push(f[r] * world[r][3]);
    }
    let fmt = |m: &affine::Mat4| {
        m.iter()
            .take(3)
            .map(|r| format!("#   {:.9} {:.9} {:.9} {:.9}", r[0], r[1], r[2], r[3]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\nParameters: {}\nFixedParameters: 0 0 0\n\
         # Warpscope affine stage, fixed point -> moving point.\n# World RAS mm:\n{}\n# Fixed voxel -> fixed-grid voxel:\n{}\n",
        params
            .iter()
            .map(|v| format!("{v:.9}"))
            .collect::<Vec<_>>()
            .join(" "),
        fmt(&world),
        fmt(&outcome.affine_vox)
    )
}

fn write_outputs(a: &RegisterArgs, inputs: &Inputs, outcome: &Outcome) -> CliResult {
    let out = &a.out;
    let grid = &inputs.fixed.grid;
    let mapping = outcome.mapping(grid);
    let warped = mapping.warp(&inputs.moving, Interp::Linear)?;
    nifti::write_file(
        out.join("warped.nii.gz"),
        &warped,
        &f32_opts("warpscope:warped"),
    )?;
    nifti::write_file(
        out.join("field_vox.nii.gz"),
        &outcome.total_field_vox(grid),
        &f32_opts("warpscope:field_vox fixed->moving"),
    )?;
    nifti::write_file(
        out.join("warp_ants.nii.gz"),
        &ants_field(&mapping),
        &WriteOptions {
            layout: ChannelLayout::Vector,
            ..f32_opts("ITK displacement LPS mm")
        },
    )?;
    super::eval::write_mapped(&out.join("mapped.nii.gz"), &mapping)?;
    let det = jacobian::determinant(&mapping);
    nifti::write_file(
        out.join("jacobian.nii.gz"),
        &det,
        &f32_opts("warpscope:jacobian det"),
    )?;
    if let Some(w) = &outcome.ic_weights {
        nifti::write_file(
            out.join("ic_weights.nii.gz"),
            w,
            &f32_opts("warpscope:ic weights"),
        )?;
    }
    let text = affine_text(outcome, grid);
    write_text(&out.join("affine.txt"), &text)?;
    let report = run_report(a, outcome, &det);
    write_text(
        &out.join("run.json"),
        &(serde_json::to_string_pretty(&report)? + "\n"),
    )?;
    Ok(())
}

fn write_text(path: &Path, text: &str) -> CliResult {
    crate::atomic::write_atomic(path, |w| w.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

fn run_report(a: &RegisterArgs, o: &Outcome, det: &Volume) -> Value {
    let folds = det.data.iter().filter(|&&d| d <= 0.0).count();
    let status = match &o.status {
        Status::Completed => "completed".to_string(),
        Status::Stopped => "stopped".to_string(),
        Status::Failed(m) => format!("failed: {m}"),
    };
    json!({
        "status": status,
        "warpscope": env!("CARGO_PKG_VERSION"),
        "burn": "0.22.1",
        "device": o.device,
        "fixed": a.fixed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "moving": a.moving.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "fixed_mask": a.fixed_mask.as_ref().map(|p| p.display().to_string()),
        "overrides": a.sets,
        "pipeline": o.pipeline.to_json(),
        "stage_seconds": o.stage_seconds.iter().map(|(s, t)| json!({"stage": s, "seconds": t})).collect::<Vec<_>>(),
        "iterations": o.iterations,
        "final_total": o.final_total,
        "final_terms": o.final_terms.iter().map(|(n, v)| (n.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "jacobian_folds_percent": 100.0 * folds as f64 / det.data.len().max(1) as f64,
        "files": {
            "warped.nii.gz": "moving image resampled onto the fixed grid through the result",
            "field_vox.nii.gz": "displacement in voxels of the fixed grid (components i, j, k): fixed voxel p corresponds to fixed-grid voxel p + u(p) of the moving image",
            "warp_ants.nii.gz": "ITK/ANTs displacement, LPS mm, 5-D vector image, fixed -> moving (antsApplyTransforms -t)",
            "mapped.nii.gz": "for each fixed voxel the RAS mm point of the moving image (evaluate.py)",
            "jacobian.nii.gz": "det of the Jacobian of the fixed -> moving mapping",
            "affine.txt": "ITK transform file of the affine stage (LPS)",
        },
    })
}
