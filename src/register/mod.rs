//! The registration engine: affine and deformable instance optimisation on
//! burn tensors, written once for every backend (wgpu on the GPU, flex on
//! the CPU). See `docs/architecture.md` and the shared `methods.md`.
//!
//! Conventions. The moving image is first resampled onto the fixed grid
//! through world coordinates; the engine then works in voxels of the fixed
//! grid. The result maps fixed voxel p to fixed-grid voxel
//! `A · (p + u(p))`, A the affine stage's matrix and u the deformable
//! field; its world position (fixed affine applied) is the corresponding
//! point of the moving image.

pub mod adam;
pub mod change;
pub mod device;
pub mod field;
pub mod fused;
pub mod keys;
pub mod loss;
pub mod model;
pub mod monotone;
pub mod params;
pub mod regularize;
pub mod session;
pub mod smoothing;
pub mod stages;

use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::{Device, Tensor};

pub use change::Change;
pub use device::{Backend, make_device};
pub use params::{ParamError, Pipeline};
pub use session::{Control, Event, Link, Progress, Snapshot, SnapshotField, Status};

use crate::metrics::mapping::{FieldKind, Mapping};
use crate::volume::affine::{self, Mat4};
use crate::volume::intensity::normalize_percentile;
use crate::volume::pyramid::{DEFAULT_SIGMA_VOX, gaussian_pyramid};
use crate::volume::resample::{Border, Interp, mask_on, resample};
use crate::volume::{Grid, Volume};
use session::{Halt, Runner};

/// A refused input or an engine failure, with a message for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineError(pub String);

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EngineError {}

impl From<ParamError> for EngineError {
    fn from(e: ParamError) -> Self {
        EngineError(e.0)
    }
}

/// What to register: images with the same channel count (one per sequence).
pub struct Inputs {
    pub fixed: Volume,
    pub moving: Volume,
    /// Restricts the similarity to voxels > 0.5 of this mask (fixed grid or
    /// resampled onto it).
    pub fixed_mask: Option<Volume>,
    /// Label maps of both images (each on its image's grid, or resampled
    /// onto it), for the Dice loss (`deformable.dice`).
    pub labels: Option<Labels>,
}

/// Integer label maps of the fixed and the moving image (0 = background).
#[derive(Clone, Debug)]
pub struct Labels {
    pub fixed: Volume,
    pub moving: Volume,
}

/// The most labels the Dice loss takes (one channel each).
pub const MAX_LABELS: usize = 64;

/// The labels both maps hold (0 excluded), as one-hot channels on the
/// fixed grid: (fixed, moving resampled onto it by nearest neighbour).
pub fn one_hot_labels(labels: &Labels, fixed: &Grid) -> Result<(Volume, Volume), EngineError> {
    let on = |v: &Volume, name: &str| -> Result<Volume, EngineError> {
        if v.channels != 1 {
            return Err(EngineError(format!(
                "the {name} label map has {} channels: one is expected",
                v.channels
            )));
        }
        if let Some(bad) = v.data.iter().position(|x| !x.is_finite()) {
            return Err(EngineError(format!(
                "the {name} label map holds a non-finite value at sample {bad}"
            )));
        }
        if v.grid.same_as(fixed) {
            Ok(v.clone())
        } else {
            resample(v, fixed, Interp::Nearest, Border::Constant(0.0))
                .map_err(|e| EngineError(format!("the {name} label map: {e}")))
        }
    };
    let (f, m) = (on(&labels.fixed, "fixed")?, on(&labels.moving, "moving")?);
    let (lf, lm) = (
        crate::metrics::overlap::labels_of(&f.data),
        crate::metrics::overlap::labels_of(&m.data),
    );
    let common: Vec<i64> = lf.into_iter().filter(|l| lm.contains(l)).collect();
    if common.is_empty() {
        return Err(EngineError(
            "the fixed and moving label maps share no non-zero label: the Dice loss has nothing to compare".into(),
        ));
    }
    if common.len() > MAX_LABELS {
        return Err(EngineError(format!(
            "the label maps share {} labels: the Dice loss takes at most {MAX_LABELS}",
            common.len()
        )));
    }
    let hot = |v: &Volume| {
        let n = v.voxels();
        let mut data = vec![0f32; common.len() * n];
        for (i, &x) in v.data.iter().enumerate() {
            if let Some(k) = common.iter().position(|&l| l == x.round() as i64) {
                data[k * n + i] = 1.0;
            }
        }
        Volume {
            grid: fixed.clone(),
            channels: common.len(),
            data,
        }
    };
    Ok((hot(&f), hot(&m)))
}

