//! Every hyperparameter of a registration pipeline, the named presets of
//! `methods.md`, and `key=value` overrides (CLI `--set`, GUI, session files).
//!
//! Units. Fields are in voxels of the fixed grid. A deformable stage may
//! instead optimise its field in *normalised* units — PyTorch
//! `grid_sample`'s convention, where one unit is half the image extent
//! (u_vox = u_norm · n/2 per axis) — because the papers' learning rates and
//! regulariser weights are stated in those units (e.g. methods.md §1's
//! diffusion weights 12 500 and 25 000). The regulariser and the Adam step
//! then act on the normalised field, exactly as in the paper.
//!
//! Per-level loss weights 1/2^(N−i) (methods.md §1) are not a parameter:
//! levels are optimised one after another with Adam, which is invariant to
//! a constant scale of the loss, so they would not change the result.

use serde::{Deserialize, Serialize};

/// Weighted sum of similarity terms (0 = off).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimilarityWeights {
    pub mse: f64,
    /// Global normalised cross-correlation (1 − NCC).
    pub ncc: f64,
    /// Local NCC over a cubic window (1 − LNCC).
    pub lncc: f64,
    /// Parzen-window mutual information (−MI).
    pub mi: f64,
    /// LNCC window edge in voxels (odd).
    pub window: usize,
    /// MI histogram bins.
    pub mi_bins: usize,
}

impl SimilarityWeights {
    pub fn lncc(window: usize) -> Self {
        Self {
            mse: 0.0,
            ncc: 0.0,
            lncc: 1.0,
            mi: 0.0,
            window,
            mi_bins: 32,
        }
    }
    pub fn mse() -> Self {
        Self {
            mse: 1.0,
            lncc: 0.0,
            ..Self::lncc(3)
        }
    }
}

/// What the deformable stage's parameters are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parametrisation {
    /// The displacement (or velocity, with `svf`) itself.
    #[default]
    Displacement,
    /// The log-derivative of the map along each axis, the three 1-D maps
    /// composed (`register::monotone`): no fold by construction.
    Gradient,
}

/// How the deformable stage takes a start field (the network's, the
/// initial preset's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartField {
    /// The start is the field's first value: the optimisation and its
    /// regularisation (smoothing, diffusion) act on the whole field, so a
    /// strongly regularised stage can smooth the start's detail away.
    #[default]
    Parameter,
    /// The start is held as it is and the stage optimises a residual
    /// added to it (u = u₀ + r); the smoothing and the diffusion act on r
    /// alone, so the start's detail stays (as ANTs keeps an initial
    /// transform out of SyN's regularisation). The moving image is still
    /// sampled once, through u₀ + r.
    Residual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldUnits {
    Voxel,
    #[serde(alias = "normalised")]
    Normalized,
}

/// Affine instance optimisation: the 3×4 matrix (in normalised coordinates
/// centred on the image, PyTorch `affine_grid`'s convention) is the parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AffineParams {
    pub enabled: bool,
    /// Coarsest pyramid level used (0 = full resolution, 2 = a quarter).
    pub coarsest: usize,
    /// Levels used, from `coarsest` towards full resolution.
    pub levels: usize,
    /// Adam iterations per level.
    pub iterations: usize,
    /// Learning rate (normalised units) at the coarsest level used, halved
    /// at each finer one.
    pub lr: f64,
    pub sim: SimilarityWeights,
}

