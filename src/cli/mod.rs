//! Command line: no subcommand opens the GUI; `info` and `convert` work headless.

mod batch;
mod bench;
mod bench_view;
mod convert;
mod eval;
mod info;
pub mod interrupt;
mod register;
mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::{LandmarkFile, Role, Source, Startup};
use crate::landmarks::formats::Side;

pub type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser, Debug)]
#[command(
    name = "warpscope",
    version,
    about = "Deformable registration workbench for MRI, CT and PET volumes"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Fixed (reference) image to open in the viewer; default: the embedded
    /// demo pair. Repeat it for a multi-sequence image (one file per
    /// sequence, same grid): the sequences are registered together.
    #[arg(long)]
    pub fixed: Vec<PathBuf>,
    /// Moving image to open beside the fixed one (repeat it as --fixed).
    #[arg(long)]
    pub moving: Vec<PathBuf>,
    /// Displacement field to show (warped image, grid, det J): `field_vox.nii.gz`
    /// of `warpscope register`, an ANTs/ITK warp, or any kind named by --field-kind.
    #[arg(long)]
    pub field: Option<PathBuf>,
    /// How to read --field: mapped, disp-ras, disp-vox or ants (default: from its header).
    #[arg(long, value_parser = parse_field_kind)]
    pub field_kind: Option<crate::metrics::FieldKind>,
    /// A `warpscope register --out` folder: its inputs, field and IC weights.
    #[arg(long)]
    pub result: Option<PathBuf>,
    /// A label map to outline.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// A mask of the fixed image: registration compares only voxels inside it.
    #[arg(long)]
    pub fixed_mask: Option<PathBuf>,
    /// The moving image's label map: with --labels on the fixed grid, the
    /// two feed the Dice loss (`deformable.dice` in the panel).
    #[arg(long)]
    pub moving_labels: Option<PathBuf>,
    /// The labels belong to the moving image (drawn through the field).
    #[arg(long)]
    pub labels_moving: bool,
    /// Inverse-consistency weights (or any [0, 1] map) to show as a heat overlay.
    #[arg(long)]
    pub ic_weights: Option<PathBuf>,
    /// Landmark pairs to open (pair CSV: id,fx,fy,fz,mx,my,mz in RAS mm).
    #[arg(long)]
    pub landmarks: Option<PathBuf>,
    /// Fixed-image landmarks (.fcsv, .mrk.json or BraTS-Reg CSV).
    #[arg(long)]
    pub fixed_landmarks: Option<PathBuf>,
    /// Moving-image landmarks, paired with the fixed ones by id.
    #[arg(long)]
    pub moving_landmarks: Option<PathBuf>,
    /// A session file (`.warpscope.json`): images, landmarks, pipeline, view, run history.
    #[arg(long)]
    pub session: Option<PathBuf>,
}

fn parse_field_kind(s: &str) -> Result<crate::metrics::FieldKind, String> {
    crate::metrics::FieldKind::parse(s)
        .ok_or_else(|| format!("unknown field kind '{s}' (mapped, disp-ras, disp-vox, ants)"))
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print dimensions, spacing, datatype, orientation, world matrix and intensity range.
    Info(info::InfoArgs),
    /// Resample, normalise, window or change the datatype of a volume.
    Convert(convert::ConvertArgs),
    /// Score a registration result: TRE, Dice/HD95, Jacobian, similarity.
    Eval(Box<eval::EvalArgs>),
    /// Time registrations of pair folders on each device (seconds, it/s, memory, TRE).
    Bench(bench::BenchArgs),
    /// Register a moving image to a fixed one and write the result files.
    Register(Box<register::RegisterArgs>),
    /// Register and score every pair of a dataset folder (resumable, in
    /// shards for a cluster; --merge builds the one table).
    Batch(Box<batch::BatchArgs>),
    /// Train the initial-field network (the `network` stage) on a folder of
    /// pairs: progress bar, checkpoints, --resume, validation TRE per epoch.
    Train(Box<train::TrainArgs>),
}

/// Where `XDG_RUNTIME_DIR` is unset or not a folder (a headless shell, a
/// batch job), a private one to set before the GPU is probed: the Wayland
/// client library otherwise prints "error: XDG_RUNTIME_DIR is invalid or
/// not set" for every probe, though nothing is wrong and the run goes on.
/// `None` when the variable is fine (or no folder can be made).
pub fn private_runtime_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir()) {
        return None;
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("warpscope-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    (meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0).then_some(dir)
}

pub fn run(args: Args) -> CliResult {
    match args.command {
        Some(Command::Info(a)) => info::run(&a),
        Some(Command::Convert(a)) => convert::run(&a),
        Some(Command::Eval(a)) => eval::run(&a),
        Some(Command::Register(a)) => register::run(&a),
        Some(Command::Bench(a)) => bench::run(&a),
        Some(Command::Batch(a)) => batch::run(&a),
        Some(Command::Train(a)) => train::run(&a),
        None => gui(args),
    }
}

fn gui(args: Args) -> CliResult {
    let mut startup = Startup {
        field_kind: args.field_kind,
        labels_in_moving: args.labels_moving,
        result: args.result.clone(),
        config_dir: crate::app::config_dir(),
        ..Default::default()
    };
    let opened_any = !args.fixed.is_empty()
        || !args.moving.is_empty()
        || args.result.is_some()
        || args.session.is_some();
    if !opened_any {
        // The embedded demo pair; read here so that a damaged build fails loudly.
        crate::demo::fixed()?;
        crate::demo::moving()?;
        startup.images.push((Role::Fixed, Source::Demo));
        startup.images.push((Role::Moving, Source::Demo));
    }
    if let Some(p) = &args.session {
        if !p.is_file() {
            return Err(format!("{}: no such file", p.display()).into());
        }
        startup.session = Some(p.clone());
    }
    let sequences = |role, paths: Vec<PathBuf>| paths.into_iter().map(move |p| (role, Some(p)));
    for (role, path) in sequences(Role::Fixed, args.fixed)
        .chain(sequences(Role::Moving, args.moving))
        .chain([
            (Role::Field, args.field),
            (Role::Labels, args.labels),
            (Role::MovingLabels, args.moving_labels),
            (Role::IcWeights, args.ic_weights),
            (Role::Mask, args.fixed_mask),
        ])
    {
        if let Some(p) = path {
            if !p.exists() {
                return Err(format!("{}: no such file", p.display()).into());
            }
            startup.images.push((role, Source::Path(p)));
        }
    }
    for (what, path) in [
        (LandmarkFile::Pairs, args.landmarks),
        (LandmarkFile::One(Side::Fixed), args.fixed_landmarks),
        (LandmarkFile::One(Side::Moving), args.moving_landmarks),
    ] {
        if let Some(p) = path {
            if !p.is_file() {
                return Err(format!("{}: no such file", p.display()).into());
            }
            startup.landmarks.push((what, p));
        }
    }
    crate::app::run(startup).map_err(Into::into)
}
