//! NIfTI-1 and NIfTI-2 single-file (`.nii`, `.nii.gz`) reading and writing.
//!
//! The reader never trusts a header field for an allocation: the voxel data
//! is read incrementally and its length compared with what the header
//! promises, so a lying header costs at most the bytes that are really there.
//! World matrix: sform when `sform_code > 0`, else qform when
//! `qform_code > 0`, else spacing only (NIfTI "method 1"); which one was used
//! is reported in [`NiftiInfo::world_source`].

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::affine::{self, Mat4, Quatern};
use super::{Grid, Volume, VolumeError, VolumeErrorKind as K};

const NIFTI1_HDR: usize = 348;
const NIFTI2_HDR: usize = 540;
const NIFTI2_MAGIC: &[u8; 8] = b"n+2\0\r\n\x1a\n";
/// NIFTI_INTENT_VECTOR: each voxel holds a vector (displacement fields).
pub const INTENT_VECTOR: i32 = 1007;

/// On-disk sample types this reader understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl DataType {
    pub const ALL: [DataType; 10] = [
        DataType::U8,
        DataType::I8,
        DataType::I16,
        DataType::U16,
        DataType::I32,
        DataType::U32,
        DataType::I64,
        DataType::U64,
        DataType::F32,
        DataType::F64,
    ];

    pub fn code(self) -> i16 {
        match self {
            DataType::U8 => 2,
            DataType::I16 => 4,
            DataType::I32 => 8,
            DataType::F32 => 16,
            DataType::F64 => 64,
            DataType::I8 => 256,
            DataType::U16 => 512,
            DataType::U32 => 768,
            DataType::I64 => 1024,
            DataType::U64 => 1280,
        }
    }

    pub fn from_code(code: i32) -> Option<DataType> {
        DataType::ALL
            .into_iter()
            .find(|d| i32::from(d.code()) == code)
    }

    pub fn bytes(self) -> usize {
        match self {
            DataType::U8 | DataType::I8 => 1,
            DataType::I16 | DataType::U16 => 2,
            DataType::I32 | DataType::U32 | DataType::F32 => 4,
            DataType::I64 | DataType::U64 | DataType::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::U8 => "uint8",
            DataType::I8 => "int8",
            DataType::I16 => "int16",
            DataType::U16 => "uint16",
            DataType::I32 => "int32",
            DataType::U32 => "uint32",
            DataType::I64 => "int64",
            DataType::U64 => "uint64",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
        }
    }

    /// Parse a user-facing name ("u8", "uint8", "int16", "f32", …).
    pub fn parse(s: &str) -> Option<DataType> {
        let s = s.to_ascii_lowercase();
        DataType::ALL.into_iter().find(|d| {
            let n = d.name();
            s == n
                || s == n
                    .replace("uint", "u")
                    .replace("int", "i")
                    .replace("float", "f")
        })
    }

    /// Representable range for integer types (as f64).
    fn int_range(self) -> (f64, f64) {
        match self {
            DataType::U8 => (0.0, 255.0),
            DataType::I8 => (-128.0, 127.0),
            DataType::I16 => (-32768.0, 32767.0),
            DataType::U16 => (0.0, 65535.0),
            DataType::I32 => (i32::MIN as f64, i32::MAX as f64),
            DataType::U32 => (0.0, u32::MAX as f64),
            DataType::I64 => (i64::MIN as f64, i64::MAX as f64),
            DataType::U64 => (0.0, u64::MAX as f64),
            DataType::F32 | DataType::F64 => (f64::NEG_INFINITY, f64::INFINITY),
        }
    }
}

fn datatype_description(code: i32) -> String {
    let name = match code {
        0 => "unknown (0)",
        1 => "binary (1 bit)",
        32 => "complex64",
        128 => "RGB24",
        1536 => "float128",
        1792 => "complex128",
        2048 => "complex256",
        2304 => "RGBA32",
        _ => "",
    };
    if name.is_empty() {
        format!("datatype code {code}")
    } else {
        name.to_string()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Nifti1,
    Nifti2,
}

/// Which header matrix gave the voxel → world transform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorldSource {
    Sform,
    Qform,
    SpacingOnly,
}

impl WorldSource {
    pub fn name(self) -> &'static str {
        match self {
            WorldSource::Sform => "sform",
            WorldSource::Qform => "qform",
            WorldSource::SpacingOnly => "spacing only (no sform/qform)",
        }
    }
}

