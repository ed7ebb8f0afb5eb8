//! Volumes: f32 samples laid out channels × z × y × x (x fastest, as NIfTI
//! stores them), with the voxel → world (RAS mm) affine.

pub mod affine;
pub mod dicom;
mod dicom_lengths;
mod error;
pub mod intensity;
pub mod nifti;
pub mod open;
pub mod pyramid;
pub mod resample;
pub mod smooth;

pub use affine::Mat4;
pub use error::{VolumeError, VolumeErrorKind};

/// A sampling grid: voxel counts along (i, j, k) = (x, y, z) and the affine
/// that maps voxel indices (i, j, k) to world RAS millimetres.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    pub dims: [usize; 3],
    pub affine: Mat4,
}

impl Grid {
    pub fn new(dims: [usize; 3], affine: Mat4) -> Self {
        Self { dims, affine }
    }

    pub fn voxels(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// Same voxel counts and the same affine (to header precision, see [`same_affine`]).
    pub fn same_as(&self, other: &Grid) -> bool {
        self.dims == other.dims && same_affine(&self.affine, &other.affine)
    }

    /// Voxel spacing in mm (lengths of the affine's columns).
    pub fn spacing_mm(&self) -> [f64; 3] {
        affine::column_norms(&self.affine)
    }

    /// Orientation code such as "RAS" or "LPI".
    pub fn orientation(&self) -> String {
        affine::orientation_code(&self.affine)
    }

    /// World RAS mm position of a (possibly fractional) voxel index.
    pub fn voxel_to_world(&self, ijk: [f64; 3]) -> [f64; 3] {
        affine::apply(&self.affine, ijk)
    }

    /// Whether a world point lies at least `margin_vox` voxels inside the grid's
    /// voxel centres (a negative margin reaches past them).
    pub fn contains_world(&self, ras_mm: [f64; 3], margin_vox: f64) -> bool {
        self.world_to_voxel(ras_mm).is_some_and(|v| {
            (0..3).all(|a| v[a] >= margin_vox && v[a] <= (self.dims[a] as f64 - 1.0) - margin_vox)
        })
    }

    /// Voxel index of a world RAS mm point; `None` if the affine is singular.
    pub fn world_to_voxel(&self, ras_mm: [f64; 3]) -> Option<[f64; 3]> {
        affine::inverse(&self.affine).map(|inv| affine::apply(&inv, ras_mm))
    }
}

/// Voxel coordinates (x, y, z) of linear index `i` on a grid of `dims`
/// (x fastest, as volumes store their samples).
pub fn voxel_of(i: usize, dims: [usize; 3]) -> [f64; 3] {
    let [nx, ny, _] = dims;
    [
        (i % nx) as f64,
        ((i / nx) % ny) as f64,
        (i / (nx * ny)) as f64,
    ]
}

/// A multi-channel scalar volume.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub grid: Grid,
    pub channels: usize,
    /// channels × z × y × x, x fastest.
    pub data: Vec<f32>,
}

impl Volume {
    /// A volume filled with `value`. Panics only if the sizes overflow `usize`,
    /// which callers with user-controlled sizes must check first.
    pub fn filled(grid: Grid, channels: usize, value: f32) -> Self {
        let n = grid.voxels() * channels;
        Self {
            grid,
            channels,
            data: vec![value; n],
        }
    }

    /// Wrap existing samples; errors if the length does not match the grid.
    pub fn from_data(grid: Grid, channels: usize, data: Vec<f32>) -> Result<Self, VolumeError> {
        let expected = grid.voxels().checked_mul(channels);
        if expected != Some(data.len()) || channels == 0 {
            return Err(VolumeError::new(
                "",
                VolumeErrorKind::Invalid(format!(
                    "{} samples do not fill a {}×{}×{} grid with {} channel(s)",
                    data.len(),
                    grid.dims[0],
                    grid.dims[1],
                    grid.dims[2],
                    channels
                )),
            ));
        }
        Ok(Self {
            grid,
            channels,
            data,
        })
    }

    pub fn dims(&self) -> [usize; 3] {
        self.grid.dims
    }

