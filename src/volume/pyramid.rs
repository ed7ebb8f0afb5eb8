//! Gaussian pyramid, factor 2 per level.
//!
//! Each level is the previous one smoothed with a Gaussian (σ = 1 voxel by
//! default: ITK's choice, variance = (factor / 2)²) and then sampled at the
//! centres of 2×2×2 blocks, i.e. new voxel i sits at old voxel 2i + 0.5. The
//! affine is updated so every level covers the same world extent; axes of a
//! single voxel are not shrunk.

use super::affine;
use super::resample::{Border, Interp, resample_index_map};
use super::smooth::gaussian_blur;
use super::{Grid, Volume};

/// Default smoothing before each halving, in voxels of the finer level.
pub const DEFAULT_SIGMA_VOX: f64 = 1.0;

/// The grid of the next coarser level: ⌈n/2⌉ voxels, twice the spacing.
pub fn half_grid(grid: &Grid) -> Grid {
    let mut scale = affine::IDENTITY;
    let mut dims = grid.dims;
    for a in 0..3 {
        if grid.dims[a] > 1 {
            dims[a] = grid.dims[a].div_ceil(2);
            scale[a][a] = 2.0;
            scale[a][3] = 0.5;
        }
    }
    Grid::new(dims, affine::mul(&grid.affine, &scale))
}

/// One pyramid step: smooth with `sigma_vox`, then halve.
pub fn downsample2(vol: &Volume, sigma_vox: f64) -> Volume {
    let smoothed = gaussian_blur(vol, [sigma_vox; 3]);
    let target = half_grid(&vol.grid);
    // Index map from coarse voxel to fine voxel: the scale part of half_grid.
    let map = affine::inverse(&vol.grid.affine)
        .map(|inv| affine::mul(&inv, &target.affine))
        .unwrap_or(affine::IDENTITY);
    resample_index_map(&smoothed, &target, &map, Interp::Linear, Border::Clamp)
}

/// Levels from finest (the input) to coarsest; `levels` ≥ 1 counts the input.
pub fn gaussian_pyramid(vol: &Volume, levels: usize, sigma_vox: f64) -> Vec<Volume> {
    let mut out = vec![vol.clone()];
    while out.len() < levels.max(1) {
        let Some(last) = out.last() else { break };
        if last.grid.dims.iter().all(|&d| d <= 1) {
            break;
        }
        let next = downsample2(last, sigma_vox);
        out.push(next);
    }
    out
}