/// What to do with NaN / ±Inf samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NonFinite {
    /// A typed error ([`K::NonFinite`]): the default, registration cannot use them.
    #[default]
    Reject,
    /// Replace them by 0 and count them in [`NiftiInfo::non_finite`].
    ReplaceWithZero,
    /// Keep them as they are and count them (for inspection tools).
    Keep,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    pub non_finite: NonFinite,
    /// Most bytes a read may allocate (the file's samples plus their f32
    /// copy); `None`: the memory the system has available now.
    pub max_bytes: Option<u64>,
}

/// Memory the system can give a new allocation now (Linux: MemAvailable),
/// or `None` where it cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Refuse a read that needs `needed` bytes (for a volume of `dims`) beyond
/// `max_bytes`, or beyond the memory available now when that is `None`:
/// checked from the header, before anything is allocated.
pub(crate) fn check_memory(dims: &[usize], needed: u64, max_bytes: Option<u64>) -> Result<(), K> {
    let (limit, whose) = match max_bytes {
        Some(m) => (Some(m), "the stated limit"),
        None => (available_memory(), "the memory available now"),
    };
    match limit.filter(|&l| needed > l) {
        Some(limit) => Err(K::TooLarge {
            dims: dims.to_vec(),
            needed_bytes: needed,
            limit_bytes: limit,
            limit: whose,
        }),
        None => Ok(()),
    }
}

/// Open a file for reading only if it is a regular file: a FIFO, a device
/// or a folder given as an image would block or never end.
fn open_regular(path: &Path, name: &str) -> Result<(File, u64), VolumeError> {
    let io_err = |e: io::Error| VolumeError::new(name, K::Io(e));
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a pipe, socket or device)"
        };
        return Err(VolumeError::new(
            name,
            K::NotNifti(format!("{what}, not an image file")),
        ));
    }
    let file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    Ok((file, len))
}

/// A reader that counts the bytes it has passed on, so that a damaged
/// stream's error can say how much was read.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Facts about a file that are not part of the [`Volume`] itself.
#[derive(Clone, Debug)]
pub struct NiftiInfo {
    pub format: Format,
    pub gzipped: bool,
    pub big_endian: bool,
    pub datatype: DataType,
    /// `dim[1..=dim[0]]` as stored.
    pub dims: Vec<usize>,
    pub pixdim: [f64; 3],
    pub world_source: WorldSource,
    pub sform_code: i32,
    pub qform_code: i32,
    /// `(slope, intercept)` when scaling was applied.
    pub scaling: Option<(f64, f64)>,
    pub intent_code: i32,
    pub description: String,
    /// NaN / Inf samples found (kept or replaced, per [`ReadOptions`]).
    pub non_finite: usize,
}

/// Read a `.nii` or `.nii.gz` file (gzip is detected from the content).
pub fn read_file(
    path: impl AsRef<Path>,
    opts: ReadOptions,
) -> Result<(Volume, NiftiInfo), VolumeError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let io_err = |e: io::Error| VolumeError::new(&name, K::Io(e));
    let (file, len) = open_regular(path, &name)?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let gz = {
        let head = io::BufRead::fill_buf(&mut reader).map_err(io_err)?;
        head.starts_with(&[0x1f, 0x8b])
    };
    let result = if gz {
        read_stream(MultiGzDecoder::new(reader), true, None, opts)
    } else {
        read_stream(reader, false, Some(len), opts)
    };
    result.map_err(|e| e.with_path(&name))
}

/// Read a NIfTI image held in memory (e.g. an embedded asset); `name` is used in errors.
pub fn read_bytes(
    bytes: &[u8],
    name: &str,
    opts: ReadOptions,
) -> Result<(Volume, NiftiInfo), VolumeError> {
    let result = if bytes.starts_with(&[0x1f, 0x8b]) {
        read_stream(MultiGzDecoder::new(bytes), true, None, opts)
    } else {
        read_stream(bytes, false, Some(bytes.len() as u64), opts)
    };
    result.map_err(|e| e.with_path(name))
}

/// Read only the header and report it (no voxel data is decoded).
pub fn read_header(path: impl AsRef<Path>) -> Result<Header, VolumeError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let (file, _) = open_regular(path, &name)?;
    let mut reader = BufReader::new(file);
    let gz = io::BufRead::fill_buf(&mut reader)
        .map_err(|e| VolumeError::new(&name, K::Io(e)))?
        .starts_with(&[0x1f, 0x8b]);
    let parsed = if gz {
        Header::read(&mut MultiGzDecoder::new(reader))
    } else {
        Header::read(&mut reader)
    };
    parsed
        .map(|(h, _)| h)
        .map_err(|k| VolumeError::new(&name, k))
}

/// Map a read error from a (possibly gzip) stream to a typed error.
fn stream_error(e: io::Error, gz: bool, what: &'static str, expected: u64, got: u64) -> K {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => K::Truncated {
            expected_bytes: expected,
            found_bytes: got,
            what,
        },
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData if gz => {
            K::Corrupt(format!("gzip data is damaged ({e})"))
        }
        _ => K::Io(e),
    }
}

