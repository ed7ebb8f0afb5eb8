// Mutual information from a Parzen-window joint histogram, one channel
// (register::loss::mutual_information): B Gaussian bins on [0, 1], σ one
// bin width, each voxel's kernel normalised over the bins; a weight map
// weights the warped image's side and the histogram is divided by Σw.
//
//   mi_hist  : per workgroup, the histogram of its WG·VPT voxels in
//              workgroup memory (fixed-point 32-bit atomics: 2⁻²⁰ units,
//              at most 2¹¹ voxels per bin), then its B² partial counts
//   mi_joint : one invocation per bin: the counts over all workgroups
//   mi_stats : one workgroup: marginals, −MI into the value slot, and
//              F = ∂L/∂count per bin (L = −MI / C, times the live weight)
//   mi_grad  : dL/dI added into dl: Σ_ij ∂pa_i/∂a · pb_j · F_ij
//
// Each voxel's kernel is summed over every bin for its normalisation but
// spread only over bins within RADIUS of its centre (beyond, e^{−18} of
// the peak). Up to 32 bins.

@group(0) @binding(0) var<uniform> geo: Geo;
@group(0) @binding(1) var<uniform> live: Live;
@group(0) @binding(2) var<uniform> chan: Chan;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;
@group(0) @binding(4) var<storage, read_write> hist: array<f32>;
@group(0) @binding(5) var<storage, read_write> joint: array<f32>;
@group(0) @binding(6) var<storage, read> warped: array<f32>;
@group(0) @binding(7) var<storage, read> fixed: array<f32>;
@group(0) @binding(8) var<storage, read> weight: array<f32>;
@group(0) @binding(9) var<storage, read_write> dl: array<f32>;
// bins B, unused, the histogram's divisor Z (Σw + 1e-10, or N), unused
@group(0) @binding(10) var<uniform> mip: vec4<f32>;

const MAX_BINS: u32 = 32u;
const RADIUS: i32 = 6;
const FIXED: f32 = 1048576.0;
const TINY: f32 = 1e-10;

var<workgroup> counts: array<atomic<u32>, 1024>;
var<workgroup> table: array<f32, 1024>;

fn bins() -> u32 {
    return u32(mip.x);
}

// The Parzen kernel of value x: the normaliser Σ_all k + 1e-10 and its
// derivative, and the bin nearest x.
struct Kernel {
    s: f32,
    ds: f32,
    centre: i32,
}

fn kernel_of(x: f32) -> Kernel {
    let b = bins();
    let scale = f32(b - 1u);
    var s = TINY;
    var ds = 0.0;
    for (var i = 0u; i < b; i++) {
        let d = x * scale - f32(i);
        let k = exp(-0.5 * d * d);
        s += k;
        ds += -k * d * scale;
    }
    return Kernel(s, ds, i32(round(x * scale)));
}

fn k_at(x: f32, i: i32) -> f32 {
    let d = x * f32(bins() - 1u) - f32(i);
    return exp(-0.5 * d * d);
}

// The bins a kernel spreads over: within RADIUS of its centre, inside [0, B).
fn window(k: Kernel) -> vec2<i32> {
    return vec2<i32>(max(k.centre - RADIUS, 0), min(k.centre + RADIUS, i32(bins()) - 1));
}

// Voxel i's weight, warped and fixed values and their kernels.
struct Pair {
    w: f32,
    a: f32,
    f: f32,
    ka: Kernel,
    kb: Kernel,
}

fn sample_pair(i: u32) -> Pair {
    var w = 1.0;
    if (has(F_WEIGHTED)) {
        w = weight[i];
    }
    let a = warped[i];
    let f = fixed[i];
    return Pair(w, a, f, kernel_of(a), kernel_of(f));
}

@compute @workgroup_size(256)
fn mi_hist(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    let b = i32(bins());
    for (var j = lid; j < 1024u; j += WG) {
        atomicStore(&counts[j], 0u);
    }
    workgroupBarrier();
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        let x = sample_pair(i);
        let pw = window(x.ka);
        let qw = window(x.kb);
        for (var p = pw.x; p <= pw.y; p++) {
            let pa = x.w * k_at(x.a, p) / x.ka.s;
            for (var q = qw.x; q <= qw.y; q++) {
                let v = pa * k_at(x.f, q) / x.kb.s;
                atomicAdd(&counts[u32(p * b + q)], u32(round(v * FIXED)));
            }
        }
    }
    workgroupBarrier();
    let bb = u32(b * b);
    for (var j = lid; j < bb; j += WG) {
        hist[grp * bb + j] = f32(atomicLoad(&counts[j])) / FIXED;
    }
}

