// The field models beyond a plain dense field, with their backward passes:
// a stationary velocity field integrated by scaling and squaring, the
// negative-Jacobian penalty, and the inverse-consistency loss of two
// directions. Fields here are displacements in voxels (u = θ·s), one
// buffer per component; gradients dL/du likewise.
//
// Composition samples a field with clamped borders (register::field's
// Outside::Clamp): points are clamped to [−2, n + 1] (no derivative where
// clamped), corners to the grid. Its backward pass has two parts: the
// pointwise one (through the sampling position, a gather) and the one
// through the sampled values, a scatter of each point's gradient onto its
// 8 corners — float additions by compare-and-swap on 32-bit atomics (each
// address receives from about 8 neighbouring points: little contention).
//
//   svf_init    : u₀ = θ·s / 2^K                          (fa = θ → gw)
//   ss_forward  : u_{k+1} = u_k + u_k(x + u_k(x))          (fa = u_k → gw)
//   ss_point    : g_k = g + J_{u_k}(x + u_k)ᵀ g            (fa = u_k, gr = g → gw)
//   ss_scatter  : g_k(y) += Σ_x g(x) w(x + u_k(x) → y)     (fa = u_k, gr = g → gat)
//   jacobian_m  : det J and dL/dJ per voxel                (fa = u → jm; value partials)
//   jacobian_grad: gw += dL/du of mean w·max(0, −det J)    (jm → gw)
//   ic_point    : r = b + a(x + b); gw += c (r + J_a(x+b)ᵀ r)   (value partials)
//   ic_scatter  : gat(y) += Σ_x c r(x) w(x + b(x) → y)
//   finish      : grad = s·f·gr + diffusion'(θ)            (fa = θ; value partials)

@group(0) @binding(0) var<uniform> geo: Geo;
@group(0) @binding(1) var<uniform> live: Live;
@group(0) @binding(2) var<uniform> chan: Chan;
@group(0) @binding(3) var<storage, read> fa0: array<f32>;
@group(0) @binding(4) var<storage, read> fa1: array<f32>;
@group(0) @binding(5) var<storage, read> fa2: array<f32>;
@group(0) @binding(6) var<storage, read> fb0: array<f32>;
@group(0) @binding(7) var<storage, read> fb1: array<f32>;
@group(0) @binding(8) var<storage, read> fb2: array<f32>;
@group(0) @binding(9) var<storage, read> gr0: array<f32>;
@group(0) @binding(10) var<storage, read> gr1: array<f32>;
@group(0) @binding(11) var<storage, read> gr2: array<f32>;
@group(0) @binding(12) var<storage, read_write> gw0: array<f32>;
@group(0) @binding(13) var<storage, read_write> gw1: array<f32>;
@group(0) @binding(14) var<storage, read_write> gw2: array<f32>;
@group(0) @binding(15) var<storage, read_write> gat0: array<atomic<u32>>;
@group(0) @binding(16) var<storage, read_write> gat1: array<atomic<u32>>;
@group(0) @binding(17) var<storage, read_write> gat2: array<atomic<u32>>;
@group(0) @binding(18) var<storage, read_write> partials: array<f32>;
@group(0) @binding(19) var<storage, read> rweight: array<f32>;
// x: squarings K, y: the factor f (1 / 2^K, or 1)
@group(0) @binding(20) var<uniform> mp: vec4<f32>;
// The Jacobian penalty's dL/dJ per voxel, one row per component (xyz: axes).
@group(0) @binding(21) var<storage, read_write> jm0: array<vec4<f32>>;
@group(0) @binding(22) var<storage, read_write> jm1: array<vec4<f32>>;
@group(0) @binding(23) var<storage, read_write> jm2: array<vec4<f32>>;

fn fa(j: u32) -> vec3<f32> {
    return vec3<f32>(fa0[j], fa1[j], fa2[j]);
}

fn fb(j: u32) -> vec3<f32> {
    return vec3<f32>(fb0[j], fb1[j], fb2[j]);
}

fn gr(j: u32) -> vec3<f32> {
    return vec3<f32>(gr0[j], gr1[j], gr2[j]);
}

