//! `warpscope train`: train the initial-field network on a folder of pairs,
//! with a progress bar, a checkpoint after every epoch (and on Ctrl-C),
//! `--resume` from it, and the validation TRE per epoch.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::CliResult;
use super::interrupt::{self, Interrupted};
use crate::register::model::train::{
    self, Ended, EpochReport, Monitor, Pair, Progress, Record, checkpoint_path, default_settings,
};
use crate::register::model::{ARCHITECTURE, Model};
use crate::register::stages::dip::Downsampling;
use crate::register::{self, Backend};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Folder of pair folders (each with fixed.nii.gz, moving.nii.gz, and
    /// optionally gt_disp.nii.gz and landmarks.csv), as `../bench/make_pair.py` writes.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Folder of validation pairs (default: the dataset's last tenth, at least one, held out).
    #[arg(long)]
    pub validation: Option<PathBuf>,
    /// The model file to write (`.wsm`); its checkpoint is written beside it as `<out>.ckpt`.
    #[arg(long)]
    pub out: PathBuf,
    /// Go on from `<out>.ckpt` (its network and settings; --epochs may extend the run).
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Voxel size (mm) of each level's network, coarse to fine, comma-separated.
    #[arg(long, default_value = "16,8", value_delimiter = ',')]
    pub levels_mm: Vec<f64>,
    /// Channels of each network's first convolution.
    #[arg(long, default_value_t = 8)]
    pub features: usize,
    #[arg(long, default_value_t = 2)]
    pub residual_blocks: usize,
    /// Weight of ‖∇v‖² (normalised units).
    #[arg(long, default_value_t = 0.1)]
    pub smoothness: f64,
    /// Weight of the squared error (mm²) to the pairs' gt_disp.nii.gz; 0 = unsupervised.
    #[arg(long, default_value_t = 0.0)]
    pub supervised: f64,
    /// Local NCC window (voxels of each level).
    #[arg(long, default_value_t = 5)]
    pub window: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// cpu (default) or gpu.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Epoch lines only (no progress bar).
    #[arg(long)]
    pub quiet: bool,
}

/// A progress bar on the terminal (stderr), epoch lines elsewhere.
struct Bar {
    started: Instant,
    iterations: usize,
    tty: bool,
    quiet: bool,
}

impl Monitor for Bar {
    fn step(&mut self, p: &Progress) {
        self.iterations += 1;
        if !self.tty || self.quiet {
            return;
        }
        let width = 30;
        let filled = width * p.step / p.steps.max(1);
        let per = self.started.elapsed().as_secs_f64() / self.iterations as f64;
        let left = (p.epochs - p.epoch) * p.steps - p.step;
        eprint!(
            "\repoch {}/{} [{}{}] {}/{} pairs  loss {:+.4}  {:.2} s/it  eta {}   ",
            p.epoch + 1,
            p.epochs,
            "#".repeat(filled),
            "-".repeat(width - filled),
            p.step,
            p.steps,
            p.loss,
            per,
            clock(per * left as f64)
        );
        let _ = std::io::stderr().flush();
    }

    fn epoch(&mut self, r: &EpochReport, checkpoint: &Path) {
        if self.tty && !self.quiet {
            eprint!("\r{}\r", " ".repeat(110));
        }
        let val = match r.validation {
            Some((b, a)) => format!("validation TRE {b:.3} -> {a:.3} mm"),
            None => "no validation landmarks".into(),
        };
        eprintln!(
            "epoch {}: mean loss {:+.4}, {val}, {:.0} s; checkpoint {}",
            r.epoch,
            r.mean_loss,
            r.seconds,
            checkpoint.display()
        );
    }

    fn stop(&mut self) -> bool {
        let stop = interrupt::received().is_some();
        if stop && self.tty && !self.quiet {
            // The error message goes on a line of its own.
            eprintln!();
        }
        stop
    }
}

