//! A trained network for the initial field (methods.md §1 step 3, the
//! paper's LapIRN step) and its file (`.wsm`).
//!
//! The network is the deep-image-prior stage's, one per pyramid level
//! (coarse to fine, LapIRN's Laplacian pyramid), with weights trained on a
//! dataset of pairs (`warpscope train`) instead of fitted to one pair: a
//! forward pass predicts a stationary velocity field (normalised units),
//! integrated by scaling and squaring, that the IO stages refine.
//!
//! The file: the magic `WSMODEL\n`, the format version (u32 LE), the
//! header's length (u32 LE), the header (JSON: architecture, the stored
//! tensors' shapes, how it was trained, and in a checkpoint the
//! optimiser's step), the values (f32 LE: the weights, then in a
//! checkpoint Adam's two moments per tensor), and an FNV-1a 64 checksum
//! of everything before it (u64 LE). Every way a file can be wrong —
//! missing, truncated, damaged, another format version, another network —
//! is told apart in [`ModelError`]'s message.

pub mod predict;
pub mod train;

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::stages::dip::{DipParams, Downsampling, Net};

pub const MAGIC: &[u8; 8] = b"WSMODEL\n";
/// The format version this build reads and writes.
pub const VERSION: u32 = 1;
/// The one network this build runs.
pub const ARCHITECTURE: &str = "lapirn-svf";

/// The model shipped in `assets/models/` (see its README): trained on
/// pairs synthesised from the MNI template.
pub const BUILTIN_BYTES: &[u8] = include_bytes!("../../../assets/models/mni-init.wsm");
/// How a pipeline names the shipped model.
pub const BUILTIN: &str = "builtin";

/// A model file that cannot be used, with the reason as the user reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelError(pub String);

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ModelError {}

/// The network's shape: what a file must match to be run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub name: String,
    /// Image channels (sequences) of each of the fixed and moving images.
    pub channels: usize,
    pub features: usize,
    pub residual_blocks: usize,
    pub sampling: Downsampling,
    /// Voxel size (mm) each level's network sees, coarse to fine.
    pub levels_mm: Vec<f64>,
    pub svf_steps: usize,
    /// The networks' outputs are multiplied by this (normalised units):
    /// with Adam, every weight moves by about the learning rate per step,
    /// and the output layer's 27·features taps would otherwise move the
    /// field by centimetres in one step.
    pub output_scale: f64,
}

impl Architecture {
    /// One level's network.
    pub fn net(&self) -> Net {
        Net::new(
            self.channels,
            &DipParams {
                features: self.features,
                residual_blocks: self.residual_blocks,
                sampling: self.sampling,
                ..DipParams::default()
            },
        )
    }

    /// The shapes of every stored tensor, level after level.
    pub fn shapes(&self) -> Vec<[usize; 2]> {
        let one = self.net().shapes();
        self.levels_mm.iter().flat_map(|_| one.clone()).collect()
    }

    fn check(&self) -> Result<(), String> {
        if self.name != ARCHITECTURE {
            return Err(format!(
                "it holds a '{}' network; this Warpscope runs '{ARCHITECTURE}'",
                self.name
            ));
        }
        if self.levels_mm.is_empty() || self.levels_mm.len() > 4 {
            return Err(format!(
                "it has {} levels; a model has 1 to 4",
                self.levels_mm.len()
            ));
        }
        if self
            .levels_mm
            .iter()
            .any(|mm| !mm.is_finite() || *mm <= 0.0)
        {
            return Err(format!(
                "its level sizes {:?} mm are not all positive",
                self.levels_mm
            ));
        }
        let in_range = (1..=8).contains(&self.channels)
            && (1..=64).contains(&self.features)
            && self.residual_blocks <= 8
            && (1..=12).contains(&self.svf_steps)
            && self.output_scale.is_finite()
            && self.output_scale > 0.0;
        if !in_range {
            return Err(format!(
                "its layout (channels {}, features {}, residual blocks {}, squarings {}) is out of range",
                self.channels, self.features, self.residual_blocks, self.svf_steps
            ));
        }
        Ok(())
    }
}

/// Where training stood when a checkpoint was written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimiserState {
    /// Epochs completed.
    pub epoch: usize,
    /// Pairs of the current epoch already used.
    pub step: usize,
    /// Adam's step count.
    pub adam_steps: i32,
    /// Iterations done in all.
    pub iterations: usize,
    /// The losses of the current epoch's pairs so far (sum), so that a
    /// resumed epoch reports the mean over all of them.
    #[serde(default)]
    pub epoch_loss_sum: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    pub architecture: Architecture,
    /// The stored tensors' shapes, in order.
    pub tensors: Vec<[usize; 2]>,
    /// How the model was trained (dataset, settings, validation per epoch).
    #[serde(default)]
    pub training: serde_json::Value,
    /// In a checkpoint: the optimiser's state, its moments after the weights.
    #[serde(default)]
    pub optimiser: Option<OptimiserState>,
}

