//! The initial field of methods.md §1 step 3 (section `initial`): the
//! deformable stage starts from a field, not the identity. The paper's
//! comes from a network (LapIRN); here another preset's deformable stage
//! (our best conventional result) provides it.

use super::deformable::run_in;
use super::{Context, Planned, Row, Stage, coarse_to_fine};
use crate::register::params::{InitialParams, ParamError, Pipeline};
use crate::register::session::Halt;

pub struct Initial;

impl Stage for Initial {
    fn key(&self) -> &'static str {
        "initial"
    }

    fn title(&self) -> &'static str {
        "initial field (another preset's deformable stage)"
    }

    /// Only as the start of the deformable stage.
    fn runs(&self, p: &Pipeline) -> bool {
        p.initial.enabled && p.deformable.enabled
    }

    fn depth(&self, p: &Pipeline) -> usize {
        p.initial_pipeline().map_or(1, |i| i.deformable.levels)
    }

    fn schedule(&self, p: &Pipeline) -> Vec<Planned> {
        p.initial_pipeline()
            .map(|i| coarse_to_fine("initial", &i.deformable.iterations))
            .unwrap_or_default()
    }

    fn rows(&self, _p: &Pipeline) -> Vec<Row> {
        vec![Row::new(
            "initial.preset",
            "initial preset",
            "The preset whose deformable stage gives the starting field",
        )]
    }

    fn validate(&self, p: &Pipeline) -> Result<(), ParamError> {
        if p.initial.enabled || p.initial.preset != InitialParams::default().preset {
            p.initial_pipeline()?;
        }
        Ok(())
    }

    fn run(&self, ctx: &mut Context) -> Result<(), Halt> {
        let stage = ctx
            .runner
            .pipeline
            .initial_stage()
            .map_err(|e| Halt::Failed(e.0))?;
        let main = std::mem::replace(&mut ctx.runner.pipeline, stage);
        let r = run_in(ctx, "initial");
        ctx.runner.pipeline = main;
        r
    }
}
