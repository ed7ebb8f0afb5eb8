//! The pipeline's stages on the GPU's kernels — the affine stage, the
//! deformable stage coarse to fine and the inverse-consistency weighting —
//! with the images uploaded once and kept on the device ([`Images`]): the
//! kernel paths of `register::stages`' affine, deformable and ic stages,
//! whose composed tensor path is their reference and serves whatever
//! [`supported`] refuses.

use std::sync::Arc;

use super::optim::{At, Dense, Live, Mode, Optim, Problem};
use super::{Buf, Gpu, GpuResult, ops};
use crate::register::params::{Pipeline, SimilarityWeights, StartField};
use crate::register::session::{Halt, Runner};
use crate::register::stages::affine::{level_frames, level_rate, voxel_matrix};
use crate::register::stages::deformable::{level_maps, unit_factors};
use crate::register::{Event, Outcome};
use crate::volume::affine::Mat4;
use crate::volume::pyramid::DEFAULT_SIGMA_VOX;
use crate::volume::resample::Border;
use crate::volume::{Grid, Volume};

/// Why the GPU kernels do not compute this pipeline (the composed tensor
/// path runs it instead), or `Ok`.
pub fn supported(p: &Pipeline) -> Result<(), String> {
    let mut missing = Vec::new();
    let sim = |stage: &str, s: &SimilarityWeights, missing: &mut Vec<String>| {
        if s.mi > 0.0 && s.mi_bins > super::optim::MI_MAX_BINS {
            missing.push(format!(
                "{stage} mutual information with more than {} bins",
                super::optim::MI_MAX_BINS
            ));
        }
    };
    if p.affine.enabled {
        sim("affine", &p.affine.sim, &mut missing);
    }
    let d = &p.deformable;
    if d.enabled || p.ic.enabled {
        sim("deformable", &d.sim, &mut missing);
    }
    if (d.enabled || p.ic.enabled) && d.dice > 0.0 {
        missing.push("the Dice loss of label maps".into());
    }
    if d.enabled && d.parametrisation == crate::register::params::Parametrisation::Gradient {
        missing.push("the gradient parametrisation".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the GPU kernels do not compute {} yet",
            missing.join(", ")
        ))
    }
}

/// One pyramid level of the images on the device.
pub struct Level {
    grid: Grid,
    fixed: Vec<Buf>,
    moving: Vec<Buf>,
    mask: Option<Buf>,
}

impl Level {
    /// The level's images for an optimiser (the mask weights the similarity).
    fn problem(&self) -> Problem {
        Problem {
            dims: self.grid.dims,
            fixed: self.fixed.clone(),
            moving: self.moving.clone(),
            weight: self.mask.clone(),
            reg_weight: None,
        }
    }

    /// The backward direction: the images swap roles, and the fixed mask
    /// does not apply in moving space.
    fn swapped(&self) -> Problem {
        Problem {
            dims: self.grid.dims,
            fixed: self.moving.clone(),
            moving: self.fixed.clone(),
            weight: None,
            reg_weight: None,
        }
    }
}

fn failed(e: String) -> Halt {
    Halt::Failed(e)
}

/// Levels of the fixed image (and mask) and of `moving`, `depth` deep.
fn levels(
    gpu: &Gpu,
    fixed: &[(Vec<Buf>, Grid)],
    mask: Option<&[(Vec<Buf>, Grid)]>,
    moving: Vec<Buf>,
    depth: usize,
) -> GpuResult<Vec<Level>> {
    let grid = &fixed[0].1;
    let moving = ops::pyramid(gpu, moving, grid, depth, DEFAULT_SIGMA_VOX)?;
    Ok(fixed
        .iter()
        .zip(moving)
        .enumerate()
        .map(|(k, ((f, g), (m, _)))| Level {
            grid: g.clone(),
            fixed: f.clone(),
            moving: m,
            mask: mask.and_then(|p| p.get(k)).map(|(b, _)| b[0].clone()),
        })
        .collect())
}

/// The images on the device for the kernels: uploaded and their pyramids
/// built once; the moving levels seen through an affine rebuilt when the
/// affine changes.
pub struct Images {
    grid: Grid,
    depth: usize,
    fixed_pyr: Vec<(Vec<Buf>, Grid)>,
    mask_pyr: Option<Vec<(Vec<Buf>, Grid)>>,
    moving: Vec<Buf>,
    through: Option<(Mat4, Vec<Level>)>,
}