/// Everything a run produced. Fields are in voxels of the fixed grid.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    /// Fixed voxel → fixed-grid voxel of the (pre-resampled) moving image.
    pub affine_vox: Mat4,
    /// Deformable displacement u (3 channels, fixed grid), if that stage ran.
    pub field_vox: Option<Volume>,
    /// The inverse-consistency weight map, if computed.
    pub ic_weights: Option<Volume>,
    /// (stage, seconds).
    pub stage_seconds: Vec<(String, f64)>,
    /// (stage, GPU kernel dispatches): runs on the engine's GPU kernels only.
    pub stage_dispatches: Vec<(String, u64)>,
    /// Seconds spent checking, resampling and normalising the inputs.
    pub prepare_seconds: f64,
    pub final_terms: Vec<(String, f64)>,
    pub final_total: f64,
    pub iterations: usize,
    /// The pipeline as it ended (with any live changes).
    pub pipeline: Pipeline,
    pub device: String,
}

impl Outcome {
    /// Nothing done yet: identity affine, no field.
    pub fn blank(pipeline: Pipeline, device: &str) -> Outcome {
        Outcome {
            status: Status::Completed,
            affine_vox: affine::IDENTITY,
            field_vox: None,
            ic_weights: None,
            stage_seconds: Vec::new(),
            stage_dispatches: Vec::new(),
            prepare_seconds: 0.0,
            final_terms: Vec::new(),
            final_total: f64::NAN,
            iterations: 0,
            pipeline,
            device: device.to_string(),
        }
    }

    /// Total displacement in fixed voxels: A·(p + u(p)) − p, 3 channels.
    pub fn total_field_vox(&self, fixed: &Grid) -> Volume {
        let n = fixed.voxels();
        let mut out = Volume::filled(fixed.clone(), 3, 0.0);
        let a = self.affine_vox;
        for i in 0..n {
            let p = crate::volume::voxel_of(i, fixed.dims);
            let mut q = p;
            if let Some(u) = &self.field_vox {
                for c in 0..3 {
                    q[c] += u.data[c * n + i] as f64;
                }
            }
            let m = affine::apply(&a, q);
            for c in 0..3 {
                out.data[c * n + i] = (m[c] - p[c]) as f32;
            }
        }
        out
    }

    /// The result as fixed voxel → moving world RAS mm.
    pub fn mapping(&self, fixed: &Grid) -> Mapping {
        let total = self.total_field_vox(fixed);
        match Mapping::from_field(&total, FieldKind::DispVox, fixed) {
            Ok((m, _)) => m,
            // Same grid by construction: the conversion cannot need resampling.
            Err(_) => Mapping::identity(fixed),
        }
    }
}

/// Copy a `[C, N]` tensor back into a volume on `grid`.
pub fn tensor_to_volume(t: Tensor<2>, grid: &Grid) -> Result<Volume, EngineError> {
    let [c, n] = t.dims();
    if n != grid.voxels() {
        return Err(EngineError(format!(
            "tensor of {n} voxels does not fit a {:?} grid",
            grid.dims
        )));
    }
    let data = t
        .without_autodiff()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| EngineError(format!("could not read a tensor from the device: {e:?}")))?;
    Volume::from_data(grid.clone(), c, data).map_err(|e| EngineError(e.to_string()))
}

pub fn volume_to_tensor(v: &Volume, device: &Device) -> Tensor<2> {
    field::upload(v.data.clone(), v.channels, device)
}

