//! Field products computed on the GPU: the moving image warped onto the
//! fixed grid (`shaders/warp.wgsl`) and det J (`shaders/jacobian.wgsl`),
//! both from the displacement texture; and reading a volume texture back.

use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::geometry::to_wgsl_mat4;
use super::texture::{GpuVolume, scoped};
use crate::volume::affine::Mat4;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct WarpParams {
    fixed_to_moving: [[f32; 4]; 4],
    fixed_dims: [u32; 4],
    moving_dims: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct JacobianParams {
    dims: [u32; 4],
}

pub struct FieldCompute {
    warp: wgpu::ComputePipeline,
    jacobian: wgpu::ComputePipeline,
}

fn pipeline(device: &wgpu::Device, label: &str, source: &str) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

const WORKGROUP: u32 = 4;

fn dispatch(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    pipeline: &wgpu::ComputePipeline,
    entries: &[wgpu::BindGroupEntry],
    dims: [u32; 3],
) {
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries,
    });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(
            dims[0].div_ceil(WORKGROUP),
            dims[1].div_ceil(WORKGROUP),
            dims[2].div_ceil(WORKGROUP),
        );
    }
    queue.submit([encoder.finish()]);
}

fn uniform(device: &wgpu::Device, bytes: &[u8]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("compute params"),
        contents: bytes,
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

impl FieldCompute {
    pub fn new(device: &wgpu::Device) -> Self {
        Self {
            warp: pipeline(device, "warp.wgsl", include_str!("../../shaders/warp.wgsl")),
            jacobian: pipeline(
                device,
                "jacobian.wgsl",
                include_str!("../../shaders/jacobian.wgsl"),
            ),
        }
    }

    /// The moving image warped onto the field's (fixed) grid; `fixed_to_moving`
    /// maps fixed voxel indices to moving voxel indices (A_m⁻¹·A_f).
    pub fn warp(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        moving: &GpuVolume,
        field: &GpuVolume,
        fixed_to_moving: &Mat4,
    ) -> Result<GpuVolume, String> {
        let dims = field.dims;
        let out = GpuVolume::storage(device, "warped", dims.map(|d| d as usize))?;
        let params = WarpParams {
            fixed_to_moving: to_wgsl_mat4(fixed_to_moving),
            fixed_dims: [dims[0], dims[1], dims[2], 0],
            moving_dims: [moving.dims[0], moving.dims[1], moving.dims[2], 0],
        };
        let buffer = uniform(device, bytemuck::bytes_of(&params));
        scoped(device, "warping the moving image", || {
            dispatch(
                device,
                queue,
                &self.warp,
                &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: buffer.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::TextureView(&moving.view),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: wgpu::BindingResource::TextureView(&field.view),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: wgpu::BindingResource::TextureView(&out.view),
                    },
                ],
                dims,
            )
        })?;
        Ok(out)
    }

    /// det(I + ∂u/∂p) of the field, on its grid.
    pub fn jacobian(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        field: &GpuVolume,
    ) -> Result<GpuVolume, String> {
        let dims = field.dims;
        let out = GpuVolume::storage(device, "det J", dims.map(|d| d as usize))?;
        let params = JacobianParams {
            dims: [dims[0], dims[1], dims[2], 0],
        };
        let buffer = uniform(device, bytemuck::bytes_of(&params));
        scoped(device, "computing det J", || {
            dispatch(
                device,
                queue,
                &self.jacobian,
                &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: buffer.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: wgpu::BindingResource::TextureView(&field.view),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: wgpu::BindingResource::TextureView(&out.view),
                    },
                ],
                dims,
            )
        })?;
        Ok(out)
    }
}

type Slot = Arc<Mutex<Option<Result<(), String>>>>;

/// A volume texture on its way back to the CPU (R32Float only).
pub struct Readback {
    buffer: wgpu::Buffer,
    dims: [u32; 3],
    padded_row: u32,
    state: Slot,
}

impl Readback {
    /// Copy `vol` into a mappable buffer and ask for it to be mapped.
    pub fn start(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        vol: &GpuVolume,
    ) -> Result<Self, String> {
        if vol.format != wgpu::TextureFormat::R32Float {
            return Err("only R32Float volumes are read back".into());
        }
        let [w, h, d] = vol.dims;
        let padded_row = (w * 4).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT)
            * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
        let size = u64::from(padded_row) * u64::from(h) * u64::from(d);
        let buffer = scoped(device, "reading a volume back", || {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
                mapped_at_creation: false,
            });
            let mut encoder =
                device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            encoder.copy_texture_to_buffer(
                vol.texture.as_image_copy(),
                wgpu::TexelCopyBufferInfo {
                    buffer: &buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(padded_row),
                        rows_per_image: Some(h),
                    },
                },
                wgpu::Extent3d {
                    width: w,
                    height: h,
                    depth_or_array_layers: d,
                },
            );
            queue.submit([encoder.finish()]);
            buffer
        })?;
        let state: Slot = Arc::new(Mutex::new(None));
        let s = state.clone();
        buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            if let Ok(mut g) = s.lock() {
                *g = Some(r.map_err(|e| format!("reading a volume back: {e}")));
            }
        });
        Ok(Self {
            buffer,
            dims: vol.dims,
            padded_row,
            state,
        })
    }

    fn finish(&self) -> Result<Vec<f32>, String> {
        let [w, h, d] = self.dims.map(|v| v as usize);
        let mut out = Vec::with_capacity(w * h * d);
        {
            let view = self
                .buffer
                .slice(..)
                .get_mapped_range()
                .map_err(|e| format!("reading a volume back: {e}"))?;
            for row in view.chunks_exact(self.padded_row as usize) {
                out.extend(
                    row[..w * 4]
                        .chunks_exact(4)
                        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
                );
            }
        }
        self.buffer.unmap();
        Ok(out)
    }

    /// The samples if the copy has finished (never blocks).
    pub fn try_take(&self, device: &wgpu::Device) -> Option<Result<Vec<f32>, String>> {
        let _ = device.poll(wgpu::PollType::Poll);
        let state = self.state.lock().ok()?.take()?;
        Some(state.and_then(|()| self.finish()))
    }

    /// Wait for the samples.
    pub fn wait(self, device: &wgpu::Device) -> Result<Vec<f32>, String> {
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("waiting for the GPU: {e}"))?;
        let state = self
            .state
            .lock()
            .map_err(|_| "readback state poisoned".to_string())?
            .take();
        match state {
            Some(r) => r.and_then(|()| self.finish()),
            None => Err("the GPU did not return the volume".into()),
        }
    }
}