impl Images {
    pub fn upload(
        gpu: &Gpu,
        fixed: &Volume,
        moving: &Volume,
        mask: Option<&Volume>,
        depth: usize,
    ) -> GpuResult<Images> {
        let fixed_b = ops::upload_channels(gpu, fixed, "engine: fixed image")?;
        let fixed_pyr = ops::pyramid(gpu, fixed_b, &fixed.grid, depth, DEFAULT_SIGMA_VOX)?;
        let mask_pyr = match mask {
            Some(m) => Some(
                ops::upload_channels(gpu, m, "engine: mask")
                    .and_then(|b| ops::pyramid(gpu, b, &fixed.grid, depth, DEFAULT_SIGMA_VOX))?,
            ),
            None => None,
        };
        let moving = ops::upload_channels(gpu, moving, "engine: moving image")?;
        Ok(Images {
            grid: fixed.grid.clone(),
            depth,
            fixed_pyr,
            mask_pyr,
            moving,
            through: None,
        })
    }

    /// The levels with the moving image seen through `affine` (voxels of
    /// the fixed grid; the identity uses it as uploaded).
    pub fn levels(&mut self, gpu: &Gpu, affine: &Mat4) -> GpuResult<&[Level]> {
        let stale = self.through.as_ref().is_none_or(|(a, _)| a != affine);
        if stale {
            let moving = if *affine == crate::volume::affine::IDENTITY {
                self.moving.clone()
            } else {
                self.moving
                    .iter()
                    .map(|m| {
                        ops::resample(
                            gpu,
                            m,
                            self.grid.dims,
                            self.grid.dims,
                            affine,
                            Border::Constant(0.0),
                        )
                    })
                    .collect::<GpuResult<Vec<_>>>()?
            };
            let lv = levels(
                gpu,
                &self.fixed_pyr,
                self.mask_pyr.as_deref(),
                moving,
                self.depth,
            )?;
            self.through = Some((*affine, lv));
        }
        Ok(self.through.as_ref().map_or(&[][..], |(_, l)| l.as_slice()))
    }
}

/// A displacement field (3 channels) into the kernels' buffers.
pub fn upload_field(gpu: &Gpu, v: &Volume) -> GpuResult<[Buf; 3]> {
    let b = ops::upload_channels(gpu, v, "engine: field")?;
    <[Buf; 3]>::try_from(b).map_err(|b| format!("a field has 3 components, not {}", b.len()))
}

/// A stage's displacement (buffers and host copy), if it made one, and how
/// it ended.
pub type StageField = (Option<([Buf; 3], Volume)>, Option<Halt>);

/// The deformable stage on the kernels from `start` (or the identity), as
/// `stages::deformable::run`: its displacement (voxels, full resolution)
/// and how it ended.
pub fn deformable(
    gpu: &Arc<Gpu>,
    runner: &mut Runner,
    lv: &[Level],
    start: Option<&[Buf; 3]>,
    name: &'static str,
) -> Result<StageField, Halt> {
    // A held start is the base of every level; otherwise the start is
    // the parameters' first value.
    let base = held_start(&runner.pipeline, start);
    let first = if base.is_some() { None } else { start };
    let (th, halt) = deformable_stage(gpu, runner, lv, first, base, name);
    let Some(th) = th else {
        return Ok((None, halt));
    };
    let u = displacement(gpu, &th, &runner.pipeline, &lv[0].grid, base).map_err(failed)?;
    let host = super::optim::read_field(gpu, &u, &lv[0].grid).map_err(failed)?;
    Ok((Some((u, host)), halt))
}

/// The start field where the deformable stage holds it (`deformable.start
/// = residual`, as `stages::deformable::run`): its parameters then start
/// from zero and it is added to their displacement on every level.
fn held_start<'a>(pl: &Pipeline, start: Option<&'a [Buf; 3]>) -> Option<&'a [Buf; 3]> {
    start.filter(|_| pl.deformable.start == StartField::Residual)
}

