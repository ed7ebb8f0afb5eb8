//! Intensity normalisation and CT windowing, per channel.

use super::{Volume, VolumeError, VolumeErrorKind};

/// A CT display window: width and level in Hounsfield units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CtWindow {
    pub name: &'static str,
    pub width: f32,
    pub level: f32,
}

impl CtWindow {
    /// Map HU to [0, 1]: `(v − (L − W/2)) / W`, clipped.
    pub fn apply(&self, hu: f32) -> f32 {
        ((hu - (self.level - 0.5 * self.width)) / self.width).clamp(0.0, 1.0)
    }
}

/// methods.md §5: abdomen W400/L40, lung W1400/L−500, bone W1000/L400.
pub const CT_WINDOWS: [CtWindow; 3] = [
    CtWindow {
        name: "abdomen",
        width: 400.0,
        level: 40.0,
    },
    CtWindow {
        name: "lung",
        width: 1400.0,
        level: -500.0,
    },
    CtWindow {
        name: "bone",
        width: 1000.0,
        level: 400.0,
    },
];

/// Display window presets, as offered by ITK-SNAP and 3D Slicer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum WindowPreset {
    /// The full range of the data.
    MinMax,
    /// MRI (arbitrary units): 0.5–99.5 percentiles of the non-zero voxels.
    MriBrain,
    /// CT brain W80/L40 HU.
    CtBrain,
    /// CT bone W1000/L400 HU (methods.md §5).
    CtBone,
    /// CT lung W1400/L−500 HU (methods.md §5).
    CtLung,
    /// CT abdomen W400/L40 HU (methods.md §5).
    CtAbdomen,
    /// PET standardised uptake value 0–5.
    PetSuv,
}

impl WindowPreset {
    pub const ALL: [WindowPreset; 7] = [
        WindowPreset::MinMax,
        WindowPreset::MriBrain,
        WindowPreset::CtBrain,
        WindowPreset::CtBone,
        WindowPreset::CtLung,
        WindowPreset::CtAbdomen,
        WindowPreset::PetSuv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WindowPreset::MinMax => "full range",
            WindowPreset::MriBrain => "MRI brain (0.5–99.5 %)",
            WindowPreset::CtBrain => "CT brain (W80 L40)",
            WindowPreset::CtBone => "CT bone (W1000 L400)",
            WindowPreset::CtLung => "CT lung (W1400 L−500)",
            WindowPreset::CtAbdomen => "CT abdomen (W400 L40)",
            WindowPreset::PetSuv => "PET SUV (0–5)",
        }
    }

    fn ct(width: f32, level: f32) -> (f32, f32) {
        (level - 0.5 * width, level + 0.5 * width)
    }

    /// The window (low, high) for samples `values`.
    pub fn window(self, values: &[f32]) -> (f32, f32) {
        match self {
            WindowPreset::MinMax => match super::range_of(values) {
                Some((lo, hi)) if hi > lo => (lo, hi),
                Some((lo, _)) => (lo, lo + 1.0),
                None => (0.0, 1.0),
            },
            WindowPreset::MriBrain => {
                let mut v: Vec<f32> = values
                    .iter()
                    .copied()
                    .filter(|x| x.is_finite() && *x != 0.0)
                    .collect();
                match (percentile(&mut v, 0.5), percentile(&mut v, 99.5)) {
                    (Some(lo), Some(hi)) if hi > lo => (lo, hi),
                    _ => WindowPreset::MinMax.window(values),
                }
            }
            WindowPreset::CtBrain => Self::ct(80.0, 40.0),
            WindowPreset::CtBone => Self::ct(CT_WINDOWS[2].width, CT_WINDOWS[2].level),
            WindowPreset::CtLung => Self::ct(CT_WINDOWS[1].width, CT_WINDOWS[1].level),
            WindowPreset::CtAbdomen => Self::ct(CT_WINDOWS[0].width, CT_WINDOWS[0].level),
            WindowPreset::PetSuv => (0.0, 5.0),
        }
    }
}

/// Whether values look like CT in Hounsfield units: at least 1 % of them at
/// or below −500 (air, −1000 HU) and none below −3100 (scanners pad with
/// −1024 … −3024). MRI and PET have no such negative mass.
pub fn looks_like_ct(values: &[f32]) -> bool {
    let finite = values.iter().filter(|v| v.is_finite());
    let (mut n, mut air) = (0usize, 0usize);
    for &v in finite {
        if v < -3100.0 {
            return false;
        }
        n += 1;
        if v <= -500.0 {
            air += 1;
        }
    }
    n > 0 && air * 100 >= n
}

