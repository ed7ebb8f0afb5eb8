// Trilinear sampling of the `moving` binding (one channel) at voxel
// coordinates q of a grid of `n` voxels: zero outside, and the derivative
// along each axis. Points are clamped to [−2, n + 1] first and a clamped
// coordinate has no derivative, exactly as the CPU kernels and the
// composed tensor path.

struct Tri {
    v: f32,
    d: vec3<f32>,
}

fn tri_sample(q_in: vec3<f32>, n: vec3<u32>) -> Tri {
    let lo = vec3<f32>(-2.0);
    let hi = vec3<f32>(n) + vec3<f32>(1.0);
    let live = select(vec3<f32>(0.0), vec3<f32>(1.0), (q_in > lo) & (q_in < hi));
    let q = clamp(q_in, lo, hi);
    let bf = floor(q);
    let b = vec3<i32>(bf);
    let t = q - bf;
    let ni = vec3<i32>(n);
    let ok0 = (b >= vec3<i32>(0)) & (b < ni);
    let ok1 = (b >= vec3<i32>(-1)) & (b + vec3<i32>(1) < ni);
    let sy = i32(n.x);
    let sz = i32(n.x * n.y);
    var val = 0.0;
    var d = vec3<f32>(0.0);
    for (var dz = 0; dz < 2; dz++) {
        let okz = select(ok0.z, ok1.z, dz == 1);
        if (!okz) {
            continue;
        }
        let wz = select(1.0 - t.z, t.z, dz == 1);
        let sgz = select(-1.0, 1.0, dz == 1);
        for (var dy = 0; dy < 2; dy++) {
            let oky = select(ok0.y, ok1.y, dy == 1);
            if (!oky) {
                continue;
            }
            let wy = select(1.0 - t.y, t.y, dy == 1);
            let sgy = select(-1.0, 1.0, dy == 1);
            let row = (b.z + dz) * sz + (b.y + dy) * sy + b.x;
            var v0 = 0.0;
            var v1 = 0.0;
            if (ok0.x) {
                v0 = moving[u32(row)];
            }
            if (ok1.x) {
                v1 = moving[u32(row + 1)];
            }
            let wyz = wy * wz;
            let vx = v0 * (1.0 - t.x) + v1 * t.x;
            val += vx * wyz;
            d.x += (v1 - v0) * wyz;
            d.y += vx * sgy * wz;
            d.z += vx * wy * sgz;
        }
    }
    return Tri(val, d * live);
}

// q = K · [p, 1] for the affine stage.
fn affine_point(p: vec3<f32>) -> vec3<f32> {
    let h = vec4<f32>(p, 1.0);
    return vec3<f32>(dot(state.k0, h), dot(state.k1, h), dot(state.k2, h));
}