/// Read until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A parsed header, format-independent (NIfTI-1 fields widened).
#[derive(Clone, Debug)]
pub struct Header {
    pub format: Format,
    pub big_endian: bool,
    pub dim: [i64; 8],
    pub datatype: i32,
    pub bitpix: i32,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub intent_code: i32,
    pub descrip: String,
}

/// Endian-aware field access into a header buffer.
struct Fields<'a> {
    b: &'a [u8],
    be: bool,
}

impl Fields<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.be {
            a.reverse();
        }
        a
    }
    fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.arr(off))
    }
    fn i32(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.arr(off))
    }
    fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.arr(off))
    }
    fn f32(&self, off: usize) -> f64 {
        f64::from(f32::from_le_bytes(self.arr(off)))
    }
    fn f64(&self, off: usize) -> f64 {
        f64::from_le_bytes(self.arr(off))
    }
    fn text(&self, off: usize, len: usize) -> String {
        let raw = &self.b[off..off + len];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(len);
        String::from_utf8_lossy(&raw[..end]).trim().to_string()
    }
}

impl Header {
    /// Read and parse the fixed-size header from the start of a stream.
    /// Returns the header and the number of bytes consumed.
    fn read(r: &mut impl Read) -> Result<(Header, usize), K> {
        let mut buf = [0u8; NIFTI2_HDR];
        let got = read_full(r, &mut buf[..NIFTI1_HDR])
            .map_err(|e| stream_error(e, true, "header", 348, 0))?;
        if got < 4 {
            return Err(K::NotNifti(format!("only {got} bytes long")));
        }
        let le = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let be = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let (size, big_endian) = match (le, be) {
            (348, _) => (NIFTI1_HDR, false),
            (_, 348) => (NIFTI1_HDR, true),
            (540, _) => (NIFTI2_HDR, false),
            (_, 540) => (NIFTI2_HDR, true),
            _ => {
                return Err(K::NotNifti(format!(
                    "header size field is {le}, expected 348 or 540"
                )));
            }
        };
        if got < NIFTI1_HDR {
            return Err(K::Truncated {
                expected_bytes: size as u64,
                found_bytes: got as u64,
                what: "header",
            });
        }
        if size == NIFTI2_HDR {
            let more = read_full(r, &mut buf[NIFTI1_HDR..])
                .map_err(|e| stream_error(e, true, "header", 540, got as u64))?;
            if more < NIFTI2_HDR - NIFTI1_HDR {
                return Err(K::Truncated {
                    expected_bytes: 540,
                    found_bytes: (got + more) as u64,
                    what: "header",
                });
            }
        }
        let f = Fields {
            b: &buf[..size],
            be: big_endian,
        };
        let h = if size == NIFTI1_HDR {
            Self::parse1(&f)?
        } else {
            Self::parse2(&f)?
        };
        Ok((h, size))
    }

