//! The demo pair embedded in the binary (`assets/demo/`): a 2.5 mm, head-cropped,
//! uint8 version of the synthetic pre/post-resection pair made from the MNI152
//! 2009 template (see `assets/README.md` for provenance and licence).

use crate::volume::nifti::{self, NiftiInfo, ReadOptions};
use crate::volume::{Volume, VolumeError};

pub const FIXED_NII_GZ: &[u8] = include_bytes!("../assets/demo/fixed.nii.gz");
pub const MOVING_NII_GZ: &[u8] = include_bytes!("../assets/demo/moving.nii.gz");
pub const RESECTION_FIXED_NII_GZ: &[u8] = include_bytes!("../assets/demo/resection_fixed.nii.gz");
/// `id,fx,fy,fz,mx,my,mz,in_resection` in world RAS mm.
pub const LANDMARKS_CSV: &str = include_str!("../assets/demo/landmarks.csv");

/// The follow-up (fixed) image.
pub fn fixed() -> Result<(Volume, NiftiInfo), VolumeError> {
    nifti::read_bytes(FIXED_NII_GZ, "demo/fixed.nii.gz", ReadOptions::default())
}

/// The pre-operative (moving) image.
pub fn moving() -> Result<(Volume, NiftiInfo), VolumeError> {
    nifti::read_bytes(MOVING_NII_GZ, "demo/moving.nii.gz", ReadOptions::default())
}

/// Mask of the resection cavity on the fixed grid.
pub fn resection_fixed() -> Result<(Volume, NiftiInfo), VolumeError> {
    nifti::read_bytes(
        RESECTION_FIXED_NII_GZ,
        "demo/resection_fixed.nii.gz",
        ReadOptions::default(),
    )
}
