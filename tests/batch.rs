//! `warpscope batch` over a dataset folder: shards cover every pair once,
//! the merged table equals the single-machine one, a killed run resumes
//! where it stopped, and merging before every shard has ended is refused.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{scratch_dir, shared, warpscope};

/// Short schedules: the point is the bookkeeping, not the accuracy.
const QUICK: [&str; 8] = [
    "--set",
    "affine.iterations=5",
    "--set",
    "deformable.iterations=10,5,0",
    "--device",
    "cpu",
    "--quiet",
    "--preset",
];

/// A dataset of three pairs: the two shared pairs and the first again
/// under another name (symbolic links to the pair folders).
fn dataset(name: &str) -> PathBuf {
    let dir = scratch_dir(name);
    for (link, target) in [
        ("a_syn", "pairs/brain2mm_syn"),
        ("b_resect", "pairs/brain2mm_resect"),
        ("c_syn_again", "pairs/brain2mm_syn"),
    ] {
        let target = shared(target).canonicalize().expect("shared pair");
        std::os::unix::fs::symlink(target, dir.join(link)).expect("link");
    }
    dir
}

fn batch(data: &Path, out: &Path, extra: &[&str]) -> (bool, String, String) {
    let (d, o) = (data.to_str().expect("utf-8"), out.to_str().expect("utf-8"));
    let mut args = vec!["batch", "--dataset", d, "--out", o];
    args.extend(QUICK);
    args.push("fast");
    args.extend(extra);
    warpscope(&args)
}

fn merge(data: &Path, out: &Path) -> (bool, String, String) {
    let (d, o) = (data.to_str().expect("utf-8"), out.to_str().expect("utf-8"));
    warpscope(&["batch", "--dataset", d, "--out", o, "--merge"])
}

fn shard_of(out: &Path, pair: &str) -> Option<String> {
    let text = std::fs::read_to_string(out.join(pair).join("score.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).expect("score json");
    v["shard"].as_str().map(String::from)
}

fn table(out: &Path) -> String {
    std::fs::read_to_string(out.join("table.csv")).expect("table.csv")
}

#[test]
fn shards_cover_every_pair_once_and_merge_to_the_single_table() {
    let data = dataset("batch_data_shards");
    let (single, sharded) = (scratch_dir("batch_single"), scratch_dir("batch_sharded"));
    let (ok, out, err) = batch(&data, &single, &[]);
    assert!(ok, "{err}");
    let reference = table(&single);
    assert_eq!(
        reference.lines().count(),
        5,
        "header, 3 pairs, mean:\n{reference}"
    );
    assert!(out.contains("a_syn,") && out.contains("mean,"), "{out}");
    let tre: f64 = reference
        .lines()
        .nth(1)
        .expect("row")
        .split(',')
        .nth(1)
        .expect("tre")
        .parse()
        .expect("number");
    assert!(tre < 2.0, "a_syn TRE {tre} (2.24 before)");

    // Shard 1 alone: merging now is refused, naming the missing pairs.
    let (ok, _, err) = batch(&data, &sharded, &["--shard", "1/2"]);
    assert!(ok, "{err}");
    let (ok, _, err) = merge(&data, &sharded);
    assert!(!ok);
    assert!(
        err.contains("a_syn") && err.contains("c_syn_again") && !err.contains("b_resect"),
        "{err}"
    );
    let (ok, _, err) = batch(&data, &sharded, &["--shard", "0/2"]);
    assert!(ok, "{err}");
    // Pair j belongs to shard j mod 2; each was registered by its shard only.
    assert_eq!(shard_of(&sharded, "a_syn").as_deref(), Some("0/2"));
    assert_eq!(shard_of(&sharded, "b_resect").as_deref(), Some("1/2"));
    assert_eq!(shard_of(&sharded, "c_syn_again").as_deref(), Some("0/2"));
    let (ok, _, err) = merge(&data, &sharded);
    assert!(ok, "{err}");
    assert_eq!(table(&sharded), reference, "merged table vs single machine");

    // Other parameters into the same folder are refused, not mixed.
    let (ok, _, err) = batch(&data, &single, &["--set", "deformable.window=3"]);
    assert!(!ok);
    assert!(err.contains("other parameters"), "{err}");
}

#[test]
fn a_killed_batch_resumes_with_the_unfinished_pairs() {
    let data = dataset("batch_data_killed");
    let (reference, out) = (scratch_dir("batch_killed_ref"), scratch_dir("batch_killed"));
    let (ok, _, err) = batch(&data, &reference, &[]);
    assert!(ok, "{err}");
    let mut args: Vec<&str> = vec![
        "batch",
        "--dataset",
        data.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend(QUICK);
    args.push("fast");
    let mut child = Command::new(env!("CARGO_BIN_EXE_warpscope"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start batch");
    // Kill it (SIGKILL: no clean-up at all) once the first pair is finished.
    let t = Instant::now();
    while !out.join("a_syn/score.json").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "the first pair never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    let unfinished = ["b_resect", "c_syn_again"]
        .iter()
        .filter(|p| !out.join(p).join("score.json").exists())
        .count();
    let (ok, _, err) = batch(&data, &out, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("a_syn: finished already"), "{err}");
    assert_eq!(
        err.matches("finished already").count(),
        3 - unfinished,
        "only the unfinished pairs are redone: {err}"
    );
    assert_eq!(table(&out), table(&reference));
}
