//! Native CPU optimiser for dense displacement fields: the deformable
//! objective's common case (MSE and/or local NCC, diffusion, one direction,
//! no SVF) computed by the fused kernels with analytic gradients and a
//! native Adam, in place, with no tensor allocations per iteration.
//!
//! It optimises exactly the objective of
//! [`super::deformable::objective`] with the same Adam (tests compare the
//! two paths); other configurations use the composed tensor path.

use super::deformable::unit_factors;
use crate::register::adam::{BETA1, BETA2, EPSILON};
use crate::register::fused::{self, FixedStats, LnccScratch, Shared, par_blocks};
use crate::register::params::Pipeline;
use crate::register::session::{Halt, Place, Runner, Step};
use crate::register::{EngineError, Level};
use crate::volume::Volume;

/// Whether the native path computes this pipeline's deformable objective.
pub fn supported(pl: &Pipeline, level: &Level, directions: usize) -> bool {
    let d = &pl.deformable;
    pl.fused
        && level.host.is_some()
        && directions == 1
        && !d.svf
        && d.jacobian == 0.0
        && d.sim.ncc == 0.0
        && d.sim.mi == 0.0
}

/// Optimise `theta` ([3, N], parameter units) on `level` for `iters`
/// iterations; `weights` multiply similarity and regulariser (IC weighting).
pub fn optimise(
    runner: &mut Runner,
    place: &Place,
    level: &Level,
    li: usize,
    theta: &mut [f32],
    iters: usize,
    weights: Option<&[f32]>,
) -> Result<(), Halt> {
    let Some(host) = level.host.as_ref() else {
        return Err(Halt::Failed(
            "internal: the native path needs host images".into(),
        ));
    };
    let dims = level.dims();
    let [nx, ny, _] = dims;
    let n = level.grid.voxels();
    let channels = host.fixed.len() / n;
    let units = runner.pipeline.deformable.units;
    let s = unit_factors(units, dims);
    let sim_weight: Option<Vec<f32>> = match (&host.mask, weights) {
        (Some(m), Some(w)) => Some(m.iter().zip(w).map(|(a, b)| a * b).collect()),
        (Some(m), None) => Some(m.clone()),
        (None, Some(w)) => Some(w.to_vec()),
        (None, None) => None,
    };
    let window = runner.pipeline.deformable.sim.window;
    let stats = FixedStats::new(&host.fixed, channels, dims, window);
    let mut points = vec![0f32; 3 * n];
    let mut warped = vec![0f32; channels * n];
    let mut deriv = vec![0f32; 3 * channels * n];
    let mut dl = vec![0f32; channels * n];
    let mut grad = vec![0f32; 3 * n];
    let mut m1 = vec![0f32; 3 * n];
    let mut m2 = vec![0f32; 3 * n];
    let mut scratch = LnccScratch::default();
    // The latest field whose loss was finite.
    let mut good = theta.to_vec();
    let mut t = 0i32;
    // Terms the native path does not compute cannot be switched on mid-level.
    runner.live_guard = Some(|pl: &Pipeline| {
        let d = &pl.deformable;
        d.sim.ncc == 0.0 && d.sim.mi == 0.0 && d.jacobian == 0.0
    });
    let result = runner.iterate(place, iters, |pl, done, want| {
        let d = &pl.deformable;
        // 1. Sampling points p + θ·s.
        {
            let pp = Shared::new(&mut points);
            let th = &*theta;
            par_blocks(n, |range| {
                for i in range {
                    let p = [
                        (i % nx) as f32,
                        ((i / nx) % ny) as f32,
                        (i / (nx * ny)) as f32,
                    ];
                    for a in 0..3 {
                        // SAFETY: index a·n + i belongs to this block only.
                        unsafe { pp.write(a * n + i, p[a] + th[a * n + i] * s[a]) };
                    }
                }
            });
        }
        // 2. Similarity and dL/dI.
        fused::sample_into(
            &host.moving,
            channels,
            dims,
            &points,
            &mut warped,
            &mut deriv,
        );
        dl.iter_mut().for_each(|v| *v = 0.0);
        let mut terms = Vec::new();
        let mut total = 0f64;
        if d.sim.mse > 0.0 {
            let v = fused::mse_into(
                &warped,
                &host.fixed,
                sim_weight.as_deref(),
                n,
                d.sim.mse as f32,
                &mut dl,
            );
            terms.push(("mse".to_string(), v));
            total += d.sim.mse * v;
        }
        if d.sim.lncc > 0.0 {
            let v = fused::lncc_into(
                &warped,
                &host.fixed,
                &stats,
                dims,
                window,
                sim_weight.as_deref(),
                d.sim.lncc as f32,
                &mut dl,
                &mut scratch,
            );
            terms.push(("lncc".to_string(), v));
            total += d.sim.lncc * v;
        }
        // 3. dL/dθ = dL/dq · s, plus the regulariser.
        fused::chain_scaled(&dl, &deriv, channels, n, s, &mut grad);
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
        let snapshot = want.then(|| {
            let mut u = theta.to_vec();
            for a in 0..3 {
                u[a * n..(a + 1) * n].iter_mut().for_each(|v| *v *= s[a]);
            }
            Volume::from_data(level.grid.clone(), 3, u).map_err(|e| EngineError(e.to_string()))
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
