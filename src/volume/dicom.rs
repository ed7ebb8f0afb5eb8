//! DICOM series → [`Volume`], with dicom-rs (`dicom-object` parses,
//! `dicom-pixeldata` decodes the pixel data).
//!
//! - A folder (searched recursively) or one file of it: files are grouped by
//!   SeriesInstanceUID; with several series the caller picks one (by number,
//!   UID or position in [`list_series`]'s list).
//! - Slices are sorted by their position along the slice normal
//!   (ImageOrientationPatient's row × column), never by file name or
//!   InstanceNumber. The slice step is measured from ImagePositionPatient
//!   and must be uniform: gaps, duplicate positions, varying orientation or
//!   size, and gantry tilt are refused with the files named.
//! - Voxel (i = column, j = row, k = slice) → LPS mm from IPP/IOP/
//!   PixelSpacing and the measured step, then LPS → RAS (x and y negated).
//! - Values: stored × RescaleSlope + RescaleIntercept per slice (CT in HU);
//!   PET in SUV (body weight) where the tags allow, see [`suv_factor`].
//! - Enhanced multi-frame objects: per-frame positions, orientations and
//!   rescale from the functional group sequences.
//! - Transfer syntaxes: implicit/explicit VR little endian, explicit big
//!   endian, deflate, RLE, JPEG baseline/extended/lossless, JPEG 2000
//!   (openjp2). JPEG-LS and JPEG XL are not built in (they need C/C++
//!   libraries) and are refused by name.

use std::path::{Path, PathBuf};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemDicomObject;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};

use super::affine::{self, Mat4};
use super::{Grid, Volume, VolumeError, VolumeErrorKind as K};

/// Most files a folder scan looks at, and how deep it goes.
const MAX_FILES: usize = 100_000;
const MAX_DEPTH: usize = 8;

/// What the values of a read series mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Units {
    /// Stored values after rescale, no stated unit (MR).
    Rescaled,
    /// CT Hounsfield units.
    Hu,
    /// PET standardised uptake value (body weight), g/ml.
    Suv,
    /// PET activity concentration, Bq/ml (SUV could not be computed).
    BqMl,
}

impl Units {
    pub fn name(self) -> &'static str {
        match self {
            Units::Rescaled => "",
            Units::Hu => "HU",
            Units::Suv => "SUV",
            Units::BqMl => "Bq/ml",
        }
    }
}

/// One series found in a folder.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSummary {
    pub uid: String,
    pub number: Option<i64>,
    pub modality: String,
    pub description: String,
    /// Files of the series (slices, or one multi-frame object).
    pub files: Vec<PathBuf>,
    /// Whether its objects hold images (Rows/Columns and pixel data).
    pub images: bool,
}

impl SeriesSummary {
    /// The series `uid` as `obj` describes it, with no file yet.
    fn of(obj: &InMemDicomObject, uid: String) -> Self {
        Self {
            number: int(obj, tags::SERIES_NUMBER),
            modality: text(obj, tags::MODALITY).unwrap_or_default(),
            description: text(obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
            uid,
            files: Vec::new(),
            images: true,
        }
    }

    /// One numbered line per series ("  2. #2 PT … (94 files)  uid …"), as
    /// `info --list-series` prints them and a refusal lists them.
    pub fn listing(series: &[SeriesSummary]) -> String {
        series
            .iter()
            .enumerate()
            .map(|(i, s)| format!("  {}. {}  uid {}", i + 1, s.label(), s.uid))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// "#2 PT 'synthetic PT from MNI' (91 files)".
    pub fn label(&self) -> String {
        let number = self.number.map_or(String::new(), |n| format!("#{n} "));
        let description = if self.description.is_empty() {
            String::new()
        } else {
            format!(" '{}'", self.description)
        };
        format!(
            "{number}{}{description} ({} file{}){}",
            if self.modality.is_empty() {
                "?"
            } else {
                &self.modality
            },
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            if self.images { "" } else { ", no images" }
        )
    }
}

/// Facts about a read series that are not part of the volume.
#[derive(Clone, Debug)]
pub struct DicomInfo {
    pub series: SeriesSummary,
    pub transfer_syntax: String,
    pub units: Units,
    pub slices: usize,
    /// Measured distance between slice centres (mm).
    pub slice_step_mm: f64,
    /// What was assumed or left out (e.g. why SUV is not available).
    pub notices: Vec<String>,
}

fn err(name: &str, msg: impl Into<String>) -> VolumeError {
    VolumeError::new(name, K::Dicom(msg.into()))
}

/// Whether `path` is a file that starts like a DICOM Part 10 file ("DICM"
/// after the 128-byte preamble).
pub fn is_dicom_file(path: &Path) -> bool {
    use std::io::Read;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() < 132 {
        return false;
    }
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[128..132] == b"DICM"
}

/// Whether a folder holds DICOM files (looks at a few dozen entries).
pub fn folder_has_dicom(dir: &Path) -> bool {
    let mut files = Vec::new();
    collect_files(dir, 0, 64, &mut files);
    files.iter().any(|f| is_dicom_file(f))
}

fn collect_files(dir: &Path, depth: usize, limit: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if out.len() >= limit {
            return;
        }
        // symlink_metadata: a link loop cannot recurse forever.
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() && depth < MAX_DEPTH => collect_files(&p, depth + 1, limit, out),
            Ok(m) if m.is_file() => out.push(p),
            _ => {}
        }
    }
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok().flatten()?;
    let s = e
        .to_str()
        .ok()?
        .trim()
        .trim_end_matches('\0')
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let e = obj.element_opt(tag).ok().flatten()?;
    let v = e.to_multi_float64().ok()?;
    (!v.is_empty() && v.iter().all(|x| x.is_finite())).then_some(v)
}

fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    floats(obj, tag).map(|v| v[0])
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.element_opt(tag).ok().flatten()?.to_int::<i64>().ok()
}

fn items(obj: &InMemDicomObject, tag: Tag) -> Option<&[InMemDicomObject]> {
    obj.element_opt(tag).ok().flatten()?.items()
}

/// Open a file: read it, check its element lengths (see
/// [`super::dicom_lengths`]), then parse it from memory.
fn open(path: &Path, header_only: bool) -> Result<DefaultDicomObject, VolumeError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| VolumeError::new(&name, K::Io(e)))?;
    parse(&bytes, &name, header_only)
}

fn parse(bytes: &[u8], name: &str, header_only: bool) -> Result<DefaultDicomObject, VolumeError> {
    super::dicom_lengths::check(bytes)
        .map_err(|e| err(name, format!("not a readable DICOM file ({e})")))?;
    let mut o = OpenFileOptions::new();
    if header_only {
        o = o.read_until(tags::PIXEL_DATA);
    }
    o.from_reader(bytes)
        .map_err(|e| err(name, format!("not a readable DICOM file ({e})")))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The series in a folder (or the folder of a file), by series number.
/// Copies of one instance (same SOPInstanceUID) count once.
pub fn list_series(path: &Path) -> Result<Vec<SeriesSummary>, VolumeError> {
    let name = path.display().to_string();
    let (dir, only) = if path.is_dir() {
        (path.to_path_buf(), None)
    } else if is_dicom_file(path) {
        let obj = open(path, true)?;
        let only = text(&obj, tags::SERIES_INSTANCE_UID);
        (
            path.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            Some(only),
        )
    } else {
        return Err(err(&name, "neither a folder nor a DICOM file"));
    };
    let mut files = Vec::new();
    collect_files(&dir, 0, MAX_FILES, &mut files);
    // The file given first: among copies of one instance (same
    // SOPInstanceUID, e.g. one image in several transfer syntaxes) it is
    // the one read.
    if !path.is_dir()
        && let Some(i) = files.iter().position(|f| same_file(f, path))
    {
        let given = files.remove(i);
        files.insert(0, given);
    }
    let mut instances = std::collections::HashSet::new();
    let mut series: Vec<SeriesSummary> = Vec::new();
    for f in files.into_iter().filter(|f| is_dicom_file(f)) {
        let Ok(obj) = open(&f, true) else { continue };
        let Some(uid) = text(&obj, tags::SERIES_INSTANCE_UID) else {
            continue; // a DICOMDIR or another object without a series
        };
        if let Some(sop) = text(&obj, tags::SOP_INSTANCE_UID)
            && !instances.insert(sop)
        {
            continue; // another copy of an instance already listed
        }
        if let Some(only) = &only
            && only.as_deref() != Some(uid.as_str())
        {
            continue;
        }
        let images = int(&obj, tags::ROWS).is_some() && int(&obj, tags::COLUMNS).is_some();
        match series.iter_mut().find(|s| s.uid == uid) {
            Some(s) => {
                s.files.push(f);
                s.images |= images;
            }
            None => series.push(SeriesSummary {
                files: vec![f],
                images,
                ..SeriesSummary::of(&obj, uid)
            }),
        }
    }
    if series.is_empty() {
        return Err(err(&name, "no DICOM series found here"));
    }
    series.sort_by(|a, b| {
        (a.number, &a.uid)
            .cmp(&(b.number, &b.uid))
            .then(b.files.len().cmp(&a.files.len()))
    });
    Ok(series)
}

/// Pick a series by its SeriesNumber, its UID, or its position (1-based)
/// in the list; `None` works only when there is one.
pub fn pick<'a>(
    series: &'a [SeriesSummary],
    choice: Option<&str>,
    name: &str,
) -> Result<&'a SeriesSummary, VolumeError> {
    let listing = || SeriesSummary::listing(series);
    match choice {
        None if series.len() == 1 => Ok(&series[0]),
        None => Err(err(
            name,
            format!(
                "{} series here; pick one (--series NUMBER or UID):\n{}",
                series.len(),
                listing()
            ),
        )),
        Some(c) => {
            let c = c.trim();
            series
                .iter()
                .find(|s| s.uid == c)
                .or_else(|| {
                    let n: i64 = c.parse().ok()?;
                    series.iter().find(|s| s.number == Some(n)).or_else(|| {
                        usize::try_from(n)
                            .ok()
                            .filter(|&i| i >= 1)
                            .and_then(|i| series.get(i - 1))
                    })
                })
                .ok_or_else(|| {
                    err(
                        name,
                        format!("no series '{c}' here; the series are:\n{}", listing()),
                    )
                })
        }
    }
}

