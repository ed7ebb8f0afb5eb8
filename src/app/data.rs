//! What the viewer has loaded, and loading it off the UI thread. A load
//! either succeeds whole or returns a message; the caller swaps the result
//! in only on success, so a bad file never loses the current state.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::metrics::{FieldKind, Mapping};
use crate::register::Pipeline;
use crate::render::texture::fit_for_display;
use crate::render::{ColorMap, ImageStyle};
use crate::volume::dicom::{self, SeriesSummary};
use crate::volume::intensity::WindowPreset;
use crate::volume::nifti::ReadOptions;
use crate::volume::open::ImageInfo;
use crate::volume::{Grid, Volume};

/// What a file is opened as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Role {
    Fixed,
    Moving,
    /// A displacement or mapped-coordinate field (needs the fixed image).
    Field,
    /// Inverse-consistency weights (or any [0, 1] map) to show as a heat overlay.
    IcWeights,
    /// A label map, drawn as outlines.
    Labels,
    /// The fixed image's mask: registration compares only voxels inside it.
    Mask,
    /// The moving image's label map: with `labels` on the fixed grid, the
    /// two feed the Dice loss (`deformable.dice`). Not drawn.
    MovingLabels,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Fixed,
        Role::Moving,
        Role::Field,
        Role::IcWeights,
        Role::Labels,
        Role::Mask,
        Role::MovingLabels,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Fixed => "fixed image",
            Role::Moving => "moving image",
            Role::Field => "field",
            Role::IcWeights => "IC weights",
            Role::Labels => "labels",
            Role::Mask => "fixed mask",
            Role::MovingLabels => "moving labels",
        }
    }
}

/// An image as loaded: full resolution for read-outs, one channel (possibly
/// reduced to fit the GPU) for display.
pub struct LoadedImage {
    pub name: String,
    pub path: Option<PathBuf>,
    pub volume: Volume,
    pub channel: usize,
    /// The displayed channel on the display grid.
    pub display: Volume,
    /// Set when the display copy was reduced to fit the GPU.
    pub notice: Option<String>,
    pub style: ImageStyle,
    pub preset: WindowPreset,
    /// One line: dims, spacing, orientation, sample type.
    pub summary: String,
    /// The embedded image this is (session files name it so), if any.
    pub embedded: Option<&'static str>,
    /// What the values are in ("SUV", "HU", "Bq/ml"; "" when unknown),
    /// shown with the value under the cursor.
    pub units: &'static str,
    /// Each channel's name (its file's, for a sequence added from a file
    /// of its own).
    pub channel_names: Vec<String>,
    /// The files of the sequences added after the first (one file per
    /// sequence, stacked as channels in that order).
    pub added: Vec<PathBuf>,
}

/// The GPU limits a display copy must respect (taken from the device).
#[derive(Clone, Debug)]
pub struct Limits(pub wgpu::Limits);

impl LoadedImage {
    pub fn new(
        name: String,
        path: Option<PathBuf>,
        volume: Volume,
        info: Option<&ImageInfo>,
        limits: &Limits,
        labels: bool,
        preset: WindowPreset,
    ) -> Result<Self, String> {
        if volume.voxels() == 0 {
            return Err(format!("{name}: the volume is empty"));
        }
        let g = &volume.grid;
        let sp = g.spacing_mm();
        let mut summary = format!(
            "{}×{}×{} · {:.2}×{:.2}×{:.2} mm · {}",
            g.dims[0],
            g.dims[1],
            g.dims[2],
            sp[0],
            sp[1],
            sp[2],
            g.orientation()
        );
        if volume.channels > 1 {
            summary += &format!(" · {} channels", volume.channels);
        }
        match info {
            Some(ImageInfo::Nifti(i)) => summary += &format!(" · {}", i.datatype.name()),
            Some(ImageInfo::Dicom(d)) => {
                summary += &format!(" · DICOM {}", d.series.modality);
                if !d.units.name().is_empty() {
                    summary += &format!(" · {}", d.units.name());
                }
            }
            None => {}
        }
        let (display, notice) = display_channel(&volume, 0, &name, limits, labels)?;
        let channel_names = match volume.channels {
            1 => vec![name.clone()],
            n => (1..=n).map(|c| format!("{name} [{c}]")).collect(),
        };
        let mut img = Self {
            channel_names,
            added: Vec::new(),
            name,
            path,
            display,
            volume,
            channel: 0,
            notice,
            style: ImageStyle::default(),
            preset,
            summary,
            embedded: None,
            units: info.map_or("", ImageInfo::units),
        };
        img.apply_preset(preset);
        if info.is_some_and(ImageInfo::is_suv) {
            img.style.colormap = crate::render::colormap::ColorMap::Hot;
        }
        Ok(img)
    }

