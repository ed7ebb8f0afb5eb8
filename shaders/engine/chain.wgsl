// Chain rule, one channel: dL/dI (dl) times the sampling derivative at the
// current points. Dense field: into dL/dθ = dL/dq · s (channel 0 writes it
// together with the diffusion regulariser's gradient and the partial sums
// of its value; later channels add). Affine: reduced per workgroup into the
// 12 partial sums of dL/dΔ[r][k] = Σ_i (backᵀ g_i)_r x̂_k(i).
// With MSE alone, mse_affine and mse_dense sample, compare and chain in
// one pass (the sample kernel is not needed).

@group(0) @binding(0) var<uniform> geo: Geo;
@group(0) @binding(1) var<uniform> live: Live;
@group(0) @binding(2) var<uniform> chan: Chan;
@group(0) @binding(3) var<storage, read> moving: array<f32>;
@group(0) @binding(4) var<storage, read> dl: array<f32>;
@group(0) @binding(6) var<storage, read> thx: array<f32>;
@group(0) @binding(7) var<storage, read> thy: array<f32>;
@group(0) @binding(8) var<storage, read> thz: array<f32>;
@group(0) @binding(9) var<storage, read_write> gx: array<f32>;
@group(0) @binding(10) var<storage, read_write> gy: array<f32>;
@group(0) @binding(11) var<storage, read_write> gz: array<f32>;
@group(0) @binding(12) var<storage, read> state: State;
@group(0) @binding(13) var<storage, read_write> partials: array<f32>;
@group(0) @binding(15) var<storage, read> fixed: array<f32>;
@group(0) @binding(16) var<storage, read> weight: array<f32>;
@group(0) @binding(14) var<storage, read> rweight: array<f32>;

fn theta(c: u32, j: u32) -> f32 {
    if (c == 0u) {
        return thx[j];
    } else if (c == 1u) {
        return thy[j];
    }
    return thz[j];
}

// The regulariser's weight at voxel j (IC weights; a mask does not apply).
fn w_at(j: u32) -> f32 {
    if (has(F_REG_WEIGHTED)) {
        return rweight[j];
    }
    return 1.0;
}

// dL/dθ at voxel i: this channel's similarity part `g` plus the earlier
// channels' (written by them), or for channel 0 plus the diffusion
// gradient. Returns voxel i's share of the diffusion value (channel 0).
fn write_grad(i: u32, v: vec3<u32>, g_sim: vec3<f32>) -> f32 {
    var g = g_sim;
    var value = 0.0;
    if (chan.idx.x != 0u) {
        g += vec3<f32>(gx[i], gy[i], gz[i]);
    } else if (has(F_DIFFUSION)) {
        let r = diffusion(i, v);
        g += r.grad;
        value = r.value;
    }
    gx[i] = g.x;
    gy[i] = g.y;
    gz[i] = g.z;
    return value;
}

// The diffusion value's partial sum of this workgroup (channel 0).
fn store_diffusion(part: f32, grp: u32, lid: u32) {
    if (chan.idx.x == 0u && has(F_DIFFUSION)) {
        let d = wg_sum(part, lid);
        if (lid == 0u) {
            partials[chan.slot.w * geo.info.x + grp] = d;
        }
    }
}

@compute @workgroup_size(256)
fn chain_dense(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    var dpart = 0.0;
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        let v = voxel(i, geo.dims.xyz);
        let th = vec3<f32>(thx[i], thy[i], thz[i]);
        let q = vec3<f32>(v) + th * geo.scale.xyz;
        dpart += write_grad(i, v, dl[i] * tri_sample(q, geo.dims.xyz).d * geo.scale.xyz);
    }
    store_diffusion(dpart, grp, lid);
}

var<workgroup> red3: array<vec4<f32>, 768>;

