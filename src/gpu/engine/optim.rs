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
use crate::volume::{Grid, Volume};

pub const F_WEIGHTED: u32 = 1;
pub const F_AFFINE: u32 = 2;
pub const F_MSE: u32 = 4;
pub const F_LNCC: u32 = 8;
pub const F_DIFFUSION: u32 = 16;
pub const F_REG_WEIGHTED: u32 = 256;

/// Term indices of the loss history (`reduce.wgsl`).
pub const T_MSE: usize = 0;
pub const T_LNCC: usize = 1;
pub const T_DIFFUSION: usize = 4;
/// Floats per history row: total, 8 term values, halted, iteration, spare.
const ROW: usize = 12;
/// Rows in the history ring (more than a batch times the batches in flight).
const ROWS: usize = 512;
/// Batches in flight before the loop waits for the oldest.
const IN_FLIGHT: usize = 3;
/// Longest batch.
const MAX_BATCH: usize = 64;
/// Wall time a batch should take (controls apply between batches).
const BATCH_SECONDS: f64 = 0.03;

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

/// What is optimised.
pub enum Mode {
    /// A dense field θ (one buffer per component, parameter units) and the
    /// unit factors s (voxels = θ·s).
    Dense { theta: [Buf; 3], scale: [f32; 3] },
    /// The affine Δ (M = [I|0] + Δ on normalised coordinates x̂ = into·p;
    /// sampling points q = back·(M x̂)).
    Affine {
        into: [[f64; 4]; 3],
        back: [[f64; 4]; 3],
        delta: [f64; 12],
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

enum Size {
    /// One invocation per item.
    Grid(usize),
    /// One invocation per `VPT` items (kernels that reduce).
    Chunks(usize),
    One,
}

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

pub struct Optim {
    gpu: Arc<Gpu>,
    n: usize,
    dims: [usize; 3],
    affine: bool,
    theta: Option<[Buf; 3]>,
    scale: [f32; 3],
    m: Option<[[Buf; 3]; 2]>,
    state: wgpu::Buffer,
    history: wgpu::Buffer,
    live: wgpu::Buffer,
    live_now: Live,
    steps: Vec<Step>,
    undo: Option<Step>,
    /// Similarity terms computed at this level, in report order.
    terms: Vec<(usize, &'static str)>,
    grad: Option<[Buf; 3]>,
    /// Dispatches per iteration.
    pub dispatches_per_iteration: usize,
    iterations_run: usize,
}

impl Optim {
    /// Buffers, bind groups and the per-iteration dispatch list for `mode`
    /// on `problem` with the similarity `sim` (terms with weight 0 are not
    /// computed; the live weights may change the others).
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
        if sim.ncc > 0.0 || sim.mi > 0.0 {
            return Err("internal: global NCC and MI are not GPU kernels".into());
        }
        // Partial sums: one per workgroup of the reducing kernels.
        let groups = group_count(n.div_ceil(VPT));
        let affine = matches!(mode, Mode::Affine { .. });
        let use_mse = sim.mse > 0.0;
        let use_lncc = sim.lncc > 0.0;
        let radius = (sim.window / 2) as u32;
        let mut flags = 0u32;
        if problem.weight.is_some() {
            flags |= F_WEIGHTED;
        }
        if problem.reg_weight.is_some() {
            flags |= F_REG_WEIGHTED;
        }
        if affine {
            flags |= F_AFFINE;
        } else {
            flags |= F_DIFFUSION;
        }
        if use_mse {
            flags |= F_MSE;
        }
        if use_lncc {
            flags |= F_LNCC;
        }
        // Partial-sum slots and the reduce plan.
        let mut slots = 0u32;
        let mut ent: Vec<([u32; 4], f32)> = Vec::new();
        let mut chans = Vec::new();
        let inv_cn = 1.0 / (channels as f64 * n as f64);
        let diffusion_slot = if affine {
            0
        } else {
            slots += 1;
            ent.push(([T_DIFFUSION as u32, slots - 1, 0, 0], 1.0 / n as f32));
            slots - 1
        };
        for c in 0..channels {
            let mut slot = [0u32, 0, 0, diffusion_slot];
            if use_mse {
                slot[0] = slots;
                ent.push(([T_MSE as u32, slots, 0, 0], inv_cn as f32));
                slots += 1;
            }
            if use_lncc {
                slot[1] = slots;
                ent.push(([T_LNCC as u32, slots, 0, 0], inv_cn as f32));
                slots += 1;
            }
            if affine {
                slot[2] = slots;
                for j in 0..12 {
                    ent.push(([j, slots + j, 1, 0], 1.0));
                }
                slots += 12;
            }
            chans.push(Chan {
                idx: [c as u32, 0, 0, 0],
                slot,
            });
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
        let scale = match &mode {
            Mode::Dense { scale, .. } => *scale,
            Mode::Affine { .. } => [1.0; 3],
        };
        let (into, back) = match &mode {
            Mode::Affine { into, back, .. } => (mat(into), mat(back)),
            Mode::Dense { .. } => ([[0.0; 4]; 3], [[0.0; 4]; 3]),
        };
        let geo = Geo {
            dims: [dims[0] as u32, dims[1] as u32, dims[2] as u32, n as u32],
            info: [groups as u32, channels as u32, flags, radius],
            scale: [scale[0], scale[1], scale[2], inv_cn as f32],
            into,
            back,
        };
        let mut state = State::zeroed();
        if let Mode::Affine {
            into, back, delta, ..
        } = &mode
        {
            state.delta = delta.map(|v| v as f32);
            state.k = mat(&sampling_matrix(into, back, delta));
        }
        let geo_u = gpu.uniform("engine: level", &geo);
        let live_u = gpu.uniform("engine: live weights", &live);
        let plan_u = gpu.uniform("engine: reduce plan", &plan);
        let chan_u: Vec<wgpu::Buffer> = chans
            .iter()
            .map(|c| gpu.uniform("engine: channel", c))
            .collect();
        let state_b = storage_bytes(&gpu, "engine: optimiser state", bytemuck::bytes_of(&state));
        let history = storage_bytes(&gpu, "engine: loss history", &vec![0u8; ROWS * ROW * 4]);
        let partials = gpu.buf("engine: partial sums", slots.max(1) as usize * groups)?;
        let weight = |b| opt_binding(&gpu, b);
        let mut steps = Vec::new();
        // Local NCC scratch and the fixed image's window statistics.
        let lncc = if use_lncc {
            let s: Vec<Buf> = (0..4)
                .map(|_| gpu.buf("engine: box sums", n))
                .collect::<GpuResult<_>>()?;
            let t: Vec<Buf> = (0..4)
                .map(|_| gpu.buf("engine: box sums", n))
                .collect::<GpuResult<_>>()?;
            let box_y3 = gpu.uniform("engine: box y3", &[1u32, 3, 0, 0]);
            let box_x4 = gpu.uniform("engine: box x4", &[0u32, 4, 0, 0]);
            let box_y4 = gpu.uniform("engine: box y4", &[1u32, 4, 0, 0]);
            let mut stats = Vec::new();
            let prod = gpu.pipeline("lncc", "prod_x")?;
            let boxp = gpu.pipeline("lncc", "box_pass")?;
            let statp = gpu.pipeline("lncc", "stats_z")?;
            for f in &problem.fixed {
                let mb = gpu.buf("engine: fixed window mean", n)?;
                let vb = gpu.buf("engine: fixed window variance", n)?;
                let b1 = gpu.bind(
                    &prod,
                    &[
                        (0, ub(&geo_u)),
                        (3, f.binding()),
                        (4, f.binding()),
                        (7, s[0].binding()),
                        (8, s[1].binding()),
                        (9, s[2].binding()),
                    ],
                );
                let b2 = box_bind(&gpu, &boxp, &geo_u, &s, &t, &box_y3);
                let b3 = gpu.bind(
                    &statp,
                    &[
                        (0, ub(&geo_u)),
                        (3, t[0].binding()),
                        (4, t[1].binding()),
                        (5, t[2].binding()),
                        (7, mb.binding()),
                        (8, vb.binding()),
                    ],
                );
                gpu.submit("fixed-image window statistics", |pass| {
                    gpu.dispatch(pass, &prod, &b1, n);
                    gpu.dispatch(pass, &boxp, &b2, n);
                    gpu.dispatch(pass, &statp, &b3, n);
                })?;
                stats.push((mb, vb));
            }
            Some((s, t, box_y3, box_x4, box_y4, stats))
        } else {
            None
        };
        // MSE alone: sample, compare and chain in one kernel per channel.
        let fused_mse = use_mse && !use_lncc;
        let (sample_entry, chain_entry) = match (affine, fused_mse) {
            (true, true) => ("", "mse_affine"),
            (false, true) => ("", "mse_dense"),
            (true, false) => ("sample_affine", "chain_affine"),
            (false, false) => ("sample_dense", "chain_dense"),
        };
        let chain = gpu.pipeline("chain", chain_entry)?;
        let grad: Option<[Buf; 3]> = if affine {
            None
        } else {
            Some([
                gpu.buf("engine: gradient x", n)?,
                gpu.buf("engine: gradient y", n)?,
                gpu.buf("engine: gradient z", n)?,
            ])
        };
        let theta = match &mode {
            Mode::Dense { theta, .. } => {
                for t in theta {
                    if t.len < n {
                        return Err("internal: the field does not fit the level".into());
                    }
                }
                Some(theta.clone())
            }
            Mode::Affine { .. } => None,
        };
        // The warped image and dL/dI between the passes of local NCC.
        let scratch = if fused_mse {
            None
        } else {
            Some((gpu.buf("engine: warped", n)?, gpu.buf("engine: dL/dI", n)?))
        };
        for c in 0..channels {
            let (fixed, moving) = (&problem.fixed[c], &problem.moving[c]);
            if let Some((warped, dl)) = &scratch {
                let sample = gpu.pipeline("sample", sample_entry)?;
                let mut e = vec![
                    (0, ub(&geo_u)),
                    (1, ub(&live_u)),
                    (2, ub(&chan_u[c])),
                    (3, moving.binding()),
                    (4, fixed.binding()),
                    (5, weight(&problem.weight)),
                    (6, warped.binding()),
                    (7, dl.binding()),
                    (8, partials.binding()),
                ];
                match &theta {
                    Some(th) => {
                        e.push((9, th[0].binding()));
                        e.push((10, th[1].binding()));
                        e.push((11, th[2].binding()));
                    }
                    None => e.push((12, state_b.as_entire_binding())),
                }
                steps.push(Step {
                    label: sample_entry,
                    bind: gpu.bind(&sample, &e),
                    pipeline: sample,
                    size: Size::Chunks(n),
                });
            }
            if let (Some((s, t, box_y3, box_x4, box_y4, stats)), Some((warped, dl))) =
                (&lncc, &scratch)
            {
                let prod = gpu.pipeline("lncc", "prod_x")?;
                let boxp = gpu.pipeline("lncc", "box_pass")?;
                let coef = gpu.pipeline("lncc", "coef_z")?;
                let gz = gpu.pipeline("lncc", "grad_z")?;
                let b_prod = gpu.bind(
                    &prod,
                    &[
                        (0, ub(&geo_u)),
                        (3, warped.binding()),
                        (4, fixed.binding()),
                        (7, s[0].binding()),
                        (8, s[1].binding()),
                        (9, s[2].binding()),
                    ],
                );
                let b_y3 = box_bind(&gpu, &boxp, &geo_u, s, t, box_y3);
                let b_coef = gpu.bind(
                    &coef,
                    &[
                        (0, ub(&geo_u)),
                        (2, ub(&chan_u[c])),
                        (3, t[0].binding()),
                        (4, t[1].binding()),
                        (5, t[2].binding()),
                        (6, stats[c].0.binding()),
                        (7, s[0].binding()),
                        (8, s[1].binding()),
                        (9, s[2].binding()),
                        (10, s[3].binding()),
                        (11, weight(&problem.weight)),
                        (12, partials.binding()),
                        (14, stats[c].1.binding()),
                    ],
                );
                let b_x4 = box_bind(&gpu, &boxp, &geo_u, s, t, box_x4);
                let b_y4 = box_bind(&gpu, &boxp, &geo_u, t, s, box_y4);
                let b_grad = gpu.bind(
                    &gz,
                    &[
                        (0, ub(&geo_u)),
                        (1, ub(&live_u)),
                        (3, s[0].binding()),
                        (4, s[1].binding()),
                        (5, s[2].binding()),
                        (6, s[3].binding()),
                        (7, warped.binding()),
                        (8, fixed.binding()),
                        (9, dl.binding()),
                    ],
                );
                for (label, pipeline, bind) in [
                    ("lncc prod_x", prod, b_prod),
                    ("lncc box y", boxp.clone(), b_y3),
                    ("lncc coef_z", coef, b_coef),
                    ("lncc box x", boxp.clone(), b_x4),
                    ("lncc box y", boxp, b_y4),
                    ("lncc grad_z", gz, b_grad),
                ] {
                    let size = if label == "lncc coef_z" {
                        Size::Chunks(n)
                    } else {
                        Size::Grid(n)
                    };
                    steps.push(Step {
                        label,
                        pipeline,
                        bind,
                        size,
                    });
                }
            }
            let mut e = vec![(0, ub(&geo_u)), (2, ub(&chan_u[c])), (3, moving.binding())];
            if let Some((_, dl)) = &scratch {
                e.push((4, dl.binding()));
            }
            if affine {
                e.push((12, state_b.as_entire_binding()));
                e.push((13, partials.binding()));
            }
            if let (Some(th), Some(gr)) = (&theta, &grad) {
                e.push((1, ub(&live_u)));
                for k in 0..3 {
                    e.push((6 + k as u32, th[k].binding()));
                    e.push((9 + k as u32, gr[k].binding()));
                }
                e.push((13, partials.binding()));
                e.push((14, weight(&problem.reg_weight)));
            }
            if fused_mse {
                if affine {
                    e.push((1, ub(&live_u)));
                }
                e.push((15, fixed.binding()));
                e.push((16, weight(&problem.weight)));
            }
            steps.push(Step {
                label: chain_entry,
                bind: gpu.bind(&chain, &e),
                pipeline: chain.clone(),
                size: Size::Chunks(n),
            });
        }
        let reduce = gpu.pipeline("reduce", "reduce")?;
        steps.push(Step {
            label: "reduce",
            bind: gpu.bind(
                &reduce,
                &[
                    (0, ub(&geo_u)),
                    (1, ub(&live_u)),
                    (2, ub(&plan_u)),
                    (3, partials.binding()),
                    (4, state_b.as_entire_binding()),
                    (5, history.as_entire_binding()),
                ],
            ),
            pipeline: reduce,
            size: Size::One,
        });
        let mut m = None;
        let mut undo = None;
        if let (Some(th), Some(gr)) = (&theta, &grad) {
            let m1 = [
                gpu.buf("engine: Adam m", n)?,
                gpu.buf("engine: Adam m", n)?,
                gpu.buf("engine: Adam m", n)?,
            ];
            let m2 = [
                gpu.buf("engine: Adam v", n)?,
                gpu.buf("engine: Adam v", n)?,
                gpu.buf("engine: Adam v", n)?,
            ];
            let adam = gpu.pipeline("update", "adam")?;
            let mut e = vec![
                (0, ub(&geo_u)),
                (1, ub(&live_u)),
                (2, state_b.as_entire_binding()),
            ];
            for k in 0..3u32 {
                let i = k as usize;
                e.push((3 + k, th[i].binding()));
                e.push((6 + k, m1[i].binding()));
                e.push((9 + k, m2[i].binding()));
                e.push((12 + k, gr[i].binding()));
            }
            steps.push(Step {
                label: "adam",
                bind: gpu.bind(&adam, &e),
                pipeline: adam,
                size: Size::Grid(n),
            });
            let back = gpu.pipeline("update", "undo")?;
            let mut e = vec![(0, ub(&geo_u)), (2, state_b.as_entire_binding())];
            for k in 0..3u32 {
                let i = k as usize;
                e.push((3 + k, th[i].binding()));
                e.push((6 + k, m1[i].binding()));
                e.push((9 + k, m2[i].binding()));
            }
            undo = Some(Step {
                label: "undo",
                bind: gpu.bind(&back, &e),
                pipeline: back,
                size: Size::Grid(n),
            });
            m = Some([m1, m2]);
        }
        let mut terms = Vec::new();
        if use_mse {
            terms.push((T_MSE, "mse"));
        }
        if use_lncc {
            terms.push((T_LNCC, "lncc"));
        }
        Ok(Self {
            dispatches_per_iteration: steps.len(),
            gpu,
            n,
            dims,
            affine,
            theta,
            scale,
            m,
            state: state_b,
            history,
            live: live_u,
            live_now: live,
            steps,
            undo,
            terms,
            grad,
            iterations_run: 0,
        })
    }

    /// Rewrite the live weights (applies to batches submitted afterwards).
    pub fn set_live(&mut self, live: Live) {
        if live != self.live_now {
            self.gpu
                .queue
                .write_buffer(&self.live, 0, bytemuck::bytes_of(&live));
            self.live_now = live;
        }
    }

    fn encode(&self, encoder: &mut wgpu::CommandEncoder, iterations: usize) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("engine iterations"),
            timestamp_writes: None,
        });
        for _ in 0..iterations {
            for s in &self.steps {
                match s.size {
                    Size::Grid(n) => self.gpu.dispatch(&mut pass, &s.pipeline, &s.bind, n),
                    Size::Chunks(n) => {
                        self.gpu
                            .dispatch(&mut pass, &s.pipeline, &s.bind, n.div_ceil(VPT))
                    }
                    Size::One => self.gpu.dispatch_one(&mut pass, &s.pipeline, &s.bind),
                }
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
            reading: Reading::map(staging, count * ROW),
        })
    }