/// Deformable instance optimisation of a dense field (or SVF).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeformableParams {
    pub enabled: bool,
    /// Pyramid levels, coarsest first, finest = full resolution.
    pub levels: usize,
    /// Adam iterations per level, coarse → fine.
    pub iterations: Vec<usize>,
    /// Learning rate per level (field units per step).
    pub lr: Vec<f64>,
    pub sim: SimilarityWeights,
    /// Diffusive regulariser weight per level.
    pub diffusion: Vec<f64>,
    /// Weight of the negative-Jacobian penalty mean(max(0, −det J)).
    pub jacobian: f64,
    pub units: FieldUnits,
    /// Optimise a stationary velocity field and integrate it.
    pub svf: bool,
    /// Scaling-and-squaring steps for the SVF.
    pub svf_steps: usize,
    /// Optimise both directions (fixed → moving and moving → fixed) with the
    /// similarity of each direction summed (methods.md §2, §5).
    pub symmetric: bool,
    /// Weight of the inverse-consistency loss between both directions.
    pub inverse_consistency: f64,
    /// Gaussian σ in mm of the smoothing applied to the gradient before each
    /// Adam step (FireANTs' `smooth_grad_sigma`): the extent over which the
    /// image evidence is pooled, a physical size, so it is stated in mm and
    /// one value fits 1 mm and 2 mm images; one per level or one for all;
    /// 0 = off.
    #[serde(default = "zero_list")]
    pub smooth_grad_mm: Vec<f64>,
    /// Gaussian σ in voxels of the level of the smoothing applied to the
    /// field after each Adam step (FireANTs' `smooth_warp_sigma`): applied
    /// at every iteration, it acts as a per-voxel regulariser (like the
    /// diffusion weight), so it is stated in voxels; one per level or one
    /// for all; 0 = off.
    #[serde(default = "zero_list")]
    pub smooth_warp_vox: Vec<f64>,
    /// Multi-step refinement (methods.md §5): after the first run, register
    /// the moving image warped by the field so far again, from the
    /// identity, and compose; this many runs in all (1 = off).
    #[serde(default = "one")]
    pub steps: usize,
    /// Weight of the Dice loss 1 − mean Dice of the warped moving label
    /// map (one-hot, trilinear, full resolution) against the fixed one
    /// (methods.md §5), at the finest level; needs both label maps.
    #[serde(default)]
    pub dice: f64,
    /// `displacement`, or `gradient` (methods.md §5: no fold by construction).
    #[serde(default)]
    pub parametrisation: Parametrisation,
    /// `parameter` or `residual`: what a start field is to this stage.
    #[serde(default)]
    pub start: StartField,
}

fn one() -> usize {
    1
}

fn zero_list() -> Vec<f64> {
    vec![0.0]
}

/// Inverse-consistency weighting (methods.md §1 step 5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IcParams {
    pub enabled: bool,
    /// Adam iterations of each direction's run at full resolution.
    pub iterations: usize,
    /// Iterations of the final weighted run.
    pub final_iterations: usize,
    /// Power p applied to the normalised IC error.
    pub power: f64,
    /// Gaussian sigma s of the weight map, in voxels.
    pub sigma: f64,
}

/// The initial field of methods.md §1 step 3: the deformable stage starts
/// from a field, not the identity. The paper's comes from a network
/// (LapIRN); until Warpscope has one, another preset's deformable stage
/// (our best conventional result) provides it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InitialParams {
    pub enabled: bool,
    /// The preset whose deformable stage (and `finest_mm`) gives the field.
    pub preset: String,
}

