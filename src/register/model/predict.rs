//! The model's forward pass on a pair, shared by the pipeline stage, the
//! training loop and its validation: the pyramid levels the model works
//! at, the velocity and map per level, and the map brought to full
//! resolution.

use burn::tensor::{Device, Tensor, TensorData};

use super::{Architecture, Model};
use crate::register::field;
use crate::register::loss::{Sampling, similarity_at};
use crate::register::params::FieldUnits;
use crate::register::params::SimilarityWeights;
use crate::register::stages::deformable::{level_maps, resize_tracked, unit_scale};
use crate::register::{Level, levels as make_levels, pyramid};
use crate::volume::affine;
use crate::volume::resample::{Border, Interp, resample_index_map};
use crate::volume::{Grid, Volume};

fn mean_spacing(grid: &Grid) -> f64 {
    let s = grid.spacing_mm();
    (s[0] * s[1] * s[2]).cbrt()
}

/// The pyramid level (0 = `grid` itself) with the coarsest voxels not
/// coarser than `mm` (to 5 %).
pub fn level_index(grid: &Grid, mm: f64) -> usize {
    let mean = mean_spacing(grid);
    if !(mean.is_finite() && mean > 0.0) {
        return 0;
    }
    ((mm / mean).log2() + 0.07).floor().clamp(0.0, 6.0) as usize
}

/// `grid`'s field of view with voxels of `mm` (each axis scaled from its
/// own spacing, so a grid of anisotropic voxels keeps its shape).
pub fn grid_at(grid: &Grid, mm: f64) -> Grid {
    let s = grid.spacing_mm();
    let mut scale = affine::IDENTITY;
    let mut dims = grid.dims;
    for a in 0..3 {
        let n = grid.dims[a];
        let d = ((n as f64 * s[a] / mm).round() as usize).max(1);
        let f = n as f64 / d as f64;
        dims[a] = d;
        scale[a][a] = f;
        scale[a][3] = 0.5 * f - 0.5;
    }
    Grid::new(dims, affine::mul(&grid.affine, &scale))
}

/// `v` at voxels of `mm`: the Gaussian pyramid's level where its spacing
/// is `mm` (to 5 %: a 2 mm or 1 mm image at 16 and 8 mm), else the level
/// just finer resampled to exactly `mm` (a 2.5 mm image), so that the
/// network always sees the voxel size it was trained at.
fn at_mm(pyr: &[Volume], mm: f64) -> Volume {
    let k = level_index(&pyr[0].grid, mm).min(pyr.len() - 1);
    let level = &pyr[k];
    if (mean_spacing(&level.grid) / mm - 1.0).abs() < 0.05 {
        return level.clone();
    }
    let target = grid_at(&level.grid, mm);
    let map = affine::inverse(&level.grid.affine)
        .map(|inv| affine::mul(&inv, &target.affine))
        .unwrap_or(affine::IDENTITY);
    resample_index_map(level, &target, &map, Interp::Linear, Border::Clamp)
}

/// The model's levels, coarse to fine, of a prepared pair (normalised,
/// the moving image on the fixed grid).
pub fn levels(arch: &Architecture, fixed: &Volume, moving: &Volume, device: &Device) -> Vec<Level> {
    let depth = arch
        .levels_mm
        .iter()
        .map(|&mm| level_index(&fixed.grid, mm))
        .max()
        .unwrap_or(0)
        + 1;
    let (fp, mp) = (pyramid(fixed, depth), pyramid(moving, depth));
    let f: Vec<Volume> = arch.levels_mm.iter().map(|&mm| at_mm(&fp, mm)).collect();
    let m: Vec<Volume> = arch.levels_mm.iter().map(|&mm| at_mm(&mp, mm)).collect();
    make_levels(&f, &m, None, device)
}

/// The model's weights as tensors on `device`.
pub fn tensors(model: &Model, device: &Device) -> Vec<Tensor<2>> {
    model
        .weights
        .iter()
        .zip(&model.header.tensors)
        .map(|(w, s)| Tensor::from_data(TensorData::new(w.clone(), *s), device))
        .collect()
}

/// A velocity in normalised units on `from` brought onto `to`, keeping
/// the gradient (the coarse levels' networks learn from the fine loss).
fn bring(v: Tensor<2>, from: &Level, to: &Level) -> Tensor<2> {
    resize_tracked(FieldUnits::Normalized, v, from, to)
}

