//! A parameter change during a run: parsed and checked once, where the user
//! typed it (the viewer's panel, a re-run's replay read from history), then
//! carried typed to the engine, back in its progress reports, and onto the
//! viewer's copy of the running pipeline. Weights and learning rates only:
//! structural parameters (levels, units, SVF, window) need a new run.

use super::params::{ParamError, Pipeline};

/// The stage a live weight belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveStage {
    Affine,
    Deformable,
}

/// A weight or learning rate that may change between two iterations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveTerm {
    Mse,
    Ncc,
    Lncc,
    Mi,
    /// Deformable only; one value per level.
    Diffusion,
    /// Deformable only.
    Jacobian,
    /// Deformable only.
    InverseConsistency,
    /// The learning rate (deformable: one value per level).
    Lr,
}

impl LiveTerm {
    const ALL: [LiveTerm; 8] = [
        LiveTerm::Mse,
        LiveTerm::Ncc,
        LiveTerm::Lncc,
        LiveTerm::Mi,
        LiveTerm::Diffusion,
        LiveTerm::Jacobian,
        LiveTerm::InverseConsistency,
        LiveTerm::Lr,
    ];

    fn name(self) -> &'static str {
        match self {
            LiveTerm::Mse => "mse",
            LiveTerm::Ncc => "ncc",
            LiveTerm::Lncc => "lncc",
            LiveTerm::Mi => "mi",
            LiveTerm::Diffusion => "diffusion",
            LiveTerm::Jacobian => "jacobian",
            LiveTerm::InverseConsistency => "inverse_consistency",
            LiveTerm::Lr => "lr",
        }
    }
}

/// A parameter change for a running registration.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// How many more iterations the running level makes.
    IterationsLeft(usize),
    /// A weight or learning rate: one value, or (deformable `lr` and
    /// `diffusion`) one per level, the last repeated.
    Weight {
        stage: LiveStage,
        term: LiveTerm,
        values: Vec<f64>,
    },
}

/// Whether `key` is one that may change during a run (besides
/// `iterations_left`, which concerns the running level only).
pub fn is_live_key(key: &str) -> bool {
    live_key(key).is_some()
}

fn live_key(key: &str) -> Option<(LiveStage, LiveTerm)> {
    let (stage, name) = key.split_once('.')?;
    let stage = match stage {
        "affine" => LiveStage::Affine,
        "deformable" => LiveStage::Deformable,
        _ => return None,
    };
    let term = LiveTerm::ALL.into_iter().find(|t| t.name() == name)?;
    let deformable_only = matches!(
        term,
        LiveTerm::Diffusion | LiveTerm::Jacobian | LiveTerm::InverseConsistency
    );
    (stage == LiveStage::Deformable || !deformable_only).then_some((stage, term))
}

