//! Fused CPU kernels for the hot path: sample the moving image at given
//! points (trilinear, zero outside), compare it with the fixed image (MSE or
//! local NCC) and return the value together with its analytic gradient with
//! respect to the sampling points — in a few passes over memory instead of
//! the dozens of tensor operations (and their backward) of the composed path.
//!
//! They serve two ways: through a linear surrogate that plugs them into
//! autodiff (see [`crate::register::loss::surrogate`]), so whatever produced
//! the points (an affine matrix, a dense field, an integrated velocity
//! field) receives the exact gradient; and inside the native CPU optimiser
//! of dense fields ([`crate::register::stages::native`]). The composed
//! tensor path stays the reference; tests check both agree and match finite
//! differences.
//!
//! Definitions are identical to the composed ones: the same clamping of
//! sampling points, zero-padded box windows, flat-window rule and
//! stabiliser, and mean over channels and voxels of the weighted term.

use std::ops::Range;

use crate::parallel;

use super::field::Dims;
use super::loss::{FLAT_VAR, LOCAL_EPS};

/// A raw pointer that several threads write through at disjoint indices.
#[derive(Clone, Copy)]
pub struct Shared(*mut f32);
// SAFETY: every user writes disjoint index sets from different threads.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    pub fn new(v: &mut [f32]) -> Self {
        Shared(v.as_mut_ptr())
    }
    /// # Safety
    /// `i` is in bounds of the slice this was made from, and no other
    /// thread touches index `i` at the same time.
    #[inline]
    pub unsafe fn write(self, i: usize, v: f32) {
        unsafe { *self.0.add(i) = v }
    }
    /// # Safety
    /// As [`Shared::write`].
    #[inline]
    pub unsafe fn read(self, i: usize) -> f32 {
        unsafe { *self.0.add(i) }
    }
}

/// Split `0..n` into one contiguous block per core and run `f` on each;
/// returns the blocks' results in order.
pub fn par_blocks<T: Send>(n: usize, f: impl Fn(Range<usize>) -> T + Sync) -> Vec<T> {
    let workers = if n < 64 {
        1
    } else {
        parallel::threads().min(n)
    };
    if workers <= 1 {
        return vec![f(0..n)];
    }
    let per = n.div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let f = &f;
                s.spawn(move || f(w * per..((w + 1) * per).min(n)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            })
            .collect()
    })
}

/// Trilinear sample of every channel at `points` ([3, N], x/y/z rows) into
/// `values` ([C, N]) and the derivative along each axis into `deriv`
/// ([C, 3, N]).
pub fn sample_into(
    moving: &[f32],
    channels: usize,
    src: Dims,
    points: &[f32],
    values: &mut [f32],
    deriv: &mut [f32],
) {
    let n = points.len() / 3;
    let m = src[0] * src[1] * src[2];
    let (vp, dp) = (Shared::new(values), Shared::new(deriv));
    let (sx, sy) = (src[0], src[0] * src[1]);
    par_blocks(n, |range| {
        for i in range {
            let mut q = [0f32; 3];
            let mut live = [1f32; 3];
            for a in 0..3 {
                let v = points[a * n + i];
                let (lo, hi) = (-2.0f32, src[a] as f32 + 1.0);
                // Clamped coordinates have no gradient (as the composed path).
                if !(v > lo && v < hi) {
                    live[a] = 0.0;
                }
                q[a] = v.clamp(lo, hi);
            }
            // q ≥ −2 after the clamp, so truncation of q + 2 is the floor.
            let b = [
                (q[0] + 2.0) as i64 - 2,
                (q[1] + 2.0) as i64 - 2,
                (q[2] + 2.0) as i64 - 2,
            ];
            let t = [q[0] - b[0] as f32, q[1] - b[1] as f32, q[2] - b[2] as f32];
            let w = [[1.0 - t[0], t[0]], [1.0 - t[1], t[1]], [1.0 - t[2], t[2]]];
            let interior = (0..3).all(|a| b[a] >= 0 && b[a] + 1 < src[a] as i64);
            // Per axis: is each of the two corners inside, and its offset.
            let mut ok = [[true; 2]; 3];
            let mut off = [[0usize; 2]; 3];
            let strides = [1usize, sx, sy];
            for a in 0..3 {
                for d in 0..2 {
                    let p = b[a] + d as i64;
                    if !interior {
                        ok[a][d] = p >= 0 && p < src[a] as i64;
                    }
                    off[a][d] = if ok[a][d] { p as usize * strides[a] } else { 0 };
                }
            }
            for c in 0..channels {
                let img = &moving[c * m..(c + 1) * m];
                let mut val = 0f32;
                let mut d = [0f32; 3];
                for dz in 0..2 {
                    if !ok[2][dz] {
                        continue;
                    }
                    for dy in 0..2 {
                        if !ok[1][dy] {
                            continue;
                        }
                        let row = off[2][dz] + off[1][dy];
                        // The two x neighbours, zero outside.
                        let (v0, v1) = if interior {
                            // SAFETY: interior points have all 8 corners in the grid.
                            unsafe {
                                (
                                    *img.get_unchecked(row + off[0][0]),
                                    *img.get_unchecked(row + off[0][1]),
                                )
                            }
                        } else {
                            (
                                if ok[0][0] { img[row + off[0][0]] } else { 0.0 },
                                if ok[0][1] { img[row + off[0][1]] } else { 0.0 },
                            )
                        };
                        let wyz = w[1][dy] * w[2][dz];
                        let vx = v0 * w[0][0] + v1 * w[0][1];
                        val += vx * wyz;
                        d[0] += (v1 - v0) * wyz;
                        let sy = if dy == 1 { 1.0 } else { -1.0 };
                        let sz = if dz == 1 { 1.0 } else { -1.0 };
                        d[1] += vx * sy * w[2][dz];
                        d[2] += vx * w[1][dy] * sz;
                    }
                }
                // SAFETY: index i belongs to this block only.
                unsafe {
                    vp.write(c * n + i, val);
                    for a in 0..3 {
                        dp.write((c * 3 + a) * n + i, d[a] * live[a]);
                    }
                }
            }
        }
    });
}

