//! Choosing files: native dialogs (rfd: the desktop portal, or zenity) run
//! on a helper thread so the UI never blocks; drag-and-drop; recent files,
//! remembered in the user's config folder (written atomically).

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::data::Role;
use super::landmarks::LandmarkFile;
use crate::metrics::FieldKind;
use crate::volume::nifti;

/// What a dialog was opened for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    Open(Role),
    /// A further sequence of the fixed or moving image.
    AddSequence(Role),
    ResultFolder,
    ScreenshotFolder,
    OpenLandmarks(LandmarkFile),
    /// Where to save landmarks (the format is chosen in the panel).
    SaveLandmarks(LandmarkFile),
    OpenSession,
    SaveSession,
    /// A folder for a run's result files.
    ExportRun(u32),
    /// Where to save the run history (CSV).
    SaveHistory,
    /// A file for a pipeline parameter (its key and the extensions offered).
    ParameterFile(String, &'static [&'static str]),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recent {
    pub role: Role,
    pub path: PathBuf,
}

/// How many recent files are kept.
const RECENT_MAX: usize = 12;

/// An answer from a dialog: what it was for, the path (`None`: cancelled or
/// no dialog service), and how long the dialog was open.
pub struct Answer {
    pub pick: Pick,
    pub path: Option<PathBuf>,
    pub open_for: std::time::Duration,
}

/// A dialog that answers "nothing" faster than this never appeared.
pub const NO_DIALOG: std::time::Duration = std::time::Duration::from_millis(500);

pub struct Files {
    tx: mpsc::Sender<Answer>,
    rx: mpsc::Receiver<Answer>,
    /// A dialog is open (only one at a time).
    pub dialog_open: bool,
    pub recent: Vec<Recent>,
    /// Dropped files waiting for the user to say what they are.
    pub dropped: Vec<PathBuf>,
    /// The "open a path" field (for desktops without a dialog service).
    pub typed_path: String,
    pub typed_role: Role,
    /// The typed path is a further sequence of the role's image.
    pub typed_sequence: bool,
    config: Option<PathBuf>,
}

/// The user's config folder for Warpscope: `$WARPSCOPE_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/warpscope`, else `~/.config/warpscope`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WARPSCOPE_CONFIG_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("warpscope"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config").join("warpscope"))
}

impl Files {
    /// Start with the recent-files list from `config` (if any).
    pub fn load(config: Option<PathBuf>) -> Self {
        let recent = config
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("recent.json")).ok())
            .and_then(|t| serde_json::from_str::<Vec<Recent>>(&t).ok())
            .unwrap_or_default();
        let (tx, rx) = mpsc::channel();
        Self {
            tx,
            rx,
            dialog_open: false,
            recent,
            dropped: Vec::new(),
            typed_path: String::new(),
            typed_role: Role::Fixed,
            typed_sequence: false,
            config,
        }
    }

    /// The config folder, if there is one.
    pub fn config_dir(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// Put a file at the top of the recent list and save the list.
    pub fn remember(&mut self, role: Role, path: &Path) {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.recent.retain(|r| !(r.role == role && r.path == path));
        self.recent.insert(0, Recent { role, path });
        self.recent.truncate(RECENT_MAX);
        self.save();
    }

    fn save(&self) {
        let Some(dir) = &self.config else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        if let Ok(text) = serde_json::to_string_pretty(&self.recent) {
            // Losing the recent list is harmless; a half-written one is not, hence atomic.
            let _ = crate::atomic::write_text(&dir.join("recent.json"), &text);
        }
    }

    /// Open a native dialog on a helper thread; the answer arrives through `poll`.
    pub fn pick(&mut self, what: Pick, start_in: Option<&Path>) {
        if self.dialog_open {
            return;
        }
        self.dialog_open = true;
        let tx = self.tx.clone();
        let start = start_in.map(Path::to_path_buf);
        let opened = std::time::Instant::now();
        let spawned = std::thread::Builder::new()
            .name("warpscope-dialog".into())
            .spawn(move || {
                let mut d = rfd::FileDialog::new();
                if let Some(s) = &start {
                    d = d.set_directory(s);
                }
                let answer = match what {
                    Pick::Open(role) => d
                        .set_title(format!("Open the {}", role.name()))
                        .add_filter("NIfTI", &["nii", "gz"])
                        .add_filter("all files", &["*"])
                        .pick_file(),
                    Pick::AddSequence(role) => d
                        .set_title(format!("Add a sequence to the {}", role.name()))
                        .add_filter("NIfTI", &["nii", "gz"])
                        .add_filter("all files", &["*"])
                        .pick_file(),
                    Pick::ResultFolder => d
                        .set_title("Open a result folder of warpscope register")
                        .pick_folder(),
                    Pick::ScreenshotFolder => d.set_title("Folder for screenshots").pick_folder(),
                    Pick::OpenLandmarks(_) => d
                        .set_title("Open landmarks")
                        .add_filter("landmarks", &["csv", "fcsv", "json"])
                        .add_filter("all files", &["*"])
                        .pick_file(),
                    Pick::SaveLandmarks(_) => d.set_title("Save landmarks").save_file(),
                    Pick::ParameterFile(ref key, exts) => d
                        .set_title(format!("A file for {key}"))
                        .add_filter(exts.join(", "), exts)
                        .add_filter("all files", &["*"])
                        .pick_file(),
                    Pick::OpenSession => d
                        .set_title("Open a Warpscope session")
                        .add_filter("session", &["json"])
                        .pick_file(),
                    Pick::SaveSession => d
                        .set_title("Save the session")
                        .set_file_name("session.warpscope.json")
                        .save_file(),
                    Pick::ExportRun(id) => d
                        .set_title(format!("Folder for the result files of run {id}"))
                        .pick_folder(),
                    Pick::SaveHistory => d
                        .set_title("Save the run history")
                        .set_file_name("runs.csv")
                        .save_file(),
                };
                let _ = tx.send(Answer {
                    pick: what,
                    path: answer,
                    open_for: opened.elapsed(),
                });
            });
        if spawned.is_err() {
            self.dialog_open = false;
        }
    }

    /// Answers from dialogs.
    pub fn poll(&mut self) -> Vec<Answer> {
        let answers: Vec<_> = self.rx.try_iter().collect();
        if !answers.is_empty() {
            self.dialog_open = false;
        }
        answers
    }
}