    fn parse1(f: &Fields) -> Result<Header, K> {
        match &f.b[344..348] {
            b"n+1\0" => {}
            b"ni1\0" => {
                return Err(K::Unsupported(
                    "NIfTI-1 header/image pairs (.hdr/.img); use a single .nii".into(),
                ));
            }
            _ => {
                return Err(K::NotNifti(
                    "NIfTI-1 magic is missing (an ANALYZE 7.5 file?); convert it to NIfTI first"
                        .into(),
                ));
            }
        }
        let mut dim = [0i64; 8];
        let mut pixdim = [0f64; 8];
        for i in 0..8 {
            dim[i] = i64::from(f.i16(40 + 2 * i));
            pixdim[i] = f.f32(76 + 4 * i);
        }
        let mut srow = [[0f64; 4]; 3];
        for (r, row) in srow.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = f.f32(280 + 16 * r + 4 * c);
            }
        }
        Ok(Header {
            format: Format::Nifti1,
            big_endian: f.be,
            dim,
            datatype: i32::from(f.i16(70)),
            bitpix: i32::from(f.i16(72)),
            pixdim,
            vox_offset: f.f32(108),
            scl_slope: f.f32(112),
            scl_inter: f.f32(116),
            qform_code: i32::from(f.i16(252)),
            sform_code: i32::from(f.i16(254)),
            quatern: [f.f32(256), f.f32(260), f.f32(264)],
            qoffset: [f.f32(268), f.f32(272), f.f32(276)],
            srow,
            intent_code: i32::from(f.i16(68)),
            descrip: f.text(148, 80),
        })
    }

    fn parse2(f: &Fields) -> Result<Header, K> {
        match &f.b[4..12] {
            m if m == NIFTI2_MAGIC => {}
            m if m.starts_with(b"ni2\0") => {
                return Err(K::Unsupported(
                    "NIfTI-2 header/image pairs (.hdr/.img); use a single .nii".into(),
                ));
            }
            _ => return Err(K::NotNifti("NIfTI-2 magic is missing or damaged".into())),
        }
        let mut dim = [0i64; 8];
        let mut pixdim = [0f64; 8];
        for i in 0..8 {
            dim[i] = f.i64(16 + 8 * i);
            pixdim[i] = f.f64(104 + 8 * i);
        }
        let mut srow = [[0f64; 4]; 3];
        for (r, row) in srow.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = f.f64(400 + 32 * r + 8 * c);
            }
        }
        Ok(Header {
            format: Format::Nifti2,
            big_endian: f.be,
            dim,
            datatype: i32::from(f.i16(12)),
            bitpix: i32::from(f.i16(14)),
            pixdim,
            vox_offset: f.i64(168) as f64,
            scl_slope: f.f64(176),
            scl_inter: f.f64(184),
            qform_code: f.i32(344),
            sform_code: f.i32(348),
            quatern: [f.f64(352), f.f64(360), f.f64(368)],
            qoffset: [f.f64(376), f.f64(384), f.f64(392)],
            srow,
            intent_code: f.i32(504),
            descrip: f.text(240, 80),
        })
    }

    fn header_size(&self) -> usize {
        match self.format {
            Format::Nifti1 => NIFTI1_HDR,
            Format::Nifti2 => NIFTI2_HDR,
        }
    }

    /// Stored dimensions `dim[1..=dim[0]]`, validated.
    pub fn dims(&self) -> Result<Vec<usize>, K> {
        let nd = self.dim[0];
        if nd == 0 {
            return Err(K::BadHeader {
                field: "dim[0]",
                detail: "0 dimensions (empty volume)".into(),
            });
        }
        if !(1..=7).contains(&nd) {
            return Err(K::BadHeader {
                field: "dim[0]",
                detail: format!("{nd} dimensions; NIfTI allows 1 to 7 (byte order damaged?)"),
            });
        }
        (1..=nd as usize)
            .map(|i| match self.dim[i] {
                d if d >= 1 => usize::try_from(d).map_err(|_| K::BadHeader {
                    field: "dim",
                    detail: format!("dim[{i}] = {d} does not fit in memory addresses"),
                }),
                d => Err(K::BadHeader {
                    field: "dim",
                    detail: format!(
                        "dim[{i}] = {d}; every dimension must be at least 1 (empty volume)"
                    ),
                }),
            })
            .collect()
    }

    /// Voxel → world matrix by the NIfTI rules, and which rule applied.
    /// Where the matrix comes from pixdim (qform or spacing only), a voxel
    /// size that is 0, NaN or infinite along an axis of more than one voxel
    /// is refused: no size can be assumed for it. (An axis of one voxel
    /// takes 1 mm.)
    pub fn world(&self) -> Result<(Mat4, WorldSource), K> {
        if self.sform_code > 0 {
            let mut m = affine::IDENTITY;
            m[..3].copy_from_slice(&self.srow);
            return Ok((m, WorldSource::Sform));
        }
        let source = if self.qform_code > 0 {
            WorldSource::Qform
        } else {
            WorldSource::SpacingOnly
        };
        let mut spacing = [1.0; 3];
        for (i, s) in spacing.iter_mut().enumerate() {
            let p = self.pixdim[i + 1].abs();
            if p.is_finite() && p > 0.0 {
                *s = p;
            } else if self.dim[0] > i as i64 && self.dim[i + 1] > 1 {
                return Err(K::BadHeader {
                    field: "pixdim",
                    detail: format!(
                        "pixdim[{}] = {} along an axis of {} voxels: the voxel size is unknown, and the {} needs it (the file has no sform)",
                        i + 1,
                        self.pixdim[i + 1],
                        self.dim[i + 1],
                        source.name()
                    ),
                });
            }
        }
        if source == WorldSource::Qform {
            let q = Quatern {
                b: self.quatern[0],
                c: self.quatern[1],
                d: self.quatern[2],
                offset: self.qoffset,
                pixdim: spacing,
                qfac: if self.pixdim[0] < 0.0 { -1.0 } else { 1.0 },
            };
            return Ok((affine::quatern_to_mat(&q), source));
        }
        Ok((affine::diagonal(spacing), source))
    }

    /// `(slope, intercept)` to apply, if any. A slope of 0 or NaN means "no
    /// scaling" (the NIfTI standard); an infinite slope, or a non-finite
    /// intercept beside a slope that applies, is refused.
    fn scaling(&self) -> Result<Option<(f64, f64)>, K> {
        let (s, i) = (self.scl_slope, self.scl_inter);
        if s == 0.0 || s.is_nan() {
            return Ok(None);
        }
        if !s.is_finite() {
            return Err(K::BadHeader {
                field: "scl_slope",
                detail: format!("{s}: every scaled sample would be infinite"),
            });
        }
        if !i.is_finite() {
            return Err(K::BadHeader {
                field: "scl_inter",
                detail: format!("{i} beside scl_slope {s}: every scaled sample would be {i}"),
            });
        }
        Ok((!(s == 1.0 && i == 0.0)).then_some((s, i)))
    }

    /// Byte offset of the voxel data, validated against the header size.
    fn data_offset(&self) -> Result<u64, K> {
        let v = self.vox_offset;
        let min = (self.header_size() + 4) as f64;
        if !v.is_finite() || !(0.0..=1e12).contains(&v) {
            return Err(K::BadHeader {
                field: "vox_offset",
                detail: format!("{v} is not a file offset"),
            });
        }
        // NIfTI-1 stores it as a float; a value of 0 in a .nii means "right after the header".
        let v = if v < min { min } else { v.floor() };
        Ok(v as u64)
    }
}

