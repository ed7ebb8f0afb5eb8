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

/// Box passes per axis in an almost-Gaussian smoothing.
pub const BOX_PASSES: usize = 4;

/// Radii of four box filters, in two equal pairs, whose successive
/// application has variance σ² (voxels), after Kovesi's "fast almost-Gaussian
/// filtering" (widths 2r + 1 of two neighbouring odd sizes). Pairs because a
/// box's frequency response changes sign and the square of it does not: the
/// smoothing stays positive semi-definite, so a smoothed gradient is still
/// a descent direction (three boxes of unequal widths are not, and Adam
/// amplifies the modes they invert until the field diverges). Zeros for σ
/// too small for a box of 3.
pub fn box_radii(sigma: f64) -> [usize; BOX_PASSES] {
    if !sigma.is_finite() || sigma <= 0.0 {
        return [0; BOX_PASSES];
    }
    let n = BOX_PASSES as f64;
    let ideal = (12.0 * sigma * sigma / n + 1.0).sqrt();
    let mut wl = ideal.floor() as usize;
    if wl.is_multiple_of(2) {
        wl = wl.saturating_sub(1);
    }
    let wl = wl.max(1);
    let variance = |w: usize| ((w * w - 1) as f64) / 12.0;
    // m passes of width wl, the rest wl + 2; m even keeps the pairs.
    let best = (0..=BOX_PASSES)
        .step_by(2)
        .min_by(|&a, &b| {
            let v = |m: usize| {
                (m as f64 * variance(wl) + (n - m as f64) * variance(wl + 2) - sigma * sigma).abs()
            };
            v(a).total_cmp(&v(b))
        })
        .unwrap_or(BOX_PASSES);
    std::array::from_fn(|i| {
        let w = if i < best { wl } else { wl + 2 };
        (w - 1) / 2
    })
}

/// One box pass along `axis`: each voxel becomes the mean of the voxels of
/// its line within `radius` that exist (the border window shrinks, so a
/// constant stays constant). Running sums in f64 (in f32 they leave
/// rounding residue where the window has passed large values, noise that
/// Adam would amplify): O(1) per voxel whatever the radius. Whole rows of x
/// move together along y and z, so every read is contiguous.
pub fn box_pass(src: &[f32], dst: &mut [f32], dims: [usize; 3], axis: usize, radius: usize) {
    let [nx, ny, nz] = dims;
    let len = dims[axis];
    if radius == 0 || len < 2 {
        dst.copy_from_slice(src);
        return;
    }
    let inv: Vec<f64> = (0..len)
        .map(|i| {
            let lo = i.saturating_sub(radius);
            let hi = (i + radius).min(len - 1);
            1.0 / (hi - lo + 1) as f64
        })
        .collect();
    match axis {
        0 => parallel::for_each_row(dst, nx, |row, out| {
            let line = &src[row * nx..(row + 1) * nx];
            let mut acc: f64 = line[..=radius.min(nx - 1)].iter().map(|&v| v as f64).sum();
            for i in 0..nx {
                out[i] = (acc * inv[i]) as f32;
                if i + radius + 1 < nx {
                    acc += line[i + radius + 1] as f64;
                }
                if i >= radius {
                    acc -= line[i - radius] as f64;
                }
            }
        }),
        1 => parallel::for_each_row(dst, nx * ny, |z, out| {
            let slice = &src[z * nx * ny..(z + 1) * nx * ny];
            let row = |y: usize| &slice[y * nx..(y + 1) * nx];
            slide_rows(nx, ny, radius, &inv, row, |y, vals| {
                out[y * nx..(y + 1) * nx].copy_from_slice(vals)
            });
        }),
        _ => {
            let plane = nx * ny;
            let blocks = parallel::map_ranges(ny, |ys| {
                let mut block = vec![0f32; ys.len() * nz * nx];
                for (k, y) in ys.clone().enumerate() {
                    let row = |z: usize| &src[z * plane + y * nx..z * plane + (y + 1) * nx];
                    slide_rows(nx, nz, radius, &inv, row, |z, vals| {
                        block[(k * nz + z) * nx..(k * nz + z + 1) * nx].copy_from_slice(vals)
                    });
                }
                (ys, block)
            });
            for (ys, block) in blocks {
                for (k, y) in ys.enumerate() {
                    for z in 0..nz {
                        let from = (k * nz + z) * nx;
                        dst[z * plane + y * nx..z * plane + (y + 1) * nx]
                            .copy_from_slice(&block[from..from + nx]);
                    }
                }
            }
        }
    }
}

/// A running box mean over `len` rows of `nx` values (`row(i)`), the whole
/// row at once; `put(i, mean_row)` receives each output row.
fn slide_rows<'a>(
    nx: usize,
    len: usize,
    radius: usize,
    inv: &[f64],
    row: impl Fn(usize) -> &'a [f32],
    mut put: impl FnMut(usize, &[f32]),
) {
    let mut acc = vec![0f64; nx];
    let mut out = vec![0f32; nx];
    for i in 0..=radius.min(len - 1) {
        acc.iter_mut()
            .zip(row(i))
            .for_each(|(a, &v)| *a += v as f64);
    }
    for i in 0..len {
        let k = inv[i];
        out.iter_mut()
            .zip(&acc)
            .for_each(|(o, &a)| *o = (a * k) as f32);
        put(i, &out);
        if i + radius + 1 < len {
            acc.iter_mut()
                .zip(row(i + radius + 1))
                .for_each(|(a, &v)| *a += v as f64);
        }
        if i >= radius {
            acc.iter_mut()
                .zip(row(i - radius))
                .for_each(|(a, &v)| *a -= v as f64);
        }
    }
}

