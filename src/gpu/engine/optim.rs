//! One level's optimisation on the GPU — a dense field (θ, three component
//! buffers, in parameter units) or the affine matrix (Δ in the state
//! buffer) — as a fixed list of dispatches per iteration, mirroring the
//! CPU's native optimiser (`register::stages::native`):
//!
//! per channel: `sample` (moving image at the points, MSE part of dL/dI,
//! value partials) → local NCC's box passes adding to dL/dI → `chain`
//! (dL/dθ with the diffusion gradient, or the affine gradient's partials);
//! then `reduce` (one workgroup: term values, weighted total, loss history
//! row, non-finite guard; the affine Adam step) and, for a dense field,
//! `adam` in place.
//!
//! Iterations are encoded in batches (about 30 ms of work each) and the
//! loss history is read back asynchronously: nothing waits for the GPU
//! inside a batch, progress reports follow a batch behind, and controls
//! (pause, stop, live changes) apply between batches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytemuck::{Pod, Zeroable};

use super::{Buf, Gpu, GpuResult, Reading, group_count};
use crate::register::params::SimilarityWeights;
use crate::register::session::{Halt, Runner, SnapshotField};
use crate::register::smoothing::{Radii, Smoothing};
use crate::volume::{Grid, Volume};

pub const F_WEIGHTED: u32 = 1;
pub const F_AFFINE: u32 = 2;
pub const F_MSE: u32 = 4;
pub const F_LNCC: u32 = 8;
pub const F_DIFFUSION: u32 = 16;
pub const F_NCC: u32 = 32;
pub const F_REG_WEIGHTED: u32 = 256;

/// Term indices of the loss history (`reduce.wgsl`).
pub const T_MSE: usize = 0;
pub const T_LNCC: usize = 1;
pub const T_NCC: usize = 2;
pub const T_MI: usize = 3;
/// Most histogram bins of the GPU's mutual information.
pub const MI_MAX_BINS: usize = 32;
pub const T_DIFFUSION: usize = 4;
/// Floats per history row: total, 16 term values (8 per direction),
/// halted, iteration, spare.
const ROW: usize = 20;
/// Where a history row says the optimiser halted.
const HALTED: usize = 17;
/// Rows in the history ring (more than a batch times the batches in flight).
const ROWS: usize = 512;
/// Batches in flight before the loop waits for the oldest.
const IN_FLIGHT: usize = 3;
/// Longest batch.
const MAX_BATCH: usize = 64;
/// Wall time a batch should take (controls apply between batches).
const BATCH_SECONDS: f64 = 0.03;
/// With a viewer drawing on the same device (one queue), its frames wait
/// behind the engine's queued work: short batches, one in flight, so that
/// a frame waits at most a few milliseconds.
const SHARED_IN_FLIGHT: usize = 1;
const SHARED_BATCH_SECONDS: f64 = 0.004;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Geo {
    pub dims: [u32; 4],
    pub info: [u32; 4],
    pub scale: [f32; 4],
    pub into: [[f32; 4]; 3],
    pub back: [[f32; 4]; 3],
}

/// Weights that may change during a run.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Debug, PartialEq)]
pub struct Live {
    /// mse, lncc, ncc, mi
    pub sim: [f32; 4],
    /// diffusion, jacobian, learning rate, inverse consistency
    pub reg: [f32; 4],
}

impl Live {
    pub fn new(sim: &SimilarityWeights, diffusion: f64, jacobian: f64, lr: f64) -> Self {
        Live {
            sim: [
                sim.mse as f32,
                sim.lncc as f32,
                sim.ncc as f32,
                sim.mi as f32,
            ],
            reg: [diffusion as f32, jacobian as f32, lr as f32, 0.0],
        }
    }

    /// The deformable stage's live weights at its level `li` (learning rate
    /// and diffusion weight per level).
    pub fn deformable(pl: &crate::register::Pipeline, li: usize) -> Self {
        let d = &pl.deformable;
        let level = crate::register::Pipeline::level_value;
        Live::new(
            &d.sim,
            level(&d.diffusion, li),
            d.jacobian,
            level(&d.lr, li),
        )
        .with_ic(d.inverse_consistency)
    }