    /// Prepare a volume for a role: labels and IC weights get their full
    /// range as window (labels are reduced by nearest neighbour), images the
    /// MRI percentile window.
    pub fn for_role(
        role: Role,
        name: String,
        path: Option<PathBuf>,
        volume: Volume,
        info: Option<&ImageInfo>,
        limits: &Limits,
    ) -> Result<Self, String> {
        let preset = match (role, info) {
            (Role::Labels | Role::IcWeights | Role::Mask | Role::MovingLabels, _) => {
                WindowPreset::MinMax
            }
            (_, Some(i)) if i.is_suv() => WindowPreset::PetSuv,
            (_, Some(i)) if i.units() == "HU" => WindowPreset::CtBrain,
            // A NIfTI states no units: a CT is recognised by its air.
            _ if crate::volume::intensity::looks_like_ct(volume.channel(0)) => {
                WindowPreset::CtBrain
            }
            _ => WindowPreset::MriBrain,
        };
        Self::new(
            name,
            path,
            volume,
            info,
            limits,
            matches!(role, Role::Labels | Role::Mask | Role::MovingLabels),
            preset,
        )
    }

    /// Show channel `c`: extract it, fit it to the GPU, re-apply the window preset.
    pub fn select_channel(
        &mut self,
        c: usize,
        limits: &Limits,
        labels: bool,
    ) -> Result<(), String> {
        let (display, notice) = display_channel(&self.volume, c, &self.name, limits, labels)?;
        self.display = display;
        self.notice = notice;
        self.channel = c;
        self.apply_preset(self.preset);
        Ok(())
    }

    pub fn apply_preset(&mut self, preset: WindowPreset) {
        self.preset = preset;
        self.style.window = preset.window(self.volume.channel(self.channel));
        if preset == WindowPreset::PetSuv {
            self.style.colormap = ColorMap::Viridis;
        }
    }

    /// Stack `other` (a sequence read from its own file) as further
    /// channels: it must lie on this image's grid, as `register --fixed a
    /// --fixed b` requires. The channel shown stays.
    pub fn add_sequence(&mut self, other: LoadedImage) -> Result<(), String> {
        if !other.volume.grid.same_as(&self.volume.grid) {
            let (a, b) = (&self.volume.grid, &other.volume.grid);
            return Err(format!(
                "{} cannot be a sequence of {}: it lies on another grid ({}×{}×{} at {:.2} mm \
                 against {}×{}×{} at {:.2} mm, or another position); resample it onto the \
                 image's grid first",
                other.name,
                self.name,
                b.dims[0],
                b.dims[1],
                b.dims[2],
                b.spacing_mm()[0],
                a.dims[0],
                a.dims[1],
                a.dims[2],
                a.spacing_mm()[0],
            ));
        }
        let path = other
            .path
            .clone()
            .ok_or("a sequence is added from a file")?;
        let volume = Volume::stack(&[self.volume.clone(), other.volume])
            .map_err(|e| format!("{}: {e}", other.name))?;
        let count = |n: usize| format!(" · {n} channels");
        let before = count(self.volume.channels);
        self.summary = match self.summary.find(&before) {
            Some(_) => self.summary.replace(&before, &count(volume.channels)),
            None => self
                .summary
                .replacen(" · ", &format!("{} · ", count(volume.channels)), 1),
        };
        self.volume = volume;
        self.channel_names.extend(other.channel_names);
        self.added.push(path);
        Ok(())
    }

    /// What a session or a run report names this image by: its path
    /// (relative to `dir` where it lies under it), or the embedded image's
    /// name; `None` for an image with neither.
    pub fn source_name(&self, dir: Option<&Path>) -> Option<String> {
        match (&self.path, self.embedded, dir) {
            (Some(p), _, Some(d)) => Some(crate::session_file::relative_name(p, d)),
            (Some(p), _, None) => Some(p.display().to_string()),
            (None, Some(e), _) => Some(e.to_string()),
            (None, None, _) => None,
        }
    }

