//! The learned initial field (methods.md §1 step 3, the paper's LapIRN
//! step; section `network`): after the affine stage, a trained network
//! ([`crate::register::model`]) predicts the field from the pair in one
//! forward pass, and the stages after it (the deformable IO, the IC
//! weighting) start from it.

use serde::{Deserialize, Serialize};

use super::{Context, Planned, Row, Stage};
use crate::register::model::{BUILTIN, Model, predict};
use crate::register::params::{MAX_SMOOTH, ParamError, Pipeline};
use crate::register::session::{Halt, SnapshotField};
use crate::register::smoothing;
use crate::register::tensor_to_volume;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkParams {
    pub enabled: bool,
    /// `builtin` (the model shipped with Warpscope) or a `.wsm` file's path.
    pub model: String,
    /// Gaussian σ (mm) of the smoothing of the predicted field before the
    /// stages after it start from it; 0 = the prediction as it is. The
    /// prediction's fine-scale detail fits intensities more than anatomy,
    /// and a start held apart from the regulariser (`deformable.start =
    /// residual`) keeps it. `brats-ic` smooths at 4 mm: better than the
    /// raw prediction on every pair measured; 8 mm was better still on
    /// some but shrank a 12 mm shift enough to lose it (README, "Start
    /// field held or not").
    #[serde(default)]
    pub smooth_mm: f64,
}

impl Default for NetworkParams {
    fn default() -> Self {
        NetworkParams {
            enabled: false,
            model: BUILTIN.into(),
            smooth_mm: 0.0,
        }
    }
}

pub struct Network;

/// Smooth the three components of a field volume with a Gaussian of σ mm
/// (per axis in voxels of its grid); σ = 0 leaves it as it is.
fn smooth(u: &mut crate::volume::Volume, sigma_mm: f64) {
    if let Some(r) = smoothing::radii_mm(sigma_mm, u.grid.spacing_mm()) {
        let dims = u.grid.dims;
        smoothing::field_in_place(&r, &mut u.data, dims, &mut Vec::new());
    }
}

impl Stage for Network {
    fn key(&self) -> &'static str {
        "network"
    }

    fn title(&self) -> &'static str {
        "learned initial field (a trained network)"
    }

    fn runs(&self, p: &Pipeline) -> bool {
        p.network.enabled
    }

    /// One forward pass: a single step in the progress rows.
    fn schedule(&self, _p: &Pipeline) -> Vec<Planned> {
        vec![Planned {
            stage: "network",
            level: 0,
            levels: 1,
            pyramid: 0,
            iterations: 1,
        }]
    }

    fn rows(&self, _p: &Pipeline) -> Vec<Row> {
        vec![
            Row::new(
                "network.model",
                "model",
                "'builtin' (the model shipped with Warpscope, trained on MNI pairs) or a .wsm file \
             written by `warpscope train`",
            )
            .files(&["wsm"]),
            Row::new(
                "network.smooth_mm",
                "smoothing σ (mm)",
                "Gaussian σ of the predicted field's smoothing before the next stages start from \
                 it; 0 = off",
            ),
        ]
    }

    fn validate(&self, p: &Pipeline) -> Result<(), ParamError> {
        if p.network.model.trim().is_empty() {
            return Err(ParamError(
                "network.model is empty: give 'builtin' or a model file's path".into(),
            ));
        }
        let s = p.network.smooth_mm;
        if !(s.is_finite() && (0.0..=MAX_SMOOTH).contains(&s)) {
            return Err(ParamError(format!(
                "network.smooth_mm = {s} must be a σ in mm between 0 (off) and {MAX_SMOOTH}"
            )));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut Context) -> Result<(), Halt> {
        let name = ctx.runner.pipeline.network.model.clone();
        let model = Model::open(&name).map_err(|e| Halt::Failed(e.0))?;
        let device = ctx.runner.device.clone();
        let (fixed, moving) = ctx.images_through_affine();
        let prediction = predict::predict(&model, fixed, &moving, &device).map_err(Halt::Failed)?;
        let d = prediction.dissimilarity;
        ctx.runner
            .report("network", 0, 1, 1, 1, vec![("lncc".into(), d)], d, vec![]);
        let mut u = prediction.field;
        smooth(&mut u, ctx.runner.pipeline.network.smooth_mm);
        // After a field already there (none in the presets: only the
        // affine stage comes before), the network's map comes first.
        if let Some(u0) = ctx.field() {
            let lv = ctx.levels();
            let level = &lv.levels[0];
            let r = crate::register::volume_to_tensor(&u, &device);
            let c = crate::register::field::compose(u0, r, level.dims(), level.identity.clone());
            u = tensor_to_volume(c, &level.grid).map_err(|e| Halt::Failed(e.to_string()))?;
        }
        if ctx.runner.take_snapshot_request() || ctx.runner.wants_events() {
            ctx.runner.affine_vox = ctx.outcome.affine_vox;
            let grid = ctx.fixed.grid.clone();
            ctx.runner
                .send_snapshot("network", 0, 1, &grid, SnapshotField::Host(u.clone()));
        }
        ctx.outcome.field_vox = Some(u);
        ctx.field_changed();
        Ok(())
    }
}
