//! The `warpscope` binary as a user runs it.

mod common;

use common::{Nifti1, noise, scratch_dir, shared, warpscope};

#[test]
fn info_describes_the_demo_and_shared_images() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo/fixed.nii.gz");
    let (ok, out, err) = warpscope(&["info", demo]);
    assert!(ok, "{err}");
    for needle in [
        "NIfTI-1 (gzip)",
        "uint8",
        "63 × 79 × 66",
        "2.5000 × 2.5000 × 2.5000 mm",
        "RAS",
        "sform",
        "scaling",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let las = shared("sources/robex_t1_head.nii.gz");
    let (ok, out, err) = warpscope(&["info", "--json", las.to_str().expect("utf-8 path")]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["orientation"], "LAS");
    assert_eq!(v["dims"], serde_json::json!([116, 150, 155]));
    assert_eq!(v["world_source"], "sform");
}

#[test]
fn info_reports_bad_files_by_name_and_fails() {
    let dir = scratch_dir("cli_bad");
    let bad = dir.join("truncated.nii.gz");
    let gz = Nifti1::new_f32([8, 8, 8], &noise(512, 1)).gz_bytes();
    std::fs::write(&bad, &gz[..gz.len() / 2]).expect("write");
    let (ok, _, err) = warpscope(&["info", bad.to_str().expect("utf-8")]);
    assert!(!ok);
    assert!(
        err.contains("truncated.nii.gz") && err.contains("truncated"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn convert_resamples_windows_and_changes_datatype() {
    let dir = scratch_dir("cli_convert");
    let ct = shared("sources/ct_brain.nii.gz");
    // A coarser grid over the same head (the CT lies 1 m above the demo's
    // MRI in world space: resampling onto that one is refused as empty).
    let coarse = dir.join("ct_coarse.nii.gz");
    let (ok, _, err) = warpscope(&[
        "convert",
        ct.to_str().expect("utf-8"),
        coarse.to_str().expect("utf-8"),
        "--downsample",
        "2",
    ]);
    assert!(ok, "{err}");
    let out = dir.join("ct_windows.nii.gz");
    let (ok, _, err) = warpscope(&[
        "convert",
        ct.to_str().expect("utf-8"),
        out.to_str().expect("utf-8"),
        "--ct-windows",
        "--like",
        coarse.to_str().expect("utf-8"),
    ]);
    assert!(ok, "{err}");
    let (ok, info, err) = warpscope(&["info", "--json", out.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&info).expect("json");
    assert_eq!(v["dims"], serde_json::json!([51, 51, 45]));
    assert_eq!(v["spacing_mm"], serde_json::json!([4.0, 4.0, 4.0]));
    assert_eq!(v["channels"], 3);
    for c in 0..3 {
        let max = v["intensity"][c]["max"].as_f64().expect("max");
        assert!(max > 0.1 && max <= 1.0, "channel {c} max {max}");
    }
    let like = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo/fixed.nii.gz");
    let small = dir.join("small_u8.nii");
    let (ok, _, err) = warpscope(&[
        "convert",
        like,
        small.to_str().expect("utf-8"),
        "--downsample",
        "1",
        "--normalize",
        "percentile",
        "--nonzero",
        "--datatype",
        "u8",
    ]);
    assert!(ok, "{err}");
    let (ok, info, err) = warpscope(&["info", "--json", small.to_str().expect("utf-8")]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&info).expect("json");
    assert_eq!(v["dims"], serde_json::json!([32, 40, 33]));
    assert_eq!(v["datatype"], "uint8");
    assert_eq!(v["spacing_mm"], serde_json::json!([5.0, 5.0, 5.0]));
}