/// The inverse-consistency weighting on the kernels, from the field so
/// far; writes the final field and the weights into `outcome`.
pub fn ic(
    gpu: &Arc<Gpu>,
    runner: &mut Runner,
    level: &Level,
    start: Option<[Buf; 3]>,
    fixed: &Volume,
    mask: Option<&Volume>,
    outcome: &mut Outcome,
) -> Result<(), Halt> {
    let foreground = crate::register::stages::ic::foreground(fixed, mask);
    gpu.upload("engine: foreground", &foreground)
        .map_err(failed)
        .and_then(|fg| ic_stage(gpu, runner, level, start, &fg, outcome))
}

/// The affine stage (as `stages::affine::run`): the matrix and how it ended.
pub fn affine_stage(
    gpu: &Arc<Gpu>,
    runner: &mut Runner,
    lv: &[Level],
) -> (Option<Mat4>, Option<Halt>) {
    let p = runner.pipeline.affine.clone();
    let full = lv[0].grid.clone();
    let shift = crate::register::level_shift(&runner.pipeline, &full);
    let order = crate::register::affine_order(&runner.pipeline, shift, lv.len());
    let mut delta = [0f64; 12];
    let mut halt = None;
    for (i, &k) in order.iter().enumerate() {
        let level = &lv[k];
        let Some((into, back)) = level_frames(&full, &level.grid) else {
            break;
        };
        let problem = level.problem();
        let live_of =
            move |pl: &Pipeline| Live::new(&pl.affine.sim, 0.0, 0.0, level_rate(pl.affine.lr, i));
        let r = Optim::new(
            gpu.clone(),
            &problem,
            &runner.pipeline.affine.sim,
            Mode::Affine {
                into,
                back,
                delta: Box::new(delta),
            },
            live_of(&runner.pipeline),
        )
        .map_err(failed)
        .and_then(|mut o| {
            let at = At {
                stage: "affine",
                level: i,
                levels: order.len(),
                grid: &level.grid,
            };
            guard(runner, |pl| &pl.affine.sim, false, false);
            let r = o.run(runner, &at, p.iterations, &live_of);
            runner.live_guard = None;
            match o.delta() {
                Ok(d) => delta = d,
                Err(e) => return Err(failed(e)),
            }
            r
        });
        if let Err(h) = r {
            halt = Some(h);
            break;
        }
    }
    let d32: Vec<f32> = delta.iter().map(|v| *v as f32).collect();
    (voxel_matrix(&d32, full.dims), halt)
}

/// Refuse live changes that switch on a term the running kernels do not
/// compute (a similarity term off at the start, the Jacobian penalty or
/// the inverse-consistency loss outside a model that has them).
fn guard(
    runner: &mut Runner,
    sim: fn(&Pipeline) -> &SimilarityWeights,
    jacobian: bool,
    inverse_consistency: bool,
) {
    let s0 = sim(&runner.pipeline).clone();
    runner.live_guard = Some(Box::new(move |pl: &Pipeline| {
        let s = sim(pl);
        (s.mi == 0.0 || s0.mi > 0.0)
            && (s.mse == 0.0 || s0.mse > 0.0)
            && (s.ncc == 0.0 || s0.ncc > 0.0)
            && (s.lncc == 0.0 || s0.lncc > 0.0)
            && (jacobian || pl.deformable.jacobian == 0.0)
            && (inverse_consistency || pl.deformable.inverse_consistency == 0.0)
    }));
}

/// θ of level `from` on level `to` (as `stages::deformable::upsample`).
fn upsample(
    gpu: &Gpu,
    pl: &Pipeline,
    theta: &[Buf; 3],
    from: &Grid,
    to: &Grid,
) -> GpuResult<[Buf; 3]> {
    let units = pl.deformable.units;
    let Some((to_from, from_to)) = level_maps(from, to) else {
        return ops::field_bufs(gpu, to.voxels());
    };
    ops::resize(
        gpu,
        theta,
        from.dims,
        unit_factors(units, from.dims),
        to.dims,
        unit_factors(units, to.dims),
        &to_from,
        &from_to,
    )
}