    /// The names of every sequence's file, the first first (see
    /// [`LoadedImage::source_name`]); `None` when the first has no file.
    pub fn source_names(&self, dir: Option<&Path>) -> Option<Vec<String>> {
        let mut names = vec![self.source_name(dir)?];
        for p in &self.added {
            names.push(match dir {
                Some(d) => crate::session_file::relative_name(p, d),
                None => p.display().to_string(),
            });
        }
        Some(names)
    }

    /// The full-resolution value at a world point (nearest voxel), if inside.
    pub fn value_at(&self, world: [f64; 3]) -> Option<([i64; 3], f32)> {
        value_at(&self.volume, self.channel, world)
    }
}

/// Channel `c` of `vol` as displayed: extracted, and reduced when it does
/// not fit the GPU (with a notice naming the image).
fn display_channel(
    vol: &Volume,
    c: usize,
    name: &str,
    limits: &Limits,
    labels: bool,
) -> Result<(Volume, Option<String>), String> {
    if c >= vol.channels {
        return Err(format!(
            "{name}: channel {c} asked of a {}-channel volume",
            vol.channels
        ));
    }
    let one = vol.extract_channel(c);
    let (small, notice) = fit_for_display(&one, &limits.0, wgpu::TextureFormat::R32Float, labels)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok((small.unwrap_or(one), notice.map(|n| format!("{name}: {n}"))))
}

/// Nearest-voxel value of channel `c` at a world point, with its voxel index.
pub fn value_at(vol: &Volume, c: usize, world: [f64; 3]) -> Option<([i64; 3], f32)> {
    let g = &vol.grid;
    let p = g.world_to_voxel(world)?;
    let r = p.map(|v| (v + 0.5).floor() as i64);
    if (0..3).any(|a| r[a] < 0 || r[a] >= g.dims[a] as i64) {
        return None;
    }
    Some((r, vol.get(c, r[0] as usize, r[1] as usize, r[2] as usize)))
}

/// A field loaded onto the fixed image's display grid.
pub struct LoadedField {
    pub name: String,
    pub path: Option<PathBuf>,
    pub kind: FieldKind,
    /// Displacement in voxels of the display grid (3 channels).
    pub disp_vox: Volume,
    pub mapping: Mapping,
    pub notice: Option<String>,
}

/// The result of a job on the loader thread.
pub enum Loaded {
    /// An image, already prepared for display (channel, fitting, window).
    Image {
        role: Role,
        image: LoadedImage,
        /// A further sequence of the role's image, to stack on it.
        sequence: bool,
    },
    Field {
        path: PathBuf,
        kind: FieldKind,
        mapping: Mapping,
        disp_vox: Volume,
        notice: Option<String>,
    },
    /// A DICOM folder holding several series: the user picks one.
    SeriesChoice {
        role: Role,
        path: PathBuf,
        series: Vec<SeriesSummary>,
    },
    /// A `warpscope register --out` folder: the files found in it, and
    /// the pipeline its `run.json` ran (or why that could not be read).
    ResultFolder {
        dir: PathBuf,
        files: Vec<(Role, PathBuf)>,
        missing: Vec<String>,
        pipeline: Option<Result<Pipeline, String>>,
    },
}

pub struct Job {
    pub role: Option<Role>,
    pub label: String,
    pub result: Result<Loaded, String>,
}

/// Runs loads on worker threads and hands results back to the UI thread.
pub struct Loader {
    tx: mpsc::Sender<Job>,
    rx: mpsc::Receiver<Job>,
    /// The role of each job under way (`None`: a result folder).
    pending: Vec<Option<Role>>,
}

impl Default for Loader {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            tx,
            rx,
            pending: Vec::new(),
        }
    }
}

impl Loader {
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether a job for `role` is under way.
    pub fn pending_role(&self, role: Role) -> bool {
        self.pending.contains(&Some(role))
    }

    fn done(&mut self, job: &Job) {
        if let Some(i) = self.pending.iter().position(|r| *r == job.role) {
            self.pending.swap_remove(i);
        }
    }

