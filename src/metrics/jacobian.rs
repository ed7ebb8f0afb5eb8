//! Jacobian determinant of the mapping and its statistics.

use serde_json::{Value, json};

use super::{Mapping, opt};
use crate::volume::affine;
use crate::volume::{Grid, Volume};

/// det(∂C/∂x) of the mapping with respect to world coordinates, per fixed
/// voxel: derivatives along voxel axes by central differences inside and
/// one-sided differences at the borders (NumPy's `gradient`, as
/// methods.md and evaluate.py specify), then chained with the inverse of the
/// grid's linear part. Axes of a single voxel count as unit stretch.
pub fn determinant(mapping: &Mapping) -> Volume {
    let g = mapping.grid();
    let [nx, ny, nz] = g.dims;
    let n = g.voxels();
    let rinv = affine::inverse(&g.affine).unwrap_or(affine::IDENTITY);
    let c = &mapping.coords.data;
    let mut out = vec![0f32; n];
    let strides = [1usize, nx, nx * ny];
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let i = (z * ny + y) * nx + x;
                let p = [x, y, z];
                // d C_comp / d voxel_axis
                let mut dv = [[0f64; 3]; 3];
                for a in 0..3 {
                    let len = g.dims[a];
                    for comp in 0..3 {
                        let val = |k: usize| {
                            f64::from(c[comp * n + i - p[a] * strides[a] + k * strides[a]])
                        };
                        dv[comp][a] = if len < 2 {
                            g.affine[comp][a]
                        } else if p[a] == 0 {
                            val(1) - val(0)
                        } else if p[a] == len - 1 {
                            val(len - 1) - val(len - 2)
                        } else {
                            0.5 * (val(p[a] + 1) - val(p[a] - 1))
                        };
                    }
                }
                // d C / d world = dv · Rinv
                let mut j = affine::IDENTITY;
                for r in 0..3 {
                    for k in 0..3 {
                        j[r][k] = (0..3).map(|a| dv[r][a] * rinv[a][k]).sum();
                    }
                }
                out[i] = affine::det3(&j) as f32;
            }
        }
    }
    Volume {
        grid: g.clone(),
        channels: 1,
        data: out,
    }
}