impl Default for InitialParams {
    fn default() -> Self {
        InitialParams {
            enabled: false,
            preset: "fast".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub preset: String,
    /// Use the fused kernels: on the CPU backend, the CPU kernels for MSE
    /// and local NCC; on a GPU, the engine's WGSL kernels for every stage
    /// (false: the composed tensor path everywhere, the reference; same
    /// objective).
    pub fused: bool,
    /// Scale each channel to [0, 1] (0.5–99.5 percentiles) before registering.
    pub normalize: bool,
    /// The finest voxel size (mm) the affine and deformable stages work at:
    /// an image finer than this runs the schedule on the pyramid level
    /// nearest it and its field is brought to full resolution (so one
    /// preset fits 1 mm and 2 mm images); 0 = full resolution always.
    #[serde(default)]
    pub finest_mm: f64,
    pub affine: AffineParams,
    /// The learned initial field (a trained network), after the affine stage.
    #[serde(default)]
    pub network: super::stages::network::NetworkParams,
    #[serde(default)]
    pub initial: InitialParams,
    pub deformable: DeformableParams,
    /// The deep-image-prior stage (methods.md §4), after the deformable one.
    #[serde(default)]
    pub dip: super::stages::dip::DipParams,
    pub ic: IcParams,
}

/// A refused parameter: unknown key, bad value, or an inconsistent pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError(pub String);

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParamError {}

pub const PRESETS: [&str; 5] = ["fast", "lumir", "brats-ic", "mse+ncc", "symmetric"];

fn deformable_base() -> DeformableParams {
    DeformableParams {
        enabled: true,
        levels: 3,
        iterations: vec![150, 100, 50],
        lr: vec![0.1],
        sim: SimilarityWeights::lncc(3),
        diffusion: vec![0.3],
        jacobian: 0.0,
        units: FieldUnits::Voxel,
        svf: false,
        svf_steps: 7,
        symmetric: false,
        inverse_consistency: 0.0,
        smooth_grad_mm: zero_list(),
        smooth_warp_vox: zero_list(),
        steps: 1,
        dice: 0.0,
        parametrisation: Parametrisation::Displacement,
        start: StartField::Parameter,
    }
}

/// Our affine: three levels on MSE of the [0, 1]-normalised images. Local
/// NCC (window 3) is not a usable affine objective at full resolution on
/// noisy images: near-flat noise windows give it a rough landscape where
/// Adam climbs (measured on brain2mm_syn: loss 0.84 → 0.89, TRE 2.2 → 8 mm),
/// while MSE finds the resect pair's 4.08° rotation to 3.96°.
fn affine_base() -> AffineParams {
    AffineParams {
        enabled: true,
        coarsest: 2,
        levels: 3,
        iterations: 60,
        lr: 0.01,
        sim: SimilarityWeights::mse(),
    }
}

fn ic_off() -> IcParams {
    IcParams {
        enabled: false,
        iterations: 10,
        final_iterations: 20,
        power: 2.0,
        sigma: 2.0,
    }
}

impl Pipeline {
    /// A named preset (see `PRESETS` and methods.md).
    pub fn preset(name: &str) -> Result<Pipeline, ParamError> {
        let p = match name {
            // Our speed/accuracy trade-off (tuned on the shared 2 mm pairs
            // and checked on a 1 mm pair, see the README): MSE affine on
            // three levels (the rotation of brain2mm_resect is only found at
            // full resolution), most deformable iterations on coarse levels,
            // LNCC window 5. The field is regularised by smoothing, not by
            // diffusion: the gradient pooled over σ = 12 mm before each Adam
            // step and the field smoothed by σ = 1 voxel after it (FireANTs'
            // scheme). Diffusion with Adam plateaued 25–40 % above elastix's
            // TRE; this model is below it on every shared pair, without folds.
            // Images finer than 2 mm are registered on their 2 mm level (on
            // the 1 mm pair, 20 more iterations at 1 mm took 50 s for
            // 0.201 → 0.194 mm).
            "fast" => Pipeline {
                preset: name.into(),
                fused: true,
                normalize: true,
                finest_mm: 2.0,
                affine: affine_base(),
                initial: InitialParams::default(),
                deformable: DeformableParams {
                    sim: SimilarityWeights::lncc(5),
                    diffusion: vec![0.0],
                    smooth_grad_mm: vec![12.0],
                    smooth_warp_vox: vec![1.0],
                    ..deformable_base()
                },
                network: Default::default(),
                dip: Default::default(),
                ic: ic_off(),
            },
            // methods.md §3: L = 1·NCC + 6·‖∇u‖². LUMIR's baselines take the
            // gradient loss as VoxelMorph does, a mean over the 3 components
            // and 3 axes; ours sums them, so 6 there is 6/9 here.
            "lumir" => Pipeline {
                preset: name.into(),
                fused: true,
                normalize: true,
                finest_mm: 0.0,
                affine: AffineParams {
                    enabled: false,
                    ..affine_base()
                },
                initial: InitialParams::default(),
                deformable: DeformableParams {
                    diffusion: vec![6.0 / 9.0],
                    ..deformable_base()
                },
                network: Default::default(),
                dip: Default::default(),
                ic: ic_off(),
            },
            // methods.md §1: affine, nonrigid IO from a good field, then IC
            // weighting with the paper's p = 2, s = 2 (10 iterations each
            // way, 20 weighted). The paper's IO (2 levels of 40/20
            // iterations, LNCC 3, diffusion 12 500 / 25 000, lr 0.003 in
            // normalised units) refines a LapIRN prediction; without one it
            // barely moves from the identity (1.90 mm on brain2mm_resect),
            // and started from fast's field it flattens it (0.30 → 0.69 mm
            // after one iteration). So fast's affine and deformable stages
            // stand in for "affine IO → network → IO": on brain2mm_resect the
            // IC weighting then lowers TRE within 15 mm of the cavity
            // (README, "Glioma resection"). The paper's LNCC affine on the
            // coarsest level scored 0.478 mm there against 0.436 for fast's.
            // The shipped network (`network.enabled`, `--init-model
            // builtin`) is held as the IO's start (`start = residual`:
            // fast's smoothing of the whole field would flatten it). It
            // pays where fast's smoothing cannot reach from the identity,
            // brain shift of a few mm over a few cm (README, "Learned
            // initial field"), and costs where it can: its fine-scale
            // errors stay. Smoothing its field at 4 mm first
            // (`network.smooth_mm`) lowers that cost (brain2mm_resect
            // 0.297 → 0.419 mm raw, 0.364 smoothed) and helps on every
            // brain-shift pair measured; 8 mm lost a 12 mm shift. Still a
            // cost, so it is off unless asked for.
            "brats-ic" => {
                let fast = Pipeline::preset("fast")?;
                Pipeline {
                    preset: name.into(),
                    ic: IcParams {
                        enabled: true,
                        ..ic_off()
                    },
                    network: super::stages::network::NetworkParams {
                        smooth_mm: 4.0,
                        ..Default::default()
                    },
                    deformable: DeformableParams {
                        start: StartField::Residual,
                        ..fast.deformable.clone()
                    },
                    ..fast
                }
            }
            // methods.md §2: bidirectional, MSE and NCC weighted equally, λ = 1,
            // 30 iterations, lr 1e-3 (normalised units).
            "mse+ncc" => Pipeline {
                preset: name.into(),
                fused: true,
                normalize: true,
                finest_mm: 0.0,
                affine: AffineParams {
                    enabled: false,
                    ..affine_base()
                },
                initial: InitialParams::default(),
                deformable: DeformableParams {
                    levels: 1,
                    iterations: vec![30],
                    lr: vec![1e-3],
                    sim: SimilarityWeights {
                        mse: 0.5,
                        lncc: 0.5,
                        ..SimilarityWeights::lncc(9)
                    },
                    diffusion: vec![1.0],
                    units: FieldUnits::Normalized,
                    symmetric: true,
                    ..deformable_base()
                },
                network: Default::default(),
                dip: Default::default(),
                ic: ic_off(),
            },
            // methods.md §5 (balanced): both directions, MSE (α = 1),
            // smoothness γ = 0.1, Jacobian δ = 1e-2, inverse consistency ε = 10.
            "symmetric" => Pipeline {
                preset: name.into(),
                fused: true,
                normalize: true,
                finest_mm: 0.0,
                affine: affine_base(),
                initial: InitialParams::default(),
                deformable: DeformableParams {
                    sim: SimilarityWeights::mse(),
                    diffusion: vec![0.1],
                    jacobian: 1e-2,
                    symmetric: true,
                    inverse_consistency: 10.0,
                    ..deformable_base()
                },
                network: Default::default(),
                dip: Default::default(),
                ic: ic_off(),
            },
            other => {
                return Err(ParamError(format!(
                    "unknown preset '{other}'; presets: {}",
                    PRESETS.join(", ")
                )));
            }
        };
        Ok(p)
    }

    /// Whether the deformable stage holds a start field (`deformable.start
    /// = residual` with a stage that gives one): then the IC weighting
    /// holds the deformable stage's field in turn.
    pub fn holds_start(&self) -> bool {
        self.deformable.enabled
            && self.deformable.start == StartField::Residual
            && (self.network.enabled || self.initial.enabled)
    }

    /// Learning rate of deformable level `l` (a single value serves all levels).
    pub fn level_value(values: &[f64], l: usize) -> f64 {
        values.get(l).or(values.last()).copied().unwrap_or(0.0)
    }

    /// Apply one `key=value` override (see `register::keys`), then let
    /// the stage owning the key keep its section consistent.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ParamError> {
        super::keys::set(self, key, value)?;
        if let Some((section, name)) = key.split_once('.')
            && let Some(stage) = super::stages::by_key(section)
        {
            stage.after_set(self, name);
        }
        Ok(())
    }

    /// The current value of `key` as [`Pipeline::set`] reads it back
    /// (lists comma-separated); `None` for an unknown key.
    pub fn value_of(&self, key: &str) -> Option<String> {
        super::keys::value_of(self, key)
    }

    /// Every parameter key, sorted.
    pub fn keys(&self) -> Vec<String> {
        super::keys::keys(self)
    }

    /// Apply `key=value` strings in order, then validate.
    /// The keys where this pipeline differs from its named preset, as
    /// `key: preset value → this value` (empty when it is the preset
    /// itself, or names no known preset).
    pub fn changes_from_preset(&self) -> Vec<String> {
        let Ok(base) = Pipeline::preset(&self.preset) else {
            return Vec::new();
        };
        base.differences(self)
            .into_iter()
            .map(|(k, a, b)| format!("{k}: {a} -> {b}"))
            .collect()
    }

    /// Every parameter whose value differs between `self` and `other`:
    /// (key, self's value, other's value), in the order of `--set` keys
    /// (the preset's name is not a parameter).
    pub fn differences(&self, other: &Pipeline) -> Vec<(String, String, String)> {
        let theirs = super::keys::values(other);
        super::keys::values(self)
            .into_iter()
            .filter_map(|(k, mine)| {
                let (a, b) = (
                    super::keys::written(&mine),
                    super::keys::written(theirs.get(&k)?),
                );
                (a != b).then_some((k, a, b))
            })
            .collect()
    }

    pub fn with_overrides(mut self, sets: &[String]) -> Result<Self, ParamError> {
        for s in sets {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| ParamError(format!("'{s}': expected key=value")))?;
            self.set(k.trim(), v)?;
        }
        self.validate()?;
        Ok(self)
    }