    /// With the inverse-consistency loss's weight.
    pub fn with_ic(mut self, weight: f64) -> Self {
        self.reg[3] = weight as f32;
        self
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Chan {
    idx: [u32; 4],
    slot: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Plan {
    head: [u32; 4],
    ent: [[u32; 4]; 128],
    scl: [[f32; 4]; 128],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct State {
    counts: [u32; 4],
    corr: [f32; 4],
    k: [[f32; 4]; 3],
    delta: [f32; 12],
    m1: [f32; 12],
    m2: [f32; 12],
    last_lr: [f32; 4],
    grad: [f32; 12],
}

/// The images of one level (one buffer per channel) and their weights.
pub struct Problem {
    pub dims: [usize; 3],
    pub fixed: Vec<Buf>,
    pub moving: Vec<Buf>,
    /// Weight of the similarity per voxel (mask × IC weights).
    pub weight: Option<Buf>,
    /// Weight of the regulariser per voxel where it differs (IC weights).
    pub reg_weight: Option<Buf>,
}

impl Problem {
    pub fn voxels(&self) -> usize {
        self.dims.iter().product()
    }
}

/// A dense field model: θ per direction (forward, and backward when
/// symmetric; parameter units, voxels = θ·s), integrated by scaling and
/// squaring when it is a velocity field, with the optional Jacobian
/// penalty and inverse-consistency loss.
pub struct Dense {
    pub theta: Vec<[Buf; 3]>,
    pub scale: [f32; 3],
    /// Scaling-and-squaring steps when θ is a stationary velocity field.
    pub svf_steps: Option<usize>,
    pub jacobian: bool,
    /// The inverse-consistency loss between the two directions.
    pub inverse_consistency: bool,
    /// Smoothing of the gradient before each Adam step and of θ after it
    /// (`register::smoothing`; set per level by the caller).
    pub smooth: Smoothing,
    /// A held start field (voxels of this grid) the forward direction's
    /// displacement is added to (`deformable.start = residual`): the
    /// images are sampled through u + base, the Jacobian penalty sees
    /// u + base, and the diffusion and smoothing act on θ alone.
    pub base: Option<[Buf; 3]>,
}

impl Dense {
    /// A plain field in one direction.
    pub fn plain(theta: [Buf; 3], scale: [f32; 3]) -> Self {
        Dense {
            theta: vec![theta],
            scale,
            svf_steps: None,
            jacobian: false,
            inverse_consistency: false,
            smooth: Smoothing::default(),
            base: None,
        }
    }

    /// The deformable stage's model of `pl` on a grid of `dims`, for θ (one
    /// per direction: two when symmetric).
    pub fn of(pl: &crate::register::Pipeline, theta: Vec<[Buf; 3]>, dims: [usize; 3]) -> Self {
        let d = &pl.deformable;
        Dense {
            theta,
            scale: crate::register::stages::deformable::unit_factors(d.units, dims),
            svf_steps: d.svf.then_some(d.svf_steps),
            jacobian: d.jacobian > 0.0,
            inverse_consistency: d.symmetric && d.inverse_consistency > 0.0,
            smooth: Smoothing::default(),
            base: None,
        }
    }

    /// With the smoothing of `pl`'s deformable stage at level index `li`
    /// on `grid`.
    pub fn smoothed(mut self, pl: &crate::register::Pipeline, grid: &Grid, li: usize) -> Self {
        self.smooth = Smoothing::at(pl, grid, li);
        self
    }

    /// Whether the field goes through explicit displacement buffers (and
    /// the model kernels) rather than the fused dense path.
    fn general(&self) -> bool {
        self.svf_steps.is_some() || self.jacobian || self.inverse_consistency || self.base.is_some()
    }

    /// With a held start field for the forward direction.
    pub fn held(mut self, base: Option<[Buf; 3]>) -> Self {
        self.base = base;
        self
    }
}

/// What is optimised.
pub enum Mode {
    Dense(Dense),
    /// The affine Δ (M = [I|0] + Δ on normalised coordinates x̂ = into·p;
    /// sampling points q = back·(M x̂)).
    Affine {
        into: [[f64; 4]; 3],
        back: [[f64; 4]; 3],
        delta: Box<[f64; 12]>,
    },
}

/// Where a loop is, for progress reports and snapshots.
pub struct At<'a> {
    pub stage: &'a str,
    pub level: usize,
    pub levels: usize,
    pub grid: &'a Grid,
}

/// Seconds per dispatch of each kernel of an iteration, in order.
pub type KernelTimes = Vec<(&'static str, f64)>;

/// Voxels per invocation of the kernels that reduce (`VPT` in common.wgsl).
pub const VPT: usize = 8;

#[derive(Clone, Copy)]
enum Size {
    /// One invocation per item.
    Grid(usize),
    /// One invocation per `VPT` items (kernels that reduce).
    Chunks(usize),
    One,
}

#[derive(Clone)]
struct Step {
    label: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind: wgpu::BindGroup,
    size: Size,
}

/// A batch whose loss history is on its way back.
struct Pending {
    first: usize,
    count: usize,
    reading: Reading,
}

/// A field on the GPU (voxel displacement, one buffer per component), for
/// a viewer on the same device.
#[derive(Clone)]
pub struct DeviceField {
    pub gpu: Arc<Gpu>,
    pub components: [Buf; 3],
    pub dims: [usize; 3],
}

impl std::fmt::Debug for DeviceField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceField({:?} on {})", self.dims, self.gpu.name)
    }
}

impl DeviceField {
    /// The field in host memory.
    pub fn to_volume(&self, grid: &Grid) -> GpuResult<Volume> {
        read_field(&self.gpu, &self.components, grid)
    }
}

/// A field (one buffer per component) read back as a 3-channel volume.
pub fn read_field(gpu: &Gpu, components: &[Buf; 3], grid: &Grid) -> GpuResult<Volume> {
    let n = grid.voxels();
    let mut data = Vec::with_capacity(3 * n);
    for c in components {
        let v = gpu.read(c)?;
        data.extend_from_slice(&v[..n.min(v.len())]);
    }
    Volume::from_data(grid.clone(), 3, data).map_err(|e| e.to_string())
}

fn mat(m: &[[f64; 4]; 3]) -> [[f32; 4]; 3] {
    m.map(|r| r.map(|v| v as f32))
}

/// K = back · ([I|0] + Δ) · into (3×4, acting on [p, 1]).
pub fn sampling_matrix(
    into: &[[f64; 4]; 3],
    back: &[[f64; 4]; 3],
    delta: &[f64; 12],
) -> [[f64; 4]; 3] {
    let m = |r: usize, k: usize| delta[r * 4 + k] + if r == k { 1.0 } else { 0.0 };
    // A = M · into (into's fourth row is [0 0 0 1])
    let mut a = [[0f64; 4]; 3];
    for r in 0..3 {
        for k in 0..4 {
            a[r][k] = (0..3).map(|j| m(r, j) * into[j][k]).sum::<f64>()
                + if k == 3 { m(r, 3) } else { 0.0 };
        }
    }
    let mut out = [[0f64; 4]; 3];
    for r in 0..3 {
        for k in 0..4 {
            out[r][k] = (0..3).map(|j| back[r][j] * a[j][k]).sum::<f64>()
                + if k == 3 { back[r][3] } else { 0.0 };
        }
    }
    out
}

/// One direction of a dense model: its parameters and optimiser buffers.
struct Direction {
    theta: [Buf; 3],
    m: [[Buf; 3]; 2],
    grad: [Buf; 3],
    /// Model kernels: the displacements u₀ … u_K (K = 0 without SVF).
    u: Vec<[Buf; 3]>,
    /// The Jacobian penalty's dL/dJ per voxel (three rows of vec4).
    jm: Option<[Buf; 3]>,
}

pub struct Optim {
    gpu: Arc<Gpu>,
    n: usize,
    dims: [usize; 3],
    scale: [f32; 3],
    dirs: Vec<Direction>,
    state: wgpu::Buffer,
    history: wgpu::Buffer,
    live: wgpu::Buffer,
    live_now: Live,
    steps: Vec<Step>,
    /// The field steps of the forward direction (model kernels), for
    /// snapshots and results.
    field_steps: Vec<Step>,
    undo: Vec<Step>,
    /// Terms reported: (history index, kind, name).
    terms: Vec<(usize, usize, String)>,
    iterations_run: usize,
}

/// The displacement a direction's images are sampled through in the model
/// kernels: u_K, or u_K + base where a start is held (the last of `u`).
fn sampled_field(dir: &Direction) -> GpuResult<&[Buf; 3]> {
    dir.u
        .last()
        .ok_or_else(|| "internal: the model kernels have no displacement".to_string())
}

/// Term kinds (index within a direction's eight history values).
const K_JACOBIAN: usize = 5;
const K_IC: usize = 6;
/// History values per direction.
const PER_DIR: usize = 8;

/// Resources shared while the dispatch list is built.
struct Build<'a> {
    gpu: &'a Arc<Gpu>,
    n: usize,
    live_u: &'a wgpu::Buffer,
    state_b: &'a wgpu::Buffer,
    partials: &'a Buf,
    lncc: Option<&'a LnccScratch>,
    /// The warped image and dL/dI between the passes of local NCC.
    scratch: Option<&'a (Buf, Buf)>,
    /// The regulariser's weight map (IC weights), if any.
    reg_weight: Option<&'a Buf>,
    /// Global NCC's statistics per channel (8 floats each).
    ncc: Option<&'a Buf>,
    mi: Option<&'a MiScratch>,
}

/// Mutual information's buffers (shared by the channels, which run one
/// after another) and per-direction parameters.
struct MiScratch {
    hist: Buf,
    joint: Buf,
    /// Per direction: bins, histogram divisor.
    params: Vec<wgpu::Buffer>,
    bins: usize,
}

/// Box-sum buffers and uniforms of local NCC (shared by every channel).
struct LnccScratch {
    s: Vec<Buf>,
    t: Vec<Buf>,
    box_y3: wgpu::Buffer,
    box_x4: wgpu::Buffer,
    box_y4: wgpu::Buffer,
}

/// The points a similarity pass samples at.
enum Points<'a> {
    /// p + geo.scale · field (θ with s, or u with 1); dL/dfield goes to `grad`.
    Field {
        field: &'a [Buf; 3],
        grad: &'a [Buf; 3],
    },
    /// K·[p, 1] from the state buffer; dL/dΔ's partials to the channel's slots.
    Affine,
}

/// One direction's images, weights and uniforms for the similarity passes.
struct SimPass<'a> {
    problem: &'a Problem,
    geo: &'a wgpu::Buffer,
    chans: &'a [wgpu::Buffer],
    /// Mutual information's per-channel slots, and the direction.
    mi_chans: &'a [wgpu::Buffer],
    dir: usize,
    /// The fixed image's window mean and variance per channel (local NCC).
    stats: &'a [(Buf, Buf)],
}

impl Optim {
    /// Buffers, bind groups and the per-iteration dispatch list for `mode`
    /// on `problem` with the similarity `sim` (terms with weight 0 are not
    /// computed; the live weights may change the others). A symmetric model
    /// optimises its second direction on the same images with their roles
    /// swapped (and no similarity weight: a fixed mask does not apply in
    /// moving space).
    pub fn new(
        gpu: Arc<Gpu>,
        problem: &Problem,
        sim: &SimilarityWeights,
        mode: Mode,
        live: Live,
    ) -> GpuResult<Self> {
        let g = gpu.clone();
        g.scoped("preparing the GPU optimiser", || {
            Self::build(gpu, problem, sim, mode, live)
        })?
    }

