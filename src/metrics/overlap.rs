//! Label overlap: Dice, Dice30 and HD95.

use crate::volume::Volume;

/// Integer labels (rounded) present in `labels`, without 0, sorted.
pub fn labels_of(labels: &[f32]) -> Vec<i64> {
    let mut set: Vec<i64> = labels
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| v.round() as i64)
        .filter(|&l| l != 0)
        .collect();
    set.sort_unstable();
    set.dedup();
    set
}

/// Dice = 2|A∩B| / (|A| + |B|) of label `l` (Dice, 1945); `None` if both are empty.
pub fn dice(a: &[f32], b: &[f32], l: i64) -> Option<f64> {
    let (mut inter, mut na, mut nb) = (0usize, 0usize, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        let (ia, ib) = (x.round() as i64 == l, y.round() as i64 == l);
        na += usize::from(ia);
        nb += usize::from(ib);
        inter += usize::from(ia && ib);
    }
    (na + nb > 0).then(|| 2.0 * inter as f64 / (na + nb) as f64)
}

/// Mean of the lowest 30 % of the Dice scores (at least one), as in the
/// MICS paper's "Dice30" (methods.md §5).
pub fn dice30(scores: &[f64]) -> Option<f64> {
    if scores.is_empty() {
        return None;
    }
    let mut s = scores.to_vec();
    s.sort_by(f64::total_cmp);
    let k = ((0.3 * s.len() as f64).ceil() as usize).max(1);
    Some(s[..k].iter().sum::<f64>() / k as f64)
}

/// Linear indices of the 6-neighbours of voxel `i` that lie inside a grid of `dims`.
pub fn neighbours6(i: usize, dims: [usize; 3]) -> impl Iterator<Item = usize> {
    let [nx, ny, nz] = dims;
    let (x, y, z) = (i % nx, (i / nx) % ny, i / (nx * ny));
    let plane = nx * ny;
    [
        (x > 0).then(|| i - 1),
        (x + 1 < nx).then(|| i + 1),
        (y > 0).then(|| i - nx),
        (y + 1 < ny).then(|| i + nx),
        (z > 0).then(|| i - plane),
        (z + 1 < nz).then(|| i + plane),
    ]
    .into_iter()
    .flatten()
}

/// Surface voxels of a mask: voxels in the mask with a 6-neighbour that is
/// inside the grid and outside the mask. The edge of the field of view is
/// not a surface (a label cut by the FOV has no known boundary there).
pub fn surface(mask: &[bool], dims: [usize; 3]) -> Vec<bool> {
    (0..mask.len())
        .map(|i| mask[i] && neighbours6(i, dims).any(|k| !mask[k]))
        .collect()
}

/// Exact Euclidean distance (mm) from every voxel to the nearest `site`,
/// with anisotropic spacing (Felzenszwalb & Huttenlocher, 2012: separable
/// lower envelopes of parabolas). `None` when there are no sites.
pub fn distance_to(sites: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Option<Vec<f64>> {
    if !sites.iter().any(|&s| s) {
        return None;
    }
    let inf = f64::INFINITY;
    let mut d: Vec<f64> = sites.iter().map(|&s| if s { 0.0 } else { inf }).collect();
    let [nx, ny, nz] = dims;
    let strides = [1, nx, nx * ny];
    for axis in 0..3 {
        let n = dims[axis];
        let s2 = spacing[axis] * spacing[axis];
        let mut f = vec![0f64; n];
        let mut out = vec![0f64; n];
        let others: Vec<usize> = (0..nx * ny * nz)
            .filter(|&i| (i / strides[axis]) % n == 0)
            .collect();
        for start in others {
            for (k, v) in f.iter_mut().enumerate() {
                *v = d[start + k * strides[axis]];
            }
            edt_1d(&f, s2, &mut out);
            for (k, v) in out.iter().enumerate() {
                d[start + k * strides[axis]] = *v;
            }
        }
    }
    Some(d.into_iter().map(f64::sqrt).collect())
}

/// 1-D squared distance transform: out[q] = min_p s2·(q − p)² + f[p].
fn edt_1d(f: &[f64], s2: f64, out: &mut [f64]) {
    let n = f.len();
    let mut v = vec![0usize; n];
    let mut z = vec![0f64; n + 1];
    let mut k = 0usize;
    let first = f.iter().position(|x| x.is_finite());
    let Some(first) = first else {
        out.iter_mut().for_each(|o| *o = f64::INFINITY);
        return;
    };
    v[0] = first;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in first + 1..n {
        if !f[q].is_finite() {
            continue;
        }
        loop {
            let p = v[k];
            let s = ((f[q] + s2 * (q * q) as f64) - (f[p] + s2 * (p * p) as f64))
                / (2.0 * s2 * (q as f64 - p as f64));
            if s <= z[k] && k > 0 {
                k -= 1;
                continue;
            }
            if s <= z[k] {
                // k == 0: q dominates everywhere left of it too.
                v[0] = q;
                z[1] = f64::INFINITY;
                break;
            }
            k += 1;
            v[k] = q;
            z[k] = s;
            z[k + 1] = f64::INFINITY;
            break;
        }
    }
    let mut k = 0usize;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *o = s2 * (q as f64 - p as f64).powi(2) + f[p];
    }
}

/// 95th percentile Hausdorff distance (mm) between the surfaces of two
/// masks on one grid: max of the 95th percentiles of the directed surface
/// distances (as Learn2Reg's evaluation computes it, without surfel-area
/// weighting). `None` if either mask is empty.
pub fn hd95(a: &[bool], b: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Option<f64> {
    let (sa, sb) = (surface(a, dims), surface(b, dims));
    let da = distance_to(&sa, dims, spacing)?;
    let db = distance_to(&sb, dims, spacing)?;
    let directed = |from: &[bool], to: &[f64]| {
        let mut v: Vec<f64> = from
            .iter()
            .zip(to)
            .filter(|(s, _)| **s)
            .map(|(_, d)| *d)
            .collect();
        v.sort_by(f64::total_cmp);
        super::percentile_sorted(&v, 95.0)
    };
    Some(directed(&sa, &db).max(directed(&sb, &da)))
}

/// Per-label Dice and HD95 of warped moving labels against fixed labels.
#[derive(Clone, Debug)]
pub struct LabelScore {
    pub label: i64,
    pub dice: Option<f64>,
    pub hd95_mm: Option<f64>,
}

/// Score every non-zero label of `fixed` (optionally restricted to `labels`).
pub fn label_scores(fixed: &Volume, warped: &Volume, with_hd95: bool) -> Vec<LabelScore> {
    let (a, b) = (fixed.channel(0), warped.channel(0));
    let dims = fixed.grid.dims;
    let spacing = fixed.grid.spacing_mm();
    labels_of(a)
        .into_iter()
        .map(|l| {
            let hd = if with_hd95 {
                let ma: Vec<bool> = a.iter().map(|v| v.round() as i64 == l).collect();
                let mb: Vec<bool> = b.iter().map(|v| v.round() as i64 == l).collect();
                hd95(&ma, &mb, dims, spacing)
            } else {
                None
            };
            LabelScore {
                label: l,
                dice: dice(a, b, l),
                hd95_mm: hd,
            }
        })
        .collect()
}