// One invocation per bin (dispatched over B² items): the counts summed
// over the workgroups of mi_hist, into joint (channel c's block).
@compute @workgroup_size(256)
fn mi_joint(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let j = flat_index(wid, nwg, lid);
    let bb = bins() * bins();
    if (j >= bb) {
        return;
    }
    var s = 0.0;
    for (var g = 0u; g < geo.info.x; g++) {
        s += hist[g * bb + j];
    }
    joint[chan.idx.x * 2048u + j] = s;
}

var<workgroup> marg_a: array<f32, 32>;
var<workgroup> marg_b: array<f32, 32>;
var<workgroup> rsum: array<f32, 32>;
var<workgroup> qsum: array<f32, 32>;

@compute @workgroup_size(256)
fn mi_stats(@builtin(local_invocation_index) lid: u32) {
    let b = bins();
    let bb = b * b;
    let base = chan.idx.x * 2048u;
    let eps = 1e-10;
    for (var j = lid; j < bb; j += WG) {
        table[j] = joint[base + j] / mip.z;
    }
    workgroupBarrier();
    if (lid < b) {
        var sa = 0.0;
        var sb = 0.0;
        for (var k = 0u; k < b; k++) {
            sa += table[lid * b + k];
            sb += table[k * b + lid];
        }
        marg_a[lid] = sa;
        marg_b[lid] = sb;
    }
    workgroupBarrier();
    if (lid < b) {
        var r = 0.0;
        var q = 0.0;
        for (var k = 0u; k < b; k++) {
            r += table[lid * b + k] * marg_b[k] / (marg_a[lid] * marg_b[k] + eps);
            q += table[k * b + lid] * marg_a[k] / (marg_a[k] * marg_b[lid] + eps);
        }
        rsum[lid] = r;
        qsum[lid] = q;
    }
    workgroupBarrier();
    // −MI (this channel's share of the mean over channels: the plan
    // scales it by 1/C) and F.
    var part = 0.0;
    let k = -live.sim.w / (f32(geo.info.y) * mip.z);
    for (var j = lid; j < bb; j += WG) {
        let i = j / b;
        let l = j % b;
        let t = table[j];
        let o = marg_a[i] * marg_b[l];
        part += t * (log(t + eps) - log(o + eps));
        let g = log(t + eps) + t / (t + eps) - log(o + eps) - rsum[i] - qsum[l];
        joint[base + 1024u + j] = k * g;
    }
    let mi = wg_sum(part, lid);
    for (var g = lid; g < geo.info.x; g += WG) {
        partials[chan.idx.w * geo.info.x + g] = 0.0;
    }
    workgroupBarrier();
    if (lid == 0u) {
        partials[chan.idx.w * geo.info.x] = -mi;
    }
}

@compute @workgroup_size(256)
fn mi_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let b = i32(bins());
    let bb = u32(b * b);
    let base = chan.idx.x * 2048u + 1024u;
    for (var j = lid; j < bb; j += WG) {
        table[j] = joint[base + j];
    }
    workgroupBarrier();
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    let x = sample_pair(i);
    let pw = window(x.ka);
    let qw = window(x.kb);
    let scale = f32(b - 1);
    var g = 0.0;
    for (var p = pw.x; p <= pw.y; p++) {
        let d = x.a * scale - f32(p);
        let kp = exp(-0.5 * d * d);
        let dkp = -kp * d * scale;
        let dpa = x.w * (dkp / x.ka.s - kp * x.ka.ds / (x.ka.s * x.ka.s));
        var row = 0.0;
        for (var q = qw.x; q <= qw.y; q++) {
            row += k_at(x.f, q) / x.kb.s * table[u32(p * b + q)];
        }
        g += dpa * row;
    }
    dl[i] += g;
}