/// An almost-Gaussian smoothing of one scalar image in place: the
/// box passes of [`box_radii`] along each axis (`radii[axis]`), x then y
/// then z. The GPU engine's `smooth.wgsl` runs the same passes.
pub fn boxes_in_place(
    data: &mut [f32],
    dims: [usize; 3],
    radii: [[usize; BOX_PASSES]; 3],
    scratch: &mut Vec<f32>,
) {
    for (axis, rs) in radii.iter().enumerate() {
        for &r in rs {
            if r == 0 || dims[axis] < 2 {
                continue;
            }
            scratch.clear();
            scratch.extend_from_slice(data);
            box_pass(scratch, data, dims, axis, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force box mean along one axis.
    fn box_reference(src: &[f32], dims: [usize; 3], axis: usize, r: usize) -> Vec<f32> {
        let [nx, ny, nz] = dims;
        let mut out = vec![0f32; src.len()];
        for z in 0..nz {
            for y in 0..ny {
                for x in 0..nx {
                    let p = [x, y, z];
                    let lo = p[axis].saturating_sub(r);
                    let hi = (p[axis] + r).min(dims[axis] - 1);
                    let mut acc = 0f64;
                    for k in lo..=hi {
                        let mut q = p;
                        q[axis] = k;
                        acc += src[(q[2] * ny + q[1]) * nx + q[0]] as f64;
                    }
                    out[(z * ny + y) * nx + x] = (acc / (hi - lo + 1) as f64) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn box_pass_matches_brute_force_on_every_axis() {
        let dims = [37, 29, 23];
        let n = dims.iter().product::<usize>();
        let src: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1013) as f32 / 1013.0)
            .collect();
        for axis in 0..3 {
            for r in [1, 3, 12, 40] {
                let mut dst = vec![0f32; n];
                box_pass(&src, &mut dst, dims, axis, r);
                let want = box_reference(&src, dims, axis, r);
                let worst = dst
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(worst < 1e-5, "axis {axis} radius {r}: {worst}");
            }
        }
    }

    #[test]
    fn boxes_in_place_are_the_passes_in_order() {
        let dims = [27, 32, 26];
        let n = dims.iter().product::<usize>();
        let src: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1013) as f32 / 1013.0 - 0.5)
            .collect();
        let radii = [[1, 1, 2, 2], [2, 3, 3, 3], [0, 1, 4, 4]];
        let mut got = src.clone();
        boxes_in_place(&mut got, dims, radii, &mut Vec::new());
        let mut want = src;
        for (axis, rs) in radii.iter().enumerate() {
            for &r in rs {
                if r > 0 {
                    want = box_reference(&want, dims, axis, r);
                }
            }
        }
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
    }

    #[test]
    fn box_passes_have_the_gaussian_variance() {
        for sigma in [1.2, 1.5, 3.0, 7.0, 14.0] {
            let r = box_radii(sigma);
            let var: f64 = r
                .iter()
                .map(|&r| ((2 * r + 1).pow(2) - 1) as f64 / 12.0)
                .sum();
            assert!(
                (var.sqrt() - sigma).abs() < 0.25 * sigma.max(1.0),
                "σ {sigma}: radii {r:?} give σ {}",
                var.sqrt()
            );
            // An impulse far from the borders spreads like the Gaussian.
            let dims = [201, 1, 1];
            let mut d = vec![0f32; 201];
            d[100] = 1.0;
            boxes_in_place(&mut d, dims, [r, [0; 4], [0; 4]], &mut Vec::new());
            let mass: f64 = d.iter().map(|&v| v as f64).sum();
            let m2: f64 = d
                .iter()
                .enumerate()
                .map(|(i, &v)| v as f64 * (i as f64 - 100.0).powi(2))
                .sum();
            assert!((mass - 1.0).abs() < 1e-4);
            assert!(
                (m2.sqrt() - var.sqrt()).abs() < 1e-3,
                "σ {sigma}: {} vs {} {r:?}",
                m2.sqrt(),
                var.sqrt()
            );
        }
        assert_eq!(box_radii(0.0), [0; 4]);
        // A smoothed gradient stays a descent direction: xᵀ S x > 0 for
        // rough signals (three unequal boxes fail this at some frequencies).
        let len = 64;
        for sigma in [1.0, 1.7, 2.6, 4.0] {
            let r = box_radii(sigma);
            for f in 1..len / 2 {
                let x: Vec<f32> = (0..len)
                    .map(|i| (std::f32::consts::TAU * (f * i) as f32 / len as f32).cos())
                    .collect();
                let mut sx = x.clone();
                boxes_in_place(&mut sx, [len, 1, 1], [r, [0; 4], [0; 4]], &mut Vec::new());
                let q: f32 = x.iter().zip(&sx).map(|(a, b)| a * b).sum();
                assert!(q > -1e-3, "σ {sigma} frequency {f}: xᵀSx = {q}");
            }
        }
        for sigma in [0.9, 1.3, 2.2, 5.5, 11.0] {
            let r = box_radii(sigma);
            assert!(
                r[0] == r[1] && r[2] == r[3],
                "σ {sigma}: {r:?} not in pairs"
            );
        }
    }
}
