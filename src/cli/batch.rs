//! `warpscope batch`: register and score every pair of a dataset folder
//! (the pair-folder protocol of `eval --dataset`), resumably and in shards
//! so that a Slurm job array (or GNU parallel over ssh) spreads a dataset
//! over machines; `--merge` builds the one table from every shard's results.
//!
//! Each pair's results go to `OUT/<pair>/` (the files of `register`, each
//! written atomically) and its score last, to `OUT/<pair>/score.json`: a
//! pair counts as finished only once that file exists, so a killed run
//! leaves no half-counted pair and the next run redoes just that one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde_json::{Value, json};

use super::CliResult;
use super::eval::{load_mapping, pair_folders, table};
use super::interrupt;
use super::register::{RegisterArgs, run as register_run};
use crate::metrics::protocol::{Pair, evaluate};
use crate::register::Pipeline;

/// The file whose presence marks a pair as finished.
pub const SCORE: &str = "score.json";
/// The merged table.
pub const TABLE_FILE: &str = "table.csv";

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// A folder of pair folders (each with a pair.json; see ../shared/data/README.md).
    #[arg(long)]
    pub dataset: PathBuf,
    /// Named preset (default fast).
    #[arg(long)]
    pub preset: Option<String>,
    /// Override a preset parameter (repeatable), as in `register`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// auto (default), gpu or cpu.
    #[arg(long)]
    pub device: Option<String>,
    /// Results folder: one sub-folder per pair, and table.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// This process's share I/N (0 ≤ I < N): the pairs whose position in the
    /// sorted list is I modulo N. In a Slurm array job:
    /// --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with --array=0-(N-1).
    #[arg(long)]
    pub shard: Option<String>,
    /// Only build OUT/table.csv from the finished pairs (after every shard
    /// has ended); refused while any pair is missing.
    #[arg(long)]
    pub merge: bool,
    /// No per-iteration progress.
    #[arg(long)]
    pub quiet: bool,
}

/// `I/N` with 0 ≤ I < N.
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard {s}: expected I/N with 0 ≤ I < N, e.g. 0/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let i: usize = i.trim().parse().map_err(|_| bad())?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A finished pair's score file, if there is one.
fn finished(out: &Path, name: &str) -> Result<Option<Value>, String> {
    let path = out.join(name).join(SCORE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: not a score file ({e})", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

pub fn run(a: &BatchArgs) -> CliResult {
    let pairs = pair_folders(&a.dataset)?;
    if a.merge {
        return merge(a, &pairs);
    }
    let preset = a.preset.as_deref().unwrap_or("fast");
    let pipeline = Pipeline::preset(preset)?.with_overrides(&a.sets)?;
    let wanted = pipeline.to_json();
    let (shard, shards) = match &a.shard {
        Some(s) => parse_shard(s)?,
        None => (0, 1),
    };
    std::fs::create_dir_all(&a.out)
        .map_err(|e| format!("cannot create the results folder {}: {e}", a.out.display()))?;
    interrupt::install();
    let mine: Vec<&PathBuf> = pairs
        .iter()
        .enumerate()
        .filter(|(j, _)| j % shards == shard)
        .map(|(_, p)| p)
        .collect();
    eprintln!(
        "batch: {} of {} pair(s) in shard {shard}/{shards}, preset {preset}, results in {}",
        mine.len(),
        pairs.len(),
        a.out.display()
    );
    let mut failures = Vec::new();
    for (k, dir) in mine.iter().enumerate() {
        let name = name_of(dir);
        if let Some(done) = finished(&a.out, &name)? {
            if done.get("pipeline") != Some(&wanted) {
                return Err(format!(
                    "{}: finished with other parameters than this run's; \
                     use another --out (or delete that folder)",
                    a.out.join(&name).display()
                )
                .into());
            }
            eprintln!("[{}/{}] {name}: finished already", k + 1, mine.len());
            continue;
        }
        eprintln!("[{}/{}] {name}", k + 1, mine.len());
        let started = Instant::now();
        match one_pair(a, preset, dir, &name) {
            Ok(score) => {
                let record = json!({
                    "pair": name,
                    "shard": format!("{shard}/{shards}"),
                    "seconds": started.elapsed().as_secs_f64(),
                    "pipeline": wanted,
                    "report": score,
                });
                crate::results::write_text(
                    &a.out.join(&name).join(SCORE),
                    &serde_json::to_string_pretty(&record)?,
                )?;
            }
            Err(e) => {
                if interrupt::received().is_some() {
                    // Stop the whole batch: the pair is not marked finished.
                    return Err(e);
                }
                eprintln!("warpscope: error: {name}: {e}");
                failures.push(name);
            }
        }
    }
    if shards == 1 {
        merge(a, &pairs)?;
    }
    if !failures.is_empty() {
        return Err(format!(
            "{} of {} pair(s) failed: {}",
            failures.len(),
            mine.len(),
            failures.join(", ")
        )
        .into());
    }
    Ok(())
}

/// Register one pair into OUT/<pair>/ and score it with the shared protocol.
fn one_pair(
    a: &BatchArgs,
    preset: &str,
    dir: &Path,
    name: &str,
) -> Result<Value, Box<dyn std::error::Error>> {
    let pair = Pair::open(dir)?;
    let out = a.out.join(name);
    register_run(&RegisterArgs {
        fixed: vec![pair.fixed.clone()],
        moving: vec![pair.moving.clone()],
        fixed_series: None,
        moving_series: None,
        session: None,
        fixed_mask: None,
        // Both label maps, where the pair has them: a Dice loss may use them.
        fixed_labels: pair
            .fixed_labels
            .clone()
            .filter(|_| pair.moving_labels.is_some()),
        moving_labels: pair
            .moving_labels
            .clone()
            .filter(|_| pair.fixed_labels.is_some()),
        preset: Some(preset.to_string()),
        sets: a.sets.clone(),
        init_model: None,
        device: a.device.clone(),
        out: out.clone(),
        quiet: a.quiet,
    })?;
    let fixed = crate::volume::nifti::read_file(&pair.fixed, Default::default())?.0;
    let mapping = load_mapping(&out.join("mapped.nii.gz"), None, &fixed.grid)?;
    Ok(evaluate(&pair, Some(&mapping))?)
}

/// The table of every pair's score (refused while any is missing), written
/// to OUT/table.csv and printed.
fn merge(a: &BatchArgs, pairs: &[PathBuf]) -> CliResult {
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for dir in pairs {
        let name = name_of(dir);
        match finished(&a.out, &name)? {
            Some(v) => rows.push((name, v["report"].clone())),
            None => missing.push(name),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "{} of {} pair(s) have no result in {} yet: {}; run their shards first",
            missing.len(),
            pairs.len(),
            a.out.display(),
            missing.join(", ")
        )
        .into());
    }
    let text = table(&rows.iter().map(|(n, r)| (n.clone(), r)).collect::<Vec<_>>());
    crate::results::write_text(&a.out.join(TABLE_FILE), &text)?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_shard;

    #[test]
    fn shards_are_checked() {
        assert_eq!(parse_shard("0/4"), Ok((0, 4)));
        assert_eq!(parse_shard("3/4"), Ok((3, 4)));
        for bad in ["4/4", "1/0", "a/2", "2", "-1/3"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }
}
