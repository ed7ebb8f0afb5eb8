//! Normalised cross-correlation, global and local (cubic window).

use burn::tensor::Tensor;

use super::weighted_mean;
use crate::register::field::Dims;

/// Stabiliser in the denominators: a constant patch has zero variance, and
/// its correlation is taken as 0 (no information) rather than NaN.
const EPS: f32 = 1e-5;

/// 1 − NCC per channel (Pearson correlation over the volume), averaged over
/// channels. With a weight map the moments are weighted.
pub fn ncc(warped: Tensor<2>, fixed: Tensor<2>, weight: Option<&Tensor<2>>) -> Tensor<1> {
    let (a, b) = (warped, fixed);
    let [c, n] = a.dims();
    let w = match weight {
        Some(w) => w.clone().expand([c, n]),
        None => Tensor::ones([c, n], &a.device()),
    };
    let wsum = w.clone().sum_dim(1).add_scalar(EPS);
    let mean_a = (a.clone() * w.clone()).sum_dim(1) / wsum.clone();
    let mean_b = (b.clone() * w.clone()).sum_dim(1) / wsum.clone();
    let da = a - mean_a;
    let db = b - mean_b;
    let cov = (da.clone() * db.clone() * w.clone()).sum_dim(1);
    let va = (da.square() * w.clone()).sum_dim(1);
    let vb = (db.square() * w).sum_dim(1);
    let r = cov / (va * vb).add_scalar(EPS * EPS).sqrt();
    r.neg().add_scalar(1.0).mean()
}

/// Box sum over a cube of `window` voxels (zero padding), separable: for
/// each axis, the sum of `window` shifted copies.
pub fn box_sum(t: Tensor<2>, dims: Dims, window: usize) -> Tensor<2> {
    let [c, n] = t.dims();
    let [nx, ny, nz] = dims;
    let r = window / 2;
    let mut v: Tensor<4> = t.reshape([c, nz, ny, nx]);
    for axis in 1..4 {
        let len = v.dims()[axis];
        let mut pad = [(0usize, 0usize); 4];
        pad[axis] = (r, r);
        let padded = v.pad(pad, burn::tensor::ops::PadMode::Constant(0.0));
        let mut acc = padded.clone().narrow(axis, 0, len);
        for k in 1..(2 * r + 1) {
            acc = acc + padded.clone().narrow(axis, k, len);
        }
        v = acc;
    }
    v.reshape([c, n])
}

/// Local NCC guards, in intensity variance units of the engine's [0, 1]
/// normalised images. A window where the *target* (fixed) image is flat
/// (variance below `FLAT_VAR`, i.e. a standard deviation under 0.3 % of the
/// range: background, or noise after pyramid smoothing) carries no
/// information and is left out (adds 0); elsewhere the denominator's
/// stabiliser is negligible. A larger additive stabiliser (VoxelMorph's
/// 1e-5 on window sums) biases the optimum: it rewards warps that raise the
/// warped image's variance in low-contrast windows, so even identical images
/// registered away from the identity (measured: a 2.5 % shrink at the 8 mm
/// level of brain2mm_syn).
pub const FLAT_VAR: f32 = 1e-5;
pub const LOCAL_EPS: f32 = 1e-12;

/// 1 − local NCC: the squared correlation of each `window`³ neighbourhood
/// (VoxelMorph's form, cov² / (var_a · var_b), with window means), averaged
/// over voxels and channels. Windows are clipped at the volume's edge (zero
/// padding, the voxel count kept at window³, as VoxelMorph does).
pub fn local_ncc(
    warped: Tensor<2>,
    fixed: Tensor<2>,
    dims: Dims,
    window: usize,
    weight: Option<&Tensor<2>>,
) -> Tensor<1> {
    let (a, b) = (warped, fixed);
    let inv = 1.0 / (window * window * window) as f32;
    let mean = |t: Tensor<2>| box_sum(t, dims, window).mul_scalar(inv);
    let ma = mean(a.clone());
    let mb = mean(b.clone());
    let maa = mean(a.clone().square());
    let mbb = mean(b.clone().square());
    let mab = mean(a * b);
    let cov = mab - ma.clone() * mb.clone();
    let var_a = maa - ma.square();
    let var_b = mbb - mb.square();
    let informative = var_b.clone().detach().greater_elem(FLAT_VAR).float();
    let cc = cov.square() / (var_a.clamp_min(0.0) * var_b.clamp_min(0.0)).add_scalar(LOCAL_EPS);
    weighted_mean(cc.neg().add_scalar(1.0) * informative, weight)
}
