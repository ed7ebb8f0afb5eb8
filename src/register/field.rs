//! Displacement fields on burn tensors.
//!
//! Layout: a scalar image is `[C, N]` (N = nx·ny·nz voxels, x fastest, as
//! [`crate::volume::Volume`] stores them); a displacement field is `[3, N]`
//! with components (x, y, z) = NIfTI's (i, j, k), in voxels of its grid.
//! A field `u` maps grid voxel p to p + u(p) (backward mapping: the warped
//! image is M(p + u(p))).
//!
//! Trilinear sampling is built from 8 `gather`s whose weights carry the
//! gradient with respect to the sampling points, and whose gathered values
//! carry it with respect to the sampled image (a scatter-add in backward),
//! so the same code serves image warping, field composition and
//! scaling-and-squaring, with autodiff on every backend.

use burn::tensor::{Device, Int, Tensor, TensorData};

/// Grid size in voxels along (x, y, z).
pub type Dims = [usize; 3];

pub fn voxels(dims: Dims) -> usize {
    dims[0] * dims[1] * dims[2]
}

/// What a sample outside the grid reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outside {
    /// Zero (images: methods.md "outside the volume → 0").
    Zero,
    /// The nearest edge voxel (fields: displacement continues past the edge).
    Clamp,
}

/// A `[rows, N]` tensor from row-major samples.
pub fn upload(data: Vec<f32>, rows: usize, device: &Device) -> Tensor<2> {
    let n = data.len() / rows.max(1);
    Tensor::from_data(TensorData::new(data, [rows, n]), device)
}

/// Voxel coordinates (x, y, z) of every voxel: `[3, N]`.
pub fn identity_grid(dims: Dims, device: &Device) -> Tensor<2> {
    let n = voxels(dims);
    let mut data = vec![0f32; 3 * n];
    for i in 0..n {
        let p = crate::volume::voxel_of(i, dims);
        for a in 0..3 {
            data[a * n + i] = p[a] as f32;
        }
    }
    upload(data, 3, device)
}

/// Apply a 3×4 matrix (rows: x, y, z) to `[3, N]` points or vectors
/// (`translate = false` drops the last column).
pub fn apply_matrix(m: &[[f64; 4]; 3], p: Tensor<2>, translate: bool) -> Tensor<2> {
    let rows: Vec<Tensor<2>> = p.split(1, 0);
    let out: Vec<Tensor<2>> = (0..3)
        .map(|r| {
            let mut acc = rows[0].clone().mul_scalar(m[r][0] as f32);
            acc = acc + rows[1].clone().mul_scalar(m[r][1] as f32);
            acc = acc + rows[2].clone().mul_scalar(m[r][2] as f32);
            if translate {
                acc = acc.add_scalar(m[r][3] as f32);
            }
            acc
        })
        .collect();
    Tensor::cat(out, 0)
}

/// Trilinear sample of `img` (`[C, N_src]` on a grid of `src` dims) at
/// `points` (`[3, N]`, voxel coordinates of that grid). Returns `[C, N]`.
pub fn sample_linear(img: Tensor<2>, src: Dims, points: Tensor<2>, outside: Outside) -> Tensor<2> {
    let c = img.dims()[0];
    let n = points.dims()[1];
    let axes: Vec<Tensor<2>> = points.split(1, 0);
    // Keep coordinates in a range where float → int is exact and the
    // gradient of the in-range part is untouched.
    let mut base = Vec::with_capacity(3);
    let mut frac = Vec::with_capacity(3);
    for (a, q) in axes.into_iter().enumerate() {
        let q = q.clamp(-2.0f32, src[a] as f32 + 1.0);
        let q0 = q.clone().detach().floor();
        frac.push(q - q0.clone());
        base.push(q0);
    }
    let mut acc: Option<Tensor<2>> = None;
    for corner in 0..8usize {
        let mut weight: Option<Tensor<2>> = None;
        let mut index: Option<Tensor<2, Int>> = None;
        let mut stride = 1i64;
        for a in 0..3 {
            let d = ((corner >> a) & 1) as f32;
            let pos = base[a].clone().add_scalar(d);
            let w_axis = if d == 1.0 {
                frac[a].clone()
            } else {
                frac[a].clone().neg().add_scalar(1.0)
            };
            let w_axis = match outside {
                Outside::Zero => {
                    let inside = pos
                        .clone()
                        .greater_equal_elem(0.0)
                        .float()
                        .mul(pos.clone().lower_equal_elem(src[a] as f32 - 1.0).float());
                    w_axis * inside
                }
                Outside::Clamp => w_axis,
            };
            let idx = pos
                .clamp(0.0f32, src[a] as f32 - 1.0)
                .int()
                .mul_scalar(stride);
            stride *= src[a] as i64;
            weight = Some(match weight {
                None => w_axis,
                Some(w) => w * w_axis,
            });
            index = Some(match index {
                None => idx,
                Some(i) => i + idx,
            });
        }
        let (Some(w), Some(i)) = (weight, index) else {
            unreachable!("three axes always set weight and index")
        };
        let values = img.clone().gather(1, i.expand([c, n]));
        let term = values * w;
        acc = Some(match acc {
            None => term,
            Some(s) => s + term,
        });
    }
    acc.unwrap_or_else(|| Tensor::zeros([c, n], &img.device()))
}

