// One 2-D slice through a 3-D volume, resliced in world coordinates.
//
// The CPU computes `uv_to_vox`, which maps a point of the view (u, v in
// [0, 1], v down) to a fractional voxel index of the volume, so oblique,
// flipped and anisotropic volumes all show in RAS-aligned planes. Samples are
// interpolated trilinearly from an R32Float 3-D texture with textureLoad (no
// filterable-float feature needed) and mapped through a window [lo, hi].

struct Params {
    uv_to_vox: mat4x4<f32>,
    // nx, ny, nz, unused
    dims: vec4<f32>,
    // window low, window high, 1 = trilinear / 0 = nearest, unused
    window: vec4<f32>,
    // colour for voxels outside the volume
    background: vec4<f32>,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var volume: texture_3d<f32>;

struct VsOut {
    @builtin(position) position: vec4<f32>,
    @location(0) uv: vec2<f32>,
};

// A single triangle that covers the viewport; uv runs 0..1 across it.
@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> VsOut {
    let x = f32((i << 1u) & 2u);
    let y = f32(i & 2u);
    var out: VsOut;
    out.position = vec4<f32>(x * 2.0 - 1.0, 1.0 - y * 2.0, 0.0, 1.0);
    out.uv = vec2<f32>(x, y);
    return out;
}

fn fetch(p: vec3<i32>) -> f32 {
    let hi = vec3<i32>(params.dims.xyz) - vec3<i32>(1);
    return textureLoad(volume, clamp(p, vec3<i32>(0), hi), 0).r;
}

fn sample_volume(p: vec3<f32>) -> f32 {
    if params.window.z < 0.5 {
        return fetch(vec3<i32>(floor(p + vec3<f32>(0.5))));
    }
    let f = floor(p);
    let w = p - f;
    let i = vec3<i32>(f);
    let c00 = mix(fetch(i), fetch(i + vec3<i32>(1, 0, 0)), w.x);
    let c10 = mix(fetch(i + vec3<i32>(0, 1, 0)), fetch(i + vec3<i32>(1, 1, 0)), w.x);
    let c01 = mix(fetch(i + vec3<i32>(0, 0, 1)), fetch(i + vec3<i32>(1, 0, 1)), w.x);
    let c11 = mix(fetch(i + vec3<i32>(0, 1, 1)), fetch(i + vec3<i32>(1, 1, 1)), w.x);
    return mix(mix(c00, c10, w.y), mix(c01, c11, w.y), w.z);
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    let p = (params.uv_to_vox * vec4<f32>(in.uv, 0.0, 1.0)).xyz;
    let n = params.dims.xyz;
    if any(p < vec3<f32>(-0.5)) || any(p > n - vec3<f32>(0.5)) {
        return params.background;
    }
    let v = sample_volume(p);
    let span = max(params.window.y - params.window.x, 1e-20);
    let g = clamp((v - params.window.x) / span, 0.0, 1.0);
    return vec4<f32>(g, g, g, 1.0);
}
