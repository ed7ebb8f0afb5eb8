//! The registration engine's GPU kernels: WGSL compute shaders
//! (`shaders/engine/`) run on the same wgpu device as the viewer (and as
//! burn's runtime, which keeps the composed reference path).
//!
//! Why WGSL on wgpu rather than CubeCL kernels through burn's backend
//! extension: the renderer already writes WGSL compute on this device, and
//! the hot path needs what burn's tensor model does not give — buffers that
//! live for a whole level and are updated in place, dispatches encoded in
//! batches with no host round trip, reductions in two stages with a
//! single-workgroup pass, and a loss history read back asynchronously.
//! Hand-written backward passes are needed either way (the trilinear
//! sampling gradient, local NCC, the regularisers), and WGSL keeps them
//! readable beside the CPU kernels (`register::fused`) they mirror. No
//! optional device feature is needed: every kernel is plain WGSL.
//!
//! Layout: every image channel and every field component is its own
//! storage buffer (N floats, x fastest), so no binding exceeds N floats and
//! no buffer is bound twice in one dispatch.

pub mod ops;
pub mod optim;
pub mod run;

pub use optim::DeviceField;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytemuck::Pod;

/// Storage bindings the largest kernel uses (the Adam update).
pub const STORAGE_BINDINGS: u32 = 15;

/// A GPU failure, in words for the user.
pub type GpuResult<T> = Result<T, String>;

/// The engine's kernels on one wgpu device.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The adapter, as the user reads it ("NVIDIA H200 (Vulkan)").
    pub name: String,
    pub limits: wgpu::Limits,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), wgpu::ComputePipeline>>,
    dispatches: AtomicU64,
    /// A 4-float buffer bound where a kernel's optional input is absent.
    dummy: wgpu::Buffer,
}

/// An f32 storage buffer of `len` elements.
#[derive(Clone, Debug)]
pub struct Buf {
    pub buffer: wgpu::Buffer,
    pub len: usize,
}

impl Buf {
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        self.buffer.as_entire_binding()
    }
}

const COMMON: &str = include_str!("../../../shaders/engine/common.wgsl");
const LEVEL: &str = include_str!("../../../shaders/engine/level.wgsl");
const SAMPLING: &str = include_str!("../../../shaders/engine/sampling.wgsl");
const DIFFUSION: &str = include_str!("../../../shaders/engine/diffusion.wgsl");

fn module_source(name: &str) -> Option<String> {
    let parts: &[&str] = match name {
        "sample" => &[
            COMMON,
            LEVEL,
            SAMPLING,
            include_str!("../../../shaders/engine/sample.wgsl"),
        ],
        "lncc" => &[
            COMMON,
            LEVEL,
            include_str!("../../../shaders/engine/lncc.wgsl"),
        ],
        "chain" => &[
            COMMON,
            LEVEL,
            SAMPLING,
            DIFFUSION,
            include_str!("../../../shaders/engine/chain.wgsl"),
        ],
        "model" => &[
            COMMON,
            LEVEL,
            DIFFUSION,
            include_str!("../../../shaders/engine/model.wgsl"),
        ],
        "ncc" => &[
            COMMON,
            LEVEL,
            include_str!("../../../shaders/engine/ncc.wgsl"),
        ],
        "mi" => &[
            COMMON,
            LEVEL,
            include_str!("../../../shaders/engine/mi.wgsl"),
        ],
        "reduce" => &[
            COMMON,
            LEVEL,
            include_str!("../../../shaders/engine/reduce.wgsl"),
        ],
        "update" => &[
            COMMON,
            LEVEL,
            include_str!("../../../shaders/engine/update.wgsl"),
        ],
        "smooth" => &[
            COMMON,
            LEVEL,
            include_str!("../../../shaders/engine/smooth.wgsl"),
        ],
        "fields" => &[COMMON, include_str!("../../../shaders/engine/fields.wgsl")],
        "pyramid" => &[COMMON, include_str!("../../../shaders/engine/pyramid.wgsl")],
        _ => return None,
    };
    Some(parts.join("\n"))
}

