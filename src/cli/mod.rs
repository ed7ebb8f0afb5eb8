//! Command line: no subcommand opens the GUI; `info` and `convert` work headless.

mod bench;
mod convert;
mod eval;
mod info;
mod register;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::Layer;
use crate::volume::nifti::{self, ReadOptions};

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
    /// Fixed (reference) image to open in the viewer; default: the embedded demo pair.
    #[arg(long)]
    pub fixed: Option<PathBuf>,
    /// Moving image to open beside the fixed one.
    #[arg(long, requires = "fixed")]
    pub moving: Option<PathBuf>,
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
}

pub fn run(args: Args) -> CliResult {
    match args.command {
        Some(Command::Info(a)) => info::run(&a),
        Some(Command::Convert(a)) => convert::run(&a),
        Some(Command::Eval(a)) => eval::run(&a),
        Some(Command::Register(a)) => register::run(&a),
        Some(Command::Bench(a)) => bench::run(&a),
        None => gui(args.fixed, args.moving),
    }
}

fn gui(fixed: Option<PathBuf>, moving: Option<PathBuf>) -> CliResult {
    let layers = match fixed {
        None => vec![
            Layer::new("fixed (demo)", crate::demo::fixed()?.0),
            Layer::new("moving (demo)", crate::demo::moving()?.0),
        ],
        Some(f) => {
            let mut layers = vec![Layer::new(
                format!("fixed: {}", file_name(&f)),
                nifti::read_file(&f, ReadOptions::default())?.0,
            )];
            if let Some(m) = moving {
                layers.push(Layer::new(
                    format!("moving: {}", file_name(&m)),
                    nifti::read_file(&m, ReadOptions::default())?.0,
                ));
            }
            layers
        }
    };
    crate::app::run(layers).map_err(Into::into)
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}
