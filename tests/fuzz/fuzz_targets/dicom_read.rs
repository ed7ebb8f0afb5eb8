//! Any byte string given to the DICOM reader (one object, read as a series
//! of its own) must give a volume or a typed error: no panic, no hang, no
//! allocation beyond libFuzzer's limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warpscope_fuzz::volume::dicom;

fuzz_target!(|data: &[u8]| {
    // libFuzzer's panic hook aborts at once; the reader turns a panic of a
    // third-party codec into an error (as the app does), so the default
    // hook is put back. A panic that escapes the reader still aborts.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| drop(std::panic::take_hook()));
    if let Ok((vol, info)) = dicom::read_bytes(data, "fuzz.dcm", Some(1 << 30)) {
        assert_eq!(vol.data.len(), vol.voxels() * vol.channels);
        assert_eq!(info.slices, vol.grid.dims[2]);
        assert!(vol.data.iter().all(|v| v.is_finite()));
    }
});
