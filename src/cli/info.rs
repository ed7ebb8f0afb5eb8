//! `warpscope info FILE…`

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::CliResult;
use crate::volume::dicom::DicomInfo;
use crate::volume::nifti::{self, Format, NonFinite, ReadOptions};
use crate::volume::open::{self, ImageInfo};
use crate::volume::{Volume, range_of};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// NIfTI files (.nii or .nii.gz), DICOM folders or DICOM files (their series)
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// With a DICOM folder holding several series: which (SeriesNumber, UID
    /// or position in the list a folder prints).
    #[arg(long)]
    pub series: Option<String>,
    /// List the series of DICOM folders instead of reading one.
    #[arg(long)]
    pub list_series: bool,
    /// Print one JSON object per file instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InfoArgs) -> CliResult {
    let mut failures = 0;
    for path in &args.files {
        if args.list_series {
            match crate::volume::dicom::list_series(path) {
                Ok(list) => {
                    println!("{}", path.display());
                    println!("{}", crate::volume::dicom::SeriesSummary::listing(&list));
                }
                Err(e) => {
                    eprintln!("warpscope: error: {e}");
                    failures += 1;
                }
            }
            continue;
        }
        let opts = ReadOptions {
            non_finite: NonFinite::Keep,
            ..Default::default()
        };
        match open::read_image(path, opts, args.series.as_deref()) {
            Ok((vol, ImageInfo::Nifti(info))) => {
                if args.json {
                    println!("{}", to_json(path, &vol, &info));
                } else {
                    print_text(path, &vol, &info);
                }
            }
            Ok((vol, ImageInfo::Dicom(info))) => {
                if args.json {
                    println!("{}", dicom_json(path, &vol, &info));
                } else {
                    print_dicom(path, &vol, &info);
                }
            }
            Err(e) => {
                eprintln!("warpscope: error: {e}");
                failures += 1;
            }
        }
    }
    if failures > 0 {
        Err(format!(
            "{failures} of {} file(s) could not be read",
            args.files.len()
        )
        .into())
    } else {
        Ok(())
    }
}

fn mean_of(values: &[f32]) -> f64 {
    let (sum, n) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((0f64, 0usize), |(s, n), &v| (s + f64::from(v), n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

fn format_name(info: &nifti::NiftiInfo) -> String {
    let f = match info.format {
        Format::Nifti1 => "NIfTI-1",
        Format::Nifti2 => "NIfTI-2",
    };
    format!(
        "{f}{}, {}-endian",
        if info.gzipped { " (gzip)" } else { "" },
        if info.big_endian { "big" } else { "little" }
    )
}

fn print_text(path: &std::path::Path, vol: &Volume, info: &nifti::NiftiInfo) {
    let g = &vol.grid;
    println!("{}", path.display());
    println!("  format       {}", format_name(info));
    println!("  datatype     {}", info.datatype.name());
    println!(
        "  dimensions   {} × {} × {}, {} channel(s)   (stored dims {:?})",
        g.dims[0], g.dims[1], g.dims[2], vol.channels, info.dims
    );
    print_geometry(
        g,
        &format!(
            "{} (sform_code {}, qform_code {})",
            info.world_source.name(),
            info.sform_code,
            info.qform_code
        ),
    );
    match info.scaling {
        Some((s, i)) => println!("  scaling      value × {s} + {i}"),
        None => println!("  scaling      none"),
    }
    for c in 0..vol.channels {
        let ch = vol.channel(c);
        match range_of(ch) {
            Some((lo, hi)) => println!(
                "  intensity    channel {c}: min {lo}, max {hi}, mean {:.6}",
                mean_of(ch)
            ),
            None => println!("  intensity    channel {c}: no finite samples"),
        }
    }
    if info.non_finite > 0 {
        println!(
            "  WARNING      {} NaN/Inf sample(s): registration will refuse this file",
            info.non_finite
        );
    }
    if !info.description.is_empty() {
        println!("  description  {}", info.description);
    }
}

fn to_json(path: &std::path::Path, vol: &Volume, info: &nifti::NiftiInfo) -> serde_json::Value {
    let g = &vol.grid;
    let channels = intensity_json(vol);
    json!({
        "file": path.display().to_string(),
        "format": format_name(info),
        "datatype": info.datatype.name(),
        "dims": g.dims,
        "stored_dims": info.dims,
        "channels": vol.channels,
        "spacing_mm": g.spacing_mm(),
        "orientation": g.orientation(),
        "world_source": info.world_source.name(),
        "sform_code": info.sform_code,
        "qform_code": info.qform_code,
        "voxel_to_ras_mm": g.affine,
        "scaling": info.scaling.map(|(s, i)| json!({ "slope": s, "inter": i })),
        "intensity": channels,
        "non_finite": info.non_finite,
        "description": info.description,
    })
}

fn intensity_json(vol: &Volume) -> Vec<serde_json::Value> {
    (0..vol.channels)
        .map(|c| {
            let ch = vol.channel(c);
            let (lo, hi) = range_of(ch).map_or((None, None), |(a, b)| (Some(a), Some(b)));
            json!({ "min": lo, "max": hi, "mean": mean_of(ch) })
        })
        .collect()
}

/// Spacing, orientation and the voxel → world matrix, `world` saying where
/// the matrix came from.
fn print_geometry(g: &crate::volume::Grid, world: &str) {
    let sp = g.spacing_mm();
    println!(
        "  spacing      {:.4} × {:.4} × {:.4} mm",
        sp[0], sp[1], sp[2]
    );
    println!("  orientation  {}", g.orientation());
    println!("  world        {world}");
    for row in g.affine.iter().take(3) {
        println!(
            "               [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]",
            row[0], row[1], row[2], row[3]
        );
    }
}

fn print_dicom(path: &std::path::Path, vol: &Volume, info: &DicomInfo) {
    let g = &vol.grid;
    println!("{}", path.display());
    println!("  format       DICOM series {}", info.series.label());
    println!("  series uid   {}", info.series.uid);
    println!("  transfer     {}", info.transfer_syntax);
    println!(
        "  dimensions   {} × {} × {} ({} slices, {:.4} mm apart)",
        g.dims[0], g.dims[1], g.dims[2], info.slices, info.slice_step_mm
    );
    print_geometry(
        g,
        "from ImagePositionPatient/ImageOrientationPatient (LPS → RAS)",
    );
    let units = info.units.name();
    match range_of(vol.channel(0)) {
        Some((lo, hi)) => println!(
            "  intensity    min {lo}, max {hi}, mean {:.6}{}",
            mean_of(vol.channel(0)),
            if units.is_empty() {
                String::new()
            } else {
                format!(" {units}")
            }
        ),
        None => println!("  intensity    no finite samples"),
    }
    for n in &info.notices {
        println!("  notice       {n}");
    }
}

fn dicom_json(path: &std::path::Path, vol: &Volume, info: &DicomInfo) -> serde_json::Value {
    let g = &vol.grid;
    json!({
        "file": path.display().to_string(),
        "format": "DICOM",
        "series_uid": info.series.uid,
        "series_number": info.series.number,
        "series_description": info.series.description,
        "modality": info.series.modality,
        "transfer_syntax": info.transfer_syntax,
        "units": info.units.name(),
        "dims": g.dims,
        "channels": vol.channels,
        "slices": info.slices,
        "slice_step_mm": info.slice_step_mm,
        "spacing_mm": g.spacing_mm(),
        "orientation": g.orientation(),
        "voxel_to_ras_mm": g.affine,
        "intensity": intensity_json(vol),
        "notices": info.notices,
    })
}