impl Change {
    /// Parse `key=value` as typed (`iterations_left` or a live key).
    pub fn parse(key: &str, value: &str) -> Result<Self, ParamError> {
        let value = value.trim();
        let bad = |what: &str| ParamError(format!("{key}={value}: {what}"));
        if key == "iterations_left" {
            return value
                .parse()
                .map(Change::IterationsLeft)
                .map_err(|_| bad("expected a whole number"));
        }
        let Some((stage, term)) = live_key(key) else {
            return Err(bad(
                "only weights, learning rates and iterations_left can change during a run",
            ));
        };
        let per_level =
            stage == LiveStage::Deformable && matches!(term, LiveTerm::Lr | LiveTerm::Diffusion);
        let values = value
            .split(',')
            .map(|s| s.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect::<Option<Vec<f64>>>()
            .filter(|v| per_level || v.len() == 1)
            .ok_or_else(|| {
                bad(if per_level {
                    "expected finite numbers separated by commas"
                } else {
                    "expected a finite number"
                })
            })?;
        Ok(Change::Weight {
            stage,
            term,
            values,
        })
    }

    /// Parse a change as written by [`Change`]'s `Display` (`key=value`):
    /// a re-run reads them back from a run's history.
    pub fn parse_written(change: &str) -> Result<Self, ParamError> {
        let (key, value) = change
            .split_once('=')
            .ok_or_else(|| ParamError(format!("{change}: not a key=value change")))?;
        Self::parse(key, value)
    }

    pub fn key(&self) -> String {
        match self {
            Change::IterationsLeft(_) => "iterations_left".into(),
            Change::Weight { stage, term, .. } => {
                let s = match stage {
                    LiveStage::Affine => "affine",
                    LiveStage::Deformable => "deformable",
                };
                format!("{s}.{}", term.name())
            }
        }
    }

    /// `p` with the change made (weights only: `iterations_left` leaves it
    /// as it is), checked as a whole.
    pub fn applied_to(&self, p: &Pipeline) -> Result<Pipeline, ParamError> {
        let mut next = p.clone();
        self.apply(&mut next);
        next.validate()?;
        Ok(next)
    }

    /// Make the change in `p` (unchecked: the engine and the viewer apply
    /// changes that [`Change::applied_to`] accepted).
    pub fn apply(&self, p: &mut Pipeline) {
        let Change::Weight {
            stage,
            term,
            values,
        } = self
        else {
            return;
        };
        let first = values.first().copied().unwrap_or(0.0);
        let sim = match stage {
            LiveStage::Affine => &mut p.affine.sim,
            LiveStage::Deformable => &mut p.deformable.sim,
        };
        // `parse` gives the affine stage only its similarity weights and lr.
        match (term, stage) {
            (LiveTerm::Mse, _) => sim.mse = first,
            (LiveTerm::Ncc, _) => sim.ncc = first,
            (LiveTerm::Lncc, _) => sim.lncc = first,
            (LiveTerm::Mi, _) => sim.mi = first,
            (LiveTerm::Lr, LiveStage::Affine) => p.affine.lr = first,
            (LiveTerm::Lr, LiveStage::Deformable) => p.deformable.lr = values.clone(),
            (LiveTerm::Diffusion, _) => p.deformable.diffusion = values.clone(),
            (LiveTerm::Jacobian, _) => p.deformable.jacobian = first,
            (LiveTerm::InverseConsistency, _) => p.deformable.inverse_consistency = first,
        }
    }
}

/// `key=value`, as `--set` takes it.
impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::IterationsLeft(n) => write!(f, "iterations_left={n}"),
            Change::Weight { values, .. } => {
                let v: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                write!(f, "{}={}", self.key(), v.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_made_as_set_would_make_it() {
        let base = Pipeline::preset("fast").expect("preset");
        for (key, value) in [
            ("deformable.lncc", "0.5"),
            ("deformable.lr", "0.3,0.2,0.1"),
            ("deformable.diffusion", "0.25"),
            ("deformable.jacobian", "2"),
            ("deformable.inverse_consistency", "0.1"),
            ("affine.mse", "1.5"),
            ("affine.lr", "0.002"),
        ] {
            let typed = Change::parse(key, value)
                .and_then(|c| c.applied_to(&base))
                .expect(key);
            let mut by_set = base.clone();
            by_set.set(key, value).expect(key);
            assert_eq!(typed, by_set, "{key}={value}");
        }
    }

    #[test]
    fn written_changes_read_back_the_same() {
        for (key, value) in [
            ("deformable.lr", "0.3,0.2"),
            ("affine.ncc", "0.1"),
            ("iterations_left", "12"),
        ] {
            let c = Change::parse(key, value).expect(key);
            assert_eq!(c.to_string(), format!("{key}={value}"));
            assert_eq!(Change::parse_written(&c.to_string()), Ok(c));
        }
    }

    #[test]
    fn structural_keys_and_bad_values_are_refused() {
        for (key, value) in [
            ("deformable.levels", "2"),
            ("deformable.window", "5"),
            ("affine.diffusion", "1"),
            ("affine.lr", "0.1,0.2"),
            ("deformable.lncc", "nan"),
            ("deformable.lncc", "one"),
            ("iterations_left", "-3"),
        ] {
            assert!(Change::parse(key, value).is_err(), "{key}={value}");
        }
        assert!(Change::parse_written("deformable.lncc").is_err());
        let base = Pipeline::preset("fast").expect("preset");
        let negative = Change::parse("deformable.lncc", "-1").expect("parses");
        assert!(negative.applied_to(&base).is_err(), "validation refuses it");
    }
}
