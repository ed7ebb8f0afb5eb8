// Image operations on one channel: separable Gaussian smoothing with the
// kernel renormalised over the voxels that exist (volume::smooth), and
// trilinear resampling through a voxel matrix (volume::resample's Sampler:
// zero or clamped border) — the pyramid's halving step and the moving image
// seen through the affine.

struct Blur {
    // nx, ny, nz, n
    dims: vec4<u32>,
    // axis, radius, unused ×2
    axis: vec4<u32>,
    // kernel weights, index 0 ..= 2·radius
    k: array<vec4<f32>, 16>,
}

struct Resample {
    // target voxel → source voxel
    m0: vec4<f32>,
    m1: vec4<f32>,
    m2: vec4<f32>,
    // source dims, border (0 zero, 1 clamp)
    src: vec4<u32>,
    // target dims, n
    dst: vec4<u32>,
}

@group(0) @binding(0) var<uniform> bl: Blur;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> rs: Resample;

fn kw(j: u32) -> f32 {
    return bl.k[j / 4u][j % 4u];
}

@compute @workgroup_size(256)
fn blur(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= bl.dims.w) {
        return;
    }
    let v = voxel(i, bl.dims.xyz);
    let a = bl.axis.x;
    let r = i32(bl.axis.y);
    let strides = vec3<u32>(1u, bl.dims.x, bl.dims.x * bl.dims.y);
    let pos = i32(v[a]);
    let n = i32(bl.dims[a]);
    let lo = max(pos - r, 0);
    let hi = min(pos + r, n - 1);
    let base = i - u32(pos) * strides[a];
    var acc = 0.0;
    var wsum = 0.0;
    for (var p = lo; p <= hi; p++) {
        let w = kw(u32(p - pos + r));
        acc += w * src[base + u32(p) * strides[a]];
        wsum += w;
    }
    dst[i] = acc / wsum;
}

fn fetch(c: vec3<i32>) -> f32 {
    let d = vec3<i32>(rs.src.xyz);
    if (rs.src.w == 1u) {
        let k = clamp(c, vec3<i32>(0), d - vec3<i32>(1));
        return src[u32((k.z * d.y + k.y) * d.x + k.x)];
    }
    if (any(c < vec3<i32>(0)) || any(c >= d)) {
        return 0.0;
    }
    return src[u32((c.z * d.y + c.y) * d.x + c.x)];
}

@compute @workgroup_size(256)
fn resample(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= rs.dst.w) {
        return;
    }
    let p4 = vec4<f32>(vec3<f32>(voxel(i, rs.dst.xyz)), 1.0);
    var p = vec3<f32>(dot(rs.m0, p4), dot(rs.m1, p4), dot(rs.m2, p4));
    let d = vec3<f32>(rs.src.xyz);
    if (rs.src.w == 1u) {
        p = clamp(p, vec3<f32>(0.0), d - vec3<f32>(1.0));
    } else if (any(p <= vec3<f32>(-1.0)) || any(p >= d)) {
        dst[i] = 0.0;
        return;
    }
    let f = floor(p);
    let t = p - f;
    let b = vec3<i32>(f);
    var acc = 0.0;
    for (var dz = 0; dz < 2; dz++) {
        let wz = select(1.0 - t.z, t.z, dz == 1);
        for (var dy = 0; dy < 2; dy++) {
            let wy = select(1.0 - t.y, t.y, dy == 1);
            for (var dx = 0; dx < 2; dx++) {
                let wx = select(1.0 - t.x, t.x, dx == 1);
                let w = wx * wy * wz;
                if (w != 0.0) {
                    acc += w * fetch(b + vec3<i32>(dx, dy, dz));
                }
            }
        }
    }
    dst[i] = acc;
}

@group(0) @binding(4) var<storage, read> src2: array<f32>;

// dst = src · src2 (a mask times a weight map).
@compute @workgroup_size(256)
fn product(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= rs.dst.w) {
        return;
    }
    dst[i] = src[i] * src2[i];
}
