// Local NCC over a cubic window (zero padding, window³ voxels counted, the
// flat-window rule), one channel, as the CPU kernels compute it
// (register::fused::lncc_into), in separable box passes:
//   prod_x  : a, b                 → Σx a, Σx a², Σx ab
//   box (y) : three sums           → Σxy …
//   coef_z  : Σxy …, fixed stats   → per window A, B, A·m_b, B·m_a (+ value partials)
//   box (x), box (y) on those four
//   grad_z  : Σxy of the four, a, b → dL/dI added into dl
// The fixed image's window mean and variance come from stats_z once per level.

@group(0) @binding(0) var<uniform> geo: Geo;
@group(0) @binding(1) var<uniform> live: Live;
@group(0) @binding(2) var<uniform> chan: Chan;
@group(0) @binding(3) var<storage, read> in0: array<f32>;
@group(0) @binding(4) var<storage, read> in1: array<f32>;
@group(0) @binding(5) var<storage, read> in2: array<f32>;
@group(0) @binding(6) var<storage, read> in3: array<f32>;
@group(0) @binding(7) var<storage, read_write> out0: array<f32>;
@group(0) @binding(8) var<storage, read_write> out1: array<f32>;
@group(0) @binding(9) var<storage, read_write> out2: array<f32>;
@group(0) @binding(10) var<storage, read_write> out3: array<f32>;
@group(0) @binding(11) var<storage, read> weight: array<f32>;
@group(0) @binding(12) var<storage, read_write> partials: array<f32>;
@group(0) @binding(13) var<uniform> boxp: vec4<u32>;

const FLAT_VAR: f32 = 1e-5;
const LOCAL_EPS: f32 = 1e-12;

// Window [lo, hi] along an axis of length `len` around `pos`.
fn span(pos: u32, len: u32) -> vec2<u32> {
    let r = geo.info.w;
    return vec2<u32>(select(0u, pos - r, pos >= r), min(pos + r, len - 1u));
}

// in0 = a (warped), in1 = b (fixed): row sums of a, a², a·b.
@compute @workgroup_size(256)
fn prod_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    let x = i % geo.dims.x;
    let s = span(x, geo.dims.x);
    let row = i - x;
    var sa = 0.0;
    var saa = 0.0;
    var sab = 0.0;
    for (var k = s.x; k <= s.y; k++) {
        let a = in0[row + k];
        sa += a;
        saa += a * a;
        sab += a * in1[row + k];
    }
    out0[i] = sa;
    out1[i] = saa;
    out2[i] = sab;
}

// Box sums of boxp.y arrays (3 or 4) along axis boxp.x (0 = x, 1 = y).
@compute @workgroup_size(256)
fn box_pass(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    let v = voxel(i, geo.dims.xyz);
    let axis = boxp.x;
    let stride = select(1u, geo.dims.x, axis == 1u);
    let pos = v[axis];
    let s = span(pos, geo.dims[axis]);
    let base = i - pos * stride;
    var s0 = 0.0;
    var s1 = 0.0;
    var s2 = 0.0;
    var s3 = 0.0;
    let four = boxp.y == 4u;
    for (var k = s.x; k <= s.y; k++) {
        let j = base + k * stride;
        s0 += in0[j];
        s1 += in1[j];
        s2 += in2[j];
        if (four) {
            s3 += in3[j];
        }
    }
    out0[i] = s0;
    out1[i] = s1;
    out2[i] = s2;
    if (four) {
        out3[i] = s3;
    }
}

// Voxel i's z-line: the index of its z = 0 voxel, and the window's first
// and last z.
fn z_span(i: u32) -> vec3<u32> {
    let z = voxel(i, geo.dims.xyz).z;
    let s = span(z, geo.dims.z);
    return vec3<u32>(i - z * geo.dims.x * geo.dims.y, s.x, s.y);
}

// The z-window sums of in0..in2 at voxel i (WGSL binds what a kernel
// names, so grad_z, which also sums in3, has its own loop).
fn z_sums(i: u32) -> vec4<f32> {
    let zs = z_span(i);
    let stride = geo.dims.x * geo.dims.y;
    var acc = vec4<f32>(0.0);
    for (var k = zs.y; k <= zs.z; k++) {
        let j = zs.x + k * stride;
        acc += vec4<f32>(in0[j], in1[j], in2[j], 0.0);
    }
    return acc;
}

fn inv_window() -> f32 {
    let w = f32(2u * geo.info.w + 1u);
    return 1.0 / (w * w * w);
}

// Fixed-image statistics (once per level): in0..in2 = Σxy b, b², b² →
// out0 = window mean of b, out1 = window variance of b.
@compute @workgroup_size(256)
fn stats_z(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    let s = z_sums(i);
    let inv = inv_window();
    let m = s.x * inv;
    out0[i] = m;
    out1[i] = s.y * inv - m * m;
}

// in0..in2 = Σxy a, a², ab; in3 = the fixed window mean m_b; var_b the
// fixed window variance → out0..out3 = A, B, A·m_b, B·m_a (zero in flat
// windows) and the value's partial sums, Σ w (1 − cc).
@group(0) @binding(14) var<storage, read> var_b: array<f32>;

@compute @workgroup_size(256)
fn coef_z(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    let inv = inv_window();
    var part = 0.0;
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        let s = z_sums(i);
        let mb = in3[i];
        let vb = var_b[i];
        let ma = s.x * inv;
        var ca = 0.0;
        var cb = 0.0;
        if (vb > FLAT_VAR) {
            var w = 1.0;
            if (has(F_WEIGHTED)) {
                w = weight[i];
            }
            let cov = s.z * inv - ma * mb;
            let va = max(s.y * inv - ma * ma, 0.0);
            let d = va * max(vb, 0.0) + LOCAL_EPS;
            let cc = cov * cov / d;
            part += w * (1.0 - cc);
            ca = w * cov / d;
            cb = w * cov * cov * vb / (d * d);
        }
        out0[i] = ca;
        out1[i] = cb;
        out2[i] = ca * mb;
        out3[i] = cb * ma;
    }
    let t = wg_sum(part, lid);
    if (lid == 0u) {
        partials[chan.slot.y * geo.info.x + grp] = t;
    }
}

// in0..in3 = Σxy of A, B, A·m_b, B·m_a; out0 = a (warped), out1 = b
// (fixed) read only; dl (out2) += k (b·ΣA − ΣA·m_b − a·ΣB + ΣB·m_a).
@compute @workgroup_size(256)
fn grad_z(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    let zs = z_span(i);
    let stride = geo.dims.x * geo.dims.y;
    var acc = vec4<f32>(0.0);
    for (var k = zs.y; k <= zs.z; k++) {
        let j = zs.x + k * stride;
        acc += vec4<f32>(in0[j], in1[j], in2[j], in3[j]);
    }
    let k = -2.0 * inv_window() * geo.scale.w * live.sim.y;
    let a = out0[i];
    let b = out1[i];
    out2[i] = out2[i] + k * (b * acc.x - acc.z - a * acc.y + acc.w);
}