/// Box sum over a `window`³ cube with zero padding, in place: three
/// separable passes of direct sums (exactly the composed path's shifted
/// copies, without a running sum's accumulated rounding), each streaming
/// over contiguous memory. `scratch` is resized to N and swapped with
/// `data` (no copy back).
pub fn box_sum(data: &mut Vec<f32>, dims: Dims, window: usize, scratch: &mut Vec<f32>) {
    let r = window / 2;
    if r == 0 {
        return;
    }
    let [nx, ny, nz] = dims;
    scratch.resize(data.len(), 0.0);
    // x: within each row.
    {
        let src = &*data;
        let dst = Shared::new(scratch);
        par_blocks(ny * nz, |rows| {
            for row in rows {
                let line = &src[row * nx..(row + 1) * nx];
                for k in 0..nx {
                    let lo = k.saturating_sub(r);
                    let hi = (k + r).min(nx - 1);
                    let s: f32 = line[lo..=hi].iter().sum();
                    // SAFETY: row `row` belongs to this block only.
                    unsafe { dst.write(row * nx + k, s) };
                }
            }
        });
    }
    // y, then z: whole x-lines at once (contiguous, vectorisable).
    sum_lines(scratch, Shared::new(data), nx, ny, nz, nx * ny, nx, r);
    sum_lines(data, Shared::new(scratch), nx, nz, ny, nx, nx * ny, r);
    std::mem::swap(data, scratch);
}

/// One box pass along an axis whose x-lines start at
/// `o·outer_stride + i·axis_stride` (o < `outer`, i < `len`): each output
/// line is the sum of the input lines i − r ..= i + r (zero padding).
#[allow(clippy::too_many_arguments)]
fn sum_lines(
    src: &[f32],
    dst: Shared,
    nx: usize,
    len: usize,
    outer: usize,
    outer_stride: usize,
    axis_stride: usize,
    r: usize,
) {
    par_blocks(outer * len, |lines| {
        let mut acc = vec![0f32; nx];
        for line in lines {
            let (o, i) = (line / len, line % len);
            acc.iter_mut().for_each(|v| *v = 0.0);
            for k in i.saturating_sub(r)..=(i + r).min(len - 1) {
                let start = o * outer_stride + k * axis_stride;
                acc.iter_mut()
                    .zip(&src[start..start + nx])
                    .for_each(|(a, b)| *a += b);
            }
            let base = o * outer_stride + i * axis_stride;
            for (x, v) in acc.iter().enumerate() {
                // SAFETY: output line (o, i) belongs to this block only.
                unsafe { dst.write(base + x, *v) };
            }
        }
    });
}

/// Value and gradient with respect to the points ([3, N]) or parameters.
pub struct SimGrad {
    pub value: f64,
    pub grad: Vec<f32>,
}