/// Optimise `model`'s fields on one level for `iters` iterations (`li`:
/// the deformable level index for learning rate and diffusion weight).
fn optimise_level(
    gpu: &Arc<Gpu>,
    runner: &mut Runner,
    problem: &Problem,
    model: Dense,
    li: usize,
    iters: usize,
    at: &At,
) -> Result<(), Halt> {
    let live_of = move |pl: &Pipeline| Live::deformable(pl, li);
    let (jacobian, inverse_consistency) = (model.jacobian, model.inverse_consistency);
    let mut o = Optim::new(
        gpu.clone(),
        problem,
        &runner.pipeline.deformable.sim,
        Mode::Dense(model),
        live_of(&runner.pipeline),
    )
    .map_err(failed)?;
    guard(
        runner,
        |pl| &pl.deformable.sim,
        jacobian,
        inverse_consistency,
    );
    let r = o.run(runner, at, iters, &live_of);
    runner.live_guard = None;
    r
}

/// The deformable stage (as `stages::deformable::run`) from `start` (the
/// parameters' first value) or with `held` added to their displacement
/// on every level: the forward θ at full resolution (parameter units) and
/// how it ended.
fn deformable_stage(
    gpu: &Arc<Gpu>,
    runner: &mut Runner,
    lv: &[Level],
    start: Option<&[Buf; 3]>,
    held: Option<&[Buf; 3]>,
    stage: &'static str,
) -> (Option<[Buf; 3]>, Option<Halt>) {
    let shift = crate::register::level_shift(&runner.pipeline, &lv[0].grid);
    let order = crate::register::deformable_order(&runner.pipeline, shift, lv.len());
    let nl = order.len();
    let directions = if runner.pipeline.deformable.symmetric {
        2
    } else {
        1
    };
    let mut params: Vec<[Buf; 3]> = Vec::new();
    let mut current = order.first().copied().unwrap_or(0);
    let mut halt = None;
    // A held start: the parameters start from zero, and each level adds
    // the start (brought onto its grid, voxels) to their displacement.
    for (li, &k) in order.iter().enumerate() {
        let level = &lv[k];
        let base = match (held, level_maps(&lv[0].grid, &level.grid)) {
            // On the fixed grid itself the start is the base as it is (the
            // model only reads it).
            (Some(u), _) if k == 0 => Some(u.clone()),
            (Some(u), Some((to_from, from_to))) => match ops::resize(
                gpu,
                u,
                lv[0].grid.dims,
                [1.0; 3],
                level.grid.dims,
                [1.0; 3],
                &to_from,
                &from_to,
            ) {
                Ok(b) => Some(b),
                Err(e) => {
                    halt = Some(failed(e));
                    break;
                }
            },
            _ => None,
        };
        let next: GpuResult<Vec<[Buf; 3]>> = if params.is_empty() {
            (0..directions)
                .map(|d| match (start, d) {
                    // The initial displacement (voxels on lv[0]) in this
                    // level's parameter units.
                    (Some(u), 0) => match level_maps(&lv[0].grid, &level.grid) {
                        Some((to_from, from_to)) => ops::resize(
                            gpu,
                            u,
                            lv[0].grid.dims,
                            [1.0; 3],
                            level.grid.dims,
                            unit_factors(runner.pipeline.deformable.units, level.grid.dims),
                            &to_from,
                            &from_to,
                        ),
                        None => ops::field_bufs(gpu, level.grid.voxels()),
                    },
                    _ => ops::field_bufs(gpu, level.grid.voxels()),
                })
                .collect()
        } else {
            params
                .iter()
                .map(|t| upsample(gpu, &runner.pipeline, t, &lv[current].grid, &level.grid))
                .collect()
        };
        params = match next {
            Ok(p) => p,
            Err(e) => {
                halt = Some(failed(e));
                break;
            }
        };
        current = k;
        let iters = runner
            .pipeline
            .deformable
            .iterations
            .get(li)
            .copied()
            .unwrap_or(0);
        let problem = level.problem();
        let at = At {
            stage,
            level: li,
            levels: nl,
            grid: &level.grid,
        };
        let model = Dense::of(&runner.pipeline, params.clone(), level.grid.dims)
            .smoothed(&runner.pipeline, &level.grid, li)
            .held(base);
        if let Err(h) = optimise_level(gpu, runner, &problem, model, li, iters, &at) {
            halt = Some(h);
            break;
        }
    }
    let Some(theta) = params.into_iter().next() else {
        return (None, halt);
    };
    if current == 0 {
        return (Some(theta), halt);
    }
    match upsample(
        gpu,
        &runner.pipeline,
        &theta,
        &lv[current].grid,
        &lv[0].grid,
    ) {
        Ok(t) => (Some(t), halt),
        Err(e) => (None, Some(halt.unwrap_or(failed(e)))),
    }
}

