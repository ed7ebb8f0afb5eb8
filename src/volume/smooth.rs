//! Separable Gaussian smoothing in voxel units.

use super::Volume;
use crate::parallel;

/// Normalised 1-D Gaussian kernel with radius ⌈3σ⌉ (a single 1 for σ ≤ 0).
pub fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 || !sigma.is_finite() {
        return vec![1.0];
    }
    let radius = (3.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-radius..=radius)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = k.iter().sum();
    k.iter().map(|v| (v / sum) as f32).collect()
}

/// Smooth every channel with a Gaussian of standard deviation `sigma_vox`
/// (per axis x, y, z, in voxels). At the borders the kernel is renormalised
/// over the voxels that exist, so edges are not darkened by implicit zeros.
pub fn gaussian_blur(vol: &Volume, sigma_vox: [f64; 3]) -> Volume {
    let mut out = vol.clone();
    for axis in 0..3 {
        if sigma_vox[axis] <= 0.0 || vol.grid.dims[axis] < 2 {
            continue;
        }
        let kernel = gaussian_kernel(sigma_vox[axis]);
        for c in 0..vol.channels {
            let src = out.channel(c).to_vec();
            blur_axis(&src, out.channel_mut(c), vol.grid.dims, axis, &kernel);
        }
    }
    out
}

/// Convolve one channel along `axis` (0 = x, 1 = y, 2 = z).
fn blur_axis(src: &[f32], dst: &mut [f32], dims: [usize; 3], axis: usize, kernel: &[f32]) {
    let [nx, ny, _] = dims;
    let radius = (kernel.len() / 2) as i64;
    let n = dims[axis] as i64;
    let stride = [1, nx, nx * ny][axis];
    parallel::for_each_row(dst, nx, |row, line| {
        let (y, z) = (row % ny, row / ny);
        for (x, v) in line.iter_mut().enumerate() {
            let idx = (z * ny + y) * nx + x;
            let pos = [x, y, z][axis] as i64;
            let lo = (pos - radius).max(0);
            let hi = (pos + radius).min(n - 1);
            let mut acc = 0f32;
            let mut wsum = 0f32;
            for p in lo..=hi {
                let w = kernel[(p - pos + radius) as usize];
                let s = src[(idx as i64 + (p - pos) * stride as i64) as usize];
                acc += w * s;
                wsum += w;
            }
            *v = acc / wsum;
        }
    });
}
