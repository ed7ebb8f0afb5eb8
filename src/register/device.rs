//! Choosing the device the engine runs on: the GPU through wgpu (one device
//! per process, created with the adapter's full limits as the viewer's is),
//! or the CPU through burn's flex backend.

use std::sync::OnceLock;

use burn::tensor::Device;

use super::EngineError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Gpu,
    Cpu,
}

impl Backend {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gpu" | "wgpu" => Some(Self::Gpu),
            "cpu" | "flex" => Some(Self::Cpu),
            _ => None,
        }
    }
}

static GPU: OnceLock<Result<(Device, String, bool), String>> = OnceLock::new();

/// The GPU if there is a hardware one; otherwise the CPU backend (a software
/// Vulkan driver such as lavapipe is slower than burn's own CPU backend), with
/// a notice saying why.
pub fn auto_device() -> (Device, Option<String>) {
    match make_device(Backend::Gpu) {
        Ok(d) if matches!(GPU.get(), Some(Ok((_, _, true)))) => (d, None),
        Ok(_) => (
            Device::flex(),
            Some("the only GPU adapter is a software driver: running on the CPU backend".into()),
        ),
        Err(e) => (
            Device::flex(),
            Some(format!("no GPU ({e}): running on the CPU backend")),
        ),
    }
}

/// The engine's device for `backend`. The GPU device is created once per
/// process and shared by every later call.
pub fn make_device(backend: Backend) -> Result<Device, EngineError> {
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        Backend::Gpu => GPU
            .get_or_init(|| {
                let h = crate::gpu::headless().map_err(|e| e.to_string())?;
                let name = format!("wgpu: {} ({:?})", h.info.name, h.info.backend);
                let hardware = h.info.device_type != wgpu::DeviceType::Cpu;
                let setup = burn::tensor::wgpu::WgpuSetup {
                    instance: h.instance,
                    adapter: h.adapter,
                    device: h.device,
                    queue: h.queue,
                    backend: h.info.backend,
                };
                let device = Device::wgpu_options()
                    .setup(setup)
                    .init()
                    .map_err(|e| format!("burn could not use the GPU device: {e:?}"))?;
                Ok((device, name, hardware))
            })
            .as_ref()
            .map(|(d, _, _)| d.clone())
            .map_err(|e| EngineError(e.clone())),
    }
}

/// A human-readable name of the device a tensor would run on.
pub fn describe(device: &Device) -> String {
    if let Some(Ok((d, name, _))) = GPU.get()
        && d == device
    {
        return name.clone();
    }
    if *device == Device::flex() {
        return "cpu: burn flex".into();
    }
    format!("{device:?}")
}

/// Whether tensors on `device` live in host memory (burn's flex backend),
/// where the fused CPU kernels apply.
pub fn is_cpu(device: &Device) -> bool {
    *device == Device::flex()
}