fn read_stream(
    mut r: impl Read,
    gz: bool,
    file_len: Option<u64>,
    opts: ReadOptions,
) -> Result<(Volume, NiftiInfo), VolumeError> {
    let err = |k: K| VolumeError::new("", k);
    let (h, hdr_bytes) = Header::read(&mut r).map_err(err)?;
    let dims = h.dims().map_err(err)?;
    let datatype = DataType::from_code(h.datatype).ok_or_else(|| {
        err(K::Unsupported(format!(
            "sample type {}; Warpscope reads uint8, int8, int16, uint16, int32, uint32, int64, uint64, float32 and float64",
            datatype_description(h.datatype)
        )))
    })?;
    if h.bitpix != 0 && h.bitpix as usize != 8 * datatype.bytes() {
        return Err(err(K::BadHeader {
            field: "bitpix",
            detail: format!(
                "{} bits per sample, but the datatype {} has {}: the header is inconsistent",
                h.bitpix,
                datatype.name(),
                8 * datatype.bytes()
            ),
        }));
    }
    let (affine, world_source) = h.world().map_err(err)?;
    let scaling = h.scaling().map_err(err)?;
    if !affine::is_usable(&affine) {
        return Err(err(K::SingularMatrix {
            which: world_source.name(),
        }));
    }

    // Sizes, with overflow checks; nothing is allocated from them yet.
    let spatial = [
        dims[0],
        *dims.get(1).unwrap_or(&1),
        *dims.get(2).unwrap_or(&1),
    ];
    let channels = dims
        .iter()
        .skip(3)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let total = channels.and_then(|c| spatial.iter().try_fold(c, |acc, &d| acc.checked_mul(d)));
    let too_big = || {
        err(K::BadHeader {
            field: "dim",
            detail: format!("dimensions {dims:?} describe more samples than memory can address"),
        })
    };
    let (channels, total) = match (channels, total) {
        (Some(c), Some(t)) => (c, t),
        _ => return Err(too_big()),
    };
    let data_bytes = total.checked_mul(datatype.bytes()).ok_or_else(too_big)? as u64;
    let decoded_bytes = total.checked_mul(4).ok_or_else(too_big)? as u64;
    check_memory(
        &dims,
        data_bytes.saturating_add(decoded_bytes),
        opts.max_bytes,
    )
    .map_err(err)?;

    // Skip any header extensions up to vox_offset.
    let offset = h.data_offset().map_err(err)?;
    let skip = offset - hdr_bytes as u64;
    let skipped = io::copy(&mut (&mut r).take(skip), &mut io::sink()).map_err(|e| {
        err(stream_error(
            e,
            gz,
            "header extensions",
            offset,
            hdr_bytes as u64,
        ))
    })?;
    if skipped < skip {
        return Err(err(K::Truncated {
            expected_bytes: offset,
            found_bytes: hdr_bytes as u64 + skipped,
            what: "header and its extensions",
        }));
    }

    let mismatch = |found: u64| {
        err(K::SizeMismatch {
            dims: dims.clone(),
            datatype: datatype.name(),
            expected_bytes: data_bytes,
            found_bytes: found,
        })
    };
    if let Some(len) = file_len {
        let available = len.saturating_sub(offset);
        if available < data_bytes {
            return Err(err(K::Truncated {
                expected_bytes: data_bytes,
                found_bytes: available,
                what: "voxel data (dims × datatype size)",
            }));
        }
        if available > data_bytes {
            return Err(mismatch(available));
        }
    }
    // Grows with what is really read, never sized by the header alone.
    let mut raw = Vec::with_capacity(data_bytes.min(1 << 24) as usize);
    let mut counted = Counting {
        inner: &mut r,
        count: 0,
    };
    let read = (&mut counted).take(data_bytes).read_to_end(&mut raw);
    read.map_err(|e| {
        err(stream_error(
            e,
            gz,
            "voxel data (dims × datatype size)",
            data_bytes,
            counted.count,
        ))
    })?;
    if (raw.len() as u64) < data_bytes {
        return Err(err(K::Truncated {
            expected_bytes: data_bytes,
            found_bytes: raw.len() as u64,
            what: "voxel data (dims × datatype size)",
        }));
    }
    if gz {
        // Read to the end so that the gzip CRC and length are verified, and
        // refuse data beyond what the header describes.
        let extra = io::copy(&mut counted, &mut io::sink()).map_err(|e| {
            err(stream_error(
                e,
                gz,
                "voxel data and gzip trailer",
                data_bytes,
                counted.count,
            ))
        })?;
        if extra > 0 {
            return Err(mismatch(data_bytes + extra));
        }
    }

    let mut data = decode(&raw, datatype, h.big_endian, scaling);
    drop(raw);

    let grid = Grid::new(spatial, affine);
    let mut non_finite = 0usize;
    let mut first_bad = None;
    for (idx, v) in data.iter_mut().enumerate() {
        if !v.is_finite() {
            non_finite += 1;
            first_bad.get_or_insert(idx);
            if opts.non_finite == NonFinite::ReplaceWithZero {
                *v = 0.0;
            }
        }
    }
    if let (Some(idx), NonFinite::Reject) = (first_bad, opts.non_finite) {
        let per = grid.voxels();
        let (c, rem) = (idx / per, idx % per);
        let x = rem % spatial[0];
        let y = (rem / spatial[0]) % spatial[1];
        let z = rem / (spatial[0] * spatial[1]);
        return Err(err(K::NonFinite {
            count: non_finite,
            first_voxel: [x, y, z],
            channel: c,
        }));
    }

    let info = NiftiInfo {
        format: h.format,
        gzipped: gz,
        big_endian: h.big_endian,
        datatype,
        dims,
        pixdim: [h.pixdim[1], h.pixdim[2], h.pixdim[3]],
        world_source,
        sform_code: h.sform_code,
        qform_code: h.qform_code,
        scaling,
        intent_code: h.intent_code,
        description: h.descrip.clone(),
        non_finite,
    };
    Ok((
        Volume {
            grid,
            channels,
            data,
        },
        info,
    ))
}

