//! What the stages of one run share: the prepared images (their pyramids
//! built on first use, the moving one seen through the current affine),
//! the runner (live pipeline, device, events), the outcome so far, and the
//! engine's GPU kernels where they serve this run. The field between two
//! stages lives in `outcome.field_vox` (voxels of the fixed grid), with the
//! device copy the last stage left (a burn tensor, or the kernels'
//! buffers) kept so the next stage on the same path does not upload it.

use std::borrow::Cow;
use std::sync::Arc;

use burn::tensor::Tensor;

use crate::gpu::engine::run::{Images, Level as GpuLevel};
use crate::gpu::engine::{Buf, Gpu};
use crate::register::session::{Halt, Runner};
use crate::register::{Level, Outcome, levels, pyramid, tensor_to_volume, volume_to_tensor};
use crate::volume::affine::{self, Mat4};
use crate::volume::resample::{Border, Interp, resample_index_map};
use crate::volume::{Grid, Volume};

/// Disjoint borrows of a context for a stage's run: the runner, the
/// levels, the outcome so far and the prepared images.
pub struct Parts<'c, L> {
    pub runner: &'c mut Runner,
    pub levels: &'c [L],
    pub outcome: &'c mut Outcome,
    pub fixed: &'c Volume,
    pub mask: Option<&'c Volume>,
}

/// The kernels with the parts of a context.
pub type GpuParts<'c> = (Arc<Gpu>, Parts<'c, GpuLevel>);

pub struct Context<'a> {
    pub runner: &'a mut Runner,
    pub fixed: &'a Volume,
    pub moving: &'a Volume,
    pub mask: Option<&'a Volume>,
    pub outcome: &'a mut Outcome,
    /// The engine's GPU kernels, where they compute this run's stages.
    pub kernels: Option<Arc<Gpu>>,
    depth: usize,
    fixed_pyr: Option<(Vec<Volume>, Option<Vec<Volume>>)>,
    /// Burn levels, with the affine the moving image was seen through.
    levels: Option<(Mat4, Vec<Level>)>,
    gpu_images: Option<Images>,
    /// The device copies of `outcome.field_vox`, where a stage left one.
    field: Option<Tensor<2>>,
    gpu_field: Option<[Buf; 3]>,
    /// One-hot label maps (fixed, moving) on the fixed grid, for the Dice loss.
    labels: Option<&'a (Volume, Volume)>,
}

/// `v` (on the fixed grid) seen through the affine `a` (voxels of that
/// grid): itself for the identity.
fn through<'v>(v: &'v Volume, grid: &Grid, a: &Mat4) -> Cow<'v, Volume> {
    if *a == affine::IDENTITY {
        Cow::Borrowed(v)
    } else {
        Cow::Owned(resample_index_map(
            v,
            grid,
            a,
            Interp::Linear,
            Border::Constant(0.0),
        ))
    }
}

fn failed(e: String) -> Halt {
    Halt::Failed(e)
}

impl<'a> Context<'a> {
    pub fn new(
        runner: &'a mut Runner,
        fixed: &'a Volume,
        moving: &'a Volume,
        mask: Option<&'a Volume>,
        outcome: &'a mut Outcome,
        kernels: Option<Arc<Gpu>>,
    ) -> Self {
        let p = &runner.pipeline;
        let depth = crate::register::pyramid_depth(p, crate::register::level_shift(p, &fixed.grid));
        Context {
            runner,
            fixed,
            moving,
            mask,
            outcome,
            kernels,
            depth,
            fixed_pyr: None,
            levels: None,
            gpu_images: None,
            field: None,
            gpu_field: None,
            labels: None,
        }
    }

    /// With label maps (one-hot, on the fixed grid): each level carries
    /// them, the moving ones seen through the affine as the image is.
    pub fn with_labels(mut self, labels: Option<&'a (Volume, Volume)>) -> Self {
        self.labels = labels;
        self
    }

    /// GPU kernel dispatches so far (0 off the kernels).
    pub fn dispatches(&self) -> u64 {
        self.kernels.as_ref().map_or(0, |g| g.dispatch_count())
    }

    /// A stage's end: its seconds since `t` and dispatches since `d0`.
    pub fn stage_end(&mut self, name: &str, t: f64, d0: u64) {
        if self.kernels.is_some() {
            self.outcome
                .stage_dispatches
                .push((name.to_string(), self.dispatches() - d0));
        }
        crate::register::stage_done(self.runner, self.outcome, name, t);
    }

