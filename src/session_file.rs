//! Session files (`NAME.warpscope.json`): what is needed to reproduce a
//! registration exactly — the images (paths), the landmarks (the points
//! themselves), the pipeline, the device, the viewer's state and the run
//! history (parameters and figures, not fields). The GUI saves and opens
//! them; `warpscope register --session FILE` runs one headless.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::landmarks::edit::PointPair;
use crate::register::Pipeline;
use crate::results::RunMetrics;

/// The format version written into every file.
pub const VERSION: u32 = 1;

/// The file name ending the GUI proposes and recognises.
pub const EXTENSION: &str = ".warpscope.json";

/// The embedded demo images, named in a session in place of a path.
pub const DEMO_FIXED: &str = "embedded:demo/fixed.nii.gz";
pub const DEMO_MOVING: &str = "embedded:demo/moving.nii.gz";

/// Where the inputs come from. Paths are relative to the session file's
/// folder when they lie under it, absolute otherwise.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Images {
    /// One entry per sequence (channel); the GUI uses the first.
    pub fixed: Vec<String>,
    pub moving: Vec<String>,
    #[serde(default)]
    pub fixed_mask: Option<String>,
    #[serde(default)]
    pub labels: Option<String>,
    #[serde(default)]
    pub labels_in_moving: bool,
    /// The moving image's label map (the Dice loss's other half).
    #[serde(default)]
    pub moving_labels: Option<String>,
}

/// One run of the history: its parameters and what it measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// 1, 2, … in the order the runs were started.
    pub id: u32,
    /// UTC start time (`YYYYMMDD-HHMMSS`).
    pub started: String,
    pub pipeline: Pipeline,
    pub device: String,
    /// completed, stopped, or "failed: …".
    pub status: String,
    pub seconds: f64,
    pub stage_seconds: Vec<(String, f64)>,
    pub iterations: usize,
    /// NaN (written as null) when no iteration ran.
    #[serde(deserialize_with = "nan_for_null")]
    pub final_total: f64,
    #[serde(deserialize_with = "terms_nan_for_null")]
    pub final_terms: Vec<(String, f64)>,
    /// Live parameter changes made during the run, with the iteration
    /// (counted over the whole run) at which each took effect.
    #[serde(default)]
    pub changes: Vec<(usize, String)>,
    pub metrics: RunMetrics,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionFile {
    pub warpscope_session: u32,
    pub images: Images,
    /// Landmark pairs, RAS mm.
    #[serde(default)]
    pub landmarks: Vec<PointPair>,
    pub pipeline: Pipeline,
    /// auto, gpu or cpu.
    #[serde(default = "auto")]
    pub device: String,
    /// The viewer's state (navigation, compare mode, overlays, windows);
    /// read by the GUI only.
    #[serde(default)]
    pub view: serde_json::Value,
    #[serde(default)]
    pub runs: Vec<RunRecord>,
}

/// JSON has no NaN: serde_json writes it as null; read null back as NaN.
fn nan_for_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn terms_nan_for_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, f64)>, D::Error> {
    Ok(Vec::<(String, Option<f64>)>::deserialize(d)?
        .into_iter()
        .map(|(n, v)| (n, v.unwrap_or(f64::NAN)))
        .collect())
}

fn auto() -> String {
    "auto".into()
}

impl SessionFile {
    pub fn new(images: Images, pipeline: Pipeline) -> Self {
        Self {
            warpscope_session: VERSION,
            images,
            landmarks: Vec::new(),
            pipeline,
            device: auto(),
            view: serde_json::Value::Null,
            runs: Vec::new(),
        }
    }

    /// Read and check a session file: its version, its pipeline (validated)
    /// and its landmarks (finite).
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let s: SessionFile = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a Warpscope session file: {e}", path.display()))?;
        if s.warpscope_session == 0 || s.warpscope_session > VERSION {
            return Err(format!(
                "{}: session format {} is not supported (this is version {VERSION})",
                path.display(),
                s.warpscope_session
            ));
        }
        s.pipeline
            .validate()
            .map_err(|e| format!("{}: its pipeline is invalid: {e}", path.display()))?;
        crate::landmarks::edit::Editor::from_pairs(s.landmarks.clone())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if s.images.fixed.is_empty() || s.images.fixed.len() != s.images.moving.len() {
            return Err(format!(
                "{}: it names {} fixed and {} moving image(s): one moving image per fixed image is needed",
                path.display(),
                s.images.fixed.len(),
                s.images.moving.len()
            ));
        }
        Ok(s)
    }

    /// Write atomically, with paths made relative to the file's folder
    /// where they lie under it.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n";
        crate::results::write_text(path, &text)
    }

    /// Where an image named in the session is: embedded names stay as they
    /// are; relative paths are taken from the session file's folder.
    pub fn resolve(session_path: &Path, name: &str) -> ImageSource {
        if name == DEMO_FIXED {
            return ImageSource::DemoFixed;
        }
        if name == DEMO_MOVING {
            return ImageSource::DemoMoving;
        }
        let p = PathBuf::from(name);
        if p.is_absolute() {
            ImageSource::Path(p)
        } else {
            let dir = session_path.parent().unwrap_or(Path::new("."));
            ImageSource::Path(dir.join(p))
        }
    }
}