    fn build(
        gpu: Arc<Gpu>,
        problem: &Problem,
        sim: &SimilarityWeights,
        mode: Mode,
        live: Live,
    ) -> GpuResult<Self> {
        let n = problem.voxels();
        let dims = problem.dims;
        let channels = problem.fixed.len();
        if channels == 0 || problem.moving.len() != channels {
            return Err("internal: the GPU optimiser needs images".into());
        }
        if sim.mi > 0.0 && !(2..=MI_MAX_BINS).contains(&sim.mi_bins) {
            return Err(format!(
                "the GPU's mutual information takes up to {MI_MAX_BINS} bins, not {}",
                sim.mi_bins
            ));
        }
        // Partial sums: one per workgroup of the reducing kernels.
        let groups = group_count(n.div_ceil(VPT));
        let affine = matches!(mode, Mode::Affine { .. });
        let (use_mse, use_lncc, use_ncc) = (sim.mse > 0.0, sim.lncc > 0.0, sim.ncc > 0.0);
        let use_mi = sim.mi > 0.0;
        let dense = match &mode {
            Mode::Dense(d) => {
                if d.theta.is_empty() || d.theta.len() > 2 {
                    return Err("internal: one or two field directions".into());
                }
                if d.inverse_consistency && d.theta.len() != 2 {
                    return Err("internal: inverse consistency needs two directions".into());
                }
                for t in d.theta.iter().flatten() {
                    if t.len < n {
                        return Err("internal: the field does not fit the level".into());
                    }
                }
                Some(d)
            }
            Mode::Affine { .. } => None,
        };
        let general = dense.is_some_and(Dense::general);
        let ndirs = dense.map_or(1, |d| d.theta.len());
        // The problems of each direction: the backward one swaps the images.
        let backward = Problem {
            dims,
            fixed: problem.moving.clone(),
            moving: problem.fixed.clone(),
            weight: None,
            reg_weight: problem.reg_weight.clone(),
        };
        let problems: Vec<&Problem> = [problem, &backward][..ndirs].to_vec();

        // Slots of the partial sums and the reduce plan.
        let inv_cn = 1.0 / (channels as f64 * n as f64);
        let mut slots = 0u32;
        let next = |slots: &mut u32| {
            *slots += 1;
            *slots - 1
        };
        let mut ent: Vec<([u32; 4], f32)> = Vec::new();
        let mut ic_slots = [0u32; 2];
        let mut chans: Vec<Vec<Chan>> = Vec::new();
        let mut mi_chans: Vec<Vec<Chan>> = Vec::new();
        let mut model_chan: Vec<Chan> = Vec::new();
        for d in 0..ndirs {
            let base = (d * PER_DIR) as u32;
            let diff = if affine { 0 } else { next(&mut slots) };
            if !affine {
                ent.push(([base + T_DIFFUSION as u32, diff, 0, 0], 1.0 / n as f32));
            }
            let jac = if dense.is_some_and(|m| m.jacobian) {
                let s = next(&mut slots);
                ent.push(([base + K_JACOBIAN as u32, s, 0, 0], 1.0 / n as f32));
                s
            } else {
                0
            };
            let ic = if d == 0 && dense.is_some_and(|m| m.inverse_consistency) {
                let (a, b) = (next(&mut slots), next(&mut slots));
                ent.push(([K_IC as u32, a, 0, 0], 1.0 / n as f32));
                ent.push(([K_IC as u32, b, 0, 0], 1.0 / n as f32));
                [a, b]
            } else {
                [0, 0]
            };
            if d == 0 {
                ic_slots = ic;
            }
            model_chan.push(Chan {
                idx: [0, d as u32, 0, 0],
                slot: [jac, 0, 0, diff],
            });
            let mut per = Vec::new();
            let mut mi_per = Vec::new();
            for c in 0..channels {
                let mut slot = [0u32, 0, 0, diff];
                let mut idx = [c as u32, d as u32, 0, 0];
                if use_mse {
                    slot[0] = next(&mut slots);
                    ent.push(([base + T_MSE as u32, slot[0], 0, 0], inv_cn as f32));
                }
                let inv_c = 1.0 / channels as f32;
                if use_ncc {
                    idx[2] = slots;
                    slots += 6;
                    idx[3] = next(&mut slots);
                    ent.push(([base + T_NCC as u32, idx[3], 0, 0], inv_c));
                }
                let mi_slot = if use_mi {
                    let s = next(&mut slots);
                    ent.push(([base + T_MI as u32, s, 0, 0], inv_c));
                    s
                } else {
                    0
                };
                mi_per.push(Chan {
                    idx: [c as u32, d as u32, 0, mi_slot],
                    slot: [0; 4],
                });
                if use_lncc {
                    slot[1] = next(&mut slots);
                    ent.push(([base + T_LNCC as u32, slot[1], 0, 0], inv_cn as f32));
                }
                if affine {
                    slot[2] = slots;
                    for j in 0..12 {
                        ent.push(([j, slots + j, 1, 0], 1.0));
                    }
                    slots += 12;
                }
                per.push(Chan { idx, slot });
            }
            chans.push(per);
            mi_chans.push(mi_per);
        }
        if ent.len() > 128 {
            return Err(format!(
                "{channels} channels are more than the GPU optimiser's reduce plan holds"
            ));
        }
        let mut plan = Plan::zeroed();
        let mut mask = 0u32;
        for (i, (e, s)) in ent.iter().enumerate() {
            plan.ent[i] = *e;
            plan.scl[i] = [*s, 0.0, 0.0, 0.0];
            if e[2] == 0 {
                mask |= 1 << e[0];
            }
        }
        plan.head = [ent.len() as u32, ROWS as u32, u32::from(affine), mask];

        // Uniforms.
        let scale = dense.map_or([1.0; 3], |d| d.scale);
        let (into, back) = match &mode {
            Mode::Affine { into, back, .. } => (mat(into), mat(back)),
            Mode::Dense(_) => ([[0.0; 4]; 3], [[0.0; 4]; 3]),
        };
        let geo_of = |p: &Problem, sim_pass: bool| {
            let mut flags = 0u32;
            if p.weight.is_some() && sim_pass {
                flags |= F_WEIGHTED;
            }
            if p.reg_weight.is_some() {
                flags |= F_REG_WEIGHTED;
            }
            if affine {
                flags |= F_AFFINE;
            } else if !(general && sim_pass) {
                flags |= F_DIFFUSION;
            }
            if use_mse {
                flags |= F_MSE;
            }
            if use_lncc {
                flags |= F_LNCC;
            }
            if use_ncc {
                flags |= F_NCC;
            }
            // The model kernels' similarity passes see u in voxels.
            let s = if general && sim_pass { [1.0; 3] } else { scale };
            Geo {
                dims: [dims[0] as u32, dims[1] as u32, dims[2] as u32, n as u32],
                info: [
                    groups as u32,
                    channels as u32,
                    flags,
                    (sim.window / 2) as u32,
                ],
                scale: [s[0], s[1], s[2], inv_cn as f32],
                into,
                back,
            }
        };
        let geo_sim: Vec<wgpu::Buffer> = problems
            .iter()
            .map(|p| gpu.uniform("engine: level", &geo_of(p, true)))
            .collect::<GpuResult<_>>()?;
        let geo_model: Vec<wgpu::Buffer> = problems
            .iter()
            .map(|p| gpu.uniform("engine: level (model)", &geo_of(p, false)))
            .collect::<GpuResult<_>>()?;
        let live_u = gpu.uniform("engine: live weights", &live)?;
        let plan_u = gpu.uniform("engine: reduce plan", &plan)?;
        let per_channel =
            |list: &Vec<Vec<Chan>>, what: &str| -> GpuResult<Vec<Vec<wgpu::Buffer>>> {
                list.iter()
                    .map(|per| per.iter().map(|c| gpu.uniform(what, c)).collect())
                    .collect()
            };
        let chan_u = per_channel(&chans, "engine: channel")?;
        let mi_u = per_channel(&mi_chans, "engine: MI channel")?;
        let model_u: Vec<wgpu::Buffer> = model_chan
            .iter()
            .map(|c| gpu.uniform("engine: model slots", c))
            .collect::<GpuResult<_>>()?;
        // The inverse-consistency loss's two halves, each with its slot.
        let ic_u: Vec<wgpu::Buffer> = ic_slots
            .iter()
            .map(|&s| {
                let c = Chan {
                    idx: [0; 4],
                    slot: [0, s, 0, 0],
                };
                gpu.uniform("engine: inverse-consistency slots", &c)
            })
            .collect::<GpuResult<_>>()?;
        let mut state = State::zeroed();
        if let Mode::Affine {
            into, back, delta, ..
        } = &mode
        {
            state.delta = delta.map(|v| v as f32);
            let delta: &[f64; 12] = delta;
            state.k = mat(&sampling_matrix(into, back, delta));
        }
        let state_b = storage_bytes(&gpu, "engine: optimiser state", bytemuck::bytes_of(&state));
        let history = storage_bytes(&gpu, "engine: loss history", &vec![0u8; ROWS * ROW * 4]);
        let partials = gpu.buf("engine: partial sums", slots.max(1) as usize * groups)?;

        // Local NCC scratch and each direction's fixed-image statistics.
        let lncc = if use_lncc {
            let bufs = |what| {
                (0..4)
                    .map(|_| gpu.buf(what, n))
                    .collect::<GpuResult<Vec<_>>>()
            };
            Some(LnccScratch {
                s: bufs("engine: box sums")?,
                t: bufs("engine: box sums")?,
                box_y3: gpu.uniform("engine: box y3", &[1u32, 3, 0, 0])?,
                box_x4: gpu.uniform("engine: box x4", &[0u32, 4, 0, 0])?,
                box_y4: gpu.uniform("engine: box y4", &[1u32, 4, 0, 0])?,
            })
        } else {
            None
        };
        let mut stats: Vec<Vec<(Buf, Buf)>> = Vec::new();
        for (d, p) in problems.iter().enumerate() {
            stats.push(match &lncc {
                Some(l) => window_stats(&gpu, &geo_sim[d], l, &p.fixed, n)?,
                None => Vec::new(),
            });
        }
        let fused_mse = use_mse && !use_lncc && !use_ncc && !use_mi;
        // Mutual information: per-workgroup histograms, the joint counts and
        // ∂L/∂count per channel, and each direction's histogram divisor.
        let mi = if use_mi {
            let bins = sim.mi_bins;
            let divisor = |p: &Problem| -> GpuResult<f32> {
                Ok(match &p.weight {
                    Some(w) => {
                        gpu.read(w)?.iter().map(|v| f64::from(*v)).sum::<f64>() as f32 + 1e-10
                    }
                    None => n as f32,
                })
            };
            let params = problems
                .iter()
                .map(|p| gpu.uniform("engine: MI", &[bins as f32, 0.0, divisor(p)?, 0.0]))
                .collect::<GpuResult<Vec<_>>>()?;
            Some(MiScratch {
                hist: gpu.buf("engine: MI histograms", groups * bins * bins)?,
                joint: gpu.buf("engine: MI joint", 2048 * channels)?,
                params,
                bins,
            })
        } else {
            None
        };
        let ncc_stats = if use_ncc {
            Some(gpu.buf("engine: global NCC statistics", 8 * channels)?)
        } else {
            None
        };
        let scratch = if fused_mse {
            None
        } else {
            Some((gpu.buf("engine: warped", n)?, gpu.buf("engine: dL/dI", n)?))
        };
        let b = Build {
            gpu: &gpu,
            n,
            live_u: &live_u,
            state_b: &state_b,
            partials: &partials,
            lncc: lncc.as_ref(),
            scratch: scratch.as_ref(),
            reg_weight: problem.reg_weight.as_ref(),
            ncc: ncc_stats.as_ref(),
            mi: mi.as_ref(),
        };

        // Parameters and optimiser buffers of each direction.
        let three = |what| -> GpuResult<[Buf; 3]> {
            Ok([gpu.buf(what, n)?, gpu.buf(what, n)?, gpu.buf(what, n)?])
        };
        let mut dirs = Vec::new();
        if let Some(m) = dense {
            for (d, th) in m.theta.iter().enumerate() {
                let k = m.svf_steps.unwrap_or(0);
                // u₀ … u_K, and u_K + base after them where a start is held.
                let held = usize::from(d == 0 && m.base.is_some());
                let u = if general {
                    (0..=k + held)
                        .map(|_| three("engine: displacement"))
                        .collect::<GpuResult<Vec<_>>>()?
                } else {
                    Vec::new()
                };
                let jm = if m.jacobian {
                    let row = || gpu.buf("engine: dL/dJ", 4 * n);
                    Some([row()?, row()?, row()?])
                } else {
                    None
                };
                dirs.push(Direction {
                    theta: th.clone(),
                    m: [three("engine: Adam m")?, three("engine: Adam v")?],
                    grad: three("engine: gradient")?,
                    u,
                    jm,
                });
            }
        }
        // dL/du of each direction and a second buffer for scaling and
        // squaring's backward pass.
        let gu: Vec<[[Buf; 3]; 2]> = if general {
            (0..ndirs)
                .map(|_| Ok([three("engine: dL/du")?, three("engine: dL/du")?]))
                .collect::<GpuResult<_>>()?
        } else {
            Vec::new()
        };

        // The dispatch list of one iteration.
        let mut steps = Vec::new();
        let mut field_steps = Vec::new();
        match dense {
            None => {
                let pass = SimPass {
                    problem,
                    geo: &geo_sim[0],
                    chans: &chan_u[0],
                    mi_chans: &mi_u[0],
                    dir: 0,
                    stats: &stats[0],
                };
                b.similarity(&pass, Points::Affine, &mut steps)?;
            }
            Some(_) if !general => {
                for (d, dir) in dirs.iter().enumerate() {
                    let pass = SimPass {
                        problem: problems[d],
                        geo: &geo_sim[d],
                        chans: &chan_u[d],
                        mi_chans: &mi_u[d],
                        dir: d,
                        stats: &stats[d],
                    };
                    let points = Points::Field {
                        field: &dir.theta,
                        grad: &dir.grad,
                    };
                    b.similarity(&pass, points, &mut steps)?;
                }
            }
            Some(m) => {
                let k = m.svf_steps.unwrap_or(0);
                let factor = 0.5f32.powi(k as i32);
                let mp = gpu.uniform("engine: model", &[k as f32, factor, 0.0, 0.0])?;
                let one = gpu.uniform("engine: model", &[0.0f32, 1.0, 0.0, 0.0])?;
                for (d, dir) in dirs.iter().enumerate() {
                    let geo = &geo_model[d];
                    let mu = &model_u[d];
                    let mut f = Vec::new();
                    // u₀ = θ·s/2^K, then K squarings.
                    f.push(b.model(
                        "svf_init",
                        geo,
                        mu,
                        &mp,
                        &[(3, &dir.theta), (12, &dir.u[0])],
                    )?);
                    for j in 0..k {
                        f.push(b.model(
                            "ss_forward",
                            geo,
                            mu,
                            &mp,
                            &[(3, &dir.u[j]), (12, &dir.u[j + 1])],
                        )?);
                    }
                    if d == 0
                        && let Some(base) = &m.base
                    {
                        f.push(b.model(
                            "add_base",
                            geo,
                            mu,
                            &mp,
                            &[(3, &dir.u[k]), (6, base), (12, &dir.u[k + 1])],
                        )?);
                    }
                    if d == 0 {
                        field_steps = f.clone();
                    }
                    steps.extend(f);
                    let sampled = sampled_field(dir)?;
                    let pass = SimPass {
                        problem: problems[d],
                        geo: &geo_sim[d],
                        chans: &chan_u[d],
                        mi_chans: &mi_u[d],
                        dir: d,
                        stats: &stats[d],
                    };
                    let top = k % 2;
                    let points = Points::Field {
                        field: sampled,
                        grad: &gu[d][top],
                    };
                    b.similarity(&pass, points, &mut steps)?;
                    if let Some(jm) = &dir.jm {
                        let mut s =
                            b.model("jacobian_m", geo, mu, &mp, &[(3, sampled), (21, jm)])?;
                        s.size = Size::Chunks(n);
                        steps.push(s);
                        steps.push(b.model(
                            "jacobian_grad",
                            geo,
                            mu,
                            &mp,
                            &[(12, &gu[d][top]), (21, jm)],
                        )?);
                    }
                }
                if m.inverse_consistency {
                    let k = m.svf_steps.unwrap_or(0);
                    let top = k % 2;
                    for (a, bb) in [(0usize, 1usize), (1, 0)] {
                        let geo = &geo_model[0];
                        let (here, there) = (sampled_field(&dirs[a])?, sampled_field(&dirs[bb])?);
                        let slots = &ic_u[a];
                        let mut s = b.model(
                            "ic_point",
                            geo,
                            slots,
                            &mp,
                            &[(3, here), (6, there), (12, &gu[bb][top])],
                        )?;
                        s.size = Size::Chunks(n);
                        steps.push(s);
                        steps.push(b.model(
                            "ic_scatter",
                            geo,
                            slots,
                            &mp,
                            &[(3, here), (6, there), (15, &gu[a][top])],
                        )?);
                    }
                }
                for (d, dir) in dirs.iter().enumerate() {
                    let geo = &geo_model[d];
                    let mu = &model_u[d];
                    // Back through the squarings: dL/du_j from dL/du_{j+1}.
                    let mut cur = k % 2;
                    for j in (0..k).rev() {
                        let (g_in, g_out) = (&gu[d][cur], &gu[d][1 - cur]);
                        steps.push(b.model(
                            "ss_point",
                            geo,
                            mu,
                            &mp,
                            &[(3, &dir.u[j]), (9, g_in), (12, g_out)],
                        )?);
                        steps.push(b.model(
                            "ss_scatter",
                            geo,
                            mu,
                            &mp,
                            &[(3, &dir.u[j]), (9, g_in), (15, g_out)],
                        )?);
                        cur = 1 - cur;
                    }
                    let f = if m.svf_steps.is_some() { &mp } else { &one };
                    let mut s = b.model(
                        "finish",
                        geo,
                        mu,
                        f,
                        &[(3, &dir.theta), (9, &gu[d][cur]), (12, &dir.grad)],
                    )?;
                    s.size = Size::Chunks(n);
                    steps.push(s);
                }
            }
        }
        let reduce = gpu.pipeline("reduce", "reduce")?;
        steps.push(Step {
            label: "reduce",
            bind: gpu.bind(
                &reduce,
                &[
                    (0, ub(&geo_sim[0])),
                    (1, ub(&live_u)),
                    (2, ub(&plan_u)),
                    (3, partials.binding()),
                    (4, state_b.as_entire_binding()),
                    (5, history.as_entire_binding()),
                ],
            )?,
            pipeline: reduce,
            size: Size::One,
        });
        let mut undo = Vec::new();
        if !dirs.is_empty() {
            let adam = gpu.pipeline("update", "adam")?;
            let back_p = gpu.pipeline("update", "undo")?;
            let smooth = dense.map(|d| d.smooth).unwrap_or_default();
            let boxes = Boxes {
                gpu: &gpu,
                pipeline: if smooth.is_off() {
                    None
                } else {
                    Some(gpu.pipeline("smooth", "box_pass")?)
                },
                state: &state_b,
                dims,
            };
            for dir in &dirs {
                let scratch = if smooth.is_off() {
                    None
                } else {
                    Some(three("engine: smoothing scratch")?)
                };
                // The gradient, smoothed before Adam reads it.
                if let (Some(r), Some(tmp)) = (&smooth.grad, &scratch) {
                    steps.extend(boxes.smooth(&dir.grad, tmp, r, 0)?);
                }
                // With the field smoothed after each step, Adam's step
                // cannot be taken back by arithmetic: θ is kept before it.
                let kept = match (&smooth.warp, &scratch) {
                    (Some(_), Some(_)) => {
                        let kept = three("engine: field before the step")?;
                        steps.push(boxes.pass(&dir.theta, &kept, 0, 0, SKIP_HALTED)?);
                        Some(kept)
                    }
                    _ => None,
                };
                let mut e = vec![
                    (0, ub(&geo_sim[0])),
                    (1, ub(&live_u)),
                    (2, state_b.as_entire_binding()),
                ];
                let mut u = vec![(0, ub(&geo_sim[0])), (2, state_b.as_entire_binding())];
                for k in 0..3u32 {
                    let i = k as usize;
                    for list in [&mut e, &mut u] {
                        list.push((3 + k, dir.theta[i].binding()));
                        list.push((6 + k, dir.m[0][i].binding()));
                        list.push((9 + k, dir.m[1][i].binding()));
                    }
                    e.push((12 + k, dir.grad[i].binding()));
                }
                steps.push(Step {
                    label: "adam",
                    bind: gpu.bind(&adam, &e)?,
                    pipeline: adam.clone(),
                    size: Size::Grid(n),
                });
                match (&smooth.warp, &scratch, &kept) {
                    (Some(r), Some(tmp), Some(kept)) => {
                        steps.extend(boxes.smooth(&dir.theta, tmp, r, SKIP_HALTED)?);
                        undo.push(boxes.pass(kept, &dir.theta, 0, 0, SKIP_UNSTEPPED)?);
                    }
                    _ => undo.push(Step {
                        label: "undo",
                        bind: gpu.bind(&back_p, &u)?,
                        pipeline: back_p.clone(),
                        size: Size::Grid(n),
                    }),
                }
            }
        }
        // Terms reported, in the composed path's order.
        let mut terms = Vec::new();
        for d in 0..ndirs {
            let suffix = if d == 0 { "" } else { "_bwd" };
            let base = d * PER_DIR;
            if use_mse {
                terms.push((base + T_MSE, T_MSE, format!("mse{suffix}")));
            }
            if use_ncc {
                terms.push((base + T_NCC, T_NCC, format!("ncc{suffix}")));
            }
            if use_lncc {
                terms.push((base + T_LNCC, T_LNCC, format!("lncc{suffix}")));
            }
            if use_mi {
                terms.push((base + T_MI, T_MI, format!("mi{suffix}")));
            }
            if !affine {
                terms.push((
                    base + T_DIFFUSION,
                    T_DIFFUSION,
                    format!("diffusion{suffix}"),
                ));
            }
            if dense.is_some_and(|m| m.jacobian) {
                terms.push((base + K_JACOBIAN, K_JACOBIAN, format!("jacobian{suffix}")));
            }
        }
        if dense.is_some_and(|m| m.inverse_consistency) {
            terms.push((K_IC, K_IC, "inverse_consistency".into()));
        }
        Ok(Self {
            gpu: gpu.clone(),
            n,
            dims,
            scale,
            dirs,
            state: state_b,
            history,
            live: live_u,
            live_now: live,
            steps,
            field_steps,
            undo,
            terms,
            iterations_run: 0,
        })
    }

