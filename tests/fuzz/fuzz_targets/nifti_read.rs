//! Any byte string given to the NIfTI reader must give a volume or a typed
//! error: no panic, no hang, no allocation sized by an unchecked header
//! field (libFuzzer's malloc limit turns one into a crash).
#![no_main]

use libfuzzer_sys::fuzz_target;
use warpscope_fuzz::volume::nifti::{self, NonFinite, ReadOptions};

fuzz_target!(|data: &[u8]| {
    // libFuzzer's default malloc limit is 2 GiB: refuse reads beyond 1 GiB.
    let opts = ReadOptions {
        non_finite: NonFinite::Keep,
        max_bytes: Some(1 << 30),
    };
    if let Ok((vol, _)) = nifti::read_bytes(data, "fuzz.nii", opts) {
        // Whatever was read must be self-consistent.
        assert_eq!(vol.data.len(), vol.voxels() * vol.channels);
        let _ = vol.grid.orientation();
    }
});