/// The voxel displacement θ stands for (`stages::deformable::held_displacement`):
/// θ·s, integrated by scaling and squaring for a velocity field, plus a
/// held start field where there is one.
fn displacement(
    gpu: &Gpu,
    theta: &[Buf; 3],
    pl: &Pipeline,
    grid: &Grid,
    base: Option<&[Buf; 3]>,
) -> GpuResult<[Buf; 3]> {
    let d = &pl.deformable;
    let scale = unit_factors(d.units, grid.dims);
    let (u, scale) = if d.svf {
        (
            ops::exp_field(gpu, theta, scale, grid.dims, d.svf_steps)?,
            [1.0; 3],
        )
    } else {
        (theta.clone(), scale)
    };
    plus(gpu, &u, scale, base, grid.dims)
}

/// u·s (+ base), in new buffers.
fn plus(
    gpu: &Gpu,
    u: &[Buf; 3],
    scale: [f32; 3],
    base: Option<&[Buf; 3]>,
    dims: [usize; 3],
) -> GpuResult<[Buf; 3]> {
    let out = ops::field_bufs(gpu, dims.iter().product())?;
    ops::scaled(gpu, u, scale, base, dims, &out)?;
    Ok(out)
}

/// Inverse-consistency weighting (as `stages::ic::run`) on the finest
/// level, starting from the deformable stage's displacement `start`
/// (voxels; the identity without one). Plain dense fields in each
/// direction: the images swap roles for the backward one. `foreground`:
/// 1 or 0 per voxel, where the round-trip error counts.
fn ic_stage(
    gpu: &Arc<Gpu>,
    runner: &mut Runner,
    level: &Level,
    start: Option<[Buf; 3]>,
    foreground: &Buf,
    outcome: &mut Outcome,
) -> Result<(), Halt> {
    let pl = runner.pipeline.clone();
    let li = pl.deformable.levels.saturating_sub(1);
    let dims = level.grid.dims;
    let n = level.grid.voxels();
    let scale = unit_factors(pl.deformable.units, dims);
    let start = match start {
        Some(t) => t,
        None => ops::field_bufs(gpu, n).map_err(failed)?,
    };
    // Where the deformable stage held a start field, each run here holds
    // its own start in turn (as `stages::ic::steps`): θ from zero, the
    // start as its base.
    let held = pl.holds_start();
    let base = |u: &[Buf; 3]| held.then(|| u.clone());
    // Plain fields in one direction each (with the Jacobian penalty if on).
    let model = |theta: &[Buf; 3], base: Option<[Buf; 3]>| {
        Dense {
            svf_steps: None,
            inverse_consistency: false,
            ..Dense::of(&pl, vec![theta.clone()], dims)
        }
        .smoothed(&pl, &level.grid, li)
        .held(base)
    };
    // θ = u / s, or zero where u is held.
    let params = |u: &[Buf; 3]| -> GpuResult<[Buf; 3]> {
        let out = ops::field_bufs(gpu, n)?;
        if !held {
            ops::scaled(gpu, u, scale.map(|s| 1.0 / s), None, dims, &out)?;
        }
        Ok(out)
    };
    let at = |stage| At {
        stage,
        level: 0,
        levels: 1,
        grid: &level.grid,
    };
    // The displacement of θ with its start held (or not).
    let total = |theta: &[Buf; 3], start: &[Buf; 3]| {
        plus(gpu, theta, scale, base(start).as_ref(), dims).map_err(failed)
    };
    // 1. Forward refinement; 2. the backward direction from the inverse of
    // the start (the images swap roles; the fixed mask does not apply in
    // moving space).
    let forward = params(&start).map_err(failed)?;
    let problem = level.problem();
    optimise_level(
        gpu,
        runner,
        &problem,
        model(&forward, base(&start)),
        li,
        pl.ic.iterations,
        &at("ic-forward"),
    )?;
    let inverse = ops::invert(
        gpu,
        &start,
        dims,
        crate::register::stages::ic::INVERSE_ITERATIONS,
    )
    .map_err(failed)?;
    let backward = params(&inverse).map_err(failed)?;
    let swapped = level.swapped();
    optimise_level(
        gpu,
        runner,
        &swapped,
        model(&backward, base(&inverse)),
        li,
        pl.ic.iterations,
        &at("ic-backward"),
    )?;
    // 3. Weights from the round-trip error.
    let w = ops::ic_weights(
        gpu,
        &total(&forward, &start)?,
        &total(&backward, &inverse)?,
        foreground,
        [1.0; 3],
        dims,
        pl.ic.power,
        pl.ic.sigma,
    )
    .map_err(failed)?;
    let weights = gpu
        .read(&w)
        .and_then(|v| Volume::from_data(level.grid.clone(), 1, v).map_err(|e| e.to_string()))
        .map_err(failed)?;
    runner.send(Event::IcWeights(weights.clone()));
    outcome.ic_weights = Some(weights);
    // 4. The final weighted run from the deformable stage's field: the map
    // weights both the similarity (with the mask) and the regulariser.
    let forward = params(&start).map_err(failed)?;
    let sim_weight = match &level.mask {
        Some(m) => ops::product(gpu, m, &w).map_err(failed)?,
        None => w.clone(),
    };
    let problem = Problem {
        weight: Some(sim_weight),
        reg_weight: Some(w),
        ..problem
    };
    let r = optimise_level(
        gpu,
        runner,
        &problem,
        model(&forward, base(&start)),
        li,
        pl.ic.final_iterations,
        &at("ic-final"),
    );
    let u = total(&forward, &start)?;
    outcome.field_vox = Some(super::optim::read_field(gpu, &u, &level.grid).map_err(failed)?);
    r
}

