//! A parameter change during a run: parsed and checked once, where the user
//! typed it (the viewer's panel, a re-run's replay read from history), then
//! carried typed to the engine, back in its progress reports, and onto the
//! viewer's copy of the running pipeline. Weights and learning rates only:
//! structural parameters (levels, units, SVF, window) need a new run.

use super::params::{ParamError, Pipeline};

/// A parameter change for a running registration.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// How many more iterations the running level makes.
    IterationsLeft(usize),
    /// A weight or learning rate a stage declares live
    /// ([`crate::register::stages::Stage::live`]): one value, or for a
    /// per-level list one per level (the last repeated).
    Weight { key: String, values: Vec<f64> },
}

/// Whether `key` is one that may change during a run (besides
/// `iterations_left`, which concerns the running level only): the stage
/// owning it says so.
pub fn is_live_key(key: &str) -> bool {
    key.split_once('.').is_some_and(|(section, name)| {
        super::stages::by_key(section).is_some_and(|s| s.live().contains(&name))
    })
}

impl Change {
    /// Parse `key=value` as typed (`iterations_left` or a live key); the
    /// values must suit the parameter (one number for a single value).
    pub fn parse(key: &str, value: &str) -> Result<Self, ParamError> {
        let value = value.trim();
        let bad = |what: &str| ParamError(format!("{key}={value}: {what}"));
        if key == "iterations_left" {
            return value
                .parse()
                .map(Change::IterationsLeft)
                .map_err(|_| bad("expected a whole number"));
        }
        if !is_live_key(key) {
            return Err(bad(
                "only weights, learning rates and iterations_left can change during a run",
            ));
        }
        let values = value
            .split(',')
            .map(|s| s.trim().parse::<f64>().ok().filter(|v| v.is_finite()))
            .collect::<Option<Vec<f64>>>()
            .ok_or_else(|| bad("expected finite numbers"))?;
        // The shape (a single value or a list) as the parameter has it.
        let mut probe = Pipeline::preset("fast")?;
        probe.set(key, value)?;
        Ok(Change::Weight {
            key: key.to_string(),
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
            Change::Weight { key, .. } => key.clone(),
        }
    }

    fn value(&self) -> String {
        match self {
            Change::IterationsLeft(n) => n.to_string(),
            Change::Weight { values, .. } => values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// `p` with the change made (weights only: `iterations_left` leaves it
    /// as it is), checked as a whole.
    pub fn applied_to(&self, p: &Pipeline) -> Result<Pipeline, ParamError> {
        let mut next = p.clone();
        if let Change::Weight { key, .. } = self {
            next.set(key, &self.value())?;
        }
        next.validate()?;
        Ok(next)
    }

    /// Make the change in `p` (the engine and the viewer apply changes
    /// that [`Change::applied_to`] accepted; one it refuses leaves `p`).
    pub fn apply(&self, p: &mut Pipeline) {
        if let Change::Weight { key, .. } = self {
            let mut next = p.clone();
            if next.set(key, &self.value()).is_ok() {
                *p = next;
            }
        }
    }
}

/// `key=value`, as `--set` takes it.
impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.key(), self.value())
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
            ("dip.lr", "3e-4,1e-4,1e-4"),
            ("dip.smoothness", "0.5"),
            ("dip.lncc", "0.8"),
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
            ("dip.features", "16"),
            ("ic.power", "3"),
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
