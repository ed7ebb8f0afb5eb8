//! The composite renderer: `shaders/composite.wgsl` with the scene's
//! textures. `GpuScene` owns the pipeline, the colour-map table, every volume
//! texture by role, and one uniform buffer + bind group per view; it draws
//! into any render pass (egui's paint callbacks, or offscreen targets).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use wgpu::util::DeviceExt;

use super::colormap::{ColorMap, LUT_WIDTH, lut_rgba8};
use super::scene::{CompositeUniform, Features};
use super::texture::GpuVolume;

/// Which image fills role A or B of a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Slot {
    Fixed,
    Moving,
    /// The moving image warped onto the fixed grid through the field.
    Warped,
}

impl Slot {
    pub const ALL: [Slot; 3] = [Slot::Fixed, Slot::Moving, Slot::Warped];

    pub fn name(self) -> &'static str {
        match self {
            Slot::Fixed => "fixed",
            Slot::Moving => "moving",
            Slot::Warped => "warped",
        }
    }

    fn index(self) -> usize {
        match self {
            Slot::Fixed => 0,
            Slot::Moving => 1,
            Slot::Warped => 2,
        }
    }
}

/// The volume textures of a scene, besides the three images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Map {
    /// Displacement in fixed voxels (RGBA32Float).
    Field,
    /// det J on the field's grid.
    Jacobian,
    IcWeights,
    Labels,
}

struct ViewBinding {
    key: (u64, Slot, Slot),
    uniform: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    features: Features,
}

pub struct GpuScene {
    shader: wgpu::ShaderModule,
    pipeline_layout: wgpu::PipelineLayout,
    target_format: wgpu::TextureFormat,
    /// One pipeline per feature combination in use, built on first use.
    pipelines: HashMap<Features, wgpu::RenderPipeline>,
    layout: wgpu::BindGroupLayout,
    lut: wgpu::TextureView,
    blank_scalar: GpuVolume,
    blank_field: GpuVolume,
    images: [Option<GpuVolume>; 3],
    maps: HashMap<Map, GpuVolume>,
    /// Bumped whenever a texture changes, so bind groups are rebuilt.
    generation: u64,
    views: HashMap<u64, ViewBinding>,
}

fn texture_entry(binding: u32, d3: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::FRAGMENT,
        ty: wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: false },
            view_dimension: if d3 {
                wgpu::TextureViewDimension::D3
            } else {
                wgpu::TextureViewDimension::D2
            },
            multisampled: false,
        },
        count: None,
    }
}

fn view_or<'a>(v: Option<&'a GpuVolume>, blank: &'a GpuVolume) -> &'a wgpu::TextureView {
    &v.unwrap_or(blank).view
}

impl GpuScene {
    pub fn new(
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        target_format: wgpu::TextureFormat,
    ) -> Self {
        let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("composite.wgsl"),
            source: wgpu::ShaderSource::Wgsl(include_str!("../../shaders/composite.wgsl").into()),
        });
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: wgpu::BufferSize::new(
                    std::mem::size_of::<CompositeUniform>() as u64
                ),
            },
            count: None,
        }];
        entries.extend((1..=6).map(|b| texture_entry(b, true)));
        entries.push(texture_entry(7, false));
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("composite"),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("composite"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let rows = ColorMap::ALL.len() as u32;
        let lut = device.create_texture_with_data(
            queue,
            &wgpu::TextureDescriptor {
                label: Some("colour maps"),
                size: wgpu::Extent3d {
                    width: LUT_WIDTH,
                    height: rows,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba8Unorm,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            },
            wgpu::util::TextureDataOrder::LayerMajor,
            &lut_rgba8(),
        );
        Self {
            shader,
            pipeline_layout,
            target_format,
            pipelines: HashMap::new(),
            layout,
            lut: lut.create_view(&wgpu::TextureViewDescriptor::default()),
            blank_scalar: GpuVolume::placeholder(device, queue, wgpu::TextureFormat::R32Float),
            blank_field: GpuVolume::placeholder(device, queue, wgpu::TextureFormat::Rgba32Float),
            images: [None, None, None],
            maps: HashMap::new(),
            generation: 0,
            views: HashMap::new(),
        }
    }

    fn pipeline(&mut self, device: &wgpu::Device, features: Features) {
        if self.pipelines.contains_key(&features) {
            return;
        }
        let constants = features.constants();
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("composite"),
            layout: Some(&self.pipeline_layout),
            vertex: wgpu::VertexState {
                module: &self.shader,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            fragment: Some(wgpu::FragmentState {
                module: &self.shader,
                entry_point: Some("fs_main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    ..Default::default()
                },
                targets: &[Some(self.target_format.into())],
            }),
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            multiview_mask: None,
            cache: None,
        });
        self.pipelines.insert(features, pipeline);
    }

    pub fn image(&self, slot: Slot) -> Option<&GpuVolume> {
        self.images[slot.index()].as_ref()
    }

    pub fn set_image(&mut self, slot: Slot, vol: Option<GpuVolume>) {
        self.images[slot.index()] = vol;
        self.generation += 1;
    }

    pub fn map(&self, map: Map) -> Option<&GpuVolume> {
        self.maps.get(&map)
    }

    pub fn set_map(&mut self, map: Map, vol: Option<GpuVolume>) {
        match vol {
            Some(v) => self.maps.insert(map, v),
            None => self.maps.remove(&map),
        };
        self.generation += 1;
    }

    /// Write the uniforms of view `view_id` (drawing `a` and `b`) and make
    /// its bind group if the textures changed since.
    pub fn prepare(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        view_id: u64,
        a: Slot,
        b: Slot,
        uniform: &CompositeUniform,
    ) {
        let features = uniform.features();
        self.pipeline(device, features);
        let key = (self.generation, a, b);
        let stale = self.views.get(&view_id).is_none_or(|v| v.key != key);
        if stale {
            let uniform_buffer = match self.views.remove(&view_id) {
                Some(v) => v.uniform,
                None => device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("composite uniform"),
                    contents: bytemuck::bytes_of(uniform),
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                }),
            };
            let blank = &self.blank_scalar;
            let views = [
                view_or(self.image(a), blank),
                view_or(self.image(b), blank),
                view_or(self.map(Map::Field), &self.blank_field),
                view_or(self.map(Map::Jacobian), blank),
                view_or(self.map(Map::IcWeights), blank),
                view_or(self.map(Map::Labels), blank),
                &self.lut,
            ];
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform_buffer.as_entire_binding(),
            }];
            entries.extend(views.iter().enumerate().map(|(i, v)| wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::TextureView(v),
            }));
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("composite"),
                layout: &self.layout,
                entries: &entries,
            });
            self.views.insert(
                view_id,
                ViewBinding {
                    key,
                    uniform: uniform_buffer,
                    bind_group,
                    features,
                },
            );
        }
        if let Some(v) = self.views.get_mut(&view_id) {
            v.features = features;
            queue.write_buffer(&v.uniform, 0, bytemuck::bytes_of(uniform));
        }
    }

    /// Draw view `view_id` (prepared this frame) into the pass's viewport.
    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>, view_id: u64) {
        if let Some(v) = self.views.get(&view_id)
            && let Some(pipeline) = self.pipelines.get(&v.features)
        {
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &v.bind_group, &[]);
            pass.draw(0..3, 0..1);
        }
    }
}
