//! `warpscope bench`: register pairs of the shared layout on each device and
//! print seconds per stage, iterations per second, peak memory and accuracy.

use std::path::PathBuf;
use std::sync::mpsc;

use clap::Args;
use serde_json::{Value, json};

use super::CliResult;
use crate::metrics::protocol::{Pair, evaluate};
use crate::register::{self, Backend, Event, Inputs, Link, Pipeline};
use crate::volume::nifti::{ReadOptions, read_file};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Pair folders (pair.json layout); default: ../shared/data/pairs/brain2mm_syn.
    #[arg(long)]
    pub pair: Vec<PathBuf>,
    /// Preset to run.
    #[arg(long, default_value = "fast")]
    pub preset: String,
    /// Parameter overrides (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Devices: cpu, gpu (repeatable); default: cpu, and gpu when one exists.
    #[arg(long)]
    pub device: Vec<String>,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also time each GPU kernel of one affine and one deformable iteration
    /// at full resolution (seconds per dispatch): where the time goes.
    #[arg(long)]
    pub profile: bool,
    /// Time the viewer instead: frames per second drawing the three views
    /// of a synthetic SIZE³ pair with overlays, offscreen on the GPU.
    #[arg(long)]
    pub viewer: bool,
    /// Viewer benchmark: volume edge in voxels.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Viewer benchmark: frames timed per configuration.
    #[arg(long, default_value_t = 60)]
    pub frames: usize,
    /// Viewer benchmark: target size in pixels (width height).
    #[arg(long, num_args = 2, default_values_t = [1600, 1000])]
    pub window: Vec<u32>,
    /// Time the viewer's frames while it registers the demo pair (or
    /// --fixed/--moving) in a real window: idle, registering without and
    /// with live preview (--frames per phase; --device cpu or gpu, default auto).
    #[arg(long)]
    pub live: bool,
    /// Live benchmark: the fixed image (default: the embedded demo pair).
    #[arg(long)]
    pub fixed: Option<PathBuf>,
    /// Live benchmark: the moving image.
    #[arg(long)]
    pub moving: Option<PathBuf>,
}

/// Peak resident memory of this process in MiB (Linux), and a way to reset it.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn reset_peak_rss() {
    // "5" resets VmHWM to the current RSS (Linux ≥ 4.0); harmless elsewhere.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn run(a: &BenchArgs) -> CliResult {
    if a.viewer {
        return super::bench_view::run(a);
    }
    if a.live {
        return live(a);
    }
    let pairs = if a.pair.is_empty() {
        vec![PathBuf::from("../shared/data/pairs/brain2mm_syn")]
    } else {
        a.pair.clone()
    };
    let mut devices = Vec::new();
    let names: Vec<String> = if a.device.is_empty() {
        vec!["cpu".into(), "gpu".into()]
    } else {
        a.device.clone()
    };
    for name in &names {
        let b =
            Backend::parse(name).ok_or_else(|| format!("unknown device '{name}' (cpu, gpu)"))?;
        match register::make_device(b) {
            Ok(d) => devices.push((name.clone(), d)),
            Err(e) if a.device.is_empty() => eprintln!("notice: skipping {name}: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(note) = crate::gpu::take_device_note() {
        eprintln!("notice: {note}");
    }
    let pipeline = Pipeline::preset(&a.preset)?.with_overrides(&a.sets)?;
    let mut rows = Vec::new();
    for dir in &pairs {
        let pair = Pair::open(dir)?;
        let inputs = Inputs {
            fixed: read_file(&pair.fixed, ReadOptions::default())?.0,
            moving: read_file(&pair.moving, ReadOptions::default())?.0,
            fixed_mask: None,
            labels: None,
        };
        if a.profile {
            profile(&inputs, &pipeline, &devices)?;
        }
        for (dev_name, device) in &devices {
            reset_peak_rss();
            let (tx, rx) = mpsc::channel();
            let t = std::time::Instant::now();
            let outcome = register::register(
                &inputs,
                pipeline.clone(),
                device,
                Link {
                    events: Some(tx),
                    control: None,
                    ..Default::default()
                },
            )?;
            let seconds = t.elapsed().as_secs_f64();
            let peak = peak_rss_mib();
            // Iterations per stage, from the progress stream.
            let mut iters: Vec<(String, usize)> = Vec::new();
            for e in rx.try_iter() {
                if let Event::Progress(p) = e {
                    let stage = p.stage.split('-').next().unwrap_or(&p.stage).to_string();
                    match iters.iter_mut().find(|(s, _)| *s == stage) {
                        Some((_, n)) => *n += 1,
                        None => iters.push((stage, 1)),
                    }
                }
            }
            let report = evaluate(&pair, Some(&outcome.mapping(&inputs.fixed.grid)))?;
            let stages: Vec<Value> = outcome
                .stage_seconds
                .iter()
                .map(|(s, t)| {
                    let key = s.split('-').next().unwrap_or(s);
                    let n = iters.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n);
                    let dispatches = outcome
                        .stage_dispatches
                        .iter()
                        .find(|(k, _)| k == s)
                        .map(|(_, d)| *d as f64 / n.max(1) as f64);
                    json!({
                        "stage": s,
                        "seconds": t,
                        "iterations": n,
                        "iterations_per_s": n as f64 / t.max(1e-9),
                        "dispatches_per_iteration": dispatches,
                    })
                })
                .collect();
            let row = json!({
                "pair": pair.name,
                "grid": inputs.fixed.grid.dims,
                "device": outcome.device,
                "preset": pipeline.preset,
                "seconds_total": seconds,
                "prepare_seconds": outcome.prepare_seconds,
                "stages": stages,
                "peak_rss_mib": peak,
                "tre_before_mean": report["tre_before_mean"],
                "tre_mean": report["tre_mean"],
                "tre_median": report["tre_median"],
                // The protocol's figure: inside the pair's mask, away from
                // unmapped voxels (as evaluate.py computes it).
                "jac_percent_nonpos_in_mask": report["jac_frac_nonpos"].as_f64().map(|f| 100.0 * f),
                "status": format!("{:?}", outcome.status),
            });
            println!(
                "{:<18} {:<28} {:>7.2} s  TRE {:.3} → {:.3} mm  det J ≤ 0 in mask {}  peak {:.0} MiB",
                pair.name,
                device_label(dev_name, &outcome.device),
                seconds,
                report["tre_before_mean"].as_f64().unwrap_or(f64::NAN),
                report["tre_mean"].as_f64().unwrap_or(f64::NAN),
                report["jac_frac_nonpos"]
                    .as_f64()
                    .map_or("–".into(), |f| super::register::percent(100.0 * f)),
                peak.unwrap_or(f64::NAN)
            );
            println!("    {:<14} {:>7.2} s", "prepare", outcome.prepare_seconds);
            for s in &stages {
                let dispatches = s["dispatches_per_iteration"]
                    .as_f64()
                    .map_or(String::new(), |d| format!("  {d:>5.1} dispatches/it"));
                println!(
                    "    {:<14} {:>7.2} s  {:>5} it  {:>7.1} it/s{dispatches}",
                    s["stage"].as_str().unwrap_or(""),
                    s["seconds"].as_f64().unwrap_or(0.0),
                    s["iterations"],
                    s["iterations_per_s"].as_f64().unwrap_or(0.0)
                );
            }
            rows.push(row);
        }
    }
    if let Some(p) = &a.out {
        let text = serde_json::to_string_pretty(&Value::Array(rows))? + "\n";
        crate::results::write_text(p, &text)?;
    }
    Ok(())
}

