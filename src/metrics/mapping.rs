//! A registration result as a mapped-coordinate image: for every fixed voxel,
//! the world RAS mm point of the moving image it corresponds to (the format
//! `../shared/bench/evaluate.py` reads). Every field convention reduces to it.

use std::path::Path;

use crate::parallel;
use crate::volume::affine::{self, Mat4};
use crate::volume::nifti::{self, INTENT_VECTOR, NiftiInfo, ReadOptions};
use crate::volume::resample::{Border, Interp, Sampler, resample};
use crate::volume::{Grid, Volume, VolumeError, VolumeErrorKind};

/// How the numbers in a field file are to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Mapped coordinates: RAS mm of the corresponding moving point.
    Mapped,
    /// Displacement in RAS mm: moving point = x + u(x) (the shared pairs' `gt_disp`).
    DispRasMm,
    /// Displacement in voxels of the fixed grid, components (i, j, k):
    /// moving point = A_fixed · (p + u(p)) (Warpscope's `field_vox`).
    DispVox,
    /// ITK/ANTs displacement in LPS mm: moving point = x + (−u_x, −u_y, u_z).
    AntsLpsMm,
}

impl FieldKind {
    /// The kind a file's header declares: an ANTs/ITK 5-D vector image, or
    /// Warpscope's own `descrip` tags; `None` when the header does not say.
    pub fn detect(info: &NiftiInfo) -> Option<Self> {
        Self::declared(info.intent_code, info.dims.len(), &info.description)
    }

    /// The same from the raw header facts (intent code, number of
    /// dimensions, `descrip`), so a file can be recognised without reading it.
    pub fn declared(intent_code: i32, ndim: usize, description: &str) -> Option<Self> {
        if intent_code == INTENT_VECTOR && ndim == 5 {
            Some(Self::AntsLpsMm)
        } else if description.starts_with("warpscope:mapped") {
            Some(Self::Mapped)
        } else if description.starts_with("warpscope:field_vox") {
            Some(Self::DispVox)
        } else {
            None
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mapped => "mapped",
            Self::DispRasMm => "disp-ras",
            Self::DispVox => "disp-vox",
            Self::AntsLpsMm => "ants",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mapped" => Some(Self::Mapped),
            "disp-ras" => Some(Self::DispRasMm),
            "disp-vox" => Some(Self::DispVox),
            "ants" => Some(Self::AntsLpsMm),
            _ => None,
        }
    }
}

/// RAS ⇄ LPS: the sign of each component (x and y flip, z stays).
pub const LPS_SIGN: [f32; 3] = [-1.0, -1.0, 1.0];

/// Fixed-grid map to moving world coordinates.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// 3 channels (x, y, z RAS mm) on the fixed grid.
    pub coords: Volume,
}

fn invalid(msg: String) -> VolumeError {
    VolumeError::new("", VolumeErrorKind::Invalid(msg))
}

/// World coordinates of every voxel of `grid`, as 3 channels.
pub fn world_coordinates(grid: &Grid) -> Volume {
    let n = grid.voxels();
    let [nx, ny, _] = grid.dims;
    let mut data = vec![0f32; 3 * n];
    for c in 0..3 {
        let m = grid.affine;
        parallel::for_each_row(&mut data[c * n..(c + 1) * n], nx.max(1), |row, line| {
            let (y, z) = (row % ny, row / ny);
            for (x, v) in line.iter_mut().enumerate() {
                *v =
                    (m[c][0] * x as f64 + m[c][1] * y as f64 + m[c][2] * z as f64 + m[c][3]) as f32;
            }
        });
    }
    Volume {
        grid: grid.clone(),
        channels: 3,
        data,
    }
}

impl Mapping {
    /// The identity: every fixed voxel maps to its own world position.
    pub fn identity(grid: &Grid) -> Self {
        Self {
            coords: world_coordinates(grid),
        }
    }

    pub fn grid(&self) -> &Grid {
        &self.coords.grid
    }

