//! Pipeline stages, each one [`Stage`]: its parameters (a serde section of
//! the pipeline, read and written by key through `register::keys`), their
//! checks and panel rows, its schedule of levels and iterations, and its
//! run on the device. A pipeline runs [`STAGES`] in order, each stage that
//! is enabled; the viewer builds its progress rows and its parameter panel
//! from the same list. A new method is one file here implementing
//! [`Stage`], one line in [`STAGES`], and its parameter section in
//! `Pipeline`.
//!
//! Stages hand each other their results through the [`Context`]: the
//! affine matrix and the displacement field (voxels of the fixed grid).

pub mod affine;
pub mod context;
pub mod deformable;
pub mod dip;
pub mod ic;
pub mod initial;
pub mod native;
pub mod network;

pub use context::Context;

use super::params::{ParamError, Pipeline};
use super::session::Halt;

/// A parameter as the panel shows it: its key (as `--set` takes it), a
/// label and a tooltip; `choices` lists the words a word-valued key takes
/// (drawn as radio buttons); a boolean key is drawn as a checkbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub key: String,
    pub label: String,
    pub help: &'static str,
    pub choices: &'static [&'static str],
    /// For a path: the file extensions the panel's file dialog offers.
    pub files: &'static [&'static str],
}

impl Row {
    pub fn new(key: &str, label: &str, help: &'static str) -> Row {
        Row {
            key: key.to_string(),
            label: label.to_string(),
            help,
            choices: &[],
            files: &[],
        }
    }

    pub fn choices(self, choices: &'static [&'static str]) -> Row {
        Row { choices, ..self }
    }

    /// A file's path: the panel adds a button that opens a file dialog.
    pub fn files(self, files: &'static [&'static str]) -> Row {
        Row { files, ..self }
    }
}

/// The similarity weights of `stage` (labels name the stage: unique).
pub fn similarity_rows(stage: &str) -> Vec<Row> {
    [
        ("mse", "mse", "Weight of mean squared error"),
        ("ncc", "ncc", "Weight of global NCC (1 − NCC)"),
        ("lncc", "lncc", "Weight of local NCC (1 − LNCC)"),
        ("mi", "mi", "Weight of Parzen mutual information (−MI)"),
        (
            "window",
            "window",
            "Local NCC window edge in voxels (odd, 1–31)",
        ),
        (
            "mi_bins",
            "mi bins",
            "Mutual-information histogram bins (4–256)",
        ),
    ]
    .into_iter()
    .map(|(k, l, h)| Row::new(&format!("{stage}.{k}"), &format!("{stage} {l}"), h))
    .collect()
}

/// One level of a stage's schedule (the viewer's progress rows).
#[derive(Clone, Debug, PartialEq)]
pub struct Planned {
    /// The name its progress reports carry.
    pub stage: &'static str,
    pub level: usize,
    pub levels: usize,
    /// Pyramid level (0 = full resolution).
    pub pyramid: usize,
    pub iterations: usize,
}

/// Levels `0..n` of one stage, coarsest first: pyramid level `n - 1 - i`.
pub fn coarse_to_fine(stage: &'static str, iterations: &[usize]) -> Vec<Planned> {
    let n = iterations.len();
    iterations
        .iter()
        .enumerate()
        .map(|(i, &it)| Planned {
            stage,
            level: i,
            levels: n,
            pyramid: n - 1 - i,
            iterations: it,
        })
        .collect()
}

/// A per-level iteration list made `levels` long after a level count
/// changed: the last value repeated (`default` when there is none).
pub fn resize_per_level(list: &mut Vec<usize>, levels: usize, default: usize) {
    let last = list.last().copied().unwrap_or(default);
    list.resize(levels, last);
}

/// Refuse an iteration list without one value per level.
pub fn check_iterations(name: &str, list: &[usize], levels: usize) -> Result<(), ParamError> {
    if list.len() != levels {
        return Err(ParamError(format!(
            "{name} has {} value(s) for {levels} level(s)",
            list.len()
        )));
    }
    Ok(())
}

