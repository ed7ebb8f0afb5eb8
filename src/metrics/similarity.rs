//! Intensity similarity of the fixed image and the warped moving image.

/// Global normalised cross-correlation over the voxels in `mask` (or all).
pub fn ncc(a: &[f32], b: &[f32], mask: Option<&[bool]>) -> Option<f64> {
    let idx: Vec<usize> = (0..a.len())
        .filter(|&i| mask.is_none_or(|m| m[i]))
        .collect();
    if idx.is_empty() {
        return None;
    }
    let n = idx.len() as f64;
    let ma = idx.iter().map(|&i| f64::from(a[i])).sum::<f64>() / n;
    let mb = idx.iter().map(|&i| f64::from(b[i])).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0f64, 0f64, 0f64);
    for &i in &idx {
        let (x, y) = (f64::from(a[i]) - ma, f64::from(b[i]) - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    // Same regularisation as evaluate.py: zero-variance images give 0, not NaN.
    Some(sab / (saa * sbb + 1e-12).sqrt())
}

/// Mean squared difference over the mask.
pub fn mse(a: &[f32], b: &[f32], mask: Option<&[bool]>) -> Option<f64> {
    let (s, n) = a
        .iter()
        .zip(b)
        .enumerate()
        .filter(|(i, _)| mask.is_none_or(|m| m[*i]))
        .fold((0f64, 0usize), |(s, n), (_, (x, y))| {
            (s + (f64::from(*x) - f64::from(*y)).powi(2), n + 1)
        });
    (n > 0).then(|| s / n as f64)
}

/// Mutual information (nats) from a joint histogram with `bins` equal bins
/// over each image's range within the mask (Maes et al., 1997; Viola &
/// Wells, 1997). For evaluation; the engine's differentiable Parzen MI is
/// separate.
pub fn mutual_information(a: &[f32], b: &[f32], mask: Option<&[bool]>, bins: usize) -> Option<f64> {
    let idx: Vec<usize> = (0..a.len())
        .filter(|&i| mask.is_none_or(|m| m[i]) && a[i].is_finite() && b[i].is_finite())
        .collect();
    if idx.is_empty() || bins < 2 {
        return None;
    }
    let range = |v: &[f32]| {
        idx.iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &i| {
                (lo.min(v[i]), hi.max(v[i]))
            })
    };
    let (alo, ahi) = range(a);
    let (blo, bhi) = range(b);
    let bin = |v: f32, lo: f32, hi: f32| {
        if hi <= lo {
            0
        } else {
            (((v - lo) / (hi - lo)) * bins as f32)
                .floor()
                .clamp(0.0, (bins - 1) as f32) as usize
        }
    };
    let mut joint = vec![0f64; bins * bins];
    for &i in &idx {
        joint[bin(a[i], alo, ahi) * bins + bin(b[i], blo, bhi)] += 1.0;
    }
    let n = idx.len() as f64;
    let mut pa = vec![0f64; bins];
    let mut pb = vec![0f64; bins];
    for i in 0..bins {
        for j in 0..bins {
            pa[i] += joint[i * bins + j] / n;
            pb[j] += joint[i * bins + j] / n;
        }
    }
    let mut mi = 0f64;
    for i in 0..bins {
        for j in 0..bins {
            let p = joint[i * bins + j] / n;
            if p > 0.0 {
                mi += p * (p / (pa[i] * pb[j])).ln();
            }
        }
    }
    Some(mi)
}