    /// Rewrite the live weights (applies to batches submitted afterwards).
    pub fn set_live(&mut self, live: Live) -> GpuResult<()> {
        if live != self.live_now {
            self.gpu.scoped("changing a weight", || {
                self.gpu
                    .queue
                    .write_buffer(&self.live, 0, bytemuck::bytes_of(&live))
            })?;
            self.live_now = live;
        }
        Ok(())
    }

    fn encode(&self, encoder: &mut wgpu::CommandEncoder, iterations: usize) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("engine iterations"),
            timestamp_writes: None,
        });
        for _ in 0..iterations {
            for s in &self.steps {
                self.dispatch(&mut pass, s);
            }
        }
    }

    /// Submit `count` iterations (the next ones) and start reading their
    /// history rows back.
    fn submit_batch(&mut self, count: usize) -> GpuResult<Pending> {
        let first = self.iterations_run;
        let gpu = self.gpu.clone();
        let staging = gpu.scoped("running iterations on the GPU", || {
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("engine batch"),
                });
            self.encode(&mut encoder, count);
            let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("engine: loss read-back"),
                size: (count * ROW * 4) as u64,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            // The rows of these iterations (the ring may wrap once).
            let mut done = 0;
            while done < count {
                let row = (first + done) % ROWS;
                let run = (count - done).min(ROWS - row);
                encoder.copy_buffer_to_buffer(
                    &self.history,
                    (row * ROW * 4) as u64,
                    &staging,
                    (done * ROW * 4) as u64,
                    (run * ROW * 4) as u64,
                );
                done += run;
            }
            gpu.queue.submit([encoder.finish()]);
            staging
        })?;
        self.iterations_run += count;
        Ok(Pending {
            first,
            count,
            reading: Reading::map(&self.gpu, staging, count * ROW)?,
        })
    }

    /// The parameters' voxel displacement on this level (the forward
    /// direction), in new buffers: θ·s, its exponential for a velocity
    /// field, or K·p − p for the affine.
    pub fn displacement(&self) -> GpuResult<[Buf; 3]> {
        let gpu = &self.gpu;
        let out = super::ops::field_bufs(gpu, self.n)?;
        let Some(dir) = self.dirs.first() else {
            super::ops::affine_displacement(gpu, &self.state, self.dims, &out)?;
            return Ok(out);
        };
        match dir.u.last() {
            None => super::ops::scaled(gpu, &dir.theta, self.scale, None, self.dims, &out)?,
            Some(u) => {
                gpu.submit("integrating the field", |pass| {
                    for s in &self.field_steps {
                        self.dispatch(pass, s);
                    }
                })?;
                gpu.scoped("copying the field", || {
                    let mut encoder = gpu
                        .device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
                    for (from, to) in u.iter().zip(&out) {
                        encoder.copy_buffer_to_buffer(
                            &from.buffer,
                            0,
                            &to.buffer,
                            0,
                            (self.n * 4) as u64,
                        );
                    }
                    gpu.queue.submit([encoder.finish()]);
                })?;
            }
        }
        Ok(out)
    }

    fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>, s: &Step) {
        match s.size {
            Size::Grid(n) => self.gpu.dispatch(pass, &s.pipeline, &s.bind, n),
            Size::Chunks(n) => self
                .gpu
                .dispatch(pass, &s.pipeline, &s.bind, n.div_ceil(VPT)),
            Size::One => self.gpu.dispatch_one(pass, &s.pipeline, &s.bind),
        }
    }

    /// The affine parameters Δ (row-major 3×4) as they are now.
    pub fn delta(&self) -> GpuResult<[f64; 12]> {
        let s = self.read_state()?;
        Ok(s.delta.map(f64::from))
    }

    /// The affine stage's last gradient dL/dΔ.
    pub fn affine_gradient(&self) -> GpuResult<[f32; 12]> {
        Ok(self.read_state()?.grad)
    }

    fn read_state(&self) -> GpuResult<State> {
        let len = std::mem::size_of::<State>() / 4;
        let v = self.gpu.start_read(&self.state, 0, len)?.wait(&self.gpu)?;
        Ok(*bytemuck::from_bytes::<State>(bytemuck::cast_slice(&v)))
    }

    /// dL/dθ of the last iteration (dense fields), per component, the
    /// forward direction then the backward one.
    pub fn gradient(&self) -> GpuResult<Vec<f32>> {
        if self.dirs.is_empty() {
            return Err("the affine optimiser keeps no field gradient".into());
        }
        let mut out = Vec::with_capacity(3 * self.n * self.dirs.len());
        for d in &self.dirs {
            for b in &d.grad {
                out.extend(self.gpu.read(b)?);
            }
        }
        Ok(out)
    }

    /// Run `iterations` iterations without reports; the history rows
    /// (the total, then 8 term values per direction: mse, lncc, ncc, mi,
    /// diffusion, jacobian, inverse consistency, unused) of each.
    pub fn iterate_quietly(&mut self, iterations: usize) -> GpuResult<Vec<[f32; 17]>> {
        let p = self.submit_batch(iterations)?;
        let v = p.reading.wait(&self.gpu)?;
        Ok(v.chunks_exact(ROW)
            .map(|r| std::array::from_fn(|k| r[k]))
            .collect())
    }

    /// The term reports of one history row: similarity terms always, the
    /// regularisers while their weight is not zero.
    fn terms_of(&self, row: &[f32], live: &Live) -> Vec<(String, f64)> {
        self.terms
            .iter()
            .filter(|(_, kind, _)| match *kind {
                T_DIFFUSION => live.reg[0] > 0.0,
                K_JACOBIAN => live.reg[1] > 0.0,
                K_IC => live.reg[3] > 0.0,
                _ => true,
            })
            .map(|(t, _, name)| (name.clone(), f64::from(row[1 + t])))
            .collect()
    }

    /// Optimise for `iters` iterations (changeable by control), reporting
    /// progress to `runner` and answering its snapshot requests. `live_of`
    /// gives the live weights from the runner's pipeline. A non-finite loss
    /// leaves the parameters of the last iteration whose loss was finite.
    pub fn run(
        &mut self,
        runner: &mut Runner,
        at: &At,
        iters: usize,
        live_of: &dyn Fn(&crate::register::Pipeline) -> Live,
    ) -> Result<(), Halt> {
        let mut iters = iters;
        let mut done = 0usize;
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut applied: BTreeMap<usize, Vec<crate::register::Change>> = BTreeMap::new();
        let mut batch = 1usize;
        let start = Instant::now();
        let mut delivered = 0usize;
        let base = self.iterations_run;
        let (in_flight, batch_seconds) = if runner.link.device_snapshots {
            (SHARED_IN_FLIGHT, SHARED_BATCH_SECONDS)
        } else {
            (IN_FLIGHT, BATCH_SECONDS)
        };
        let failed = |e: String| Halt::Failed(e);
        loop {
            // Reports of finished batches (never blocks).
            while let Some(p) = pending.front() {
                let Some(r) = p.reading.try_take(&self.gpu) else {
                    break;
                };
                let p = pending.pop_front().expect("front exists");
                let values = r.map_err(failed)?;
                self.deliver(
                    runner,
                    at,
                    (p.first, p.count),
                    &values,
                    iters,
                    base,
                    &mut applied,
                )?;
                delivered += p.count;
            }
            if done >= iters {
                break;
            }
            let mut flush_error = None;
            let polled = {
                let (me, pend, appl, planned) = (&*self, &mut pending, &mut applied, iters);
                runner.poll_with(&mut iters, done, &mut |r| {
                    if let Err(h) = me.flush(r, at, pend, planned, base, appl) {
                        flush_error = Some(h);
                    }
                })
            };
            if let Some(h) = flush_error {
                return Err(h);
            }
            let changes = match polled {
                Ok(c) => c,
                Err(stop) => {
                    // Report (and check) what already ran, then stop.
                    self.flush(runner, at, &mut pending, iters, base, &mut applied)?;
                    return Err(stop);
                }
            };
            if !changes.is_empty() {
                applied.entry(done).or_default().extend(changes);
                self.set_live(live_of(&runner.pipeline)).map_err(failed)?;
            }
            if done >= iters {
                break;
            }
            // A batch ends where a scheduled change (a re-run's replay) is due.
            let count = batch
                .min(iters - done)
                .min(runner.iterations_before_scheduled(done));
            pending.push_back(self.submit_batch(count).map_err(failed)?);
            done += count;
            if runner.take_snapshot_request() {
                match self.snapshot(runner, at.grid) {
                    Ok(field) => runner.send_snapshot(at.stage, at.level, done, at.grid, field),
                    Err(e) => runner.send(crate::register::Event::Notice(format!(
                        "snapshot failed: {e}"
                    ))),
                }
            }
            while pending.len() > in_flight {
                let p = pending.pop_front().expect("non-empty");
                let (first, count) = (p.first, p.count);
                let values = p.reading.wait(&self.gpu).map_err(failed)?;
                self.deliver(
                    runner,
                    at,
                    (first, count),
                    &values,
                    iters,
                    base,
                    &mut applied,
                )?;
                delivered += count;
            }
            // Batches of about `batch_seconds`, from the rate so far.
            if delivered > 0 {
                let per = start.elapsed().as_secs_f64() / delivered as f64;
                batch = ((batch_seconds / per.max(1e-6)) as usize).clamp(1, MAX_BATCH);
            }
        }
        self.flush(runner, at, &mut pending, iters, base, &mut applied)
    }

    /// Wait for every batch in flight and report it.
    fn flush(
        &self,
        runner: &mut Runner,
        at: &At,
        pending: &mut VecDeque<Pending>,
        iters: usize,
        base: usize,
        applied: &mut BTreeMap<usize, Vec<crate::register::Change>>,
    ) -> Result<(), Halt> {
        while let Some(p) = pending.pop_front() {
            let (first, count) = (p.first, p.count);
            let values = p.reading.wait(&self.gpu).map_err(Halt::Failed)?;
            self.deliver(runner, at, (first, count), &values, iters, base, applied)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &self,
        runner: &mut Runner,
        at: &At,
        (first, count): (usize, usize),
        values: &[f32],
        iters: usize,
        base: usize,
        applied: &mut BTreeMap<usize, Vec<crate::register::Change>>,
    ) -> Result<(), Halt> {
        let live = self.live_now;
        for (k, row) in values.chunks_exact(ROW).take(count).enumerate() {
            let it = first + k - base;
            let total = f64::from(row[0]);
            if row[HALTED] != 0.0 {
                // The optimiser halted: its parameters are those of this
                // iteration, whose loss was not finite; take the last
                // step back.
                self.undo_last_step().map_err(Halt::Failed)?;
                return Err(Halt::Failed(format!(
                    "the loss became {total} in stage {}, level {}, iteration {}: stopped, \
                     keeping the last good field",
                    at.stage,
                    at.level + 1,
                    it + 1
                )));
            }
            let changes = applied.remove(&it).unwrap_or_default();
            runner.report(
                at.stage,
                at.level,
                at.levels,
                it + 1,
                iters,
                self.terms_of(row, &live),
                total,
                changes,
            );
        }
        Ok(())
    }

    fn undo_last_step(&self) -> GpuResult<()> {
        if !self.undo.is_empty() {
            self.gpu.submit("restoring the last good field", |pass| {
                for u in &self.undo {
                    self.dispatch(pass, u);
                }
            })?;
            self.gpu.wait()?;
        }
        Ok(())
    }

    fn snapshot(&self, runner: &Runner, grid: &Grid) -> GpuResult<SnapshotField> {
        let components = self.displacement()?;
        let field = DeviceField {
            gpu: self.gpu.clone(),
            components,
            dims: self.dims,
        };
        if runner.link.device_snapshots {
            Ok(SnapshotField::Gpu(Box::new(field)))
        } else {
            field.to_volume(grid).map(SnapshotField::Host)
        }
    }

    /// Seconds per dispatch of each step of an iteration (each run `reps`
    /// times alone, waiting for the GPU): where an iteration's time goes.
    pub fn profile(&self, reps: usize) -> GpuResult<KernelTimes> {
        let mut out = Vec::new();
        for s in &self.steps {
            self.gpu.wait()?;
            let t = Instant::now();
            self.gpu.submit(s.label, |pass| {
                for _ in 0..reps {
                    self.dispatch(pass, s);
                }
            })?;
            self.gpu.wait()?;
            out.push((s.label, t.elapsed().as_secs_f64() / reps.max(1) as f64));
        }
        Ok(out)
    }
}

