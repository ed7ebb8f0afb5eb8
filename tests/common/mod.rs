//! Test helpers: NIfTI-1 headers assembled field by field, independently of
//! Warpscope's own writer, so the reader is checked against the format
//! itself rather than against its own twin.
#![allow(dead_code)]

use std::path::PathBuf;

/// A NIfTI-1 single-file image built byte by byte.
#[derive(Clone, Debug)]
pub struct Nifti1 {
    pub big_endian: bool,
    pub dim: [i16; 8],
    pub datatype: i16,
    pub bitpix: i16,
    pub pixdim: [f32; 8],
    pub vox_offset: f32,
    pub scl_slope: f32,
    pub scl_inter: f32,
    pub qform_code: i16,
    pub sform_code: i16,
    pub quatern: [f32; 3],
    pub qoffset: [f32; 3],
    pub srow: [[f32; 4]; 3],
    pub magic: [u8; 4],
    /// Bytes between the 348-byte header and vox_offset (extension flag + extensions).
    pub extension: Vec<u8>,
    /// Raw voxel bytes, already in the file's byte order.
    pub data: Vec<u8>,
}

impl Nifti1 {
    /// A float32 RAS volume with 1 mm voxels and sform = identity, qform unset.
    pub fn new_f32(dims: [usize; 3], values: &[f32]) -> Self {
        let mut dim = [1i16; 8];
        dim[0] = 3;
        for a in 0..3 {
            dim[a + 1] = dims[a] as i16;
        }
        Nifti1 {
            big_endian: false,
            dim,
            datatype: 16,
            bitpix: 32,
            pixdim: [1.0; 8],
            vox_offset: 352.0,
            scl_slope: 0.0,
            scl_inter: 0.0,
            qform_code: 0,
            sform_code: 1,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
            magic: *b"n+1\0",
            extension: vec![0; 4],
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; 348];
        let be = self.big_endian;
        fn put(h: &mut [u8], off: usize, mut b: Vec<u8>, be: bool) {
            if be {
                b.reverse();
            }
            h[off..off + b.len()].copy_from_slice(&b);
        }
        put(&mut h, 0, 348i32.to_le_bytes().to_vec(), be);
        for i in 0..8 {
            put(&mut h, 40 + 2 * i, self.dim[i].to_le_bytes().to_vec(), be);
            put(
                &mut h,
                76 + 4 * i,
                self.pixdim[i].to_le_bytes().to_vec(),
                be,
            );
        }
        put(&mut h, 70, self.datatype.to_le_bytes().to_vec(), be);
        put(&mut h, 72, self.bitpix.to_le_bytes().to_vec(), be);
        put(&mut h, 108, self.vox_offset.to_le_bytes().to_vec(), be);
        put(&mut h, 112, self.scl_slope.to_le_bytes().to_vec(), be);
        put(&mut h, 116, self.scl_inter.to_le_bytes().to_vec(), be);
        put(&mut h, 252, self.qform_code.to_le_bytes().to_vec(), be);
        put(&mut h, 254, self.sform_code.to_le_bytes().to_vec(), be);
        for i in 0..3 {
            put(
                &mut h,
                256 + 4 * i,
                self.quatern[i].to_le_bytes().to_vec(),
                be,
            );
            put(
                &mut h,
                268 + 4 * i,
                self.qoffset[i].to_le_bytes().to_vec(),
                be,
            );
        }
        for r in 0..3 {
            for c in 0..4 {
                put(
                    &mut h,
                    280 + 16 * r + 4 * c,
                    self.srow[r][c].to_le_bytes().to_vec(),
                    be,
                );
            }
        }
        h[344..348].copy_from_slice(&self.magic);
        h.extend_from_slice(&self.extension);
        h.extend_from_slice(&self.data);
        h
    }

    pub fn gz_bytes(&self) -> Vec<u8> {
        gzip(&self.bytes())
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip into memory");
    enc.finish().expect("gzip into memory")
}

pub mod ui;

/// A fresh, empty directory under the target dir for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Path to a file of the shared data set (`../shared/data` beside the repository).
pub fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel)
}

/// Deterministic pseudo-random values in [0, 1) (xorshift), for test volumes.
pub fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