    fn spawn(
        &mut self,
        role: Option<Role>,
        label: String,
        f: impl FnOnce() -> Result<Loaded, String> + Send + 'static,
    ) {
        let tx = self.tx.clone();
        self.pending.push(role);
        let l = label.clone();
        let spawned = std::thread::Builder::new()
            .name("warpscope-load".into())
            .spawn(move || {
                // A panic inside a reader must not kill the UI: report it.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                    .unwrap_or_else(|_| Err(format!("{l}: the reader failed unexpectedly")));
                let _ = tx.send(Job {
                    role,
                    label: l,
                    result,
                });
            });
        if let Err(e) = spawned {
            let _ = self.tx.send(Job {
                role,
                label: label.clone(),
                result: Err(format!("{label}: could not start a loader thread: {e}")),
            });
        }
    }

    /// Read a volume (NIfTI, or a DICOM series: `series` picks one where a
    /// folder holds several) for `role` and prepare it for display within
    /// `limits`. A folder of several series and no choice comes back as
    /// [`Loaded::SeriesChoice`].
    pub fn image(&mut self, role: Role, path: PathBuf, series: Option<String>, limits: Limits) {
        self.read_image(role, path, series, limits, false);
    }

    /// Read a further sequence of the `role`'s image (comes back as
    /// [`Loaded::Image`] with `sequence` set).
    pub fn sequence(&mut self, role: Role, path: PathBuf, limits: Limits) {
        self.read_image(role, path, None, limits, true);
    }

    fn read_image(
        &mut self,
        role: Role,
        path: PathBuf,
        series: Option<String>,
        limits: Limits,
        sequence: bool,
    ) {
        let label = format!("{}: {}", role.name(), display_name(&path));
        self.spawn(Some(role), label, move || {
            let (volume, info) = if crate::volume::open::is_dicom(&path) {
                // One scan of the folder: it lists the series, and the one
                // chosen (or the only one) is read from that list.
                let shown = path.display().to_string();
                let mut list = dicom::list_series(&path).map_err(|e| e.to_string())?;
                let chosen = match &series {
                    None if list.len() > 1 && sequence => {
                        return Err(format!(
                            "{shown} holds {} series: a sequence is one series; open the \
                             series' own folder or file",
                            list.len()
                        ));
                    }
                    None if list.len() > 1 => {
                        return Ok(Loaded::SeriesChoice {
                            role,
                            path,
                            series: list,
                        });
                    }
                    None => list.remove(0),
                    Some(s) => dicom::pick(&list, Some(s), &shown)
                        .map_err(|e| e.to_string())?
                        .clone(),
                };
                let (v, d) = dicom::read_listed(chosen, &shown).map_err(|e| e.to_string())?;
                (v, ImageInfo::Dicom(d))
            } else {
                crate::volume::open::read_image(&path, ReadOptions::default(), None)
                    .map_err(|e| e.to_string())?
            };
            let mut name = display_name(&path);
            if let ImageInfo::Dicom(d) = &info {
                name = format!("{name} ({})", d.series.label());
            }
            let image =
                LoadedImage::for_role(role, name, Some(path), volume, Some(&info), &limits)?;
            Ok(Loaded::Image {
                role,
                image,
                sequence,
            })
        });
    }

    /// Read a field and bring it onto `fixed` (the fixed image's display grid).
    pub fn field(&mut self, path: PathBuf, kind: Option<FieldKind>, fixed: Grid) {
        let label = format!("field: {}", display_name(&path));
        self.spawn(Some(Role::Field), label, move || {
            let (mapping, kind, notice) = Mapping::load(&path, kind, &fixed)?;
            let disp_vox = mapping.displacement_vox().map_err(|e| e.to_string())?;
            Ok(Loaded::Field {
                path,
                kind,
                mapping,
                disp_vox,
                notice,
            })
        });
    }

    /// Look into a result folder of `warpscope register`.
    pub fn result_folder(&mut self, dir: PathBuf) {
        let label = format!("result: {}", display_name(&dir));
        self.spawn(None, label, move || result_folder_files(&dir));
    }