/// Check the inputs and bring them onto the fixed grid, normalised.
pub fn prepare(
    inputs: &Inputs,
    normalize: bool,
) -> Result<(Volume, Volume, Option<Volume>), EngineError> {
    let (f, m) = (&inputs.fixed, &inputs.moving);
    if f.channels != m.channels {
        return Err(EngineError(format!(
            "the fixed image has {} channel(s) and the moving image {}: give the same sequences for both",
            f.channels, m.channels
        )));
    }
    for (name, v) in [("fixed", f), ("moving", m)] {
        if v.voxels() == 0 || v.data.is_empty() {
            return Err(EngineError(format!("the {name} image is empty")));
        }
        if v.grid.dims.iter().any(|&d| d < 4) {
            return Err(EngineError(format!(
                "the {name} image is {:?} voxels: registration needs at least 4 along each axis",
                v.grid.dims
            )));
        }
        if let Some(bad) = v.data.iter().position(|x| !x.is_finite()) {
            return Err(EngineError(format!(
                "the {name} image holds a non-finite value at sample {bad}"
            )));
        }
        for c in 0..v.channels {
            match v.range(c) {
                Some((lo, hi)) if hi > lo => {}
                _ => {
                    return Err(EngineError(format!(
                        "channel {} of the {name} image is constant: it has no structure to register \
                         (and zero variance makes NCC undefined)",
                        c + 1
                    )));
                }
            }
        }
    }
    let mut fixed = f.clone();
    let mut moving = if m.grid.same_as(&f.grid) {
        m.clone()
    } else {
        let on_fixed = resample(m, &f.grid, Interp::Linear, Border::Constant(0.0))
            .map_err(|e| EngineError(e.to_string()))?;
        check_overlap(&on_fixed, f, m)?;
        on_fixed
    };
    if normalize {
        for v in [&mut fixed, &mut moving] {
            normalize_percentile(v, 0.5, 99.5, false).map_err(|e| EngineError(e.to_string()))?;
        }
    }
    let mask = match &inputs.fixed_mask {
        None => None,
        Some(mk) => {
            let inside = mask_on(mk, &f.grid).map_err(|e| EngineError(e.to_string()))?;
            if !inside.iter().any(|&x| x) {
                return Err(EngineError(
                    "the fixed mask is empty on the fixed grid (no voxel > 0.5): nothing would be compared".into(),
                ));
            }
            let data = inside.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect();
            Some(Volume {
                grid: f.grid.clone(),
                channels: 1,
                data,
            })
        }
    };
    Ok((fixed, moving, mask))
}

/// Refuse a moving image that, brought onto the fixed grid, holds nothing
/// of itself: their headers place the two images apart in world space, and
/// a run would end "completed" on an empty warped image.
fn check_overlap(on_fixed: &Volume, fixed: &Volume, moving: &Volume) -> Result<(), EngineError> {
    let structured =
        (0..on_fixed.channels).any(|c| on_fixed.range(c).is_some_and(|(lo, hi)| hi > lo));
    if structured {
        return Ok(());
    }
    let where_ = match crate::volume::world_gap_mm(&fixed.grid, &moving.grid) {
        Some(gap) => format!("their world boxes are {gap:.0} mm apart"),
        None => {
            "their world boxes touch, but no moving voxel with content falls inside the fixed image"
                .into()
        }
    };
    let centre = |g: &Grid| {
        let (lo, hi) = crate::volume::world_bounds(g);
        std::array::from_fn::<f64, 3, _>(|k| 0.5 * (lo[k] + hi[k]))
    };
    let (cf, cm) = (centre(&fixed.grid), centre(&moving.grid));
    Err(EngineError(format!(
        "the moving image does not overlap the fixed image ({where_}; centres at \
         [{:.0}, {:.0}, {:.0}] and [{:.0}, {:.0}, {:.0}] mm RAS): registration would compare nothing. \
         Check that both files' headers (sform/qform) place them in the same scanner space, \
         or move the moving image's origin onto the fixed one's first",
        cf[0], cf[1], cf[2], cm[0], cm[1], cm[2]
    )))
}

/// Host copies of one level's images (channel-major) and mask.
pub struct HostImages {
    pub fixed: Vec<f32>,
    pub moving: Vec<f32>,
    pub mask: Option<Vec<f32>>,
}

