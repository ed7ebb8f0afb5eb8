// Adam on a dense field, in place, unless the reduce kernel halted the
// optimiser (non-finite loss): θ ← θ − lr · m̂ / (√v̂ + ε). `undo` takes the
// last step back (to return the last field whose loss was finite).

@group(0) @binding(0) var<uniform> geo: Geo;
@group(0) @binding(1) var<uniform> live: Live;
@group(0) @binding(2) var<storage, read> state: State;
@group(0) @binding(3) var<storage, read_write> thx: array<f32>;
@group(0) @binding(4) var<storage, read_write> thy: array<f32>;
@group(0) @binding(5) var<storage, read_write> thz: array<f32>;
@group(0) @binding(6) var<storage, read_write> m1x: array<f32>;
@group(0) @binding(7) var<storage, read_write> m1y: array<f32>;
@group(0) @binding(8) var<storage, read_write> m1z: array<f32>;
@group(0) @binding(9) var<storage, read_write> m2x: array<f32>;
@group(0) @binding(10) var<storage, read_write> m2y: array<f32>;
@group(0) @binding(11) var<storage, read_write> m2z: array<f32>;
@group(0) @binding(12) var<storage, read> gx: array<f32>;
@group(0) @binding(13) var<storage, read> gy: array<f32>;
@group(0) @binding(14) var<storage, read> gz: array<f32>;

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

fn step(m: ptr<function, f32>, v: ptr<function, f32>, g: f32) -> f32 {
    *m = BETA1 * *m + (1.0 - BETA1) * g;
    *v = BETA2 * *v + (1.0 - BETA2) * g * g;
    return live.reg.z * (*m / state.corr.x) / (sqrt(*v / state.corr.y) + EPSILON);
}

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w || state.counts.y != 0u) {
        return;
    }
    var m = m1x[i];
    var v = m2x[i];
    thx[i] -= step(&m, &v, gx[i]);
    m1x[i] = m;
    m2x[i] = v;
    m = m1y[i];
    v = m2y[i];
    thy[i] -= step(&m, &v, gy[i]);
    m1y[i] = m;
    m2y[i] = v;
    m = m1z[i];
    v = m2z[i];
    thz[i] -= step(&m, &v, gz[i]);
    m1z[i] = m;
    m2z[i] = v;
}

fn back(m: f32, v: f32) -> f32 {
    return state.last_lr.x * (m / state.corr.x) / (sqrt(v / state.corr.y) + EPSILON);
}

@compute @workgroup_size(256)
fn undo(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w || state.counts.x == 0u) {
        return;
    }
    thx[i] += back(m1x[i], m2x[i]);
    thy[i] += back(m1y[i], m2y[i]);
    thz[i] += back(m1z[i], m2z[i]);
}
