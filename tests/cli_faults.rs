//! Faults a user meets on the command line: an output folder that cannot
//! be written, Ctrl-C in the middle of a run, leftovers of a killed run,
//! images that do not overlap, and landmark files the CLI writes and checks.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{QUICK, demo, scaling_disp_vox, scratch_dir, warpscope};
use warpscope::landmarks::formats::{IndexBase, Side, read_set};
use warpscope::volume::nifti::{self, ReadOptions, WriteOptions};

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_unwritable_output_folder_is_refused_before_the_run() {
    let dir = scratch_dir("cli_faults_unwritable");
    let file = dir.join("a_file");
    std::fs::write(&file, b"x").expect("file");
    let out = file.join("results");
    let o = out.to_str().expect("utf-8");
    let (f, m) = (demo("fixed.nii.gz"), demo("moving.nii.gz"));
    let t = Instant::now();
    // The moving image does not exist either: the folder is checked first,
    // so the user learns about it before anything is read or run.
    let (ok, _, err) = warpscope(&[
        "register",
        "--fixed",
        &f,
        "--moving",
        "/nonexistent.nii.gz",
        "--device",
        "cpu",
        "--out",
        o,
    ]);
    assert!(!ok);
    assert!(err.contains("cannot create the output folder"), "{err}");
    assert_eq!(err.matches(o).count(), 1, "the path once: {err}");
    assert!(t.elapsed() < Duration::from_secs(30));
    let _ = m;
}