    /// Results that have arrived (never blocks).
    pub fn poll(&mut self) -> Vec<Job> {
        let jobs: Vec<Job> = self.rx.try_iter().collect();
        for j in &jobs {
            self.done(j);
        }
        jobs
    }

    /// Wait for the next finished job, at most `timeout`.
    pub fn wait_one(&mut self, timeout: std::time::Duration) -> Option<Job> {
        if self.pending.is_empty() {
            return None;
        }
        let job = self.rx.recv_timeout(timeout).ok()?;
        self.done(&job);
        Some(job)
    }
}

/// The files of a `warpscope register --out` folder, and its inputs and
/// pipeline as `run.json` names them (relative paths tried from the
/// working directory, then from the folder's parent).
fn result_folder_files(dir: &Path) -> Result<Loaded, String> {
    if !dir.is_dir() {
        return Err(format!("{}: not a folder", dir.display()));
    }
    let mut files = Vec::new();
    let mut missing = Vec::new();
    let mut pipeline = None;
    let run = dir.join("run.json");
    if let Ok(text) = std::fs::read_to_string(&run) {
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not valid JSON: {e}", run.display()))?;
        pipeline = v.get("pipeline").map(|p| run_pipeline(p.clone()));
        for (key, role) in [
            ("fixed", Role::Fixed),
            ("moving", Role::Moving),
            ("fixed_mask", Role::Mask),
        ] {
            let first = v.get(key).and_then(|x| match x {
                serde_json::Value::Array(a) => a.first().and_then(|s| s.as_str()),
                serde_json::Value::String(s) => Some(s.as_str()),
                _ => None,
            });
            if let Some(p) = first {
                let p = PathBuf::from(p);
                let candidates = [p.clone(), dir.parent().unwrap_or(dir).join(&p)];
                match candidates.into_iter().find(|c| c.is_file()) {
                    Some(found) => files.push((role, found)),
                    None => {
                        missing.push(format!("{key} image {} (named in run.json)", p.display()))
                    }
                }
            }
        }
    }
    for (name, role) in [
        ("field_vox.nii.gz", Role::Field),
        ("ic_weights.nii.gz", Role::IcWeights),
    ] {
        let p = dir.join(name);
        if p.is_file() {
            files.push((role, p));
        }
    }
    if !files.iter().any(|(r, _)| *r == Role::Field) {
        let ants = dir.join("warp_ants.nii.gz");
        if ants.is_file() {
            files.push((Role::Field, ants));
        } else {
            missing.push("field_vox.nii.gz".into());
        }
    }
    if files.is_empty() {
        return Err(format!(
            "{}: no result files found (expected run.json, field_vox.nii.gz)",
            dir.display()
        ));
    }
    Ok(Loaded::ResultFolder {
        dir: dir.to_path_buf(),
        files,
        missing,
        pipeline,
    })
}

/// `run.json`'s pipeline, checked as a session file's is.
fn run_pipeline(v: serde_json::Value) -> Result<Pipeline, String> {
    let p: Pipeline =
        serde_json::from_value(v).map_err(|e| format!("its pipeline could not be read: {e}"))?;
    p.validate()
        .map_err(|e| format!("its pipeline is invalid: {e}"))?;
    Ok(p)
}

pub fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::affine;
    use crate::volume::world_gap_mm;

    #[test]
    fn gap_between_boxes() {
        let a = Grid::new([10, 10, 10], affine::diagonal([1.0; 3]));
        let mut m = affine::diagonal([1.0; 3]);
        m[0][3] = 5.0;
        assert_eq!(world_gap_mm(&a, &Grid::new([10, 10, 10], m)), None);
        m[0][3] = 30.0;
        let gap = world_gap_mm(&a, &Grid::new([10, 10, 10], m)).expect("apart");
        assert!((gap - 20.0).abs() < 1e-9, "{gap}");
    }

    #[test]
    fn values_are_read_at_the_nearest_voxel() {
        let g = Grid::new([3, 2, 1], affine::diagonal([2.0, 1.0, 1.0]));
        let v = Volume::from_data(g, 1, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).expect("sizes");
        assert_eq!(value_at(&v, 0, [2.1, 1.0, 0.0]), Some(([1, 1, 0], 4.0)));
        assert_eq!(value_at(&v, 0, [-1.5, 0.0, 0.0]), None);
    }
}