fn theta(c: u32, j: u32) -> f32 {
    if (c == 0u) {
        return fa0[j];
    } else if (c == 1u) {
        return fa1[j];
    }
    return fa2[j];
}

fn w_at(j: u32) -> f32 {
    if (has(F_REG_WEIGHTED)) {
        return rweight[j];
    }
    return 1.0;
}

fn gw_add(j: u32, g: vec3<f32>) {
    gw0[j] += g.x;
    gw1[j] += g.y;
    gw2[j] += g.z;
}

fn gw_set(j: u32, g: vec3<f32>) {
    gw0[j] = g.x;
    gw1[j] = g.y;
    gw2[j] = g.z;
}

// Float additions by compare-and-swap, one function per binding (WGSL
// cannot pass storage pointers to functions).
fn add0(j: u32, v: f32) {
    var old = atomicLoad(&gat0[j]);
    loop {
        let r = atomicCompareExchangeWeak(&gat0[j], old, bitcast<u32>(bitcast<f32>(old) + v));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

fn add1(j: u32, v: f32) {
    var old = atomicLoad(&gat1[j]);
    loop {
        let r = atomicCompareExchangeWeak(&gat1[j], old, bitcast<u32>(bitcast<f32>(old) + v));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

fn add2(j: u32, v: f32) {
    var old = atomicLoad(&gat2[j]);
    loop {
        let r = atomicCompareExchangeWeak(&gat2[j], old, bitcast<u32>(bitcast<f32>(old) + v));
        if (r.exchanged) {
            break;
        }
        old = r.old_value;
    }
}

fn gat_add(j: u32, g: vec3<f32>) {
    add0(j, g.x);
    add1(j, g.y);
    add2(j, g.z);
}

// Field a at q (clamped borders) and its derivative along each axis
// (columns: ∂a/∂q_x, ∂a/∂q_y, ∂a/∂q_z).
struct FieldSample {
    v: vec3<f32>,
    dx: vec3<f32>,
    dy: vec3<f32>,
    dz: vec3<f32>,
}

struct Corners {
    i0: vec3<i32>,
    i1: vec3<i32>,
    t: vec3<f32>,
    live: vec3<f32>,
}

fn corners(q_in: vec3<f32>) -> Corners {
    let n = vec3<i32>(geo.dims.xyz);
    let lo = vec3<f32>(-2.0);
    let hi = vec3<f32>(geo.dims.xyz) + vec3<f32>(1.0);
    let live = select(vec3<f32>(0.0), vec3<f32>(1.0), (q_in > lo) & (q_in < hi));
    let q = clamp(q_in, lo, hi);
    let bf = floor(q);
    let b = vec3<i32>(bf);
    let top = n - vec3<i32>(1);
    return Corners(clamp(b, vec3<i32>(0), top), clamp(b + vec3<i32>(1), vec3<i32>(0), top), q - bf, live);
}

fn at(c: vec3<i32>) -> u32 {
    return u32((c.z * i32(geo.dims.y) + c.y) * i32(geo.dims.x) + c.x);
}

fn sample_a(q: vec3<f32>) -> FieldSample {
    let k = corners(q);
    var s = FieldSample(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0));
    for (var dz = 0; dz < 2; dz++) {
        let z = select(k.i0.z, k.i1.z, dz == 1);
        let wz = select(1.0 - k.t.z, k.t.z, dz == 1);
        let sz = select(-1.0, 1.0, dz == 1);
        for (var dy = 0; dy < 2; dy++) {
            let y = select(k.i0.y, k.i1.y, dy == 1);
            let wy = select(1.0 - k.t.y, k.t.y, dy == 1);
            let sy = select(-1.0, 1.0, dy == 1);
            for (var dx = 0; dx < 2; dx++) {
                let x = select(k.i0.x, k.i1.x, dx == 1);
                let wx = select(1.0 - k.t.x, k.t.x, dx == 1);
                let sx = select(-1.0, 1.0, dx == 1);
                let a = fa(at(vec3<i32>(x, y, z)));
                s.v += wx * wy * wz * a;
                s.dx += sx * wy * wz * a;
                s.dy += wx * sy * wz * a;
                s.dz += wx * wy * sz * a;
            }
        }
    }
    s.dx *= k.live.x;
    s.dy *= k.live.y;
    s.dz *= k.live.z;
    return s;
}

// Add g · (trilinear weight of corner) at each corner of q (clamped).
fn scatter(q: vec3<f32>, g: vec3<f32>) {
    let k = corners(q);
    for (var dz = 0; dz < 2; dz++) {
        let z = select(k.i0.z, k.i1.z, dz == 1);
        let wz = select(1.0 - k.t.z, k.t.z, dz == 1);
        for (var dy = 0; dy < 2; dy++) {
            let y = select(k.i0.y, k.i1.y, dy == 1);
            let wy = select(1.0 - k.t.y, k.t.y, dy == 1);
            for (var dx = 0; dx < 2; dx++) {
                let x = select(k.i0.x, k.i1.x, dx == 1);
                let wx = select(1.0 - k.t.x, k.t.x, dx == 1);
                let w = wx * wy * wz;
                if (w != 0.0) {
                    gat_add(at(vec3<i32>(x, y, z)), w * g);
                }
            }
        }
    }
}

fn jt(s: FieldSample, g: vec3<f32>) -> vec3<f32> {
    return vec3<f32>(dot(s.dx, g), dot(s.dy, g), dot(s.dz, g));
}

@compute @workgroup_size(256)
fn svf_init(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    gw_set(i, fa(i) * geo.scale.xyz * mp.y);
}

// The sampled field u + b: the model's displacement (a) plus a held start
// field (b, voxels; `deformable.start = residual`). dL/du is dL/d(u + b).
@compute @workgroup_size(256)
fn add_base(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    gw_set(i, fa(i) + fb(i));
}

@compute @workgroup_size(256)
fn ss_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    let u = fa(i);
    gw_set(i, u + sample_a(vec3<f32>(voxel(i, geo.dims.xyz)) + u).v);
}

@compute @workgroup_size(256)
fn ss_point(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    let g = gr(i);
    let s = sample_a(vec3<f32>(voxel(i, geo.dims.xyz)) + fa(i));
    gw_set(i, g + jt(s, g));
}

@compute @workgroup_size(256)
fn ss_scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    scatter(vec3<f32>(voxel(i, geo.dims.xyz)) + fa(i), gr(i));
}

// Central difference of u along axis a at voxel v (one-sided at borders,
// zero on a single-voxel axis), as register::regularize.
fn cdiff(v: vec3<i32>, a: u32) -> vec3<f32> {
    let n = i32(geo.dims[a]);
    if (n < 2) {
        return vec3<f32>(0.0);
    }
    var e = vec3<i32>(0);
    e[a] = 1;
    if (v[a] == 0) {
        return fa(at(v + e)) - fa(at(v));
    }
    if (v[a] == n - 1) {
        return fa(at(v)) - fa(at(v - e));
    }
    return 0.5 * (fa(at(v + e)) - fa(at(v - e)));
}

// det(I + ∇u) at v and dL/dJ there: −(w/N)·[det < 0]·cofactors, rows by
// component (m[c][a] = ∂L/∂J_ca before the live weight).
struct JacobianAt {
    det: f32,
    m: array<vec3<f32>, 3>,
}

fn jacobian_at(v: vec3<i32>) -> JacobianAt {
    // columns: J[·][a] = e_a + D_a u
    let c0 = vec3<f32>(1.0, 0.0, 0.0) + cdiff(v, 0u);
    let c1 = vec3<f32>(0.0, 1.0, 0.0) + cdiff(v, 1u);
    let c2 = vec3<f32>(0.0, 0.0, 1.0) + cdiff(v, 2u);
    // J as rows r_c = (J_c0, J_c1, J_c2)
    let r0 = vec3<f32>(c0.x, c1.x, c2.x);
    let r1 = vec3<f32>(c0.y, c1.y, c2.y);
    let r2 = vec3<f32>(c0.z, c1.z, c2.z);
    let cof0 = cross(r1, r2);
    let cof1 = cross(r2, r0);
    let cof2 = cross(r0, r1);
    let det = dot(r0, cof0);
    var out = JacobianAt(det, array<vec3<f32>, 3>(vec3<f32>(0.0), vec3<f32>(0.0), vec3<f32>(0.0)));
    if (det < 0.0) {
        let k = -w_at(at(v)) / f32(geo.dims.w);
        out.m = array<vec3<f32>, 3>(k * cof0, k * cof1, k * cof2);
    }
    return out;
}

// Pass 1: det J and dL/dJ at every voxel (value partials to slot.x).
@compute @workgroup_size(256)
fn jacobian_m(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    var part = 0.0;
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        let j = jacobian_at(vec3<i32>(voxel(i, geo.dims.xyz)));
        part += w_at(i) * max(0.0, -j.det);
        jm0[i] = vec4<f32>(j.m[0], 0.0);
        jm1[i] = vec4<f32>(j.m[1], 0.0);
        jm2[i] = vec4<f32>(j.m[2], 0.0);
    }
    let t = wg_sum(part, lid);
    if (lid == 0u) {
        partials[chan.slot.x * geo.info.x + grp] = t;
    }
}

