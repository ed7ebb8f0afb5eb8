//! 4×4 homogeneous matrices (row-major, f64) mapping voxel indices to world
//! RAS millimetres, and the NIfTI quaternion (qform) conversions.

/// Row-major 4×4 matrix; `m[r][c]`. The last row is `[0, 0, 0, 1]` for affines.
pub type Mat4 = [[f64; 4]; 4];

/// The first three rows of an affine matrix (a 3×4 map of points).
pub type Rows = [[f64; 4]; 3];

pub const IDENTITY: Mat4 = [
    [1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 1.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
];

/// Diagonal scaling matrix (NIfTI "method 1": spacing only, no orientation).
pub fn diagonal(spacing: [f64; 3]) -> Mat4 {
    let mut m = IDENTITY;
    for (i, s) in spacing.iter().enumerate() {
        m[i][i] = *s;
    }
    m
}

pub fn mul(a: &Mat4, b: &Mat4) -> Mat4 {
    let mut out = [[0.0; 4]; 4];
    for (r, row) in out.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..4).map(|k| a[r][k] * b[k][c]).sum();
        }
    }
    out
}

/// Apply an affine to a point.
pub fn apply(m: &Mat4, p: [f64; 3]) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (r, o) in out.iter_mut().enumerate() {
        *o = m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3];
    }
    out
}

/// Determinant of the upper-left 3×3 block.
pub fn det3(m: &Mat4) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// True when every entry is finite and the linear part is invertible with a
/// sane condition (voxel sizes between 1e-6 mm and 1e6 mm).
pub fn is_usable(m: &Mat4) -> bool {
    if m.iter().flatten().any(|v| !v.is_finite()) {
        return false;
    }
    let cols = column_norms(m);
    if cols.iter().any(|&n| !(1e-6..=1e6).contains(&n)) {
        return false;
    }
    // Relative determinant: 1 for orthogonal columns, 0 for degenerate ones.
    let rel = det3(m).abs() / (cols[0] * cols[1] * cols[2]);
    rel > 1e-6
}

/// Inverse of an affine matrix (last row [0,0,0,1]); `None` if singular.
pub fn inverse(m: &Mat4) -> Option<Mat4> {
    let d = det3(m);
    if !d.is_finite() || d.abs() < 1e-300 {
        return None;
    }
    let mut inv = IDENTITY;
    let a = |r: usize, c: usize| m[r][c];
    inv[0][0] = (a(1, 1) * a(2, 2) - a(1, 2) * a(2, 1)) / d;
    inv[0][1] = (a(0, 2) * a(2, 1) - a(0, 1) * a(2, 2)) / d;
    inv[0][2] = (a(0, 1) * a(1, 2) - a(0, 2) * a(1, 1)) / d;
    inv[1][0] = (a(1, 2) * a(2, 0) - a(1, 0) * a(2, 2)) / d;
    inv[1][1] = (a(0, 0) * a(2, 2) - a(0, 2) * a(2, 0)) / d;
    inv[1][2] = (a(0, 2) * a(1, 0) - a(0, 0) * a(1, 2)) / d;
    inv[2][0] = (a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0)) / d;
    inv[2][1] = (a(0, 1) * a(2, 0) - a(0, 0) * a(2, 1)) / d;
    inv[2][2] = (a(0, 0) * a(1, 1) - a(0, 1) * a(1, 0)) / d;
    for r in 0..3 {
        inv[r][3] = -(0..3).map(|k| inv[r][k] * m[k][3]).sum::<f64>();
    }
    Some(inv)
}

/// Lengths of the three columns of the linear part: the voxel spacing in mm.
pub fn column_norms(m: &Mat4) -> [f64; 3] {
    let mut out = [0.0; 3];
    for (c, o) in out.iter_mut().enumerate() {
        *o = (0..3).map(|r| m[r][c] * m[r][c]).sum::<f64>().sqrt();
    }
    out
}