/// A buffer's binding, or the dummy where the input is absent.
fn opt_binding<'a>(gpu: &'a Gpu, b: &'a Option<Buf>) -> wgpu::BindingResource<'a> {
    match b {
        Some(b) => b.binding(),
        None => gpu.dummy(),
    }
}

fn ub(b: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
    b.as_entire_binding()
}

impl Build<'_> {
    fn reg_binding(&self) -> wgpu::BindingResource<'_> {
        match self.reg_weight {
            Some(b) => b.binding(),
            None => self.gpu.dummy(),
        }
    }

    /// The similarity passes of one direction, each channel: sampling (or
    /// MSE fused with the chain rule), local NCC's box passes, the chain rule.
    fn similarity(&self, pass: &SimPass, points: Points, steps: &mut Vec<Step>) -> GpuResult<()> {
        let gpu = self.gpu;
        let n = self.n;
        let affine = matches!(points, Points::Affine);
        let fused_mse = self.scratch.is_none();
        let (sample_entry, chain_entry) = match (affine, fused_mse) {
            (true, true) => ("", "mse_affine"),
            (false, true) => ("", "mse_dense"),
            (true, false) => ("sample_affine", "chain_affine"),
            (false, false) => ("sample_dense", "chain_dense"),
        };
        let chain = gpu.pipeline("chain", chain_entry)?;
        let problem = pass.problem;
        let weight = opt_binding(gpu, &problem.weight);
        for c in 0..problem.fixed.len() {
            let (fixed, moving) = (&problem.fixed[c], &problem.moving[c]);
            let chan = &pass.chans[c];
            if let Some((warped, dl)) = self.scratch {
                let sample = gpu.pipeline("sample", sample_entry)?;
                let mut e = vec![
                    (0, ub(pass.geo)),
                    (1, ub(self.live_u)),
                    (2, ub(chan)),
                    (3, moving.binding()),
                    (4, fixed.binding()),
                    (5, weight.clone()),
                    (6, warped.binding()),
                    (7, dl.binding()),
                    (8, self.partials.binding()),
                ];
                match &points {
                    Points::Field { field, .. } => {
                        for k in 0..3 {
                            e.push((9 + k as u32, field[k].binding()));
                        }
                    }
                    Points::Affine => e.push((12, self.state_b.as_entire_binding())),
                }
                steps.push(Step {
                    label: sample_entry,
                    bind: gpu.bind(&sample, &e)?,
                    pipeline: sample,
                    size: Size::Chunks(n),
                });
                if let Some(stats) = self.ncc {
                    self.ncc_steps(pass, stats, c, warped, dl, steps)?;
                }
                if let Some(mi) = self.mi {
                    self.mi_steps(pass, mi, c, warped, dl, steps)?;
                }
                if let Some(l) = self.lncc {
                    self.lncc_steps(pass, l, c, warped, dl, steps)?;
                }
            }
            let mut e = vec![(0, ub(pass.geo)), (2, ub(chan)), (3, moving.binding())];
            if let Some((_, dl)) = self.scratch {
                e.push((4, dl.binding()));
            }
            match &points {
                Points::Affine => {
                    e.push((12, self.state_b.as_entire_binding()));
                    e.push((13, self.partials.binding()));
                }
                Points::Field { field, grad } => {
                    e.push((1, ub(self.live_u)));
                    for k in 0..3 {
                        e.push((6 + k as u32, field[k].binding()));
                        e.push((9 + k as u32, grad[k].binding()));
                    }
                    e.push((13, self.partials.binding()));
                    e.push((14, self.reg_binding()));
                }
            }
            if fused_mse {
                if affine {
                    e.push((1, ub(self.live_u)));
                }
                e.push((15, fixed.binding()));
                e.push((16, weight.clone()));
            }
            steps.push(Step {
                label: chain_entry,
                bind: gpu.bind(&chain, &e)?,
                pipeline: chain.clone(),
                size: Size::Chunks(n),
            });
        }
        Ok(())
    }

    /// Global NCC for channel `c`: its statistics (one workgroup), then
    /// its dL/dI added into `dl`.
    fn ncc_steps(
        &self,
        pass: &SimPass,
        stats: &Buf,
        c: usize,
        warped: &Buf,
        dl: &Buf,
        steps: &mut Vec<Step>,
    ) -> GpuResult<()> {
        let gpu = self.gpu;
        let st = gpu.pipeline("ncc", "ncc_stats")?;
        let gr = gpu.pipeline("ncc", "ncc_grad")?;
        let chan = &pass.chans[c];
        let b_st = gpu.bind(
            &st,
            &[
                (0, ub(pass.geo)),
                (2, ub(chan)),
                (3, self.partials.binding()),
                (4, stats.binding()),
            ],
        )?;
        let b_gr = gpu.bind(
            &gr,
            &[
                (0, ub(pass.geo)),
                (1, ub(self.live_u)),
                (2, ub(chan)),
                (4, stats.binding()),
                (5, warped.binding()),
                (6, pass.problem.fixed[c].binding()),
                (7, opt_binding(gpu, &pass.problem.weight)),
                (8, dl.binding()),
            ],
        )?;
        steps.push(Step {
            label: "ncc stats",
            pipeline: st,
            bind: b_st,
            size: Size::One,
        });
        steps.push(Step {
            label: "ncc grad",
            pipeline: gr,
            bind: b_gr,
            size: Size::Grid(self.n),
        });
        Ok(())
    }

    /// Mutual information for channel `c`: histograms, joint counts,
    /// statistics, then its dL/dI added into `dl`.
    fn mi_steps(
        &self,
        pass: &SimPass,
        mi: &MiScratch,
        c: usize,
        warped: &Buf,
        dl: &Buf,
        steps: &mut Vec<Step>,
    ) -> GpuResult<()> {
        let gpu = self.gpu;
        let chan = &pass.mi_chans[c];
        let params = &mi.params[pass.dir];
        let weight = opt_binding(gpu, &pass.problem.weight);
        let fixed = &pass.problem.fixed[c];
        let hist = gpu.pipeline("mi", "mi_hist")?;
        let joint = gpu.pipeline("mi", "mi_joint")?;
        let stats = gpu.pipeline("mi", "mi_stats")?;
        let grad = gpu.pipeline("mi", "mi_grad")?;
        let b_hist = gpu.bind(
            &hist,
            &[
                (0, ub(pass.geo)),
                (4, mi.hist.binding()),
                (6, warped.binding()),
                (7, fixed.binding()),
                (8, weight.clone()),
                (10, ub(params)),
            ],
        )?;
        let b_joint = gpu.bind(
            &joint,
            &[
                (0, ub(pass.geo)),
                (2, ub(chan)),
                (4, mi.hist.binding()),
                (5, mi.joint.binding()),
                (10, ub(params)),
            ],
        )?;
        let b_stats = gpu.bind(
            &stats,
            &[
                (0, ub(pass.geo)),
                (1, ub(self.live_u)),
                (2, ub(chan)),
                (3, self.partials.binding()),
                (5, mi.joint.binding()),
                (10, ub(params)),
            ],
        )?;
        let b_grad = gpu.bind(
            &grad,
            &[
                (0, ub(pass.geo)),
                (2, ub(chan)),
                (5, mi.joint.binding()),
                (6, warped.binding()),
                (7, fixed.binding()),
                (8, weight),
                (9, dl.binding()),
                (10, ub(params)),
            ],
        )?;
        let n = self.n;
        for (label, pipeline, bind, size) in [
            ("mi hist", hist, b_hist, Size::Chunks(n)),
            ("mi joint", joint, b_joint, Size::Grid(mi.bins * mi.bins)),
            ("mi stats", stats, b_stats, Size::One),
            ("mi grad", grad, b_grad, Size::Grid(n)),
        ] {
            steps.push(Step {
                label,
                pipeline,
                bind,
                size,
            });
        }
        Ok(())
    }

    /// Local NCC's passes for channel `c`, adding its dL/dI into `dl`.
    fn lncc_steps(
        &self,
        pass: &SimPass,
        l: &LnccScratch,
        c: usize,
        warped: &Buf,
        dl: &Buf,
        steps: &mut Vec<Step>,
    ) -> GpuResult<()> {
        let gpu = self.gpu;
        let (s, t) = (&l.s, &l.t);
        let fixed = &pass.problem.fixed[c];
        let prod = gpu.pipeline("lncc", "prod_x")?;
        let boxp = gpu.pipeline("lncc", "box_pass")?;
        let coef = gpu.pipeline("lncc", "coef_z")?;
        let gz = gpu.pipeline("lncc", "grad_z")?;
        let b_prod = gpu.bind(
            &prod,
            &[
                (0, ub(pass.geo)),
                (3, warped.binding()),
                (4, fixed.binding()),
                (7, s[0].binding()),
                (8, s[1].binding()),
                (9, s[2].binding()),
            ],
        )?;
        let b_coef = gpu.bind(
            &coef,
            &[
                (0, ub(pass.geo)),
                (2, ub(&pass.chans[c])),
                (3, t[0].binding()),
                (4, t[1].binding()),
                (5, t[2].binding()),
                (6, pass.stats[c].0.binding()),
                (7, s[0].binding()),
                (8, s[1].binding()),
                (9, s[2].binding()),
                (10, s[3].binding()),
                (11, opt_binding(gpu, &pass.problem.weight)),
                (12, self.partials.binding()),
                (14, pass.stats[c].1.binding()),
            ],
        )?;
        let b_grad = gpu.bind(
            &gz,
            &[
                (0, ub(pass.geo)),
                (1, ub(self.live_u)),
                (3, s[0].binding()),
                (4, s[1].binding()),
                (5, s[2].binding()),
                (6, s[3].binding()),
                (7, warped.binding()),
                (8, fixed.binding()),
                (9, dl.binding()),
            ],
        )?;
        let n = self.n;
        for (label, pipeline, bind, size) in [
            ("lncc prod_x", prod, b_prod, Size::Grid(n)),
            (
                "lncc box y",
                boxp.clone(),
                box_bind(gpu, &boxp, pass.geo, s, t, &l.box_y3)?,
                Size::Grid(n),
            ),
            ("lncc coef_z", coef, b_coef, Size::Chunks(n)),
            (
                "lncc box x",
                boxp.clone(),
                box_bind(gpu, &boxp, pass.geo, s, t, &l.box_x4)?,
                Size::Grid(n),
            ),
            (
                "lncc box y",
                boxp.clone(),
                box_bind(gpu, &boxp, pass.geo, t, s, &l.box_y4)?,
                Size::Grid(n),
            ),
            ("lncc grad_z", gz, b_grad, Size::Grid(n)),
        ] {
            steps.push(Step {
                label,
                pipeline,
                bind,
                size,
            });
        }
        Ok(())
    }

    /// A `model.wgsl` kernel with the fields bound at their first binding
    /// (3: fa, 6: fb, 9: gr, 12: gw, 15: gat, 21: jm).
    fn model(
        &self,
        entry: &'static str,
        geo: &wgpu::Buffer,
        chan: &wgpu::Buffer,
        mp: &wgpu::Buffer,
        fields: &[(u32, &[Buf; 3])],
    ) -> GpuResult<Step> {
        let gpu = self.gpu;
        let p = gpu.pipeline("model", entry)?;
        // What each entry uses besides geo and its fields.
        let (live, slots, factor, partials, rweight) = match entry {
            "svf_init" => (false, false, true, false, false),
            "jacobian_m" => (false, true, false, true, true),
            "jacobian_grad" => (true, false, false, false, false),
            "ic_point" => (true, true, false, true, false),
            "ic_scatter" => (true, false, false, false, false),
            "finish" => (true, true, true, true, true),
            _ => (false, false, false, false, false),
        };
        let mut e = vec![(0, ub(geo))];
        if live {
            e.push((1, ub(self.live_u)));
        }
        if slots {
            e.push((2, ub(chan)));
        }
        if factor {
            e.push((20, ub(mp)));
        }
        if partials {
            e.push((18, self.partials.binding()));
        }
        if rweight {
            e.push((19, self.reg_binding()));
        }
        for (first, f) in fields {
            for k in 0..3u32 {
                e.push((first + k, f[k as usize].binding()));
            }
        }
        Ok(Step {
            label: entry,
            bind: gpu.bind(&p, &e)?,
            pipeline: p,
            size: Size::Grid(self.n),
        })
    }
}