    /// The pyramid levels on the engine's burn device, the moving image
    /// seen through the current affine (the runner is told which), with
    /// the rest of the context.
    pub fn levels(&mut self) -> Parts<'_, Level> {
        let a = self.outcome.affine_vox;
        self.runner.affine_vox = a;
        let stale = self.levels.as_ref().is_none_or(|(b, _)| *b != a);
        if stale {
            let depth = self.depth;
            let fixed = self.fixed;
            let mask = self.mask;
            let (fixed_pyr, mask_pyr) = self
                .fixed_pyr
                .get_or_insert_with(|| (pyramid(fixed, depth), mask.map(|m| pyramid(m, depth))));
            let moving_pyr = pyramid(&through(self.moving, &fixed.grid, &a), depth);
            let mut lv = levels(
                fixed_pyr,
                &moving_pyr,
                mask_pyr.as_deref(),
                &self.runner.device,
            );
            // Every level's Dice loss compares the full-resolution maps.
            if let Some((lf, lm)) = self.labels {
                let device = &self.runner.device;
                let (f, m) = (
                    volume_to_tensor(lf, device),
                    volume_to_tensor(&through(lm, &fixed.grid, &a), device),
                );
                // Level 0 is the fixed grid itself.
                let identity = lv[0].identity.clone();
                for l in lv.iter_mut() {
                    let maps = if l.grid.same_as(&fixed.grid) {
                        None
                    } else {
                        super::deformable::level_maps(&l.grid, &fixed.grid)
                    };
                    l.labels = Some(crate::register::LevelLabels {
                        fixed: f.clone(),
                        moving: m.clone(),
                        grid: fixed.grid.clone(),
                        identity: identity.clone(),
                        maps,
                    });
                }
            }
            self.levels = Some((a, lv));
        }
        Parts {
            runner: self.runner,
            levels: self.levels.as_ref().map_or(&[][..], |(_, l)| l.as_slice()),
            outcome: self.outcome,
            fixed: self.fixed,
            mask: self.mask,
        }
    }

    /// The kernels' levels (as [`Context::levels`]), with the kernels and
    /// the runner; `None` when the kernels do not serve this run.
    pub fn gpu_levels(&mut self) -> Result<Option<GpuParts<'_>>, Halt> {
        let Some(gpu) = self.kernels.clone() else {
            return Ok(None);
        };
        let a = self.outcome.affine_vox;
        self.runner.affine_vox = a;
        if self.gpu_images.is_none() {
            let images = Images::upload(&gpu, self.fixed, self.moving, self.mask, self.depth)
                .map_err(failed)?;
            self.gpu_images = Some(images);
        }
        let Some(images) = self.gpu_images.as_mut() else {
            return Ok(None);
        };
        let lv = images.levels(&gpu, &a).map_err(failed)?;
        Ok(Some((
            gpu,
            Parts {
                runner: self.runner,
                levels: lv,
                outcome: self.outcome,
                fixed: self.fixed,
                mask: self.mask,
            },
        )))
    }

    /// The fixed image, and the moving one seen through the current affine
    /// (both normalised, on the fixed grid).
    pub fn images_through_affine(&self) -> (&'a Volume, Cow<'a, Volume>) {
        let a = self.outcome.affine_vox;
        (self.fixed, through(self.moving, &self.fixed.grid, &a))
    }

    /// The field so far on the burn device (voxels of the fixed grid).
    pub fn field(&self) -> Option<Tensor<2>> {
        self.field.clone().or_else(|| {
            self.outcome
                .field_vox
                .as_ref()
                .map(|v| volume_to_tensor(v, &self.runner.device))
        })
    }

    /// A stage's field on the burn device becomes the result so far.
    pub fn set_field(&mut self, u: Tensor<2>) {
        self.outcome.field_vox = tensor_to_volume(u.clone(), &self.fixed.grid).ok();
        self.field = Some(u);
        self.gpu_field = None;
    }

    /// The field so far in the kernels' buffers.
    pub fn gpu_field(&mut self) -> Result<Option<[Buf; 3]>, Halt> {
        if let Some(b) = &self.gpu_field {
            return Ok(Some(b.clone()));
        }
        let (Some(gpu), Some(v)) = (&self.kernels, &self.outcome.field_vox) else {
            return Ok(None);
        };
        let bufs = crate::gpu::engine::run::upload_field(gpu, v).map_err(failed)?;
        self.gpu_field = Some(bufs.clone());
        Ok(Some(bufs))
    }

    /// A stage's field in the kernels' buffers (and read back as `host`)
    /// becomes the result so far.
    pub fn set_gpu_field(&mut self, u: [Buf; 3], host: Volume) {
        self.outcome.field_vox = Some(host);
        self.gpu_field = Some(u);
        self.field = None;
    }

    /// The one-hot label maps (fixed, moving) on the fixed grid, if the
    /// run has them.
    pub fn labels(&self) -> Option<&'a (Volume, Volume)> {
        self.labels
    }

    /// The host field was replaced by a stage that keeps no device copy.
    pub fn field_changed(&mut self) {
        self.field = None;
        self.gpu_field = None;
    }
}
