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
        let mut values: Vec<f32> = vol
            .channel(c)
            .iter()
            .copied()
            .filter(|v| v.is_finite() && (!nonzero_only || *v != 0.0))
            .collect();
        let (Some(lo), Some(hi)) = (
            percentile(&mut values, lo_pct),
            percentile(&mut values, hi_pct),
        ) else {
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
