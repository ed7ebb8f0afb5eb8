//! Regularisers on `[3, N]` displacement fields: each returns a scalar,
//! optionally weighted per voxel by a `[1, N]` map.

use burn::tensor::Tensor;

use super::field::{self, Dims};

/// Forward difference along `axis` (1 = z, 2 = y, 3 = x of `[C, z, y, x]`),
/// zero in the last slice so the result keeps the input's shape.
fn forward_diff(v: &Tensor<4>, axis: usize) -> Tensor<4> {
    let len = v.dims()[axis];
    if len < 2 {
        return v.zeros_like();
    }
    let d = v.clone().narrow(axis, 1, len - 1) - v.clone().narrow(axis, 0, len - 1);
    let mut pad = [(0usize, 0usize); 4];
    pad[axis] = (0, 1);
    d.pad(pad, burn::tensor::ops::PadMode::Constant(0.0))
}

/// Diffusive regulariser: Σ over components and axes of the squared forward
/// differences, averaged over voxels (mean ‖∇u‖²_F).
pub fn diffusion(u: Tensor<2>, dims: Dims, weight: Option<&Tensor<2>>) -> Tensor<1> {
    let [c, n] = u.dims();
    let [nx, ny, nz] = dims;
    let v: Tensor<4> = u.reshape([c, nz, ny, nx]);
    let mut sq: Option<Tensor<4>> = None;
    for axis in 1..4 {
        let d = forward_diff(&v, axis).square();
        sq = Some(match sq {
            None => d,
            Some(s) => s + d,
        });
    }
    let per_voxel: Tensor<2> = match sq {
        Some(s) => s.reshape([c, n]).sum_dim(0),
        None => Tensor::zeros([1, n], &v.device()),
    };
    match weight {
        Some(w) => (per_voxel * w.clone()).mean(),
        None => per_voxel.mean(),
    }
}

/// Central difference along `axis`, one-sided at the borders (as the
/// metrics module's Jacobian).
fn central_diff(v: &Tensor<4>, axis: usize) -> Tensor<4> {
    let len = v.dims()[axis];
    if len < 2 {
        return v.zeros_like();
    }
    let first = v.clone().narrow(axis, 1, 1) - v.clone().narrow(axis, 0, 1);
    let last = v.clone().narrow(axis, len - 1, 1) - v.clone().narrow(axis, len - 2, 1);
    if len == 2 {
        return Tensor::cat(vec![first, last], axis);
    }
    let inner =
        (v.clone().narrow(axis, 2, len - 2) - v.clone().narrow(axis, 0, len - 2)).div_scalar(2.0);
    Tensor::cat(vec![first, inner, last], axis)
}

/// det(I + ∇u) per voxel, `[1, N]`, in voxel units of the field's grid.
pub fn jacobian_det(u: Tensor<2>, dims: Dims) -> Tensor<2> {
    let [_, n] = u.dims();
    let [nx, ny, nz] = dims;
    let v: Tensor<4> = u.reshape([3, nz, ny, nx]);
    // g[c][a] = ∂u_c/∂x_a with a = x, y, z (tensor axes 3, 2, 1).
    let d: Vec<Tensor<4>> = [3usize, 2, 1]
        .iter()
        .map(|&ax| central_diff(&v, ax))
        .collect();
    let g = |c: usize, a: usize| -> Tensor<2> {
        let t = d[a].clone().narrow(0, c, 1).reshape([1, n]);
        if c == a { t.add_scalar(1.0) } else { t }
    };
    let m = |c: usize, a: usize| g(c, a);
    m(0, 0) * (m(1, 1) * m(2, 2) - m(1, 2) * m(2, 1))
        - m(0, 1) * (m(1, 0) * m(2, 2) - m(1, 2) * m(2, 0))
        + m(0, 2) * (m(1, 0) * m(2, 1) - m(1, 1) * m(2, 0))
}

/// Negative-Jacobian penalty: mean of max(0, −det J).
pub fn jacobian_penalty(u: Tensor<2>, dims: Dims, weight: Option<&Tensor<2>>) -> Tensor<1> {
    let neg = jacobian_det(u, dims).neg().clamp_min(0.0);
    match weight {
        Some(w) => (neg * w.clone()).mean(),
        None => neg.mean(),
    }
}

/// Inverse-consistency loss of a forward field `u` (fixed → moving) and a
/// backward field `v` (moving → fixed) on one grid: the mean squared norm of
/// both round trips, ‖u ∘ v‖² + ‖v ∘ u‖² (each ideally zero). Squared so the
/// gradient is smooth at zero.
pub fn inverse_consistency(u: Tensor<2>, v: Tensor<2>, dims: Dims, grid: Tensor<2>) -> Tensor<1> {
    let uv = field::compose(u.clone(), v.clone(), dims, grid.clone());
    let vu = field::compose(v, u, dims, grid);
    uv.square().sum_dim(0).mean() + vu.square().sum_dim(0).mean()
}

/// The round-trip error ‖(v ∘ u)(x)‖ per voxel (`[1, N]`, voxels): u then v.
pub fn round_trip_error(u: Tensor<2>, v: Tensor<2>, dims: Dims, grid: Tensor<2>) -> Tensor<2> {
    field::compose(v, u, dims, grid).square().sum_dim(0).sqrt()
}
