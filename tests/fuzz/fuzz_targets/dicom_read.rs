//! Any byte string given to the DICOM reader (one object, read as a series
//! of its own) must give a volume or a typed error: no panic, no hang, no
//! allocation beyond libFuzzer's limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warpscope_fuzz::volume::dicom;

fuzz_target!(|data: &[u8]| {
    if let Ok((vol, info)) = dicom::read_bytes(data, "fuzz.dcm") {
        assert_eq!(vol.data.len(), vol.voxels() * vol.channels);
        assert_eq!(info.slices, vol.grid.dims[2]);
        assert!(vol.data.iter().all(|v| v.is_finite()));
    }
});
