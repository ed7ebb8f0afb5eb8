//! Deformable instance optimisation (methods.md §1 step 4, §2, §3, §5):
//! a dense displacement field — or a stationary velocity field integrated by
//! scaling and squaring — optimised with Adam, coarse to fine; optionally
//! both directions at once with an inverse-consistency loss.

use burn::tensor::{Tensor, TensorData};

use super::{
    Context, Planned, Row, Stage, check_iterations, coarse_to_fine, native, resize_per_level,
    similarity_rows,
};
use crate::register::Level;
use crate::register::field::{self, Dims};
use crate::register::loss::weighted_total;
use crate::register::loss::{Sampling, similarity_at};
use crate::register::params::{
    FieldUnits, MAX_SMOOTH, ParamError, Parametrisation, Pipeline, StartField, check_per_level,
    check_rate, check_similarity, check_weight,
};
use crate::register::regularize;
use crate::register::session::{Halt, Loss, Place, Runner};
use crate::register::smoothing::Smoothing;
use crate::volume::{Grid, affine};

pub struct FieldResult {
    /// Voxel displacement on the finest level's grid.
    pub field: Option<Tensor<2>>,
    pub halt: Option<Halt>,
}

/// Per-axis factor from parameter units to voxels.
pub fn unit_factors(units: FieldUnits, dims: Dims) -> [f32; 3] {
    std::array::from_fn(|a| match units {
        FieldUnits::Voxel => 1.0,
        // align_corners = True: −1 and 1 are the centres of the edge voxels.
        FieldUnits::Normalized => ((dims[a] as f32 - 1.0) / 2.0).max(0.5),
    })
}

/// [`displacement`] added to a held start field (voxels of the level,
/// `deformable.start = residual`) where there is one.
pub fn held_displacement(
    pl: &Pipeline,
    theta: Tensor<2>,
    level: &Level,
    base: Option<&Tensor<2>>,
) -> Tensor<2> {
    let u = displacement(pl, theta, level);
    match base {
        Some(b) => u + b.clone(),
        None => u,
    }
}

/// [`unit_factors`] as a `[3, 1]` tensor.
pub fn unit_scale(units: FieldUnits, dims: Dims, device: &burn::tensor::Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(unit_factors(units, dims).to_vec(), [3, 1]),
        device,
    )
}

/// The voxel displacement a parameter tensor stands for (integrated if SVF).
pub fn displacement(pl: &Pipeline, theta: Tensor<2>, level: &Level) -> Tensor<2> {
    let d = &pl.deformable;
    if d.parametrisation == Parametrisation::Gradient {
        return crate::register::monotone::displacement(theta, level);
    }
    let u = theta * unit_scale(d.units, level.dims(), &level.identity.device());
    if d.svf {
        field::exp_velocity(u, level.dims(), level.identity.clone(), d.svf_steps)
    } else {
        u
    }
}