#[test]
fn a_finished_run_sweeps_leftovers_and_says_where_its_results_are() {
    let out = scratch_dir("cli_faults_summary");
    let o = out.to_str().expect("utf-8");
    // What a killed run leaves: a temporary file of a process that is gone.
    let stale = out.join(".warped.nii.gz.999999999.0.tmp");
    std::fs::write(&stale, vec![0u8; 1000]).expect("stale");
    let (f, m) = (demo("fixed.nii.gz"), demo("moving.nii.gz"));
    let mut args = vec![
        "register", "--fixed", &f, "--moving", &m, "--device", "cpu", "--out", o,
    ];
    args.extend(QUICK);
    let (ok, stdout, err) = warpscope(&args);
    assert!(ok, "{err}");
    assert!(!stale.exists(), "the leftover was not swept");
    assert!(err.contains("removed 1 temporary file"), "{err}");
    assert!(temp_files(&out).is_empty());
    for needle in [
        "completed in",
        "cpu",
        "NCC",
        "det J ≤ 0",
        "results in",
        "run.json",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from: {stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json"))
            .expect("json");
    assert!(
        report["jacobian_scope"]
            .as_str()
            .is_some_and(|s| s.contains("whole fixed grid")),
        "{report}"
    );
}

#[test]
fn ctrl_c_stops_after_an_iteration_and_writes_the_result_cleanly() {
    let out = scratch_dir("cli_faults_sigint");
    let (f, m) = (demo("fixed.nii.gz"), demo("moving.nii.gz"));
    // Long enough that the signal always lands mid-run.
    let mut child = Command::new(env!("CARGO_BIN_EXE_warpscope"))
        .args(["register", "--fixed", &f, "--moving", &m, "--device", "cpu"])
        .args(["--set", "deformable.iterations=5000,5000,5000"])
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until the deformable stage runs (its first progress line).
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let go = line.starts_with("affine:");
                seen.push(line);
                if go {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    assert!(seen.iter().any(|l| l.starts_with("affine:")), "{seen:?}");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sending SIGINT to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    seen.extend(rx.try_iter());
    let text = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(text.contains("interrupted by SIGINT"), "{text}");
    assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).expect("run.json"))
            .expect("json");
    assert_eq!(report["status"], "stopped", "{report}");
    // The result so far is a readable, complete set of files.
    nifti::read_file(out.join("warped.nii.gz"), ReadOptions::default()).expect("warped");
    nifti::read_file(out.join("field_vox.nii.gz"), ReadOptions::default()).expect("field");
}

#[test]
fn images_that_do_not_overlap_are_refused() {
    let dir = scratch_dir("cli_faults_overlap");
    let (mut moved, _) =
        nifti::read_file(demo("moving.nii.gz"), ReadOptions::default()).expect("moving");
    moved.grid.affine[0][3] += 5000.0; // 5 m to the side
    let far = dir.join("far.nii.gz");
    nifti::write_file(&far, &moved, &WriteOptions::default()).expect("write");
    let (f, far) = (
        demo("fixed.nii.gz"),
        far.to_str().expect("utf-8").to_string(),
    );
    let out = dir.join("out");
    let (ok, _, err) = warpscope(&[
        "register",
        "--fixed",
        &f,
        "--moving",
        &far,
        "--device",
        "cpu",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(!ok);
    assert!(
        err.contains("does not overlap") && err.contains("mm apart"),
        "{err}"
    );
    assert!(!out.join("run.json").exists());
    let converted = dir.join("c.nii.gz");
    let (ok, _, err) = warpscope(&[
        "convert",
        &far,
        converted.to_str().expect("utf-8"),
        "--like",
        &f,
    ]);
    assert!(!ok);
    assert!(err.contains("does not overlap"), "{err}");
    assert!(!converted.exists());
}

#[test]
fn eval_writes_landmarks_through_the_result_and_flags_mirrored_ones() {
    let dir = scratch_dir("cli_faults_landmarks");
    let (fixed, _) = nifti::read_file(demo("fixed.nii.gz"), ReadOptions::default()).expect("f");
    let s = 1.05;
    let field = dir.join("scale.nii.gz");
    nifti::write_file(
        &field,
        &scaling_disp_vox(&fixed.grid, s),
        &WriteOptions::default(),
    )
    .expect("field");
    let lm = demo("landmarks.csv");
    let (f, m) = (demo("fixed.nii.gz"), demo("moving.nii.gz"));
    let set = read_set(Path::new(&lm), None, IndexBase::Zero, Side::Fixed).expect("landmarks");
    let centre = warpscope::volume::affine::apply(
        &fixed.grid.affine,
        std::array::from_fn(|a| (fixed.grid.dims[a] as f64 - 1.0) / 2.0),
    );
    for name in ["through.fcsv", "through.mrk.json", "through.csv"] {
        let out = dir.join(name);
        let (ok, _, err) = warpscope(&[
            "eval",
            "--fixed",
            &f,
            "--moving",
            &m,
            "--field",
            field.to_str().expect("utf-8"),
            "--field-kind",
            "disp-vox",
            "--landmarks",
            &lm,
            "--warped-landmarks-out",
            out.to_str().expect("utf-8"),
        ]);
        assert!(ok, "{name}: {err}");
        let side = if name.ends_with(".csv") {
            Side::Moving
        } else {
            Side::Fixed
        };
        let written = read_set(&out, None, IndexBase::Zero, side).expect("read back");
        assert_eq!(written.points.len(), set.points.len(), "{name}");
        for (p, q) in set.points.iter().zip(&written.points) {
            assert_eq!(p.id, q.id);
            for (a, c) in centre.iter().enumerate() {
                let want = c + s * (p.ras_mm[a] - c);
                assert!((q.ras_mm[a] - want).abs() < 1e-3, "{name} {}: {q:?}", p.id);
            }
        }
    }
    // A Slicer file that says RAS but holds LPS coordinates: flagged.
    let mut text = String::from(
        "# Markups fiducial file version = 4.11\n# CoordinateSystem = RAS\n# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n",
    );
    for (n, p) in set.points.iter().enumerate() {
        text += &format!(
            "{n},{},{},{},0,0,0,1,1,1,0,{},,\n",
            -p.ras_mm[0], -p.ras_mm[1], p.ras_mm[2], p.id
        );
    }
    let mirrored = dir.join("mirrored.fcsv");
    std::fs::write(&mirrored, text).expect("write");
    let (_, _, err) = warpscope(&[
        "eval",
        "--fixed",
        &f,
        "--moving",
        &m,
        "--fixed-landmarks",
        mirrored.to_str().expect("utf-8"),
        "--moving-landmarks",
        mirrored.to_str().expect("utf-8"),
    ]);
    assert!(
        err.contains("outside the image") && err.contains("RAS/LPS"),
        "{err}"
    );
}
