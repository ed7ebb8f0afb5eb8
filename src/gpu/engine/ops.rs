//! GPU operations outside the iteration loop, each the counterpart of a
//! CPU function it is tested against: Gaussian smoothing
//! (`volume::smooth::gaussian_blur`), resampling through a voxel matrix
//! (`volume::resample::resample_index_map`), the pyramid's halving step
//! (`volume::pyramid::downsample2`), bringing a field to the next level
//! (`register::fused::resize_field`), parameters to voxel displacements,
//! and the inverse-consistency weight map (`stages::ic::weights_from_error`
//! of `regularize::round_trip_error`).

use bytemuck::{Pod, Zeroable};

use super::{Buf, Gpu, GpuResult};
use crate::volume::affine::{self, Mat4};
use crate::volume::pyramid::half_grid;
use crate::volume::resample::Border;
use crate::volume::smooth::gaussian_kernel;
use crate::volume::{Grid, Volume};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Resize {
    m: [[f32; 4]; 3],
    v: [[f32; 4]; 3],
    s_from: [f32; 4],
    s_to: [f32; 4],
    fdims: [u32; 4],
    tdims: [u32; 4],
    misc: [f32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct BlurParams {
    dims: [u32; 4],
    axis: [u32; 4],
    k: [[f32; 4]; 16],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ResampleParams {
    m: [[f32; 4]; 3],
    src: [u32; 4],
    dst: [u32; 4],
}

fn dims4(d: [usize; 3]) -> [u32; 4] {
    [
        d[0] as u32,
        d[1] as u32,
        d[2] as u32,
        (d[0] * d[1] * d[2]) as u32,
    ]
}

fn rows(m: &[[f64; 4]; 3]) -> [[f32; 4]; 3] {
    m.map(|r| r.map(|v| v as f32))
}

/// Three zeroed buffers of `n` floats: a field, one buffer per component.
pub fn field_bufs(gpu: &Gpu, n: usize) -> GpuResult<[Buf; 3]> {
    Ok([
        gpu.buf("engine: field x", n)?,
        gpu.buf("engine: field y", n)?,
        gpu.buf("engine: field z", n)?,
    ])
}

fn resize_params(fdims: [usize; 3], tdims: [usize; 3]) -> Resize {
    Resize {
        m: [[0.0; 4]; 3],
        v: [[0.0; 4]; 3],
        s_from: [1.0; 4],
        s_to: [1.0; 4],
        fdims: dims4(fdims),
        tdims: dims4(tdims),
        misc: [0.0; 4],
    }
}

/// `fields.wgsl`'s bindings of an input field (ax, ay, az) and an output
/// field (bx, by, bz).
fn field_in_out<'a>(a: &'a [Buf; 3], b: &'a [Buf; 3]) -> Vec<(u32, wgpu::BindingResource<'a>)> {
    (0..3u32)
        .map(|k| (1 + k, a[k as usize].binding()))
        .chain((0..3u32).map(|k| (4 + k, b[k as usize].binding())))
        .collect()
}

/// A scale vector as a uniform's vec4.
fn v4(s: [f32; 3]) -> [f32; 4] {
    [s[0], s[1], s[2], 0.0]
}

/// Run one `fields.wgsl` entry over the to-grid.
fn fields_pass(
    gpu: &Gpu,
    entry: &'static str,
    params: &Resize,
    entries: Vec<(u32, wgpu::BindingResource<'_>)>,
    n: Option<usize>,
) -> GpuResult<()> {
    let p = gpu.pipeline("fields", entry)?;
    let u = gpu.uniform("engine: field op", params)?;
    let mut e = vec![(0, u.as_entire_binding())];
    e.extend(entries);
    let bind = gpu.bind(&p, &e)?;
    gpu.submit(entry, |pass| match n {
        Some(n) => gpu.dispatch(pass, &p, &bind, n),
        None => gpu.dispatch_one(pass, &p, &bind),
    })?;
    Ok(())
}

/// out = θ · s (parameters → voxel displacement), plus a held start field
/// `base` (voxels) where there is one.
pub fn scaled(
    gpu: &Gpu,
    theta: &[Buf; 3],
    scale: [f32; 3],
    base: Option<&[Buf; 3]>,
    dims: [usize; 3],
    out: &[Buf; 3],
) -> GpuResult<()> {
    let mut p = resize_params(dims, dims);
    p.s_to = v4(scale);
    let n = dims.iter().product();
    let mut e = field_in_out(theta, out);
    let entry = match base {
        Some(b) => {
            e.extend((0..3u32).map(|k| (9 + k, b[k as usize].binding())));
            "scaled_plus"
        }
        None => "scaled",
    };
    fields_pass(gpu, entry, &p, e, Some(n))
}

/// out = K·p − p, K the sampling matrix in the affine optimiser's state
/// buffer (floats 8..20).
pub fn affine_displacement(
    gpu: &Gpu,
    state: &wgpu::Buffer,
    dims: [usize; 3],
    out: &[Buf; 3],
) -> GpuResult<()> {
    let k = gpu.buf("engine: sampling matrix", 12)?;
    gpu.scoped("copying the affine matrix", || {
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        encoder.copy_buffer_to_buffer(state, 32, &k.buffer, 0, 48);
        gpu.queue.submit([encoder.finish()]);
    })?;
    let p = resize_params(dims, dims);
    fields_pass(
        gpu,
        "affine_displacement",
        &p,
        vec![
            (4, out[0].binding()),
            (5, out[1].binding()),
            (6, out[2].binding()),
            (8, k.binding()),
        ],
        Some(dims.iter().product()),
    )
}

/// exp(θ·s) by scaling and squaring (`register::field::exp_velocity`):
/// u₀ = θ·s / 2^K, then K times u ← u + u(x + u) (clamped borders).
pub fn exp_field(
    gpu: &Gpu,
    theta: &[Buf; 3],
    scale: [f32; 3],
    dims: [usize; 3],
    steps: usize,
) -> GpuResult<[Buf; 3]> {
    let n: usize = dims.iter().product();
    let geo = super::optim::Geo {
        dims: dims4(dims),
        info: [0; 4],
        scale: v4(scale),
        into: [[0.0; 4]; 3],
        back: [[0.0; 4]; 3],
    };
    let geo = gpu.uniform("engine: field geometry", &geo)?;
    let mp = gpu.uniform(
        "engine: squarings",
        &[steps as f32, 0.5f32.powi(steps as i32), 0.0, 0.0],
    )?;
    let init = gpu.pipeline("model", "svf_init")?;
    let square = gpu.pipeline("model", "ss_forward")?;
    let bind = |p: &wgpu::ComputePipeline, from: &[Buf; 3], to: &[Buf; 3], with_mp: bool| {
        let mut e = vec![(0, geo.as_entire_binding())];
        for k in 0..3 {
            e.push((3 + k as u32, from[k].binding()));
            e.push((12 + k as u32, to[k].binding()));
        }
        if with_mp {
            e.push((20, mp.as_entire_binding()));
        }
        gpu.bind(p, &e)
    };
    let mut cur = field_bufs(gpu, n)?;
    let b = bind(&init, theta, &cur, true)?;
    gpu.submit("integrating the velocity field", |pass| {
        gpu.dispatch(pass, &init, &b, n)
    })?;
    for _ in 0..steps {
        let next = field_bufs(gpu, n)?;
        let b = bind(&square, &cur, &next, false)?;
        gpu.submit("integrating the velocity field", |pass| {
            gpu.dispatch(pass, &square, &b, n)
        })?;
        cur = next;
    }
    Ok(cur)
}

/// The field θ (parameter units with factors `s_from`) of grid `from`
/// brought onto grid `to` (factors `s_to`): trilinear, clamped at the
/// edges, vectors mapped by `vectors`' linear part (as `fused::resize_field`).
#[allow(clippy::too_many_arguments)]
pub fn resize(
    gpu: &Gpu,
    theta: &[Buf; 3],
    from: [usize; 3],
    s_from: [f32; 3],
    to: [usize; 3],
    s_to: [f32; 3],
    to_from: &[[f64; 4]; 3],
    vectors: &[[f64; 4]; 3],
) -> GpuResult<[Buf; 3]> {
    let out = field_bufs(gpu, to.iter().product())?;
    let mut p = resize_params(from, to);
    p.m = rows(to_from);
    p.v = rows(vectors);
    p.s_from = v4(s_from);
    p.s_to = v4(s_to);
    fields_pass(
        gpu,
        "resize",
        &p,
        field_in_out(theta, &out),
        Some(to.iter().product()),
    )?;
    Ok(out)
}

/// Separable Gaussian smoothing of one channel (`gaussian_blur`'s rules:
/// axes with σ ≤ 0 or a single voxel are left alone; the kernel is
/// renormalised at the borders).
pub fn blur(gpu: &Gpu, src: &Buf, dims: [usize; 3], sigma: [f64; 3]) -> GpuResult<Buf> {
    let n: usize = dims.iter().product();
    let p = gpu.pipeline("pyramid", "blur")?;
    let mut cur: Option<Buf> = None;
    for axis in 0..3 {
        if sigma[axis] <= 0.0 || !sigma[axis].is_finite() || dims[axis] < 2 {
            continue;
        }
        let kernel = gaussian_kernel(sigma[axis]);
        if kernel.len() > 64 {
            return Err(format!(
                "a Gaussian of σ = {} voxels is wider than the GPU kernel allows (σ ≤ 10)",
                sigma[axis]
            ));
        }
        let mut params = BlurParams {
            dims: dims4(dims),
            axis: [axis as u32, (kernel.len() / 2) as u32, 0, 0],
            k: [[0.0; 4]; 16],
        };
        for (j, w) in kernel.iter().enumerate() {
            params.k[j / 4][j % 4] = *w;
        }
        let u = gpu.uniform("engine: blur", &params)?;
        let out = gpu.buf("engine: smoothed", n)?;
        let input = cur.as_ref().unwrap_or(src);
        let bind = gpu.bind(
            &p,
            &[
                (0, u.as_entire_binding()),
                (1, input.binding()),
                (2, out.binding()),
            ],
        )?;
        gpu.submit("smoothing", |pass| gpu.dispatch(pass, &p, &bind, n))?;
        cur = Some(out);
    }
    match cur {
        Some(c) => Ok(c),
        None => copy(gpu, src),
    }
}

/// A copy of `src` in a new buffer.
pub fn copy(gpu: &Gpu, src: &Buf) -> GpuResult<Buf> {
    let out = gpu.buf("engine: copy", src.len)?;
    gpu.scoped("copying on the GPU", || {
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        encoder.copy_buffer_to_buffer(&src.buffer, 0, &out.buffer, 0, (src.len * 4) as u64);
        gpu.queue.submit([encoder.finish()]);
    })?;
    Ok(out)
}

/// One channel on grid `dst` sampled from `src` (dims `src_dims`) at
/// source voxel m·p, trilinear (`resample_index_map` with `Interp::Linear`).
pub fn resample(
    gpu: &Gpu,
    src: &Buf,
    src_dims: [usize; 3],
    dst: [usize; 3],
    m: &Mat4,
    border: Border,
) -> GpuResult<Buf> {
    let n: usize = dst.iter().product();
    let clamp = match border {
        Border::Clamp => 1,
        Border::Constant(0.0) => 0,
        Border::Constant(v) => {
            return Err(format!("internal: the GPU resampler pads with 0, not {v}"));
        }
    };
    let mut s = dims4(src_dims);
    s[3] = clamp;
    let params = ResampleParams {
        m: rows(&[m[0], m[1], m[2]]),
        src: s,
        dst: dims4(dst),
    };
    let p = gpu.pipeline("pyramid", "resample")?;
    let u = gpu.uniform("engine: resample", &params)?;
    let out = gpu.buf("engine: resampled", n)?;
    let bind = gpu.bind(
        &p,
        &[
            (1, src.binding()),
            (2, out.binding()),
            (3, u.as_entire_binding()),
        ],
    )?;
    gpu.submit("resampling", |pass| gpu.dispatch(pass, &p, &bind, n))?;
    Ok(out)
}

/// One pyramid step of one channel (`pyramid::downsample2`): smooth, then
/// sample the centres of 2×2×2 blocks. Returns the coarser channel and grid.
pub fn downsample2(gpu: &Gpu, src: &Buf, grid: &Grid, sigma: f64) -> GpuResult<(Buf, Grid)> {
    let smoothed = blur(gpu, src, grid.dims, [sigma; 3])?;
    let target = half_grid(grid);
    let map = affine::inverse(&grid.affine)
        .map(|inv| affine::mul(&inv, &target.affine))
        .unwrap_or(affine::IDENTITY);
    let out = resample(gpu, &smoothed, grid.dims, target.dims, &map, Border::Clamp)?;
    Ok((out, target))
}

/// The element-wise product a · b (one channel each).
pub fn product(gpu: &Gpu, a: &Buf, b: &Buf) -> GpuResult<Buf> {
    let n = a.len.min(b.len);
    let p = gpu.pipeline("pyramid", "product")?;
    let u = gpu.uniform(
        "engine: product",
        &ResampleParams {
            m: [[0.0; 4]; 3],
            src: [0; 4],
            dst: [0, 0, 0, n as u32],
        },
    )?;
    let out = gpu.buf("engine: product", n)?;
    let bind = gpu.bind(
        &p,
        &[
            (1, a.binding()),
            (2, out.binding()),
            (3, u.as_entire_binding()),
            (4, b.binding()),
        ],
    )?;
    gpu.submit("multiplying weights", |pass| {
        gpu.dispatch(pass, &p, &bind, n)
    })?;
    Ok(out)
}

/// A multi-channel volume, one buffer per channel.
pub fn upload_channels(gpu: &Gpu, v: &Volume, what: &str) -> GpuResult<Vec<Buf>> {
    (0..v.channels)
        .map(|c| gpu.upload(what, v.channel(c)))
        .collect()
}

/// Levels 0 (the channels given) to `count − 1` of the Gaussian pyramid,
/// as `register::pyramid` builds them on the CPU.
pub fn pyramid(
    gpu: &Gpu,
    channels: Vec<Buf>,
    grid: &Grid,
    count: usize,
    sigma: f64,
) -> GpuResult<Vec<(Vec<Buf>, Grid)>> {
    let mut out = vec![(channels, grid.clone())];
    while out.len() < count.max(1) {
        let Some((last, g)) = out.last() else { break };
        if g.dims.iter().all(|&d| d <= 1) {
            break;
        }
        let mut next = Vec::new();
        let mut next_grid = g.clone();
        for c in last {
            let (b, ng) = downsample2(gpu, c, g, sigma)?;
            next.push(b);
            next_grid = ng;
        }
        out.push((next, next_grid));
    }
    Ok(out)
}

/// The inverse of the voxel displacement `u` by `iterations` fixed-point
/// steps v ← −u(x + v(x)) from v = −u (as `register::field::invert`).
pub fn invert(gpu: &Gpu, u: &[Buf; 3], dims: [usize; 3], iterations: usize) -> GpuResult<[Buf; 3]> {
    let n: usize = dims.iter().product();
    let mut v = field_bufs(gpu, n)?;
    scaled(gpu, u, [-1.0; 3], None, dims, &v)?;
    let p = resize_params(dims, dims);
    for _ in 0..iterations {
        let next = field_bufs(gpu, n)?;
        let mut e = field_in_out(u, &next);
        e.extend([
            (9, v[0].binding()),
            (10, v[1].binding()),
            (11, v[2].binding()),
        ]);
        fields_pass(gpu, "invert_step", &p, e, Some(n))?;
        v = next;
    }
    Ok(v)
}

/// The inverse-consistency weight map (methods.md §1 step 5) of the
/// forward field u = θf·s and the backward field v = θb·s on one grid:
/// e = ‖u(x) + v(x + u(x))‖ (v clamped at the edge) on the `foreground`
/// (1 or 0 per voxel; 0 elsewhere), w = 1 − (e / max e)^p, smoothed with a
/// Gaussian of σ voxels (as `stages::ic::weights_from_error`).
#[allow(clippy::too_many_arguments)]
pub fn ic_weights(
    gpu: &Gpu,
    forward: &[Buf; 3],
    backward: &[Buf; 3],
    foreground: &Buf,
    scale: [f32; 3],
    dims: [usize; 3],
    power: f64,
    sigma: f64,
) -> GpuResult<Buf> {
    let n: usize = dims.iter().product();
    let groups = super::group_count(n);
    let error = gpu.buf("engine: round-trip error", n)?;
    let partials = gpu.buf("engine: partial maxima", groups)?;
    let max = gpu.buf("engine: maximum", 1)?;
    let mut p = resize_params(dims, dims);
    p.s_from = v4(scale);
    p.s_to = v4(scale);
    p.misc = [power as f32, 0.0, 0.0, 0.0];
    // The backward field is sampled (as `a`), the forward one read (as `c`).
    fields_pass(
        gpu,
        "round_trip",
        &p,
        vec![
            (1, backward[0].binding()),
            (2, backward[1].binding()),
            (3, backward[2].binding()),
            (4, error.binding()),
            (7, partials.binding()),
            (9, forward[0].binding()),
            (10, forward[1].binding()),
            (11, forward[2].binding()),
            (12, foreground.binding()),
        ],
        Some(n),
    )?;
    fields_pass(
        gpu,
        "max_final",
        &p,
        vec![(5, max.binding()), (7, partials.binding())],
        None,
    )?;
    let weights = gpu.buf("engine: IC weights", n)?;
    fields_pass(
        gpu,
        "ic_weight",
        &p,
        vec![
            (1, error.binding()),
            (2, max.binding()),
            (4, weights.binding()),
        ],
        Some(n),
    )?;
    if sigma > 0.0 {
        blur(gpu, &weights, dims, [sigma; 3])
    } else {
        Ok(weights)
    }
}
