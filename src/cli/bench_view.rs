//! `warpscope bench --viewer`: how fast the viewer draws. A synthetic
//! SIZE³ pair and a smooth field are uploaded, det J and the warped image
//! computed on the GPU, and the three views drawn offscreen in the app's
//! 2×2 layout, each frame waited for until the GPU has finished it.

use std::time::Instant;

use serde_json::json;

use super::CliResult;
use super::bench::BenchArgs;
use crate::render::offscreen::{Target, ViewDraw};
use crate::render::{
    ColorMap, Composite, CompositeUniform, FieldCompute, GpuScene, GpuVolume, ImageStyle, Map,
    Mode, Overlays, Plane, Present, Slot,
};
use crate::volume::{Grid, affine};

/// A head-like test object: a ball of smooth texture.
fn phantom(n: usize) -> Vec<f32> {
    let c = 0.5 * (n as f32 - 1.0);
    let r2 = (0.45 * n as f32).powi(2);
    let mut v = vec![0f32; n * n * n];
    let tau = std::f32::consts::TAU;
    crate::parallel::for_each_row(&mut v, n, |row, line| {
        let (y, z) = ((row % n) as f32, (row / n) as f32);
        for (x, out) in line.iter_mut().enumerate() {
            let x = x as f32;
            let d2 = (x - c).powi(2) + (y - c).powi(2) + (z - c).powi(2);
            if d2 < r2 {
                *out = 0.5
                    + 0.25 * (tau * x / 37.0).sin() * (tau * y / 29.0).sin()
                    + 0.25 * (tau * z / 23.0).cos();
            }
        }
    });
    v
}

