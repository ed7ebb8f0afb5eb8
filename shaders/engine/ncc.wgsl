// Global NCC, one channel (register::loss::ncc): from the six moment
// slots the sampling pass filled, one workgroup computes the means,
// covariance and variances (stats) and the value 1 − r in the value slot;
// then dL/dI is added into dl per voxel:
//   r = cov / √(var_a var_b + ε²), with the weighted means over Σw + ε,
//   ∂r/∂a_i = w_i (b_i − m_b − B₁/W)/S − cov var_b w_i (a_i − m_a − A₁/W)/S³.

@group(0) @binding(0) var<uniform> geo: Geo;
@group(0) @binding(1) var<uniform> live: Live;
@group(0) @binding(2) var<uniform> chan: Chan;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read> warped: array<f32>;
@group(0) @binding(6) var<storage, read> fixed: array<f32>;
@group(0) @binding(7) var<storage, read> weight: array<f32>;
@group(0) @binding(8) var<storage, read_write> dl: array<f32>;

const EPS: f32 = 1e-5;

var<workgroup> sums: array<f32, 6>;

@compute @workgroup_size(256)
fn ncc_stats(@builtin(local_invocation_index) lid: u32) {
    let g_count = geo.info.x;
    for (var k = 0u; k < 6u; k++) {
        var s = 0.0;
        for (var g = lid; g < g_count; g += WG) {
            s += partials[(chan.idx.z + k) * g_count + g];
        }
        let t = wg_sum(s, lid);
        if (lid == 0u) {
            sums[k] = t;
        }
    }
    workgroupBarrier();
    // The value slot holds 1 − r in its first entry (the reduce pass adds
    // the slot up).
    for (var g = lid; g < g_count; g += WG) {
        partials[chan.idx.w * g_count + g] = 0.0;
    }
    workgroupBarrier();
    if (lid != 0u) {
        return;
    }
    let w = sums[0];
    let ws = w + EPS;
    let ma = sums[1] / ws;
    let mb = sums[2] / ws;
    let a1 = sums[1] - ma * w;
    let b1 = sums[2] - mb * w;
    let cov = sums[5] - mb * sums[1] - ma * sums[2] + ma * mb * w;
    let va = sums[3] - 2.0 * ma * sums[1] + ma * ma * w;
    let vb = sums[4] - 2.0 * mb * sums[2] + mb * mb * w;
    let s = sqrt(va * vb + EPS * EPS);
    partials[chan.idx.w * g_count] = 1.0 - cov / s;
    let base = chan.idx.x * 8u;
    stats[base] = ma;
    stats[base + 1u] = mb;
    stats[base + 2u] = a1 / ws;
    stats[base + 3u] = b1 / ws;
    stats[base + 4u] = 1.0 / s;
    stats[base + 5u] = cov * vb / (s * s * s);
}

@compute @workgroup_size(256)
fn ncc_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    let base = chan.idx.x * 8u;
    var w = 1.0;
    if (has(F_WEIGHTED)) {
        w = weight[i];
    }
    let da = warped[i] - stats[base] - stats[base + 2u];
    let db = fixed[i] - stats[base + 1u] - stats[base + 3u];
    let dr = w * (db * stats[base + 4u] - da * stats[base + 5u]);
    // L = mean over channels of (1 − r): −(1/C) ∂r/∂a, times the weight
    dl[i] += -live.sim.z / f32(geo.info.y) * dr;
}