/// Turn a one-channel CT (HU) into three windowed channels in [0, 1].
pub fn ct_windows(ct: &Volume) -> Result<Volume, VolumeError> {
    if ct.channels != 1 {
        return Err(VolumeError::new(
            "",
            VolumeErrorKind::Invalid(format!(
                "CT windowing needs a single-channel CT, got {} channels",
                ct.channels
            )),
        ));
    }
    let mut data = Vec::with_capacity(ct.data.len() * CT_WINDOWS.len());
    for w in CT_WINDOWS {
        data.extend(ct.data.iter().map(|&v| w.apply(v)));
    }
    Ok(Volume {
        grid: ct.grid.clone(),
        channels: CT_WINDOWS.len(),
        data,
    })
}

/// Scale each channel linearly so its minimum is 0 and its maximum 1.
/// A constant channel becomes all zeros.
pub fn normalize_minmax(vol: &mut Volume) {
    for c in 0..vol.channels {
        if let Some((lo, hi)) = vol.range(c) {
            rescale(vol.channel_mut(c), lo, hi);
        }
    }
}

/// Clip each channel to its `[lo_pct, hi_pct]` percentiles and scale that
/// range to [0, 1]. With `nonzero_only`, percentiles are taken over voxels
/// that are not exactly 0 (background of skull-stripped MRI), and voxels that
/// were 0 stay 0.
pub fn normalize_percentile(
    vol: &mut Volume,
    lo_pct: f64,
    hi_pct: f64,
    nonzero_only: bool,
) -> Result<(), VolumeError> {
    if !(0.0..=100.0).contains(&lo_pct) || !(0.0..=100.0).contains(&hi_pct) || lo_pct >= hi_pct {
        return Err(VolumeError::new(
            "",
            VolumeErrorKind::Invalid(format!(
                "percentiles must satisfy 0 ≤ low < high ≤ 100, got {lo_pct} and {hi_pct}"
            )),
        ));
    }
    for c in 0..vol.channels {
        let keep = |v: f32| v.is_finite() && (!nonzero_only || v != 0.0);
        let [lo, hi] = percentiles(vol.channel(c), keep, [lo_pct, hi_pct]);
        let (Some(lo), Some(hi)) = (lo, hi) else {
            continue;
        };
        let ch = vol.channel_mut(c);
        for v in ch.iter_mut() {
            let background = nonzero_only && *v == 0.0;
            *v = if background || hi <= lo {
                0.0
            } else {
                ((*v - lo) / (hi - lo)).clamp(0.0, 1.0)
            };
        }
    }
    Ok(())
}