/// Convert raw samples to f32, applying byte order and scl_slope/scl_inter.
fn decode(raw: &[u8], dt: DataType, big_endian: bool, scaling: Option<(f64, f64)>) -> Vec<f32> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            raw.chunks_exact($n)
                .map(|c| {
                    let mut a = [0u8; $n];
                    a.copy_from_slice(c);
                    let v = if big_endian {
                        <$t>::from_be_bytes(a)
                    } else {
                        <$t>::from_le_bytes(a)
                    };
                    v as f64
                })
                .map(|v| match scaling {
                    Some((s, i)) => (v * s + i) as f32,
                    None => v as f32,
                })
                .collect()
        };
    }
    match dt {
        DataType::U8 => conv!(u8, 1),
        DataType::I8 => conv!(i8, 1),
        DataType::I16 => conv!(i16, 2),
        DataType::U16 => conv!(u16, 2),
        DataType::I32 => conv!(i32, 4),
        DataType::U32 => conv!(u32, 4),
        DataType::I64 => conv!(i64, 8),
        DataType::U64 => conv!(u64, 8),
        DataType::F32 => conv!(f32, 4),
        DataType::F64 => conv!(f64, 8),
    }
}

/// How channels are laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChannelLayout {
    /// 4th dimension = channels (sequences, time points).
    #[default]
    Fourth,
    /// 5-D vector image X×Y×Z×1×C with intent VECTOR (ITK/ANTs displacement fields).
    Vector,
}

#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub datatype: DataType,
    /// `None`: NIfTI-1 unless a dimension exceeds 32767.
    pub format: Option<Format>,
    pub layout: ChannelLayout,
    pub description: String,
    /// Written to both `sform_code` and `qform_code` (1 = scanner anatomical).
    pub xform_code: i16,
    /// `None`: from the file name (`.gz` suffix).
    pub gzip: Option<bool>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            datatype: DataType::F32,
            format: None,
            layout: ChannelLayout::Fourth,
            description: "warpscope".into(),
            xform_code: 1,
            gzip: None,
        }
    }
}

