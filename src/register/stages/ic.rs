//! Inverse-consistency weighting (methods.md §1 step 5).
//!
//! Both directions are registered at full resolution (the forward field
//! refined from the deformable stage's result, the backward one started
//! from that field's inverse), composed, and the round-trip error
//! ‖(u_ts ∘ u_st)(x)‖ is normalised to [0, 1] by its maximum over the fixed
//! image's foreground, raised to the power p, turned into a weight 1 − e^p
//! and smoothed with a Gaussian of sigma s voxels. A last run of the
//! deformable stage's field then weights both the similarity and the
//! regulariser by that map, so that regions without correspondence (a
//! resection cavity) may contract freely.
//!
//! Three choices the paper leaves open, each measured on brain2mm_resect
//! (the README's IC section has the figures):
//! - the maximum is taken over the foreground: over the whole volume it
//!   lands in the background, where the field is unconstrained, and the
//!   cavity's weight stayed at 0.99;
//! - the backward run starts from the inverse (fixed-point iteration), not
//!   from −u: the first-order inverse's own error, large wherever the
//!   deformation is, otherwise dominates the map;
//! - the two directional runs only measure: the final run starts again from
//!   the deformable stage's field, as the extra unweighted iterations of
//!   the forward run cost accuracy near the cavity.

use burn::tensor::Tensor;

use super::deformable::{held_displacement, optimise_field, unit_scale};
use super::{Context, Planned, Row, Stage};
use crate::register::params::{ParamError, Pipeline};
use crate::register::regularize::round_trip_error;
use crate::register::session::{Halt, Place, Runner};
use crate::register::{Level, tensor_to_volume, volume_to_tensor};
use crate::volume::Volume;
use crate::volume::smooth::gaussian_blur;

/// Fixed-point iterations for the backward run's starting field.
pub const INVERSE_ITERATIONS: usize = 10;

/// Share of a channel's range above its minimum from which a voxel counts
/// as foreground when there is no fixed mask.
const FOREGROUND_LEVEL: f32 = 0.1;

pub struct IcResult {
    pub field: Option<Tensor<2>>,
    pub weights: Option<Volume>,
    pub halt: Option<Halt>,
}

/// The fixed image's foreground, 1 or 0 per voxel: the fixed mask where
/// there is one, else the voxels where some channel rises above
/// `FOREGROUND_LEVEL` of its range.
pub fn foreground(fixed: &Volume, mask: Option<&Volume>) -> Vec<f32> {
    let n = fixed.voxels();
    if let Some(m) = mask {
        return m.data[..n].iter().map(|&v| f32::from(v > 0.5)).collect();
    }
    let mut fg = vec![0f32; n];
    for c in 0..fixed.channels {
        let ch = &fixed.data[c * n..(c + 1) * n];
        let Some((lo, hi)) = crate::volume::range_of(ch) else {
            continue;
        };
        let level = lo + FOREGROUND_LEVEL * (hi - lo);
        for (f, &v) in fg.iter_mut().zip(ch) {
            if v > level {
                *f = 1.0;
            }
        }
    }
    fg
}

