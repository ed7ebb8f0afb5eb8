//! The gradient parametrisation (methods.md §5, MICS), made fold-free by
//! construction: the parameter is the logarithm of the map's derivative
//! along each axis, so the derivative exp(p) > 0 and each axis's 1-D map
//! keeps the voxels' order along its lines (its position is the cumulative
//! sum of the derivatives, centred so that the identity is p = 0). The
//! three 1-D maps are composed, z, then y, then x, rather than added: each
//! one moves a single coordinate, so its Jacobian is triangular with the
//! positive derivative on the diagonal, and the Jacobian of the composition
//! is the product of three matrices of positive determinant. Summed into
//! one field instead (per-axis cumulative sums side by side), the cross
//! derivatives are free and the map folds by shear between lines.

use burn::tensor::{Tensor, TensorData};

use super::Level;
use super::field::{self, Dims, Outside};

/// One axis's 1-D map: the displacement along `axis` of the map whose
/// derivative along that axis is exp(`p`) (`[1, N]`), centred per line.
fn along(p: Tensor<2>, dims: Dims, axis: usize) -> Tensor<2> {
    let [nx, ny, nz] = dims;
    let g: Tensor<3> = p.exp().reshape([nz, ny, nx]);
    // Axis x is the last tensor dimension, z the first.
    let dim = 2 - axis;
    // Voxel i's centre sits at the sum of the derivatives before it plus
    // half its own, minus ½: i itself when every derivative is 1.
    let centre = (g.clone().cumsum(dim) - g.mul_scalar(0.5)).sub_scalar(0.5);
    let index: Tensor<3> = {
        let n = [nx, ny, nz][axis];
        let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let i = Tensor::<1>::from_data(TensorData::new(values, [n]), &centre.device());
        let shape = match axis {
            0 => [1, 1, n],
            1 => [1, n, 1],
            _ => [n, 1, 1],
        };
        i.reshape(shape).expand([nz, ny, nx])
    };
    let u = centre - index;
    // Each line keeps its mean position: a line's shift comes from the
    // stretch of its ends, as in an image whose lines span the background.
    let mean = u.clone().mean_dim(dim);
    (u - mean).reshape([1, nx * ny * nz])
}

/// The displacement (voxels of `level`) of the map whose log-derivatives
/// along x, y and z are the rows of `p` (`[3, N]`).
pub fn displacement(p: Tensor<2>, level: &Level) -> Tensor<2> {
    let dims = level.dims();
    let n = level.grid.voxels();
    let device = p.device();
    let zero = || Tensor::<2>::zeros([1, n], &device);
    let axis_field = |a: usize| {
        let u = along(p.clone().narrow(0, a, 1), dims, a);
        let rows: Vec<Tensor<2>> = (0..3)
            .map(|c| if c == a { u.clone() } else { zero() })
            .collect();
        Tensor::cat(rows, 0)
    };
    let grid = level.identity.clone();
    let zy = field::compose(axis_field(1), axis_field(2), dims, grid.clone());
    field::compose(axis_field(0), zy, dims, grid)
}

/// Log-derivatives on `from`'s grid brought onto `to`'s: resampled as
/// scalars (a stretch factor does not scale with the voxel size).
pub fn resize(p: Tensor<2>, from: &Level, to: &Level) -> Tensor<2> {
    let Some((to_from, _)) = crate::register::stages::deformable::level_maps(&from.grid, &to.grid)
    else {
        return Tensor::zeros([3, to.grid.voxels()], &to.identity.device());
    };
    let points = field::apply_matrix(&to_from, to.identity.clone(), true);
    field::sample_linear(p, from.dims(), points, Outside::Clamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    /// Each axis's map keeps the order of the voxels along its lines, for
    /// rough log-derivatives (derivatives from e^-2 to e^2), and p = 0 is
    /// the identity.
    #[test]
    fn each_axis_map_keeps_the_order_along_its_lines() {
        let device = Device::flex();
        let dims = [7, 6, 5];
        let n = 7 * 6 * 5;
        let rough: Vec<f32> = (0..n)
            .map(|i| (((i * 7919) % 97) as f32 / 97.0) * 4.0 - 2.0)
            .collect();
        for axis in 0..3 {
            let p = Tensor::<2>::from_data(TensorData::new(rough.clone(), [1, n]), &device);
            let u = along(p, dims, axis)
                .into_data()
                .try_into_vec::<f32>()
                .expect("read");
            let stride = [1, dims[0], dims[0] * dims[1]][axis];
            for i in 0..n {
                let c = [
                    i % dims[0],
                    (i / dims[0]) % dims[1],
                    i / (dims[0] * dims[1]),
                ];
                if c[axis] + 1 < dims[axis] {
                    // Position = index + displacement: strictly increasing.
                    let here = c[axis] as f32 + u[i];
                    let next = (c[axis] + 1) as f32 + u[i + stride];
                    assert!(next > here, "axis {axis}, voxel {i}: {here} then {next}");
                }
            }
            let zero = Tensor::<2>::zeros([1, n], &device);
            let still = along(zero, dims, axis).abs().max().into_scalar::<f32>();
            assert!(still < 1e-5, "p = 0 moves by {still}");
        }
    }
}
