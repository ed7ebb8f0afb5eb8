// det J = det(I + ∂u/∂p) of a displacement u in voxels of its own grid: the
// Jacobian determinant of the fixed → moving map (equal to det(∂φ/∂x) in
// world mm, since the grid's linear part cancels). Derivatives by central
// differences inside and one-sided differences at the borders (NumPy's
// `gradient`, as methods.md and metrics::jacobian specify); an axis of one
// voxel has zero derivative.

//
// Output: a storage buffer holding a slab of z-slices, rows padded to
// `row_stride` floats (then copied into a 3-D texture).

struct Params {
    // nx, ny, nz, first z of this slab
    dims: vec4<u32>,
    // row stride (floats), unused ×3
    strides: vec4<u32>,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var field: texture_3d<f32>;
@group(0) @binding(2) var<storage, read_write> out_buf: array<f32>;

fn u_at(p: vec3<i32>) -> vec3<f32> {
    return textureLoad(field, p, 0).xyz;
}

// ∂u/∂p_a at p (a column of the displacement gradient).
fn derivative(p: vec3<i32>, a: i32) -> vec3<f32> {
    var e = vec3<i32>(0);
    e[a] = 1;
    let n = i32(params.dims[a]);
    let i = p[a];
    if n < 2 {
        return vec3<f32>(0.0);
    }
    if i == 0 {
        return u_at(p + e) - u_at(p);
    }
    if i == n - 1 {
        return u_at(p) - u_at(p - e);
    }
    return 0.5 * (u_at(p + e) - u_at(p - e));
}

@compute @workgroup_size(4, 4, 4)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let id = vec3<u32>(gid.xy, gid.z + params.dims.w);
    if any(id >= params.dims.xyz) {
        return;
    }
    let p = vec3<i32>(id);
    let j = mat3x3<f32>(
        vec3<f32>(1.0, 0.0, 0.0) + derivative(p, 0),
        vec3<f32>(0.0, 1.0, 0.0) + derivative(p, 1),
        vec3<f32>(0.0, 0.0, 1.0) + derivative(p, 2),
    );
    let row = gid.z * params.dims.y + gid.y;
    out_buf[row * params.strides.x + gid.x] = determinant(j);
}