/// The deformable objective at level index `li` (0 = coarsest run). With
/// `weights` (IC weighting), the map multiplies both the similarity and the
/// regulariser. Params: [forward] or [forward, backward] when symmetric.
pub fn objective(
    pl: &Pipeline,
    level: &Level,
    li: usize,
    params: &[Tensor<2>],
    weights: Option<&Tensor<2>>,
    base: Option<&Tensor<2>>,
) -> Loss {
    let d = &pl.deformable;
    let dims = level.dims();
    let sim_weight = match (&level.mask, weights) {
        (Some(m), Some(w)) => Some(m.clone() * w.clone()),
        (Some(m), None) => Some(m.clone()),
        (None, Some(w)) => Some(w.clone()),
        (None, None) => None,
    };
    let lambda = Pipeline::level_value(&d.diffusion, li);
    let mut terms: Vec<(String, f64, Tensor<1>)> = Vec::new();
    let mut fields = Vec::new();
    for (dir, theta) in params.iter().enumerate() {
        // A held start field is the forward direction's.
        let phi = held_displacement(pl, theta.clone(), level, base.filter(|_| dir == 0));
        // Backward direction: the roles of the images swap; the fixed mask
        // does not apply in moving space.
        let (src, target, w) = if dir == 0 {
            (&level.moving, &level.fixed, sim_weight.as_ref())
        } else {
            (&level.fixed, &level.moving, weights)
        };
        let hosts = level
            .hosts(pl.fused)
            .map(|h| if dir == 0 { h } else { h.swapped() });
        let sampling = Sampling {
            moving: src,
            src: dims,
            points: level.identity.clone() + phi.clone(),
            host: hosts,
        };
        let suffix = if dir == 0 { "" } else { "_bwd" };
        for t in similarity_at(&d.sim, sampling, target, dims, w) {
            terms.push((format!("{}{suffix}", t.name), t.weight, t.value));
        }
        // The Dice loss compares full-resolution label maps, so it costs
        // a full-resolution sampling per iteration: it joins at the finest
        // level, where the field's detail is settled.
        if d.dice > 0.0
            && li + 1 >= d.levels
            && let Some(labels) = &level.labels
        {
            let labels = if dir == 0 {
                labels.clone()
            } else {
                labels.swapped()
            };
            terms.push((
                format!("dice{suffix}"),
                d.dice,
                labels.dice_loss(phi.clone(), &level.grid),
            ));
        }
        if lambda > 0.0 {
            terms.push((
                format!("diffusion{suffix}"),
                lambda,
                regularize::diffusion(theta.clone(), dims, weights),
            ));
        }
        if d.jacobian > 0.0 {
            terms.push((
                format!("jacobian{suffix}"),
                d.jacobian,
                regularize::jacobian_penalty(phi.clone(), dims, weights),
            ));
        }
        fields.push(phi);
    }
    if fields.len() == 2 && d.inverse_consistency > 0.0 {
        terms.push((
            "inverse_consistency".into(),
            d.inverse_consistency,
            regularize::inverse_consistency(
                fields[0].clone(),
                fields[1].clone(),
                dims,
                level.identity.clone(),
            ),
        ));
    }
    weighted_total(terms)
}

/// The voxel maps between two levels' grids: `to` voxel → `from` voxel,
/// and `from` → `to` (whose linear part maps vectors), as 3×4 rows.
pub fn level_maps(from: &Grid, to: &Grid) -> Option<(affine::Rows, affine::Rows)> {
    let to_inv = affine::inverse(&to.affine)?;
    let from_inv = affine::inverse(&from.affine)?;
    let rows = |m: affine::Mat4| [m[0], m[1], m[2]];
    Some((
        rows(affine::mul(&from_inv, &to.affine)),
        rows(affine::mul(&to_inv, &from.affine)),
    ))
}

/// Parameters of `from` (coarser) brought onto `to`'s grid.
pub fn upsample(pl: &Pipeline, theta: Tensor<2>, from: &Level, to: &Level) -> Tensor<2> {
    if pl.deformable.parametrisation == Parametrisation::Gradient {
        return crate::register::monotone::resize(theta, from, to);
    }
    resize_params(pl.deformable.units, theta, from, to)
}

/// A field in `units` on `from`'s grid brought onto `to`'s (the physical
/// displacement kept).
pub fn resize_params(units: FieldUnits, theta: Tensor<2>, from: &Level, to: &Level) -> Tensor<2> {
    let device = to.identity.device();
    let u = theta * unit_scale(units, from.dims(), &device);
    let Some((to_from, from_to)) = level_maps(&from.grid, &to.grid) else {
        return Tensor::zeros([3, to.grid.voxels()], &device);
    };
    if crate::register::device::is_cpu(&device)
        && let Ok(host) = u.clone().into_data().try_into_vec::<f32>()
    {
        let v =
            crate::register::fused::resize_field(&host, from.dims(), to.dims(), &to_from, &from_to);
        let v: Tensor<2> = Tensor::from_data(TensorData::new(v, [3, to.grid.voxels()]), &device);
        return v / unit_scale(units, to.dims(), &device);
    }
    let v = field::resize(u, from.dims(), to.dims(), &to_from, &from_to, &device);
    v / unit_scale(units, to.dims(), &device)
}

