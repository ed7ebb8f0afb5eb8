//! Affine instance optimisation (methods.md §1 step 2).
//!
//! The parameter is the 3×4 matrix M acting on normalised coordinates of
//! the full-resolution fixed grid (centre 0, half-extent 1 per axis, as
//! PyTorch's `affine_grid`), initialised to the identity. Every pyramid
//! level maps its voxels into those coordinates exactly, so the matrix
//! carries over between levels unchanged.

use burn::tensor::{Tensor, TensorData};

use super::native;
use crate::register::Level;
use crate::register::field;
use crate::register::loss::{Sampling, similarity_at};
use crate::register::session::{Halt, Loss, Place, Runner};
use crate::volume::Grid;
use crate::volume::affine::{self, Mat4};

pub struct AffineResult {
    /// Fixed voxel → fixed-grid voxel of the moving image, full resolution.
    pub matrix: Option<Mat4>,
    pub halt: Option<Halt>,
}

/// Normalised coordinates of the full-resolution grid: x̂ = (p − c) / h.
pub fn normaliser(dims: [usize; 3]) -> Mat4 {
    let mut n = affine::IDENTITY;
    for a in 0..3 {
        let c = (dims[a] as f64 - 1.0) / 2.0;
        let h = c.max(0.5);
        n[a][a] = 1.0 / h;
        n[a][3] = -c / h;
    }
    n
}

fn rows(m: &Mat4) -> [[f64; 4]; 3] {
    [m[0], m[1], m[2]]
}

/// A level's voxels in the normalised coordinates of the full-resolution
/// grid and back: x̂ = `into`·p and p = `back`·x̂ (level voxel → full voxel
/// → normalised), as 3×4 rows.
pub fn level_frames(full: &Grid, level: &Grid) -> Option<(affine::Rows, affine::Rows)> {
    let norm = normaliser(full.dims);
    let to_full = affine::mul(&affine::inverse(&full.affine)?, &level.affine);
    let from_full = affine::inverse(&to_full)?;
    let norm_inv = affine::inverse(&norm)?;
    Some((
        rows(&affine::mul(&norm, &to_full)),
        rows(&affine::mul(&from_full, &norm_inv)),
    ))
}

/// The full-resolution voxel matrix of the parameter `delta` (M = [I|0] + delta).
pub fn voxel_matrix(delta: &[f32], full_dims: [usize; 3]) -> Option<Mat4> {
    let n = normaliser(full_dims);
    let n_inv = affine::inverse(&n)?;
    let mut m = affine::IDENTITY;
    for r in 0..3 {
        for k in 0..4 {
            m[r][k] += delta[r * 4 + k] as f64;
        }
    }
    Some(affine::mul(&n_inv, &affine::mul(&m, &n)))
}

pub fn run(runner: &mut Runner, lv: &[Level]) -> AffineResult {
    let p = runner.pipeline.affine.clone();
    let device = runner.device.clone();
    let full = lv[0].grid.clone();
    let shift = crate::register::level_shift(&runner.pipeline, &full);
    let order = crate::register::affine_order(&runner.pipeline, shift, lv.len());
    let mut delta = Tensor::<2>::zeros([3, 4], &device);
    let base = Tensor::<2>::from_data(
        TensorData::new(
            vec![1f32, 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0.],
            [3, 4],
        ),
        &device,
    );
    let mut halt = None;
    for (i, &k) in order.iter().enumerate() {
        let level = &lv[k];
        let dims = level.dims();
        let Some((into, back)) = level_frames(&full, &level.grid) else {
            break;
        };
        let n = level.grid.voxels();
        let xhat = Tensor::cat(
            vec![
                field::apply_matrix(&into, level.identity.clone(), true),
                Tensor::ones([1, n], &device),
            ],
            0,
        );
        let points = |d: Tensor<2>| -> Tensor<2> {
            let qhat = (base.clone() + d).matmul(xhat.clone());
            field::apply_matrix(&back, qhat, true)
        };
        let to_field = |ps: &[Tensor<2>]| points(ps[0].clone()) - level.identity.clone();
        let place = Place {
            stage: "affine",
            level: i,
            levels: order.len(),
            grid: &level.grid,
            to_field: &to_field,
        };
        let r = if native::similarity_supported(&runner.pipeline, &p.sim, level) {
            let mut d = [0f64; 12];
            let r = read_delta(&delta).and_then(|v| {
                d.iter_mut().zip(&v).for_each(|(a, b)| *a = *b as f64);
                native::optimise_affine(
                    runner,
                    &place,
                    level,
                    &mut d,
                    p.iterations,
                    i,
                    &into,
                    &back,
                )
            });
            let values: Vec<f32> = d.iter().map(|v| *v as f32).collect();
            delta = Tensor::from_data(TensorData::new(values, [3, 4]), &device);
            r
        } else {
            runner.optimise(
                &place,
                p.iterations,
                std::slice::from_mut(&mut delta),
                |pl| level_rate(pl.affine.lr, i),
                None,
                |pl, t| {
                    let sampling = Sampling {
                        moving: &level.moving,
                        src: dims,
                        points: points(t[0].clone()),
                        host: level.hosts(pl.fused),
                    };
                    let terms = similarity_at(
                        &pl.affine.sim,
                        sampling,
                        &level.fixed,
                        dims,
                        level.mask.as_ref(),
                    );
                    weighted_total(
                        terms
                            .into_iter()
                            .map(|t| (t.name.to_string(), t.weight, t.value))
                            .collect(),
                    )
                },
            )
        };
        if let Err(h) = r {
            halt = Some(h);
            break;
        }
    }
    let matrix = read_delta(&delta)
        .ok()
        .and_then(|v| voxel_matrix(&v, full.dims));
    AffineResult { matrix, halt }
}

/// The 12 parameters, row-major, on the host.
fn read_delta(delta: &Tensor<2>) -> Result<Vec<f32>, Halt> {
    delta
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| Halt::Failed(format!("could not read the affine parameters: {e:?}")))
}

/// The learning rate at level index `i` (0 = coarsest used): halved per
/// finer level, so that a step moves the image by about the same number of
/// voxels of that level (a normalised step is twice as many voxels at each
/// finer level, and full-resolution LNCC does not forgive overshooting).
pub fn level_rate(lr: f64, i: usize) -> f64 {
    lr / f64::powi(2.0, i as i32)
}

/// Σ weight · value, with each term kept for the progress stream.
pub fn weighted_total(terms: Vec<(String, f64, Tensor<1>)>) -> Loss {
    let mut total: Option<Tensor<1>> = None;
    let mut named = Vec::with_capacity(terms.len());
    for (name, w, v) in terms {
        let t = v.clone().mul_scalar(w as f32);
        total = Some(match total {
            None => t,
            Some(s) => s + t,
        });
        named.push((name, v));
    }
    Loss {
        total: total.expect("a validated pipeline has at least one similarity term"),
        terms: named,
    }
}