    /// Refuse nonsense: negative or non-finite weights, window 0 or even,
    /// lists that do not match the level count, no similarity term. Every
    /// stage's values are checked, enabled or not: a disabled stage's
    /// parameters are saved with the run and may be enabled later.
    pub fn validate(&self) -> Result<(), ParamError> {
        let stages = super::stages::STAGES;
        if !stages
            .iter()
            .any(|s| s.runs(self) && s.key() != "initial" && s.key() != "ic")
        {
            return Err(ParamError(
                "both the affine and the deformable stage are disabled: nothing to do".into(),
            ));
        }
        if !(self.finest_mm.is_finite() && (0.0..=50.0).contains(&self.finest_mm)) {
            return Err(ParamError(format!(
                "finest_mm = {} must be between 0 (full resolution) and 50 mm",
                self.finest_mm
            )));
        }
        for stage in stages {
            stage.validate(self)?;
        }
        Ok(())
    }

    /// The preset that provides the initial field (refused: an unknown
    /// preset, or one that needs an initial field itself).
    pub fn initial_pipeline(&self) -> Result<Pipeline, ParamError> {
        let name = &self.initial.preset;
        let p = Pipeline::preset(name).map_err(|e| ParamError(format!("initial.preset: {e}")))?;
        if p.initial.enabled || !p.deformable.enabled {
            return Err(ParamError(format!(
                "initial.preset = {name}: that preset cannot provide an initial field"
            )));
        }
        Ok(p)
    }

