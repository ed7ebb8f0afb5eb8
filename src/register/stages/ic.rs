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

use super::deformable::{displacement, optimise_field, unit_scale};
use crate::register::regularize::round_trip_error;
use crate::register::session::{Halt, Place, Runner};
use crate::register::{Level, tensor_to_volume, volume_to_tensor};
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
    let before = runner.pipeline.clone();
    // The SVF parametrisation is not inverted by negating its output, and
    // each direction is its own run: this stage optimises plain
    // displacement fields.
    runner.pipeline.deformable.svf = false;
    runner.pipeline.deformable.symmetric = false;
    let mut result = IcResult {
        field: Some(start_vox.clone()),
        weights: None,
        halt: None,
    };
    if let Err(h) = steps(runner, level, start_vox, &mut result) {
        result.halt = Some(h);
    }
    // Give back the switches, keeping live changes made meanwhile.
    runner.pipeline.deformable.svf = before.deformable.svf;
    runner.pipeline.deformable.symmetric = before.deformable.symmetric;
    result
}

fn steps(
    runner: &mut Runner,
    level: &Level,
    start_vox: Tensor<2>,
    result: &mut IcResult,
) -> Result<(), Halt> {
    let pl = runner.pipeline.clone();
    let device = runner.device.clone();
    let li = pl.deformable.levels.saturating_sub(1);
    let scale = unit_scale(pl.deformable.units, level.dims(), &device);
    let to_field = |ps: &[Tensor<2>]| displacement(&pl, ps[0].clone(), level);
    let place = |stage| Place {
        stage,
        level: 0,
        levels: 1,
        grid: &level.grid,
        to_field: &to_field,
    };
    // 1. Forward refinement, 2. the backward direction from −u (the images
    // swap roles).
    let mut forward = vec![start_vox.clone() / scale.clone()];
    let r = optimise_field(
        runner,
        &place("ic-forward"),
        level,
        li,
        &mut forward,
        pl.ic.iterations,
        None,
    );
    result.field = Some(displacement(&pl, forward[0].clone(), level));
    r?;
    let swapped = level.swapped();
    let mut backward = vec![start_vox.neg() / scale];
    optimise_field(
        runner,
        &place("ic-backward"),
        &swapped,
        li,
        &mut backward,
        pl.ic.iterations,
        None,
    )?;
    // 3. Weights from the round-trip error.
    let u = displacement(&pl, forward[0].clone(), level);
    let v = displacement(&pl, backward[0].clone(), level);
    let err = round_trip_error(u, v, level.dims(), level.identity.clone());
    let error = tensor_to_volume(err, &level.grid).map_err(|e| Halt::Failed(e.0))?;
    let weights = weights_from_error(&error, pl.ic.power, pl.ic.sigma);
    runner.send(crate::register::Event::IcWeights(weights.clone()));
    let w = volume_to_tensor(&weights, &device);
    result.weights = Some(weights);
    // 4. Final weighted run of the forward field.
    let r = optimise_field(
        runner,
        &place("ic-final"),
        level,
        li,
        &mut forward,
        pl.ic.final_iterations,
        Some(&w),
    );
    result.field = Some(displacement(&pl, forward[0].clone(), level));
    r
}