/// One method of the pipeline.
pub trait Stage: Sync {
    /// Its section of the pipeline: the `--set` prefix (`dip.levels`) and
    /// the session file's key.
    fn key(&self) -> &'static str;
    /// What the panel calls it next to its `enabled` box.
    fn title(&self) -> &'static str;
    /// Whether it runs in `p`.
    fn runs(&self, p: &Pipeline) -> bool;
    /// Whether the panel shows its parameters (it runs, or another stage
    /// that runs reads them).
    fn shown(&self, p: &Pipeline) -> bool {
        self.runs(p)
    }
    /// Pyramid levels it needs (the input counts as one).
    fn depth(&self, _p: &Pipeline) -> usize {
        1
    }
    /// Its levels and iterations, in the order it runs them.
    fn schedule(&self, p: &Pipeline) -> Vec<Planned>;
    /// Its parameters as the panel shows them (besides `enabled`).
    fn rows(&self, p: &Pipeline) -> Vec<Row>;
    /// Refuse nonsense in its section (checked whether it runs or not: a
    /// disabled stage's values are saved with the run).
    fn validate(&self, p: &Pipeline) -> Result<(), ParamError>;
    /// The names in its section that may change during a run (weights and
    /// learning rates: read by the running optimiser at each iteration);
    /// the others apply to the next run.
    fn live(&self) -> &'static [&'static str] {
        &[]
    }
    /// Keep its section consistent after `name` was set (a level count
    /// resizes its per-level lists).
    fn after_set(&self, _p: &mut Pipeline, _name: &str) {}
    /// Run it: read the images, the affine and the field so far from
    /// `ctx`, leave its results there.
    fn run(&self, ctx: &mut Context) -> Result<(), Halt>;
    /// The name its time is reported under.
    fn report_name(&self) -> &'static str {
        self.key()
    }
}

/// Every stage, in the order a pipeline runs them.
pub static STAGES: [&dyn Stage; 6] = [
    &affine::Affine,
    &network::Network,
    &initial::Initial,
    &deformable::Deformable,
    &dip::Dip,
    &ic::Ic,
];

/// The stage whose section is `key`.
pub fn by_key(key: &str) -> Option<&'static dyn Stage> {
    STAGES.iter().copied().find(|s| s.key() == key)
}

/// The whole schedule of `p`: every running stage's levels, in order.
pub fn schedule(p: &Pipeline) -> Vec<Planned> {
    STAGES
        .iter()
        .filter(|s| s.runs(p))
        .flat_map(|s| s.schedule(p))
        .collect()
}

/// Pyramid levels the running stages need.
pub fn depth(p: &Pipeline) -> usize {
    STAGES
        .iter()
        .filter(|s| s.runs(p))
        .map(|s| s.depth(p))
        .max()
        .unwrap_or(1)
}

/// Run every enabled stage in order; each stage's time (and GPU kernel
/// dispatches) is recorded as it ends, also when it halts the run.
pub fn run_all(ctx: &mut Context) -> Result<(), Halt> {
    let p = ctx.runner.pipeline.clone();
    for stage in STAGES.iter().filter(|s| s.runs(&p)) {
        let t = ctx.runner.active_s();
        let d0 = ctx.dispatches();
        let r = stage.run(ctx);
        ctx.stage_end(stage.report_name(), t, d0);
        r?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stage keys are the pipeline's sections, once each.
    #[test]
    fn every_stage_has_its_section() {
        let p = Pipeline::preset("fast").expect("fast");
        let json = p.to_json();
        for (i, s) in STAGES.iter().enumerate() {
            assert!(json.get(s.key()).is_some(), "{} has no section", s.key());
            assert!(
                STAGES[..i].iter().all(|o| o.key() != s.key()),
                "{} twice",
                s.key()
            );
            for row in s.rows(&p) {
                assert!(
                    p.value_of(&row.key).is_some(),
                    "{}: panel row {} is not a key",
                    s.key(),
                    row.key
                );
            }
        }
    }
}