/// [`resize_params`] as tensor operations only, so that the gradient
/// flows through it (the CPU's host shortcut reads the values out).
pub fn resize_tracked(units: FieldUnits, theta: Tensor<2>, from: &Level, to: &Level) -> Tensor<2> {
    let device = to.identity.device();
    let u = theta * unit_scale(units, from.dims(), &device);
    let Some((to_from, from_to)) = level_maps(&from.grid, &to.grid) else {
        return Tensor::zeros([3, to.grid.voxels()], &device);
    };
    let v = field::resize(u, from.dims(), to.dims(), &to_from, &from_to, &device);
    v / unit_scale(units, to.dims(), &device)
}

/// Optimise the field parameters of one level: natively on the CPU where
/// [`native::supported`], else with the composed tensor path. `base`: a
/// displacement (voxels of the level) the forward field is added to and
/// that no regulariser sees (`deformable.start = residual`).
#[allow(clippy::too_many_arguments)]
pub fn optimise_field(
    runner: &mut Runner,
    place: &Place,
    level: &Level,
    li: usize,
    params: &mut [Tensor<2>],
    iters: usize,
    weights: Option<&Tensor<2>>,
    base: Option<&Tensor<2>>,
) -> Result<(), Halt> {
    if native::supported(&runner.pipeline, level, params.len()) {
        let [_, n] = params[0].dims();
        let device = params[0].device();
        let to_host = |t: &Tensor<2>| {
            t.clone()
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| Halt::Failed(format!("could not read the field: {e:?}")))
        };
        let mut theta = to_host(&params[0])?;
        let w = match weights {
            Some(w) => Some(to_host(w)?),
            None => None,
        };
        let b = match base {
            Some(b) => Some(to_host(b)?),
            None => None,
        };
        let r = native::optimise(
            runner,
            place,
            level,
            li,
            &mut theta,
            iters,
            w.as_deref(),
            b.as_deref(),
        );
        params[0] = Tensor::from_data(TensorData::new(theta, [3, n]), &device);
        return r;
    }
    runner.optimise(
        place,
        iters,
        params,
        |pl| Pipeline::level_value(&pl.deformable.lr, li),
        Some((
            Smoothing::at(&runner.pipeline, &level.grid, li),
            level.dims(),
        )),
        |pl, t| objective(pl, level, li, t, weights, base),
    )
}

/// The deformable stage, coarse to fine. `start`: a displacement (voxels,
/// on `lv[0]`'s grid) the forward field starts from instead of the
/// identity (methods.md §1 step 3's initial field); `stage`: the name its
/// progress reports carry.
pub fn run(
    runner: &mut Runner,
    lv: &[Level],
    start: Option<Tensor<2>>,
    stage: &'static str,
) -> FieldResult {
    let shift = crate::register::level_shift(&runner.pipeline, &lv[0].grid);
    let order = crate::register::deformable_order(&runner.pipeline, shift, lv.len());
    let nl = order.len();
    let directions = if runner.pipeline.deformable.symmetric {
        2
    } else {
        1
    };
    let mut params: Vec<Tensor<2>> = Vec::new();
    let mut current = order.first().copied().unwrap_or(0);
    let mut halt = None;
    // `residual`: the start is held, on each level, and the parameters
    // start from zero.
    let (start, held) = match start {
        Some(u) if runner.pipeline.deformable.start == StartField::Residual => (None, Some(u)),
        s => (s, None),
    };
    for (li, &k) in order.iter().enumerate() {
        let level = &lv[k];
        let base = held
            .as_ref()
            .map(|u| resize_params(FieldUnits::Voxel, u.clone(), &lv[0], level));
        params = if params.is_empty() {
            (0..directions)
                .map(|d| match (&start, d) {
                    (Some(u), 0) => {
                        let full = unit_scale(
                            runner.pipeline.deformable.units,
                            lv[0].dims(),
                            &runner.device,
                        );
                        upsample(&runner.pipeline, u.clone() / full, &lv[0], level)
                    }
                    _ => Tensor::zeros([3, level.grid.voxels()], &runner.device),
                })
                .collect()
        } else {
            params
                .into_iter()
                .map(|t| upsample(&runner.pipeline, t, &lv[current], level))
                .collect()
        };
        current = k;
        let pl_now = runner.pipeline.clone();
        let to_field =
            |ps: &[Tensor<2>]| held_displacement(&pl_now, ps[0].clone(), level, base.as_ref());
        let place = Place {
            stage,
            level: li,
            levels: nl,
            grid: &level.grid,
            to_field: &to_field,
        };
        let iters = runner
            .pipeline
            .deformable
            .iterations
            .get(li)
            .copied()
            .unwrap_or(0);
        if let Err(h) = optimise_field(
            runner,
            &place,
            level,
            li,
            &mut params,
            iters,
            None,
            base.as_ref(),
        ) {
            halt = Some(h);
            break;
        }
    }
    // Bring whatever we have to full resolution, in voxels.
    let field = params.into_iter().next().map(|t| {
        let t = if current == 0 {
            t
        } else {
            upsample(&runner.pipeline, t, &lv[current], &lv[0])
        };
        held_displacement(&runner.pipeline, t, &lv[0], held.as_ref())
    });
    FieldResult { field, halt }
}