    /// Read a 3-component field of the given kind; when it lies on another
    /// grid than `fixed`, it is converted to mapped coordinates on its own
    /// grid and resampled (trilinear, exact for affine maps) onto `fixed`.
    pub fn from_field(
        field: &Volume,
        kind: FieldKind,
        fixed: &Grid,
    ) -> Result<(Self, Option<String>), VolumeError> {
        if field.channels != 3 {
            return Err(invalid(format!(
                "a displacement or mapped-coordinate field needs 3 components, this one has {}",
                field.channels
            )));
        }
        let own = field.grid.clone();
        let mut coords = match kind {
            FieldKind::Mapped => field.clone(),
            _ => world_coordinates(&own),
        };
        let n = own.voxels();
        match kind {
            FieldKind::Mapped => {}
            FieldKind::DispRasMm | FieldKind::AntsLpsMm => {
                let sign = if kind == FieldKind::AntsLpsMm {
                    LPS_SIGN
                } else {
                    [1.0; 3]
                };
                for c in 0..3 {
                    for i in 0..n {
                        coords.data[c * n + i] += sign[c] * field.data[c * n + i];
                    }
                }
            }
            FieldKind::DispVox => {
                // A·(p + u) = A·p + L·u, L the linear part of the affine.
                let a = own.affine;
                for i in 0..n {
                    let u = [
                        field.data[i] as f64,
                        field.data[n + i] as f64,
                        field.data[2 * n + i] as f64,
                    ];
                    for c in 0..3 {
                        coords.data[c * n + i] +=
                            (a[c][0] * u[0] + a[c][1] * u[1] + a[c][2] * u[2]) as f32;
                    }
                }
            }
        }
        if own.same_as(fixed) {
            coords.grid = fixed.clone();
            return Ok((Self { coords }, None));
        }
        let notice = format!(
            "the field's grid ({:?}) differs from the fixed image's ({:?}): resampled onto the fixed grid",
            own.dims, fixed.dims
        );
        Ok((
            Self {
                coords: resample(&coords, fixed, Interp::Linear, Border::Clamp)?,
            },
            Some(notice),
        ))
    }

    /// Read a field file as a mapping on `fixed` (kind from `kind`, else from
    /// the header). Returns the kind used and a notice when the field was
    /// resampled onto `fixed`.
    pub fn load(
        path: &Path,
        kind: Option<FieldKind>,
        fixed: &Grid,
    ) -> Result<(Self, FieldKind, Option<String>), String> {
        let (field, info) =
            nifti::read_file(path, ReadOptions::default()).map_err(|e| e.to_string())?;
        let kind = kind.or_else(|| FieldKind::detect(&info)).ok_or_else(|| {
            format!(
                "{}: cannot tell how to read this field (its header names no convention); \
                 give its kind (mapped, disp-ras, disp-vox or ants: `--field-kind` on the command line)",
                path.display()
            )
        })?;
        let (m, notice) = Self::from_field(&field, kind, fixed)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((m, kind, notice))
    }

    /// The displacement u in voxels of the mapping's own grid, components
    /// (i, j, k): mapped point = A·(p + u(p)) (the engine's `field_vox`).
    pub fn displacement_vox(&self) -> Result<Volume, VolumeError> {
        let g = self.grid();
        let inv = affine::inverse(&g.affine).ok_or_else(|| {
            VolumeError::new(
                "",
                VolumeErrorKind::SingularMatrix {
                    which: "fixed affine",
                },
            )
        })?;
        let n = g.voxels();
        let c = &self.coords.data;
        let mut data = vec![0f32; 3 * n];
        for i in 0..n {
            let p = crate::volume::voxel_of(i, g.dims);
            let q = affine::apply(&inv, [c[i] as f64, c[n + i] as f64, c[2 * n + i] as f64]);
            for a in 0..3 {
                data[a * n + i] = (q[a] - p[a]) as f32;
            }
        }
        Ok(Volume {
            grid: g.clone(),
            channels: 3,
            data,
        })
    }