/// Chain dL/dI ([C, N]) through the sampling derivatives into dL/dq ([3, N]).
pub fn chain_to_points(dl_di: &[f32], deriv: &[f32], channels: usize, n: usize, out: &mut [f32]) {
    chain_scaled(dl_di, deriv, channels, n, [1.0; 3], out)
}

/// As [`chain_to_points`], each axis multiplied by `scale[a]` (dq/dθ).
pub fn chain_scaled(
    dl_di: &[f32],
    deriv: &[f32],
    channels: usize,
    n: usize,
    scale: [f32; 3],
    out: &mut [f32],
) {
    let op = Shared::new(out);
    par_blocks(n, |range| {
        for i in range {
            for a in 0..3 {
                let mut g = 0f32;
                for c in 0..channels {
                    g += dl_di[c * n + i] * deriv[(c * 3 + a) * n + i];
                }
                // SAFETY: index a·n + i belongs to this block only.
                unsafe { op.write(a * n + i, g * scale[a]) };
            }
        }
    });
}

/// Mean over channels and voxels of w·(I − J)²; adds `scale`·dL/dI to `dl_di`.
pub fn mse_into(
    warped: &[f32],
    fixed: &[f32],
    weight: Option<&[f32]>,
    n: usize,
    scale: f32,
    dl_di: &mut [f32],
) -> f64 {
    let total = warped.len();
    let k = 2.0 / total as f32 * scale;
    let dp = Shared::new(dl_di);
    let parts = par_blocks(total, |range| {
        let mut s = 0f64;
        for j in range {
            let w = weight.map_or(1.0, |w| w[j % n]);
            let d = warped[j] - fixed[j];
            s += (w * d * d) as f64;
            // SAFETY: index j belongs to this block only.
            unsafe { dp.write(j, dp.read(j) + k * w * d) };
        }
        s
    });
    parts.iter().sum::<f64>() / total as f64
}

/// Window means of the fixed image, reused across iterations of a level.
pub struct FixedStats {
    /// Per channel: window mean and window variance of the fixed image.
    pub mean: Vec<Vec<f32>>,
    pub var: Vec<Vec<f32>>,
}

impl FixedStats {
    pub fn new(fixed: &[f32], channels: usize, dims: Dims, window: usize) -> Self {
        let n = fixed.len() / channels.max(1);
        let inv = 1.0 / (window * window * window) as f32;
        let mut mean = Vec::new();
        let mut var = Vec::new();
        for c in 0..channels {
            let b = &fixed[c * n..(c + 1) * n];
            let mut m = b.to_vec();
            let mut mm: Vec<f32> = b.iter().map(|v| v * v).collect();
            let mut scratch = Vec::new();
            box_sum(&mut m, dims, window, &mut scratch);
            box_sum(&mut mm, dims, window, &mut scratch);
            for i in 0..n {
                m[i] *= inv;
                mm[i] = mm[i] * inv - m[i] * m[i];
            }
            mean.push(m);
            var.push(mm);
        }
        FixedStats { mean, var }
    }
}

/// Scratch buffers for [`lncc_into`] (N floats each), kept between calls.
#[derive(Default)]
pub struct LnccScratch {
    bufs: [Vec<f32>; 7],
    boxes: Vec<f32>,
}

