// Shared by the engine's kernels (prepended to each module): the flat
// invocation index over a 2-D dispatch (more than 65 535 workgroups per
// axis are not allowed), voxel coordinates, the workgroup sum, and a
// finiteness test that does not rely on NaN comparisons (which shader
// compilers may fold away).

const WG: u32 = 256u;
// Voxels per invocation in kernels that reduce: one workgroup sum per
// WG·VPT voxels (barriers are costly on some drivers, and the second
// stage has fewer partials to add).
const VPT: u32 = 8u;

var<workgroup> red: array<f32, 256>;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

fn group_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// Voxel k (< VPT) of invocation lid in workgroup grp of a reducing kernel.
fn chunk_index(grp: u32, k: u32, lid: u32) -> u32 {
    return (grp * VPT + k) * WG + lid;
}

fn voxel(i: u32, d: vec3<u32>) -> vec3<u32> {
    let x = i % d.x;
    let r = i / d.x;
    return vec3<u32>(x, r % d.y, r / d.y);
}

// The sum of `v` over the workgroup, in every invocation. Every invocation
// of the workgroup must call it (uniform control flow).
fn wg_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// The maximum of `v` over the workgroup (as wg_sum).
fn wg_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn is_finite(x: f32) -> bool {
    return ((bitcast<u32>(x) >> 23u) & 0xffu) != 0xffu;
}
