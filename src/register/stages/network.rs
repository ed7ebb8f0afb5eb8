//! The learned initial field (methods.md §1 step 3, the paper's LapIRN
//! step; section `network`): after the affine stage, a trained network
//! ([`crate::register::model`]) predicts the field from the pair in one
//! forward pass, and the stages after it (the deformable IO, the IC
//! weighting) start from it.

use serde::{Deserialize, Serialize};

use super::{Context, Planned, Row, Stage};
use crate::register::model::{BUILTIN, Model, predict};
use crate::register::params::{ParamError, Pipeline};
use crate::register::session::{Halt, SnapshotField};
use crate::register::tensor_to_volume;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkParams {
    pub enabled: bool,
    /// `builtin` (the model shipped with Warpscope) or a `.wsm` file's path.
    pub model: String,
}

impl Default for NetworkParams {
    fn default() -> Self {
        NetworkParams {
            enabled: false,
            model: BUILTIN.into(),
        }
    }
}

pub struct Network;

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
        ]
    }

    fn validate(&self, p: &Pipeline) -> Result<(), ParamError> {
        if p.network.model.trim().is_empty() {
            return Err(ParamError(
                "network.model is empty: give 'builtin' or a model file's path".into(),
            ));
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
