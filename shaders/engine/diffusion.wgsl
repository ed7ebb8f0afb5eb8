// The diffusion regulariser's value share and gradient at one voxel, for
// modules that define theta(c, j) (the parameters) and w_at(j) (its weight).

struct Diffusion {
    grad: vec3<f32>,
    value: f32,
}

// The diffusion regulariser λ · mean_v w(v) Σ_c Σ_a (θ_c(v + e_a) − θ_c(v))²
// at voxel i: dL/dθ there, and w(i) Σ of its forward pairs (the value's
// share of voxel i, before the mean).
fn diffusion(i: u32, v: vec3<u32>) -> Diffusion {
    let d = geo.dims.xyz;
    let strides = vec3<u32>(1u, d.x, d.x * d.y);
    let k = 2.0 / f32(geo.dims.w) * live.reg.x;
    let wi = w_at(i);
    var g = vec3<f32>(0.0);
    var value = 0.0;
    for (var c = 0u; c < 3u; c++) {
        let t0 = theta(c, i);
        var s = 0.0;
        for (var a = 0u; a < 3u; a++) {
            if (v[a] + 1u < d[a]) {
                let e = theta(c, i + strides[a]) - t0;
                s -= wi * e;
                value += e * e;
            }
            if (v[a] > 0u) {
                let u = i - strides[a];
                s += w_at(u) * (t0 - theta(c, u));
            }
        }
        g[c] = k * s;
    }
    return Diffusion(g, wi * value);
}

