//! Session files in the viewer: save what reproduces the work (images,
//! landmarks, pipeline, device, view, run history) and open it again. The
//! format is `crate::session_file`; the view state is this module's.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::data::{LoadedImage, Role};
use super::live::DeviceChoice;
use super::navigation::Navigation;
use super::viewer::ViewerApp;
use crate::landmarks::edit::Editor;
use crate::render::{Composite, Overlays, Slot};
use crate::session_file::{ImageSource, Images, SessionFile};

/// What the views looked like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedView {
    pub navigation: Navigation,
    pub composite: Composite,
    pub overlays: Overlays,
    pub a: Slot,
    pub b: Slot,
    pub fixed_window: Option<(f32, f32)>,
    pub moving_window: Option<(f32, f32)>,
}

impl ViewerApp {
    fn saved_view(&self) -> SavedView {
        SavedView {
            navigation: self.view.nav.clone(),
            composite: self.view.composite.clone(),
            overlays: self.view.overlays.clone(),
            a: self.view.a,
            b: self.view.b,
            fixed_window: self.images.fixed.as_ref().map(|i| i.style.window),
            moving_window: self.images.moving.as_ref().map(|i| i.style.window),
        }
    }

    /// The session as it stands, image paths relative to `dir` where they lie under it.
    pub fn session(&self, dir: &Path) -> Result<SessionFile, String> {
        let name = |img: &LoadedImage| {
            img.source_name(Some(dir)).ok_or_else(|| {
                format!(
                    "{} has no file: save it first (warpscope convert) to keep it in a session",
                    img.name
                )
            })
        };
        let (Some(fixed), Some(moving)) = (&self.images.fixed, &self.images.moving) else {
            return Err("open a fixed and a moving image before saving a session".into());
        };
        let names = |img: &LoadedImage| {
            let mut all = vec![name(img)?];
            all.extend(img.source_names(Some(dir)).into_iter().flatten().skip(1));
            Ok::<_, String>(all)
        };
        let images = Images {
            fixed: names(fixed)?,
            moving: names(moving)?,
            fixed_mask: match &self.images.mask {
                Some(m) => Some(name(m)?),
                None => None,
            },
            labels: match &self.images.labels {
                Some(l) => Some(name(l)?),
                None => None,
            },
            labels_in_moving: self.images.labels_in_moving,
            moving_labels: match &self.images.moving_labels {
                Some(l) => Some(name(l)?),
                None => None,
            },
        };
        let mut s = SessionFile::new(images, self.reg.pipeline.clone());
        s.landmarks = self.lm.editor.pairs().to_vec();
        s.device = self.reg.device.name().into();
        s.view = serde_json::to_value(self.saved_view()).unwrap_or_default();
        s.runs = self.reg.history.clone();
        Ok(s)
    }

    /// Save the session to `path` (atomically).
    pub fn save_session(&mut self, path: &Path) {
        let dir = path.parent().unwrap_or(Path::new("."));
        match self.session(dir).and_then(|s| s.write(path)) {
            Ok(()) => {
                self.session_path = Some(path.to_path_buf());
                self.notice(format!("session saved: {}", path.display()));
            }
            Err(e) => self.error(format!("session not saved: {e}")),
        }
    }

    /// Open a session: its images load (in the background), then its view
    /// is restored; its landmarks, pipeline, device and run history replace
    /// the current ones.
    pub fn open_session(&mut self, path: &Path) {
        if self.reg.running() {
            self.error("a registration is running: stop it before opening a session");
            return;
        }
        let s = match SessionFile::read(path) {
            Ok(s) => s,
            Err(e) => {
                self.error(e);
                return;
            }
        };
        let open = |app: &mut Self, role: Role, name: &str| match SessionFile::resolve(path, name) {
            ImageSource::Path(p) if p.is_file() => app.open(role, p),
            ImageSource::Path(p) => app.error(format!(
                "{}: the {} {} is missing",
                path.display(),
                role.name(),
                p.display()
            )),
            ImageSource::DemoFixed => app.open_demo(Role::Fixed),
            ImageSource::DemoMoving => app.open_demo(Role::Moving),
        };
        // The landmarks first: a new fixed image restores an autosave only
        // into an empty editor.
        match Editor::from_pairs(s.landmarks.clone()) {
            Ok(e) => self.lm.editor = e,
            Err(e) => self.error(format!("{}: {e}", path.display())),
        }
        for (role, names) in [
            (Role::Fixed, &s.images.fixed),
            (Role::Moving, &s.images.moving),
        ] {
            for (k, name) in names.iter().enumerate() {
                match (k, SessionFile::resolve(path, name)) {
                    (0, _) => open(self, role, name),
                    // Further sequences: files of their own, stacked as channels.
                    (_, ImageSource::Path(p)) if p.is_file() => self.add_sequence(role, p),
                    _ => open(self, role, name),
                }
            }
        }
        if let Some(l) = &s.images.labels {
            open(self, Role::Labels, l);
        }
        self.images.mask = None;
        if let Some(m) = &s.images.fixed_mask {
            open(self, Role::Mask, m);
        }
        self.images.moving_labels = None;
        if let Some(l) = &s.images.moving_labels {
            open(self, Role::MovingLabels, l);
        }
        self.images.labels_in_moving = s.images.labels_in_moving;
        self.set_pipeline(s.pipeline.clone());
        self.reg.device = DeviceChoice::parse(&s.device).unwrap_or_default();
        self.reg.history = s.runs.clone();
        self.reg.kept.clear();
        self.reg.curves.clear();
        self.reg.overlay = None;
        self.reg.compare_pick.clear();
        self.reg.side_by_side = false;
        self.pending_view = (!s.view.is_null()).then(|| s.view.clone());
        self.session_path = Some(path.to_path_buf());
        self.notice(format!(
            "session opened: {} ({} runs in its history)",
            path.display(),
            s.runs.len()
        ));
    }

    /// Restore a session's view once its images have loaded.
    pub(super) fn apply_pending_view(&mut self) {
        if self.pending_view.is_none() || self.images.fixed.is_none() || self.loader.pending() > 0 {
            return;
        }
        let Some(v) = self.pending_view.take() else {
            return;
        };
        match serde_json::from_value::<SavedView>(v) {
            Ok(vs) => {
                self.view.nav = vs.navigation;
                self.view.composite = vs.composite;
                self.view.overlays = vs.overlays;
                self.view.a = vs.a;
                self.view.b = vs.b;
                if let (Some(f), Some(w)) = (&mut self.images.fixed, vs.fixed_window) {
                    f.style.window = w;
                }
                if let (Some(m), Some(w)) = (&mut self.images.moving, vs.moving_window) {
                    m.style.window = w;
                }
            }
            Err(e) => self.notice(format!("the session's view was not restored: {e}")),
        }
    }
}
