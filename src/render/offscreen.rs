//! Drawing views into an offscreen RGBA8 image: what the render tests
//! compare with the maths and what `warpscope bench --viewer` times.

use super::composite::{GpuScene, Slot};
use super::scene::CompositeUniform;
use super::texture::{GPU_WAIT_LIMIT, padded_row_bytes, wait_idle};

/// One view to draw: its id (for its uniform buffer), images A and B, its
/// uniforms, and its viewport in target pixels (x, y, width, height).
pub struct ViewDraw {
    pub id: u64,
    pub a: Slot,
    pub b: Slot,
    pub uniform: CompositeUniform,
    pub viewport: [u32; 4],
}

/// An offscreen colour target and the buffer it is read back through.
pub struct Target {
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    readback: wgpu::Buffer,
    pub size: [u32; 2],
    padded_row: u32,
}

pub const FORMAT: wgpu::TextureFormat = wgpu::TextureFormat::Rgba8Unorm;

impl Target {
    pub fn new(device: &wgpu::Device, size: [u32; 2]) -> Self {
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("offscreen"),
            size: wgpu::Extent3d {
                width: size[0],
                height: size[1],
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: FORMAT,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let padded_row = padded_row_bytes(size[0] * 4);
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("offscreen readback"),
            size: u64::from(padded_row) * u64::from(size[1]),
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        Self {
            view: texture.create_view(&wgpu::TextureViewDescriptor::default()),
            texture,
            readback,
            size,
            padded_row,
        }
    }

    /// Draw `views` (cleared to `clear` first) and submit; returns once submitted.
    pub fn draw(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        scene: &mut GpuScene,
        views: &[ViewDraw],
        clear: wgpu::Color,
    ) {
        for v in views {
            scene.prepare(device, queue, v.id, v.a, v.b, &v.uniform);
        }
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("offscreen views"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &self.view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(clear),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                ..Default::default()
            });
            for v in views {
                let [x, y, w, h] = v.viewport;
                pass.set_viewport(x as f32, y as f32, w as f32, h as f32, 0.0, 1.0);
                scene.draw(&mut pass, v.id);
            }
        }
        queue.submit([encoder.finish()]);
    }

    /// Copy the target to the CPU: RGBA8 rows, top to bottom, no padding.
    pub fn read(&self, device: &wgpu::Device, queue: &wgpu::Queue) -> Result<Vec<u8>, String> {
        let [w, h] = self.size;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        encoder.copy_texture_to_buffer(
            self.texture.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &self.readback,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(self.padded_row),
                    rows_per_image: Some(h),
                },
            },
            wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
        );
        queue.submit([encoder.finish()]);
        let slice = self.readback.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        wait_idle(device, GPU_WAIT_LIMIT)?;
        rx.recv()
            .map_err(|_| "the GPU dropped the readback".to_string())?
            .map_err(|e| format!("mapping the readback buffer: {e}"))?;
        let mut out = Vec::with_capacity((w * h * 4) as usize);
        {
            let data = slice
                .get_mapped_range()
                .map_err(|e| format!("mapping the readback buffer: {e}"))?;
            for row in data.chunks_exact(self.padded_row as usize) {
                out.extend_from_slice(&row[..(w * 4) as usize]);
            }
        }
        self.readback.unmap();
        Ok(out)
    }

    /// Block until the GPU has finished all submitted work.
    pub fn wait(device: &wgpu::Device) -> Result<(), String> {
        wait_idle(device, GPU_WAIT_LIMIT)
    }
}
