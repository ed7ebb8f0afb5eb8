// A field from the registration engine, brought onto the viewer's display
// grid: the engine's displacement u lives on a pyramid level of the fixed
// grid ([3, N] f32, one component after the other, in level voxels) and
// applies before the affine A. For display voxel d:
//   l   = display_to_level · d              (level voxel)
//   u_l = u(l), trilinear, clamped at the edges (as the engine resizes fields)
//   p   = display_to_fixed · d              (fixed voxel)
//   q   = after · (p + level_to_fixed · u_l) (display voxel of the moving point;
//                                             after = display⁻¹ · A)
//   out = q − d                              (displacement in display voxels)
//
// Output: a storage buffer holding a slab of z-slices of RGBA texels, rows
// padded to `level.w` texels, copied into the RGBA32Float field texture.

struct Params {
    display_to_level: mat4x4<f32>,
    display_to_fixed: mat4x4<f32>,
    after: mat4x4<f32>,
    // linear part only (vectors)
    level_to_fixed: mat4x4<f32>,
    // display nx, ny, nz, first z of this slab
    dims: vec4<u32>,
    // level nx, ny, nz, output row stride (texels)
    level: vec4<u32>,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> ux: array<f32>;
@group(0) @binding(2) var<storage, read> uy: array<f32>;
@group(0) @binding(3) var<storage, read> uz: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_buf: array<vec4<f32>>;

fn at(i: vec3<u32>) -> vec3<f32> {
    let k = (i.z * params.level.y + i.y) * params.level.x + i.x;
    return vec3<f32>(ux[k], uy[k], uz[k]);
}

@compute @workgroup_size(4, 4, 4)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = vec3<u32>(gid.xy, gid.z + params.dims.w);
    if any(id >= params.dims.xyz) {
        return;
    }
    let d = vec3<f32>(id);
    let top = vec3<f32>(params.level.xyz) - vec3<f32>(1.0);
    let l = clamp((params.display_to_level * vec4<f32>(d, 1.0)).xyz, vec3<f32>(0.0), top);
    let f = floor(l);
    let w = l - f;
    let lo = vec3<u32>(f);
    let hi = min(lo + vec3<u32>(1u), params.level.xyz - vec3<u32>(1u));
    let c00 = mix(at(lo), at(vec3<u32>(hi.x, lo.y, lo.z)), w.x);
    let c10 = mix(at(vec3<u32>(lo.x, hi.y, lo.z)), at(vec3<u32>(hi.x, hi.y, lo.z)), w.x);
    let c01 = mix(at(vec3<u32>(lo.x, lo.y, hi.z)), at(vec3<u32>(hi.x, lo.y, hi.z)), w.x);
    let c11 = mix(at(vec3<u32>(lo.x, hi.y, hi.z)), at(hi), w.x);
    let u = mix(mix(c00, c10, w.y), mix(c01, c11, w.y), w.z);
    let p = (params.display_to_fixed * vec4<f32>(d, 1.0)).xyz;
    let v = (params.level_to_fixed * vec4<f32>(u, 0.0)).xyz;
    let q = (params.after * vec4<f32>(p + v, 1.0)).xyz;
    let row = gid.z * params.dims.y + gid.y;
    out_buf[row * params.level.w + gid.x] = vec4<f32>(q - d, 0.0);
}
