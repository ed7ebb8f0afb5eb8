//! Field products computed on the GPU: the moving image warped onto the
//! fixed grid (`shaders/warp.wgsl`) and det J (`shaders/jacobian.wgsl`),
//! both from the displacement texture; and reading a volume texture back.
//!
//! The shaders write storage buffers (slabs of z-slices, rows padded to
//! the copy alignment) that are copied into 3-D textures: writing 3-D
//! storage textures directly is not portable (wgpu's OpenGL backend binds
//! only their first slice).

use std::sync::{Arc, Mutex};

use super::geometry::to_wgsl_mat4;
use super::texture::{GPU_WAIT_LIMIT, GpuVolume, padded_row_bytes, scoped, wait_idle};
use crate::volume::Grid;
use crate::volume::affine::{self, Mat4};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct WarpParams {
    fixed_to_moving: [[f32; 4]; 4],
    /// nx, ny, nz, first z of the slab
    fixed_dims: [u32; 4],
    /// moving nx, ny, nz, row stride (floats)
    moving_dims: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct JacobianParams {
    /// nx, ny, nz, first z of the slab
    dims: [u32; 4],
    /// row stride (floats), unused
    layout: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LevelParams {
    display_to_level: [[f32; 4]; 4],
    display_to_fixed: [[f32; 4]; 4],
    after: [[f32; 4]; 4],
    level_to_fixed: [[f32; 4]; 4],
    /// display nx, ny, nz, first z of the slab
    dims: [u32; 4],
    /// level nx, ny, nz, output row stride (texels)
    level: [u32; 4],
}

/// Where an engine field's samples are: in host memory (a CPU run), or in
/// a storage buffer on this device (a GPU run sharing it), as `[3, N]` f32
/// starting at `offset` bytes.
pub enum LevelSource<'a> {
    Host(&'a [f32]),
    Buffer {
        buffer: &'a wgpu::Buffer,
        offset: u64,
    },
    /// One buffer per component, each from its start (the engine's kernels).
    Components([&'a wgpu::Buffer; 3]),
}

/// How an engine field (displacement u in voxels of a pyramid level of
/// the fixed grid, applied before the affine A) lands on a display grid:
/// see `shaders/field_level.wgsl`.
pub struct LevelPlacement {
    pub level_dims: [u32; 3],
    pub display_dims: [u32; 3],
    display_to_level: Mat4,
    display_to_fixed: Mat4,
    after: Mat4,
    level_to_fixed: Mat4,
}

impl LevelPlacement {
    /// `affine_vox` maps fixed voxels to fixed-grid voxels of the moving
    /// image (the engine's affine stage); `None` for singular grids.
    pub fn new(level: &Grid, fixed: &Grid, display: &Grid, affine_vox: &Mat4) -> Option<Self> {
        let voxel_map = |from: &Grid, to: &Grid| {
            affine::inverse(&to.affine).map(|inv| affine::mul(&inv, &from.affine))
        };
        let mut level_to_fixed = voxel_map(level, fixed)?;
        for row in level_to_fixed.iter_mut().take(3) {
            row[3] = 0.0;
        }
        Some(Self {
            level_dims: level.dims.map(|d| d as u32),
            display_dims: display.dims.map(|d| d as u32),
            display_to_level: voxel_map(display, level)?,
            display_to_fixed: voxel_map(display, fixed)?,
            after: affine::mul(&voxel_map(fixed, display)?, affine_vox),
            level_to_fixed,
        })
    }
}

pub struct FieldCompute {
    warp: wgpu::ComputePipeline,
    jacobian: wgpu::ComputePipeline,
    level: wgpu::ComputePipeline,
    /// Largest slab buffer (bytes); default: the device's storage binding limit.
    slab_limit: Option<u64>,
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

/// How a volume is cut into slabs of z-slices that fit one storage binding,
/// rows padded for buffer → texture copies.
struct Slabs {
    dims: [u32; 3],
    row_bytes: u32,
    slices: u32,
}

impl Slabs {
    fn new(device: &wgpu::Device, dims: [u32; 3], limit: Option<u64>) -> Result<Self, String> {
        Self::with_texel(device, dims, 4, limit)
    }

    /// Slabs of `texel_bytes` per voxel (4: R32Float, 16: RGBA32Float).
    fn with_texel(
        device: &wgpu::Device,
        dims: [u32; 3],
        texel_bytes: u32,
        limit: Option<u64>,
    ) -> Result<Self, String> {
        let row_bytes = padded_row_bytes(dims[0] * texel_bytes);
        let slice = u64::from(row_bytes) * u64::from(dims[1]);
        let limits = device.limits();
        let max = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(limit.unwrap_or(u64::MAX));
        if slice > max {
            return Err(format!(
                "one slice of {}×{} voxels exceeds this GPU's storage binding of {} MiB",
                dims[0],
                dims[1],
                max >> 20
            ));
        }
        let slices = ((max / slice) as u32).clamp(1, dims[2].max(1));
        Ok(Self {
            dims,
            row_bytes,
            slices,
        })
    }

    /// Row stride in elements of `bytes` each.
    fn row_stride(&self, bytes: u32) -> u32 {
        self.row_bytes / bytes
    }

    fn buffer(&self, device: &wgpu::Device) -> wgpu::Buffer {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("compute slab"),
            size: u64::from(self.row_bytes) * u64::from(self.dims[1]) * u64::from(self.slices),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// (first z, slices) of each slab.
    fn each(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..self.dims[2])
            .step_by(self.slices as usize)
            .map(|z| (z, self.slices.min(self.dims[2] - z)))
    }
}

/// Run `pipeline` slab by slab into `out`: `params(z0)` gives each slab's
/// uniform bytes; `inputs` are the resources bound at 1, 2, ….
fn run_slabs(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    pipeline: &wgpu::ComputePipeline,
    inputs: Vec<wgpu::BindingResource<'_>>,
    slabs: &Slabs,
    out: &GpuVolume,
    params: impl Fn(u32) -> Vec<u8>,
) {
    let buffer = slabs.buffer(device);
    let uniform = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("compute params"),
        size: params(0).len() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: uniform.as_entire_binding(),
    }];
    let first_out = inputs.len() as u32 + 1;
    for (i, resource) in inputs.into_iter().enumerate() {
        entries.push(wgpu::BindGroupEntry {
            binding: i as u32 + 1,
            resource,
        });
    }
    entries.push(wgpu::BindGroupEntry {
        binding: first_out,
        resource: buffer.as_entire_binding(),
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let [w, h, _] = slabs.dims;
    for (z0, n) in slabs.each() {
        queue.write_buffer(&uniform, 0, &params(z0));
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(
                w.div_ceil(WORKGROUP),
                h.div_ceil(WORKGROUP),
                n.div_ceil(WORKGROUP),
            );
        }
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: &buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(slabs.row_bytes),
                    rows_per_image: Some(h),
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture: &out.texture,
                mip_level: 0,
                origin: wgpu::Origin3d { x: 0, y: 0, z: z0 },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: n,
            },
        );
        queue.submit([encoder.finish()]);
    }
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
            level: pipeline(
                device,
                "field_level.wgsl",
                include_str!("../../shaders/field_level.wgsl"),
            ),
            slab_limit: None,
        }
    }

    /// Cut the work into slabs of at most `bytes` (normally the device's
    /// storage binding limit decides; tests use this to run several slabs).
    pub fn with_slab_limit(mut self, bytes: u64) -> Self {
        self.slab_limit = Some(bytes);
        self
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
        let out = GpuVolume::output(
            device,
            "warped",
            dims.map(|d| d as usize),
            wgpu::TextureFormat::R32Float,
        )?;
        let slabs = Slabs::new(device, dims, self.slab_limit)?;
        let m = to_wgsl_mat4(fixed_to_moving);
        let stride = slabs.row_stride(4);
        scoped(device, "warping the moving image", || {
            run_slabs(
                device,
                queue,
                &self.warp,
                vec![
                    wgpu::BindingResource::TextureView(&moving.view),
                    wgpu::BindingResource::TextureView(&field.view),
                ],
                &slabs,
                &out,
                |z0| {
                    bytemuck::bytes_of(&WarpParams {
                        fixed_to_moving: m,
                        fixed_dims: [dims[0], dims[1], dims[2], z0],
                        moving_dims: [moving.dims[0], moving.dims[1], moving.dims[2], stride],
                    })
                    .to_vec()
                },
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
        let out = GpuVolume::output(
            device,
            "det J",
            dims.map(|d| d as usize),
            wgpu::TextureFormat::R32Float,
        )?;
        let slabs = Slabs::new(device, dims, self.slab_limit)?;
        let stride = slabs.row_stride(4);
        scoped(device, "computing det J", || {
            run_slabs(
                device,
                queue,
                &self.jacobian,
                vec![wgpu::BindingResource::TextureView(&field.view)],
                &slabs,
                &out,
                |z0| {
                    bytemuck::bytes_of(&JacobianParams {
                        dims: [dims[0], dims[1], dims[2], z0],
                        layout: [stride, 0, 0, 0],
                    })
                    .to_vec()
                },
            )
        })?;
        Ok(out)
    }
}

impl FieldCompute {
    /// An engine field on the display grid (RGBA32Float displacement in
    /// display voxels, affine included), computed on the GPU. A buffer
    /// source is copied GPU-side into this pass's input (each component at
    /// an aligned offset); a host source is uploaded.
    pub fn field_from_level(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        source: LevelSource<'_>,
        place: &LevelPlacement,
    ) -> Result<GpuVolume, String> {
        let n: u64 = place.level_dims.iter().map(|&d| u64::from(d)).product();
        let limits = device.limits();
        let align = u64::from(limits.min_storage_buffer_offset_alignment).max(4);
        let component = n * 4;
        let region = component.div_ceil(align) * align;
        if component > limits.max_storage_buffer_binding_size || 3 * region > limits.max_buffer_size
        {
            return Err(format!(
                "the engine's field ({} MiB per component) exceeds this GPU's storage binding",
                component >> 20
            ));
        }
        if let LevelSource::Host(data) = &source
            && data.len() as u64 != 3 * n
        {
            return Err(format!(
                "the engine's field has {} samples for a {:?} level",
                data.len(),
                place.level_dims
            ));
        }
        let out = GpuVolume::output(
            device,
            "engine field",
            place.display_dims.map(|d| d as usize),
            wgpu::TextureFormat::Rgba32Float,
        )?;
        let slabs = Slabs::with_texel(device, place.display_dims, 16, self.slab_limit)?;
        let stride = slabs.row_stride(16);
        let input = scoped(device, "bringing the engine's field to the viewer", || {
            let input = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("engine field"),
                size: 3 * region,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            match source {
                LevelSource::Host(data) => {
                    for c in 0..3usize {
                        let part = &data[c * n as usize..(c + 1) * n as usize];
                        queue.write_buffer(&input, c as u64 * region, bytemuck::cast_slice(part));
                    }
                }
                LevelSource::Buffer { buffer, offset } => {
                    let mut encoder =
                        device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
                    for c in 0..3u64 {
                        encoder.copy_buffer_to_buffer(
                            buffer,
                            offset + c * component,
                            &input,
                            c * region,
                            component,
                        );
                    }
                    queue.submit([encoder.finish()]);
                }
                LevelSource::Components(buffers) => {
                    let mut encoder =
                        device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
                    for (c, b) in buffers.iter().enumerate() {
                        encoder.copy_buffer_to_buffer(b, 0, &input, c as u64 * region, component);
                    }
                    queue.submit([encoder.finish()]);
                }
            }
            input
        })?;
        let m = |x: &Mat4| to_wgsl_mat4(x);
        let binding = |c: u64| {
            wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &input,
                offset: c * region,
                size: wgpu::BufferSize::new(component),
            })
        };
        let [nx, ny, nz] = place.display_dims;
        scoped(device, "placing the engine's field", || {
            run_slabs(
                device,
                queue,
                &self.level,
                vec![binding(0), binding(1), binding(2)],
                &slabs,
                &out,
                |z0| {
                    bytemuck::bytes_of(&LevelParams {
                        display_to_level: m(&place.display_to_level),
                        display_to_fixed: m(&place.display_to_fixed),
                        after: m(&place.after),
                        level_to_fixed: m(&place.level_to_fixed),
                        dims: [nx, ny, nz, z0],
                        level: [
                            place.level_dims[0],
                            place.level_dims[1],
                            place.level_dims[2],
                            stride,
                        ],
                    })
                    .to_vec()
                },
            )
        })?;
        Ok(out)
    }
}

type Slot = Arc<Mutex<Option<Result<(), String>>>>;

/// A volume texture on its way back to the CPU (R32Float, or RGBA32Float
/// as 4 values per voxel).
pub struct Readback {
    buffer: wgpu::Buffer,
    dims: [u32; 3],
    padded_row: u32,
    /// Values per voxel (1 or 4).
    components: u32,
    state: Slot,
}

impl Readback {
    /// Copy `vol` into a mappable buffer and ask for it to be mapped.
    pub fn start(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        vol: &GpuVolume,
    ) -> Result<Self, String> {
        let components = match vol.format {
            wgpu::TextureFormat::R32Float => 1,
            wgpu::TextureFormat::Rgba32Float => 4,
            other => return Err(format!("{other:?} volumes are not read back")),
        };
        let [w, h, d] = vol.dims;
        let padded_row = padded_row_bytes(w * 4 * components);
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
            components,
            state,
        })
    }

    fn finish(&self) -> Result<Vec<f32>, String> {
        let [w, h, d] = self.dims.map(|v| v as usize);
        let w = w * self.components as usize;
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
        wait_idle(device, GPU_WAIT_LIMIT)?;
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
