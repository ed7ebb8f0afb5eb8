//! The mutated-file generator: several hundred damaged versions of a real
//! NIfTI file (the demo's fixed image, uint8 with scaling, sform and qform),
//! each written to disk and read as a user's file would be. Every case must
//! end in one of two ways: refused with a message that names the file, or
//! read equal to the undamaged reference. A file that reads as something
//! else (sheared, garbled, rescaled) fails the test.
//!
//! Left out on purpose: changes no reader can detect because they describe
//! another valid file (a flipped sample byte of an uncompressed file, a
//! datatype swapped for another of the same size such as uint8 ↔ int8, a
//! different but valid matrix).

mod common;

use std::io::Read;
use std::path::Path;

use common::{gzip, scratch_dir};
use warpscope::volume::nifti::{self, ReadOptions};
use warpscope::volume::{Volume, VolumeErrorKind as K};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Must be refused.
    Refused,
    /// Must read equal to the reference.
    Same,
    /// Either (corruption that may or may not hit something that matters).
    Either,
}

struct Case {
    label: String,
    bytes: Vec<u8>,
    gz: bool,
    expect: Expect,
}

fn reference_bytes() -> Vec<u8> {
    let gz = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo/fixed.nii.gz"))
        .expect("demo fixed image");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .expect("gunzip");
    plain
}