/// Nearest-neighbour sample (labels); zero outside. No gradient.
pub fn sample_nearest(img: Tensor<2>, src: Dims, points: Tensor<2>) -> Tensor<2> {
    let c = img.dims()[0];
    let n = points.dims()[1];
    let axes: Vec<Tensor<2>> = points.detach().split(1, 0);
    let mut inside: Option<Tensor<2>> = None;
    let mut index: Option<Tensor<2, Int>> = None;
    let mut stride = 1i64;
    for (a, q) in axes.into_iter().enumerate() {
        let r = q
            .clamp(-2.0f32, src[a] as f32 + 1.0)
            .add_scalar(0.5)
            .floor();
        let ok = r
            .clone()
            .greater_equal_elem(0.0)
            .float()
            .mul(r.clone().lower_equal_elem(src[a] as f32 - 1.0).float());
        let idx = r
            .clamp(0.0f32, src[a] as f32 - 1.0)
            .int()
            .mul_scalar(stride);
        stride *= src[a] as i64;
        inside = Some(match inside {
            None => ok,
            Some(s) => s * ok,
        });
        index = Some(match index {
            None => idx,
            Some(i) => i + idx,
        });
    }
    let (Some(ok), Some(i)) = (inside, index) else {
        unreachable!("three axes always set mask and index")
    };
    img.gather(1, i.expand([c, n])) * ok
}

/// Warp an image defined on the field's grid: `img(p + u(p))`.
pub fn warp(img: Tensor<2>, dims: Dims, u: Tensor<2>, grid: Tensor<2>) -> Tensor<2> {
    sample_linear(img, dims, grid + u, Outside::Zero)
}

/// Composition `(u ∘ v)(x) = v(x) + u(x + v(x))` of two fields on one grid
/// (apply v first, then u); u is read with clamped borders.
pub fn compose(u: Tensor<2>, v: Tensor<2>, dims: Dims, grid: Tensor<2>) -> Tensor<2> {
    v.clone() + sample_linear(u, dims, grid + v, Outside::Clamp)
}

/// The inverse of a displacement field by fixed-point iteration
/// v ← −u(x + v(x)), started at the first-order inverse −u. It converges
/// where the map is invertible and ‖∇u‖ < 1 (each step shrinks the error by
/// about that factor).
pub fn invert(u: Tensor<2>, dims: Dims, grid: Tensor<2>, iterations: usize) -> Tensor<2> {
    let mut v = u.clone().neg();
    for _ in 0..iterations {
        v = sample_linear(u.clone(), dims, grid.clone() + v, Outside::Clamp).neg();
    }
    v
}

/// Exponential of a stationary velocity field by scaling and squaring:
/// φ = exp(v) with `steps` squarings of v / 2^steps.
pub fn exp_velocity(v: Tensor<2>, dims: Dims, grid: Tensor<2>, steps: usize) -> Tensor<2> {
    let mut u = v.div_scalar(2f32.powi(steps as i32));
    for _ in 0..steps {
        u = compose(u.clone(), u, dims, grid.clone());
    }
    u
}

/// Resample a voxel displacement field from grid `from` to grid `to`, where
/// `to_from` maps `to` voxels to `from` voxels (an affine, e.g. a pyramid
/// level change). Vectors are mapped by the inverse linear part so the
/// physical displacement is kept.
pub fn resize(
    u: Tensor<2>,
    from: Dims,
    to: Dims,
    to_from: &[[f64; 4]; 3],
    from_to_linear: &[[f64; 4]; 3],
    device: &Device,
) -> Tensor<2> {
    let points = apply_matrix(to_from, identity_grid(to, device), true);
    let sampled = sample_linear(u, from, points, Outside::Clamp);
    apply_matrix(from_to_linear, sampled, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth field of up to 1.5 voxels (‖∇u‖ about 0.4).
    fn smooth_field(dims: Dims) -> Vec<f32> {
        let n = voxels(dims);
        let mut u = vec![0f32; 3 * n];
        for i in 0..n {
            let (x, y, z) = (
                (i % dims[0]) as f32,
                ((i / dims[0]) % dims[1]) as f32,
                (i / (dims[0] * dims[1])) as f32,
            );
            u[i] = 1.5 * (0.25 * y).sin();
            u[n + i] = 1.2 * (0.3 * z + 0.2 * x).cos();
            u[2 * n + i] = 0.8 * (0.2 * x).sin();
        }
        u
    }

    fn max_abs(t: Tensor<2>) -> f32 {
        t.into_data()
            .try_into_vec::<f32>()
            .expect("read")
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()))
    }

    /// v = invert(u) composes with u to the identity, away from the edges
    /// (where the clamped border decides): far closer than −u does.
    #[test]
    fn invert_undoes_the_field() {
        let dims = [20, 18, 16];
        let device = Device::flex();
        let grid = identity_grid(dims, &device);
        let u = upload(smooth_field(dims), 3, &device);
        let interior = |t: Tensor<2>| -> Tensor<2> {
            let n = voxels(dims);
            let keep: Vec<f32> = (0..n)
                .map(|i| {
                    let p = [
                        i % dims[0],
                        (i / dims[0]) % dims[1],
                        i / (dims[0] * dims[1]),
                    ];
                    let inside = (0..3).all(|a| p[a] >= 3 && p[a] + 3 < dims[a]);
                    f32::from(inside)
                })
                .collect();
            t * upload(keep, 1, &device)
        };
        let first = max_abs(interior(compose(
            u.clone().neg(),
            u.clone(),
            dims,
            grid.clone(),
        )));
        let v = invert(u.clone(), dims, grid.clone(), 10);
        let fixed_point = max_abs(interior(compose(v, u, dims, grid)));
        assert!(first > 0.3, "−u is a poor inverse here: {first}");
        assert!(
            fixed_point < 0.05,
            "round trip after inversion: {fixed_point}"
        );
    }
}
