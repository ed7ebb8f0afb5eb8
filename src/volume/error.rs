use std::fmt;

/// What went wrong with a volume file or operation.
#[derive(Debug)]
pub enum VolumeErrorKind {
    /// The operating system refused to read or write the file.
    Io(std::io::Error),
    /// Not a NIfTI-1/NIfTI-2 single file (wrong header size or magic).
    NotNifti(String),
    /// The file ends before the header or the voxel data does.
    Truncated {
        expected_bytes: u64,
        found_bytes: u64,
        what: &'static str,
    },
    /// The file holds more voxel data than its header describes: the
    /// dimensions or the sample type are wrong.
    SizeMismatch {
        dims: Vec<usize>,
        datatype: &'static str,
        expected_bytes: u64,
        found_bytes: u64,
    },
    /// Reading would need more memory than allowed (or available).
    TooLarge {
        dims: Vec<usize>,
        needed_bytes: u64,
        limit_bytes: u64,
        limit: &'static str,
    },
    /// The gzip stream is damaged (bad CRC, invalid deflate data).
    Corrupt(String),
    /// A header field holds an impossible value.
    BadHeader { field: &'static str, detail: String },
    /// A valid NIfTI feature this reader does not handle.
    Unsupported(String),
    /// Samples that are NaN or ±Inf.
    NonFinite {
        count: usize,
        first_voxel: [usize; 3],
        channel: usize,
    },
    /// The chosen voxel → world matrix is singular or not finite.
    SingularMatrix { which: &'static str },
    /// A DICOM object or series that cannot be read as a volume.
    Dicom(String),
    /// An operation got arguments that do not fit together.
    Invalid(String),
}

/// An error about one file (or an in-memory volume, with an empty path).
#[derive(Debug)]
pub struct VolumeError {
    pub path: String,
    pub kind: VolumeErrorKind,
}

impl VolumeError {
    pub fn new(path: impl Into<String>, kind: VolumeErrorKind) -> Self {
        Self {
            path: path.into(),
            kind,
        }
    }

    pub(crate) fn with_path(mut self, path: &str) -> Self {
        if self.path.is_empty() {
            self.path = path.to_string();
        }
        self
    }
}

impl fmt::Display for VolumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        match &self.kind {
            VolumeErrorKind::Io(e) => write!(f, "{e}"),
            VolumeErrorKind::NotNifti(d) => write!(f, "not a NIfTI file ({d})"),
            VolumeErrorKind::Truncated {
                expected_bytes,
                found_bytes,
                what,
            } => write!(
                f,
                "file is truncated: the {what} needs {expected_bytes} bytes but only {found_bytes} are present"
            ),
            VolumeErrorKind::SizeMismatch {
                dims,
                datatype,
                expected_bytes,
                found_bytes,
            } => write!(
                f,
                "the file holds {found_bytes} bytes of voxel data but its header (dims {dims:?} of {datatype}) describes {expected_bytes}: the dimensions or the sample type in the header are wrong"
            ),
            VolumeErrorKind::TooLarge {
                dims,
                needed_bytes,
                limit_bytes,
                limit,
            } => write!(
                f,
                "the header describes dims {dims:?}, which need {} to read, more than {limit} ({}); refused before reading",
                human_bytes(*needed_bytes),
                human_bytes(*limit_bytes)
            ),
            VolumeErrorKind::Corrupt(d) => write!(f, "file is corrupt: {d}"),
            VolumeErrorKind::BadHeader { field, detail } => {
                write!(f, "invalid header field {field}: {detail}")
            }
            VolumeErrorKind::Unsupported(d) => write!(f, "unsupported: {d}"),
            VolumeErrorKind::NonFinite {
                count,
                first_voxel,
                channel,
            } => write!(
                f,
                "{count} sample(s) are NaN or infinite (first at voxel {first_voxel:?}, channel {channel})"
            ),
            VolumeErrorKind::SingularMatrix { which } => {
                write!(
                    f,
                    "the voxel-to-world matrix ({which}) is singular or not finite"
                )
            }
            VolumeErrorKind::Invalid(d) | VolumeErrorKind::Dicom(d) => write!(f, "{d}"),
        }
    }
}

impl std::error::Error for VolumeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            VolumeErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Bytes for a message: "512 B", "3.2 MiB", "17.0 GiB".
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