/// Non-diffeomorphic volume (Liu et al., "On finite difference Jacobian
/// computation in deformable image registration", IJCV 2024; the LUMIR
/// challenge's NDV): the mapping in fixed voxel units is split into
/// tetrahedra by the 8 one-sided difference schemes and the two diagonal
/// ones (j1*, j2*); each voxel contributes −½·min(det, 0)/6 per scheme. The
/// displacement is extended by replication past the borders. Returned as a
/// percentage of the voxels counted (those in `mask`, or all).
pub fn ndv_percent(mapping: &Mapping, mask: Option<&[bool]>) -> f64 {
    let g = mapping.grid();
    let [nx, ny, nz] = g.dims;
    let n = g.voxels();
    let inv = affine::inverse(&g.affine).unwrap_or(affine::IDENTITY);
    let c = &mapping.coords.data;
    // Displacement in voxel units: T(p) − p.
    let disp: Vec<[f64; 3]> = (0..n)
        .map(|i| {
            let x = i % nx;
            let y = (i / nx) % ny;
            let z = i / (nx * ny);
            let t = affine::apply(
                &inv,
                [
                    f64::from(c[i]),
                    f64::from(c[n + i]),
                    f64::from(c[2 * n + i]),
                ],
            );
            [t[0] - x as f64, t[1] - y as f64, t[2] - z as f64]
        })
        .collect();
    let t_at = |p: [i64; 3]| -> [f64; 3] {
        let cl = |v: i64, len: usize| v.clamp(0, len as i64 - 1) as usize;
        let d = disp[(cl(p[2], nz) * ny + cl(p[1], ny)) * nx + cl(p[0], nx)];
        [p[0] as f64 + d[0], p[1] as f64 + d[1], p[2] as f64 + d[2]]
    };
    let sub = |a: [f64; 3], b: [f64; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    let det_cols = |c0: [f64; 3], c1: [f64; 3], c2: [f64; 3]| {
        c0[0] * (c1[1] * c2[2] - c1[2] * c2[1]) - c1[0] * (c0[1] * c2[2] - c0[2] * c2[1])
            + c2[0] * (c0[1] * c1[2] - c0[2] * c1[1])
    };
    let mut total = 0f64;
    let mut counted = 0usize;
    for z in 0..nz as i64 {
        for y in 0..ny as i64 {
            for x in 0..nx as i64 {
                let i = ((z as usize) * ny + y as usize) * nx + x as usize;
                if mask.is_some_and(|m| !m[i]) {
                    continue;
                }
                counted += 1;
                let p = [x, y, z];
                let t0 = t_at(p);
                let shift = |d: [i64; 3]| t_at([p[0] + d[0], p[1] + d[1], p[2] + d[2]]);
                let mut acc = 0f64;
                // One-sided schemes: '+' forward, '−' backward, per axis.
                for signs in 0..8 {
                    let col = |a: usize| {
                        let mut e = [0i64; 3];
                        e[a] = 1;
                        if signs & (1 << a) == 0 {
                            sub(shift(e), t0)
                        } else {
                            sub(t0, shift([-e[0], -e[1], -e[2]]))
                        }
                    };
                    acc += det_cols(col(0), col(1), col(2)).min(0.0);
                }
                // j1*: backward along two axes at once; j2*: forward.
                let j1 = det_cols(
                    sub(shift([-1, -1, 0]), t0),
                    sub(shift([-1, 0, -1]), t0),
                    sub(shift([0, -1, -1]), t0),
                );
                let j2 = det_cols(
                    sub(shift([1, 1, 0]), t0),
                    sub(shift([0, 1, 1]), t0),
                    sub(shift([1, 0, 1]), t0),
                );
                acc += j1.min(0.0) + j2.min(0.0);
                total += -0.5 * acc / 6.0;
            }
        }
    }
    if counted == 0 {
        0.0
    } else {
        100.0 * total / counted as f64
    }
}

/// Statistics of a determinant map over a mask.
#[derive(Clone, Debug, PartialEq)]
pub struct JacobianStats {
    pub n: usize,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Standard deviation of det J (MIRRBA's SDJDet).
    pub sd_jdet: f64,
    /// Standard deviation of log det J with det clipped to [1e-9, 1e9] (SDlogJ, LUMIR / MICS).
    pub sd_log_j: f64,
    /// Standard deviation of log(|det J| + 1e-9), as evaluate.py reports it.
    pub log_abs_std: f64,
    /// Fraction of voxels with det J ≤ 0 (folding).
    pub frac_nonpos: f64,
    /// Non-diffeomorphic volume, % (see [`ndv_percent`]).
    pub ndv_percent: f64,
}

fn std_of(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let (s, n) = v.clone().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        return f64::NAN;
    }
    let m = s / n as f64;
    (v.map(|x| (x - m).powi(2)).sum::<f64>() / n as f64).sqrt()
}

pub fn stats(det: &Volume, mapping: &Mapping, mask: Option<&[bool]>) -> Option<JacobianStats> {
    let vals: Vec<f64> = det
        .channel(0)
        .iter()
        .enumerate()
        .filter(|(i, _)| mask.is_none_or(|m| m[*i]))
        .map(|(_, v)| f64::from(*v))
        .collect();
    if vals.is_empty() {
        return None;
    }
    let n = vals.len();
    Some(JacobianStats {
        n,
        min: vals.iter().copied().fold(f64::INFINITY, f64::min),
        max: vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        mean: vals.iter().sum::<f64>() / n as f64,
        sd_jdet: std_of(vals.iter().copied()),
        sd_log_j: std_of(vals.iter().map(|v| v.clamp(1e-9, 1e9).ln())),
        log_abs_std: std_of(vals.iter().map(|v| (v.abs() + 1e-9).ln())),
        frac_nonpos: vals.iter().filter(|v| **v <= 0.0).count() as f64 / n as f64,
        ndv_percent: ndv_percent(mapping, mask),
    })
}

impl JacobianStats {
    pub fn to_json(&self) -> Value {
        json!({
            "n": self.n, "min": self.min, "max": self.max, "mean": self.mean,
            "sd_jdet": self.sd_jdet, "sd_log_j": self.sd_log_j, "log_abs_std": self.log_abs_std,
            "frac_nonpos": self.frac_nonpos, "percent_nonpos": 100.0 * self.frac_nonpos,
            "ndv_percent": opt(Some(self.ndv_percent)),
        })
    }
}

/// Grid-only helper for tests and reports: a mapping that scales world
/// coordinates by `s` about `centre` (det J = s³ everywhere).
pub fn scaling_mapping(grid: &Grid, s: f64, centre: [f64; 3]) -> Mapping {
    let mut m = Mapping::identity(grid);
    let n = grid.voxels();
    for c in 0..3 {
        for v in &mut m.coords.data[c * n..(c + 1) * n] {
            *v = (centre[c] + s * (f64::from(*v) - centre[c])) as f32;
        }
    }
    m
}
