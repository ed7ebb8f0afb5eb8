//! Colour maps, defined once here. The renderer uploads them as a lookup
//! table (one row of `LUT_WIDTH` RGBA8 entries per map) that the WGSL shader
//! samples with linear interpolation between entries; the colour bar and the
//! tests use [`lut_sample`], which computes exactly what the shader does.

/// A colour map: maps t ∈ [0, 1] to linear RGB in [0, 1].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ColorMap {
    Grey,
    Hot,
    Jet,
    /// matplotlib's viridis (perceptually uniform; for PET and heat-like data).
    Viridis,
    /// Diverging blue – white – red for log det J: contraction blue,
    /// no change white, expansion red.
    JacobianLog,
    /// methods.md §5 (MICS figures): red for negative det J (folding),
    /// white for zero, blue for positive.
    JacobianSigned,
}

/// Entries per row of the lookup table.
pub const LUT_WIDTH: u32 = 256;

impl ColorMap {
    /// Every map, in LUT row order.
    pub const ALL: [ColorMap; 6] = [
        ColorMap::Grey,
        ColorMap::Hot,
        ColorMap::Jet,
        ColorMap::Viridis,
        ColorMap::JacobianLog,
        ColorMap::JacobianSigned,
    ];

    /// Maps offered for images.
    pub const IMAGE: [ColorMap; 4] = [
        ColorMap::Grey,
        ColorMap::Hot,
        ColorMap::Jet,
        ColorMap::Viridis,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ColorMap::Grey => "grey",
            ColorMap::Hot => "hot",
            ColorMap::Jet => "jet",
            ColorMap::Viridis => "viridis",
            ColorMap::JacobianLog => "log det J (blue–white–red)",
            ColorMap::JacobianSigned => "det J signed (red–white–blue)",
        }
    }

    /// Row of this map in the lookup table.
    pub fn row(self) -> u32 {
        Self::ALL.iter().position(|&m| m == self).unwrap_or(0) as u32
    }

    /// The map's definition at t (clamped to [0, 1]).
    pub fn rgb(self, t: f32) -> [f32; 3] {
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        match self {
            ColorMap::Grey => [t, t, t],
            ColorMap::Hot => [
                (3.0 * t).min(1.0),
                (3.0 * t - 1.0).clamp(0.0, 1.0),
                (3.0 * t - 2.0).clamp(0.0, 1.0),
            ],
            ColorMap::Jet => {
                let f = |x: f32| (1.5 - (4.0 * t - x).abs()).clamp(0.0, 1.0);
                [f(3.0), f(2.0), f(1.0)]
            }
            ColorMap::Viridis => piecewise(&VIRIDIS, t),
            ColorMap::JacobianLog => piecewise(&BLUE_WHITE_RED, t),
            ColorMap::JacobianSigned => {
                piecewise(&[[0.85, 0.1, 0.1], [1.0, 1.0, 1.0], [0.1, 0.25, 0.9]], t)
            }
        }
    }
}

/// Linear interpolation through evenly spaced control colours.
fn piecewise(points: &[[f32; 3]], t: f32) -> [f32; 3] {
    let f = t * (points.len() - 1) as f32;
    let i = (f.floor() as usize).min(points.len() - 2);
    let w = f - i as f32;
    std::array::from_fn(|c| points[i][c] * (1.0 - w) + points[i + 1][c] * w)
}

/// Blue (contraction) through white to red (expansion), after ColorBrewer RdBu.
const BLUE_WHITE_RED: [[f32; 3]; 5] = [
    [0.020, 0.188, 0.380],
    [0.263, 0.576, 0.765],
    [1.0, 1.0, 1.0],
    [0.839, 0.376, 0.302],
    [0.404, 0.0, 0.122],
];

/// matplotlib's viridis at 33 evenly spaced points (within 1.7/255 of its 256-entry table).
const VIRIDIS: [[f32; 3]; 33] = [
    [0.2670, 0.0049, 0.3294],
    [0.2770, 0.0502, 0.3755],
    [0.2823, 0.0946, 0.4170],
    [0.2829, 0.1354, 0.4530],
    [0.2789, 0.1749, 0.4830],
    [0.2708, 0.2133, 0.5066],
    [0.2593, 0.2507, 0.5244],
    [0.2454, 0.2867, 0.5370],
    [0.2302, 0.3213, 0.5455],
    [0.2148, 0.3545, 0.5510],
    [0.2000, 0.3864, 0.5545],
    [0.1861, 0.4173, 0.5567],
    [0.1733, 0.4474, 0.5579],
    [0.1613, 0.4770, 0.5581],
    [0.1497, 0.5064, 0.5573],
    [0.1384, 0.5358, 0.5551],
    [0.1281, 0.5651, 0.5509],
    [0.1209, 0.5945, 0.5442],
    [0.1203, 0.6238, 0.5343],
    [0.1310, 0.6529, 0.5208],
    [0.1554, 0.6815, 0.5032],
    [0.1930, 0.7096, 0.4812],
    [0.2415, 0.7366, 0.4545],
    [0.2986, 0.7624, 0.4230],
    [0.3629, 0.7867, 0.3866],
    [0.4330, 0.8091, 0.3453],
    [0.5081, 0.8292, 0.2992],
    [0.5873, 0.8470, 0.2489],
    [0.6694, 0.8622, 0.1954],
    [0.7529, 0.8751, 0.1427],
    [0.8359, 0.8861, 0.1025],
    [0.9166, 0.8961, 0.1008],
    [0.9932, 0.9062, 0.1439],
];

