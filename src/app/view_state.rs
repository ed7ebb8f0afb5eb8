//! How the views show what is loaded: navigation, the images in slots A
//! and B, the composite mode, overlays, flicker's phase, and the view keys.
//! Plain data (egui's rectangles only): `views.rs` draws it and turns
//! input into calls.

use super::navigation::Navigation;
use crate::render::{Composite, Mode, Overlays, Plane, Slot};
use crate::volume::{Grid, affine};

pub struct ViewState {
    pub nav: Navigation,
    pub a: Slot,
    pub b: Slot,
    pub composite: Composite,
    pub overlays: Overlays,
    /// Flicker's phase: B is shown, since when (seconds of the UI clock).
    pub flicker_shows_b: bool,
    pub flicker_since: f64,
    /// A pair was shown in a comparison once: the first pair opens in the
    /// checkerboard, later ones keep the mode the user chose.
    pub pair_compared: bool,
    /// The swipe divider is being dragged.
    pub dragging_divider: bool,
    /// Each plane's image rectangle this frame (screenshots of a view crop to it).
    pub rects: [Option<eframe::egui::Rect>; 3],
    /// The view under the mouse (keys act on it).
    pub hovered: Option<Plane>,
}

impl Default for ViewState {
    fn default() -> Self {
        Self {
            nav: Navigation::framing(&Grid::new([1, 1, 1], affine::IDENTITY)),
            a: Slot::Fixed,
            b: Slot::Moving,
            composite: Composite::default(),
            overlays: Overlays::default(),
            flicker_shows_b: false,
            flicker_since: 0.0,
            pair_compared: false,
            dragging_divider: false,
            rects: [None; 3],
            hovered: None,
        }
    }
}

/// The view keys pressed in one frame (read from egui by the viewer).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ViewKeys {
    /// A, C, S: enlarge (or restore) that plane.
    pub enlarge: [bool; 3],
    /// V or Escape: all three views.
    pub three: bool,
    /// Page/arrow up minus down: slices to step in the view under the mouse.
    pub slice: i32,
    /// 1–7: a composite mode (index in `Mode::ALL`).
    pub mode: Option<usize>,
    /// G, M, J, I, L: the overlays.
    pub overlay: [bool; 5],
    /// X: swap A and B.
    pub swap: bool,
    /// R: reset zoom and pan.
    pub reset: bool,
}

/// What the overlays can draw now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Drawable {
    pub field: bool,
    pub ic: bool,
    pub labels: bool,
}

impl ViewState {
    pub fn toggle_enlarged(&mut self, plane: Plane) {
        self.nav.enlarged = if self.nav.enlarged == Some(plane) {
            None
        } else {
            Some(plane)
        };
    }

    /// Apply one frame's keys; returns what could not be done (an overlay
    /// key without what it draws), for the user.
    pub fn apply_keys(&mut self, k: &ViewKeys, have: Drawable) -> Vec<String> {
        for (i, pressed) in k.enlarge.iter().enumerate() {
            if *pressed {
                self.toggle_enlarged(Plane::ALL[i]);
            }
        }
        if k.three {
            self.nav.enlarged = None;
        }
        if k.slice != 0 {
            let target = self.hovered.or(self.nav.enlarged).unwrap_or(Plane::Axial);
            self.nav.step_slice(target, f64::from(k.slice));
        }
        if let Some(m) = k.mode.and_then(|m| Mode::ALL.get(m)) {
            self.composite.mode = *m;
        }
        // An overlay key does nothing without what it draws: say so instead
        // of ticking a greyed-out box.
        let mut missing = Vec::new();
        let o = &mut self.overlays;
        let field = "a deformation field";
        for (on, pressed, can, key, needs) in [
            (&mut o.grid.on, k.overlay[0], have.field, "G", field),
            (&mut o.vectors.on, k.overlay[1], have.field, "M", field),
            (&mut o.jacobian.on, k.overlay[2], have.field, "J", field),
            (&mut o.ic.on, k.overlay[3], have.ic, "I", "IC weights"),
            (
                &mut o.labels.on,
                k.overlay[4],
                have.labels,
                "L",
                "a label map",
            ),
        ] {
            if pressed {
                if can {
                    *on = !*on;
                } else {
                    missing.push(format!("{key} needs {needs}: none is loaded"));
                }
            }
        }
        if k.swap {
            std::mem::swap(&mut self.a, &mut self.b);
        }
        if k.reset {
            self.nav.reset();
        }
        missing
    }

