// The engine's per-level uniforms and optimiser state (prepended to the
// similarity and optimiser kernels; each declares `geo`).

// Per-level geometry and switches, shared by the similarity kernels.
struct Geo {
    // nx, ny, nz, n (voxels)
    dims: vec4<u32>,
    // groups of a whole-grid dispatch (G, the stride of a partial-sum slot),
    // channels, flags, LNCC window radius
    info: vec4<u32>,
    // unit factors s (parameter units → voxels), 1 / (C·N)
    scale: vec4<f32>,
    // affine: normalised coordinates x̂ = into · p, points q = back · q̂
    into0: vec4<f32>,
    into1: vec4<f32>,
    into2: vec4<f32>,
    back0: vec4<f32>,
    back1: vec4<f32>,
    back2: vec4<f32>,
}

const F_WEIGHTED: u32 = 1u;
const F_AFFINE: u32 = 2u;
const F_MSE: u32 = 4u;
const F_LNCC: u32 = 8u;
const F_DIFFUSION: u32 = 16u;
const F_NCC: u32 = 32u;
const F_MI: u32 = 64u;
const F_JACOBIAN: u32 = 128u;
// the regulariser is weighted (`rweight`: the IC weights; a mask does not apply to it)
const F_REG_WEIGHTED: u32 = 256u;

fn has(flag: u32) -> bool {
    return (geo.info.z & flag) != 0u;
}

// Live weights (the host rewrites them when the user changes one).
struct Live {
    // mse, lncc, ncc, mi
    sim: vec4<f32>,
    // diffusion, jacobian, learning rate, unused
    reg: vec4<f32>,
}

// Per channel: idx = (channel, direction, first of global NCC's six moment
// slots, global NCC's value slot); slots of its partial sums: (mse, lncc,
// affine gradient base, diffusion).
struct Chan {
    idx: vec4<u32>,
    slot: vec4<u32>,
}

// The optimiser's state, written by the reduce kernel only.
struct State {
    // Adam steps taken, halted (non-finite loss), iterations run, unused
    counts: vec4<u32>,
    // Adam bias corrections 1 − β1^t, 1 − β2^t of the last step; unused
    corr: vec4<f32>,
    // affine: the sampling matrix K (q = K · [p, 1]), rows x, y, z
    k0: vec4<f32>,
    k1: vec4<f32>,
    k2: vec4<f32>,
    // affine: Δ (3×4, row-major) and Adam's moments
    delta: array<f32, 12>,
    m1: array<f32, 12>,
    m2: array<f32, 12>,
    // the last step's learning rate (to undo it)
    last_lr: vec4<f32>,
    // affine: the last gradient dL/dΔ (for tests and diagnostics)
    grad: array<f32, 12>,
}