    /// The parameters' voxel displacement on this level, in new buffers
    /// (dense: θ·s; affine: K·p − p).
    pub fn displacement(&self) -> GpuResult<[Buf; 3]> {
        let gpu = &self.gpu;
        let out = [
            gpu.buf("engine: field x", self.n)?,
            gpu.buf("engine: field y", self.n)?,
            gpu.buf("engine: field z", self.n)?,
        ];
        match &self.theta {
            Some(th) => super::ops::scaled(gpu, th, self.scale, self.dims, &out)?,
            None => super::ops::affine_displacement(gpu, &self.state, self.dims, &out)?,
        }
        Ok(out)
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

    /// dL/dθ of the last iteration (dense fields), per component.
    pub fn gradient(&self) -> GpuResult<Vec<f32>> {
        let Some(g) = &self.grad else {
            return Err("the affine optimiser keeps no field gradient".into());
        };
        let mut out = Vec::with_capacity(3 * self.n);
        for b in g {
            out.extend(self.gpu.read(b)?);
        }
        Ok(out)
    }

    /// Run `iterations` iterations without reports; the history rows
    /// (total, then the 8 term values) of each.
    pub fn iterate_quietly(&mut self, iterations: usize) -> GpuResult<Vec<[f32; 9]>> {
        let p = self.submit_batch(iterations)?;
        let v = p.reading.wait(&self.gpu)?;
        Ok(v.chunks_exact(ROW)
            .map(|r| std::array::from_fn(|k| r[k]))
            .collect())
    }

    /// The term reports of one history row.
    fn terms_of(&self, row: &[f32], reg: &Live) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = self
            .terms
            .iter()
            .map(|(t, name)| (name.to_string(), f64::from(row[1 + t])))
            .collect();
        if !self.affine && reg.reg[0] > 0.0 {
            out.push(("diffusion".into(), f64::from(row[1 + T_DIFFUSION])));
        }
        out
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
        let mut applied: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let mut batch = 1usize;
        let start = Instant::now();
        let mut delivered = 0usize;
        let base = self.iterations_run;
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
            let changes = {
                let (me, pend, appl, planned) = (&*self, &mut pending, &mut applied, iters);
                runner.poll_with(&mut iters, done, &mut |r| {
                    if let Err(h) = me.flush(r, at, pend, planned, base, appl) {
                        flush_error = Some(h);
                    }
                })?
            };
            if let Some(h) = flush_error {
                return Err(h);
            }
            if !changes.is_empty() {
                applied.entry(done).or_default().extend(changes);
                self.set_live(live_of(&runner.pipeline));
            }
            if done >= iters {
                break;
            }
            let count = batch.min(iters - done);
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
            while pending.len() > IN_FLIGHT {
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
            // Batches of about BATCH_SECONDS, from the rate so far.
            if delivered > 0 {
                let per = start.elapsed().as_secs_f64() / delivered as f64;
                batch = ((BATCH_SECONDS / per.max(1e-6)) as usize).clamp(1, MAX_BATCH);
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
        applied: &mut BTreeMap<usize, Vec<String>>,
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
        applied: &mut BTreeMap<usize, Vec<String>>,
    ) -> Result<(), Halt> {
        let live = self.live_now;
        for (k, row) in values.chunks_exact(ROW).take(count).enumerate() {
            let it = first + k - base;
            let total = f64::from(row[0]);
            if row[9] != 0.0 {
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
        if let Some(u) = &self.undo {
            self.gpu.submit("restoring the last good field", |pass| {
                self.gpu.dispatch(pass, &u.pipeline, &u.bind, self.n)
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
                    match s.size {
                        Size::Grid(n) => self.gpu.dispatch(pass, &s.pipeline, &s.bind, n),
                        Size::Chunks(n) => {
                            self.gpu
                                .dispatch(pass, &s.pipeline, &s.bind, n.div_ceil(VPT))
                        }
                        Size::One => self.gpu.dispatch_one(pass, &s.pipeline, &s.bind),
                    }
                }
            })?;
            self.gpu.wait()?;
            out.push((s.label, t.elapsed().as_secs_f64() / reps.max(1) as f64));
        }
        Ok(out)
    }

    /// Adam's moments (for tests).
    pub fn moments(&self) -> Option<&[[Buf; 3]; 2]> {
        self.m.as_ref()
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

fn box_bind(
    gpu: &Gpu,
    boxp: &wgpu::ComputePipeline,
    geo: &wgpu::Buffer,
    src: &[Buf],
    dst: &[Buf],
    params: &wgpu::Buffer,
) -> wgpu::BindGroup {
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