    /// Advance flicker to the UI clock's `now`; the seconds until it next
    /// switches (`None` when the mode is not flicker).
    pub fn flicker(&mut self, now: f64) -> Option<f64> {
        if self.composite.mode != Mode::Flicker {
            return None;
        }
        let period = f64::from(self.composite.flicker_period_s.max(0.05));
        if now - self.flicker_since >= period {
            self.flicker_shows_b = !self.flicker_shows_b;
            self.flicker_since = now;
        }
        Some((period - (now - self.flicker_since)).max(0.0))
    }

    /// A pair is loaded: the first one opens in a comparison (what a
    /// clinician looks at first), later ones keep the user's mode.
    pub fn pair_loaded(&mut self) {
        if !self.pair_compared {
            self.pair_compared = true;
            if self.composite.mode == Mode::Single {
                self.composite.mode = Mode::Checkerboard;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_keys_without_their_data_say_so_and_change_nothing() {
        let mut v = ViewState::default();
        let keys = ViewKeys {
            overlay: [true, false, true, true, false],
            ..ViewKeys::default()
        };
        let missing = v.apply_keys(&keys, Drawable::default());
        assert_eq!(missing.len(), 3);
        assert!(missing[0].starts_with("G needs a deformation field"));
        assert!(!v.overlays.grid.on && !v.overlays.jacobian.on && !v.overlays.ic.on);
        let have = Drawable {
            field: true,
            ic: true,
            labels: false,
        };
        assert!(v.apply_keys(&keys, have).is_empty());
        assert!(v.overlays.grid.on && v.overlays.jacobian.on && v.overlays.ic.on);
    }

    #[test]
    fn plane_mode_swap_and_slice_keys() {
        let mut v = ViewState {
            nav: Navigation::framing(&Grid::new([10, 10, 10], affine::IDENTITY)),
            ..ViewState::default()
        };
        let z0 = v.nav.cursor_ras[2];
        let k = ViewKeys {
            enlarge: [false, true, false],
            mode: Some(2),
            swap: true,
            slice: 2,
            ..ViewKeys::default()
        };
        v.apply_keys(&k, Drawable::default());
        assert_eq!(v.nav.enlarged, Some(Plane::Coronal));
        assert_eq!(v.composite.mode, Mode::ALL[2]);
        assert_eq!((v.a, v.b), (Slot::Moving, Slot::Fixed));
        assert_eq!(v.nav.cursor_ras[2], z0, "the coronal view steps along y");
        v.apply_keys(
            &ViewKeys {
                three: true,
                mode: Some(99),
                ..ViewKeys::default()
            },
            Drawable::default(),
        );
        assert_eq!(v.nav.enlarged, None);
        assert_eq!(v.composite.mode, Mode::ALL[2], "no such mode: unchanged");
    }

    #[test]
    fn flicker_switches_each_period() {
        let mut v = ViewState::default();
        assert_eq!(v.flicker(1.0), None);
        v.composite.mode = Mode::Flicker;
        v.composite.flicker_period_s = 0.5;
        let left = v.flicker(0.2).expect("flicker");
        assert!(!v.flicker_shows_b && (left - 0.3).abs() < 1e-6);
        v.flicker(0.6);
        assert!(v.flicker_shows_b);
        v.flicker(0.9);
        assert!(v.flicker_shows_b);
        v.flicker(1.1);
        assert!(!v.flicker_shows_b);
    }

    #[test]
    fn the_first_pair_opens_in_the_checkerboard_and_later_ones_keep_the_mode() {
        let mut v = ViewState::default();
        v.pair_loaded();
        assert_eq!(v.composite.mode, Mode::Checkerboard);
        v.composite.mode = Mode::Single;
        v.pair_loaded();
        assert_eq!(v.composite.mode, Mode::Single);
    }
}