/// One pyramid level's data on the device.
pub struct Level {
    pub grid: Grid,
    pub fixed: Tensor<2>,
    pub moving: Tensor<2>,
    /// CPU copies of the images when the fused CPU kernels serve this
    /// level (the device is the CPU backend).
    pub host: Option<HostImages>,
    pub mask: Option<Tensor<2>>,
    pub identity: Tensor<2>,
    /// One-hot label maps for the Dice loss, at full resolution.
    pub labels: Option<LevelLabels>,
}

/// The label maps a level's Dice loss compares: one-hot `[K, N]` on the
/// full-resolution grid, where the level's field is brought before
/// sampling. (Label maps brought down to a coarse level instead — blurred
/// or subsampled — reward the wrong field: on brain2mm_syn the soft Dice
/// there improved while the true Dice fell from 0.89 to 0.77.)
#[derive(Clone)]
pub struct LevelLabels {
    pub fixed: Tensor<2>,
    pub moving: Tensor<2>,
    pub grid: Grid,
    pub identity: Tensor<2>,
    /// Level voxel → full-resolution voxel maps (`None` at full resolution).
    pub maps: Option<(affine::Rows, affine::Rows)>,
}

impl LevelLabels {
    /// 1 − mean soft Dice of the moving labels warped by `u` (voxels of
    /// `level`) against the fixed ones.
    pub fn dice_loss(&self, u: Tensor<2>, level: &Grid) -> Tensor<1> {
        let device = self.identity.device();
        let u = match &self.maps {
            Some((to_from, from_to)) => {
                field::resize(u, level.dims, self.grid.dims, to_from, from_to, &device)
            }
            None => u,
        };
        let warped = field::sample_linear(
            self.moving.clone(),
            self.grid.dims,
            self.identity.clone() + u,
            field::Outside::Zero,
        );
        loss::soft_dice(warped, self.fixed.clone())
    }

    /// The backward direction's: the roles swap.
    pub fn swapped(&self) -> LevelLabels {
        LevelLabels {
            fixed: self.moving.clone(),
            moving: self.fixed.clone(),
            ..self.clone()
        }
    }
}

impl Level {
    pub fn dims(&self) -> field::Dims {
        self.grid.dims
    }

    /// The images on the host, if the fused kernels may be used.
    pub fn hosts(&self, enabled: bool) -> Option<loss::Hosts<'_>> {
        self.host.as_ref().filter(|_| enabled).map(|h| loss::Hosts {
            fixed: &h.fixed,
            moving: &h.moving,
        })
    }

    /// The same level with the images' roles swapped (backward direction);
    /// the fixed mask does not apply in moving space.
    pub fn swapped(&self) -> Level {
        Level {
            grid: self.grid.clone(),
            fixed: self.moving.clone(),
            moving: self.fixed.clone(),
            host: self.host.as_ref().map(|h| HostImages {
                fixed: h.moving.clone(),
                moving: h.fixed.clone(),
                mask: None,
            }),
            mask: None,
            identity: self.identity.clone(),
            labels: self.labels.as_ref().map(LevelLabels::swapped),
        }
    }
}

/// Upload pyramid level `k` (0 = full resolution) of each volume.
pub fn levels(
    fixed: &[Volume],
    moving: &[Volume],
    mask: Option<&[Volume]>,
    device: &Device,
) -> Vec<Level> {
    let cpu = device::is_cpu(device);
    fixed
        .iter()
        .zip(moving)
        .enumerate()
        .map(|(k, (f, m))| Level {
            grid: f.grid.clone(),
            fixed: volume_to_tensor(f, device),
            moving: volume_to_tensor(m, device),
            host: cpu.then(|| HostImages {
                fixed: f.data.clone(),
                moving: m.data.clone(),
                mask: mask.and_then(|p| p.get(k)).map(|v| v.data.clone()),
            }),
            mask: mask
                .and_then(|p| p.get(k))
                .map(|v| volume_to_tensor(v, device)),
            identity: field::identity_grid(f.grid.dims, device),
            labels: None,
        })
        .collect()
}

/// Pyramid levels a pipeline uses (the input counts as one).
pub fn pyramid_depth(p: &Pipeline, shift: usize) -> usize {
    shift + stages::depth(p)
}

