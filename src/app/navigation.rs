//! Where the views look: the linked cursor (crosshair) in world RAS mm, the
//! display convention, each plane's zoom and pan, and which view (if any) is
//! enlarged. Plain data, so a session can save it.

use serde::{Deserialize, Serialize};

use crate::render::geometry::world_bounds;
use crate::render::{Convention, Plane, SliceView};
use crate::volume::Grid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Navigation {
    /// The crosshair: every view shows the slice through it.
    pub cursor_ras: [f64; 3],
    pub convention: Convention,
    /// One view filling the view area, or `None` for all three.
    pub enlarged: Option<Plane>,
    /// Zoom per plane (index `Plane::index`); 1 = the frame fits the view.
    pub zoom: [f64; 3],
    /// Pan per plane (mm along the view's horizontal and vertical world axes).
    pub pan_mm: [[f64; 2]; 3],
    /// The world box the views frame (the fixed image's).
    pub bounds: ([f64; 3], [f64; 3]),
    /// Slice step (mm): the framing grid's finest spacing.
    pub step_mm: f64,
}

impl Navigation {
    pub fn framing(grid: &Grid) -> Self {
        let bounds = world_bounds(grid);
        let step = grid
            .spacing_mm()
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        Self {
            cursor_ras: std::array::from_fn(|a| 0.5 * (bounds.0[a] + bounds.1[a])),
            convention: Convention::Radiological,
            enlarged: None,
            zoom: [1.0; 3],
            pan_mm: [[0.0; 2]; 3],
            bounds,
            step_mm: if step.is_finite() && step > 0.0 {
                step
            } else {
                1.0
            },
        }
    }

    /// Frame a new grid, keeping the convention and layout.
    pub fn reframe(&mut self, grid: &Grid) {
        let fresh = Self::framing(grid);
        *self = Self {
            convention: self.convention,
            enlarged: self.enlarged,
            ..fresh
        };
    }

    /// Centre the cursor, zoom 1, no pan.
    pub fn reset(&mut self) {
        let b = self.bounds;
        self.cursor_ras = std::array::from_fn(|a| 0.5 * (b.0[a] + b.1[a]));
        self.zoom = [1.0; 3];
        self.pan_mm = [[0.0; 2]; 3];
    }

    pub fn view(&self, plane: Plane) -> SliceView {
        let i = plane.index();
        SliceView {
            plane,
            position_mm: self.cursor_ras[plane.normal_axis()],
            convention: self.convention,
            bounds: self.bounds,
            zoom: self.zoom[i],
            pan_mm: self.pan_mm[i],
        }
    }

    /// Slice range of a plane (mm along its normal).
    pub fn slice_range(&self, plane: Plane) -> (f64, f64) {
        let n = plane.normal_axis();
        (self.bounds.0[n], self.bounds.1[n])
    }

    /// Move `plane`'s slice by `steps` slice steps, staying inside the frame.
    pub fn step_slice(&mut self, plane: Plane, steps: f64) {
        let n = plane.normal_axis();
        let (lo, hi) = self.slice_range(plane);
        self.cursor_ras[n] = (self.cursor_ras[n] + steps * self.step_mm).clamp(lo, hi);
    }

    /// Multiply `plane`'s zoom by `factor` (kept within 0.1–50).
    pub fn zoom_by(&mut self, plane: Plane, factor: f64) {
        let z = &mut self.zoom[plane.index()];
        *z = (*z * factor).clamp(0.1, 50.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::affine;

    #[test]
    fn slices_follow_the_cursor_and_stay_in_the_frame() {
        let grid = Grid::new([10, 20, 30], affine::diagonal([2.0, 1.0, 1.5]));
        let mut nav = Navigation::framing(&grid);
        assert_eq!(nav.step_mm, 1.0);
        let centre = nav.cursor_ras;
        assert!((centre[2] - 21.75).abs() < 1e-9, "{centre:?}");
        assert_eq!(nav.view(Plane::Axial).position_mm, centre[2]);
        nav.step_slice(Plane::Sagittal, 3.0);
        assert!((nav.view(Plane::Sagittal).position_mm - (centre[0] + 3.0)).abs() < 1e-9);
        nav.step_slice(Plane::Sagittal, 1000.0);
        assert!(
            (nav.cursor_ras[0] - 19.0).abs() < 1e-9,
            "clamped at the box edge"
        );
        nav.zoom_by(Plane::Coronal, 1e6);
        assert_eq!(nav.zoom[Plane::Coronal.index()], 50.0);
    }
}