// Column a of dL/dJ at voxel j: (∂L/∂J_0a, ∂L/∂J_1a, ∂L/∂J_2a).
fn jm_col(j: u32, a: u32) -> vec3<f32> {
    return vec3<f32>(jm0[j][a], jm1[j][a], jm2[j][a]);
}

// Pass 2: dL/du(p) = Σ over the voxels v whose differences use u(p) of
// κ · dL/dJ_v[·][a] (κ: p's coefficient in v's difference along a).
@compute @workgroup_size(256)
fn jacobian_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    let n = vec3<i32>(geo.dims.xyz);
    let p = vec3<i32>(voxel(i, geo.dims.xyz));
    let strides = vec3<u32>(1u, geo.dims.x, geo.dims.x * geo.dims.y);
    var g = vec3<f32>(0.0);
    for (var a = 0u; a < 3u; a++) {
        if (n[a] < 2) {
            continue;
        }
        // v = p: a one-sided difference at a border uses u(p)
        if (p[a] == 0) {
            g -= jm_col(i, a);
        } else if (p[a] == n[a] - 1) {
            g += jm_col(i, a);
        }
        // v = p − e_a: p is its forward neighbour
        if (p[a] >= 1) {
            let kappa = select(0.5, 1.0, p[a] == 1);
            g += kappa * jm_col(i - strides[a], a);
        }
        // v = p + e_a: p is its backward neighbour
        if (p[a] + 1 < n[a]) {
            let kappa = select(0.5, 1.0, p[a] + 2 == n[a]);
            g -= kappa * jm_col(i + strides[a], a);
        }
    }
    gw_add(i, live.reg.y * g);
}