/// Workgroups of 256 invocations covering `n` items, as (x, y) with x
/// within the 65 535 per-dimension limit; kernels flatten them back.
pub fn groups(n: usize) -> (u32, u32) {
    let g = n.div_ceil(256).max(1);
    let x = g.min(65_535);
    (x as u32, g.div_ceil(x) as u32)
}

/// Number of workgroups of a whole-grid dispatch over `n` items.
pub fn group_count(n: usize) -> usize {
    let (x, y) = groups(n);
    x as usize * y as usize
}

impl Gpu {
    /// The engine on `device`; refused (with the reason) where the device's
    /// limits are too small for its kernels.
    pub fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: &wgpu::AdapterInfo,
    ) -> GpuResult<Self> {
        let limits = device.limits();
        if limits.max_storage_buffers_per_shader_stage < STORAGE_BINDINGS {
            return Err(format!(
                "the GPU device allows {} storage buffers per shader stage; the engine's kernels \
                 need {STORAGE_BINDINGS}",
                limits.max_storage_buffers_per_shader_stage
            ));
        }
        if limits.max_compute_invocations_per_workgroup < 256
            || limits.max_compute_workgroup_size_x < 256
        {
            return Err("the GPU device does not allow workgroups of 256 invocations".into());
        }
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("engine: absent input"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(Self {
            device,
            queue,
            name: format!("{} ({:?})", info.name, info.backend),
            limits,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            dispatches: AtomicU64::new(0),
            dummy,
        })
    }

    /// Kernel dispatches encoded so far (for `bench`).
    pub fn dispatch_count(&self) -> u64 {
        self.dispatches.load(Ordering::Relaxed)
    }

    pub fn dummy(&self) -> wgpu::BindingResource<'_> {
        self.dummy.as_entire_binding()
    }

    /// Run `f` inside out-of-memory and validation error scopes (this
    /// thread's); an error becomes `Err` with `what` in front.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> GpuResult<T> {
        crate::render::texture::scoped(&self.device, what, f).map_err(|e| {
            if e.contains("ran out of memory") {
                format!("{e}; the CPU device can run this registration")
            } else if e.contains("lost") || e.contains("is invalid") {
                // After a device loss every object on it is invalid.
                format!(
                    "the GPU device was lost or reset ({what}); the last good result is kept, \
                     and the CPU device can run this registration [{}]",
                    e.lines()
                        .map(str::trim)
                        .rfind(|l| l.contains("lost") || l.contains("invalid"))
                        .unwrap_or("")
                )
            } else {
                e
            }
        })
    }

    /// The pipeline of `entry` in module `module` (compiled on first use).
    pub fn pipeline(
        &self,
        module: &'static str,
        entry: &'static str,
    ) -> GpuResult<wgpu::ComputePipeline> {
        let key = (module, entry);
        if let Some(p) = self.pipelines.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(p.clone());
        }
        let shader = {
            let mut modules = self.modules.lock().map_err(|_| poisoned())?;
            match modules.get(module) {
                Some(m) => m.clone(),
                None => {
                    let source = module_source(module)
                        .ok_or_else(|| format!("internal: no kernel module '{module}'"))?;
                    let m = self.scoped(&format!("compiling the {module} kernels"), || {
                        self.device
                            .create_shader_module(wgpu::ShaderModuleDescriptor {
                                label: Some(module),
                                source: wgpu::ShaderSource::Wgsl(source.into()),
                            })
                    })?;
                    modules.insert(module, m.clone());
                    m
                }
            }
        };
        let p = self.scoped(&format!("building the {module}.{entry} kernel"), || {
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: None,
                    module: &shader,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
        })?;
        self.pipelines
            .lock()
            .map_err(|_| poisoned())?
            .insert(key, p.clone());
        Ok(p)
    }

    /// A bind group for `pipeline` from (binding, resource) pairs: exactly
    /// the bindings its entry point uses (a mismatch is an error, not a
    /// panic).
    pub fn bind(
        &self,
        pipeline: &wgpu::ComputePipeline,
        entries: &[(u32, wgpu::BindingResource<'_>)],
    ) -> GpuResult<wgpu::BindGroup> {
        let entries: Vec<wgpu::BindGroupEntry> = entries
            .iter()
            .map(|(b, r)| wgpu::BindGroupEntry {
                binding: *b,
                resource: r.clone(),
            })
            .collect();
        self.scoped("binding a GPU kernel's buffers", || {
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        })
    }

    /// A zeroed f32 storage buffer; refused with the sizes where it exceeds
    /// the device's limits.
    pub fn buf(&self, label: &str, len: usize) -> GpuResult<Buf> {
        let bytes = (len.max(4) * 4) as u64;
        let max = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        if bytes > max {
            return Err(format!(
                "{} needs {} MiB in one buffer, beyond this GPU's largest storage buffer \
                 ({} MiB): register a coarser image, or choose the CPU device",
                label.trim_start_matches("engine: "),
                bytes.div_ceil(1 << 20),
                max >> 20
            ));
        }
        let buffer = self.scoped(label, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        Ok(Buf { buffer, len })
    }

    /// A storage buffer holding `data`.
    pub fn upload(&self, label: &str, data: &[f32]) -> GpuResult<Buf> {
        let b = self.buf(label, data.len())?;
        if !data.is_empty() {
            self.scoped(label, || {
                self.queue
                    .write_buffer(&b.buffer, 0, bytemuck::cast_slice(data))
            })?;
        }
        Ok(b)
    }

    /// A uniform buffer holding `value` (rewritable).
    pub fn uniform<T: Pod>(&self, label: &str, value: &T) -> GpuResult<wgpu::Buffer> {
        let bytes = bytemuck::bytes_of(value);
        self.scoped(label, || {
            let b = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.queue.write_buffer(&b, 0, bytes);
            b
        })
    }

    /// Record one dispatch of `pipeline` over `n` items.
    pub fn dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        pipeline: &wgpu::ComputePipeline,
        bind: &wgpu::BindGroup,
        n: usize,
    ) {
        let (x, y) = groups(n);
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind, &[]);
        pass.dispatch_workgroups(x, y, 1);
        self.dispatches.fetch_add(1, Ordering::Relaxed);
    }

    /// Record one dispatch of a single workgroup.
    pub fn dispatch_one(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        pipeline: &wgpu::ComputePipeline,
        bind: &wgpu::BindGroup,
    ) {
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, bind, &[]);
        pass.dispatch_workgroups(1, 1, 1);
        self.dispatches.fetch_add(1, Ordering::Relaxed);
    }

    /// Encode with `f` inside one compute pass and submit.
    pub fn submit(
        &self,
        what: &str,
        f: impl FnOnce(&mut wgpu::ComputePass<'_>),
    ) -> GpuResult<wgpu::SubmissionIndex> {
        self.scoped(what, || {
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(what),
                    timestamp_writes: None,
                });
                f(&mut pass);
            }
            self.queue.submit([encoder.finish()])
        })
    }

    /// Copy `len` floats of `src` (from float `offset`) into a new buffer
    /// that can be mapped, and ask for the mapping.
    pub fn start_read(&self, src: &wgpu::Buffer, offset: usize, len: usize) -> GpuResult<Reading> {
        let bytes = (len.max(1) * 4) as u64;
        let staging = self.scoped("reading from the GPU", || {
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("engine read-back"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            if len > 0 {
                encoder.copy_buffer_to_buffer(src, (offset * 4) as u64, &staging, 0, bytes);
            }
            self.queue.submit([encoder.finish()]);
            staging
        })?;
        Reading::map(self, staging, len)
    }

    /// Read `buf` back (blocking).
    pub fn read(&self, buf: &Buf) -> GpuResult<Vec<f32>> {
        self.start_read(&buf.buffer, 0, buf.len)?.wait(self)
    }

    /// Block until everything submitted so far has run.
    pub fn wait(&self) -> GpuResult<()> {
        crate::render::texture::wait_idle(&self.device, WAIT_LIMIT)
    }
}

