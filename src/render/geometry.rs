//! Where a slice view looks: plane, position, display convention, zoom and
//! pan, turned into the matrix that maps view coordinates (u, v ∈ [0, 1],
//! v downwards) to world RAS mm and to voxel indices of a volume.
//!
//! Planes are aligned with world (RAS) axes, as in 3D Slicer and ITK-SNAP:
//! - axial: horizontal R–L, anterior at the top;
//! - coronal: horizontal R–L, superior at the top;
//! - sagittal: anterior on the left, superior at the top.
//!
//! Radiological convention puts the patient's right on the screen's left;
//! neurological puts it on the right.

use crate::volume::Grid;
use crate::volume::affine::{self, Mat4};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Plane {
    Sagittal,
    Coronal,
    Axial,
}

impl Plane {
    pub const ALL: [Plane; 3] = [Plane::Axial, Plane::Coronal, Plane::Sagittal];

    /// World axis normal to the plane (0 = x/R, 1 = y/A, 2 = z/S).
    pub fn normal_axis(self) -> usize {
        match self {
            Plane::Sagittal => 0,
            Plane::Coronal => 1,
            Plane::Axial => 2,
        }
    }

    /// World axes shown horizontally and vertically.
    pub fn in_plane_axes(self) -> (usize, usize) {
        match self {
            Plane::Sagittal => (1, 2),
            Plane::Coronal => (0, 2),
            Plane::Axial => (0, 1),
        }
    }