/// Read one series of a folder (or of the folder of a file).
pub fn read_series(path: &Path, choice: Option<&str>) -> Result<(Volume, DicomInfo), VolumeError> {
    let name = path.display().to_string();
    let all = list_series(path)?;
    read_listed(pick(&all, choice, &name)?.clone(), &name)
}

/// Read a series [`list_series`] found, without scanning its folder again;
/// `name` (what the user gave) names it in errors.
pub fn read_listed(chosen: SeriesSummary, name: &str) -> Result<(Volume, DicomInfo), VolumeError> {
    if !chosen.images {
        return Err(err(
            name,
            format!(
                "series {} holds no image (a report, presentation state or other non-image object)",
                chosen.label()
            ),
        ));
    }
    let mut objects = Vec::new();
    for f in &chosen.files {
        let obj = open(f, false)?;
        if int(&obj, tags::ROWS).is_none() {
            continue; // a non-image object filed in an image series
        }
        objects.push((f.display().to_string(), obj));
    }
    let (vol, mut info) = assemble(&objects, name, None)?;
    info.series = chosen;
    Ok((vol, info))
}

/// Read one DICOM object held in memory as a series of its own (the fuzz
/// target's entry point); `max_bytes` bounds the decoded volume (`None`:
/// the memory available now).
pub fn read_bytes(
    bytes: &[u8],
    name: &str,
    max_bytes: Option<u64>,
) -> Result<(Volume, DicomInfo), VolumeError> {
    let obj = parse(bytes, name, false)?;
    assemble(&[(name.to_string(), obj)], name, max_bytes)
}