    pub fn voxels(&self) -> usize {
        self.grid.voxels()
    }

    /// Samples of one channel (z × y × x, x fastest).
    pub fn channel(&self, c: usize) -> &[f32] {
        let n = self.voxels();
        &self.data[c * n..(c + 1) * n]
    }

    pub fn channel_mut(&mut self, c: usize) -> &mut [f32] {
        let n = self.voxels();
        &mut self.data[c * n..(c + 1) * n]
    }

    /// Linear index of voxel (x, y, z) within one channel.
    pub fn index(&self, x: usize, y: usize, z: usize) -> usize {
        (z * self.grid.dims[1] + y) * self.grid.dims[0] + x
    }

    pub fn get(&self, c: usize, x: usize, y: usize, z: usize) -> f32 {
        self.data[c * self.voxels() + self.index(x, y, z)]
    }

    /// A new volume holding only channel `c`.
    pub fn extract_channel(&self, c: usize) -> Volume {
        Volume {
            grid: self.grid.clone(),
            channels: 1,
            data: self.channel(c).to_vec(),
        }
    }

    /// Stack single- or multi-channel volumes on the same grid along the channel axis.
    pub fn stack(parts: &[Volume]) -> Result<Volume, VolumeError> {
        let first = parts.first().ok_or_else(|| {
            VolumeError::new("", VolumeErrorKind::Invalid("no volumes to stack".into()))
        })?;
        let mut data = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in parts {
            if !p.grid.same_as(&first.grid) {
                return Err(VolumeError::new(
                    "",
                    VolumeErrorKind::Invalid(format!(
                        "cannot stack channels on different grids ({:?} vs {:?}); resample first",
                        p.grid.dims, first.grid.dims
                    )),
                ));
            }
            data.extend_from_slice(&p.data);
        }
        let channels = parts.iter().map(|p| p.channels).sum();
        Ok(Volume {
            grid: first.grid.clone(),
            channels,
            data,
        })
    }

    /// Minimum and maximum of finite samples of channel `c` (`None` if empty).
    pub fn range(&self, c: usize) -> Option<(f32, f32)> {
        range_of(self.channel(c))
    }
}

/// Minimum and maximum of the finite values in a slice.
pub fn range_of(values: &[f32]) -> Option<(f32, f32)> {
    let mut it = values.iter().copied().filter(|v| v.is_finite());
    let first = it.next()?;
    Some(it.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v))))
}

/// Affines equal to within 1e-4 mm / 1e-6 relative (float32 headers round).
pub fn same_affine(a: &Mat4, b: &Mat4) -> bool {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .all(|(x, y)| (x - y).abs() <= 1e-4 + 1e-6 * x.abs().max(y.abs()))
}

/// The world (RAS mm) box a grid's voxels cover, corners included: its
/// lowest and highest coordinate along each axis.
pub fn world_bounds(grid: &Grid) -> ([f64; 3], [f64; 3]) {
    let mut lo = [f64::INFINITY; 3];
    let mut hi = [f64::NEG_INFINITY; 3];
    for corner in 0..8 {
        let ijk: [f64; 3] = std::array::from_fn(|a| {
            if corner & (1 << a) == 0 {
                -0.5
            } else {
                grid.dims[a] as f64 - 0.5
            }
        });
        let w = affine::apply(&grid.affine, ijk);
        for a in 0..3 {
            lo[a] = lo[a].min(w[a]);
            hi[a] = hi[a].max(w[a]);
        }
    }
    (lo, hi)
}

/// Whether two grids' world boxes overlap; if not, the gap between them (mm).
pub fn world_gap_mm(a: &Grid, b: &Grid) -> Option<f64> {
    let (alo, ahi) = world_bounds(a);
    let (blo, bhi) = world_bounds(b);
    let mut gap2 = 0.0;
    for k in 0..3 {
        let d = (blo[k] - ahi[k]).max(alo[k] - bhi[k]);
        if d > 0.0 {
            gap2 += d * d;
        }
    }
    let overlapping = (0..3).all(|k| alo[k] < bhi[k] && blo[k] < ahi[k]);
    (!overlapping).then(|| gap2.sqrt())
}