// dL/dΔ's twelve partial sums of the workgroup (rows r of three vec4).
fn store_affine(a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, grp: u32, lid: u32) {
    red3[lid] = a0;
    red3[lid + WG] = a1;
    red3[lid + 2u * WG] = a2;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red3[lid] += red3[lid + s];
            red3[lid + WG] += red3[lid + WG + s];
            red3[lid + 2u * WG] += red3[lid + 2u * WG + s];
        }
        workgroupBarrier();
    }
    if (lid < 12u) {
        partials[(chan.slot.z + lid) * geo.info.x + grp] = red3[(lid / 4u) * WG][lid % 4u];
    }
}

// h ⊗ x̂ of one voxel: backᵀ g and the normalised coordinates.
fn affine_terms(p: vec4<f32>, g: vec3<f32>) -> array<vec4<f32>, 3> {
    let h = vec3<f32>(
        geo.back0.x * g.x + geo.back1.x * g.y + geo.back2.x * g.z,
        geo.back0.y * g.x + geo.back1.y * g.y + geo.back2.y * g.z,
        geo.back0.z * g.x + geo.back1.z * g.y + geo.back2.z * g.z,
    );
    let xh = vec4<f32>(dot(geo.into0, p), dot(geo.into1, p), dot(geo.into2, p), 1.0);
    return array<vec4<f32>, 3>(h.x * xh, h.y * xh, h.z * xh);
}

@compute @workgroup_size(256)
fn chain_affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        let p = vec4<f32>(vec3<f32>(voxel(i, geo.dims.xyz)), 1.0);
        let g = dl[i] * tri_sample(affine_point(p.xyz), geo.dims.xyz).d;
        let t = affine_terms(p, g);
        a0 += t[0];
        a1 += t[1];
        a2 += t[2];
    }
    store_affine(a0, a1, a2, grp, lid);
}

// MSE alone, one channel: sample, compare and chain in one pass (no warped
// image or dL/dI is stored). The MSE value's partials go to slot.x.
@compute @workgroup_size(256)
fn mse_affine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var part = 0.0;
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        let p = vec4<f32>(vec3<f32>(voxel(i, geo.dims.xyz)), 1.0);
        let s = tri_sample(affine_point(p.xyz), geo.dims.xyz);
        var w = 1.0;
        if (has(F_WEIGHTED)) {
            w = weight[i];
        }
        let e = s.v - fixed[i];
        part += w * e * e;
        let t = affine_terms(p, 2.0 * geo.scale.w * live.sim.x * w * e * s.d);
        a0 += t[0];
        a1 += t[1];
        a2 += t[2];
    }
    let v = wg_sum(part, lid);
    if (lid == 0u) {
        partials[chan.slot.x * geo.info.x + grp] = v;
    }
    store_affine(a0, a1, a2, grp, lid);
}

// MSE alone, dense field, one channel: sample, compare and chain in one
// pass into dL/dθ (channel 0 with the diffusion gradient; others add).
@compute @workgroup_size(256)
fn mse_dense(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let grp = group_of(wid, nwg);
    var part = 0.0;
    var dpart = 0.0;
    for (var k = 0u; k < VPT; k++) {
        let i = chunk_index(grp, k, lid);
        if (i >= geo.dims.w) {
            break;
        }
        let v = voxel(i, geo.dims.xyz);
        let th = vec3<f32>(thx[i], thy[i], thz[i]);
        let s = tri_sample(vec3<f32>(v) + th * geo.scale.xyz, geo.dims.xyz);
        var w = 1.0;
        if (has(F_WEIGHTED)) {
            w = weight[i];
        }
        let e = s.v - fixed[i];
        part += w * e * e;
        dpart += write_grad(i, v, (2.0 * geo.scale.w * live.sim.x * w * e) * s.d * geo.scale.xyz);
    }
    let t = wg_sum(part, lid);
    if (lid == 0u) {
        partials[chan.slot.x * geo.info.x + grp] = t;
    }
    store_diffusion(dpart, grp, lid);
}
