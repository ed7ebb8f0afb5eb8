//! The field the views show (a loaded one, or a run's live preview) and
//! its products computed on the GPU (warped image, det J) as far as they
//! have been read back. Plain data: the viewer dispatches the GPU work.

use std::path::PathBuf;

use super::data::LoadedField;
use crate::metrics::FieldKind;
use crate::render::Readback;
use crate::volume::{Grid, Volume, range_of};

/// det J statistics over the field's grid (from the GPU's map).
#[derive(Clone, Debug, PartialEq)]
pub struct JacobianStats {
    pub min: f32,
    pub max: f32,
    pub folds: usize,
    pub voxels: usize,
}

impl JacobianStats {
    pub fn from_values(v: &[f32]) -> Self {
        let (min, max) = range_of(v).unwrap_or((f32::NAN, f32::NAN));
        Self {
            min,
            max,
            folds: v.iter().filter(|&&x| x <= 0.0).count(),
            voxels: v.len(),
        }
    }

    pub fn fold_percent(&self) -> f64 {
        100.0 * self.folds as f64 / self.voxels.max(1) as f64
    }
}

/// The GPU-computed products of the field, as far as they have arrived.
#[derive(Default)]
pub struct Products {
    pub warped_ready: bool,
    /// CPU copy of the warped image (on the field's grid), for read-outs.
    pub warped: Option<Volume>,
    pub(super) warped_rb: Option<Readback>,
    pub jacobian_ready: bool,
    pub jacobian: Option<Volume>,
    pub jacobian_stats: Option<JacobianStats>,
    pub(super) jacobian_rb: Option<Readback>,
}

#[derive(Default)]
pub struct FieldState {
    /// A field opened from a file or taken from a finished run.
    pub loaded: Option<LoadedField>,
    pub products: Products,
    /// Bumped whenever the field changes (TRE is recomputed on it).
    pub serial: u64,
    /// The grid of the live preview's field while a run draws it (the field
    /// textures hold a preview, not a loaded field).
    pub preview_grid: Option<Grid>,
    /// The kind chosen for the next field opened ("auto" = from the header).
    pub kind: Option<FieldKind>,
    /// Fields waiting for the fixed image (they are resampled onto its grid).
    pub(super) deferred: Vec<(PathBuf, Option<FieldKind>)>,
}

impl FieldState {
    pub fn new(kind: Option<FieldKind>) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// The grid of the field in the scene: a loaded field's, or the live
    /// preview's while a run draws it.
    pub fn grid(&self) -> Option<&Grid> {
        self.loaded
            .as_ref()
            .map(|f| &f.disp_vox.grid)
            .or(self.preview_grid.as_ref())
    }

    /// Forget the field's products (a new field, or none, is coming).
    pub fn clear_products(&mut self) {
        self.preview_grid = None;
        self.products = Products::default();
        self.serial += 1;
    }

    /// Take `field` (its det J is being read back); the products start over.
    pub fn take(&mut self, field: LoadedField, jacobian: Readback) {
        self.preview_grid = None;
        self.products = Products {
            jacobian_rb: Some(jacobian),
            jacobian_ready: true,
            ..Products::default()
        };
        self.loaded = Some(field);
        self.serial += 1;
    }

    /// det J values read back for the loaded field: its statistics, and a
    /// notice when it folds.
    pub fn accept_jacobian(&mut self, values: Vec<f32>) -> Option<String> {
        let grid = self.loaded.as_ref()?.disp_vox.grid.clone();
        let stats = JacobianStats::from_values(&values);
        let notice = (stats.folds > 0).then(|| {
            format!(
                "det J ≤ 0 at {} voxels ({:.3} %): the field folds",
                stats.folds,
                stats.fold_percent()
            )
        });
        self.products.jacobian_stats = Some(stats);
        self.products.jacobian = Volume::from_data(grid, 1, values).ok();
        notice
    }

    /// The warped image's values read back for the loaded field.
    pub fn accept_warped(&mut self, values: Vec<f32>) {
        if let Some(f) = &self.loaded {
            self.products.warped = Volume::from_data(f.disp_vox.grid.clone(), 1, values).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Mapping;
    use crate::volume::affine;

    fn field(dims: [usize; 3]) -> LoadedField {
        let g = Grid::new(dims, affine::IDENTITY);
        let n = dims.iter().product::<usize>();
        LoadedField {
            name: "u.nii".into(),
            path: None,
            kind: FieldKind::DispVox,
            disp_vox: Volume::from_data(g.clone(), 3, vec![0.0; 3 * n]).expect("sizes"),
            mapping: Mapping::identity(&g),
            notice: None,
        }
    }

    #[test]
    fn the_preview_grid_serves_until_a_field_is_loaded() {
        let mut s = FieldState::default();
        assert!(s.grid().is_none());
        s.preview_grid = Some(Grid::new([2, 2, 2], affine::IDENTITY));
        assert_eq!(s.grid().map(|g| g.dims), Some([2, 2, 2]));
        s.loaded = Some(field([4, 3, 2]));
        assert_eq!(s.grid().map(|g| g.dims), Some([4, 3, 2]));
        let before = s.serial;
        s.clear_products();
        assert_eq!(s.serial, before + 1);
        assert!(s.preview_grid.is_none());
    }

    #[test]
    fn folds_in_the_read_back_det_j_are_counted_and_told() {
        let mut s = FieldState::default();
        assert_eq!(s.accept_jacobian(vec![1.0; 8]), None, "no field: ignored");
        s.loaded = Some(field([2, 2, 2]));
        let notice = s.accept_jacobian(vec![1.0, 1.1, 0.9, -0.2, 1.0, 1.0, 0.0, 1.2]);
        let stats = s.products.jacobian_stats.clone().expect("stats");
        assert_eq!((stats.folds, stats.voxels), (2, 8));
        assert_eq!((stats.min, stats.max), (-0.2, 1.2));
        assert!(notice.expect("a notice").contains("25.000 %"));
        assert_eq!(s.accept_jacobian(vec![1.0; 8]), None);
        assert!(s.products.jacobian.is_some());
        s.accept_warped(vec![0.5; 7]);
        assert!(s.products.warped.is_none(), "wrong size is dropped");
        s.accept_warped(vec![0.5; 8]);
        assert!(s.products.warped.is_some());
    }
}