/// Tell a refused GPU run's reason to the user.
pub fn refusal_notice(why: &str) -> Event {
    Event::Notice(format!(
        "{why}: running the composed tensor path on the GPU instead (much slower)"
    ))
}

/// Where an iteration's time goes at full resolution: seconds per
/// dispatch of each kernel of the affine and the deformable iteration of
/// `pipeline` on these (prepared) images, each kernel run `reps` times.
pub fn profile(
    gpu: &Arc<Gpu>,
    fixed: &Volume,
    moving: &Volume,
    pipeline: &Pipeline,
    reps: usize,
) -> GpuResult<Vec<(String, super::optim::KernelTimes)>> {
    let grid = &fixed.grid;
    let problem = Problem {
        dims: grid.dims,
        fixed: ops::upload_channels(gpu, fixed, "engine: fixed image")?,
        moving: ops::upload_channels(gpu, moving, "engine: moving image")?,
        weight: None,
        reg_weight: None,
    };
    let mut out = Vec::new();
    let (into, back) = level_frames(grid, grid)
        .ok_or_else(|| "the image's voxel matrix is not invertible".to_string())?;
    let a = Optim::new(
        gpu.clone(),
        &problem,
        &pipeline.affine.sim,
        Mode::Affine {
            into,
            back,
            delta: Box::new([0.0; 12]),
        },
        Live::new(&pipeline.affine.sim, 0.0, 0.0, 0.0),
    )?;
    out.push(("affine".to_string(), a.profile(reps)?));
    let d = &pipeline.deformable;
    let theta = (0..if d.symmetric { 2 } else { 1 })
        .map(|_| ops::field_bufs(gpu, grid.voxels()))
        .collect::<GpuResult<_>>()?;
    let mut live = Live::deformable(pipeline, 0);
    live.reg[2] = 0.0;
    let o = Optim::new(
        gpu.clone(),
        &problem,
        &d.sim,
        Mode::Dense(Dense::of(pipeline, theta, grid.dims).smoothed(
            pipeline,
            grid,
            d.levels.saturating_sub(1),
        )),
        live,
    )?;
    out.push(("deformable".to_string(), o.profile(reps)?));
    Ok(out)
}
