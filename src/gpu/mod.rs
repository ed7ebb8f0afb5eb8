//! The wgpu device that the viewer and the registration engine share.
//!
//! One rule makes the device on every adapter ([`device_descriptor`]): ask
//! for the features the engine and the renderer use ([`WANTED_FEATURES`],
//! those the adapter has), never an experimental one (wgpu refuses a device
//! that asks for them, and NVIDIA's driver offers several), and the
//! adapter's own limits (egui's defaults are too small for compute). If the
//! adapter still refuses, [`request_device`] retries with no optional
//! feature and says what was dropped. The viewer ([`gui_device_descriptor`]),
//! the command line and the tests all go through this one rule.

pub mod engine;
pub mod shared;

use std::fmt;
use std::sync::Mutex;

pub use shared::{TensorBuffer, engine_on};

/// Optional features used when the adapter has them: 64-bit and 16-bit
/// shader types and float atomics by burn's kernels (the composed reference
/// path; cubecl registers them from the adapter's list, so the device must
/// have them too), timestamp queries and subgroups by cubecl's runtime.
/// The engine's own kernels and the renderer need none of them.
pub const WANTED_FEATURES: wgpu::Features = wgpu::Features::SHADER_INT64
    .union(wgpu::Features::SHADER_F64)
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::SHADER_FLOAT32_ATOMIC)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::SUBGROUP);

/// The features asked of `adapter`: [`WANTED_FEATURES`] it offers, never an
/// experimental one.
pub fn wanted_features(adapter_features: wgpu::Features) -> wgpu::Features {
    (adapter_features & WANTED_FEATURES).difference(wgpu::Features::all_experimental_mask())
}

/// The device descriptor of the rule above, with the adapter's limits.
pub fn device_descriptor(adapter: &wgpu::Adapter) -> wgpu::DeviceDescriptor<'static> {
    descriptor(wanted_features(adapter.features()), adapter.limits())
}

/// The fallback: no optional feature, the adapter's limits.
pub fn minimal_descriptor(adapter: &wgpu::Adapter) -> wgpu::DeviceDescriptor<'static> {
    descriptor(wgpu::Features::empty(), adapter.limits())
}

fn descriptor(features: wgpu::Features, limits: wgpu::Limits) -> wgpu::DeviceDescriptor<'static> {
    wgpu::DeviceDescriptor {
        label: Some("warpscope"),
        required_features: features,
        required_limits: limits,
        memory_hints: wgpu::MemoryHints::MemoryUsage,
        ..Default::default()
    }
}

/// What the last device request had to give up, for the viewer to show.
static DROPPED: Mutex<Option<String>> = Mutex::new(None);

/// The note left by a device request that fell back to the minimum, once.
pub fn take_device_note() -> Option<String> {
    DROPPED.lock().ok().and_then(|mut g| g.take())
}

fn note_dropped(adapter: &wgpu::Adapter, features: wgpu::Features, why: &str) {
    let note = format!(
        "the GPU adapter {} refused a device with {features:?} ({why}); using it without them: \
         registering on this GPU needs none of them, but burn's composed reference path \
         (fused=false) may not run there",
        adapter.get_info().name
    );
    if let Ok(mut g) = DROPPED.lock() {
        *g = Some(note);
    }
}

/// A device by the rule above: the wanted features, else the minimum (and
/// a note of what was dropped).
pub fn request_device(adapter: &wgpu::Adapter) -> Result<(wgpu::Device, wgpu::Queue), GpuError> {
    let first = device_descriptor(adapter);
    match pollster::block_on(adapter.request_device(&first)) {
        Ok(dq) => Ok(dq),
        Err(e) if !first.required_features.is_empty() => {
            let dq = pollster::block_on(adapter.request_device(&minimal_descriptor(adapter)))
                .map_err(|e2| {
                    GpuError(format!(
                        "the GPU adapter {} refused to create a device: {e2} (and with {:?}: {e})",
                        adapter.get_info().name,
                        first.required_features
                    ))
                })?;
            note_dropped(adapter, first.required_features, &e.to_string());
            Ok(dq)
        }
        Err(e) => Err(GpuError(format!(
            "the GPU adapter {} refused to create a device: {e}",
            adapter.get_info().name
        ))),
    }
}

/// The descriptor for eframe (which asks once and cannot retry): the rule's
/// descriptor if the adapter accepts it (tried on a probe device that is
/// dropped at once), else the minimal one, with a note.
pub fn gui_device_descriptor(adapter: &wgpu::Adapter) -> wgpu::DeviceDescriptor<'static> {
    let first = device_descriptor(adapter);
    if first.required_features.is_empty() {
        return first;
    }
    match pollster::block_on(adapter.request_device(&first)) {
        Ok(_probe) => first,
        Err(e) => {
            note_dropped(adapter, first.required_features, &e.to_string());
            minimal_descriptor(adapter)
        }
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
    let (device, queue) = request_device(&adapter)?;
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
            let (wgpu_device, queue) = (h.device.clone(), h.queue.clone());
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
            engine::register(&device, &wgpu_device, &queue, &h.info);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule: never an experimental feature, only wanted ones the
    /// adapter has — whatever the adapter offers.
    #[test]
    fn descriptors_never_ask_for_experimental_features() {
        for offered in [
            wgpu::Features::all(),
            wgpu::Features::all_experimental_mask(),
            wgpu::Features::all().difference(wgpu::Features::SHADER_F64),
            wgpu::Features::empty(),
        ] {
            let asked = wanted_features(offered);
            assert!(
                !asked.intersects(wgpu::Features::all_experimental_mask()),
                "asked for experimental features {asked:?}"
            );
            assert!(offered.contains(asked), "asked for {asked:?} not offered");
            assert!(WANTED_FEATURES.contains(asked));
        }
        assert_eq!(wanted_features(wgpu::Features::all()), WANTED_FEATURES);
    }

    /// On this machine's adapter (lavapipe without a GPU), every
    /// descriptor the program uses creates a device.
    #[test]
    fn the_adapter_accepts_the_descriptors() {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let Ok(adapter) = pollster::block_on(instance.request_adapter(&Default::default())) else {
            panic!("no wgpu adapter (install mesa-vulkan-drivers where there is no GPU)");
        };
        for (name, d) in [
            ("rule", device_descriptor(&adapter)),
            ("viewer", gui_device_descriptor(&adapter)),
            ("minimal", minimal_descriptor(&adapter)),
        ] {
            assert!(
                !d.required_features
                    .intersects(wgpu::Features::all_experimental_mask())
            );
            pollster::block_on(adapter.request_device(&d))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(request_device(&adapter).is_ok());
    }
}
