// One workgroup, once per iteration: the second stage of every reduction.
// Sums each plan entry's per-workgroup partials into a term value (or an
// affine gradient component), forms the weighted total, writes the
// iteration's row of the loss history, and refuses a non-finite total by
// halting the optimiser (the update kernels then leave the parameters as
// they are). Dense fields: advances Adam's step count. Affine: takes the
// Adam step on Δ here and rebuilds the sampling matrix K = back·([I|0]+Δ)·into.

@group(0) @binding(0) var<uniform> geo: Geo;
@group(0) @binding(1) var<uniform> live: Live;
@group(0) @binding(2) var<uniform> plan: Plan;
@group(0) @binding(3) var<storage, read> partials: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: State;
@group(0) @binding(5) var<storage, read_write> history: array<f32>;

// term values: 8 per direction
const TERMS: u32 = 16u;
const ROW: u32 = 20u;
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

struct Plan {
    // entries, history rows, mode (0 dense, 1 affine), mask of active terms
    head: vec4<u32>,
    // (target, slot, kind: 0 term value, 1 affine gradient, 0)
    ent: array<vec4<u32>, 128>,
    // (scale, 0, 0, 0)
    scl: array<vec4<f32>, 128>,
}

var<workgroup> vals: array<f32, 16>;
var<workgroup> grads: array<f32, 12>;

fn weight_of(term: u32) -> f32 {
    let t = term % 8u;
    if (t < 4u) {
        return live.sim[t];
    } else if (t == 4u) {
        return live.reg.x;
    } else if (t == 5u) {
        return live.reg.y;
    }
    return live.reg.w;
}

fn mrow(r: u32) -> vec4<f32> {
    // [I|0] + Δ, row r
    var m = vec4<f32>(state.delta[r * 4u], state.delta[r * 4u + 1u], state.delta[r * 4u + 2u],
                      state.delta[r * 4u + 3u]);
    m[r] += 1.0;
    return m;
}

fn set_matrix() {
    let m0 = mrow(0u);
    let m1 = mrow(1u);
    let m2 = mrow(2u);
    // A = M · into (3×4, into's fourth row is [0 0 0 1])
    let i0 = geo.into0;
    let i1 = geo.into1;
    let i2 = geo.into2;
    var a: array<vec4<f32>, 3>;
    let ms = array<vec4<f32>, 3>(m0, m1, m2);
    for (var r = 0u; r < 3u; r++) {
        let m = ms[r];
        a[r] = m.x * i0 + m.y * i1 + m.z * i2 + vec4<f32>(0.0, 0.0, 0.0, m.w);
    }
    // K = back · A
    let bs = array<vec4<f32>, 3>(geo.back0, geo.back1, geo.back2);
    var k: array<vec4<f32>, 3>;
    for (var r = 0u; r < 3u; r++) {
        let b = bs[r];
        k[r] = b.x * a[0] + b.y * a[1] + b.z * a[2] + vec4<f32>(0.0, 0.0, 0.0, b.w);
    }
    state.k0 = k[0];
    state.k1 = k[1];
    state.k2 = k[2];
}

@compute @workgroup_size(256)
fn reduce(@builtin(local_invocation_index) lid: u32) {
    if (lid < TERMS) {
        vals[lid] = 0.0;
    }
    if (lid < 12u) {
        grads[lid] = 0.0;
    }
    workgroupBarrier();
    let g_count = geo.info.x;
    for (var e = 0u; e < plan.head.x; e++) {
        let ent = plan.ent[e];
        var s = 0.0;
        for (var g = lid; g < g_count; g += WG) {
            s += partials[ent.y * g_count + g];
        }
        let t = wg_sum(s, lid);
        if (lid == 0u) {
            if (ent.z == 0u) {
                vals[ent.x] += t * plan.scl[e].x;
            } else {
                grads[ent.x] += t;
            }
        }
        workgroupBarrier();
    }
    if (lid != 0u) {
        return;
    }
    var total = 0.0;
    for (var t = 0u; t < TERMS; t++) {
        if ((plan.head.w & (1u << t)) != 0u) {
            total += weight_of(t) * vals[t];
        }
    }
    let row = (state.counts.z % plan.head.y) * ROW;
    history[row] = total;
    for (var t = 0u; t < TERMS; t++) {
        history[row + 1u + t] = vals[t];
    }
    if (!is_finite(total)) {
        state.counts.y = 1u;
    }
    history[row + 17u] = f32(state.counts.y);
    history[row + 18u] = f32(state.counts.z);
    state.counts.z += 1u;
    if (state.counts.y != 0u) {
        return;
    }
    state.counts.x += 1u;
    let tf = f32(state.counts.x);
    let c1 = 1.0 - pow(BETA1, tf);
    let c2 = 1.0 - pow(BETA2, tf);
    state.corr = vec4<f32>(c1, c2, 0.0, 0.0);
    state.last_lr = vec4<f32>(live.reg.z, 0.0, 0.0, 0.0);
    if (plan.head.z == 1u) {
        for (var j = 0u; j < 12u; j++) {
            let g = grads[j];
            state.grad[j] = g;
            let m = BETA1 * state.m1[j] + (1.0 - BETA1) * g;
            let v = BETA2 * state.m2[j] + (1.0 - BETA2) * g * g;
            state.m1[j] = m;
            state.m2[j] = v;
            state.delta[j] -= live.reg.z * (m / c1) / (sqrt(v / c2) + EPSILON);
        }
        set_matrix();
    }
}

// Set K from Δ without a step (the start of a level).
@compute @workgroup_size(1)
fn init_matrix() {
    set_matrix();
}