/// Serialise a volume to NIfTI bytes (uncompressed). For integer datatypes,
/// data that are not integers within the type's range are stored with
/// scl_slope/scl_inter (see [`integer_scaling`]); NaN becomes the stored 0.
pub fn encode(vol: &Volume, opts: &WriteOptions) -> Result<Vec<u8>, VolumeError> {
    let [nx, ny, nz] = vol.grid.dims;
    let mut dim = [0i64; 8];
    match (opts.layout, vol.channels) {
        (_, 1) => dim[..4].copy_from_slice(&[3, nx as i64, ny as i64, nz as i64]),
        (ChannelLayout::Fourth, c) => {
            dim[..5].copy_from_slice(&[4, nx as i64, ny as i64, nz as i64, c as i64])
        }
        (ChannelLayout::Vector, c) => {
            dim[..6].copy_from_slice(&[5, nx as i64, ny as i64, nz as i64, 1, c as i64]);
        }
    }
    for d in dim.iter_mut().skip(1) {
        if *d == 0 {
            *d = 1;
        }
    }
    let big = dim[1..].iter().any(|&d| d > i64::from(i16::MAX));
    let format = match opts.format {
        Some(Format::Nifti1) if big => {
            return Err(VolumeError::new(
                "",
                K::Invalid(format!(
                    "dimensions {:?} do not fit NIfTI-1; write NIfTI-2",
                    vol.grid.dims
                )),
            ));
        }
        Some(f) => f,
        None if big => Format::Nifti2,
        None => Format::Nifti1,
    };
    if !affine::is_usable(&vol.grid.affine) {
        return Err(VolumeError::new(
            "",
            K::SingularMatrix {
                which: "volume affine",
            },
        ));
    }
    let q = affine::mat_to_quatern(&vol.grid.affine);
    let mut pixdim = [1f64; 8];
    pixdim[0] = q.qfac;
    pixdim[1..4].copy_from_slice(&q.pixdim);
    let intent = if opts.layout == ChannelLayout::Vector && vol.channels > 1 {
        INTENT_VECTOR
    } else {
        0
    };
    let dt = opts.datatype;
    let (slope, inter) = integer_scaling(&vol.data, dt, format);

    let hdr_size = if format == Format::Nifti1 {
        NIFTI1_HDR
    } else {
        NIFTI2_HDR
    };
    let offset = hdr_size + 4;
    let mut out = vec![0u8; offset];
    {
        let h = &mut out[..hdr_size];
        let put = |h: &mut [u8], off: usize, bytes: &[u8]| {
            h[off..off + bytes.len()].copy_from_slice(bytes)
        };
        let desc = opts.description.as_bytes();
        let desc = &desc[..desc.len().min(79)];
        match format {
            Format::Nifti1 => {
                put(h, 0, &348i32.to_le_bytes());
                put(h, 38, b"r");
                for (i, d) in dim.iter().enumerate() {
                    put(h, 40 + 2 * i, &(*d as i16).to_le_bytes());
                }
                put(h, 68, &(intent as i16).to_le_bytes());
                put(h, 70, &dt.code().to_le_bytes());
                put(h, 72, &((dt.bytes() * 8) as i16).to_le_bytes());
                for (i, p) in pixdim.iter().enumerate() {
                    put(h, 76 + 4 * i, &(*p as f32).to_le_bytes());
                }
                put(h, 108, &(offset as f32).to_le_bytes());
                put(h, 112, &(slope as f32).to_le_bytes());
                put(h, 116, &(inter as f32).to_le_bytes());
                put(h, 123, &[2u8]); // xyzt_units: mm
                put(h, 148, desc);
                put(h, 252, &opts.xform_code.to_le_bytes());
                put(h, 254, &opts.xform_code.to_le_bytes());
                for (i, v) in [q.b, q.c, q.d, q.offset[0], q.offset[1], q.offset[2]]
                    .iter()
                    .enumerate()
                {
                    put(h, 256 + 4 * i, &(*v as f32).to_le_bytes());
                }
                for r in 0..3 {
                    for c in 0..4 {
                        put(
                            h,
                            280 + 16 * r + 4 * c,
                            &(vol.grid.affine[r][c] as f32).to_le_bytes(),
                        );
                    }
                }
                put(h, 344, b"n+1\0");
            }
            Format::Nifti2 => {
                put(h, 0, &540i32.to_le_bytes());
                put(h, 4, NIFTI2_MAGIC);
                put(h, 12, &dt.code().to_le_bytes());
                put(h, 14, &((dt.bytes() * 8) as i16).to_le_bytes());
                for (i, d) in dim.iter().enumerate() {
                    put(h, 16 + 8 * i, &d.to_le_bytes());
                }
                for (i, p) in pixdim.iter().enumerate() {
                    put(h, 104 + 8 * i, &p.to_le_bytes());
                }
                put(h, 168, &(offset as i64).to_le_bytes());
                put(h, 176, &slope.to_le_bytes());
                put(h, 184, &inter.to_le_bytes());
                put(h, 240, desc);
                put(h, 344, &i32::from(opts.xform_code).to_le_bytes());
                put(h, 348, &i32::from(opts.xform_code).to_le_bytes());
                for (i, v) in [q.b, q.c, q.d, q.offset[0], q.offset[1], q.offset[2]]
                    .iter()
                    .enumerate()
                {
                    put(h, 352 + 8 * i, &v.to_le_bytes());
                }
                for r in 0..3 {
                    for c in 0..4 {
                        put(
                            h,
                            400 + 32 * r + 8 * c,
                            &vol.grid.affine[r][c].to_le_bytes(),
                        );
                    }
                }
                put(h, 500, &2i32.to_le_bytes());
                put(h, 504, &intent.to_le_bytes());
            }
        }
    }
    out.reserve(vol.data.len() * dt.bytes());
    let (lo, hi) = dt.int_range();
    let to_int = |v: f32| -> f64 {
        let v = (f64::from(v) - inter) / slope;
        if v.is_nan() {
            0.0
        } else {
            v.round().clamp(lo, hi)
        }
    };
    // Vector layout stores X×Y×Z×1×C, which has the same sample order as channels × z × y × x.
    for &v in &vol.data {
        match dt {
            DataType::F32 => out.extend_from_slice(&v.to_le_bytes()),
            DataType::F64 => out.extend_from_slice(&f64::from(v).to_le_bytes()),
            DataType::U8 => out.push(to_int(v) as u8),
            DataType::I8 => out.extend_from_slice(&(to_int(v) as i8).to_le_bytes()),
            DataType::I16 => out.extend_from_slice(&(to_int(v) as i16).to_le_bytes()),
            DataType::U16 => out.extend_from_slice(&(to_int(v) as u16).to_le_bytes()),
            DataType::I32 => out.extend_from_slice(&(to_int(v) as i32).to_le_bytes()),
            DataType::U32 => out.extend_from_slice(&(to_int(v) as u32).to_le_bytes()),
            DataType::I64 => out.extend_from_slice(&(to_int(v) as i64).to_le_bytes()),
            DataType::U64 => out.extend_from_slice(&(to_int(v) as u64).to_le_bytes()),
        }
    }
    Ok(out)
}