fn clock(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn load(
    dirs: &[PathBuf],
    s: &train::Settings,
    device: &burn::tensor::Device,
) -> Result<Vec<Pair>, String> {
    dirs.iter()
        .map(|d| train::load_pair(d, &s.architecture, device))
        .collect()
}

pub fn run(a: &TrainArgs) -> CliResult {
    interrupt::install();
    let device = register::make_device(
        Backend::parse(&a.device)
            .ok_or_else(|| format!("unknown device '{}' (cpu, gpu)", a.device))?,
    )?;
    let ckpt = checkpoint_path(&a.out);
    let resume = if a.resume {
        let m = Model::read(&ckpt).map_err(|e| format!("--resume: {e}"))?;
        if m.header.optimiser.is_none() {
            return Err(
                format!("--resume: {} is a model, not a checkpoint", ckpt.display()).into(),
            );
        }
        Some(m)
    } else {
        None
    };
    let mut record: Record = match &resume {
        Some(m) => serde_json::from_value(m.header.training.clone()).map_err(|e| {
            format!(
                "--resume: {} holds no training record ({e})",
                ckpt.display()
            )
        })?,
        None => {
            let mut s = default_settings();
            s.architecture.levels_mm = a.levels_mm.clone();
            s.architecture.features = a.features;
            s.architecture.residual_blocks = a.residual_blocks;
            s.architecture.sampling = Downsampling::Pool;
            s.lr = a.lr;
            s.smoothness = a.smoothness;
            s.supervised = a.supervised;
            s.sim = register::params::SimilarityWeights::lncc(a.window);
            s.seed = a.seed;
            Record {
                settings: s,
                dataset: a.dataset.display().to_string(),
                train_pairs: Vec::new(),
                validation_pairs: Vec::new(),
                epochs: Vec::new(),
                iterations: 0,
                seconds: 0.0,
            }
        }
    };
    if let Some(e) = a.epochs {
        record.settings.epochs = e;
    }
    let s = record.settings.clone();
    if s.architecture.name != ARCHITECTURE {
        return Err(format!("unknown network '{}'", s.architecture.name).into());
    }
    let valid = |x: f64| x.is_finite() && x >= 0.0;
    if !(valid(s.lr) && s.lr > 0.0 && valid(s.smoothness) && valid(s.supervised)) {
        return Err("--lr must be > 0, --smoothness and --supervised ≥ 0".into());
    }
    if s.architecture.levels_mm.is_empty()
        || s.architecture.levels_mm.len() > 4
        || s.architecture
            .levels_mm
            .iter()
            .any(|&mm| !valid(mm) || mm == 0.0)
    {
        return Err("--levels-mm takes 1 to 4 positive sizes, coarse to fine (e.g. 16,8)".into());
    }
    if s.sim.window.is_multiple_of(2) || !(1..=31).contains(&s.sim.window) {
        return Err("--window must be odd, 1–31".into());
    }
    let mut pairs = train::find_pairs(&a.dataset)?;
    let val_dirs = match &a.validation {
        Some(v) => train::find_pairs(v)?,
        None if pairs.len() >= 2 => {
            let k = (pairs.len() / 10).max(1);
            pairs.split_off(pairs.len() - k)
        }
        None => Vec::new(),
    };
    let names =
        |v: &[PathBuf]| -> Vec<String> { v.iter().map(|p| p.display().to_string()).collect() };
    if resume.is_some() && record.train_pairs != names(&pairs) {
        return Err(format!(
            "--resume: the checkpoint was trained on another set of pairs ({} pairs; this \
             dataset gives {}): give the same --dataset (and --validation)",
            record.train_pairs.len(),
            pairs.len()
        )
        .into());
    }
    record.train_pairs = names(&pairs);
    record.validation_pairs = names(&val_dirs);
    eprintln!(
        "loading {} training and {} validation pair(s) from {} ...",
        pairs.len(),
        val_dirs.len(),
        a.dataset.display()
    );
    let train_set = load(&pairs, &s, &device)?;
    let val_set = load(&val_dirs, &s, &device)?;
    let supervised = train_set.iter().filter(|p| p.truth.is_some()).count();
    if s.supervised > 0.0 && supervised == 0 {
        return Err("--supervised > 0 but no training pair has gt_disp.nii.gz".into());
    }
    let net = s.architecture.net();
    let from = resume
        .as_ref()
        .and_then(|m| m.header.optimiser.as_ref())
        .map_or((0, 0), |o| (o.epoch, o.step));
    eprintln!(
        "network: {} level(s) at {:?} mm, {} weights; {} epochs of {} pairs, from epoch {} pair {}",
        s.architecture.levels_mm.len(),
        s.architecture.levels_mm,
        net.size() * s.architecture.levels_mm.len(),
        s.epochs,
        train_set.len(),
        from.0 + 1,
        from.1 + 1
    );
    if resume.is_none()
        && let Some((b, after)) =
            train::validation_tre(&s.architecture, &train::initial(&s, &device), &val_set)?
    {
        eprintln!("before training: validation TRE {b:.3} -> {after:.3} mm");
    }
    let mut bar = Bar {
        started: Instant::now(),
        iterations: 0,
        tty: std::io::stderr().is_terminal(),
        quiet: a.quiet,
    };
    match train::train(
        &mut record,
        &train_set,
        &val_set,
        resume.as_ref(),
        &a.out,
        &device,
        &mut bar,
    )? {
        Ended::Completed(m) => {
            println!("wrote {} ({})", a.out.display(), m.describe());
            Ok(())
        }
        Ended::Stopped { epoch, step } => {
            let sig = interrupt::received().unwrap_or(libc::SIGINT);
            Err(Interrupted::new(
                sig,
                format!(
                    "after {step} pair(s) of epoch {}; the checkpoint {} holds it: run again with --resume",
                    epoch + 1,
                    ckpt.display()
                ),
            )
            .into())
        }
    }
}