/// The deformable stage of a pipeline (section `deformable`), from the
/// field so far (the initial field) or the identity.
pub struct Deformable;

/// Run the deformable stage of `runner.pipeline` from the field so far on
/// whichever path serves the run; its field becomes the result so far.
pub fn run_in(ctx: &mut Context, name: &'static str) -> Result<(), Halt> {
    if ctx.kernels.is_some() {
        let start = ctx.gpu_field()?;
        let Some((gpu, parts)) = ctx.gpu_levels()? else {
            return Err(Halt::Failed("the GPU kernels went away".into()));
        };
        let (field, halt) = crate::gpu::engine::run::deformable(
            &gpu,
            parts.runner,
            parts.levels,
            start.as_ref(),
            name,
        )?;
        if let Some((u, host)) = field {
            ctx.set_gpu_field(u, host);
        }
        return halt.map_or(Ok(()), Err);
    }
    let start = ctx.field();
    let parts = ctx.levels();
    let result = run(parts.runner, parts.levels, start, name);
    if let Some(u) = result.field {
        ctx.set_field(u);
    }
    result.halt.map_or(Ok(()), Err)
}

impl Stage for Deformable {
    fn key(&self) -> &'static str {
        "deformable"
    }

    fn live(&self) -> &'static [&'static str] {
        &[
            "mse",
            "ncc",
            "lncc",
            "mi",
            "lr",
            "diffusion",
            "jacobian",
            "inverse_consistency",
        ]
    }

    fn title(&self) -> &'static str {
        "deformable stage"
    }

    fn runs(&self, p: &Pipeline) -> bool {
        p.deformable.enabled
    }

    /// The IC weighting optimises with these parameters too.
    fn shown(&self, p: &Pipeline) -> bool {
        p.deformable.enabled || p.ic.enabled
    }

    fn depth(&self, p: &Pipeline) -> usize {
        p.deformable.levels
    }

    fn schedule(&self, p: &Pipeline) -> Vec<Planned> {
        STEP_NAMES
            .iter()
            .take(p.deformable.steps.clamp(1, MAX_STEPS))
            .flat_map(|name| coarse_to_fine(name, &p.deformable.iterations))
            .collect()
    }

    fn rows(&self, p: &Pipeline) -> Vec<Row> {
        let d = &p.deformable;
        let mut rows = vec![
            Row::new(
                "deformable.levels",
                "deformable levels",
                "Pyramid levels, coarsest first",
            ),
            Row::new(
                "deformable.iterations",
                "iterations per level",
                "Comma-separated, coarse to fine",
            ),
            Row::new(
                "deformable.lr",
                "deformable lr",
                "Learning rate: one value, or one per level",
            ),
            Row::new(
                "deformable.diffusion",
                "diffusion",
                "Diffusive regulariser weight: one value, or one per level",
            ),
            Row::new(
                "deformable.jacobian",
                "jacobian",
                "Weight of mean(max(0, −det J))",
            ),
            Row::new(
                "deformable.smooth_grad_mm",
                "gradient σ (mm)",
                "Gaussian σ of the gradient's smoothing before each step: one value, or one per level; 0 = off",
            ),
            Row::new(
                "deformable.smooth_warp_vox",
                "field σ (voxels)",
                "Gaussian σ of the field's smoothing after each step: one value, or one per level; 0 = off",
            ),
        ];
        if d.svf {
            rows.push(Row::new(
                "deformable.svf_steps",
                "squarings",
                "Scaling-and-squaring steps (≤ 12)",
            ));
        }
        if d.symmetric {
            rows.push(Row::new(
                "deformable.inverse_consistency",
                "inverse consistency",
                "Weight of the inverse-consistency loss",
            ));
        }
        rows.push(Row::new(
            "deformable.steps",
            "refinement steps",
            "Runs in all: each after the first registers the warped image again and composes (1 = off)",
        ));
        rows.push(Row::new(
            "deformable.dice",
            "dice",
            "Weight of the Dice loss of the label maps (needs both; at the finest level)",
        ));
        rows.push(
            Row::new(
                "deformable.units",
                "field units",
                "Units of the optimised field",
            )
            .choices(&["voxel", "normalized"]),
        );
        rows.push(
            Row::new(
                "deformable.parametrisation",
                "parameters",
                "The field itself, or its log-derivative along each axis with the three 1-D \
                 maps composed (no fold by construction)",
            )
            .choices(&["displacement", "gradient"]),
        );
        rows.push(
            Row::new(
                "deformable.start",
                "start field",
                "A start field (network, initial) as the field's first value, regularised with \
                 it, or held as it is with a residual added that alone is regularised",
            )
            .choices(&["parameter", "residual"]),
        );
        rows.push(Row::new(
            "deformable.svf",
            "stationary velocity field",
            "Optimise a velocity field, integrated by scaling and squaring",
        ));
        rows.push(Row::new(
            "deformable.symmetric",
            "both directions",
            "Optimise both directions with an inverse-consistency loss",
        ));
        rows.extend(similarity_rows("deformable"));
        rows
    }

    fn after_set(&self, p: &mut Pipeline, name: &str) {
        if name == "levels" {
            resize_per_level(&mut p.deformable.iterations, p.deformable.levels, 20);
        }
    }

    fn validate(&self, p: &Pipeline) -> Result<(), ParamError> {
        let err = |m: String| Err(ParamError(m));
        let d = &p.deformable;
        check_similarity("deformable", &d.sim, d.enabled || p.ic.enabled)?;
        if d.levels == 0 || d.levels > 6 {
            return err(format!(
                "deformable.levels = {} must be between 1 and 6",
                d.levels
            ));
        }
        check_iterations("deformable.iterations", &d.iterations, d.levels)?;
        for (name, list) in [
            ("deformable.lr", &d.lr),
            ("deformable.diffusion", &d.diffusion),
            ("deformable.smooth_grad_mm", &d.smooth_grad_mm),
            ("deformable.smooth_warp_vox", &d.smooth_warp_vox),
        ] {
            check_per_level(name, list, d.levels)?;
        }
        for &lr in &d.lr {
            check_rate("deformable.lr", lr)?;
        }
        for &w in &d.diffusion {
            check_weight("deformable.diffusion", w)?;
        }
        for (name, list, unit) in [
            ("deformable.smooth_grad_mm", &d.smooth_grad_mm, "mm"),
            ("deformable.smooth_warp_vox", &d.smooth_warp_vox, "voxels"),
        ] {
            for &sigma in list {
                if !(sigma.is_finite() && (0.0..=MAX_SMOOTH).contains(&sigma)) {
                    return err(format!(
                        "{name} = {sigma} must be a σ in {unit} between 0 (off) and {MAX_SMOOTH}"
                    ));
                }
            }
        }
        if d.enabled && d.parametrisation == Parametrisation::Gradient {
            // Added to a start field, the stage's own residual starts from
            // zero, which the log-derivatives express (p = 0).
            let parameter = d.start == StartField::Parameter;
            let clash = [
                (
                    d.svf,
                    "deformable.svf (the map is integrated from its derivatives instead)",
                ),
                (d.symmetric, "deformable.symmetric"),
                (
                    p.initial.enabled && parameter,
                    "initial.enabled (a start field has no log-derivatives; \
                     deformable.start = residual holds it apart)",
                ),
                (
                    p.network.enabled && parameter,
                    "network.enabled (a start field has no log-derivatives; \
                     deformable.start = residual holds it apart)",
                ),
                (p.ic.enabled, "ic.enabled (it restarts from the field)"),
            ];
            if let Some((_, what)) = clash.iter().find(|(on, _)| *on) {
                return err(format!(
                    "deformable.parametrisation = gradient does not combine with {what}"
                ));
            }
        }
        if !(1..=MAX_STEPS).contains(&d.steps) {
            return err(format!(
                "deformable.steps = {} must be between 1 and {MAX_STEPS}",
                d.steps
            ));
        }
        check_weight("deformable.jacobian", d.jacobian)?;
        check_weight("deformable.dice", d.dice)?;
        check_weight("deformable.inverse_consistency", d.inverse_consistency)?;
        if !(1..=12).contains(&d.svf_steps) {
            return err(format!(
                "deformable.svf_steps = {} must be between 1 and 12",
                d.svf_steps
            ));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut Context) -> Result<(), Halt> {
        run_in(ctx, "deformable")?;
        for step in 1..ctx.runner.pipeline.deformable.steps {
            refine(ctx, STEP_NAMES[step.min(MAX_STEPS - 1)])?;
        }
        Ok(())
    }
}

