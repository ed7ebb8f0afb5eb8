// Field operations outside the iteration loop: a field brought from one
// pyramid level to the next, the voxel displacement of the parameters (for
// previews and results), and the inverse-consistency weight map.

struct Resize {
    // to-grid voxel → from-grid voxel
    m0: vec4<f32>,
    m1: vec4<f32>,
    m2: vec4<f32>,
    // from-grid vectors → to-grid vectors (linear part)
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    // parameter units → voxels on each grid
    s_from: vec4<f32>,
    s_to: vec4<f32>,
    // dims of each grid, n in w
    fdims: vec4<u32>,
    tdims: vec4<u32>,
    // the IC weight map: power p, unused ×3
    misc: vec4<f32>,
}

@group(0) @binding(0) var<uniform> rz: Resize;
@group(0) @binding(1) var<storage, read> ax: array<f32>;
@group(0) @binding(2) var<storage, read> ay: array<f32>;
@group(0) @binding(3) var<storage, read> az: array<f32>;
@group(0) @binding(4) var<storage, read_write> bx: array<f32>;
@group(0) @binding(5) var<storage, read_write> by: array<f32>;
@group(0) @binding(6) var<storage, read_write> bz: array<f32>;
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;
@group(0) @binding(8) var<storage, read> kmat: array<vec4<f32>>;

fn a_comp(c: u32, j: u32) -> f32 {
    if (c == 0u) {
        return ax[j];
    } else if (c == 1u) {
        return ay[j];
    }
    return az[j];
}

// Trilinear sample of field a (in voxels: a · s_from) at q on the from-grid,
// clamped to the grid (the field continues past its edge).
fn sample_from(q_in: vec3<f32>) -> vec3<f32> {
    let d = rz.fdims.xyz;
    let q = clamp(q_in, vec3<f32>(0.0), vec3<f32>(d) - vec3<f32>(1.0));
    let f = floor(q);
    let lo = vec3<u32>(f);
    let hi = min(lo + vec3<u32>(1u), d - vec3<u32>(1u));
    let t = q - f;
    var out = vec3<f32>(0.0);
    for (var c = 0u; c < 3u; c++) {
        var s = 0.0;
        for (var dz = 0u; dz < 2u; dz++) {
            let z = select(lo.z, hi.z, dz == 1u);
            let wz = select(1.0 - t.z, t.z, dz == 1u);
            for (var dy = 0u; dy < 2u; dy++) {
                let y = select(lo.y, hi.y, dy == 1u);
                let wy = select(1.0 - t.y, t.y, dy == 1u);
                let row = (z * d.y + y) * d.x;
                s += wz * wy * (a_comp(c, row + lo.x) * (1.0 - t.x) + a_comp(c, row + hi.x) * t.x);
            }
        }
        out[c] = s * rz.s_from[c];
    }
    return out;
}

@compute @workgroup_size(256)
fn resize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= rz.tdims.w) {
        return;
    }
    let p = vec4<f32>(vec3<f32>(voxel(i, rz.tdims.xyz)), 1.0);
    let q = vec3<f32>(dot(rz.m0, p), dot(rz.m1, p), dot(rz.m2, p));
    let v = sample_from(q);
    let w = vec3<f32>(dot(rz.v0.xyz, v), dot(rz.v1.xyz, v), dot(rz.v2.xyz, v));
    bx[i] = w.x / rz.s_to.x;
    by[i] = w.y / rz.s_to.y;
    bz[i] = w.z / rz.s_to.z;
}

// b = a · s_to (parameters → voxel displacement on the same grid).
@compute @workgroup_size(256)
fn scaled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= rz.tdims.w) {
        return;
    }
    bx[i] = ax[i] * rz.s_to.x;
    by[i] = ay[i] * rz.s_to.y;
    bz[i] = az[i] * rz.s_to.z;
}

// The affine stage's displacement K·p − p (K: the first three rows of kmat).
@compute @workgroup_size(256)
fn affine_displacement(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= rz.tdims.w) {
        return;
    }
    let p = vec4<f32>(vec3<f32>(voxel(i, rz.tdims.xyz)), 1.0);
    bx[i] = dot(kmat[0], p) - p.x;
    by[i] = dot(kmat[1], p) - p.y;
    bz[i] = dot(kmat[2], p) - p.z;
}

// Round-trip error ‖u(x) + v(x + u(x))‖ (u = c·s_to read at x; v = a·s_from
// sampled by sample_from, clamped at the edge; both on one grid) times the
// foreground fg (1 or 0) into bx, and its per-workgroup maxima into partials.
@group(0) @binding(9) var<storage, read> cx: array<f32>;
@group(0) @binding(10) var<storage, read> cy: array<f32>;
@group(0) @binding(11) var<storage, read> cz: array<f32>;
@group(0) @binding(12) var<storage, read> fg: array<f32>;

@compute @workgroup_size(256)
fn round_trip(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    var e = 0.0;
    if (i < rz.tdims.w) {
        let p = vec3<f32>(voxel(i, rz.tdims.xyz));
        let u = vec3<f32>(cx[i], cy[i], cz[i]) * rz.s_to.xyz;
        let r = u + sample_from(p + u);
        e = length(r) * fg[i];
        bx[i] = e;
    }
    let m = wg_max(e, lid);
    if (lid == 0u) {
        partials[group_of(wid, nwg)] = m;
    }
}

// One fixed-point step towards the inverse of a field: b = −u(x + v(x))
// (u = a·s_from sampled, clamped at the edge; v = c·s_to read at x).
@compute @workgroup_size(256)
fn invert_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= rz.tdims.w) {
        return;
    }
    let p = vec3<f32>(voxel(i, rz.tdims.xyz));
    let v = vec3<f32>(cx[i], cy[i], cz[i]) * rz.s_to.xyz;
    let b = -sample_from(p + v);
    bx[i] = b.x;
    by[i] = b.y;
    bz[i] = b.z;
}

// One workgroup: the maximum of the round trip's partial maxima → by[0].
@compute @workgroup_size(256)
fn max_final(@builtin(local_invocation_index) lid: u32) {
    let groups = (rz.tdims.w + WG - 1u) / WG;
    var m = 0.0;
    for (var g = lid; g < groups; g += WG) {
        m = max(m, partials[g]);
    }
    let t = wg_max(m, lid);
    if (lid == 0u) {
        by[0] = t;
    }
}

// The weight 1 − (e / max e)^p in place (ax = e in bx's buffer, by[0] = max).
@compute @workgroup_size(256)
fn ic_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= rz.tdims.w) {
        return;
    }
    let mx = ay[0];
    var e = 0.0;
    if (mx > 0.0) {
        e = ax[i] / mx;
    }
    bx[i] = 1.0 - pow(e, rz.misc.x);
}

// b = a·s + c: parameters to voxels plus a held start field (c, voxels).
@compute @workgroup_size(256)
fn scaled_plus(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= rz.tdims.w) {
        return;
    }
    bx[i] = ax[i] * rz.s_to.x + cx[i];
    by[i] = ay[i] * rz.s_to.y + cy[i];
    bz[i] = az[i] * rz.s_to.z + cz[i];
}
