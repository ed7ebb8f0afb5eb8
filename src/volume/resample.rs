//! Resampling a volume onto another grid through world coordinates: the
//! target voxel is mapped to world RAS mm by the target affine and back into
//! the source voxel grid by the inverse source affine, so differences in
//! orientation, spacing and field of view are all handled.

use super::affine::{self, Mat4};
use super::{Grid, Volume, VolumeError, VolumeErrorKind};
use crate::parallel;

/// Interpolation between voxel centres.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interp {
    /// Trilinear, for intensity images.
    Linear,
    /// Nearest neighbour, for label maps.
    Nearest,
}

/// Value of samples that fall outside the source volume.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Border {
    /// A constant (0 by default in registration).
    Constant(f32),
    /// The nearest edge voxel (replicate).
    Clamp,
}

/// A mask (channel 0, voxels > 0.5 inside) on `grid`: as it is when it
/// already lies there, else resampled by nearest neighbour (outside it: 0).
pub fn mask_on(mask: &Volume, grid: &Grid) -> Result<Vec<bool>, VolumeError> {
    let on_grid = if mask.grid.same_as(grid) {
        mask.extract_channel(0)
    } else {
        resample(
            &mask.extract_channel(0),
            grid,
            Interp::Nearest,
            Border::Constant(0.0),
        )?
    };
    Ok(on_grid.data.iter().map(|&v| v > 0.5).collect())
}

/// Resample every channel of `src` onto `target`.
pub fn resample(
    src: &Volume,
    target: &Grid,
    interp: Interp,
    border: Border,
) -> Result<Volume, VolumeError> {
    let inv = affine::inverse(&src.grid.affine).ok_or_else(|| {
        VolumeError::new(
            "",
            VolumeErrorKind::SingularMatrix {
                which: "source affine",
            },
        )
    })?;
    let m = affine::mul(&inv, &target.affine);
    Ok(resample_index_map(src, target, &m, interp, border))
}

/// Resample with an explicit target-voxel → source-voxel affine `m`.
pub fn resample_index_map(
    src: &Volume,
    target: &Grid,
    m: &Mat4,
    interp: Interp,
    border: Border,
) -> Volume {
    let [tx, ty, _] = target.dims;
    let n_out = target.voxels();
    let mut out = vec![0f32; n_out * src.channels];
    let sampler = Sampler {
        dims: src.grid.dims,
        border,
    };
    for c in 0..src.channels {
        let data = src.channel(c);
        let dst = &mut out[c * n_out..(c + 1) * n_out];
        parallel::for_each_row(dst, tx.max(1), |row, line| {
            let (y, z) = (row % ty, row / ty);
            let base = affine::apply(m, [0.0, y as f64, z as f64]);
            let step = [m[0][0], m[1][0], m[2][0]];
            for (x, v) in line.iter_mut().enumerate() {
                let p = [
                    base[0] + step[0] * x as f64,
                    base[1] + step[1] * x as f64,
                    base[2] + step[2] * x as f64,
                ];
                *v = match interp {
                    Interp::Linear => sampler.linear(data, p),
                    Interp::Nearest => sampler.nearest(data, p),
                };
            }
        });
    }
    Volume {
        grid: target.clone(),
        channels: src.channels,
        data: out,
    }
}

/// Point sampling in one channel (z × y × x, x fastest) at fractional voxel indices.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    pub dims: [usize; 3],
    pub border: Border,
}

impl Sampler {
    #[inline]
    fn fetch(&self, data: &[f32], i: [i64; 3]) -> f32 {
        let d = self.dims;
        let inside = (0..3).all(|a| i[a] >= 0 && (i[a] as usize) < d[a]);
        if inside {
            data[(i[2] as usize * d[1] + i[1] as usize) * d[0] + i[0] as usize]
        } else {
            match self.border {
                Border::Constant(v) => v,
                Border::Clamp => {
                    let c = |a: usize| i[a].clamp(0, d[a] as i64 - 1) as usize;
                    data[(c(2) * d[1] + c(1)) * d[0] + c(0)]
                }
            }
        }
    }

    /// Trilinear interpolation at voxel coordinates `p` (x, y, z).
    #[inline]
    pub fn linear(&self, data: &[f32], p: [f64; 3]) -> f32 {
        if p.iter().any(|v| !v.is_finite()) {
            return match self.border {
                Border::Constant(v) => v,
                Border::Clamp => 0.0,
            };
        }
        let mut p = p;
        if self.border == Border::Clamp {
            for a in 0..3 {
                p[a] = p[a].clamp(0.0, (self.dims[a] - 1) as f64);
            }
        } else {
            // Entirely outside (beyond one voxel of the edge): all corners are border.
            if (0..3).any(|a| p[a] <= -1.0 || p[a] >= self.dims[a] as f64)
                && let Border::Constant(v) = self.border
            {
                return v;
            }
        }
        let f = [p[0].floor(), p[1].floor(), p[2].floor()];
        let w = [p[0] - f[0], p[1] - f[1], p[2] - f[2]];
        let i = [f[0] as i64, f[1] as i64, f[2] as i64];
        let mut acc = 0f64;
        for dz in 0..2 {
            let wz = if dz == 0 { 1.0 - w[2] } else { w[2] };
            if wz == 0.0 {
                continue;
            }
            for dy in 0..2 {
                let wy = if dy == 0 { 1.0 - w[1] } else { w[1] };
                if wy == 0.0 {
                    continue;
                }
                for dx in 0..2 {
                    let wx = if dx == 0 { 1.0 - w[0] } else { w[0] };
                    if wx == 0.0 {
                        continue;
                    }
                    let v = self.fetch(data, [i[0] + dx, i[1] + dy, i[2] + dz]);
                    acc += wx * wy * wz * f64::from(v);
                }
            }
        }
        acc as f32
    }

    /// Nearest-neighbour sample (rounding half up) at voxel coordinates `p`.
    #[inline]
    pub fn nearest(&self, data: &[f32], p: [f64; 3]) -> f32 {
        if p.iter().any(|v| !v.is_finite()) {
            return match self.border {
                Border::Constant(v) => v,
                Border::Clamp => 0.0,
            };
        }
        let r = |v: f64| (v + 0.5).floor().clamp(-1e9, 1e9) as i64;
        self.fetch(data, [r(p[0]), r(p[1]), r(p[2])])
    }
}
