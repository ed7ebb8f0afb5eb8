// Sampling pass, one channel: the moving image at the current points
// (dense field: q = p + s·θ; affine: q = K·[p, 1]) into `warped`; dL/dI of
// the MSE term into `dl` (zero otherwise: later terms add to it); partial
// sums per workgroup of the MSE value and of global NCC's moments.

@group(0) @binding(0) var<uniform> geo: Geo;
@group(0) @binding(1) var<uniform> live: Live;
@group(0) @binding(2) var<uniform> chan: Chan;
@group(0) @binding(3) var<storage, read> moving: array<f32>;
@group(0) @binding(4) var<storage, read> fixed: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read_write> warped: array<f32>;
@group(0) @binding(7) var<storage, read_write> dl: array<f32>;
@group(0) @binding(8) var<storage, read_write> partials: array<f32>;
@group(0) @binding(9) var<storage, read> thx: array<f32>;
@group(0) @binding(10) var<storage, read> thy: array<f32>;
@group(0) @binding(11) var<storage, read> thz: array<f32>;
@group(0) @binding(12) var<storage, read> state: State;

// The sample and the MSE part; returns (mse partial).
fn finish(i: u32, a: f32, w: f32) -> f32 {
    warped[i] = a;
    var g = 0.0;
    var part = 0.0;
    if (has(F_MSE)) {
        let e = a - fixed[i];
        part = w * e * e;
        g = 2.0 * geo.scale.w * live.sim.x * w * e;
    }
    dl[i] = g;
    return part;
}

var<workgroup> red4: array<vec4<f32>, 256>;

fn wg_sum4(v: vec4<f32>, lid: u32) -> vec4<f32> {
    red4[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red4[lid] += red4[lid + s];
        }
        workgroupBarrier();
    }
    let r = red4[0];
    workgroupBarrier();
    return r;
}

// Global NCC's moments of this workgroup: Σw, Σwa, Σwb, Σwa² and Σwb², Σwab
// into the six slots from chan.idx.z.
fn store_moments(m0: vec4<f32>, m1: vec4<f32>, grp: u32, lid: u32) {
    let s0 = wg_sum4(m0, lid);
    let s1 = wg_sum4(m1, lid);
    if (lid == 0u) {
        let g = geo.info.x;
        let b = chan.idx.z;
        partials[b * g + grp] = s0.x;
        partials[(b + 1u) * g + grp] = s0.y;
        partials[(b + 2u) * g + grp] = s0.z;
        partials[(b + 3u) * g + grp] = s0.w;
        partials[(b + 4u) * g + grp] = s1.x;
        partials[(b + 5u) * g + grp] = s1.y;
    }
}

fn moments(i: u32, a: f32, w: f32) -> array<vec4<f32>, 2> {
    let b = fixed[i];
    return array<vec4<f32>, 2>(vec4<f32>(w, w * a, w * b, w * a * a), vec4<f32>(w * b * b, w * a * b, 0.0, 0.0));
}

fn store(part: f32, slot: u32, grp: u32, lid: u32) {
    let s = wg_sum(part, lid);
    if (lid == 0u) {
        partials[slot * geo.info.x + grp] = s;
    }
}

// What one workgroup's voxels add up: the MSE value and NCC's moments.
struct Acc {
    mse: f32,
    m0: vec4<f32>,
    m1: vec4<f32>,
}

// Sample voxel i's point q, store the sample and the MSE part of dL/dI,
// and add its shares to `acc`.
fn visit(i: u32, q: vec3<f32>, acc: ptr<function, Acc>) {
    var w = 1.0;
    if (has(F_WEIGHTED)) {
        w = weight[i];
    }
    let a = tri_sample(q, geo.dims.xyz).v;
    (*acc).mse += finish(i, a, w);
    if (has(F_NCC)) {
        let m = moments(i, a, w);
        (*acc).m0 += m[0];
        (*acc).m1 += m[1];
    }
}

fn store_acc(acc: Acc, grp: u32, lid: u32) {
    if (has(F_MSE)) {
        store(acc.mse, chan.slot.x, grp, lid);
    }
    if (has(F_NCC)) {
        store_moments(acc.m0, acc.m1, grp, lid);
    }
}

@compute @workgroup_size(256)
fn sample_dense(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    var acc = Acc(0.0, vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        let p = vec3<f32>(voxel(i, geo.dims.xyz));
        visit(i, p + vec3<f32>(thx[i], thy[i], thz[i]) * geo.scale.xyz, &acc);
    }
    store_acc(acc, grp, lid);
}

@compute @workgroup_size(256)
fn sample_affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    var acc = Acc(0.0, vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        visit(i, affine_point(vec3<f32>(voxel(i, geo.dims.xyz))), &acc);
    }
    store_acc(acc, grp, lid);
}