    /// 0, 1, 2 for axial, coronal, sagittal (the order of `ALL`).
    pub fn index(self) -> usize {
        match self {
            Plane::Axial => 0,
            Plane::Coronal => 1,
            Plane::Sagittal => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Plane::Sagittal => "sagittal",
            Plane::Coronal => "coronal",
            Plane::Axial => "axial",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Convention {
    /// Patient's right on the screen's left (radiology reading rooms, ITK-SNAP default).
    #[default]
    Radiological,
    /// Patient's right on the screen's right (neuroscience, FSLeyes default).
    Neurological,
}

pub use crate::volume::world_bounds;

/// A view of one plane: which world box it frames, where the slice is.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceView {
    pub plane: Plane,
    /// World coordinate (mm) of the slice along the plane's normal.
    pub position_mm: f64,
    pub convention: Convention,
    /// World box to frame (usually the fixed image's bounds).
    pub bounds: ([f64; 3], [f64; 3]),
    /// 1 = the whole box fits the view.
    pub zoom: f64,
    /// Offset of the view centre from the box centre, in mm (horizontal, vertical world axes).
    pub pan_mm: [f64; 2],
}

impl SliceView {
    /// A view framing `grid`, at its centre slice.
    pub fn centred(plane: Plane, grid: &Grid, convention: Convention) -> Self {
        let bounds = world_bounds(grid);
        let n = plane.normal_axis();
        Self {
            plane,
            position_mm: 0.5 * (bounds.0[n] + bounds.1[n]),
            convention,
            bounds,
            zoom: 1.0,
            pan_mm: [0.0, 0.0],
        }
    }

    /// Millimetres per view pixel for a view of `size_px` (width, height).
    pub fn mm_per_pixel(&self, size_px: [f64; 2]) -> f64 {
        let (h, v) = self.plane.in_plane_axes();
        let span_h = self.bounds.1[h] - self.bounds.0[h];
        let span_v = self.bounds.1[v] - self.bounds.0[v];
        let w = size_px[0].max(1.0);
        let hgt = size_px[1].max(1.0);
        (span_h / w).max(span_v / hgt) / self.zoom.max(1e-6)
    }

    /// Matrix mapping (u, v, 0, 1) in view coordinates to world RAS mm, for
    /// a view of `size_px` pixels (the box is fitted preserving mm aspect).
    pub fn uv_to_world(&self, size_px: [f64; 2]) -> Mat4 {
        let (h, v) = self.plane.in_plane_axes();
        let mmpp = self.mm_per_pixel(size_px);
        let vis_h = mmpp * size_px[0].max(1.0);
        let vis_v = mmpp * size_px[1].max(1.0);
        let centre_h = 0.5 * (self.bounds.0[h] + self.bounds.1[h]) + self.pan_mm[0];
        let centre_v = 0.5 * (self.bounds.0[v] + self.bounds.1[v]) + self.pan_mm[1];
        // Horizontal direction: sagittal shows anterior on the left (−y to the
        // right); axial/coronal show R on the left in radiological convention.
        let h_sign = match (self.plane, self.convention) {
            (Plane::Sagittal, _) => -1.0,
            (_, Convention::Radiological) => -1.0,
            (_, Convention::Neurological) => 1.0,
        };
        // Vertical: anterior (axial) or superior (others) at the top; v grows downwards.
        let v_sign = -1.0;
        let mut m = affine::IDENTITY;
        for r in 0..3 {
            m[r] = [0.0; 4];
        }
        m[h][0] = h_sign * vis_h;
        m[h][3] = centre_h - h_sign * 0.5 * vis_h;
        m[v][1] = v_sign * vis_v;
        m[v][3] = centre_v - v_sign * 0.5 * vis_v;
        let n = self.plane.normal_axis();
        m[n][3] = self.position_mm;
        m[n][2] = 1.0; // keeps the matrix invertible; w is always 0 in use
        m
    }

    /// Matrix mapping view coordinates to voxel indices of `grid`.
    pub fn uv_to_voxel(&self, grid: &Grid, size_px: [f64; 2]) -> Option<Mat4> {
        affine::inverse(&grid.affine).map(|inv| affine::mul(&inv, &self.uv_to_world(size_px)))
    }

    /// World point under view coordinates (u, v).
    pub fn world_at(&self, uv: [f64; 2], size_px: [f64; 2]) -> [f64; 3] {
        affine::apply(&self.uv_to_world(size_px), [uv[0], uv[1], 0.0])
    }

    /// View coordinates (u, v) of a world point projected onto the view plane.
    pub fn uv_of(&self, world: [f64; 3], size_px: [f64; 2]) -> [f64; 2] {
        let m = self.uv_to_world(size_px);
        let (h, v) = self.plane.in_plane_axes();
        [
            (world[h] - m[h][3]) / m[h][0],
            (world[v] - m[v][3]) / m[v][1],
        ]
    }

    /// Range of slice positions (mm) along the normal, and a natural step:
    /// the grid's finest spacing.
    pub fn slice_range(&self, grid: &Grid) -> (f64, f64, f64) {
        let n = self.plane.normal_axis();
        let (lo, hi) = world_bounds(grid);
        let step = grid
            .spacing_mm()
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        (
            lo[n],
            hi[n],
            if step.is_finite() && step > 0.0 {
                step
            } else {
                1.0
            },
        )
    }
}

/// Row-major 4×4 (f64) to WGSL's column-major `mat4x4<f32>` layout.
pub fn to_wgsl_mat4(m: &Mat4) -> [[f32; 4]; 4] {
    std::array::from_fn(|c| std::array::from_fn(|r| m[r][c] as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axial_radiological_puts_right_on_the_left_and_anterior_on_top() {
        let grid = Grid::new([10, 20, 5], affine::diagonal([1.0, 1.0, 1.0]));
        let view = SliceView::centred(Plane::Axial, &grid, Convention::Radiological);
        let size = [100.0, 200.0];
        let top_left = view.world_at([0.0, 0.0], size);
        let bottom_right = view.world_at([1.0, 1.0], size);
        assert!(
            top_left[0] > bottom_right[0],
            "screen left is patient right (+x)"
        );
        assert!(top_left[1] > bottom_right[1], "top is anterior (+y)");
        // The box [-0.5, 9.5] × [-0.5, 19.5] fits exactly in a 1:2 view.
        assert!((top_left[0] - 9.5).abs() < 1e-9 && (bottom_right[0] + 0.5).abs() < 1e-9);
        assert!((top_left[1] - 19.5).abs() < 1e-9 && (bottom_right[1] + 0.5).abs() < 1e-9);
        assert!((top_left[2] - 2.0).abs() < 1e-9, "centre slice");
        let uv = view.uv_of([3.0, 7.0, 2.0], size);
        let back = view.world_at(uv, size);
        assert!((back[0] - 3.0).abs() < 1e-9 && (back[1] - 7.0).abs() < 1e-9);
        let neuro = SliceView {
            convention: Convention::Neurological,
            ..view
        };
        assert!(neuro.world_at([0.0, 0.0], size)[0] < neuro.world_at([1.0, 0.0], size)[0]);
    }

    #[test]
    fn uv_to_voxel_follows_the_affine() {
        // LPS-like volume: x and y flipped, 2 mm voxels.
        let a = [
            [-2.0, 0.0, 0.0, 50.0],
            [0.0, -2.0, 0.0, 60.0],
            [0.0, 0.0, 2.0, -10.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let grid = Grid::new([50, 60, 10], a);
        let view = SliceView::centred(Plane::Axial, &grid, Convention::Radiological);
        let size = [500.0, 600.0];
        let m = view.uv_to_voxel(&grid, size).expect("invertible");
        let centre = affine::apply(&m, [0.5, 0.5, 0.0]);
        assert!(
            (centre[0] - 24.5).abs() < 1e-9 && (centre[1] - 29.5).abs() < 1e-9,
            "{centre:?}"
        );
        // Top-left of the view is patient right-anterior: for this LPS volume
        // voxel i grows to the left, so right is i = −0.5; anterior is j = −0.5.
        let tl = affine::apply(&m, [0.0, 0.0, 0.0]);
        assert!(
            (tl[0] + 0.5).abs() < 1e-9 && (tl[1] + 0.5).abs() < 1e-9,
            "{tl:?}"
        );
    }
}
