//! `warpscope register` as a user runs it: every result file, in the
//! conventions the README states, readable by `warpscope eval`; bad
//! arguments refused with a message.

// Field components and matrix columns are indexed in step.
#![allow(clippy::needless_range_loop)]

mod common;

use common::{QUICK, demo, scratch_dir, warpscope};
use warpscope::metrics::mapping::world_coordinates;
use warpscope::volume::nifti::{ReadOptions, read_file};

#[test]
fn register_writes_every_result_file_consistently() {
    let out = scratch_dir("cli_register");
    let o = out.to_str().expect("utf-8");
    let (f, m) = (demo("fixed.nii.gz"), demo("moving.nii.gz"));
    let mut args = vec![
        "register", "--fixed", &f, "--moving", &m, "--device", "cpu", "--out", o,
    ];
    args.extend(QUICK);
    let (ok, _, err) = warpscope(&args);
    assert!(ok, "{err}");
    assert!(
        err.contains("affine:") && err.contains("deformable:"),
        "stage times on stderr: {err}"
    );
    for file in [
        "warped.nii.gz",
        "field_vox.nii.gz",
        "warp_ants.nii.gz",
        "mapped.nii.gz",
        "jacobian.nii.gz",
        "affine.txt",
        "run.json",
    ] {
        assert!(out.join(file).exists(), "{file} missing");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(report["status"], "completed");
    assert_eq!(report["pipeline"]["preset"], "fast");
    assert_eq!(
        report["pipeline"]["deformable"]["iterations"],
        serde_json::json!([40, 30, 10])
    );
    assert!(
        report["stage_seconds"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    );
    assert!(report["final_terms"]["lncc"].as_f64().is_some());
    // The three field files describe one mapping.
    let (mapped, _) = read_file(out.join("mapped.nii.gz"), ReadOptions::default()).expect("mapped");
    let (vox, _) =
        read_file(out.join("field_vox.nii.gz"), ReadOptions::default()).expect("field_vox");
    let (ants, info) =
        read_file(out.join("warp_ants.nii.gz"), ReadOptions::default()).expect("ants");
    assert_eq!(info.dims.len(), 5, "ANTs fields are 5-D vector images");
    assert_eq!(info.intent_code, warpscope::volume::nifti::INTENT_VECTOR);
    let grid = &mapped.grid;
    let world = world_coordinates(grid);
    let n = grid.voxels();
    let a = grid.affine;
    let mut worst = [0f64; 2];
    for i in 0..n {
        for c in 0..3 {
            let p = world.data[c * n + i] as f64;
            let q = mapped.data[c * n + i] as f64;
            // ANTs: LPS displacement, x and y negated.
            let sign = if c < 2 { -1.0 } else { 1.0 };
            worst[0] = worst[0].max((q - p - sign * ants.data[c * n + i] as f64).abs());
            // Voxel field: moving point = A·(p + u) = world(p) + L·u.
            let lu: f64 = (0..3).map(|k| a[c][k] * vox.data[k * n + i] as f64).sum();
            worst[1] = worst[1].max((q - p - lu).abs());
        }
    }
    assert!(
        worst[0] < 1e-3 && worst[1] < 1e-3,
        "field files disagree by {worst:?} mm"
    );
    let moved = (0..n)
        .map(|i| {
            (0..3)
                .map(|c| (mapped.data[c * n + i] - world.data[c * n + i]).powi(2))
                .sum::<f32>()
        })
        .fold(0f32, f32::max);
    assert!(
        moved.sqrt() > 1.0,
        "the demo pair needs more than a 1 mm shift"
    );
    // eval reads field_vox by its header and scores it like the mapped file.
    let lm = demo("landmarks.csv");
    let tre = |field: &str| {
        let p = out.join(field);
        let (ok, stdout, err) = warpscope(&[
            "eval",
            "--fixed",
            &f,
            "--moving",
            &m,
            "--field",
            p.to_str().expect("utf-8"),
            "--landmarks",
            &lm,
        ]);
        assert!(ok, "{err}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("tre.after_mm.mean"))
            .unwrap_or_else(|| panic!("no TRE line in {stdout}"));
        line.split_whitespace()
            .last()
            .expect("value")
            .parse::<f64>()
            .expect("number")
    };
    let (t_vox, t_mapped) = (tre("field_vox.nii.gz"), tre("mapped.nii.gz"));
    assert!((t_vox - t_mapped).abs() < 1e-3, "TRE {t_vox} vs {t_mapped}");
    println!("demo pair: mean TRE 4.755 mm before, {t_mapped:.3} mm after a quick registration");
    assert!(
        t_mapped < 2.0,
        "mean TRE {t_mapped} mm after registration (4.75 before)"
    );
}

#[test]
fn register_refuses_bad_arguments() {
    let out = scratch_dir("cli_register_bad");
    let o = out.to_str().expect("utf-8");
    let (f, m) = (demo("fixed.nii.gz"), demo("moving.nii.gz"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--set", "deformable.nonsense=3"],
            "unknown parameter 'deformable.nonsense'",
        ),
        (vec!["--set", "deformable.window=0"], "window"),
        // The IC stage is off in `fast`: its values are checked all the same.
        (vec!["--set", "ic.power=-1"], "ic.power"),
        (vec!["--set", "deformable.mi_bins=100000"], "mi_bins"),
        (vec!["--preset", "slow"], "unknown preset 'slow'"),
        (vec!["--device", "tpu"], "unknown device 'tpu'"),
        (vec!["--moving", &m], "one moving file per fixed file"),
        (
            vec!["--fixed-mask", "/nonexistent/mask.nii.gz"],
            "/nonexistent/mask.nii.gz",
        ),
    ];
    for (extra, expect) in cases {
        let mut args = vec![
            "register",
            "--fixed",
            &f[..],
            "--moving",
            &m[..],
            "--out",
            o,
        ];
        if !extra.contains(&"--device") {
            args.extend(["--device", "cpu"]);
        }
        args.extend(extra.iter().copied());
        let (ok, _, err) = warpscope(&args);
        assert!(!ok, "{extra:?} was accepted");
        assert!(
            err.contains(expect),
            "{extra:?}: expected {expect:?} in: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(
        std::fs::read_dir(&out).expect("dir").next().is_none(),
        "refused runs wrote files"
    );
}