    /// This pipeline as its initial-field run sees it: the initial preset's
    /// deformable stage and `finest_mm`, everything else unchanged.
    pub fn initial_stage(&self) -> Result<Pipeline, ParamError> {
        let init = self.initial_pipeline()?;
        Ok(Pipeline {
            deformable: init.deformable,
            finest_mm: init.finest_mm,
            ..self.clone()
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The largest smoothing σ accepted (mm or voxels): beyond a head's size
/// it only flattens the field.
pub const MAX_SMOOTH: f64 = 200.0;

pub(crate) fn check_weight(name: &str, w: f64) -> Result<(), ParamError> {
    if w.is_finite() && w >= 0.0 {
        Ok(())
    } else {
        Err(ParamError(format!(
            "{name} = {w}: weights must be finite and ≥ 0"
        )))
    }
}

pub(crate) fn check_rate(name: &str, lr: f64) -> Result<(), ParamError> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(ParamError(format!(
            "{name} = {lr}: a learning rate must be finite and > 0"
        )))
    }
}

/// A per-level list: one value for all levels, or one per level.
pub(crate) fn check_per_level(name: &str, list: &[f64], levels: usize) -> Result<(), ParamError> {
    if list.is_empty() || (list.len() != 1 && list.len() != levels) {
        return Err(ParamError(format!(
            "{name} needs one value or one per level ({levels}), not {}",
            list.len()
        )));
    }
    Ok(())
}

/// A stage's similarity: weights finite and ≥ 0, window and bins in range
/// (checked whether or not the term is on, so that switching it on later
/// cannot expose a bad value); at least one term when the stage runs.
pub(crate) fn check_similarity(
    stage: &str,
    s: &SimilarityWeights,
    runs: bool,
) -> Result<(), ParamError> {
    for (n, w) in [
        ("mse", s.mse),
        ("ncc", s.ncc),
        ("lncc", s.lncc),
        ("mi", s.mi),
    ] {
        check_weight(&format!("{stage}.{n}"), w)?;
    }
    if runs && s.mse + s.ncc + s.lncc + s.mi <= 0.0 {
        return Err(ParamError(format!("{stage}: every similarity weight is 0")));
    }
    if s.window == 0 || s.window.is_multiple_of(2) || s.window > 31 {
        return Err(ParamError(format!(
            "{stage}.window = {}: the LNCC window must be odd, between 1 and 31",
            s.window
        )));
    }
    if !(4..=256).contains(&s.mi_bins) {
        return Err(ParamError(format!(
            "{stage}.mi_bins = {} must be between 4 and 256",
            s.mi_bins
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key reads back what `set` wrote, and setting a preset's own
    /// values changes nothing.
    #[test]
    fn every_key_reads_back() {
        for preset in PRESETS {
            let keys = Pipeline::preset(preset).expect("preset").keys();
            let p = Pipeline::preset(preset).expect("preset");
            for k in &keys {
                let v = p.value_of(k).unwrap_or_else(|| panic!("no value for {k}"));
                let mut q = p.clone();
                q.set(k, &v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
                assert_eq!(q, p, "{preset}: {k}={v} changed the pipeline");
            }
        }
        assert_eq!(
            Pipeline::preset("fast").expect("fast").value_of("nonsense"),
            None
        );
        let mut p = Pipeline::preset("fast").expect("fast");
        p.set("deformable.diffusion", "0.5,0.25,2").expect("set");
        assert_eq!(
            p.value_of("deformable.diffusion").as_deref(),
            Some("0.5,0.25,2")
        );
    }

    /// An edited preset lists what differs from the preset, key by key.
    #[test]
    fn changes_from_the_preset_are_listed() {
        let fast = Pipeline::preset("fast").expect("fast");
        assert!(fast.changes_from_preset().is_empty());
        let edited = fast
            .clone()
            .with_overrides(&["deformable.lncc=0.5".into(), "ic.power=1".into()])
            .expect("set");
        assert_eq!(
            edited.changes_from_preset(),
            ["deformable.lncc: 1 -> 0.5", "ic.power: 2 -> 1"]
        );
        // Two presets differ in their values, not in their names.
        let lumir = Pipeline::preset("lumir").expect("lumir");
        let d = fast.differences(&lumir);
        assert!(!d.is_empty());
        assert!(d.iter().all(|(k, a, b)| a != b && *k != "preset"), "{d:?}");
        assert_eq!(lumir.differences(&fast).len(), d.len());
        assert!(fast.differences(&fast.clone()).is_empty());
    }

    /// Values of a disabled stage are checked as strictly as an enabled
    /// one's (`fast` has no IC stage; `symmetric`… each preset is tried).
    #[test]
    fn nonsense_is_refused_on_disabled_stages_too() {
        for preset in PRESETS {
            Pipeline::preset(preset)
                .expect("preset")
                .validate()
                .unwrap_or_else(|e| panic!("{preset}: {e}"));
        }
        let fast = Pipeline::preset("fast").expect("fast");
        assert!(!fast.ic.enabled);
        for (set, needle) in [
            ("deformable.mi_bins=100000", "mi_bins"),
            ("affine.mi_bins=2", "mi_bins"),
            ("ic.power=-1", "ic.power"),
            ("ic.sigma=nan", "ic.sigma"),
            ("ic.iterations=0", "ic.iterations"),
            ("deformable.svf_steps=0", "svf_steps"),
            ("deformable.svf_steps=40", "svf_steps"),
            ("affine.window=4", "window"),
            ("network.smooth_mm=-1", "network.smooth_mm"),
            ("network.smooth_mm=inf", "network.smooth_mm"),
        ] {
            let e = fast
                .clone()
                .with_overrides(&[set.to_string()])
                .expect_err(set);
            assert!(e.0.contains(needle), "{set}: {e}");
        }
        // Disabling a stage is still fine, and so are its sane values.
        let mut no_affine = fast.clone();
        no_affine.affine.enabled = false;
        no_affine.affine.sim.mse = 0.0;
        no_affine
            .validate()
            .expect("a disabled stage may have no similarity");
    }

    /// A pipeline saved before the DIP stage, multi-step refinement and
    /// the network's smoothing existed (a session file, a run's history) still reads, as the same
    /// pipeline with both off.
    #[test]
    fn pipelines_saved_before_new_sections_still_read() {
        let fast = Pipeline::preset("fast").expect("fast");
        let mut old = fast.to_json();
        let top = old.as_object_mut().expect("object");
        top.remove("dip");
        top.get_mut("network")
            .and_then(|d| d.as_object_mut())
            .expect("network")
            .remove("smooth_mm");
        top.get_mut("deformable")
            .and_then(|d| d.as_object_mut())
            .expect("deformable")
            .remove("steps");
        let read: Pipeline = serde_json::from_value(old).expect("reads");
        assert_eq!(read, fast);
    }
}