/// The window mean and variance of each fixed channel (local NCC, once
/// per level).
fn window_stats(
    gpu: &Arc<Gpu>,
    geo: &wgpu::Buffer,
    l: &LnccScratch,
    fixed: &[Buf],
    n: usize,
) -> GpuResult<Vec<(Buf, Buf)>> {
    let prod = gpu.pipeline("lncc", "prod_x")?;
    let boxp = gpu.pipeline("lncc", "box_pass")?;
    let statp = gpu.pipeline("lncc", "stats_z")?;
    let (s, t) = (&l.s, &l.t);
    let mut out = Vec::new();
    for f in fixed {
        let mb = gpu.buf("engine: fixed window mean", n)?;
        let vb = gpu.buf("engine: fixed window variance", n)?;
        let b1 = gpu.bind(
            &prod,
            &[
                (0, ub(geo)),
                (3, f.binding()),
                (4, f.binding()),
                (7, s[0].binding()),
                (8, s[1].binding()),
                (9, s[2].binding()),
            ],
        )?;
        let b2 = box_bind(gpu, &boxp, geo, s, t, &l.box_y3)?;
        let b3 = gpu.bind(
            &statp,
            &[
                (0, ub(geo)),
                (3, t[0].binding()),
                (4, t[1].binding()),
                (5, t[2].binding()),
                (7, mb.binding()),
                (8, vb.binding()),
            ],
        )?;
        gpu.submit("fixed-image window statistics", |pass| {
            gpu.dispatch(pass, &prod, &b1, n);
            gpu.dispatch(pass, &boxp, &b2, n);
            gpu.dispatch(pass, &statp, &b3, n);
        })?;
        out.push((mb, vb));
    }
    Ok(out)
}