/// The `pcts` percentiles of the values `keep` accepts, exactly as
/// [`percentile`] computes them on a copy of those values (linear
/// interpolation between order statistics), but in parallel and without
/// the copy: a histogram of 65 536 bins between the extremes locates each
/// order statistic's bin (the binning is monotone), and only that bin's
/// values are selected from. `None` where no value is kept.
pub fn percentiles<const K: usize>(
    data: &[f32],
    keep: impl Fn(f32) -> bool + Sync,
    pcts: [f64; K],
) -> [Option<f32>; K] {
    const BINS: usize = 1 << 16;
    let chunk = data.len().div_ceil(crate::parallel::threads()).max(1 << 15);
    let parts: Vec<&[f32]> = data.chunks(chunk).collect();
    let scan = |f: &(dyn Fn(&[f32]) -> Vec<u64> + Sync)| -> Vec<Vec<u64>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = parts.iter().map(|p| s.spawn(move || f(p))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        })
    };
    // Count and extremes.
    let stats = scan(&|p: &[f32]| {
        let (mut n, mut lo, mut hi) = (0u64, f32::INFINITY, f32::NEG_INFINITY);
        for &v in p.iter().filter(|v| keep(**v)) {
            n += 1;
            lo = lo.min(v);
            hi = hi.max(v);
        }
        vec![n, u64::from(lo.to_bits()), u64::from(hi.to_bits())]
    });
    let n: u64 = stats.iter().map(|s| s.first().copied().unwrap_or(0)).sum();
    if n == 0 {
        return [None; K];
    }
    let f = |s: &Vec<u64>, k: usize| f32::from_bits(s.get(k).copied().unwrap_or(0) as u32);
    let lo = stats
        .iter()
        .filter(|s| s.first().is_some_and(|c| *c > 0))
        .map(|s| f(s, 1))
        .fold(f32::INFINITY, f32::min);
    let hi = stats
        .iter()
        .filter(|s| s.first().is_some_and(|c| *c > 0))
        .map(|s| f(s, 2))
        .fold(f32::NEG_INFINITY, f32::max);
    let width = f64::from(hi) - f64::from(lo);
    let inv = if width > 0.0 {
        BINS as f64 / width
    } else {
        0.0
    };
    let bin = |v: f32| -> usize { (((f64::from(v) - f64::from(lo)) * inv) as usize).min(BINS - 1) };
    let hist: Vec<u64> = scan(&|p: &[f32]| {
        let mut h = vec![0u64; BINS];
        for &v in p.iter().filter(|v| keep(**v)) {
            h[bin(v)] += 1;
        }
        h
    })
    .into_iter()
    .fold(vec![0u64; BINS], |mut acc, h| {
        acc.iter_mut().zip(&h).for_each(|(a, b)| *a += b);
        acc
    });
    let mut start = vec![0u64; BINS];
    for b in 1..BINS {
        start[b] = start[b - 1] + hist[b - 1];
    }
    // The order statistics needed (0-based ranks) and their bins.
    let ranks: Vec<(u64, u64, f32)> = pcts
        .iter()
        .map(|pct| {
            let pos = (pct.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
            let k = pos.floor() as u64;
            (k, (k + 1).min(n - 1), (pos - k as f64) as f32)
        })
        .collect();
    let bin_of = |r: u64| start.partition_point(|s| *s <= r).saturating_sub(1);
    let mut wanted: Vec<usize> = ranks
        .iter()
        .flat_map(|(a, b, _)| [bin_of(*a), bin_of(*b)])
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    // One pass gathers the values of those bins.
    let gathered = std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .map(|p| {
                let (wanted, keep, bin) = (&wanted, &keep, &bin);
                s.spawn(move || {
                    let mut out: Vec<Vec<f32>> = vec![Vec::new(); wanted.len()];
                    for &v in p.iter().filter(|v| keep(**v)) {
                        if let Ok(w) = wanted.binary_search(&bin(v)) {
                            out[w].push(v);
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); wanted.len()];
    for part in gathered {
        for (w, v) in part.into_iter().enumerate() {
            if let Some(dst) = values.get_mut(w) {
                dst.extend(v);
            }
        }
    }
    let mut order_stat = |r: u64| -> f32 {
        let b = bin_of(r);
        let Ok(w) = wanted.binary_search(&b) else {
            return lo;
        };
        let vals = &mut values[w];
        if vals.is_empty() {
            return lo;
        }
        let k = ((r - start[b]) as usize).min(vals.len() - 1);
        *vals.select_nth_unstable_by(k, f32::total_cmp).1
    };
    let mut out = [None; K];
    for (o, (k, k1, frac)) in out.iter_mut().zip(ranks) {
        let a = order_stat(k);
        *o = Some(if frac == 0.0 || k1 == k {
            a
        } else {
            a + frac * (order_stat(k1) - a)
        });
    }
    out
}

/// Map [lo, hi] to [0, 1], clipping outside values; all zeros when hi ≤ lo.
fn rescale(values: &mut [f32], lo: f32, hi: f32) {
    let span = hi - lo;
    for v in values.iter_mut() {
        *v = if span > 0.0 {
            ((*v - lo) / span).clamp(0.0, 1.0)
        } else {
            0.0
        };
    }
}

/// The `pct`-th percentile (0–100) with linear interpolation between order
/// statistics (NumPy's default). Reorders `values`; `None` when empty.
pub fn percentile(values: &mut [f32], pct: f64) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    let pos = (pct.clamp(0.0, 100.0) / 100.0) * (values.len() - 1) as f64;
    let k = pos.floor() as usize;
    let frac = (pos - k as f64) as f32;
    let (_, lo, rest) = values.select_nth_unstable_by(k, f32::total_cmp);
    let lo = *lo;
    if frac == 0.0 || rest.is_empty() {
        return Some(lo);
    }
    let hi = rest.iter().copied().fold(f32::INFINITY, f32::min);
    Some(lo + frac * (hi - lo))
}