/// What a dropped path most likely is: a folder of DICOM files (and no
/// `run.json`) is an image, another folder a result folder; a file whose
/// header names a field convention is a field. `None`: an image, or ask.
pub fn guess_role(path: &Path) -> Option<DropGuess> {
    if path.is_dir() {
        if !path.join("run.json").is_file() && crate::volume::dicom::folder_has_dicom(path) {
            return None;
        }
        return Some(DropGuess::ResultFolder);
    }
    if crate::volume::dicom::is_dicom_file(path) {
        return None;
    }
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(crate::session_file::EXTENSION) {
        return Some(DropGuess::Session);
    }
    if [".csv", ".fcsv", ".json"].iter().any(|e| name.ends_with(e)) {
        // A pair CSV holds both sides; any other landmark file belongs to one image.
        let text = std::fs::read_to_string(path).ok()?;
        return Some(match crate::landmarks::formats::detect(path, &text) {
            Some(crate::landmarks::formats::Format::PairCsv) => {
                DropGuess::Landmarks(LandmarkFile::Pairs)
            }
            _ => DropGuess::LandmarksOneSide,
        });
    }
    let h = nifti::read_header(path).ok()?;
    let ndim = usize::try_from(h.dim[0]).unwrap_or(0);
    FieldKind::declared(h.intent_code, ndim, &h.descrip).map(|_| DropGuess::Role(Role::Field))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropGuess {
    Role(Role),
    ResultFolder,
    Landmarks(LandmarkFile),
    /// Landmarks of one image: ask which.
    LandmarksOneSide,
    /// A session file (`.warpscope.json`).
    Session,
}

/// Field kinds offered when opening a field (`None` = from the header).
pub const FIELD_KINDS: [Option<FieldKind>; 5] = [
    None,
    Some(FieldKind::DispVox),
    Some(FieldKind::AntsLpsMm),
    Some(FieldKind::DispRasMm),
    Some(FieldKind::Mapped),
];

pub fn field_kind_name(k: Option<FieldKind>) -> &'static str {
    match k {
        None => "from the header",
        Some(FieldKind::DispVox) => "voxel displacement (field_vox)",
        Some(FieldKind::AntsLpsMm) => "ANTs/ITK (LPS mm)",
        Some(FieldKind::DispRasMm) => "RAS mm displacement",
        Some(FieldKind::Mapped) => "mapped coordinates",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::nifti::{ChannelLayout, WriteOptions};
    use crate::volume::{Grid, Volume, affine};

    #[test]
    fn dropped_files_are_recognised_by_their_headers() {
        let dir = std::env::temp_dir().join(format!("warpscope-guess-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let g = Grid::new([3, 2, 2], affine::IDENTITY);
        let write = |name: &str, channels: usize, opts: WriteOptions| {
            let p = dir.join(name);
            nifti::write_file(&p, &Volume::filled(g.clone(), channels, 0.0), &opts).expect("write");
            p
        };
        let ours = write(
            "field_vox.nii",
            3,
            WriteOptions {
                description: "warpscope:field_vox fixed->moving".into(),
                ..Default::default()
            },
        );
        let ants = write(
            "warp.nii",
            3,
            WriteOptions {
                layout: ChannelLayout::Vector,
                ..Default::default()
            },
        );
        let image = write("t1.nii", 1, WriteOptions::default());
        let pairs = dir.join("landmarks.csv");
        std::fs::write(&pairs, "id,fx,fy,fz,mx,my,mz\n1,0,0,0,1,1,1\n").expect("write");
        let fcsv = dir.join("points.fcsv");
        std::fs::write(&fcsv, "# columns = label,x,y,z\nA,1,2,3\n").expect("write");
        let field = Some(DropGuess::Role(Role::Field));
        assert_eq!(guess_role(&ours), field);
        assert_eq!(guess_role(&ants), field);
        assert_eq!(guess_role(&image), None, "an image: the user is asked");
        assert_eq!(guess_role(&dir), Some(DropGuess::ResultFolder));
        assert_eq!(
            guess_role(&pairs),
            Some(DropGuess::Landmarks(LandmarkFile::Pairs))
        );
        assert_eq!(guess_role(&fcsv), Some(DropGuess::LandmarksOneSide));
        let session = dir.join("study.warpscope.json");
        assert_eq!(guess_role(&session), Some(DropGuess::Session));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