/// `(scl_slope, scl_inter)` for storing `data` as `dt`: (1, 0) for float
/// types and for integer-valued data that fits the type; otherwise the
/// finite range is spread over the type's full range (as nibabel does), so
/// that e.g. [0, 1] intensities survive as uint8 to within 1/510.
fn integer_scaling(data: &[f32], dt: DataType, format: Format) -> (f64, f64) {
    if matches!(dt, DataType::F32 | DataType::F64) {
        return (1.0, 0.0);
    }
    let (lo, hi) = dt.int_range();
    let Some((min, max)) = super::range_of(data) else {
        return (1.0, 0.0);
    };
    let (min, max) = (f64::from(min), f64::from(max));
    let fits = min >= lo && max <= hi && data.iter().all(|v| !v.is_finite() || v.fract() == 0.0);
    if fits {
        return (1.0, 0.0);
    }
    let mut slope = if max > min {
        (max - min) / (hi - lo)
    } else {
        1.0
    };
    let mut inter = min - lo * slope;
    if format == Format::Nifti1 {
        // The header holds f32: quantise with the values a reader will see.
        slope = f64::from(slope as f32);
        inter = f64::from(inter as f32);
    }
    (slope, inter)
}

/// Write a volume atomically: to a temporary file beside `path`, flushed to
/// disk, then renamed over it, so a failure never leaves a half-written file.
pub fn write_file(
    path: impl AsRef<Path>,
    vol: &Volume,
    opts: &WriteOptions,
) -> Result<(), VolumeError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let bytes = encode(vol, opts).map_err(|e| e.with_path(&name))?;
    let gzip = opts.gzip.unwrap_or_else(|| name.ends_with(".gz"));
    crate::atomic::write_atomic(path, |w| {
        if gzip {
            let mut enc = GzEncoder::new(w, Compression::new(1));
            enc.write_all(&bytes)?;
            enc.finish()?.flush()
        } else {
            w.write_all(&bytes)?;
            w.flush()
        }
    })
    .map_err(|e| VolumeError::new(&name, K::Io(e)))
}
