//! Native CPU optimiser for dense displacement fields: the deformable
//! objective's common case (MSE and/or local NCC, diffusion, one direction,
//! no SVF) computed by the fused kernels with analytic gradients and a
//! native Adam, in place, with no tensor allocations per iteration.
//!
//! It optimises exactly the objective of
//! [`super::deformable::objective`] with the same Adam (tests compare the
//! two paths); other configurations use the composed tensor path.

use super::deformable::unit_factors;
use crate::register::HostImages;
use crate::register::adam::{BETA1, BETA2, EPSILON};
use crate::register::fused::{self, FixedStats, LnccScratch, Shared, par_blocks};
use crate::register::params::Pipeline;
use crate::register::params::SimilarityWeights;
use crate::register::session::{Halt, Place, Runner, SnapshotField, Step};
use crate::register::smoothing::{self, Smoothing};
use crate::register::{EngineError, Level};
use crate::volume::{Volume, voxel_of};

/// The similarity part of a native objective: samples the moving image at
/// given points, evaluates MSE and/or local NCC against the fixed image and
/// leaves dL/dq ([3, N]) in `grad_q`. Buffers live across iterations.
pub struct SimEval {
    channels: usize,
    dims: crate::register::field::Dims,
    window: usize,
    stats: Option<FixedStats>,
    warped: Vec<f32>,
    deriv: Vec<f32>,
    dl: Vec<f32>,
    scratch: LnccScratch,
    pub grad_q: Vec<f32>,
}

impl SimEval {
    pub fn new(
        host: &HostImages,
        dims: crate::register::field::Dims,
        sim: &SimilarityWeights,
    ) -> Self {
        let n = dims[0] * dims[1] * dims[2];
        let channels = host.fixed.len() / n.max(1);
        SimEval {
            channels,
            dims,
            window: sim.window,
            // LNCC's fixed-image window statistics, once per level.
            stats: (sim.lncc > 0.0)
                .then(|| FixedStats::new(&host.fixed, channels, dims, sim.window)),
            warped: vec![0.0; channels * n],
            deriv: vec![0.0; 3 * channels * n],
            dl: vec![0.0; channels * n],
            scratch: LnccScratch::default(),
            grad_q: vec![0.0; 3 * n],
        }
    }

    /// Weighted total and each term's value; fills `grad_q`.
    pub fn eval(
        &mut self,
        sim: &SimilarityWeights,
        host: &HostImages,
        points: &[f32],
        weight: Option<&[f32]>,
    ) -> (f64, Vec<(String, f64)>) {
        let n = points.len() / 3;
        fused::sample_into(
            &host.moving,
            self.channels,
            self.dims,
            points,
            &mut self.warped,
            &mut self.deriv,
        );
        self.dl.iter_mut().for_each(|v| *v = 0.0);
        let mut terms = Vec::new();
        let mut total = 0f64;
        if sim.mse > 0.0 {
            let v = fused::mse_into(
                &self.warped,
                &host.fixed,
                weight,
                n,
                sim.mse as f32,
                &mut self.dl,
            );
            terms.push(("mse".to_string(), v));
            total += sim.mse * v;
        }
        if sim.lncc > 0.0 {
            let stats = self.stats.get_or_insert_with(|| {
                FixedStats::new(&host.fixed, self.channels, self.dims, sim.window)
            });
            let v = fused::lncc_into(
                &self.warped,
                &host.fixed,
                stats,
                self.dims,
                self.window,
                weight,
                sim.lncc as f32,
                &mut self.dl,
                &mut self.scratch,
            );
            terms.push(("lncc".to_string(), v));
            total += sim.lncc * v;
        }
        fused::chain_to_points(&self.dl, &self.deriv, self.channels, n, &mut self.grad_q);
        (total, terms)
    }
}

/// Whether the native path computes a similarity (MSE and/or local NCC).
pub fn similarity_supported(pl: &Pipeline, sim: &SimilarityWeights, level: &Level) -> bool {
    pl.fused && level.host.is_some() && sim.ncc == 0.0 && sim.mi == 0.0
}

/// Whether the native path computes this pipeline's deformable objective.
pub fn supported(pl: &Pipeline, level: &Level, directions: usize) -> bool {
    let d = &pl.deformable;
    similarity_supported(pl, &d.sim, level)
        && directions == 1
        && !d.svf
        && d.parametrisation == crate::register::params::Parametrisation::Displacement
        && d.jacobian == 0.0
        && (d.dice == 0.0 || level.labels.is_none())
}