fn put_i16(b: &mut [u8], off: usize, v: i16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_f32(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn get_i16(b: &[u8], off: usize) -> i16 {
    i16::from_le_bytes([b[off], b[off + 1]])
}

/// NIfTI-1 header offsets.
const DIM: usize = 40;
const DATATYPE: usize = 70;
const BITPIX: usize = 72;
const PIXDIM: usize = 76;
const VOX_OFFSET: usize = 108;
const SCL_SLOPE: usize = 112;
const SCL_INTER: usize = 116;
const QFORM_CODE: usize = 252;
const SFORM_CODE: usize = 254;
const SROW: usize = 280;
const MAGIC: usize = 344;

fn cases(plain: &[u8]) -> Vec<Case> {
    let mut out = Vec::new();
    let mut header = |label: String, expect: Expect, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = plain.to_vec();
        f(&mut b);
        // Each header mutation both uncompressed and gzipped.
        out.push(Case {
            label: format!("{label}_gz"),
            bytes: gzip(&b),
            gz: true,
            expect,
        });
        out.push(Case {
            label,
            bytes: b,
            gz: false,
            expect,
        });
    };
    use Expect::*;

    // Dimensions: any change of a spatial size describes another byte count.
    for axis in 1..=3 {
        let d = get_i16(plain, DIM + 2 * axis);
        for delta in [-2i16, -1, 1, 2] {
            header(format!("dim{axis}_{delta:+}"), Refused, &|b| {
                put_i16(b, DIM + 2 * axis, d + delta)
            });
        }
        for v in [0i16, -1, 32767] {
            header(format!("dim{axis}_is_{v}"), Refused, &|b| {
                put_i16(b, DIM + 2 * axis, v)
            });
        }
    }
    for nd in [0i16, 1, 2, 5, 8, -1, 300] {
        let expect = if nd == 5 { Same } else { Refused };
        header(format!("dim0_is_{nd}"), expect, &|b| put_i16(b, DIM, nd));
    }
    header("dim0_4_dim4_2".into(), Refused, &|b| {
        put_i16(b, DIM, 4);
        put_i16(b, DIM + 8, 2);
    });
    header("dim0_4_dim4_1".into(), Same, &|b| put_i16(b, DIM, 4));

    // Sample type: every code but the file's own and its same-size sibling
    // (int8), with bitpix kept, and with bitpix made to agree.
    for code in [
        0i16, 1, 4, 8, 16, 32, 64, 128, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 7, 9999,
    ] {
        header(format!("datatype_{code}"), Refused, &|b| {
            put_i16(b, DATATYPE, code)
        });
        let bits = match code {
            4 | 512 => 16,
            8 | 16 | 768 => 32,
            64 | 1024 | 1280 | 32 => 64,
            _ => continue,
        };
        header(format!("datatype_{code}_bitpix_{bits}"), Refused, &|b| {
            put_i16(b, DATATYPE, code);
            put_i16(b, BITPIX, bits);
        });
    }
    for bits in [1i16, 4, 7, 16, 32, 64, -8] {
        header(format!("bitpix_{bits}"), Refused, &|b| {
            put_i16(b, BITPIX, bits)
        });
    }
    header("bitpix_0".into(), Same, &|b| put_i16(b, BITPIX, 0));

    // Voxel sizes: unused while the sform applies; refused when the qform
    // (which needs them) is the matrix.
    for axis in 1..=3 {
        for (name, v) in [
            ("0", 0.0f32),
            ("nan", f32::NAN),
            ("inf", f32::INFINITY),
            ("neg", -2.5),
            ("tiny", 1e-30),
        ] {
            header(format!("pixdim{axis}_{name}_sform"), Same, &|b| {
                put_f32(b, PIXDIM + 4 * axis, v)
            });
            if matches!(name, "0" | "nan" | "inf") {
                header(format!("pixdim{axis}_{name}_qform"), Refused, &|b| {
                    put_i16(b, SFORM_CODE, 0);
                    put_f32(b, PIXDIM + 4 * axis, v);
                });
            }
        }
    }
    header("qfac_neg_sform".into(), Same, &|b| put_f32(b, PIXDIM, -1.0));
    header("sform_off_qform_on".into(), Same, &|b| {
        put_i16(b, SFORM_CODE, 0)
    });
    header("qform_off".into(), Same, &|b| put_i16(b, QFORM_CODE, 0));

    // Where the data starts.
    for (name, v, expect) in [
        ("0", 0.0f32, Same),
        ("348", 348.0, Same),
        ("351", 351.0, Same),
        ("352_5", 352.5, Same),
        ("353", 353.0, Refused),
        ("356", 356.0, Refused),
        ("400", 400.0, Refused),
        ("1e6", 1e6, Refused),
        ("nan", f32::NAN, Refused),
        ("inf", f32::INFINITY, Refused),
        ("neg", -352.0, Refused),
        ("1e13", 1e13, Refused),
    ] {
        header(format!("vox_offset_{name}"), expect, &|b| {
            put_f32(b, VOX_OFFSET, v)
        });
    }

    // Scaling: infinite values are refused (the file's own slope and
    // intercept are small, non-trivial numbers).
    for (name, off, v) in [
        ("slope_inf", SCL_SLOPE, f32::INFINITY),
        ("slope_neginf", SCL_SLOPE, f32::NEG_INFINITY),
        ("inter_inf", SCL_INTER, f32::INFINITY),
        ("inter_nan", SCL_INTER, f32::NAN),
        ("inter_neginf", SCL_INTER, f32::NEG_INFINITY),
    ] {
        header(format!("scl_{name}"), Refused, &|b| put_f32(b, off, v));
    }

    // The world matrix: non-finite or singular sforms.
    for k in 0..12 {
        header(format!("srow_{k}_nan"), Refused, &|b| {
            put_f32(b, SROW + 4 * k, f32::NAN)
        });
        if k % 4 != 3 {
            header(format!("srow_{k}_inf"), Refused, &|b| {
                put_f32(b, SROW + 4 * k, f32::INFINITY)
            });
        }
    }
    header("srow_zero".into(), Refused, &|b| {
        for k in 0..12 {
            put_f32(b, SROW + 4 * k, 0.0);
        }
    });

    // Identity of the format.
    for (name, m) in [
        ("ni1", *b"ni1\0"),
        ("n+2", *b"n+2\0"),
        ("blank", [0u8; 4]),
        ("text", *b"abcd"),
    ] {
        header(format!("magic_{name}"), Refused, &|b| {
            b[MAGIC..MAGIC + 4].copy_from_slice(&m)
        });
    }
    for (name, v) in [
        ("0", 0i32),
        ("347", 347),
        ("349", 349),
        ("540", 540),
        ("be348", 348i32.swap_bytes()),
        ("neg", -348),
    ] {
        header(format!("sizeof_hdr_{name}"), Refused, &|b| {
            b[0..4].copy_from_slice(&v.to_le_bytes())
        });
    }

    // Fields that do not change the image.
    for (name, off, len) in [
        ("dim_info", 39usize, 1usize),
        ("intent", 56, 12),
        ("intent_code", 68, 2),
        ("slice_start", 74, 2),
        ("slice_end", 120, 2),
        ("slice_code", 122, 1),
        ("xyzt_units", 123, 1),
        ("cal", 124, 8),
        ("slice_duration", 132, 4),
        ("toffset", 136, 4),
        ("descrip", 148, 80),
        ("aux_file", 228, 24),
        ("intent_name", 328, 16),
        ("extension_flag", 348, 4),
        ("pixdim4_7", PIXDIM + 16, 16),
    ] {
        for fill in [0u8, 0x41, 0xff] {
            header(format!("{name}_{fill:02x}"), Same, &|b| {
                b[off..off + len].fill(fill)
            });
        }
    }

    // Truncation, uncompressed and gzipped, at 60 points each.
    let gz = gzip(plain);
    for i in 0..60 {
        let cut = (plain.len() - 1) * i / 59;
        out.push(Case {
            label: format!("cut_{cut}"),
            bytes: plain[..cut].to_vec(),
            gz: false,
            expect: Refused,
        });
        let cut = (gz.len() - 1) * i / 59;
        out.push(Case {
            label: format!("cut_{cut}_gz"),
            bytes: gz[..cut].to_vec(),
            gz: true,
            expect: Refused,
        });
    }

    // Bytes after the data.
    for extra in [1usize, 4, 100, 4096] {
        let mut b = plain.to_vec();
        b.extend(std::iter::repeat_n(0u8, extra));
        out.push(Case {
            label: format!("tail_{extra}"),
            bytes: gzip(&b),
            gz: true,
            expect: Refused,
        });
        out.push(Case {
            label: format!("tail_{extra}_plain"),
            bytes: b,
            gz: false,
            expect: Refused,
        });
    }
    let mut twice = gz.clone();
    twice.extend_from_slice(&gz);
    out.push(Case {
        label: "gz_member_twice".into(),
        bytes: twice,
        gz: true,
        expect: Refused,
    });
    let mut junk = gz.clone();
    junk.extend_from_slice(b"not gzip at all");
    out.push(Case {
        label: "gz_trailing_junk".into(),
        bytes: junk,
        gz: true,
        expect: Refused,
    });

    // Damage inside the gzip stream: the CRC catches what the inflater does
    // not; bytes of the gzip header that carry no data (mtime, OS) do not
    // matter.
    for i in 0..80 {
        let pos = 2 + (gz.len() - 3) * i / 79;
        let mut b = gz.clone();
        b[pos] ^= 0x5a;
        out.push(Case {
            label: format!("gz_flip_{pos}"),
            bytes: b,
            gz: true,
            expect: Either,
        });
    }
    out
}

fn same(a: &Volume, b: &Volume) -> bool {
    a.grid.dims == b.grid.dims
        && a.channels == b.channels
        && a.data.len() == b.data.len()
        && a.data
            .iter()
            .zip(&b.data)
            .all(|(x, y)| x.to_bits() == y.to_bits())
        && (0..3).all(|r| (0..4).all(|c| (a.grid.affine[r][c] - b.grid.affine[r][c]).abs() < 1e-4))
}

#[test]
fn every_mutated_file_is_refused_by_name_or_read_right() {
    let plain = reference_bytes();
    let (reference, _) =
        nifti::read_bytes(&plain, "reference.nii", ReadOptions::default()).expect("reference");
    let dir = scratch_dir("nifti_mutations");
    let cases = cases(&plain);
    assert!(cases.len() >= 300, "only {} cases", cases.len());
    let mut failures = Vec::new();
    let (mut refused, mut read_same) = (0, 0);
    for (i, c) in cases.iter().enumerate() {
        let ext = if c.gz { "nii.gz" } else { "nii" };
        let path = dir.join(format!("m{i:03}_{}.{ext}", c.label));
        std::fs::write(&path, &c.bytes).expect("write case");
        let name = path.display().to_string();
        match (nifti::read_file(&path, ReadOptions::default()), c.expect) {
            (Err(e), Expect::Refused | Expect::Either) => {
                refused += 1;
                if !e.to_string().starts_with(&format!("{name}: ")) {
                    failures.push(format!("{}: message does not name the file: {e}", c.label));
                }
                if matches!(e.kind, K::Io(_)) {
                    failures.push(format!("{}: refused as an I/O error: {e}", c.label));
                }
            }
            (Ok((v, _)), Expect::Same | Expect::Either) => {
                read_same += 1;
                if !same(&v, &reference) {
                    failures.push(format!("{}: accepted but read differently", c.label));
                }
            }
            (Err(e), Expect::Same) => failures.push(format!("{}: refused: {e}", c.label)),
            (Ok(_), Expect::Refused) => failures.push(format!("{}: accepted", c.label)),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{} cases: {refused} refused, {read_same} read equal to the reference",
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Both outcomes occur: the generator is not trivially one-sided.
    assert!(
        refused > 200 && read_same > 50,
        "{refused} refused, {read_same} same"
    );
}
