//! The engine on the viewer's own wgpu device, and engine tensors read by
//! the renderer where they lie.
//!
//! burn registers an existing wgpu device once (each registration is a new
//! runtime); [`engine_on`] keeps one burn device per wgpu device for the
//! life of the process, so every viewer window (or test harness) on a
//! device shares one engine runtime with it. [`TensorBuffer`] gives the
//! storage buffer that holds a tensor on such a device, for a compute pass
//! of the renderer to read: no copy through the CPU.

use std::sync::Mutex;

use burn::tensor::{DType, Device, Tensor};

use super::GpuError;

/// wgpu compares devices by their id within their instance, and ids repeat
/// across instances: a device is known by its instance (compared by
/// address) and its id together.
type Registered = Vec<((wgpu::Instance, wgpu::Device), Result<Device, String>)>;

static SHARED: Mutex<Registered> = Mutex::new(Vec::new());

/// The engine's burn device on an existing wgpu device (registered on first
/// use; later calls with the same device return the same burn device).
pub fn engine_on(
    instance: &wgpu::Instance,
    adapter: &wgpu::Adapter,
    device: &wgpu::Device,
    queue: &wgpu::Queue,
) -> Result<Device, GpuError> {
    let mut shared = SHARED
        .lock()
        .map_err(|_| GpuError("the shared-device registry is poisoned".into()))?;
    if let Some((_, r)) = shared
        .iter()
        .find(|((i, d), _)| i == instance && d == device)
    {
        return r.clone().map_err(GpuError);
    }
    let setup = burn::tensor::wgpu::WgpuSetup {
        instance: instance.clone(),
        adapter: adapter.clone(),
        device: device.clone(),
        queue: queue.clone(),
        backend: adapter.get_info().backend,
    };
    // burn panics on some incompatible setups: report, do not crash the viewer.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Device::wgpu_options().setup(setup).init()
    }))
    .map_err(|p| crate::register::panic_message(&p))
    .and_then(|r| r.map_err(|e| format!("{e:?}")))
    .map_err(|e| format!("the registration engine could not use the viewer's GPU device: {e}"));
    if let Ok(d) = &r {
        super::engine::register(d, device, queue, &adapter.get_info());
    }
    shared.push(((instance.clone(), device.clone()), r.clone()));
    r.map_err(GpuError)
}

/// The storage buffer holding a tensor on a shared wgpu device. While this
/// value lives, the tensor's memory is neither freed nor reused.
pub struct TensorBuffer {
    resource: burn::cubecl::wgpu::WgpuResource,
    /// The runtime's guard that keeps the allocation alive and in place.
    _guard: Box<dyn std::any::Any>,
    /// Elements (f32).
    pub len: usize,
}

impl TensorBuffer {
    /// A contiguous f32 tensor's buffer; an error for tensors on another
    /// backend (the CPU) or in another layout, which the caller then reads
    /// to the host instead.
    pub fn of(t: &Tensor<2>) -> Result<Self, GpuError> {
        let t = t.clone().without_autodiff();
        let len = t.shape().num_elements();
        let cube = t
            .try_into_primitive::<burn::backend::Wgpu>()
            .map_err(|e| GpuError(format!("not a wgpu tensor: {e:?}")))?;
        if cube.dtype != DType::F32 {
            return Err(GpuError(format!("a {:?} tensor, not f32", cube.dtype)));
        }
        // Contiguous, starting at the handle (the allocation may be padded).
        if !cube.is_contiguous() || (cube.handle.size() as usize) < len * 4 {
            return Err(GpuError("the tensor is not contiguous".into()));
        }
        let managed = cube
            .client
            .get_resource::<burn::cubecl::wgpu::WgpuServer<burn::cubecl::wgpu::AutoCompiler>>(
                cube.handle.clone(),
            )
            .map_err(|e| GpuError(format!("the tensor's buffer is not reachable: {e:?}")))?;
        Ok(Self {
            resource: managed.resource().clone(),
            _guard: Box::new(managed),
            len,
        })
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.resource.buffer
    }

    /// Byte offset of the tensor's first element in [`Self::buffer`].
    pub fn offset(&self) -> u64 {
        self.resource.offset
    }

    /// Bytes of the tensor's elements.
    pub fn bytes(&self) -> u64 {
        self.len as u64 * 4
    }
}