/// 1 − local NCC (as [`crate::register::loss::local_ncc`]); adds
/// `scale`·dL/dI to `dl_di`. Returns the value.
#[allow(clippy::too_many_arguments)]
pub fn lncc_into(
    warped: &[f32],
    fixed: &[f32],
    stats: &FixedStats,
    dims: Dims,
    window: usize,
    weight: Option<&[f32]>,
    scale: f32,
    dl_di: &mut [f32],
    scratch: &mut LnccScratch,
) -> f64 {
    let channels = stats.mean.len();
    let n = warped.len() / channels.max(1);
    let inv = 1.0 / (window * window * window) as f32;
    let total = (channels * n) as f64;
    for b in scratch.bufs.iter_mut() {
        b.resize(n, 0.0);
    }
    let mut value = 0f64;
    for c in 0..channels {
        let a = &warped[c * n..(c + 1) * n];
        let b = &fixed[c * n..(c + 1) * n];
        let (mb, var_b) = (&stats.mean[c], &stats.var[c]);
        let [ma, maa, mab, coef_a, coef_b, a_mb, b_ma] = &mut scratch.bufs;
        let tmp = &mut scratch.boxes;
        {
            let (p1, p2, p3) = (Shared::new(ma), Shared::new(maa), Shared::new(mab));
            par_blocks(n, |range| {
                for i in range {
                    // SAFETY: index i belongs to this block only.
                    unsafe {
                        p1.write(i, a[i]);
                        p2.write(i, a[i] * a[i]);
                        p3.write(i, a[i] * b[i]);
                    }
                }
            });
        }
        box_sum(ma, dims, window, tmp);
        box_sum(maa, dims, window, tmp);
        box_sum(mab, dims, window, tmp);
        // Per window: A = w·cov/D, B = w·cov²·var_b/D² (0 where flat).
        let ptrs = [
            Shared::new(coef_a),
            Shared::new(coef_b),
            Shared::new(a_mb),
            Shared::new(b_ma),
        ];
        let (ma, maa, mab) = (&*ma, &*maa, &*mab);
        let parts = par_blocks(n, |range| {
            let mut s = 0f64;
            for i in range {
                let (mut ca, mut cb) = (0f32, 0f32);
                let m_a = ma[i] * inv;
                if var_b[i] > FLAT_VAR {
                    let w = weight.map_or(1.0, |w| w[i]);
                    let cov = mab[i] * inv - m_a * mb[i];
                    let var_a = (maa[i] * inv - m_a * m_a).max(0.0);
                    let d = var_a * var_b[i].max(0.0) + LOCAL_EPS;
                    let cc = cov * cov / d;
                    s += (w * (1.0 - cc)) as f64;
                    ca = w * cov / d;
                    cb = w * cov * cov * var_b[i] / (d * d);
                }
                // SAFETY: index i belongs to this block only.
                unsafe {
                    ptrs[0].write(i, ca);
                    ptrs[1].write(i, cb);
                    ptrs[2].write(i, ca * mb[i]);
                    ptrs[3].write(i, cb * m_a);
                }
            }
            s
        });
        value += parts.iter().sum::<f64>();
        for buf in [&mut *coef_a, &mut *coef_b, &mut *a_mb, &mut *b_ma] {
            box_sum(buf, dims, window, tmp);
        }
        // dL/dI(y) = −2/(n_w·C·N) Σ_windows [A (J(y) − mJ) − B (I(y) − mI)].
        let k = (-2.0 * inv as f64 / total) as f32 * scale;
        let dp = Shared::new(&mut dl_di[c * n..(c + 1) * n]);
        let (coef_a, coef_b, a_mb, b_ma) = (&*coef_a, &*coef_b, &*a_mb, &*b_ma);
        par_blocks(n, |range| {
            for i in range {
                let g = k * (b[i] * coef_a[i] - a_mb[i] - a[i] * coef_b[i] + b_ma[i]);
                // SAFETY: index i belongs to this block only.
                unsafe { dp.write(i, dp.read(i) + g) };
            }
        });
    }
    value / total
}

/// Sample `moving` at `points`, let `compare` fill dL/dI ([C, N]) from the
/// warped image and return the value, and chain the result to dL/dpoints.
fn sampled(
    moving: &[f32],
    channels: usize,
    src: Dims,
    points: &[f32],
    compare: impl FnOnce(&[f32], &mut [f32]) -> f64,
) -> SimGrad {
    let n = points.len() / 3;
    let mut warped = vec![0f32; channels * n];
    let mut deriv = vec![0f32; channels * 3 * n];
    sample_into(moving, channels, src, points, &mut warped, &mut deriv);
    let mut dl = vec![0f32; channels * n];
    let value = compare(&warped, &mut dl);
    let mut grad = vec![0f32; 3 * n];
    chain_to_points(&dl, &deriv, channels, n, &mut grad);
    SimGrad { value, grad }
}

/// MSE of `moving` sampled at `points` against `fixed`, with dL/dpoints.
pub fn mse(
    moving: &[f32],
    fixed: &[f32],
    channels: usize,
    src: Dims,
    points: &[f32],
    weight: Option<&[f32]>,
) -> SimGrad {
    let n = points.len() / 3;
    sampled(moving, channels, src, points, |warped, dl| {
        mse_into(warped, fixed, weight, n, 1.0, dl)
    })
}

/// 1 − local NCC of `moving` sampled at `points` against `fixed`, with dL/dpoints.
#[allow(clippy::too_many_arguments)]
pub fn local_ncc(
    moving: &[f32],
    fixed: &[f32],
    channels: usize,
    dims: Dims,
    src: Dims,
    points: &[f32],
    window: usize,
    weight: Option<&[f32]>,
) -> SimGrad {
    let stats = FixedStats::new(fixed, channels, dims, window);
    sampled(moving, channels, src, points, |warped, dl| {
        let mut scratch = LnccScratch::default();
        lncc_into(
            warped,
            fixed,
            &stats,
            dims,
            window,
            weight,
            1.0,
            dl,
            &mut scratch,
        )
    })
}