/// An image named by a session.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageSource {
    Path(PathBuf),
    DemoFixed,
    DemoMoving,
}

impl ImageSource {
    /// How a session or a run report names it.
    pub fn name(&self) -> String {
        match self {
            ImageSource::Path(p) => p.display().to_string(),
            ImageSource::DemoFixed => DEMO_FIXED.into(),
            ImageSource::DemoMoving => DEMO_MOVING.into(),
        }
    }

    /// Read it (a NIfTI file, a DICOM series, or the embedded demo image).
    pub fn read(&self) -> Result<crate::volume::Volume, String> {
        match self {
            ImageSource::Path(p) => crate::volume::open::read_image(p, Default::default(), None)
                .map(|(v, _)| v)
                .map_err(|e| e.to_string()),
            ImageSource::DemoFixed => crate::demo::fixed()
                .map(|(v, _)| v)
                .map_err(|e| e.to_string()),
            ImageSource::DemoMoving => crate::demo::moving()
                .map(|(v, _)| v)
                .map_err(|e| e.to_string()),
        }
    }
}

/// `image` as a session names it: relative to `session_dir` when it lies
/// under that folder, else absolute.
pub fn relative_name(image: &Path, session_dir: &Path) -> String {
    let abs = |p: &Path| {
        std::path::absolute(p)
            .map(|a| normalise(&a))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let (img, dir) = (abs(image), abs(session_dir));
    match img.strip_prefix(&dir) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => img.display().to_string(),
    }
}

/// Remove `.` and `..` components lexically.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The run history as CSV: one row per run, parameters that differ between
/// presets and every figure. Fields holding commas are quoted.
pub fn history_csv(runs: &[RunRecord]) -> String {
    let header = [
        "id",
        "started",
        "preset",
        "device",
        "status",
        "seconds",
        "iterations",
        "final_loss",
        "tre_mean_mm",
        "tre_median_mm",
        "tre_before_mm",
        "robustness",
        "folds_percent",
        "sd_log_j",
        "ncc",
        "changes",
        "pipeline",
    ];
    let num = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    let mut out = header.join(",") + "\n";
    for r in runs {
        let m = &r.metrics;
        let fields = vec![
            r.id.to_string(),
            r.started.clone(),
            r.pipeline.preset.clone(),
            r.device.clone(),
            r.status.clone(),
            format!("{:.3}", r.seconds),
            r.iterations.to_string(),
            format!("{:.6}", r.final_total),
            num(m.tre_mean_mm),
            num(m.tre_median_mm),
            num(m.tre_before_mm),
            num(m.robustness),
            num(m.folds_percent),
            num(m.sd_log_j),
            num(m.ncc),
            r.changes
                .iter()
                .map(|(i, c)| format!("{c}@{i}"))
                .collect::<Vec<_>>()
                .join(" "),
            serde_json::to_string(&r.pipeline).unwrap_or_default(),
        ];
        out += &crate::landmarks::formats::csv_line(&fields);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_under_the_session_folder() {
        let dir = Path::new("/data/study");
        assert_eq!(
            relative_name(Path::new("/data/study/sub/f.nii.gz"), dir),
            "sub/f.nii.gz"
        );
        assert_eq!(
            relative_name(Path::new("/data/other/../study/m.nii.gz"), dir),
            "m.nii.gz"
        );
        assert_eq!(
            relative_name(Path::new("/elsewhere/m.nii.gz"), dir),
            "/elsewhere/m.nii.gz"
        );
        assert_eq!(
            SessionFile::resolve(Path::new("/data/study/s.warpscope.json"), "sub/f.nii.gz"),
            ImageSource::Path(PathBuf::from("/data/study/sub/f.nii.gz"))
        );
        assert_eq!(
            SessionFile::resolve(Path::new("s.warpscope.json"), DEMO_FIXED),
            ImageSource::DemoFixed
        );
    }

    /// A run whose loss became NaN still round-trips through JSON.
    #[test]
    fn failed_runs_survive_a_round_trip() {
        let r = RunRecord {
            id: 3,
            started: "20261130-120000".into(),
            pipeline: Pipeline::preset("fast").expect("fast"),
            device: "cpu".into(),
            status: "failed: the loss became NaN".into(),
            seconds: 1.5,
            stage_seconds: vec![("affine".into(), 1.0)],
            iterations: 0,
            final_total: f64::NAN,
            final_terms: vec![("lncc".into(), f64::NAN), ("diffusion".into(), 0.25)],
            changes: vec![(4, "deformable.diffusion=1".into())],
            metrics: RunMetrics::default(),
        };
        let text = serde_json::to_string(&r).expect("to json");
        let back: RunRecord = serde_json::from_str(&text).expect("from json");
        assert!(back.final_total.is_nan() && back.final_terms[0].1.is_nan());
        assert_eq!(back.final_terms[1], ("diffusion".to_string(), 0.25));
        assert_eq!(back.changes, r.changes);
        assert_eq!(back.pipeline, r.pipeline);
    }
}