/// Three-letter orientation code in the nibabel/ITK-SNAP sense: for each voxel
/// axis (i, j, k) the world direction it points towards (R/L, A/P, S/I).
/// `[[2,0,0,..],[0,2,0,..],[0,0,2,..]]` is "RAS"; a flipped first axis is "LAS".
pub fn orientation_code(m: &Mat4) -> String {
    const POS: [char; 3] = ['R', 'A', 'S'];
    const NEG: [char; 3] = ['L', 'P', 'I'];
    // Greedy assignment by decreasing magnitude so each world axis is used once.
    let mut entries: Vec<(f64, usize, usize)> = Vec::with_capacity(9);
    for c in 0..3 {
        for r in 0..3 {
            entries.push((m[r][c].abs(), r, c));
        }
    }
    entries.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut axis_of_col = [usize::MAX; 3];
    let mut used_rows = [false; 3];
    for (_, r, c) in entries {
        if axis_of_col[c] == usize::MAX && !used_rows[r] {
            axis_of_col[c] = r;
            used_rows[r] = true;
        }
    }
    (0..3)
        .map(|c| {
            let r = axis_of_col[c];
            if m[r][c] >= 0.0 { POS[r] } else { NEG[r] }
        })
        .collect()
}

/// NIfTI qform parameters: quaternion (b, c, d), offset, pixdim and qfac.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quatern {
    pub b: f64,
    pub c: f64,
    pub d: f64,
    pub offset: [f64; 3],
    pub pixdim: [f64; 3],
    /// +1 or −1 (pixdim[0] in the header): sign of the third axis.
    pub qfac: f64,
}

/// Matrix from qform parameters (nifti1_io.c `nifti_quatern_to_mat44`).
pub fn quatern_to_mat(q: &Quatern) -> Mat4 {
    let (b, c, d) = (q.b, q.c, q.d);
    let a2 = 1.0 - (b * b + c * c + d * d);
    let (a, b, c, d) = if a2 < 1e-7 {
        // Special case: a = 0, renormalise (b, c, d).
        let n = (b * b + c * c + d * d).sqrt();
        (0.0, b / n, c / n, d / n)
    } else {
        (a2.sqrt(), b, c, d)
    };
    let xd = if q.pixdim[0] > 0.0 { q.pixdim[0] } else { 1.0 };
    let yd = if q.pixdim[1] > 0.0 { q.pixdim[1] } else { 1.0 };
    let mut zd = if q.pixdim[2] > 0.0 { q.pixdim[2] } else { 1.0 };
    if q.qfac < 0.0 {
        zd = -zd;
    }
    [
        [
            (a * a + b * b - c * c - d * d) * xd,
            2.0 * (b * c - a * d) * yd,
            2.0 * (b * d + a * c) * zd,
            q.offset[0],
        ],
        [
            2.0 * (b * c + a * d) * xd,
            (a * a + c * c - b * b - d * d) * yd,
            2.0 * (c * d - a * b) * zd,
            q.offset[1],
        ],
        [
            2.0 * (b * d - a * c) * xd,
            2.0 * (c * d + a * b) * yd,
            (a * a + d * d - c * c - b * b) * zd,
            q.offset[2],
        ],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// qform parameters closest to an affine (nifti1_io.c `nifti_mat44_to_quatern`):
/// the linear part is orthogonalised by polar decomposition, so a sheared
/// matrix is approximated; the sform keeps the exact matrix.
pub fn mat_to_quatern(m: &Mat4) -> Quatern {
    let mut pix = column_norms(m);
    for p in pix.iter_mut() {
        if *p == 0.0 {
            *p = 1.0;
        }
    }
    // Normalised columns.
    let mut r = [[0.0; 3]; 3];
    for row in 0..3 {
        for col in 0..3 {
            r[row][col] = m[row][col] / pix[col];
        }
    }
    let mut r = polar_orthogonal(r);
    let det = det33(&r);
    let qfac = if det > 0.0 { 1.0 } else { -1.0 };
    if qfac < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
    }
    // Quaternion from a proper rotation matrix.
    let (r11, r12, r13) = (r[0][0], r[0][1], r[0][2]);
    let (r21, r22, r23) = (r[1][0], r[1][1], r[1][2]);
    let (r31, r32, r33) = (r[2][0], r[2][1], r[2][2]);
    let trace = r11 + r22 + r33 + 1.0;
    let (mut a, mut b, mut c, mut d);
    if trace > 0.5 {
        a = 0.5 * trace.sqrt();
        b = 0.25 * (r32 - r23) / a;
        c = 0.25 * (r13 - r31) / a;
        d = 0.25 * (r21 - r12) / a;
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        if xd > 1.0 {
            b = 0.5 * xd.sqrt();
            c = 0.25 * (r12 + r21) / b;
            d = 0.25 * (r13 + r31) / b;
            a = 0.25 * (r32 - r23) / b;
        } else if yd > 1.0 {
            c = 0.5 * yd.sqrt();
            b = 0.25 * (r12 + r21) / c;
            d = 0.25 * (r23 + r32) / c;
            a = 0.25 * (r13 - r31) / c;
        } else {
            d = 0.5 * zd.sqrt();
            b = 0.25 * (r13 + r31) / d;
            c = 0.25 * (r23 + r32) / d;
            a = 0.25 * (r21 - r12) / d;
        }
        if a < 0.0 {
            b = -b;
            c = -c;
            d = -d;
            a = -a;
        }
    }
    let _ = a;
    Quatern {
        b,
        c,
        d,
        offset: [m[0][3], m[1][3], m[2][3]],
        pixdim: pix,
        qfac,
    }
}

fn det33(r: &[[f64; 3]; 3]) -> f64 {
    r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0])
}