/// Displacement in voxels (3 channels) of a uniform scaling by `s` about
/// the grid's centre: det J = s³ everywhere.
pub fn scaling_disp_vox(grid: &warpscope::volume::Grid, s: f64) -> warpscope::volume::Volume {
    let centre = grid.voxel_to_world(std::array::from_fn(|a| 0.5 * (grid.dims[a] as f64 - 1.0)));
    warpscope::metrics::jacobian::scaling_mapping(grid, s, centre)
        .displacement_vox()
        .expect("invertible grid")
}

/// Run the `warpscope` binary: (success, stdout, stderr).
pub fn warpscope(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warpscope"))
        .args(args)
        .output()
        .expect("run warpscope");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A file of the embedded demo pair (`assets/demo/`).
pub fn demo(f: &str) -> String {
    format!("{}/assets/demo/{f}", env!("CARGO_MANIFEST_DIR"))
}

/// `register` arguments for a short run on the demo pair (seconds on the CPU).
pub const QUICK: [&str; 6] = [
    "--set",
    "affine.iterations=30",
    "--set",
    "deformable.iterations=40,30,10",
    "--set",
    "deformable.window=3",
];

/// A head CT in Hounsfield units, `n`³ voxels of 2 mm: air (−1000) around
/// a skull (1000) around brain (40), with a little noise.
#[allow(dead_code)]
pub fn head_ct(n: usize) -> warpscope::volume::Volume {
    use warpscope::volume::{Grid, Volume, affine};
    let mut a = affine::IDENTITY;
    for (k, row) in a.iter_mut().take(3).enumerate() {
        row[k] = 2.0;
    }
    let c = (n as f64 - 1.0) / 2.0;
    let r = n as f64 * 0.4;
    let jitter = noise(n * n * n, 7);
    let data = (0..n * n * n)
        .map(|i| {
            let p = [i % n, (i / n) % n, i / (n * n)];
            let d = p
                .iter()
                .map(|&x| (x as f64 - c).powi(2))
                .sum::<f64>()
                .sqrt();
            let hu: f32 = if d > r {
                -1000.0
            } else if d > 0.85 * r {
                1000.0
            } else {
                40.0
            };
            hu + 10.0 * (jitter[i] - 0.5)
        })
        .collect();
    Volume::from_data(Grid::new([n; 3], a), 1, data).expect("sizes")
}

/// A shared pair folder (`../shared/data/pairs/NAME`) as registration
/// inputs, with its landmark pairs.
pub fn shared_pair(
    name: &str,
) -> (
    warpscope::register::Inputs,
    warpscope::landmarks::LandmarkSet,
    warpscope::landmarks::LandmarkSet,
) {
    use warpscope::volume::nifti::{ReadOptions, read_file};
    let dir = shared(&format!("pairs/{name}"));
    let read = |f: &str| {
        read_file(dir.join(f), ReadOptions::default())
            .expect("read")
            .0
    };
    let inputs = warpscope::register::Inputs {
        fixed: read("fixed.nii.gz"),
        moving: read("moving.nii.gz"),
        fixed_mask: None,
        labels: None,
    };
    let text = std::fs::read_to_string(dir.join("landmarks.csv")).expect("landmarks");
    let (fixed_lm, moving_lm) =
        warpscope::landmarks::formats::parse_pair_csv(&text, "landmarks.csv").expect("pair csv");
    (inputs, fixed_lm, moving_lm)
}

/// brain2mm_syn brought to 4 mm (54×63×52; its landmarks are in world mm,
/// so they stay valid), with its landmark pairs: small enough for the
/// slower pipelines on two cores.
pub fn syn_pair_4mm() -> (
    warpscope::register::Inputs,
    warpscope::landmarks::LandmarkSet,
    warpscope::landmarks::LandmarkSet,
) {
    let (full, fixed_lm, moving_lm) = shared_pair("brain2mm_syn");
    let down = |v: &warpscope::volume::Volume| warpscope::volume::pyramid::downsample2(v, 1.0);
    let inputs = warpscope::register::Inputs {
        fixed: down(&full.fixed),
        moving: down(&full.moving),
        ..full
    };
    (inputs, fixed_lm, moving_lm)
}

/// The stages that ran on the engine's GPU kernels (or on the device through
/// burn), in order, as a run's `stage_dispatches` lists them.
pub fn dispatched_stages(o: &warpscope::register::Outcome) -> Vec<&str> {
    o.stage_dispatches.iter().map(|(s, _)| s.as_str()).collect()
}

/// The share of voxels where a run's map folds (det J ≤ 0).
pub fn folds(o: &warpscope::register::Outcome, grid: &warpscope::volume::Grid) -> f64 {
    use warpscope::metrics::jacobian;
    let mapping = o.mapping(grid);
    let det = jacobian::determinant(&mapping);
    jacobian::stats(&det, &mapping, None)
        .expect("jacobian")
        .frac_nonpos
}

/// A run's mean landmark TRE before and after, and its share of folding voxels.
pub fn score(
    o: &warpscope::register::Outcome,
    grid: &warpscope::volume::Grid,
    f: &warpscope::landmarks::LandmarkSet,
    m: &warpscope::landmarks::LandmarkSet,
) -> (f64, f64, f64) {
    let report = warpscope::metrics::tre::tre(f, m, &o.mapping(grid), None, &|_| false);
    (
        report.before.expect("landmarks used").mean,
        report.after.expect("landmarks mapped").mean,
        folds(o, grid),
    )
}

/// The live changes a run reported, with the (1-based) iteration of the
/// progress report that carried them.
pub fn applied_changes(
    events: &std::sync::mpsc::Receiver<warpscope::register::Event>,
) -> Vec<(usize, Vec<warpscope::register::Change>)> {
    events
        .try_iter()
        .filter_map(|e| match e {
            warpscope::register::Event::Progress(p) => Some(p.applied),
            _ => None,
        })
        .enumerate()
        .filter(|(_, a)| !a.is_empty())
        .map(|(i, a)| (i + 1, a))
        .collect()
}

/// A shared pair whose moving image is pushed through one more, sharper,
/// smooth random deformation, as `../shared/bench/make_pair.py` makes its
/// own: each component white noise blurred by a Gaussian of `sigma_mm`,
/// scaled so that the largest displacement over the moving image's tissue
/// is `max_mm`; moving'(y) = moving(y + w(y)), trilinear (`Mapping::warp`).
/// Each landmark's moving point m becomes the m' with m' + w(m') = m
/// (`Mapping::inverse_point`'s fixed-point iteration, as make_pair.py
/// inverts its field). Brain shift of a few millimetres over a few
/// centimetres, on top of the pair's own.
pub fn sharpened_pair(
    name: &str,
    sigma_mm: f64,
    max_mm: f64,
    seed: u64,
) -> (
    warpscope::register::Inputs,
    warpscope::landmarks::LandmarkSet,
    warpscope::landmarks::LandmarkSet,
) {
    use warpscope::landmarks::{Landmark, LandmarkSet};
    use warpscope::metrics::mapping::{FieldKind, Mapping};
    use warpscope::volume::Volume;
    use warpscope::volume::resample::Interp;
    use warpscope::volume::smooth::gaussian_blur;
    let (inputs, fixed_lm, moving_lm) = shared_pair(name);
    let grid = inputs.moving.grid.clone();
    let n = grid.voxels();
    let spacing = grid.spacing_mm();
    let sigma_vox = [0, 1, 2].map(|a| sigma_mm / spacing[a]);
    let mut w = Vec::with_capacity(3 * n);
    for c in 0..3u64 {
        let white: Vec<f32> = noise(n, seed * 3 + c).iter().map(|v| v - 0.5).collect();
        let white = Volume::from_data(grid.clone(), 1, white).expect("sizes");
        w.extend(gaussian_blur(&white, sigma_vox).data);
    }
    let tissue_level = inputs
        .moving
        .range(0)
        .map_or(0.0, |(lo, hi)| lo + 0.1 * (hi - lo));
    let largest = (0..n)
        .filter(|&i| inputs.moving.data[i] > tissue_level)
        .map(|i| (0..3).map(|c| w[c * n + i].powi(2)).sum::<f32>().sqrt())
        .fold(0f32, f32::max);
    let gain = max_mm as f32 / largest.max(1e-9);
    w.iter_mut().for_each(|v| *v *= gain);
    let w = Volume::from_data(grid.clone(), 3, w).expect("sizes");
    let (shift, _) = Mapping::from_field(&w, FieldKind::DispRasMm, &grid).expect("same grid");
    let moved = moving_lm
        .points
        .iter()
        .map(|l| {
            let (m, _) = shift
                .inverse_point(l.ras_mm)
                .expect("landmark inside the grid");
            Landmark::new(l.id.clone(), m)
        })
        .collect();
    let inputs = warpscope::register::Inputs {
        moving: shift
            .warp(&inputs.moving, Interp::Linear)
            .expect("same grid"),
        ..inputs
    };
    (inputs, fixed_lm, LandmarkSet::new(moved))
}