/// The displacement (voxels of `level`) of exp(v), v in normalised units.
pub fn exp_normalised(v: Tensor<2>, level: &Level, steps: usize) -> Tensor<2> {
    let dims = level.dims();
    let scale = unit_scale(FieldUnits::Normalized, dims, &v.device());
    field::exp_velocity(v * scale, dims, level.identity.clone(), steps)
}

/// Per level, coarse to fine: the velocity (normalised units) and the
/// map's displacement (voxels of that level). Each level's network sees
/// the moving image through the coarser levels' map beside the fixed one,
/// and adds its velocity to theirs.
pub fn forward(
    arch: &Architecture,
    params: &[Tensor<2>],
    levels: &[Level],
) -> Vec<(Tensor<2>, Tensor<2>)> {
    let net = arch.net();
    let per = net.shapes().len();
    let mut out: Vec<(Tensor<2>, Tensor<2>)> = Vec::with_capacity(levels.len());
    for (i, level) in levels.iter().enumerate() {
        let dims = level.dims();
        let base = (i > 0).then(|| bring(out[i - 1].0.clone(), &levels[i - 1], level));
        let seen = match &base {
            Some(b) => field::warp(
                level.moving.clone(),
                dims,
                exp_normalised(b.clone(), level, arch.svf_steps),
                level.identity.clone(),
            ),
            None => level.moving.clone(),
        };
        let input = Tensor::cat(vec![seen, level.fixed.clone()], 0);
        let mut v = net
            .forward(&params[i * per..(i + 1) * per], input, dims)
            .mul_scalar(arch.output_scale as f32);
        if let Some(b) = base {
            v = v + b;
        }
        let u = exp_normalised(v.clone(), level, arch.svf_steps);
        out.push((v, u));
    }
    out
}

/// The finest level's map (displacement in voxels of that level) and the
/// level; `None` for a model without levels.
pub fn finest<'l>(
    arch: &Architecture,
    params: &[Tensor<2>],
    levels: &'l [Level],
) -> Option<(Tensor<2>, &'l Level)> {
    let (_, u) = forward(arch, params, levels).pop()?;
    Some((u, levels.last()?))
}

/// A displacement (voxels of `from`'s grid) brought onto `to` (voxels of
/// `to`), as a 3-channel volume.
pub fn to_grid(u: Tensor<2>, from: &Grid, to: &Grid) -> Result<Volume, String> {
    let host = u
        .without_autodiff()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| format!("could not read the network's field from the device: {e:?}"))?;
    let data = if from.same_as(to) {
        host
    } else {
        let (to_from, from_to) = level_maps(from, to)
            .ok_or_else(|| "the image's grid has a singular orientation matrix".to_string())?;
        crate::register::fused::resize_field(&host, from.dims, to.dims, &to_from, &from_to)
    };
    Ok(Volume {
        grid: to.clone(),
        channels: 3,
        data,
    })
}

/// What the model gives for a pair.
pub struct Prediction {
    /// The displacement on the fixed grid (voxels).
    pub field: Volume,
    /// 1 − local NCC (window 5) of the moving image through the field,
    /// against the fixed one, at the model's finest level.
    pub dissimilarity: f64,
}

/// The model's field for a prepared pair (normalised, the moving image
/// on the fixed grid).
pub fn predict(
    model: &Model,
    fixed: &Volume,
    moving: &Volume,
    device: &Device,
) -> Result<Prediction, String> {
    let arch = model.architecture();
    if fixed.channels != arch.channels {
        return Err(format!(
            "the model was trained on {} channel(s) per image; this pair has {}",
            arch.channels, fixed.channels
        ));
    }
    let lv = levels(arch, fixed, moving, device);
    let params = tensors(model, device);
    let (u, last) = finest(arch, &params, &lv).ok_or("the model has no levels")?;
    let dims = last.dims();
    let sampling = Sampling {
        moving: &last.moving,
        src: dims,
        points: last.identity.clone() + u.clone(),
        host: last.hosts(true),
    };
    let dissimilarity = similarity_at(
        &SimilarityWeights::lncc(5),
        sampling,
        &last.fixed,
        dims,
        None,
    )
    .into_iter()
    .map(|t| t.value.into_scalar::<f32>() as f64 * t.weight)
    .sum();
    Ok(Prediction {
        field: to_grid(u, &last.grid, &fixed.grid)?,
        dissimilarity,
    })
}