/// Optimise `theta` ([3, N], parameter units) on `level` for `iters`
/// iterations; `weights` multiply similarity and regulariser (IC weighting);
/// `base` ([3, N], voxels): a held start field the field is added to.
#[allow(clippy::too_many_arguments)]
pub fn optimise(
    runner: &mut Runner,
    place: &Place,
    level: &Level,
    li: usize,
    theta: &mut [f32],
    iters: usize,
    weights: Option<&[f32]>,
    base: Option<&[f32]>,
) -> Result<(), Halt> {
    let Some(host) = level.host.as_ref() else {
        return Err(Halt::Failed(
            "internal: the native path needs host images".into(),
        ));
    };
    let dims = level.dims();
    let n = level.grid.voxels();
    let units = runner.pipeline.deformable.units;
    let s = unit_factors(units, dims);
    let sim_weight: Option<Vec<f32>> = match (&host.mask, weights) {
        (Some(m), Some(w)) => Some(m.iter().zip(w).map(|(a, b)| a * b).collect()),
        (Some(m), None) => Some(m.clone()),
        (None, Some(w)) => Some(w.to_vec()),
        (None, None) => None,
    };
    let mut eval = SimEval::new(host, dims, &runner.pipeline.deformable.sim);
    let mut points = vec![0f32; 3 * n];
    let mut grad = vec![0f32; 3 * n];
    let mut m1 = vec![0f32; 3 * n];
    let mut m2 = vec![0f32; 3 * n];
    // The latest field whose loss was finite.
    let mut good = theta.to_vec();
    let smooth = Smoothing::at(&runner.pipeline, &level.grid, li);
    let mut scratch = Vec::new();
    let mut t = 0i32;
    // Terms the native path does not compute cannot be switched on mid-level.
    runner.live_guard = Some(Box::new(|pl: &Pipeline| {
        let d = &pl.deformable;
        d.sim.ncc == 0.0 && d.sim.mi == 0.0 && d.jacobian == 0.0
    }));
    let result = runner.iterate(place, iters, |pl, done, want| {
        let d = &pl.deformable;
        // 1. Sampling points p + θ·s.
        {
            let pp = Shared::new(&mut points);
            let th = &*theta;
            par_blocks(n, |range| {
                for i in range {
                    let p = voxel_of(i, dims);
                    for a in 0..3 {
                        // SAFETY: index a·n + i belongs to this block only.
                        let b = base.map_or(0.0, |b| b[a * n + i]);
                        unsafe { pp.write(a * n + i, p[a] as f32 + b + th[a * n + i] * s[a]) };
                    }
                }
            });
        }
        // 2. Similarity; 3. dL/dθ = dL/dq · s, plus the regulariser.
        let (mut total, mut terms) = eval.eval(&d.sim, host, &points, sim_weight.as_deref());
        for a in 0..3 {
            let (src, dst) = (
                &eval.grad_q[a * n..(a + 1) * n],
                &mut grad[a * n..(a + 1) * n],
            );
            dst.iter_mut().zip(src).for_each(|(g, q)| *g = q * s[a]);
        }
        let lambda = Pipeline::level_value(&d.diffusion, li);
        if lambda > 0.0 {
            let v = fused::diffusion_into(theta, dims, weights, lambda as f32, &mut grad);
            terms.push(("diffusion".to_string(), v));
            total += lambda * v;
        }
        if !total.is_finite() {
            theta.copy_from_slice(&good);
            return Err(Runner::non_finite(place, done, total));
        }
        good.copy_from_slice(theta);
        if let Some(r) = &smooth.grad {
            smoothing::field_in_place(r, &mut grad, dims, &mut scratch);
        }
        // 4. Adam, in place.
        t += 1;
        let lr = Pipeline::level_value(&d.lr, li) as f32;
        let c1 = (1.0 - BETA1.powi(t)) as f32;
        let c2 = (1.0 - BETA2.powi(t)) as f32;
        let (b1, b2, eps) = (BETA1 as f32, BETA2 as f32, EPSILON as f32);
        {
            let (tp, p1, p2) = (
                Shared::new(theta),
                Shared::new(&mut m1),
                Shared::new(&mut m2),
            );
            let g = &grad;
            par_blocks(3 * n, |range| {
                for j in range {
                    // SAFETY: index j belongs to this block only.
                    unsafe {
                        let m = b1 * p1.read(j) + (1.0 - b1) * g[j];
                        let v = b2 * p2.read(j) + (1.0 - b2) * g[j] * g[j];
                        p1.write(j, m);
                        p2.write(j, v);
                        tp.write(j, tp.read(j) - lr * (m / c1) / ((v / c2).sqrt() + eps));
                    }
                }
            });
        }
        // 5. The field's own smoothing.
        if let Some(r) = &smooth.warp {
            smoothing::field_in_place(r, theta, dims, &mut scratch);
        }
        let snapshot = want.then(|| {
            let mut u = theta.to_vec();
            for a in 0..3 {
                u[a * n..(a + 1) * n].iter_mut().for_each(|v| *v *= s[a]);
            }
            if let Some(b) = base {
                u.iter_mut().zip(b).for_each(|(v, b)| *v += b);
            }
            Volume::from_data(level.grid.clone(), 3, u)
                .map(SnapshotField::Host)
                .map_err(|e| EngineError(e.to_string()))
        });
        Ok(Step {
            total,
            terms,
            snapshot,
        })
    });
    runner.live_guard = None;
    result
}

