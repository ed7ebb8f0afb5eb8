//! `warpscope info FILE…`

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::CliResult;
use crate::volume::nifti::{self, Format, NonFinite, ReadOptions};
use crate::volume::{Volume, range_of};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// NIfTI files (.nii or .nii.gz)
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print one JSON object per file instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InfoArgs) -> CliResult {
    let mut failures = 0;
    for path in &args.files {
        match nifti::read_file(
            path,
            ReadOptions {
                non_finite: NonFinite::Keep,
                ..Default::default()
            },
        ) {
            Ok((vol, info)) => {
                if args.json {
                    println!("{}", to_json(path, &vol, &info));
                } else {
                    print_text(path, &vol, &info);
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
    let sp = g.spacing_mm();
    println!("{}", path.display());
    println!("  format       {}", format_name(info));
    println!("  datatype     {}", info.datatype.name());
    println!(
        "  dimensions   {} × {} × {}, {} channel(s)   (stored dims {:?})",
        g.dims[0], g.dims[1], g.dims[2], vol.channels, info.dims
    );
    println!(
        "  spacing      {:.4} × {:.4} × {:.4} mm",
        sp[0], sp[1], sp[2]
    );
    println!("  orientation  {}", g.orientation());
    println!(
        "  world        {} (sform_code {}, qform_code {})",
        info.world_source.name(),
        info.sform_code,
        info.qform_code
    );
    for row in g.affine.iter().take(3) {
        println!(
            "               [{:>10.4} {:>10.4} {:>10.4} {:>10.4}]",
            row[0], row[1], row[2], row[3]
        );
    }
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
    let channels: Vec<_> = (0..vol.channels)
        .map(|c| {
            let ch = vol.channel(c);
            let (lo, hi) = range_of(ch).map_or((None, None), |(a, b)| (Some(a), Some(b)));
            json!({ "min": lo, "max": hi, "mean": mean_of(ch) })
        })
        .collect();
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
