//! NIfTI reading and writing: round trips, world coordinates, bad input.

mod common;

use std::path::Path;

use common::{Nifti1, gzip, noise, scratch_dir, shared};
use warpscope::volume::affine::{self, Mat4};
use warpscope::volume::nifti::{
    self, ChannelLayout, DataType, Format, NonFinite, ReadOptions, WorldSource, WriteOptions,
};
use warpscope::volume::{Grid, Volume, VolumeError, VolumeErrorKind as K};

fn read(bytes: &[u8]) -> Result<Volume, VolumeError> {
    nifti::read_bytes(bytes, "test.nii", ReadOptions::default()).map(|(v, _)| v)
}

fn read_err(bytes: &[u8]) -> VolumeError {
    match nifti::read_bytes(bytes, "bad.nii", ReadOptions::default()) {
        Ok((v, _)) => panic!("expected an error, read {:?}", v.grid.dims),
        Err(e) => e,
    }
}

fn assert_close(a: [f64; 3], b: [f64; 3], tol: f64) {
    for i in 0..3 {
        assert!((a[i] - b[i]).abs() <= tol, "{a:?} vs {b:?}");
    }
}

/// Values that every datatype represents exactly.
fn values_for(dt: DataType, n: usize) -> Vec<f32> {
    let (lo, hi): (f32, f32) = match dt {
        DataType::U8 => (0.0, 255.0),
        DataType::I8 => (-128.0, 127.0),
        DataType::I16 => (-32768.0, 32767.0),
        DataType::U16 => (0.0, 65535.0),
        DataType::I32 | DataType::I64 => (-1.0e6, 1.0e6),
        DataType::U32 | DataType::U64 => (0.0, 4.0e6),
        DataType::F32 | DataType::F64 => (-1.0e3, 1.0e3),
    };
    let mut v: Vec<f32> = noise(n, dt.code() as u64)
        .into_iter()
        .map(|r| {
            let x = lo + r * (hi - lo);
            if matches!(dt, DataType::F32 | DataType::F64) {
                x
            } else {
                x.round().clamp(lo, hi)
            }
        })
        .collect();
    // The extremes of the range must survive too.
    v[0] = lo;
    v[n - 1] = hi;
    v
}