/// `--profile`: seconds per dispatch of every kernel of an iteration, on
/// each GPU device among `devices`.
fn profile(
    inputs: &Inputs,
    pipeline: &Pipeline,
    devices: &[(String, burn::tensor::Device)],
) -> CliResult {
    let (fixed, moving, _) = register::prepare(inputs, pipeline.normalize)?;
    for (name, device) in devices {
        let Some(gpu) = crate::gpu::engine::for_device(device) else {
            continue;
        };
        let gpu = gpu?;
        println!(
            "kernel times on {name} ({}), {:?} voxels, ms per dispatch:",
            gpu.name, fixed.grid.dims
        );
        for (stage, steps) in crate::gpu::engine::run::profile(&gpu, &fixed, &moving, pipeline, 10)?
        {
            let total: f64 = steps.iter().map(|(_, t)| t).sum();
            println!("  {stage}: {:.2} ms per iteration", total * 1e3);
            for (label, t) in steps {
                println!("    {label:<16} {:>8.3}", t * 1e3);
            }
        }
    }
    Ok(())
}

/// `--live`: the viewer registers in its own window while frames are timed.
fn live(a: &BenchArgs) -> CliResult {
    use crate::app::live::DeviceChoice;
    use crate::app::{Role, Source, Startup};
    let device = match a.device.first().map(String::as_str) {
        None => DeviceChoice::Auto,
        Some(d) => DeviceChoice::parse(d)
            .ok_or_else(|| format!("unknown device '{d}' (auto, cpu, gpu)"))?,
    };
    let images = match (&a.fixed, &a.moving) {
        (Some(f), Some(m)) => vec![
            (Role::Fixed, Source::Path(f.clone())),
            (Role::Moving, Source::Path(m.clone())),
        ],
        (None, None) => vec![(Role::Fixed, Source::Demo), (Role::Moving, Source::Demo)],
        _ => {
            return Err(
                "--live needs both --fixed and --moving, or neither (the demo pair)".into(),
            );
        }
    };
    println!(
        "live benchmark: {} frames per phase, the viewer's own window (close it to abort)",
        a.frames
    );
    let startup = Startup {
        images,
        config_dir: None,
        bench: Some(crate::app::bench::LiveBench {
            frames: a.frames.max(10),
            device,
            out: a.out.clone(),
        }),
        ..Default::default()
    };
    crate::app::run(startup).map_err(Into::into)
}

/// "cpu: burn flex" for the device chosen as `cpu` (not "cpu: cpu: …").
fn device_label(chosen: &str, described: &str) -> String {
    if described.starts_with(chosen) {
        described.to_string()
    } else {
        format!("{chosen}: {described}")
    }
}
