//! The wgpu device that the viewer and the registration engine share. The
//! device is created with the adapter's full features and limits: egui's
//! defaults (no features, default limits) are too small for compute kernels
//! such as burn's (see docs/stack-notes in the shared docs).

pub mod shared;

use std::fmt;

pub use shared::{TensorBuffer, engine_on};

/// Device descriptor asking for everything the adapter offers, except
/// mappable primary buffers (slow on discrete GPUs, and not needed).
pub fn full_device_descriptor(adapter: &wgpu::Adapter) -> wgpu::DeviceDescriptor<'static> {
    wgpu::DeviceDescriptor {
        label: Some("warpscope"),
        required_features: adapter
            .features()
            .difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS),
        required_limits: adapter.limits(),
        memory_hints: wgpu::MemoryHints::MemoryUsage,
        ..Default::default()
    }
}

/// No usable GPU (or software Vulkan driver) was found, or it refused a device.
#[derive(Debug)]
pub struct GpuError(pub String);

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for GpuError {}

/// A device without a window, for the command line and tests. CPU adapters
/// (lavapipe, llvmpipe) are accepted: they are how CI machines render.
pub struct Headless {
    pub instance: wgpu::Instance,
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
}

pub fn headless() -> Result<Headless, GpuError> {
    headless_with(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// A headless device on one set of backends only (tests check the OpenGL
/// fallback this way: it is what wgpu uses where no Vulkan driver exists).
pub fn headless_on(backends: wgpu::Backends) -> Result<Headless, GpuError> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    headless_with(desc)
}

fn headless_with(desc: wgpu::InstanceDescriptor) -> Result<Headless, GpuError> {
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        force_fallback_adapter: false,
        compatible_surface: None,
        apply_limit_buckets: false,
    }))
    .map_err(|e| {
        GpuError(format!(
            "no GPU adapter found ({e}); on Linux without a GPU install a software Vulkan driver \
             (Debian/Ubuntu: apt-get install mesa-vulkan-drivers)"
        ))
    })?;
    let info = adapter.get_info();
    let (device, queue) = pollster::block_on(
        adapter.request_device(&full_device_descriptor(&adapter)),
    )
    .map_err(|e| {
        GpuError(format!(
            "the GPU adapter {} refused to create a device: {e}",
            info.name
        ))
    })?;
    Ok(Headless {
        instance,
        adapter,
        device,
        queue,
        info,
    })
}

/// The engine's burn device on this process's one headless wgpu device
/// (created on first use, shared by every later call), with the adapter's
/// name and whether it is hardware (not a software rasteriser such as
/// lavapipe).
pub struct EngineGpu {
    pub device: burn::tensor::Device,
    pub name: String,
    pub hardware: bool,
}

static ENGINE_GPU: std::sync::OnceLock<Result<EngineGpu, String>> = std::sync::OnceLock::new();

pub fn engine_gpu() -> Result<&'static EngineGpu, GpuError> {
    ENGINE_GPU
        .get_or_init(|| {
            let h = headless().map_err(|e| e.to_string())?;
            let name = format!("wgpu: {} ({:?})", h.info.name, h.info.backend);
            let hardware = h.info.device_type != wgpu::DeviceType::Cpu;
            let setup = burn::tensor::wgpu::WgpuSetup {
                instance: h.instance,
                adapter: h.adapter,
                device: h.device,
                queue: h.queue,
                backend: h.info.backend,
            };
            let device = burn::tensor::Device::wgpu_options()
                .setup(setup)
                .init()
                .map_err(|e| format!("burn could not use the GPU device: {e:?}"))?;
            Ok(EngineGpu {
                device,
                name,
                hardware,
            })
        })
        .as_ref()
        .map_err(|e| GpuError(e.clone()))
}

/// The engine GPU if it was already created (never creates it).
pub fn engine_gpu_if_created() -> Option<&'static EngineGpu> {
    ENGINE_GPU.get().and_then(|r| r.as_ref().ok())
}