/// Orthogonal factor of the polar decomposition (Higham's iteration), as in
/// nifti1_io.c `nifti_mat33_polar`. Returns the input unchanged if singular.
fn polar_orthogonal(mut x: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    for _ in 0..100 {
        let det = det33(&x);
        if det.abs() < 1e-12 || !det.is_finite() {
            return x;
        }
        let inv = inverse33(&x, det);
        // Scaled Newton step with Frobenius-norm scaling.
        let norm = |m: &[[f64; 3]; 3]| m.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
        let gam = (norm(&inv) / norm(&x)).sqrt();
        let (g1, g2) = (0.5 * gam, 0.5 / gam);
        let mut z = [[0.0; 3]; 3];
        let mut change = 0.0;
        for r in 0..3 {
            for c in 0..3 {
                // inverse-transpose
                z[r][c] = g1 * x[r][c] + g2 * inv[c][r];
                change += (z[r][c] - x[r][c]).abs();
            }
        }
        x = z;
        if change < 1e-12 {
            break;
        }
    }
    x
}

fn inverse33(m: &[[f64; 3]; 3], det: f64) -> [[f64; 3]; 3] {
    [
        [
            (m[1][1] * m[2][2] - m[1][2] * m[2][1]) / det,
            (m[0][2] * m[2][1] - m[0][1] * m[2][2]) / det,
            (m[0][1] * m[1][2] - m[0][2] * m[1][1]) / det,
        ],
        [
            (m[1][2] * m[2][0] - m[1][0] * m[2][2]) / det,
            (m[0][0] * m[2][2] - m[0][2] * m[2][0]) / det,
            (m[0][2] * m[1][0] - m[0][0] * m[1][2]) / det,
        ],
        [
            (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det,
            (m[0][1] * m[2][0] - m[0][0] * m[2][1]) / det,
            (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det,
        ],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &Mat4, b: &Mat4, tol: f64) -> bool {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .all(|(x, y)| (x - y).abs() < tol)
    }

    #[test]
    fn inverse_round_trip() {
        let m = [
            [0.0, -2.0, 0.1, 10.0],
            [1.5, 0.0, 0.0, -3.0],
            [0.0, 0.2, 3.0, 7.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let inv = inverse(&m).expect("invertible");
        assert!(close(&mul(&m, &inv), &IDENTITY, 1e-12));
    }

    #[test]
    fn quatern_round_trip_with_flip_and_rotation() {
        let c = 0.3f64.cos();
        let s = 0.3f64.sin();
        // Rotation about z, then LPS-like flips, spacing (1.2, 0.9, 2.5).
        let m = [
            [-c * 1.2, s * 0.9, 0.0, 90.0],
            [-s * 1.2, -c * 0.9, 0.0, 126.0],
            [0.0, 0.0, 2.5, -72.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let q = mat_to_quatern(&m);
        assert!(
            close(&quatern_to_mat(&q), &m, 1e-9),
            "{:?}",
            quatern_to_mat(&q)
        );
        let lps_flip = [
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, -2.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let q = mat_to_quatern(&lps_flip);
        assert!(close(&quatern_to_mat(&q), &lps_flip, 1e-9));
    }

    #[test]
    fn orientation_codes() {
        assert_eq!(orientation_code(&diagonal([2.0, 2.0, 2.0])), "RAS");
        assert_eq!(orientation_code(&diagonal([-1.0, -1.0, 1.0])), "LPS");
        let m = [
            [0.0, 0.0, -1.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(orientation_code(&m), "AIL");
    }
}