/// A model: its header, its weights, and in a checkpoint Adam's moments.
#[derive(Clone, Debug)]
pub struct Model {
    pub header: Header,
    pub weights: Vec<Vec<f32>>,
    /// (first, second) moment per tensor, in a checkpoint.
    pub moments: Option<Vec<(Vec<f32>, Vec<f32>)>>,
}

/// FNV-1a, 64 bits.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Model {
    pub fn architecture(&self) -> &Architecture {
        &self.header.architecture
    }

    /// The shipped model.
    pub fn builtin() -> Result<Model, ModelError> {
        Model::from_bytes(BUILTIN_BYTES, "the built-in model")
    }

    /// `builtin` or a file's path.
    pub fn open(name: &str) -> Result<Model, ModelError> {
        if name == BUILTIN {
            Model::builtin()
        } else {
            Model::read(Path::new(name))
        }
    }

    pub fn read(path: &Path) -> Result<Model, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| {
            ModelError(match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("model file {}: no such file", path.display())
                }
                _ => format!("model file {}: cannot be read: {e}", path.display()),
            })
        })?;
        Model::from_bytes(&bytes, &format!("model file {}", path.display()))
    }

    /// Parse a model from its bytes; `what` names it in errors.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Model, ModelError> {
        let fail = |m: String| Err(ModelError(format!("{what}: {m}")));
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            if bytes.is_empty() {
                return fail("the file is empty".into());
            }
            return fail("not a Warpscope model (a .wsm file written by `warpscope train`)".into());
        }
        let truncated = |have: usize, want: usize| {
            Err(ModelError(format!(
                "{what}: the file is truncated ({have} bytes of the {want} its header announces)"
            )))
        };
        if bytes.len() < 16 {
            return truncated(bytes.len(), 16);
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(8);
        if version != VERSION {
            return fail(format!(
                "format version {version}; this Warpscope reads version {VERSION} \
                 (train the model again with this Warpscope's `warpscope train`)"
            ));
        }
        let header_len = word(12) as usize;
        let body = 16 + header_len;
        if bytes.len() < body {
            return truncated(bytes.len(), body);
        }
        let header: Header = match serde_json::from_slice(&bytes[16..body]) {
            Ok(h) => h,
            Err(e) => return fail(format!("its header cannot be read ({e})")),
        };
        let arch = &header.architecture;
        if let Err(m) = arch.check() {
            return fail(m);
        }
        let want = arch.shapes();
        if header.tensors != want {
            let at = header
                .tensors
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(want.len().min(header.tensors.len()));
            return fail(format!(
                "its weights do not fit its architecture ({} tensors stored, {} expected; the first \
                 mismatch is tensor {at})",
                header.tensors.len(),
                want.len()
            ));
        }
        let sizes: Vec<usize> = want.iter().map(|s| s[0] * s[1]).collect();
        let values: usize =
            sizes.iter().sum::<usize>() * if header.optimiser.is_some() { 3 } else { 1 };
        let total = body + 4 * values + 8;
        if bytes.len() < total {
            return truncated(bytes.len(), total);
        }
        if bytes.len() > total {
            return fail(format!(
                "{} bytes follow the end its header announces: the file is damaged",
                bytes.len() - total
            ));
        }
        let stored = u64::from_le_bytes(bytes[total - 8..].try_into().unwrap_or([0; 8]));
        if stored != checksum(&bytes[..total - 8]) {
            return fail("its checksum does not match: the file is damaged".into());
        }
        let mut at = body;
        let mut take = |n: usize| -> Vec<f32> {
            let v = bytes[at..at + 4 * n]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            at += 4 * n;
            v
        };
        let weights: Vec<Vec<f32>> = sizes.iter().map(|&n| take(n)).collect();
        let moments = header.optimiser.as_ref().map(|_| {
            sizes
                .iter()
                .map(|&n| (take(n), take(n)))
                .collect::<Vec<_>>()
        });
        if weights.iter().flatten().any(|w| !w.is_finite()) {
            return fail("it holds non-finite weights (a training run that diverged)".into());
        }
        Ok(Model {
            header,
            weights,
            moments,
        })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).unwrap_or_default();
        let mut out = Vec::with_capacity(16 + header.len() + 4 * self.value_count() + 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        let mut put = |v: &[f32]| {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
        for w in &self.weights {
            put(w);
        }
        if self.header.optimiser.is_some()
            && let Some(m) = &self.moments
        {
            for (a, b) in m {
                put(a);
                put(b);
            }
        }
        let sum = checksum(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    fn value_count(&self) -> usize {
        self.weights.iter().map(Vec::len).sum()
    }

    /// Write the file atomically (a temporary sibling, then a rename).
    pub fn write(&self, path: &Path) -> Result<(), ModelError> {
        let bytes = self.to_bytes();
        crate::atomic::write_atomic(path, |w| w.write_all(&bytes))
            .map_err(|e| ModelError(format!("cannot write {}: {e}", path.display())))
    }

    /// The same model without its optimiser state (what ships).
    pub fn weights_only(&self) -> Model {
        Model {
            header: Header {
                optimiser: None,
                ..self.header.clone()
            },
            weights: self.weights.clone(),
            moments: None,
        }
    }

    /// A one-line description for the CLI and the viewer.
    pub fn describe(&self) -> String {
        let a = self.architecture();
        format!(
            "{} network, {} level(s) at {:?} mm, {} features, {} residual blocks, {} weights",
            a.name,
            a.levels_mm.len(),
            a.levels_mm,
            a.features,
            a.residual_blocks,
            self.value_count()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Model {
        let architecture = Architecture {
            name: ARCHITECTURE.into(),
            channels: 1,
            features: 2,
            residual_blocks: 1,
            sampling: Downsampling::Pool,
            levels_mm: vec![8.0, 4.0],
            svf_steps: 5,
            output_scale: 0.05,
        };
        let tensors = architecture.shapes();
        let weights = tensors
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (0..s[0] * s[1])
                    .map(|j| (i * 31 + j) as f32 * 1e-3)
                    .collect()
            })
            .collect();
        Model {
            header: Header {
                architecture,
                tensors,
                training: serde_json::json!({"note": "test"}),
                optimiser: None,
            },
            weights,
            moments: None,
        }
    }

    fn error(bytes: &[u8]) -> String {
        match Model::from_bytes(bytes, "m.wsm") {
            Ok(_) => panic!("accepted"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn a_model_reads_back_as_written() {
        let m = small();
        let back = Model::from_bytes(&m.to_bytes(), "m").expect("reads");
        assert_eq!(back.weights, m.weights);
        assert_eq!(back.header.architecture, m.header.architecture);
        // A checkpoint carries the moments too.
        let mut c = m.clone();
        c.header.optimiser = Some(OptimiserState {
            epoch: 2,
            step: 3,
            adam_steps: 40,
            iterations: 40,
            epoch_loss_sum: 1.5,
        });
        c.moments = Some(m.weights.iter().map(|w| (w.clone(), w.clone())).collect());
        let back = Model::from_bytes(&c.to_bytes(), "c").expect("reads");
        assert_eq!(back.moments, c.moments);
        assert_eq!(back.header.optimiser, c.header.optimiser);
        assert!(back.weights_only().moments.is_none());
    }

    #[test]
    fn every_bad_file_is_told_apart() {
        let good = small().to_bytes();
        assert!(error(&[]).contains("empty"), "{}", error(&[]));
        assert!(error(b"\x1f\x8b\x08 a gzip file").contains("not a Warpscope model"));
        for cut in [10, 20, good.len() / 2, good.len() - 1] {
            let e = error(&good[..cut]);
            assert!(e.contains("truncated"), "cut at {cut}: {e}");
        }
        let mut other_version = good.clone();
        other_version[8] = 2;
        assert!(error(&other_version).contains("format version 2"));
        let mut flipped = good.clone();
        let last_value = good.len() - 9;
        flipped[last_value] ^= 0x40;
        assert!(error(&flipped).contains("checksum"));
        let mut longer = good.clone();
        longer.push(0);
        assert!(error(&longer).contains("damaged"));
        // Another network, and a header whose tensors do not fit its network.
        let mut other = small();
        other.header.architecture.name = "voxelmorph".into();
        assert!(error(&other.to_bytes()).contains("'voxelmorph' network"));
        let mut misfit = small();
        misfit.header.architecture.features = 4;
        let e = error(&misfit.to_bytes());
        assert!(e.contains("do not fit its architecture"), "{e}");
        let mut nan = small();
        nan.weights[0][0] = f32::NAN;
        assert!(error(&nan.to_bytes()).contains("non-finite"));
        let e = Model::read(Path::new("/no/such/model.wsm")).expect_err("missing");
        assert!(e.0.contains("no such file"), "{e}");
    }

    #[test]
    fn the_shipped_model_reads() {
        let m = Model::builtin().expect("the built-in model");
        assert!(m.header.optimiser.is_none());
        assert!(BUILTIN_BYTES.len() < 10 << 20);
    }
}