/// Pyramid levels skipped at the fine end (`Pipeline::finest_mm`): the
/// stages work on voxels of about `finest_mm` at the finest, so a 1 mm
/// image with `finest_mm` 2 runs a 2 mm image's schedule and its field is
/// brought to full resolution. 0 when off or when the image is coarser.
pub fn level_shift(p: &Pipeline, grid: &Grid) -> usize {
    if p.finest_mm <= 0.0 {
        return 0;
    }
    let s = grid.spacing_mm();
    let mean = (s[0] * s[1] * s[2]).cbrt();
    if mean.is_nan() || mean <= 0.0 {
        return 0;
    }
    // Levels double the voxel size: the level nearest `finest_mm` on a log
    // scale (1.5 mm stays at 1.5 for 2; 1.2 mm goes to 2.4).
    (p.finest_mm / mean).log2().round().clamp(0.0, 4.0) as usize
}

/// The affine stage's pyramid levels (0 = full resolution), coarsest
/// first, among `available`.
pub fn affine_order(p: &Pipeline, shift: usize, available: usize) -> Vec<usize> {
    let last = available.saturating_sub(1);
    let lowest = shift.min(last);
    let top = (p.affine.coarsest + shift).min(last);
    (lowest..=top).rev().take(p.affine.levels).collect()
}

/// The deformable stage's pyramid levels, coarsest first, among `available`.
pub fn deformable_order(p: &Pipeline, shift: usize, available: usize) -> Vec<usize> {
    let lowest = shift.min(available.saturating_sub(1));
    let count = p.deformable.levels.min(available - lowest);
    (lowest..lowest + count).rev().collect()
}

/// Smoothing-and-halving pyramid with `count` levels (0 = input).
pub fn pyramid(v: &Volume, count: usize) -> Vec<Volume> {
    gaussian_pyramid(v, count, DEFAULT_SIGMA_VOX)
}

/// Run a pipeline. Input problems are returned as errors before anything
/// runs; a failure during the run (a NaN loss, the device running out of
/// memory, a stop request) ends it with the last good result and a status.
pub fn register(
    inputs: &Inputs,
    pipeline: Pipeline,
    device: &Device,
    link: Link,
) -> Result<Outcome, EngineError> {
    pipeline.validate()?;
    let started = std::time::Instant::now();
    let (fixed, moving, mask) = prepare(inputs, pipeline.normalize)?;
    let labels = if pipeline.deformable.dice > 0.0 {
        let l = inputs.labels.as_ref().ok_or_else(|| {
            EngineError(
                "deformable.dice needs the label maps of both images (--fixed-labels and --moving-labels)"
                    .into(),
            )
        })?;
        Some(one_hot_labels(l, &fixed.grid)?)
    } else {
        None
    };
    let prepare_seconds = started.elapsed().as_secs_f64();
    let mut runner = Runner::new(pipeline.clone(), device.clone(), link);
    let mut outcome = Outcome {
        prepare_seconds,
        ..Outcome::blank(pipeline.clone(), &device::describe(device))
    };
    let kernels = gpu_kernels(&pipeline, device, &runner);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut ctx = stages::Context::new(
            &mut runner,
            &fixed,
            &moving,
            mask.as_ref(),
            &mut outcome,
            kernels,
        )
        .with_labels(labels.as_ref());
        stages::run_all(&mut ctx)
    }));
    outcome.status = match result {
        Ok(Ok(())) => Status::Completed,
        Ok(Err(Halt::Stopped)) => Status::Stopped,
        Ok(Err(Halt::Failed(m))) => Status::Failed(m),
        Err(panic) => Status::Failed(device_failure(&panic_message(&panic))),
    };
    outcome.final_terms = runner.last_terms.clone();
    outcome.final_total = runner.last_total;
    outcome.iterations = runner.iterations_done;
    outcome.pipeline = runner.pipeline.clone();
    Ok(outcome)
}

/// The GPU kernels for this run, where the device is a GPU that can run
/// them and they compute the pipeline (`fused`, the default); otherwise
/// `None` (the CPU's fused kernels, or the composed tensor path), with a
/// notice saying why when a GPU run falls back.
fn gpu_kernels(
    pipeline: &Pipeline,
    device: &Device,
    runner: &Runner,
) -> Option<std::sync::Arc<crate::gpu::engine::Gpu>> {
    if !pipeline.fused {
        return None;
    }
    match crate::gpu::engine::for_device(device)? {
        Ok(gpu) => match crate::gpu::engine::run::supported(pipeline) {
            Ok(()) => Some(gpu),
            Err(why) => {
                runner.send(crate::gpu::engine::run::refusal_notice(&why));
                None
            }
        },
        Err(why) => {
            runner.send(crate::gpu::engine::run::refusal_notice(&format!(
                "the engine's GPU kernels cannot run on this device: {why}"
            )));
            None
        }
    }
}