/// The most runs of multi-step refinement.
pub const MAX_STEPS: usize = 4;
/// The progress name of each run of the deformable stage.
const STEP_NAMES: [&str; MAX_STEPS] = ["deformable", "refine-2", "refine-3", "refine-4"];

/// One refinement step (methods.md §5): the deformable stage again, from
/// the identity, on the moving image seen through the affine and the field
/// so far; the field so far then becomes its composition with the new one
/// (the field so far applied after: u ← (u ∘ v)).
fn refine(ctx: &mut Context, name: &'static str) -> Result<(), Halt> {
    let Some(u) = ctx.field() else {
        return run_in(ctx, name);
    };
    let failed = |e: crate::register::EngineError| Halt::Failed(e.0);
    let run_labels = ctx.labels();
    let (warped, labels, grid, identity) = {
        let parts = ctx.levels();
        let l0 = &parts.levels[0];
        let seen = |img: &Tensor<2>| {
            let w = field::warp(img.clone(), l0.dims(), u.clone(), l0.identity.clone());
            crate::register::tensor_to_volume(w, &l0.grid).map_err(failed)
        };
        // The fixed labels are as they were; the moving ones go through
        // the field like the image.
        let labels = match (run_labels, &l0.labels) {
            (Some((lf, _)), Some(l)) => Some((lf.clone(), seen(&l.moving)?)),
            _ => None,
        };
        (
            seen(&l0.moving)?,
            labels,
            l0.grid.clone(),
            l0.identity.clone(),
        )
    };
    let mut step =
        crate::register::Outcome::blank(ctx.runner.pipeline.clone(), &ctx.outcome.device);
    let r = {
        let mut sub = Context::new(
            &mut *ctx.runner,
            ctx.fixed,
            &warped,
            ctx.mask,
            &mut step,
            ctx.kernels.clone(),
        )
        .with_labels(labels.as_ref());
        run_in(&mut sub, name)
    };
    ctx.outcome.stage_dispatches.extend(step.stage_dispatches);
    if let Some(v) = &step.field_vox {
        let v = crate::register::volume_to_tensor(v, &ctx.runner.device);
        ctx.set_field(field::compose(u, v, grid.dims, identity));
    }
    r
}
