//! `warpscope convert IN OUT`: the preparation steps of the pipeline, one file at a time.
//! Steps run in this order: CT windows, resample onto a reference grid,
//! pyramid downsampling, intensity normalisation, datatype conversion.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::CliResult;
use crate::volume::nifti::{self, DataType, ReadOptions, WriteOptions};
use crate::volume::open::read_image;
use crate::volume::resample::{Border, Interp, resample};
use crate::volume::{intensity, pyramid};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum InterpArg {
    Linear,
    Nearest,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Normalize {
    /// Each channel to [0, 1] by its minimum and maximum.
    Minmax,
    /// Each channel clipped to its --percentiles and scaled to [0, 1].
    Percentile,
}

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input NIfTI file, DICOM folder or DICOM file (its series)
    pub input: PathBuf,
    /// With a DICOM folder holding several series: which (SeriesNumber, UID
    /// or position in `info --list-series`).
    #[arg(long)]
    pub series: Option<String>,
    /// Output NIfTI file (.nii or .nii.gz); written atomically
    pub output: PathBuf,
    /// Turn a CT in Hounsfield units into 3 channels: abdomen W400/L40, lung W1400/L-500, bone W1000/L400.
    #[arg(long)]
    pub ct_windows: bool,
    /// Resample onto this image's grid (through world coordinates).
    #[arg(long, value_name = "REFERENCE")]
    pub like: Option<PathBuf>,
    /// Interpolation for --like: linear for images, nearest for label maps.
    #[arg(long, value_enum, default_value = "linear")]
    pub interp: InterpArg,
    /// Halve the resolution this many times (Gaussian pyramid, sigma 1 voxel per level).
    #[arg(long, default_value_t = 0)]
    pub downsample: usize,
    /// Intensity normalisation per channel.
    #[arg(long, value_enum)]
    pub normalize: Option<Normalize>,
    /// Low and high percentiles for --normalize percentile.
    #[arg(long, num_args = 2, value_names = ["LOW", "HIGH"], default_values_t = [0.5, 99.5])]
    pub percentiles: Vec<f64>,
    /// Take percentiles over non-zero voxels only and keep zero background at 0.
    #[arg(long)]
    pub nonzero: bool,
    /// Output sample type: uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32, float64.
    #[arg(long, default_value = "float32", value_parser = parse_datatype)]
    pub datatype: DataType,
}

fn parse_datatype(s: &str) -> Result<DataType, String> {
    DataType::parse(s).ok_or_else(|| format!("unknown datatype '{s}'"))
}

pub fn run(a: &ConvertArgs) -> CliResult {
    let (mut vol, _) = read_image(&a.input, ReadOptions::default(), a.series.as_deref())?;
    if a.ct_windows {
        vol = intensity::ct_windows(&vol)?;
    }
    if let Some(reference) = &a.like {
        let (r, _) = read_image(reference, ReadOptions::default(), None)?;
        let interp = match a.interp {
            InterpArg::Linear => Interp::Linear,
            InterpArg::Nearest => Interp::Nearest,
        };
        let on_grid = resample(&vol, &r.grid, interp, Border::Constant(0.0))?;
        let empty = |v: &crate::volume::Volume| v.data.iter().all(|&x| x == 0.0);
        if empty(&on_grid) && !empty(&vol) {
            let gap = crate::volume::world_gap_mm(&vol.grid, &r.grid).map_or_else(
                || "no voxel with content falls inside it".to_string(),
                |g| format!("their world boxes are {g:.0} mm apart"),
            );
            return Err(format!(
                "{} does not overlap {} in world space ({gap}): the result would be empty; \
                 check both files' sform/qform",
                a.input.display(),
                reference.display()
            )
            .into());
        }
        vol = on_grid;
    }
    for _ in 0..a.downsample {
        vol = pyramid::downsample2(&vol, pyramid::DEFAULT_SIGMA_VOX);
    }
    match a.normalize {
        Some(Normalize::Minmax) => intensity::normalize_minmax(&mut vol),
        Some(Normalize::Percentile) => intensity::normalize_percentile(
            &mut vol,
            a.percentiles[0],
            a.percentiles[1],
            a.nonzero,
        )?,
        None => {}
    }
    let opts = WriteOptions {
        datatype: a.datatype,
        ..Default::default()
    };
    nifti::write_file(&a.output, &vol, &opts)?;
    let d = vol.grid.dims;
    eprintln!(
        "wrote {} ({}×{}×{}, {} channel(s), {})",
        a.output.display(),
        d[0],
        d[1],
        d[2],
        vol.channels,
        a.datatype.name()
    );
    Ok(())
}