fn box_bind(
    gpu: &Gpu,
    boxp: &wgpu::ComputePipeline,
    geo: &wgpu::Buffer,
    src: &[Buf],
    dst: &[Buf],
    params: &wgpu::Buffer,
) -> GpuResult<wgpu::BindGroup> {
    gpu.bind(
        boxp,
        &[
            (0, geo.as_entire_binding()),
            (3, src[0].binding()),
            (4, src[1].binding()),
            (5, src[2].binding()),
            (6, src[3].binding()),
            (7, dst[0].binding()),
            (8, dst[1].binding()),
            (9, dst[2].binding()),
            (10, dst[3].binding()),
            (13, params.as_entire_binding()),
        ],
    )
}

/// `smooth.wgsl`'s flags: leave the target alone once the optimiser has
/// halted; before any Adam step.
const SKIP_HALTED: u32 = 1;
const SKIP_UNSTEPPED: u32 = 2;

/// Box passes of the smoothing (`shaders/engine/smooth.wgsl`).
struct Boxes<'a> {
    gpu: &'a Gpu,
    pipeline: Option<wgpu::ComputePipeline>,
    state: &'a wgpu::Buffer,
    dims: [usize; 3],
}

impl Boxes<'_> {
    /// One pass `src` → `dst` along `axis` (radius 0: a copy).
    fn pass(
        &self,
        src: &[Buf; 3],
        dst: &[Buf; 3],
        axis: u32,
        radius: u32,
        flags: u32,
    ) -> GpuResult<Step> {
        let Some(p) = &self.pipeline else {
            return Err("internal: smoothing without its pipeline".into());
        };
        let [nx, ny, nz] = self.dims.map(|v| v as u32);
        let u = self.gpu.uniform(
            "engine: smoothing pass",
            &[nx, ny, nz, nx * ny * nz, axis, radius, flags, 0],
        )?;
        Ok(Step {
            label: "smooth",
            bind: self.gpu.bind(
                p,
                &[
                    (0, u.as_entire_binding()),
                    (1, self.state.as_entire_binding()),
                    (2, src[0].binding()),
                    (3, src[1].binding()),
                    (4, src[2].binding()),
                    (5, dst[0].binding()),
                    (6, dst[1].binding()),
                    (7, dst[2].binding()),
                ],
            )?,
            pipeline: p.clone(),
            size: Size::Grid(self.dims.iter().product()),
        })
    }

    /// The passes smoothing `target` in place (through `tmp`), as
    /// `volume::smooth::boxes_in_place`: x, then y, then z.
    fn smooth(
        &self,
        target: &[Buf; 3],
        tmp: &[Buf; 3],
        radii: &Radii,
        flags: u32,
    ) -> GpuResult<Vec<Step>> {
        let mut steps = Vec::new();
        let mut in_tmp = false;
        for (axis, rs) in radii.iter().enumerate() {
            for &r in rs {
                if r == 0 || self.dims[axis] < 2 {
                    continue;
                }
                let (src, dst) = if in_tmp { (tmp, target) } else { (target, tmp) };
                steps.push(self.pass(src, dst, axis as u32, r as u32, flags)?);
                in_tmp = !in_tmp;
            }
        }
        if in_tmp {
            steps.push(self.pass(tmp, target, 0, 0, flags)?);
        }
        Ok(steps)
    }
}

/// A storage buffer initialised with `bytes`.
fn storage_bytes(gpu: &Gpu, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    let b = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.len().max(16) as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue.write_buffer(&b, 0, bytes);
    b
}