/// Native affine optimisation on one level: the 12 entries of Δ
/// (M = [I|0] + Δ acting on normalised coordinates x̂ = `into`·p, sampling
/// points q = `back`·(M x̂)), Adam on the CPU, gradient reduced from dL/dq:
/// dL/dΔ[r][k] = Σ_i (backᵀ g_i)_r x̂_k(i).
#[allow(clippy::too_many_arguments)]
pub fn optimise_affine(
    runner: &mut Runner,
    place: &Place,
    level: &Level,
    delta: &mut [f64; 12],
    iters: usize,
    level_index: usize,
    into: &[[f64; 4]; 3],
    back: &[[f64; 4]; 3],
) -> Result<(), Halt> {
    let Some(host) = level.host.as_ref() else {
        return Err(Halt::Failed(
            "internal: the native path needs host images".into(),
        ));
    };
    let dims = level.dims();
    let n = level.grid.voxels();
    let mut eval = SimEval::new(host, dims, &runner.pipeline.affine.sim);
    let mut points = vec![0f32; 3 * n];
    let (mut m1, mut m2) = ([0f64; 12], [0f64; 12]);
    let mut good = *delta;
    let mut t = 0i32;
    let xhat = |i: usize| -> [f64; 3] {
        let p = voxel_of(i, dims);
        std::array::from_fn(|r| {
            into[r][0] * p[0] + into[r][1] * p[1] + into[r][2] * p[2] + into[r][3]
        })
    };
    runner.live_guard = Some(Box::new(|pl: &Pipeline| {
        pl.affine.sim.ncc == 0.0 && pl.affine.sim.mi == 0.0
    }));
    let result = runner.iterate(place, iters, |pl, done, want| {
        // q = back·(M x̂): one 3×4 matrix C = back_L·M with back's translation.
        let mut c = [[0f64; 4]; 3];
        for r in 0..3 {
            for k in 0..4 {
                let mut v = 0.0;
                for a in 0..3 {
                    let m = delta[a * 4 + k] + if a == k { 1.0 } else { 0.0 };
                    v += back[r][a] * m;
                }
                c[r][k] = v + if k == 3 { back[r][3] } else { 0.0 };
            }
        }
        {
            let pp = Shared::new(&mut points);
            par_blocks(n, |range| {
                for i in range {
                    let x = xhat(i);
                    for r in 0..3 {
                        let q = c[r][0] * x[0] + c[r][1] * x[1] + c[r][2] * x[2] + c[r][3];
                        // SAFETY: index r·n + i belongs to this block only.
                        unsafe { pp.write(r * n + i, q as f32) };
                    }
                }
            });
        }
        let (total, terms) = eval.eval(&pl.affine.sim, host, &points, host.mask.as_deref());
        if !total.is_finite() {
            *delta = good;
            return Err(Runner::non_finite(place, done, total));
        }
        good = *delta;
        let g = &eval.grad_q;
        let parts = par_blocks(n, |range| {
            let mut acc = [0f64; 12];
            for i in range {
                let x = xhat(i);
                let xk = [x[0], x[1], x[2], 1.0];
                for r in 0..3 {
                    let h = (0..3)
                        .map(|a| back[a][r] * g[a * n + i] as f64)
                        .sum::<f64>();
                    for k in 0..4 {
                        acc[r * 4 + k] += h * xk[k];
                    }
                }
            }
            acc
        });
        t += 1;
        let lr = super::affine::level_rate(pl.affine.lr, level_index);
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for j in 0..12 {
            let gj: f64 = parts.iter().map(|p| p[j]).sum();
            m1[j] = BETA1 * m1[j] + (1.0 - BETA1) * gj;
            m2[j] = BETA2 * m2[j] + (1.0 - BETA2) * gj * gj;
            delta[j] -= lr * (m1[j] / c1) / ((m2[j] / c2).sqrt() + EPSILON);
        }
        let snapshot = want.then(|| {
            let mut u = points.clone();
            for i in 0..n {
                let p = voxel_of(i, dims);
                for a in 0..3 {
                    u[a * n + i] -= p[a] as f32;
                }
            }
            Volume::from_data(level.grid.clone(), 3, u)
                .map(SnapshotField::Host)
                .map_err(|e| EngineError(e.to_string()))
        });
        Ok(Step {
            total,
            terms,
            snapshot,
        })
    });
    runner.live_guard = None;
    result
}