/// Rotation about z with a flip of both in-plane axes and anisotropic voxels: no shear.
fn rigid_affine() -> Mat4 {
    let (c, s) = (0.4f64.cos(), 0.4f64.sin());
    [
        [-1.2 * c, 0.9 * s, 0.0, 91.5],
        [-1.2 * s, -0.9 * c, 0.0, 125.25],
        [0.0, 0.0, 2.5, -71.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

/// Like `rigid_affine` with a small shear, which only the sform can hold.
fn oblique_affine() -> Mat4 {
    let (c, s) = (0.4f64.cos(), 0.4f64.sin());
    [
        [-1.2 * c, 0.9 * s, 0.0, 91.5],
        [-1.2 * s, -0.9 * c, 0.1, 125.25],
        [0.0, 0.0, 2.5, -71.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

#[test]
fn round_trip_every_datatype_both_formats_plain_and_gzip() {
    let dir = scratch_dir("round_trip");
    let grid = Grid::new([7, 5, 4], oblique_affine());
    for dt in DataType::ALL {
        let vol = Volume::from_data(grid.clone(), 2, values_for(dt, grid.voxels() * 2))
            .expect("sizes match");
        for format in [Format::Nifti1, Format::Nifti2] {
            for ext in ["nii", "nii.gz"] {
                let path = dir.join(format!("{}_{format:?}.{ext}", dt.name()));
                let opts = WriteOptions {
                    datatype: dt,
                    format: Some(format),
                    ..Default::default()
                };
                nifti::write_file(&path, &vol, &opts).expect("write");
                let (back, info) =
                    nifti::read_file(&path, ReadOptions::default()).expect("read back");
                assert_eq!(info.datatype, dt);
                assert_eq!(info.format, format);
                assert_eq!(info.gzipped, ext == "nii.gz");
                assert_eq!(info.world_source, WorldSource::Sform);
                assert_eq!(back.channels, 2);
                assert_eq!(back.grid.dims, grid.dims);
                assert_eq!(back.data, vol.data, "{} {format:?} {ext}", dt.name());
                let tol = if format == Format::Nifti1 {
                    1e-4
                } else {
                    1e-12
                };
                for (a, b) in back
                    .grid
                    .affine
                    .iter()
                    .flatten()
                    .zip(grid.affine.iter().flatten())
                {
                    assert!((a - b).abs() < tol, "{:?}", back.grid.affine);
                }
            }
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn written_qform_matches_sform_for_rigid_affines() {
    // Drop the sform of a written file: the qform alone must give the same world matrix.
    let vol =
        Volume::from_data(Grid::new([3, 4, 5], rigid_affine()), 1, noise(60, 1)).expect("sizes");
    let mut bytes = nifti::encode(&vol, &WriteOptions::default()).expect("encode");
    bytes[254..256].copy_from_slice(&0i16.to_le_bytes()); // sform_code = 0
    let (back, info) = nifti::read_bytes(&bytes, "q.nii", ReadOptions::default()).expect("read");
    assert_eq!(info.world_source, WorldSource::Qform);
    for (a, b) in back
        .grid
        .affine
        .iter()
        .flatten()
        .zip(vol.grid.affine.iter().flatten())
    {
        assert!((a - b).abs() < 1e-4, "{:?}", back.grid.affine);
    }
}

#[test]
fn sform_places_voxels_at_hand_computed_world_coordinates() {
    let dims = [4, 3, 2];
    let values = noise(24, 2);
    // RAS, 2 × 3 × 4 mm, origin (−10, 20, 5).
    let mut ras = Nifti1::new_f32(dims, &values);
    ras.srow = [
        [2.0, 0.0, 0.0, -10.0],
        [0.0, 3.0, 0.0, 20.0],
        [0.0, 0.0, 4.0, 5.0],
    ];
    let v = read(&ras.bytes()).expect("ras");
    assert_eq!(v.grid.orientation(), "RAS");
    assert_close(
        v.grid.voxel_to_world([3.0, 2.0, 1.0]),
        [-4.0, 26.0, 9.0],
        1e-6,
    );

    // LPS storage (as DICOM-derived files often are): i → left, j → posterior.
    let mut lps = ras.clone();
    lps.srow = [
        [-1.0, 0.0, 0.0, 100.0],
        [0.0, -1.0, 0.0, 50.0],
        [0.0, 0.0, 1.0, -20.0],
    ];
    let v = read(&lps.bytes()).expect("lps");
    assert_eq!(v.grid.orientation(), "LPS");
    assert_close(
        v.grid.voxel_to_world([3.0, 2.0, 1.0]),
        [97.0, 48.0, -19.0],
        1e-6,
    );

    // Oblique: 30° about z, then 1.5 mm voxels; voxel (2, 1, 1) by hand:
    // x = 1.5·(cos30·2 − sin30·1) + 7 = 1.5·(1.7320508 − 0.5) + 7 = 8.8480762
    // y = 1.5·(sin30·2 + cos30·1) − 3 = 1.5·(1 + 0.8660254) − 3 = −0.2009619
    // z = 1.5·1 + 11 = 12.5
    let (c, s) = (30f32.to_radians().cos(), 30f32.to_radians().sin());
    let mut obl = ras.clone();
    obl.srow = [
        [1.5 * c, -1.5 * s, 0.0, 7.0],
        [1.5 * s, 1.5 * c, 0.0, -3.0],
        [0.0, 0.0, 1.5, 11.0],
    ];
    let v = read(&obl.bytes()).expect("oblique");
    assert_close(
        v.grid.voxel_to_world([2.0, 1.0, 1.0]),
        [8.8480762, -0.2009619, 12.5],
        1e-5,
    );
    assert_close(v.grid.spacing_mm(), [1.5, 1.5, 1.5], 1e-6);
    // Data order: x fastest.
    assert_eq!(v.get(0, 3, 2, 1), values[(3 + 2) * 4 + 3]);
}

#[test]
fn qform_and_spacing_only_rules() {
    let values = noise(24, 3);
    // qform: 90° about z (quaternion b=0, c=0, d=sin45), qfac −1, pixdim (2, 3, 4), offset (1, 2, 3).
    let mut q = Nifti1::new_f32([4, 3, 2], &values);
    q.sform_code = 0;
    q.qform_code = 1;
    q.quatern = [0.0, 0.0, std::f32::consts::FRAC_1_SQRT_2];
    q.qoffset = [1.0, 2.0, 3.0];
    q.pixdim = [-1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0];
    let (v, info) = nifti::read_bytes(&q.bytes(), "q.nii", ReadOptions::default()).expect("qform");
    assert_eq!(info.world_source, WorldSource::Qform);
    // R = [[0,−1,0],[1,0,0],[0,0,1]], columns scaled by (2, 3, −4), i.e. i → A, j → L, k → I:
    // voxel (1, 1, 1) → (−3 + 1, 2 + 2, −4 + 3) = (−2, 4, −1).
    assert_close(
        v.grid.voxel_to_world([1.0, 1.0, 1.0]),
        [-2.0, 4.0, -1.0],
        1e-5,
    );
    assert_eq!(v.grid.orientation(), "ALI");

    // Neither form: spacing only.
    let mut n = q.clone();
    n.qform_code = 0;
    let (v, info) =
        nifti::read_bytes(&n.bytes(), "n.nii", ReadOptions::default()).expect("spacing only");
    assert_eq!(info.world_source, WorldSource::SpacingOnly);
    assert_close(
        v.grid.voxel_to_world([1.0, 1.0, 1.0]),
        [2.0, 3.0, 4.0],
        1e-9,
    );

    // sform wins over qform when both are set.
    let mut both = q.clone();
    both.sform_code = 2;
    both.srow = [
        [5.0, 0.0, 0.0, 0.0],
        [0.0, 5.0, 0.0, 0.0],
        [0.0, 0.0, 5.0, 0.0],
    ];
    let (v, info) =
        nifti::read_bytes(&both.bytes(), "b.nii", ReadOptions::default()).expect("both");
    assert_eq!(info.world_source, WorldSource::Sform);
    assert_close(
        v.grid.voxel_to_world([1.0, 1.0, 1.0]),
        [5.0, 5.0, 5.0],
        1e-9,
    );
}

#[test]
fn big_endian_scaling_extensions_and_channels() {
    // Big-endian int16 with scl_slope 0.5, scl_inter −3, an 8-byte extension
    // block, and a 4th dimension of 2 channels.
    let raw: Vec<i16> = (0..24).map(|i| i * 7 - 50).collect();
    let mut h = Nifti1::new_f32([3, 2, 2], &[]);
    h.big_endian = true;
    h.dim = [4, 3, 2, 2, 2, 1, 1, 1];
    h.datatype = 4;
    h.bitpix = 16;
    h.scl_slope = 0.5;
    h.scl_inter = -3.0;
    h.extension = vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    h.vox_offset = 360.0;
    h.data = raw.iter().flat_map(|v| v.to_be_bytes()).collect();
    let (v, info) =
        nifti::read_bytes(&h.gz_bytes(), "be.nii.gz", ReadOptions::default()).expect("big-endian");
    assert!(info.big_endian && info.gzipped);
    assert_eq!(info.scaling, Some((0.5, -3.0)));
    assert_eq!(v.channels, 2);
    let expected: Vec<f32> = raw.iter().map(|&r| r as f32 * 0.5 - 3.0).collect();
    assert_eq!(v.data, expected);
    assert_eq!(v.get(1, 2, 1, 1), expected[12 + (2 + 1) * 3 + 2]);
}

#[test]
fn vector_layout_is_written_5d_and_read_as_channels() {
    let grid = Grid::new([4, 3, 2], affine::diagonal([1.0, 1.0, 1.0]));
    let vol = Volume::from_data(grid, 3, noise(72, 4)).expect("sizes");
    let opts = WriteOptions {
        layout: ChannelLayout::Vector,
        ..Default::default()
    };
    let bytes = nifti::encode(&vol, &opts).expect("encode");
    let (back, info) = nifti::read_bytes(&bytes, "v.nii", ReadOptions::default()).expect("read");
    assert_eq!(info.dims, vec![4, 3, 2, 1, 3]);
    assert_eq!(info.intent_code, nifti::INTENT_VECTOR);
    assert_eq!(back.channels, 3);
    assert_eq!(back.data, vol.data);
}

#[test]
fn writes_are_atomic_and_report_the_path() {
    let dir = scratch_dir("atomic");
    let path = dir.join("keep.nii.gz");
    let vol =
        Volume::from_data(Grid::new([2, 2, 2], affine::IDENTITY), 1, vec![1.0; 8]).expect("sizes");
    nifti::write_file(&path, &vol, &WriteOptions::default()).expect("first write");
    // A volume that cannot be written (singular affine) must leave the old file intact.
    let bad =
        Volume::from_data(Grid::new([2, 2, 2], [[0.0; 4]; 4]), 1, vec![2.0; 8]).expect("sizes");
    let err =
        nifti::write_file(&path, &bad, &WriteOptions::default()).expect_err("singular affine");
    assert!(err.to_string().contains("keep.nii.gz"), "{err}");
    let (still, _) = nifti::read_file(&path, ReadOptions::default()).expect("old file intact");
    assert_eq!(still.data, vec![1.0; 8]);
    // A missing directory is an I/O error naming the file.
    let missing = dir.join("no/such/dir/out.nii");
    let err = nifti::write_file(&missing, &vol, &WriteOptions::default()).expect_err("missing dir");
    assert!(
        matches!(err.kind, K::Io(_)) && err.to_string().contains("out.nii"),
        "{err}"
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into())
        .collect();
    assert_eq!(names, vec!["keep.nii.gz".to_string()]);
}

// ---------------------------------------------------------------- bad input

fn small() -> Nifti1 {
    Nifti1::new_f32([4, 3, 2], &noise(24, 5))
}

#[test]
fn truncated_gzip_is_a_typed_error() {
    let gz = small().gz_bytes();
    for cut in [gz.len() / 2, gz.len() - 4, 30] {
        let e = read_err(&gz[..cut]);
        assert!(
            matches!(e.kind, K::Truncated { .. } | K::Corrupt(_)),
            "cut at {cut}: {e}"
        );
        assert!(e.to_string().starts_with("bad.nii: "), "{e}");
    }
}

#[test]
fn truncated_plain_file_and_header() {
    let b = small().bytes();
    let e = read_err(&b[..b.len() - 1]);
    assert!(
        matches!(
            e.kind,
            K::Truncated {
                expected_bytes: 96,
                found_bytes: 95,
                ..
            }
        ),
        "{e}"
    );
    let e = read_err(&b[..200]);
    assert!(matches!(e.kind, K::Truncated { what: "header", .. }), "{e}");
    let e = read_err(&[]);
    assert!(matches!(e.kind, K::NotNifti(_)), "{e}");
}

#[test]
fn header_dims_larger_than_the_file_are_refused_without_allocating() {
    // dims claim 32767³ float32 samples (~140 TB) in a 96-byte file: refused
    // from the header, before anything is read.
    let mut h = small();
    h.dim = [3, 32767, 32767, 32767, 1, 1, 1, 1];
    for bytes in [h.bytes(), h.gz_bytes()] {
        let e = read_err(&bytes);
        assert!(matches!(e.kind, K::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("refused before reading"), "{e}");
    }
    // A few voxels more than the file holds: truncated.
    let mut h = small();
    h.dim = [3, 4, 3, 3, 1, 1, 1, 1];
    for bytes in [h.bytes(), h.gz_bytes()] {
        let e = read_err(&bytes);
        assert!(
            matches!(
                e.kind,
                K::Truncated {
                    expected_bytes: 144,
                    found_bytes: 96,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("dims × datatype"), "{e}");
    }
}

#[test]
fn a_gzip_bomb_is_refused_by_its_header_against_the_memory_limit() {
    // 2048×2048×1024 uint8 of zeros: 4 GiB of samples, a few MB of gzip.
    // The header alone is enough to refuse it; nothing is decompressed.
    let mut h = small();
    h.dim = [3, 2048, 2048, 1024, 1, 1, 1, 1];
    h.datatype = 2;
    h.bitpix = 8;
    h.data = vec![0; 1 << 20]; // the stream would run out long before 4 GiB
    let bytes = h.gz_bytes();
    let opts = ReadOptions {
        max_bytes: Some(1 << 30),
        ..Default::default()
    };
    let e = nifti::read_bytes(&bytes, "bomb.nii.gz", opts).expect_err("refused");
    assert!(matches!(e.kind, K::TooLarge { .. }), "{e}");
    let text = e.to_string();
    assert!(text.starts_with("bomb.nii.gz: "), "{text}");
    assert!(
        text.contains("20.0 GiB") && text.contains("1.0 GiB"),
        "{text}"
    );
    // The default limit is the memory available now, named as such.
    if let Some(avail) = nifti::available_memory()
        && avail < 20 << 30
    {
        let e = read_err(&bytes);
        assert!(e.to_string().contains("memory available now"), "{e}");
    }
}

#[test]
fn more_data_than_the_header_describes_is_refused() {
    // One x-column fewer, one z-slice fewer, and float32 data labelled uint8:
    // each describes fewer bytes than the file holds (read as a sheared or
    // garbled image before).
    let base = small();
    let mut fewer_x = base.clone();
    fewer_x.dim[1] = 3;
    let mut fewer_z = base.clone();
    fewer_z.dim[3] = 1;
    let mut as_u8 = base.clone();
    as_u8.datatype = 2;
    as_u8.bitpix = 8;
    let mut extra = base.clone();
    extra.data.extend_from_slice(&[0; 4]);
    for (what, h) in [
        ("dim1", fewer_x),
        ("dim3", fewer_z),
        ("u8", as_u8),
        ("tail", extra),
    ] {
        for bytes in [h.bytes(), h.gz_bytes()] {
            let e = read_err(&bytes);
            assert!(matches!(e.kind, K::SizeMismatch { .. }), "{what}: {e}");
            assert!(e.to_string().contains("header"), "{what}: {e}");
        }
    }
}

#[test]
fn bitpix_that_disagrees_with_the_datatype_is_refused() {
    let mut h = small();
    h.bitpix = 16;
    let e = read_err(&h.bytes());
    assert!(
        matches!(
            e.kind,
            K::BadHeader {
                field: "bitpix",
                ..
            }
        ),
        "{e}"
    );
    // 0 (left unset by some writers) is accepted.
    h.bitpix = 0;
    read(&h.bytes()).expect("bitpix 0");
}

#[test]
fn unknown_voxel_sizes_are_refused_where_the_matrix_needs_them() {
    for (qform, sform) in [(1, 0), (0, 0)] {
        for bad in [0.0, f32::NAN, f32::INFINITY] {
            let mut h = small();
            h.qform_code = qform;
            h.sform_code = sform;
            h.pixdim[2] = bad;
            let e = read_err(&h.bytes());
            assert!(
                matches!(
                    e.kind,
                    K::BadHeader {
                        field: "pixdim",
                        ..
                    }
                ),
                "q{qform} {bad}: {e}"
            );
            assert!(e.to_string().contains("pixdim[2]"), "{e}");
        }
    }
    // With an sform, pixdim is not used: the sform gives the voxel size.
    let mut h = small();
    h.sform_code = 1;
    h.srow = [
        [2.0, 0.0, 0.0, 1.0],
        [0.0, 2.0, 0.0, 2.0],
        [0.0, 0.0, 2.0, 3.0],
    ];
    h.pixdim[2] = f32::NAN;
    let v = read(&h.bytes()).expect("sform");
    assert_eq!(v.grid.spacing_mm(), [2.0, 2.0, 2.0]);
    // An axis of one voxel has no extent: its size may be 0.
    let mut h = Nifti1::new_f32([4, 3, 1], &noise(12, 3));
    h.pixdim[3] = 0.0;
    read(&h.bytes()).expect("single slice");
}

#[test]
fn infinite_scaling_is_refused_and_nan_slope_means_none() {
    let mut h = small();
    h.scl_slope = f32::INFINITY;
    let e = read_err(&h.bytes());
    assert!(
        matches!(
            e.kind,
            K::BadHeader {
                field: "scl_slope",
                ..
            }
        ),
        "{e}"
    );
    let mut h = small();
    h.scl_slope = 2.0;
    h.scl_inter = f32::NEG_INFINITY;
    let e = read_err(&h.bytes());
    assert!(
        matches!(
            e.kind,
            K::BadHeader {
                field: "scl_inter",
                ..
            }
        ),
        "{e}"
    );
    // slope 0 or NaN: unscaled (the standard), whatever the intercept.
    let plain = read(&small().bytes()).expect("plain").data;
    for slope in [0.0, f32::NAN] {
        let mut h = small();
        h.scl_slope = slope;
        h.scl_inter = f32::INFINITY;
        assert_eq!(read(&h.bytes()).expect("unscaled").data, plain);
    }
}

#[test]
fn a_truncated_gzip_says_how_much_was_there() {
    let mut h = small();
    h.dim = [3, 64, 64, 16, 1, 1, 1, 1];
    h.data = noise(64 * 64 * 16, 9)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let gz = h.gz_bytes();
    let e = read_err(&gz[..gz.len() * 3 / 4]);
    match e.kind {
        K::Truncated { found_bytes, .. } => {
            assert!(found_bytes > 100_000, "found {found_bytes}: {e}")
        }
        ref k => panic!("{k:?}: {e}"),
    }
}

#[test]
fn pipes_devices_and_folders_are_refused_without_blocking() {
    let dir = scratch_dir("not_regular");
    let fifo = dir.join("pipe.nii");
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for p in [fifo.as_path(), Path::new("/dev/zero"), dir.as_path()] {
        let e = nifti::read_file(p, ReadOptions::default()).expect_err("refused");
        assert!(matches!(e.kind, K::NotNifti(_)), "{e}");
        assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        let e = nifti::read_header(p).expect_err("header refused");
        assert!(matches!(e.kind, K::NotNifti(_)), "{e}");
    }
}

#[test]
fn impossible_dims_are_refused() {
    let cases: [([i16; 8], &str); 4] = [
        ([0, 4, 3, 2, 1, 1, 1, 1], "0 dimensions"),
        ([3, 4, 0, 2, 1, 1, 1, 1], "dim[2] = 0"),
        ([3, 4, -3, 2, 1, 1, 1, 1], "dim[2] = -3"),
        ([8, 4, 3, 2, 1, 1, 1, 1], "8 dimensions"),
    ];
    for (dim, needle) in cases {
        let mut h = small();
        h.dim = dim;
        let e = read_err(&h.bytes());
        assert!(
            matches!(e.kind, K::BadHeader { field, .. } if field.starts_with("dim")),
            "{e}"
        );
        assert!(
            e.to_string().contains(needle),
            "{e} should mention {needle}"
        );
    }
}

#[test]
fn unsupported_datatypes_are_named() {
    for (code, name) in [
        (32i16, "complex64"),
        (128, "RGB24"),
        (1536, "float128"),
        (0, "unknown"),
        (999, "999"),
    ] {
        let mut h = small();
        h.datatype = code;
        let e = read_err(&h.bytes());
        assert!(matches!(e.kind, K::Unsupported(_)), "{e}");
        assert!(e.to_string().contains(name), "{e} should name {name}");
    }
}

#[test]
fn nan_and_inf_samples_are_refused_by_default() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut values = noise(24, 6);
        values[13] = bad; // x = 1, y = 0, z = 1
        values[20] = bad;
        let h = Nifti1::new_f32([4, 3, 2], &values);
        let e = read_err(&h.bytes());
        assert!(
            matches!(
                e.kind,
                K::NonFinite {
                    count: 2,
                    first_voxel: [1, 0, 1],
                    channel: 0
                }
            ),
            "{e}"
        );
        let opts = ReadOptions {
            non_finite: NonFinite::ReplaceWithZero,
            ..Default::default()
        };
        let (v, info) = nifti::read_bytes(&h.bytes(), "x.nii", opts).expect("replace");
        assert_eq!(info.non_finite, 2);
        assert_eq!(v.data[13], 0.0);
        assert!(v.data.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn singular_or_non_finite_world_matrices_are_refused() {
    let mut zero_col = small();
    zero_col.srow = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    let mut collinear = small();
    collinear.srow = [
        [1.0, 1.0, 0.0, 0.0],
        [1.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ];
    let mut nan = small();
    nan.srow[0][3] = f32::NAN;
    let mut bad_q = small();
    bad_q.sform_code = 0;
    bad_q.qform_code = 1;
    bad_q.qoffset = [f32::INFINITY, 0.0, 0.0];
    for (h, which) in [
        (zero_col, "sform"),
        (collinear, "sform"),
        (nan, "sform"),
        (bad_q, "qform"),
    ] {
        let e = read_err(&h.bytes());
        assert!(
            matches!(e.kind, K::SingularMatrix { which: w } if w == which),
            "{e}"
        );
    }
}

#[test]
fn non_nifti_and_damaged_files_are_refused() {
    // Random bytes.
    let e = read_err(
        &noise(500, 7)
            .iter()
            .map(|v| (v * 255.0) as u8)
            .collect::<Vec<_>>(),
    );
    assert!(matches!(e.kind, K::NotNifti(_)), "{e}");
    // ANALYZE 7.5 (no magic) and a .hdr/.img pair header.
    let mut analyze = small();
    analyze.magic = [0; 4];
    assert!(matches!(read_err(&analyze.bytes()).kind, K::NotNifti(_)));
    let mut pair = small();
    pair.magic = *b"ni1\0";
    assert!(matches!(read_err(&pair.bytes()).kind, K::Unsupported(_)));
    // A flipped byte inside the deflate stream or the CRC.
    let gz = small().gz_bytes();
    let mut damaged = gz.clone();
    let crc_at = damaged.len() - 8;
    damaged[crc_at] ^= 0xff;
    let e = read_err(&damaged);
    assert!(matches!(e.kind, K::Corrupt(_)), "{e}");
    let mut damaged = gz;
    damaged[20] ^= 0x55;
    let e = read_err(&damaged);
    assert!(
        matches!(
            e.kind,
            K::Corrupt(_) | K::Truncated { .. } | K::NotNifti(_) | K::BadHeader { .. }
        ),
        "{e}"
    );
    // vox_offset that is not a file offset.
    let mut off = small();
    off.vox_offset = f32::NAN;
    assert!(matches!(
        read_err(&off.bytes()).kind,
        K::BadHeader {
            field: "vox_offset",
            ..
        }
    ));
}

#[test]
fn reading_a_missing_file_names_it() {
    let e = nifti::read_file("/no/such/file.nii.gz", ReadOptions::default()).expect_err("missing");
    assert!(matches!(e.kind, K::Io(_)));
    assert!(e.to_string().contains("/no/such/file.nii.gz"), "{e}");
}

#[test]
fn nifti2_written_elsewhere_reads_and_gzip_members_concatenate() {
    // A multi-member gzip (as `cat a.gz b.gz` makes) must decode as one stream.
    let vol =
        Volume::from_data(Grid::new([5, 4, 3], oblique_affine()), 1, noise(60, 8)).expect("sizes");
    let bytes = nifti::encode(
        &vol,
        &WriteOptions {
            format: Some(Format::Nifti2),
            ..Default::default()
        },
    )
    .expect("encode");
    let mut two = gzip(&bytes[..300]);
    two.extend(gzip(&bytes[300..]));
    let (back, info) =
        nifti::read_bytes(&two, "two.nii.gz", ReadOptions::default()).expect("multi-member");
    assert_eq!(info.format, Format::Nifti2);
    assert_eq!(back.data, vol.data);
}

#[test]
fn shared_pair_headers_read_as_expected() {
    let path = shared("pairs/brain2mm_resect/fixed.nii.gz");
    let (v, info) = nifti::read_file(&path, ReadOptions::default()).expect("shared fixed image");
    assert_eq!(v.grid.dims, [108, 126, 104]);
    assert_eq!(info.world_source, WorldSource::Sform);
    assert_eq!(v.grid.orientation(), "RAS");
    // voxel_mm from pair.json.
    assert_close(
        v.grid.spacing_mm(),
        [2.020618556701031, 2.017391304347826, 2.021505376344086],
        1e-6,
    );
    let (disp, _) = nifti::read_file(
        shared("pairs/brain2mm_syn/gt_disp.nii.gz"),
        ReadOptions::default(),
    )
    .expect("gt disp");
    assert_eq!(disp.channels, 3);
    let (head, _) = nifti::read_file(
        shared("sources/robex_t1_head.nii.gz"),
        ReadOptions::default(),
    )
    .expect("robex");
    assert_eq!(head.grid.orientation(), "LAS");
}

#[test]
fn float_data_written_as_integers_get_slope_and_intercept() {
    let grid = Grid::new([10, 10, 10], affine::diagonal([1.0, 1.0, 1.0]));
    let values: Vec<f32> = noise(1000, 11)
        .into_iter()
        .map(|v| v * 0.9 - 0.05)
        .collect();
    let vol = Volume::from_data(grid, 1, values.clone()).expect("sizes");
    for (dt, step) in [
        (DataType::U8, 0.95 / 255.0),
        (DataType::I16, 0.95 / 65535.0),
    ] {
        for format in [Format::Nifti1, Format::Nifti2] {
            let opts = WriteOptions {
                datatype: dt,
                format: Some(format),
                ..Default::default()
            };
            let bytes = nifti::encode(&vol, &opts).expect("encode");
            let (back, info) =
                nifti::read_bytes(&bytes, "s.nii", ReadOptions::default()).expect("read");
            assert!(info.scaling.is_some(), "{dt:?} needs scaling");
            let worst = back
                .data
                .iter()
                .zip(&values)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 0.5 * step as f32 * 1.01 + 1e-6,
                "{dt:?} {format:?}: worst error {worst}, step {step}"
            );
        }
    }
}