/// The longest wait for the GPU before a run is declared failed.
pub const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

fn poisoned() -> String {
    "internal: the GPU kernel cache is poisoned".into()
}

/// A read-back in flight: a mappable copy and the state of its mapping.
pub struct Reading {
    staging: wgpu::Buffer,
    len: usize,
    state: Arc<Mutex<Option<Result<(), String>>>>,
}

impl Reading {
    pub(crate) fn map(gpu: &Gpu, staging: wgpu::Buffer, len: usize) -> GpuResult<Self> {
        let state: Arc<Mutex<Option<Result<(), String>>>> = Arc::new(Mutex::new(None));
        let s = state.clone();
        gpu.scoped("reading from the GPU", || {
            staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                if let Ok(mut g) = s.lock() {
                    *g = Some(r.map_err(|e| format!("the GPU could not return data: {e}")));
                }
            })
        })?;
        Ok(Self {
            staging,
            len,
            state,
        })
    }

    fn values(&self) -> GpuResult<Vec<f32>> {
        let out = {
            let view = self
                .staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| format!("reading from the GPU: {e}"))?;
            bytemuck::cast_slice::<u8, f32>(&view)[..self.len].to_vec()
        };
        self.staging.unmap();
        Ok(out)
    }

    /// The values if the copy has finished (never blocks).
    pub fn try_take(&self, gpu: &Gpu) -> Option<GpuResult<Vec<f32>>> {
        if let Err(e) = gpu.device.poll(wgpu::PollType::Poll) {
            return Some(Err(lost(e)));
        }
        let done = self.state.lock().ok()?.take()?;
        Some(done.and_then(|()| self.values()))
    }

    /// Wait for the values.
    pub fn wait(self, gpu: &Gpu) -> GpuResult<Vec<f32>> {
        let start = std::time::Instant::now();
        loop {
            if let Some(r) = self.try_take(gpu) {
                return r;
            }
            match gpu.device.poll(wgpu::PollType::wait_indefinitely()) {
                Ok(_) => {}
                Err(wgpu::PollError::Timeout) if start.elapsed() < WAIT_LIMIT => {}
                Err(e) => return Err(lost(e)),
            }
            if start.elapsed() >= WAIT_LIMIT {
                return Err("the GPU did not finish within 10 minutes".into());
            }
        }
    }
}

fn lost(e: wgpu::PollError) -> String {
    format!("the GPU device failed or was lost ({e})")
}

/// One engine per wgpu device, known by the burn device registered on it.
type Engines = Vec<(burn::tensor::Device, Result<Arc<Gpu>, String>)>;

static ENGINES: Mutex<Engines> = Mutex::new(Vec::new());

/// Make the engine's kernels available for `burn_device`, which runs on
/// this wgpu device (called where the burn device is registered).
pub fn register(
    burn_device: &burn::tensor::Device,
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    info: &wgpu::AdapterInfo,
) {
    if let Ok(mut e) = ENGINES.lock()
        && !e.iter().any(|(d, _)| d == burn_device)
    {
        let gpu = Gpu::new(device.clone(), queue.clone(), info).map(Arc::new);
        e.push((burn_device.clone(), gpu));
    }
}

/// The engine's kernels for a burn device on the GPU: `None` for the CPU
/// backend, `Some(Err)` where the device cannot run them (with the reason).
pub fn for_device(burn_device: &burn::tensor::Device) -> Option<Result<Arc<Gpu>, String>> {
    let e = ENGINES.lock().ok()?;
    e.iter()
        .find(|(d, _)| d == burn_device)
        .map(|(_, g)| g.clone())
}
