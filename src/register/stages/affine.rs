//! Affine instance optimisation (methods.md §1 step 2).
//!
//! The parameter is the 3×4 matrix M acting on normalised coordinates of
//! the full-resolution fixed grid (centre 0, half-extent 1 per axis, as
//! PyTorch's `affine_grid`), initialised to the identity. Every pyramid
//! level maps its voxels into those coordinates exactly, so the matrix
//! carries over between levels unchanged.

use burn::tensor::{Tensor, TensorData};

use super::{Context, Planned, Row, Stage, native, similarity_rows};
use crate::register::Level;
use crate::register::field;
use crate::register::loss::{Sampling, similarity_at, weighted_total};
use crate::register::params::{ParamError, Pipeline, check_rate, check_similarity};
use crate::register::session::{Halt, Place, Runner};
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

/// The affine stage of a pipeline (section `affine`).
pub struct Affine;

impl Stage for Affine {
    fn key(&self) -> &'static str {
        "affine"
    }

    fn live(&self) -> &'static [&'static str] {
        &["mse", "ncc", "lncc", "mi", "lr"]
    }

    fn title(&self) -> &'static str {
        "affine stage"
    }

    fn runs(&self, p: &Pipeline) -> bool {
        p.affine.enabled
    }

    fn depth(&self, p: &Pipeline) -> usize {
        p.affine.coarsest + 1
    }

    fn schedule(&self, p: &Pipeline) -> Vec<Planned> {
        let a = &p.affine;
        (0..a.levels)
            .map(|i| Planned {
                stage: "affine",
                level: i,
                levels: a.levels,
                pyramid: a.coarsest.saturating_sub(i),
                iterations: a.iterations,
            })
            .collect()
    }

    fn rows(&self, _p: &Pipeline) -> Vec<Row> {
        let mut rows = vec![
            Row::new(
                "affine.coarsest",
                "coarsest level",
                "Coarsest pyramid level (0 = full resolution)",
            ),
            Row::new(
                "affine.levels",
                "affine levels",
                "Levels from the coarsest towards full resolution",
            ),
            Row::new(
                "affine.iterations",
                "affine iterations",
                "Adam iterations per level",
            ),
            Row::new(
                "affine.lr",
                "affine lr",
                "Learning rate at the coarsest level, halved per finer level",
            ),
        ];
        rows.extend(similarity_rows("affine"));
        rows
    }

    fn validate(&self, p: &Pipeline) -> Result<(), ParamError> {
        let a = &p.affine;
        check_similarity("affine", &a.sim, a.enabled)?;
        if a.coarsest > 5 {
            return Err(ParamError("affine.coarsest must be at most 5".into()));
        }
        if a.levels == 0 || a.levels > a.coarsest + 1 {
            return Err(ParamError(format!(
                "affine.levels = {} must be between 1 and affine.coarsest + 1 = {}",
                a.levels,
                a.coarsest + 1
            )));
        }
        check_rate("affine.lr", a.lr)
    }

    fn run(&self, ctx: &mut Context) -> Result<(), Halt> {
        let (matrix, halt) = match ctx.gpu_levels()? {
            Some((gpu, parts)) => {
                crate::gpu::engine::run::affine_stage(&gpu, parts.runner, parts.levels)
            }
            None => {
                let parts = ctx.levels();
                let r = run(parts.runner, parts.levels);
                (r.matrix, r.halt)
            }
        };
        if let Some(a) = matrix {
            ctx.outcome.affine_vox = a;
        }
        halt.map_or(Ok(()), Err)
    }
}