    /// Mapped point at a fractional fixed voxel (trilinear; clamped at the edges).
    pub fn at_voxel(&self, p: [f64; 3]) -> [f64; 3] {
        let s = Sampler {
            dims: self.coords.grid.dims,
            border: Border::Clamp,
        };
        std::array::from_fn(|c| f64::from(s.linear(self.coords.channel(c), p)))
    }

    /// Map a fixed world point to the moving world; `None` outside the fixed grid.
    pub fn map_point(&self, ras_fixed: [f64; 3]) -> Option<[f64; 3]> {
        let p = self.grid().world_to_voxel(ras_fixed)?;
        self.grid()
            .contains_world(ras_fixed, -1e-6)
            .then(|| self.at_voxel(p))
    }

    /// Inverse map of a moving world point by fixed-point iteration
    /// x ← x − (C(x) − y), started at x = y. Returns the fixed point and
    /// the residual |C(x) − y| in mm; `None` if the iteration leaves the grid.
    pub fn inverse_point(&self, ras_moving: [f64; 3]) -> Option<([f64; 3], f64)> {
        let mut x = ras_moving;
        let mut residual = f64::INFINITY;
        for _ in 0..100 {
            let c = self.map_point(x)?;
            let r = [
                c[0] - ras_moving[0],
                c[1] - ras_moving[1],
                c[2] - ras_moving[2],
            ];
            residual = (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt();
            if residual < 1e-5 {
                break;
            }
            for a in 0..3 {
                x[a] -= r[a];
            }
        }
        Some((x, residual))
    }

    /// Moving voxel coordinates of every fixed voxel (3 channels).
    fn moving_voxels(&self, moving: &Grid) -> Result<Vec<[f64; 3]>, VolumeError> {
        let inv: Mat4 = affine::inverse(&moving.affine).ok_or_else(|| {
            VolumeError::new(
                "",
                VolumeErrorKind::SingularMatrix {
                    which: "moving affine",
                },
            )
        })?;
        let n = self.coords.voxels();
        let c = &self.coords.data;
        Ok((0..n)
            .map(|i| affine::apply(&inv, [c[i] as f64, c[n + i] as f64, c[2 * n + i] as f64]))
            .collect())
    }

    /// Warp a moving-space volume into the fixed grid (outside → 0).
    pub fn warp(&self, moving: &Volume, interp: Interp) -> Result<Volume, VolumeError> {
        let pts = self.moving_voxels(&moving.grid)?;
        let n = pts.len();
        let s = Sampler {
            dims: moving.grid.dims,
            border: Border::Constant(0.0),
        };
        let mut data = vec![0f32; n * moving.channels];
        for ch in 0..moving.channels {
            let src = moving.channel(ch);
            let nx = self.grid().dims[0].max(1);
            parallel::for_each_row(&mut data[ch * n..(ch + 1) * n], nx, |row, line| {
                for (x, v) in line.iter_mut().enumerate() {
                    let p = pts[row * nx + x];
                    *v = match interp {
                        Interp::Linear => s.linear(src, p),
                        Interp::Nearest => s.nearest(src, p),
                    };
                }
            });
        }
        Ok(Volume {
            grid: self.grid().clone(),
            channels: moving.channels,
            data,
        })
    }

    /// Fixed voxels whose mapped point falls outside the moving image (by
    /// more than half a voxel), or is exactly (0, 0, 0) — what tools write
    /// where they had nothing to sample (evaluate.py's convention).
    pub fn unmapped(&self, moving: &Grid) -> Result<Vec<bool>, VolumeError> {
        let pts = self.moving_voxels(moving)?;
        let n = pts.len();
        let c = &self.coords.data;
        let d = moving.dims;
        Ok((0..n)
            .map(|i| {
                let p = pts[i];
                let outside = (0..3).any(|a| p[a] < -0.5 || p[a] > d[a] as f64 - 0.5);
                outside || (c[i] == 0.0 && c[n + i] == 0.0 && c[2 * n + i] == 0.0)
            })
            .collect())
    }
}
