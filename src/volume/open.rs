//! One way in for every image path a user gives: a NIfTI file, a DICOM
//! folder, or one DICOM file (its whole series is read).

use std::path::Path;

use super::dicom::{self, DicomInfo, Units};
use super::nifti::{self, NiftiInfo, ReadOptions};
use super::{Volume, VolumeError};

/// Where a volume came from, and what its values mean.
#[derive(Clone, Debug)]
pub enum ImageInfo {
    Nifti(NiftiInfo),
    Dicom(DicomInfo),
}

impl ImageInfo {
    /// "SUV", "HU", "Bq/ml" or "" (unknown or unitless).
    pub fn units(&self) -> &'static str {
        match self {
            ImageInfo::Nifti(_) => "",
            ImageInfo::Dicom(d) => d.units.name(),
        }
    }

    /// The DICOM modality (CT, MR, PT, …), if known.
    pub fn modality(&self) -> Option<&str> {
        match self {
            ImageInfo::Nifti(_) => None,
            ImageInfo::Dicom(d) => Some(&d.series.modality),
        }
    }

    pub fn is_suv(&self) -> bool {
        matches!(self, ImageInfo::Dicom(d) if d.units == Units::Suv)
    }
}

/// Whether `path` is read as DICOM (a folder, or a DICOM Part 10 file).
pub fn is_dicom(path: &Path) -> bool {
    path.is_dir() || dicom::is_dicom_file(path)
}

/// Read an image: NIfTI (`.nii`, `.nii.gz`) or a DICOM series (a folder or
/// a file of it; `series` picks one where a folder holds several).
pub fn read_image(
    path: &Path,
    opts: ReadOptions,
    series: Option<&str>,
) -> Result<(Volume, ImageInfo), VolumeError> {
    if is_dicom(path) {
        let (v, info) = dicom::read_series(path, series)?;
        Ok((v, ImageInfo::Dicom(info)))
    } else {
        let (v, info) = nifti::read_file(path, opts)?;
        Ok((v, ImageInfo::Nifti(info)))
    }
}