fn to_u8(x: f32) -> u8 {
    (x.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// The lookup table: `ColorMap::ALL.len()` rows of `LUT_WIDTH` RGBA8 texels.
pub fn lut_rgba8() -> Vec<u8> {
    let mut out = Vec::with_capacity(ColorMap::ALL.len() * LUT_WIDTH as usize * 4);
    for map in ColorMap::ALL {
        for i in 0..LUT_WIDTH {
            let [r, g, b] = map.rgb(i as f32 / (LUT_WIDTH - 1) as f32);
            out.extend_from_slice(&[to_u8(r), to_u8(g), to_u8(b), 255]);
        }
    }
    out
}

/// What the shader's `lut` function returns for t: the table's 8-bit entries
/// interpolated linearly (RGB in [0, 1]).
pub fn lut_sample(map: ColorMap, t: f32) -> [f32; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (LUT_WIDTH - 1) as f32;
    let i0 = (x.floor() as u32).min(LUT_WIDTH - 1);
    let i1 = (i0 + 1).min(LUT_WIDTH - 1);
    let w = x - i0 as f32;
    let entry = |i: u32| {
        let c = map.rgb(i as f32 / (LUT_WIDTH - 1) as f32);
        c.map(|v| f32::from(to_u8(v)) / 255.0)
    };
    let (a, b) = (entry(i0), entry(i1));
    std::array::from_fn(|c| a[c] * (1.0 - w) + b[c] * w)
}

/// Where det J falls on the log scale: t = ½ + ½·clamp(ln det / ln range, −1, 1),
/// so det = 1 is the centre, det = range the top and det = 1/range the bottom.
/// Folds (det ≤ 0) are drawn in their own colour and have no t.
pub fn jacobian_log_t(det: f32, range: f32) -> Option<f32> {
    (det > 0.0).then(|| {
        let r = range.max(1.0 + 1e-6).ln();
        0.5 + 0.5 * (det.ln() / r).clamp(-1.0, 1.0)
    })
}

/// The signed (methods.md §5) scale: t = ½ + ½·clamp(det / range, −1, 1).
pub fn jacobian_signed_t(det: f32, range: f32) -> f32 {
    0.5 + 0.5 * (det / range.max(1e-6)).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_hit_their_end_points() {
        assert_eq!(ColorMap::Grey.rgb(0.0), [0.0; 3]);
        assert_eq!(ColorMap::Grey.rgb(1.0), [1.0; 3]);
        assert_eq!(ColorMap::Hot.rgb(0.0), [0.0; 3]);
        assert_eq!(ColorMap::Hot.rgb(1.0), [1.0; 3]);
        assert_eq!(ColorMap::JacobianLog.rgb(0.5), [1.0; 3]);
        assert_eq!(ColorMap::JacobianSigned.rgb(0.5), [1.0; 3]);
        let j = ColorMap::Jet.rgb(0.0);
        assert!(j[2] > 0.4 && j[0] == 0.0, "jet starts dark blue: {j:?}");
        let v = ColorMap::Viridis.rgb(1.0);
        assert!(
            v[0] > 0.95 && v[1] > 0.85 && v[2] < 0.2,
            "viridis ends yellow: {v:?}"
        );
    }

    #[test]
    fn lut_sample_reproduces_the_map_to_a_quantisation_step() {
        for map in ColorMap::ALL {
            for k in 0..=100 {
                let t = k as f32 / 100.0;
                let (a, b) = (map.rgb(t), lut_sample(map, t));
                for c in 0..3 {
                    assert!((a[c] - b[c]).abs() < 0.02, "{map:?} at {t}: {a:?} vs {b:?}");
                }
            }
        }
        assert_eq!(lut_rgba8().len(), ColorMap::ALL.len() * 256 * 4);
    }

    #[test]
    fn jacobian_scales() {
        assert_eq!(jacobian_log_t(1.0, 2.0), Some(0.5));
        assert!((jacobian_log_t(2.0, 2.0).unwrap_or(0.0) - 1.0).abs() < 1e-6);
        assert!((jacobian_log_t(0.5, 2.0).unwrap_or(1.0)).abs() < 1e-6);
        assert_eq!(jacobian_log_t(0.0, 2.0), None);
        assert_eq!(jacobian_signed_t(0.0, 2.0), 0.5);
        assert_eq!(jacobian_signed_t(-5.0, 2.0), 0.0);
    }
}