/// A device failure as the user reads it: the root cause of a chain of
/// errors ("Caused by: …", as burn and cubecl report them), and allocation
/// failures (memory exhausted, a buffer beyond the device's limits) named
/// as such. The whole chain goes to the standard error by the panic hook.
pub fn device_failure(message: &str) -> String {
    let cause = message
        .rsplit("Caused by:")
        .next()
        .map(|tail| {
            tail.lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("No backtrace") && !l.starts_with("Asked at"))
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| message.to_string());
    let lower = message.to_ascii_lowercase();
    let allocation = [
        "out of memory",
        "outofmemory",
        "allocat",
        "buffer size",
        "too large",
        "too big",
    ]
    .iter()
    .any(|k| lower.contains(k));
    if allocation {
        format!(
            "the compute device ran out of memory (an allocation was refused; try the CPU \
             device or a coarser image): {cause}"
        )
    } else {
        format!("the compute device failed: {cause}")
    }
}

pub fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown error".into()
    }
}

/// A stage's end: its seconds since `t0` (the runner's [`Runner::active_s`]
/// at its start: paused time is left out).
pub(crate) fn stage_done(runner: &Runner, outcome: &mut Outcome, name: &str, t0: f64) {
    let s = runner.active_s() - t0;
    outcome.stage_seconds.push((name.to_string(), s));
    runner.send(Event::StageDone {
        stage: name.to_string(),
        seconds: s,
    });
}

#[cfg(test)]
mod tests {
    use super::device_failure;

    #[test]
    fn finest_mm_shifts_the_schedule_on_fine_images() {
        use super::{Pipeline, affine_order, deformable_order, level_shift};
        use crate::volume::{Grid, affine};
        let grid = |mm: f64| Grid::new([100, 100, 100], affine::diagonal([mm; 3]));
        let fast = Pipeline::preset("fast").expect("fast");
        assert_eq!(fast.finest_mm, 2.0);
        // 2.02 mm (the shared pairs) stays at full resolution; 1 mm and
        // 1.2 mm move one level, 0.5 mm two; 1.5 mm and 3 mm none.
        for (mm, shift) in [(2.02, 0), (1.0, 1), (1.2, 1), (1.5, 0), (0.5, 2), (3.0, 0)] {
            assert_eq!(level_shift(&fast, &grid(mm)), shift, "{mm} mm");
        }
        let off = Pipeline::preset("lumir").expect("lumir");
        assert_eq!(level_shift(&off, &grid(0.5)), 0);
        // fast: affine from level 2 over three levels, deformable three levels.
        assert_eq!(affine_order(&fast, 0, 6), [2, 1, 0]);
        assert_eq!(deformable_order(&fast, 0, 6), [2, 1, 0]);
        assert_eq!(affine_order(&fast, 1, 6), [3, 2, 1]);
        assert_eq!(deformable_order(&fast, 1, 6), [3, 2, 1]);
        // A short pyramid clips at its coarsest level.
        assert_eq!(deformable_order(&fast, 1, 3), [2, 1]);
        assert_eq!(affine_order(&fast, 1, 3), [2, 1]);
    }

    #[test]
    fn device_failures_name_their_root_cause() {
        let chain = "Error while reading data: An error happened during execution\nCaused by:\n  \
                     Several failures at once\nCaused by:\n  An IO error happened\nCaused by:\n  \
                     can't allocate buffer of size: 134873088\nNo backtrace available\nAsked at:\n";
        assert_eq!(
            device_failure(chain),
            "the compute device ran out of memory (an allocation was refused; try the CPU device \
             or a coarser image): can't allocate buffer of size: 134873088"
        );
        assert_eq!(
            device_failure("device lost"),
            "the compute device failed: device lost"
        );
    }
}
