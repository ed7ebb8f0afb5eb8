//! Inverse-consistency weighting (methods.md §1 step 5).
//!
//! Both directions are registered at full resolution (the forward field
//! refined from the deformable stage's result, the backward one started
//! from its negation, a first-order inverse), composed, and the round-trip
//! error ‖(u_ts ∘ u_st)(x)‖ is normalised to [0, 1] by its maximum, raised
//! to the power p, turned into a weight 1 − e^p and smoothed with a
//! Gaussian of sigma s voxels. A last run of the forward field then weights
//! both the similarity and the regulariser by that map, so that regions
//! without correspondence (a resection cavity) may contract freely.

use burn::tensor::Tensor;

use super::deformable::{displacement, objective, unit_scale};
use crate::register::regularize::round_trip_error;
use crate::register::session::{Halt, Place, Runner};
use crate::register::{Level, Pipeline, tensor_to_volume, volume_to_tensor};
use crate::volume::Volume;
use crate::volume::smooth::gaussian_blur;

pub struct IcResult {
    pub field: Option<Tensor<2>>,
    pub weights: Option<Volume>,
    pub halt: Option<Halt>,
}

/// 1 − (e / max e)^p, smoothed: the weight map from a round-trip error map.
pub fn weights_from_error(error: &Volume, power: f64, sigma_vox: f64) -> Volume {
    let max = error.data.iter().copied().fold(0f32, f32::max);
    let mut w = error.clone();
    for v in w.data.iter_mut() {
        let e = if max > 0.0 { (*v / max) as f64 } else { 0.0 };
        *v = (1.0 - e.powf(power)) as f32;
    }
    if sigma_vox > 0.0 {
        gaussian_blur(&w, [sigma_vox; 3])
    } else {
        w
    }
}

pub fn run(runner: &mut Runner, level: &Level, start_vox: Tensor<2>) -> IcResult {
    let pl0 = runner.pipeline.clone();
    let device = runner.device.clone();
    let li = pl0.deformable.levels.saturating_sub(1);
    let to_params =
        |pl: &Pipeline, u: Tensor<2>| u / unit_scale(pl.deformable.units, level.dims(), &device);
    // The SVF parametrisation is not inverted by negation of its output; the
    // IC stage optimises displacements directly.
    let mut pl_disp = pl0.clone();
    pl_disp.deformable.svf = false;
    pl_disp.deformable.symmetric = false;
    runner.pipeline.deformable.svf = false;
    runner.pipeline.deformable.symmetric = false;
    let mut forward = vec![to_params(&pl_disp, start_vox.clone())];
    let to_field = |ps: &[Tensor<2>]| displacement(&pl_disp, ps[0].clone(), level);
    let n_iter = pl0.ic.iterations;
    let mut result = IcResult {
        field: Some(start_vox.clone()),
        weights: None,
        halt: None,
    };
    let lr = move |pl: &Pipeline| Pipeline::level_value(&pl.deformable.lr, li);
    // 1. Forward refinement.
    let place = Place {
        stage: "ic-forward",
        level: 0,
        levels: 1,
        grid: &level.grid,
        to_field: &to_field,
    };
    if let Err(h) = runner.optimise(&place, n_iter, &mut forward, lr, |pl, t| {
        objective(pl, level, li, t, None)
    }) {
        result.halt = Some(h);
        restore(runner, &pl0);
        return result;
    }
    result.field = Some(displacement(&pl_disp, forward[0].clone(), level));
    // 2. Backward run: the images swap roles.
    let swapped = Level {
        grid: level.grid.clone(),
        fixed: level.moving.clone(),
        moving: level.fixed.clone(),
        mask: None,
        identity: level.identity.clone(),
    };
    let mut backward = vec![to_params(&pl_disp, start_vox.neg())];
    let place = Place {
        stage: "ic-backward",
        level: 0,
        levels: 1,
        grid: &level.grid,
        to_field: &to_field,
    };
    if let Err(h) = runner.optimise(&place, n_iter, &mut backward, lr, |pl, t| {
        objective(pl, &swapped, li, t, None)
    }) {
        result.halt = Some(h);
        restore(runner, &pl0);
        return result;
    }
    // 3. Weights from the round-trip error.
    let u = displacement(&pl_disp, forward[0].clone(), level);
    let v = displacement(&pl_disp, backward[0].clone(), level);
    let err = round_trip_error(u, v, level.dims(), level.identity.clone());
    let weights = match tensor_to_volume(err, &level.grid) {
        Ok(e) => weights_from_error(&e, pl0.ic.power, pl0.ic.sigma),
        Err(e) => {
            result.halt = Some(Halt::Failed(e.0));
            restore(runner, &pl0);
            return result;
        }
    };
    let w = volume_to_tensor(&weights, &device);
    result.weights = Some(weights);
    // 4. Final weighted run of the forward field.
    let place = Place {
        stage: "ic-final",
        level: 0,
        levels: 1,
        grid: &level.grid,
        to_field: &to_field,
    };
    let r = runner.optimise(
        &place,
        pl0.ic.final_iterations,
        &mut forward,
        lr,
        |pl, t| objective(pl, level, li, t, Some(&w)),
    );
    result.field = Some(displacement(&pl_disp, forward[0].clone(), level));
    if let Err(h) = r {
        result.halt = Some(h);
    }
    restore(runner, &pl0);
    result
}

/// Give back the structural switches this stage turned off, keeping any
/// live parameter changes made while it ran.
fn restore(runner: &mut Runner, before: &Pipeline) {
    runner.pipeline.deformable.svf = before.deformable.svf;
    runner.pipeline.deformable.symmetric = before.deformable.symmetric;
}