/// One image plane: where it is and how to turn its stored values into
/// the series' units.
struct Plane {
    file: String,
    /// Index of the frame in its object's pixel data.
    frame: u32,
    object: usize,
    ipp: [f64; 3],
    row_dir: [f64; 3],
    col_dir: [f64; 3],
    /// (between rows, between columns), mm.
    spacing: [f64; 2],
    rows: usize,
    cols: usize,
    slope: f64,
    intercept: f64,
    /// When this plane was acquired (seconds since 1970; PET, DecayCorrection NONE).
    acquisition: Option<f64>,
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn vec3(v: &[f64]) -> [f64; 3] {
    [v[0], v[1], v[2]]
}

/// The planes of one object: one, or one per frame of an enhanced
/// multi-frame object (functional groups).
fn planes_of(obj: &InMemDicomObject, object: usize, file: &str) -> Result<Vec<Plane>, VolumeError> {
    let rows = int(obj, tags::ROWS).filter(|&r| r > 0);
    let cols = int(obj, tags::COLUMNS).filter(|&c| c > 0);
    let (Some(rows), Some(cols)) = (rows, cols) else {
        return Err(err(file, "no image (Rows/Columns missing)"));
    };
    let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    if frames > 1 << 16 || rows > 1 << 15 || cols > 1 << 15 {
        return Err(err(
            file,
            format!("{frames} frames of {rows} × {cols}: too large to be an image"),
        ));
    }
    let shared = items(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|s| s.first());
    let per_frame = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    // A functional-group attribute of frame f: its per-frame item first,
    // then the shared one, then the top level.
    let find = |f: usize, seq: Tag, tag: Tag| -> Option<Vec<f64>> {
        let from = |group: Option<&InMemDicomObject>| {
            group
                .and_then(|g| items(g, seq))
                .and_then(|s| s.first())
                .and_then(|item| floats(item, tag))
        };
        from(per_frame.and_then(|p| p.get(f)))
            .or_else(|| from(shared))
            .or_else(|| floats(obj, tag))
    };
    let acquired = |f: usize| -> Option<f64> {
        let frame_dt = per_frame
            .and_then(|p| p.get(f))
            .and_then(|g| items(g, tags::FRAME_CONTENT_SEQUENCE))
            .and_then(|s| s.first())
            .and_then(|c| text(c, tags::FRAME_ACQUISITION_DATE_TIME));
        frame_dt
            .or_else(|| text(obj, tags::ACQUISITION_DATE_TIME))
            .or_else(|| {
                Some(text(obj, tags::ACQUISITION_DATE)? + &text(obj, tags::ACQUISITION_TIME)?)
            })
            .and_then(|dt| datetime_seconds(&dt))
    };
    let mut out = Vec::new();
    for f in 0..frames as usize {
        let ipp = find(
            f,
            tags::PLANE_POSITION_SEQUENCE,
            tags::IMAGE_POSITION_PATIENT,
        );
        let iop = find(
            f,
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
        );
        let spacing = find(f, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING);
        let slope = find(
            f,
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            tags::RESCALE_SLOPE,
        )
        .map_or(1.0, |v| v[0]);
        let intercept = find(
            f,
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            tags::RESCALE_INTERCEPT,
        )
        .map_or(0.0, |v| v[0]);
        let (ipp, iop) = match (ipp, iop) {
            (Some(p), Some(o)) if p.len() >= 3 && o.len() >= 6 => (vec3(&p), o),
            // A single plane without position (a secondary capture, or an
            // object from pydicom's set): placed at the origin, axial.
            (None, None) if frames == 1 => ([0.0; 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
            _ => {
                return Err(err(
                    file,
                    format!(
                        "frame {}: ImagePositionPatient or ImageOrientationPatient is missing",
                        f + 1
                    ),
                ));
            }
        };
        let norm = |v: [f64; 3]| dot(v, v).sqrt();
        let (r, c) = (vec3(&iop[..3]), vec3(&iop[3..6]));
        if (norm(r) - 1.0).abs() > 1e-3 || (norm(c) - 1.0).abs() > 1e-3 || dot(r, c).abs() > 1e-3 {
            return Err(err(
                file,
                format!("ImageOrientationPatient {iop:?} is not two orthogonal unit vectors"),
            ));
        }
        let spacing = match spacing {
            Some(s) if s.len() >= 2 && s[0] > 0.0 && s[1] > 0.0 => [s[0], s[1]],
            Some(s) => {
                return Err(err(
                    file,
                    format!("PixelSpacing {s:?} is not two positive sizes"),
                ));
            }
            None if frames == 1 && ipp == [0.0; 3] => [1.0, 1.0],
            None => return Err(err(file, "PixelSpacing is missing")),
        };
        if !(slope.is_finite() && slope != 0.0 && intercept.is_finite()) {
            return Err(err(
                file,
                format!("RescaleSlope {slope} / RescaleIntercept {intercept} cannot be applied"),
            ));
        }
        out.push(Plane {
            file: file.to_string(),
            frame: f as u32,
            object,
            ipp,
            row_dir: r,
            col_dir: c,
            spacing,
            rows: rows as usize,
            cols: cols as usize,
            slope,
            intercept,
            acquisition: acquired(f),
        });
    }
    Ok(out)
}

/// Build the volume from the objects of one series.
fn assemble(
    objects: &[(String, DefaultDicomObject)],
    name: &str,
    max_bytes: Option<u64>,
) -> Result<(Volume, DicomInfo), VolumeError> {
    if objects.is_empty() {
        return Err(err(name, "the series holds no image object"));
    }
    let first = &objects[0].1;
    let modality = text(first, tags::MODALITY).unwrap_or_default();
    let mut planes = Vec::new();
    for (i, (file, obj)) in objects.iter().enumerate() {
        if text(obj, tags::MODALITY).unwrap_or_default() != modality {
            return Err(err(
                file,
                format!("modality differs from the series' {modality}"),
            ));
        }
        planes.extend(planes_of(obj, i, file)?);
    }
    let p0 = &planes[0];
    for p in &planes[1..] {
        if (p.rows, p.cols) != (p0.rows, p0.cols) {
            return Err(err(
                &p.file,
                format!(
                    "{} × {} pixels where {} has {} × {}: the slices differ in size",
                    p.rows, p.cols, p0.file, p0.rows, p0.cols
                ),
            ));
        }
        let same_dir = |a: [f64; 3], b: [f64; 3]| dot(a, b) > 1.0 - 1e-6;
        if !same_dir(p.row_dir, p0.row_dir) || !same_dir(p.col_dir, p0.col_dir) {
            return Err(err(
                &p.file,
                format!(
                    "its orientation differs from {}'s: the slices are not one stack",
                    p0.file
                ),
            ));
        }
        if (p.spacing[0] - p0.spacing[0]).abs() > 1e-4
            || (p.spacing[1] - p0.spacing[1]).abs() > 1e-4
        {
            return Err(err(
                &p.file,
                format!(
                    "PixelSpacing {:?} where {} has {:?}",
                    p.spacing, p0.file, p0.spacing
                ),
            ));
        }
    }
    let (row_dir, col_dir, spacing, rows, cols) =
        (p0.row_dir, p0.col_dir, p0.spacing, p0.rows, p0.cols);
    let normal = cross(row_dir, col_dir);
    planes.sort_by(|a, b| dot(a.ipp, normal).total_cmp(&dot(b.ipp, normal)));
    let positions: Vec<f64> = planes.iter().map(|p| dot(p.ipp, normal)).collect();
    let n = planes.len();
    let step = stack_step(&planes, &positions, first)?;
    // Gantry tilt: the stack must run along the normal.
    let mut k_dir = normal;
    if n > 1 {
        let d: [f64; 3] = std::array::from_fn(|a| planes[n - 1].ipp[a] - planes[0].ipp[a]);
        let len = dot(d, d).sqrt();
        let cos = dot(d, normal) / len;
        if cos < (0.5f64).to_radians().cos() {
            return Err(err(
                name,
                format!(
                    "the slices are sheared by {:.1}° from their normal (gantry tilt): \
                     Warpscope does not resample tilted stacks; reconstruct or resample them first",
                    cos.clamp(-1.0, 1.0).acos().to_degrees()
                ),
            ));
        }
        k_dir = std::array::from_fn(|a| d[a] / len);
    }
    // Voxel → LPS, then RAS.
    let mut lps: Mat4 = affine::IDENTITY;
    for a in 0..3 {
        lps[a][0] = row_dir[a] * spacing[1];
        lps[a][1] = col_dir[a] * spacing[0];
        lps[a][2] = k_dir[a] * step;
        lps[a][3] = planes[0].ipp[a];
    }
    let mut ras = lps;
    for row in ras.iter_mut().take(2) {
        for v in row.iter_mut() {
            *v = -*v;
        }
    }
    if !affine::is_usable(&ras) {
        return Err(err(name, "the slices' geometry gives a singular matrix"));
    }

    // Pixel data, plane by plane; first, whether the decoded volume can fit.
    let per = rows * cols;
    let bytes_per_sample = int(first, tags::BITS_ALLOCATED).unwrap_or(16).clamp(8, 64) as u64 / 8;
    let needed = (per as u64)
        .saturating_mul(planes.len() as u64)
        .saturating_mul(4 + bytes_per_sample);
    super::nifti::check_memory(&[cols, rows, planes.len()], needed, max_bytes)
        .map_err(|k| VolumeError::new(name, k))?;
    let mut data = vec![0f32; per * n];
    let raw = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
    let mut decoded_object = usize::MAX;
    let mut decoded = None;
    for (k, p) in planes.iter().enumerate() {
        if decoded_object != p.object {
            let obj = &objects[p.object].1;
            let ts = obj
                .meta()
                .transfer_syntax()
                .trim_end_matches('\0')
                .to_string();
            let cannot = |why: String| {
                err(
                    &p.file,
                    format!(
                        "its pixel data cannot be decoded ({why}); transfer syntax {}",
                        transfer_syntax_name(&ts)
                    ),
                )
            };
            if ts == RLE_LOSSLESS {
                check_rle(obj).map_err(cannot)?;
            }
            // The codecs are third-party code: a damaged stream that makes
            // one panic (fuzzing found such inputs for RLE) is an error here.
            let d = guarded(|| obj.decode_pixel_data())
                .map_err(|_| cannot("the decoder failed on a damaged stream".into()))?
                .map_err(|e| cannot(e.to_string()))?;
            if d.samples_per_pixel() != 1 {
                return Err(err(
                    &p.file,
                    format!(
                        "{} samples per pixel (colour): only grey images are read",
                        d.samples_per_pixel()
                    ),
                ));
            }
            decoded = Some(d);
            decoded_object = p.object;
        }
        let Some(d) = decoded.as_ref() else {
            continue;
        };
        let values: Vec<f32> = guarded(|| d.to_vec_frame_with_options(p.frame, &raw))
            .map_err(|_| {
                err(
                    &p.file,
                    format!("frame {}: the pixel conversion failed", p.frame + 1),
                )
            })?
            .map_err(|e| err(&p.file, format!("frame {}: {e}", p.frame + 1)))?;
        if values.len() < per {
            return Err(err(
                &p.file,
                format!(
                    "frame {} holds {} pixels, not {rows} × {cols}",
                    p.frame + 1,
                    values.len()
                ),
            ));
        }
        let out = &mut data[k * per..(k + 1) * per];
        for (o, v) in out.iter_mut().zip(&values) {
            *o = (f64::from(*v) * p.slope + p.intercept) as f32;
        }
    }

    let mut notices = Vec::new();
    let units = match modality.as_str() {
        "CT" => Units::Hu,
        "PT" => match pet_units(first, &planes) {
            Ok(Pet::Suv(factors)) => {
                for (k, f) in factors.iter().enumerate() {
                    for v in &mut data[k * per..(k + 1) * per] {
                        *v = (f64::from(*v) * f) as f32;
                    }
                }
                Units::Suv
            }
            Ok(Pet::AlreadySuv) => Units::Suv,
            Err(why) => {
                notices.push(format!("values in Bq/ml, not SUV: {why}"));
                Units::BqMl
            }
        },
        _ => Units::Rescaled,
    };
    if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
        return Err(err(
            name,
            format!("a value is not finite after rescaling (sample {bad})"),
        ));
    }
    let ts = first
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let vol = Volume {
        grid: Grid::new([cols, rows, n], ras),
        channels: 1,
        data,
    };
    let info = DicomInfo {
        series: SeriesSummary::of(
            first,
            text(first, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        ),
        transfer_syntax: transfer_syntax_name(&ts),
        units,
        slices: n,
        slice_step_mm: step,
        notices,
    };
    Ok((vol, info))
}

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// The RLE header of every fragment: at most 15 segments in a 64-byte
/// header (PS3.5 G.5). dicom-rs's RLE reader sizes a buffer by the segment
/// count it reads there, so a damaged count (fuzzing found 1.3 G) would
/// allocate gigabytes; it is refused here first.
fn check_rle(obj: &InMemDicomObject) -> Result<(), String> {
    let pixels = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| "no pixel data".to_string())?;
    let fragments = pixels
        .fragments()
        .ok_or("RLE pixel data is not encapsulated")?;
    for (i, f) in fragments.iter().enumerate() {
        let segments = f
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        match segments {
            Some(n) if f.len() >= 64 && (1..=15).contains(&n) => {}
            _ => {
                return Err(format!(
                    "RLE fragment {} has a damaged header ({} bytes, {:?} segments)",
                    i + 1,
                    f.len(),
                    segments
                ));
            }
        }
    }
    Ok(())
}

thread_local! {
    /// Set while third-party decoding runs on this thread: its panics are
    /// reported as errors, so the panic hook stays quiet about them.
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run third-party decoding; a panic inside it becomes `Err(())` (and
/// prints nothing: the caller reports it as a damaged file).
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ()> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    DECODING.with(|d| d.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| ());
    DECODING.with(|d| d.set(false));
    result
}

/// The distance between slices, checked uniform: no gap, no duplicate.
fn stack_step(
    planes: &[Plane],
    positions: &[f64],
    first: &InMemDicomObject,
) -> Result<f64, VolumeError> {
    let n = planes.len();
    if n == 1 {
        return Ok(float(first, tags::SPACING_BETWEEN_SLICES)
            .or_else(|| float(first, tags::SLICE_THICKNESS))
            .filter(|s| *s > 0.0)
            .unwrap_or(1.0));
    }
    let gaps: Vec<f64> = positions.windows(2).map(|w| w[1] - w[0]).collect();
    if let Some(i) = gaps.iter().position(|g| g.abs() < 1e-3) {
        return Err(err(
            &planes[i + 1].file,
            format!(
                "two slices at the same position ({:.3} mm along the normal; also {}): duplicate slices",
                positions[i], planes[i].file
            ),
        ));
    }
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let tolerance = (0.01 * median).max(0.01);
    for (i, g) in gaps.iter().enumerate() {
        if (g - median).abs() > tolerance {
            let what = if *g > 1.5 * median {
                format!("about {} slice(s) missing", (g / median).round() as i64 - 1)
            } else {
                "the slices are unevenly spaced".to_string()
            };
            return Err(err(
                &planes[i + 1].file,
                format!(
                    "{g:.3} mm from the previous slice ({}) where the others are {median:.3} mm apart: {what}",
                    planes[i].file
                ),
            ));
        }
    }
    // The mean over the stack: the same as the median within tolerance,
    // and exact for the end points.
    Ok((positions[n - 1] - positions[0]) / (n - 1) as f64)
}

enum Pet {
    /// Per-plane factors Bq/ml → SUV.
    Suv(Vec<f64>),
    AlreadySuv,
}

/// SUV (body weight) = activity concentration (Bq/ml) × weight (g) /
/// decayed dose (Bq). The dose is decayed from injection to the time the
/// images are decay-corrected to: the series start (DecayCorrection START),
/// the injection itself (ADMIN), or each image's acquisition (NONE).
fn pet_units(obj: &InMemDicomObject, planes: &[Plane]) -> Result<Pet, String> {
    let units = text(obj, tags::UNITS)
        .unwrap_or_default()
        .to_ascii_uppercase();
    match units.as_str() {
        "GML" => return Ok(Pet::AlreadySuv),
        "BQML" => {}
        "" => return Err("Units is missing".into()),
        u => return Err(format!("Units is {u}; SUV needs BQML")),
    }
    let weight_kg = float(obj, tags::PATIENT_WEIGHT)
        .filter(|w| *w > 0.0)
        .ok_or("PatientWeight is missing or 0")?;
    let rp = items(obj, tags::RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE)
        .and_then(|s| s.first())
        .ok_or("RadiopharmaceuticalInformationSequence is missing")?;
    let dose = float(rp, tags::RADIONUCLIDE_TOTAL_DOSE)
        .filter(|d| *d > 0.0)
        .ok_or("RadionuclideTotalDose is missing or 0")?;
    let half_life = float(rp, tags::RADIONUCLIDE_HALF_LIFE)
        .filter(|h| *h > 0.0)
        .ok_or("RadionuclideHalfLife is missing or 0")?;
    let series_date = text(obj, tags::SERIES_DATE);
    let injection = text(rp, tags::RADIOPHARMACEUTICAL_START_DATE_TIME)
        .and_then(|dt| datetime_seconds(&dt))
        .or_else(|| {
            let t = text(rp, tags::RADIOPHARMACEUTICAL_START_TIME)?;
            datetime_seconds(&format!("{}{}", series_date.as_deref()?, t))
        })
        .ok_or("the injection time (RadiopharmaceuticalStartDateTime/Time) is missing")?;
    let decay = |t: f64| 2f64.powf(-(t - injection) / half_life);
    let correction = text(obj, tags::DECAY_CORRECTION)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let factor = |reference: f64| weight_kg * 1000.0 / (dose * decay(reference));
    match correction.as_str() {
        "START" => {
            let start = datetime_seconds(&format!(
                "{}{}",
                series_date.as_deref().ok_or("SeriesDate is missing")?,
                text(obj, tags::SERIES_TIME).ok_or("SeriesTime is missing")?
            ))
            .ok_or("SeriesDate/SeriesTime cannot be read")?;
            if start < injection {
                return Err("the series starts before the injection".into());
            }
            Ok(Pet::Suv(vec![factor(start); planes.len()]))
        }
        "ADMIN" => Ok(Pet::Suv(vec![factor(injection); planes.len()])),
        "NONE" => planes
            .iter()
            .map(|p| {
                p.acquisition.map(factor).ok_or_else(|| {
                    "per-image acquisition times are needed (DecayCorrection NONE)".to_string()
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Pet::Suv),
        c => Err(format!("DecayCorrection '{c}' is not START, ADMIN or NONE")),
    }
}

/// Seconds since 1970-01-01 of a DICOM date-time `YYYYMMDDHHMMSS.FFFFFF`
/// (time parts optional; a UTC offset is ignored: both times of a
/// difference come from the same scanner).
pub fn datetime_seconds(s: &str) -> Option<f64> {
    let s = s.trim();
    let s = s.split(['+', '-']).next()?;
    if s.len() < 8 || !s.is_ascii() {
        return None;
    }
    let (date, time) = s.split_at(8);
    let y: i64 = date[..4].parse().ok()?;
    let m: i64 = date[4..6].parse().ok()?;
    let d: i64 = date[6..8].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (H. Hinnant's algorithm).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let part = |i: usize| -> Option<f64> {
        match hms.get(i..i + 2) {
            Some(p) => p.parse().ok(),
            None => Some(0.0),
        }
    };
    let frac: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().ok()?
    };
    Some(days as f64 * 86_400.0 + part(0)? * 3600.0 + part(2)? * 60.0 + part(4)? + frac)
}

/// A transfer syntax's name, or its UID where unknown.
pub fn transfer_syntax_name(uid: &str) -> String {
    let name = match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.1.99" => "Deflated Explicit VR Little Endian",
        "1.2.840.10008.1.2.2" => "Explicit VR Big Endian",
        "1.2.840.10008.1.2.5" => "RLE Lossless",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline",
        "1.2.840.10008.1.2.4.51" => "JPEG Extended",
        "1.2.840.10008.1.2.4.57" => "JPEG Lossless",
        "1.2.840.10008.1.2.4.70" => "JPEG Lossless SV1",
        "1.2.840.10008.1.2.4.80" => "JPEG-LS Lossless (not built in: needs CharLS)",
        "1.2.840.10008.1.2.4.81" => "JPEG-LS Near-Lossless (not built in: needs CharLS)",
        "1.2.840.10008.1.2.4.90" => "JPEG 2000 Lossless",
        "1.2.840.10008.1.2.4.91" => "JPEG 2000",
        _ => "",
    };
    if name.is_empty() {
        uid.to_string()
    } else {
        format!("{name} ({uid})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_date_times_are_seconds() {
        let a = datetime_seconds("20260105090000").expect("a");
        let b = datetime_seconds("20260105100000.5").expect("b");
        assert_eq!(b - a, 3600.5);
        let c = datetime_seconds("20260106").expect("c");
        assert_eq!(c - a, 15.0 * 3600.0);
        assert_eq!(datetime_seconds("19700101000000"), Some(0.0));
        assert_eq!(datetime_seconds("2026"), None);
        assert_eq!(datetime_seconds("20261301"), None);
        assert_eq!(datetime_seconds("2é0601051200"), None);
        assert_eq!(datetime_seconds("20260105090000+0100"), Some(a));
    }
}