/// A smooth displacement of up to `amp` voxels (components x, y, z, planar).
fn smooth_field(n: usize, amp: f32) -> Vec<f32> {
    let m = n * n * n;
    let mut u = vec![0f32; 3 * m];
    let tau = std::f32::consts::TAU;
    let k = tau / n as f32;
    for i in 0..m {
        let (x, y, z) = ((i % n) as f32, ((i / n) % n) as f32, (i / (n * n)) as f32);
        u[i] = amp * (k * y).sin();
        u[m + i] = amp * (k * z).sin();
        u[2 * m + i] = amp * (k * x).sin();
    }
    u
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn run(a: &BenchArgs) -> CliResult {
    let n = a.size.max(8);
    let (width, height) = (
        a.window[0].max(64),
        a.window.get(1).copied().unwrap_or(1000).max(64),
    );
    let gpu = crate::gpu::headless()?;
    let (device, queue) = (&gpu.device, &gpu.queue);
    println!(
        "viewer benchmark: {n}³ pair, {width}×{height} target, {} ({:?})",
        gpu.info.name, gpu.info.backend
    );
    let grid = Grid::new([n; 3], affine::diagonal([1.0; 3]));

    let t = Instant::now();
    let fixed = phantom(n);
    let field = smooth_field(n, 3.0);
    let synth_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let fixed_tex = GpuVolume::scalar(device, queue, "fixed", grid.dims, &fixed)?;
    let moving_tex = GpuVolume::scalar(device, queue, "moving", grid.dims, &fixed)?;
    let field_tex = GpuVolume::field(device, queue, "field", grid.dims, &field)?;
    Target::wait(device)?;
    let upload_s = t.elapsed().as_secs_f64();

    let compute = FieldCompute::new(device);
    let t = Instant::now();
    let jac = compute.jacobian(device, queue, &field_tex)?;
    Target::wait(device)?;
    let jac_ms = 1e3 * t.elapsed().as_secs_f64();
    let t = Instant::now();
    let warped = compute.warp(device, queue, &moving_tex, &field_tex, &affine::IDENTITY)?;
    Target::wait(device)?;
    let warp_ms = 1e3 * t.elapsed().as_secs_f64();

    let mut scene = GpuScene::new(device, queue, crate::render::offscreen::FORMAT);
    scene.set_image(Slot::Fixed, Some(fixed_tex));
    scene.set_image(Slot::Moving, Some(moving_tex));
    scene.set_image(Slot::Warped, Some(warped));
    scene.set_map(Map::Field, Some(field_tex));
    scene.set_map(Map::Jacobian, Some(jac));
    let target = Target::new(device, [width, height]);

    let style = ImageStyle {
        window: (0.0, 1.0),
        colormap: ColorMap::Grey,
    };
    let present = Present {
        a: Some((&grid, style)),
        b: Some((&grid, style)),
        field: Some(&grid),
        jacobian: true,
        ..Default::default()
    };
    // The app's layout: axial, coronal, sagittal in three tiles of a 2×2 grid.
    let (tw, th) = (width / 2, height / 2);
    let tiles = [(0, 0), (tw, 0), (0, th)];
    let nav = crate::app::navigation::Navigation::framing(&grid);

    let mut configs: Vec<(&str, Composite, Overlays)> = Vec::new();
    configs.push(("single image", Composite::default(), Overlays::default()));
    let checker = Composite {
        mode: Mode::Checkerboard,
        ..Default::default()
    };
    configs.push((
        "checkerboard, no overlays",
        checker.clone(),
        Overlays::default(),
    ));
    let mut grid_jac = Overlays::default();
    grid_jac.grid.on = true;
    grid_jac.jacobian.on = true;
    configs.push((
        "checkerboard + grid + det J",
        checker.clone(),
        grid_jac.clone(),
    ));
    let mut all = grid_jac.clone();
    all.vectors.on = true;
    configs.push(("+ motion vectors", checker, all));

    let mut rows = Vec::new();
    println!(
        "synthesis {synth_s:.2} s; upload {upload_s:.2} s; det J {jac_ms:.1} ms; warp {warp_ms:.1} ms"
    );
    println!(
        "{:<32} {:>12} {:>10} {:>16}",
        "configuration", "frame (ms)", "fps", "pipelined fps"
    );
    for (name, composite, overlays) in &configs {
        let draws: Vec<ViewDraw> = Plane::ALL
            .iter()
            .zip(tiles)
            .filter_map(|(&plane, (x, y))| {
                let view = nav.view(plane);
                let u = CompositeUniform::new(
                    &view,
                    [f64::from(tw), f64::from(th)],
                    &present,
                    composite,
                    overlays,
                )?;
                Some(ViewDraw {
                    id: plane.index() as u64,
                    a: Slot::Fixed,
                    b: Slot::Warped,
                    uniform: u,
                    viewport: [x, y, tw, th],
                })
            })
            .collect();
        for _ in 0..3 {
            target.draw(device, queue, &mut scene, &draws, wgpu::Color::BLACK);
            Target::wait(device)?;
        }
        let mut times = Vec::with_capacity(a.frames);
        for _ in 0..a.frames.max(1) {
            let t = Instant::now();
            target.draw(device, queue, &mut scene, &draws, wgpu::Color::BLACK);
            Target::wait(device)?;
            times.push(1e3 * t.elapsed().as_secs_f64());
        }
        let frame_ms = median(&mut times);
        let t = Instant::now();
        for _ in 0..a.frames.max(1) {
            target.draw(device, queue, &mut scene, &draws, wgpu::Color::BLACK);
        }
        Target::wait(device)?;
        let pipelined = a.frames.max(1) as f64 / t.elapsed().as_secs_f64();
        println!(
            "{name:<32} {frame_ms:>12.2} {:>10.1} {pipelined:>16.1}",
            1e3 / frame_ms
        );
        rows.push(json!({
            "configuration": name,
            "median_frame_ms": frame_ms,
            "fps": 1e3 / frame_ms,
            "pipelined_fps": pipelined,
        }));
    }
    if let Some(out) = &a.out {
        let report = json!({
            "adapter": gpu.info.name,
            "backend": format!("{:?}", gpu.info.backend),
            "size": n,
            "target": [width, height],
            "upload_s": upload_s,
            "jacobian_ms": jac_ms,
            "warp_ms": warp_ms,
            "frames": a.frames,
            "rows": rows,
        });
        let text = serde_json::to_string_pretty(&report)?;
        crate::results::write_text(out, &text)?;
    }
    Ok(())
}
