// The deformable stage's smoothing of the gradient and of the field
// (register::smoothing): box passes along one axis, three components at
// once. Each voxel becomes the mean of the voxels of its line within
// `radius` that exist (the CPU's twin is volume::smooth::box_pass, with
// running sums in f64; here each invocation adds its own window, so a
// window of zeros gives exactly zero). Radius 0 is a copy. Flags: skip once
// the optimiser has halted (the field must stay the last finite one), and
// skip before any Adam step (restoring a field saved by a step).

struct BoxP {
    // nx, ny, nz, n
    dims: vec4<u32>,
    // axis, radius, flags, unused
    p: vec4<u32>,
}

const SKIP_HALTED: u32 = 1u;
const SKIP_UNSTEPPED: u32 = 2u;

@group(0) @binding(0) var<uniform> bp: BoxP;
@group(0) @binding(1) var<storage, read> state: State;
@group(0) @binding(2) var<storage, read> sx: array<f32>;
@group(0) @binding(3) var<storage, read> sy: array<f32>;
@group(0) @binding(4) var<storage, read> sz: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> dz: array<f32>;
// Declared for level.wgsl's helpers; not used here (not in the layout).
@group(0) @binding(8) var<uniform> geo: Geo;

@compute @workgroup_size(256)
fn box_pass(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = flat_index(wid, nwg, lid);
    if (i >= bp.dims.w) {
        return;
    }
    if ((bp.p.z & SKIP_HALTED) != 0u && state.counts.y != 0u) {
        return;
    }
    if ((bp.p.z & SKIP_UNSTEPPED) != 0u && state.counts.x == 0u) {
        return;
    }
    let d = bp.dims.xyz;
    let v = voxel(i, d);
    var len = d.x;
    var pos = v.x;
    var stride = 1u;
    if (bp.p.x == 1u) {
        len = d.y;
        pos = v.y;
        stride = d.x;
    } else if (bp.p.x == 2u) {
        len = d.z;
        pos = v.z;
        stride = d.x * d.y;
    }
    let r = bp.p.y;
    let lo = select(0u, pos - r, pos >= r);
    let hi = min(pos + r, len - 1u);
    let first = i - (pos - lo) * stride;
    var ax = 0.0;
    var ay = 0.0;
    var az = 0.0;
    for (var k = 0u; k <= hi - lo; k++) {
        let j = first + k * stride;
        ax += sx[j];
        ay += sy[j];
        az += sz[j];
    }
    let inv = 1.0 / f32(hi - lo + 1u);
    dx[i] = ax * inv;
    dy[i] = ay * inv;
    dz[i] = az * inv;
}