// The round trip r = b(x) + a(x + b(x)) of two fields.
@compute @workgroup_size(256)
fn ic_point(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    let c = 2.0 / f32(geo.dims.w) * live.reg.w;
    var part = 0.0;
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        let b = fb(i);
        let s = sample_a(vec3<f32>(voxel(i, geo.dims.xyz)) + b);
        let r = b + s.v;
        part += dot(r, r);
        gw_add(i, c * (r + jt(s, r)));
    }
    let t = wg_sum(part, lid);
    if (lid == 0u) {
        partials[chan.slot.y * geo.info.x + grp] = t;
    }
}

@compute @workgroup_size(256)
fn ic_scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= geo.dims.w) {
        return;
    }
    let c = 2.0 / f32(geo.dims.w) * live.reg.w;
    let b = fb(i);
    let q = vec3<f32>(voxel(i, geo.dims.xyz)) + b;
    let r = b + sample_a(q).v;
    scatter(q, c * r);
}

@compute @workgroup_size(256)
fn finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    var part = 0.0;
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        let r = diffusion(i, voxel(i, geo.dims.xyz));
        part += r.value;
        gw_set(i, gr(i) * geo.scale.xyz * mp.y + r.grad);
    }
    let t = wg_sum(part, lid);
    if (lid == 0u) {
        partials[chan.slot.w * geo.info.x + grp] = t;
    }
}
