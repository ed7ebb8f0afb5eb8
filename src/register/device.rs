//! Choosing the device the engine runs on: the GPU through wgpu (one device
//! per process, see [`crate::gpu::engine_gpu`]), or the CPU through burn's
//! flex backend.

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

/// The engine's device for `backend`.
pub fn make_device(backend: Backend) -> Result<Device, EngineError> {
    match backend {
        Backend::Cpu => Ok(Device::flex()),
        Backend::Gpu => crate::gpu::engine_gpu()
            .map(|g| g.device.clone())
            .map_err(|e| EngineError(e.to_string())),
    }
}

/// The GPU if there is a hardware one; otherwise the CPU backend (a software
/// Vulkan driver such as lavapipe is slower than burn's own CPU backend and
/// than the fused CPU kernels), with a notice saying why.
pub fn auto_device() -> (Device, Option<String>) {
    match crate::gpu::engine_gpu() {
        Ok(g) if g.hardware => (g.device.clone(), None),
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

/// A human-readable name of a device.
pub fn describe(device: &Device) -> String {
    if let Some(g) = crate::gpu::engine_gpu_if_created()
        && g.device == *device
    {
        return g.name.clone();
    }
    if is_cpu(device) {
        return "cpu: burn flex".into();
    }
    format!("{device:?}")
}

/// Whether tensors on `device` live in host memory (burn's flex backend),
/// where the fused CPU kernels apply.
pub fn is_cpu(device: &Device) -> bool {
    *device == Device::flex()
}