/// Diffusion regulariser (as [`crate::register::regularize::diffusion`]):
/// mean over voxels of w(v)·Σ_c Σ_a (θ_c(v + e_a) − θ_c(v))²; adds
/// `scale`·dL/dθ to `grad` ([3, N]). Returns the value.
pub fn diffusion_into(
    theta: &[f32],
    dims: Dims,
    weight: Option<&[f32]>,
    scale: f32,
    grad: &mut [f32],
) -> f64 {
    let n = dims[0] * dims[1] * dims[2];
    let [nx, ny, nz] = dims;
    let k = 2.0 / n as f32 * scale;
    let gp = Shared::new(grad);
    // Blocks of whole z-slices; a voxel's gradient gathers from its own
    // forward and backward pairs, so each block writes only its own voxels.
    let slices = par_blocks(nz, |zs| {
        let mut value = 0f64;
        for z in zs {
            for y in 0..ny {
                for x in 0..nx {
                    let v = (z * ny + y) * nx + x;
                    let w = weight.map_or(1.0, |w| w[v]);
                    for c in 0..3 {
                        let t = &theta[c * n..(c + 1) * n];
                        let mut g = 0f32;
                        // Pairs (v, v + e_a): v's own term.
                        for (inside, st) in
                            [(x + 1 < nx, 1), (y + 1 < ny, nx), (z + 1 < nz, nx * ny)]
                        {
                            if inside {
                                let d = t[v + st] - t[v];
                                value += (w * d * d) as f64;
                                g -= k * w * d;
                            }
                        }
                        // Pairs (v − e_a, v): the neighbour's term.
                        for (inside, st) in [(x > 0, 1), (y > 0, nx), (z > 0, nx * ny)] {
                            if inside {
                                let u = v - st;
                                let wu = weight.map_or(1.0, |w| w[u]);
                                g += k * wu * (t[v] - t[u]);
                            }
                        }
                        // SAFETY: voxel v (all components) belongs to this block.
                        unsafe { gp.write(c * n + v, gp.read(c * n + v) + g) };
                    }
                }
            }
        }
        value
    });
    slices.iter().sum::<f64>() / n as f64
}

/// Native [`crate::register::field::resize`]: trilinear resampling of a
/// [3, N] voxel field from grid `from` onto grid `to` (clamped at the
/// edges), `to_from` mapping `to` voxels to `from` voxels and `vectors`
/// (its linear part is used) mapping the vectors.
pub fn resize_field(
    u: &[f32],
    from: Dims,
    to: Dims,
    to_from: &[[f64; 4]; 3],
    vectors: &[[f64; 4]; 3],
) -> Vec<f32> {
    let n_from = from[0] * from[1] * from[2];
    let n = to[0] * to[1] * to[2];
    let mut out = vec![0f32; 3 * n];
    let op = Shared::new(&mut out);
    par_blocks(n, |range| {
        for i in range {
            let p = crate::volume::voxel_of(i, to);
            let mut lo = [0usize; 3];
            let mut hi = [0usize; 3];
            let mut t = [0f32; 3];
            for a in 0..3 {
                let q = to_from[a][0] * p[0]
                    + to_from[a][1] * p[1]
                    + to_from[a][2] * p[2]
                    + to_from[a][3];
                let q = q.clamp(0.0, (from[a] - 1) as f64);
                let f = q.floor();
                lo[a] = f as usize;
                hi[a] = (lo[a] + 1).min(from[a] - 1);
                t[a] = (q - f) as f32;
            }
            let mut v = [0f32; 3];
            for c in 0..3 {
                let comp = &u[c * n_from..(c + 1) * n_from];
                let at = |x: usize, y: usize, z: usize| comp[(z * from[1] + y) * from[0] + x];
                let mut s = 0f32;
                for (z, wz) in [(lo[2], 1.0 - t[2]), (hi[2], t[2])] {
                    for (y, wy) in [(lo[1], 1.0 - t[1]), (hi[1], t[1])] {
                        s += wz * wy * (at(lo[0], y, z) * (1.0 - t[0]) + at(hi[0], y, z) * t[0]);
                    }
                }
                v[c] = s;
            }
            for r in 0..3 {
                let w = vectors[r][0] * v[0] as f64
                    + vectors[r][1] * v[1] as f64
                    + vectors[r][2] * v[2] as f64;
                // SAFETY: voxel i belongs to this block only.
                unsafe { op.write(r * n + i, w as f32) };
            }
        }
    });
    out
}
