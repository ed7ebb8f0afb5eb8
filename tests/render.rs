//! The WGSL slice shader, drawn offscreen on a real wgpu device (lavapipe on
//! machines without a GPU), compared pixel by pixel with the same reslicing
//! done on the CPU.

mod common;

use common::noise;
use warpscope::render::{Convention, Plane, SlicePipeline, SliceUniform, SliceView, VolumeTexture};
use warpscope::volume::affine::{self, Mat4};
use warpscope::volume::resample::{Border, Sampler};
use warpscope::volume::{Grid, Volume};

const W: u32 = 64;
const H: u32 = 48;

fn device() -> warpscope::gpu::Headless {
    match warpscope::gpu::headless() {
        Ok(d) => d,
        Err(e) => {
            panic!("{e}\n(the render tests need a Vulkan driver; CI installs mesa-vulkan-drivers)")
        }
    }
}

/// Render one view into an RGBA8 image and read it back.
fn render(gpu: &warpscope::gpu::Headless, vol: &Volume, uniform: &SliceUniform) -> Vec<u8> {
    let format = wgpu::TextureFormat::Rgba8Unorm;
    let pipeline = SlicePipeline::new(&gpu.device, format);
    let texture = VolumeTexture::upload(&gpu.device, &gpu.queue, vol, 0).expect("upload");
    let binding = warpscope::render::SliceBinding::new(&gpu.device, &pipeline, &texture);
    binding.write(&gpu.queue, uniform);
    let target = gpu.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("target"),
        size: wgpu::Extent3d {
            width: W,
            height: H,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = target.create_view(&wgpu::TextureViewDescriptor::default());
    let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: u64::from(W * 4 * H),
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    {
        let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("slice test"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations {
                    load: wgpu::LoadOp::Clear(wgpu::Color::RED),
                    store: wgpu::StoreOp::Store,
                },
            })],
            ..Default::default()
        });
        pipeline.draw(&mut pass, &binding);
    }
    encoder.copy_texture_to_buffer(
        wgpu::TexelCopyTextureInfo {
            texture: &target,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::TexelCopyBufferInfo {
            buffer: &readback,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(W * 4),
                rows_per_image: Some(H),
            },
        },
        wgpu::Extent3d {
            width: W,
            height: H,
            depth_or_array_layers: 1,
        },
    );
    gpu.queue.submit([encoder.finish()]);
    let slice = readback.slice(..);
    slice.map_async(wgpu::MapMode::Read, |r| r.expect("map readback buffer"));
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .expect("poll");
    let data = slice.get_mapped_range().expect("mapped range").to_vec();
    readback.unmap();
    data
}

/// What the shader should produce for pixel (x, y): grey level in 0..=255,
/// or `None` for background.
fn expected(vol: &Volume, view: &SliceView, window: (f32, f32), x: u32, y: u32) -> Option<f32> {
    let size = [f64::from(W), f64::from(H)];
    let uv = [
        (f64::from(x) + 0.5) / size[0],
        (f64::from(y) + 0.5) / size[1],
    ];
    let p = vol
        .grid
        .world_to_voxel(view.world_at(uv, size))
        .expect("invertible");
    let d = vol.grid.dims;
    if (0..3).any(|a| p[a] < -0.5 || p[a] > d[a] as f64 - 0.5) {
        return None;
    }
    let v = Sampler {
        dims: d,
        border: Border::Clamp,
    }
    .linear(vol.channel(0), p);
    Some(((v - window.0) / (window.1 - window.0)).clamp(0.0, 1.0) * 255.0)
}

fn lps_oblique() -> Mat4 {
    let (c, s) = (0.35f64.cos(), 0.35f64.sin());
    [
        [-1.6 * c, 1.3 * s, 0.0, 20.0],
        [-1.6 * s, -1.3 * c, 0.0, 15.0],
        [0.0, 0.0, 2.2, -9.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

#[test]
fn gpu_slices_match_cpu_reslicing_in_every_plane_and_convention() {
    let gpu = device();
    let dims = [19, 14, 11];
    let vol = Volume::from_data(
        Grid::new(dims, lps_oblique()),
        1,
        noise(dims.iter().product(), 21),
    )
    .expect("sizes");
    let window = (0.1, 0.9);
    let mut compared = 0;
    for plane in Plane::ALL {
        for convention in [Convention::Radiological, Convention::Neurological] {
            let mut view = SliceView::centred(plane, &vol.grid, convention);
            view.position_mm += 0.37; // between voxel centres: exercises interpolation along the normal
            view.zoom = 1.3;
            let uniform = SliceUniform::new(&view, &vol.grid, [f64::from(W), f64::from(H)], window)
                .expect("uniform");
            let pixels = render(&gpu, &vol, &uniform);
            let (mut bad, mut inside) = (0, 0);
            for y in 0..H {
                for x in 0..W {
                    let i = ((y * W + x) * 4) as usize;
                    let px = &pixels[i..i + 4];
                    match expected(&vol, &view, window, x, y) {
                        Some(g) => {
                            inside += 1;
                            let ok = px[0] == px[1]
                                && px[1] == px[2]
                                && (f32::from(px[0]) - g).abs() <= 1.5;
                            if !ok {
                                bad += 1;
                            }
                        }
                        None => {
                            // Background is black and opaque (the red clear colour never shows).
                            if px != [0, 0, 0, 255] {
                                bad += 1;
                            }
                        }
                    }
                }
            }
            // Pixels whose centre falls within float rounding of the volume edge may differ.
            assert!(
                bad <= (W + H) as usize / 4,
                "{plane:?} {convention:?}: {bad} pixels differ"
            );
            assert!(
                inside > (W * H / 4) as usize,
                "{plane:?}: only {inside} pixels inside the volume"
            );
            compared += inside;
        }
    }
    assert!(compared > 0);
}

#[test]
fn radiological_axial_view_shows_the_patients_right_on_the_left() {
    // A volume bright on the patient's right half (x > 0 in RAS), stored LPS.
    let gpu = device();
    let a: Mat4 = [
        [-1.0, 0.0, 0.0, 15.5],
        [0.0, -1.0, 0.0, 7.5],
        [0.0, 0.0, 1.0, -2.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let grid = Grid::new([32, 16, 4], a);
    let mut vol = Volume::filled(grid.clone(), 1, 0.0);
    for z in 0..4 {
        for y in 0..16 {
            for x in 0..32 {
                let world_x = affine::apply(&grid.affine, [x as f64, y as f64, z as f64])[0];
                if world_x > 0.0 {
                    let i = vol.index(x, y, z);
                    vol.data[i] = 1.0;
                }
            }
        }
    }
    for (convention, bright_left) in [
        (Convention::Radiological, true),
        (Convention::Neurological, false),
    ] {
        let view = SliceView::centred(Plane::Axial, &grid, convention);
        let uniform = SliceUniform::new(&view, &grid, [f64::from(W), f64::from(H)], (0.0, 1.0))
            .expect("uniform");
        let pixels = render(&gpu, &vol, &uniform);
        let row = H / 2;
        let at = |x: u32| pixels[((row * W + x) * 4) as usize];
        assert_eq!(at(4) > 128, bright_left, "{convention:?}: left edge");
        assert_eq!(at(W - 5) > 128, !bright_left, "{convention:?}: right edge");
    }
}