/// 1 − (e / max e)^p, smoothed: the weight map from a round-trip error map,
/// counting the error only on the `foreground` (1/0 per voxel).
pub fn weights_from_error(
    error: &Volume,
    foreground: &[f32],
    power: f64,
    sigma_vox: f64,
) -> Volume {
    let mut w = error.clone();
    for (v, &f) in w.data.iter_mut().zip(foreground) {
        *v *= f;
    }
    let max = w.data.iter().copied().fold(0f32, f32::max);
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

/// The stage on the finest `level`, from the deformable stage's
/// displacement `start_vox` (voxels); `foreground` as [`foreground`].
pub fn run(
    runner: &mut Runner,
    level: &Level,
    start_vox: Tensor<2>,
    foreground: &[f32],
) -> IcResult {
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
    if let Err(h) = steps(runner, level, start_vox, foreground, &mut result) {
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
    foreground: &[f32],
    result: &mut IcResult,
) -> Result<(), Halt> {
    let pl = runner.pipeline.clone();
    let device = runner.device.clone();
    let li = pl.deformable.levels.saturating_sub(1);
    let scale = unit_scale(pl.deformable.units, level.dims(), &device);
    // Where the deformable stage held a start field (the network's), each
    // run here holds its own start in turn and optimises a residual from
    // zero, so that the start's detail is not smoothed away either.
    let held = pl.holds_start();
    let split = |u: Tensor<2>| {
        if held {
            (u.zeros_like(), Some(u))
        } else {
            (u / scale.clone(), None)
        }
    };
    let total = |theta: Tensor<2>, base: &Option<Tensor<2>>| {
        held_displacement(&pl, theta, level, base.as_ref())
    };
    let (theta, base) = split(start_vox.clone());
    let to_field = |ps: &[Tensor<2>]| total(ps[0].clone(), &base);
    let place = |stage| Place {
        stage,
        level: 0,
        levels: 1,
        grid: &level.grid,
        to_field: &to_field,
    };
    // 1. Forward refinement, 2. the backward direction from the inverse of
    // the start (the images swap roles).
    let mut forward = vec![theta.clone()];
    optimise_field(
        runner,
        &place("ic-forward"),
        level,
        li,
        &mut forward,
        pl.ic.iterations,
        None,
        base.as_ref(),
    )?;
    let swapped = level.swapped();
    let inverse = crate::register::field::invert(
        start_vox.clone(),
        level.dims(),
        level.identity.clone(),
        INVERSE_ITERATIONS,
    );
    let (inverse, inverse_base) = split(inverse);
    let mut backward = vec![inverse];
    optimise_field(
        runner,
        &place("ic-backward"),
        &swapped,
        li,
        &mut backward,
        pl.ic.iterations,
        None,
        inverse_base.as_ref(),
    )?;
    // 3. Weights from the round-trip error.
    let u = total(forward[0].clone(), &base);
    let v = total(backward[0].clone(), &inverse_base);
    let err = round_trip_error(u, v, level.dims(), level.identity.clone());
    let error = tensor_to_volume(err, &level.grid).map_err(|e| Halt::Failed(e.0))?;
    let weights = weights_from_error(&error, foreground, pl.ic.power, pl.ic.sigma);
    runner.send(crate::register::Event::IcWeights(weights.clone()));
    let w = volume_to_tensor(&weights, &device);
    result.weights = Some(weights);
    // 4. The final weighted run, from the deformable stage's field.
    let mut forward = vec![theta];
    let r = optimise_field(
        runner,
        &place("ic-final"),
        level,
        li,
        &mut forward,
        pl.ic.final_iterations,
        Some(&w),
        base.as_ref(),
    );
    result.field = Some(total(forward[0].clone(), &base));
    r
}

/// The inverse-consistency weighting of a pipeline (section `ic`), from the
/// field so far (or the identity).
pub struct Ic;

impl Stage for Ic {
    fn key(&self) -> &'static str {
        "ic"
    }

    fn title(&self) -> &'static str {
        "inverse-consistency weighting"
    }

    fn report_name(&self) -> &'static str {
        "ic-weighting"
    }

    fn runs(&self, p: &Pipeline) -> bool {
        p.ic.enabled
    }

    fn schedule(&self, p: &Pipeline) -> Vec<Planned> {
        [
            ("ic-forward", p.ic.iterations),
            ("ic-backward", p.ic.iterations),
            ("ic-final", p.ic.final_iterations),
        ]
        .into_iter()
        .map(|(stage, iterations)| Planned {
            stage,
            level: 0,
            levels: 1,
            pyramid: 0,
            iterations,
        })
        .collect()
    }

    fn rows(&self, _p: &Pipeline) -> Vec<Row> {
        vec![
            Row::new(
                "ic.iterations",
                "iterations each way",
                "Iterations of each direction's run",
            ),
            Row::new(
                "ic.final_iterations",
                "final iterations",
                "Iterations of the weighted run",
            ),
            Row::new(
                "ic.power",
                "power p",
                "Power applied to the normalised IC error",
            ),
            Row::new(
                "ic.sigma",
                "sigma s",
                "Gaussian sigma of the weight map (voxels)",
            ),
        ]
    }

    fn validate(&self, p: &Pipeline) -> Result<(), ParamError> {
        let ic = &p.ic;
        if !(ic.power.is_finite() && ic.power > 0.0) {
            return Err(ParamError(format!(
                "ic.power = {} must be finite and positive",
                ic.power
            )));
        }
        if !(ic.sigma.is_finite() && ic.sigma > 0.0) {
            return Err(ParamError(format!(
                "ic.sigma = {} must be finite and positive",
                ic.sigma
            )));
        }
        if ic.iterations == 0 || ic.final_iterations == 0 {
            return Err(ParamError(
                "ic.iterations and ic.final_iterations must be at least 1".into(),
            ));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut Context) -> Result<(), Halt> {
        if ctx.kernels.is_some() {
            let start = ctx.gpu_field()?;
            let Some((gpu, parts)) = ctx.gpu_levels()? else {
                return Err(Halt::Failed("the GPU kernels went away".into()));
            };
            let r = crate::gpu::engine::run::ic(
                &gpu,
                parts.runner,
                &parts.levels[0],
                start,
                parts.fixed,
                parts.mask,
                parts.outcome,
            );
            ctx.field_changed();
            return r;
        }
        let start = ctx.field();
        let parts = ctx.levels();
        let start =
            start.unwrap_or_else(|| Tensor::zeros([3, parts.fixed.voxels()], &parts.runner.device));
        let foreground = foreground(parts.fixed, parts.mask);
        let result = run(parts.runner, &parts.levels[0], start, &foreground);
        parts.outcome.ic_weights = result.weights;
        if let Some(u) = result.field {
            ctx.set_field(u);
        }
        result.halt.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Grid, affine};

    /// A round-trip error that peaks in the background (the volume's
    /// border, where the field is unconstrained) does not set the scale:
    /// the weights come from the error on the foreground, and the
    /// foreground's own peak gets weight 0.
    #[test]
    fn the_background_does_not_set_the_scale() {
        let dims = [8, 8, 8];
        let grid = Grid::new(dims, affine::IDENTITY);
        let n = 512;
        let inside = |i: usize| {
            let p = [i % 8, (i / 8) % 8, i / 64];
            p.iter().all(|&c| (2..6).contains(&c))
        };
        let image: Vec<f32> = (0..n).map(|i| if inside(i) { 0.8 } else { 0.02 }).collect();
        let fixed = Volume::from_data(grid.clone(), 1, image).expect("volume");
        let fg = foreground(&fixed, None);
        assert_eq!(fg.iter().filter(|&&f| f > 0.0).count(), 64);
        // Error 10 at the corner (background), 1 at one foreground voxel,
        // 0.5 on the rest of the foreground.
        let peak = 3 + 8 * 3 + 64 * 3;
        let error: Vec<f32> = (0..n)
            .map(|i| match i {
                0 => 10.0,
                i if i == peak => 1.0,
                i if inside(i) => 0.5,
                _ => 0.0,
            })
            .collect();
        let error = Volume::from_data(grid.clone(), 1, error).expect("volume");
        let w = weights_from_error(&error, &fg, 2.0, 0.0);
        assert_eq!(w.data[peak], 0.0);
        assert!((w.data[peak + 1] - 0.75).abs() < 1e-6);
        assert_eq!(w.data[0], 1.0);
        // A fixed mask, where given, is the foreground.
        let mask =
            Volume::from_data(grid, 1, (0..n).map(|i| f32::from(i < 10)).collect()).expect("mask");
        assert_eq!(foreground(&fixed, Some(&mask)).iter().sum::<f32>(), 10.0);
    }
}
