//! GPU slice renderer: a volume channel as an R32Float 3-D texture, drawn
//! through `shaders/slice.wgsl` into any render pass (egui's, or an
//! offscreen one in tests).

use bytemuck::Zeroable;
use wgpu::util::DeviceExt;

use super::geometry::{SliceView, to_wgsl_mat4};
use crate::volume::Volume;

/// Uniform block of `slice.wgsl` (`Params`); 112 bytes, 16-byte aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SliceUniform {
    pub uv_to_vox: [[f32; 4]; 4],
    pub dims: [f32; 4],
    /// low, high, trilinear (1) or nearest (0), unused
    pub window: [f32; 4],
    pub background: [f32; 4],
}

impl SliceUniform {
    /// Uniforms for drawing `view` of a volume on `grid` into a viewport of `size_px`.
    pub fn new(
        view: &SliceView,
        grid: &crate::volume::Grid,
        size_px: [f64; 2],
        window: (f32, f32),
    ) -> Option<Self> {
        let m = view.uv_to_voxel(grid, size_px)?;
        Some(Self {
            uv_to_vox: to_wgsl_mat4(&m),
            dims: [
                grid.dims[0] as f32,
                grid.dims[1] as f32,
                grid.dims[2] as f32,
                0.0,
            ],
            window: [window.0, window.1, 1.0, 0.0],
            background: [0.0, 0.0, 0.0, 1.0],
        })
    }
}

/// The render pipeline, created once per device and target format.
pub struct SlicePipeline {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
}

impl SlicePipeline {
    pub fn new(device: &wgpu::Device, target_format: wgpu::TextureFormat) -> Self {
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("slice.wgsl"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/slice.wgsl").into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("slice"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: wgpu::BufferSize::new(
                            std::mem::size_of::<SliceUniform>() as u64,
                        ),
                    },
                    count: None,
                },
                wgpu::BindGroupLayoutEntry {
                    binding: 1,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Texture {
                        sample_type: wgpu::TextureSampleType::Float { filterable: false },
                        view_dimension: wgpu::TextureViewDimension::D3,
                        multisampled: false,
                    },
                    count: None,
                },
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("slice"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("slice"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &shader,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            fragment: Some(wgpu::FragmentState {
                module: &shader,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(target_format.into())],
            }),
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            multiview_mask: None,
            cache: None,
        });
        Self { pipeline, layout }
    }

    /// Draw one slice; the caller has set the viewport to the view's rectangle.
    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>, binding: &SliceBinding) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &binding.bind_group, &[]);
        pass.draw(0..3, 0..1);
    }
}

/// One channel of a volume on the GPU.
pub struct VolumeTexture {
    view: wgpu::TextureView,
    pub dims: [u32; 3],
}

impl VolumeTexture {
    /// Upload channel `channel` of `vol`. Errors (rather than panicking inside
    /// wgpu) when the volume exceeds the device's 3-D texture size.
    pub fn upload(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        vol: &Volume,
        channel: usize,
    ) -> Result<Self, String> {
        let max = device.limits().max_texture_dimension_3d as usize;
        if vol.grid.dims.iter().any(|&d| d > max || d == 0) {
            return Err(format!(
                "volume {:?} exceeds this GPU's 3-D texture limit of {max} voxels per axis",
                vol.grid.dims
            ));
        }
        if channel >= vol.channels {
            return Err(format!(
                "channel {channel} requested of a {}-channel volume",
                vol.channels
            ));
        }
        let dims = vol.grid.dims.map(|d| d as u32);
        let texture = device.create_texture_with_data(
            queue,
            &wgpu::TextureDescriptor {
                label: Some("volume"),
                size: wgpu::Extent3d {
                    width: dims[0],
                    height: dims[1],
                    depth_or_array_layers: dims[2],
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D3,
                format: wgpu::TextureFormat::R32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            },
            wgpu::util::TextureDataOrder::LayerMajor,
            bytemuck::cast_slice(vol.channel(channel)),
        );
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        Ok(Self { view, dims })
    }
}

/// Per-view uniforms and bind group (one per view × volume).
pub struct SliceBinding {
    uniform: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

impl SliceBinding {
    pub fn new(device: &wgpu::Device, pipeline: &SlicePipeline, volume: &VolumeTexture) -> Self {
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("slice uniform"),
            contents: bytemuck::bytes_of(&SliceUniform::zeroed()),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("slice"),
            layout: &pipeline.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: uniform.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&volume.view),
                },
            ],
        });
        Self {
            uniform,
            bind_group,
        }
    }

    pub fn write(&self, queue: &wgpu::Queue, params: &SliceUniform) {
        queue.write_buffer(&self.uniform, 0, bytemuck::bytes_of(params));
    }
}
