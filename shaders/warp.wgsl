// The moving image warped onto the fixed grid through a displacement field:
// out(p) = M(A_m⁻¹·A_f·(p + u(p))), u in fixed voxels (the engine's
// convention), trilinear, samples outside the moving image count as 0 (as
// the CPU's Border::Constant(0)), so the image fades to 0 over the last voxel.
//
// Output: a storage buffer holding a slab of z-slices, rows padded to
// `row_stride` floats (the buffer is then copied into a 3-D texture; 3-D
// storage textures are not written whole by every backend).

struct Params {
    // fixed voxel → moving voxel (A_m⁻¹·A_f)
    fixed_to_moving: mat4x4<f32>,
    // fixed nx, ny, nz, first z of this slab
    fixed_dims: vec4<u32>,
    // moving nx, ny, nz, row stride (floats)
    moving_dims: vec4<u32>,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var moving: texture_3d<f32>;
@group(0) @binding(2) var field: texture_3d<f32>;
@group(0) @binding(3) var<storage, read_write> out_buf: array<f32>;

fn fetch(i: vec3<i32>) -> f32 {
    let d = vec3<i32>(params.moving_dims.xyz);
    if any(i < vec3<i32>(0)) || any(i >= d) {
        return 0.0;
    }
    return textureLoad(moving, i, 0).r;
}

@compute @workgroup_size(4, 4, 4)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = vec3<u32>(gid.xy, gid.z + params.fixed_dims.w);
    if any(id >= params.fixed_dims.xyz) {
        return;
    }
    let u = textureLoad(field, vec3<i32>(id), 0).xyz;
    let q = (params.fixed_to_moving * vec4<f32>(vec3<f32>(id) + u, 1.0)).xyz;
    var v = 0.0;
    let d = vec3<f32>(params.moving_dims.xyz);
    if all(q > vec3<f32>(-1.0)) && all(q < d) {
        let f = floor(q);
        let w = q - f;
        let i = vec3<i32>(f);
        let c00 = mix(fetch(i), fetch(i + vec3<i32>(1, 0, 0)), w.x);
        let c10 = mix(fetch(i + vec3<i32>(0, 1, 0)), fetch(i + vec3<i32>(1, 1, 0)), w.x);
        let c01 = mix(fetch(i + vec3<i32>(0, 0, 1)), fetch(i + vec3<i32>(1, 0, 1)), w.x);
        let c11 = mix(fetch(i + vec3<i32>(0, 1, 1)), fetch(i + vec3<i32>(1, 1, 1)), w.x);
        v = mix(mix(c00, c10, w.y), mix(c01, c11, w.y), w.z);
    }
    let row = gid.z * params.fixed_dims.y + gid.y;
    out_buf[row * params.moving_dims.w + gid.x] = v;
}
