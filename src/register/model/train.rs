//! Training the initial-field network on a dataset of pairs (`warpscope
//! train`): unsupervised (similarity of the warped moving image to the
//! fixed one, plus smoothness of the velocity) at every level of the
//! pyramid, optionally supervised by the pairs' true displacement
//! (`gt_disp.nii.gz`, where a pair has one). Adam, one pair per
//! iteration, in a seeded order per epoch, so that a run stopped and
//! resumed from its checkpoint goes on exactly as one that never stopped.
//! After each epoch: the landmark TRE of the predicted field on the
//! validation pairs, and a checkpoint (the weights with Adam's state).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::predict;
use super::{Architecture, Header, Model, OptimiserState};
use crate::landmarks::LandmarkSet;
use crate::landmarks::formats::parse_pair_csv;
use crate::metrics::{FieldKind, Mapping, tre};
use crate::register::adam::Adam;
use crate::register::loss::{Sampling, similarity_at};
use crate::register::params::SimilarityWeights;
use crate::register::{Inputs, Level, prepare, regularize, volume_to_tensor};
use crate::volume::affine;
use crate::volume::nifti::{ReadOptions, read_file};
use crate::volume::resample::{Border, Interp, resample};
use crate::volume::{Grid, Volume};

/// How a model is trained (stored in its header).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub architecture: Architecture,
    pub epochs: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Weight of ‖∇v‖² (v in normalised units), per level.
    pub smoothness: f64,
    /// Weight of the mean squared error (mm², over the image) to the
    /// pair's true displacement, where it has one; 0 = unsupervised.
    pub supervised: f64,
    pub sim: SimilarityWeights,
    /// Seed of the initial weights and of the pairs' order.
    pub seed: u64,
}

/// One pair of the dataset, prepared at the model's levels.
pub struct Pair {
    pub name: String,
    pub levels: Vec<Level>,
    /// The true displacement per level (voxels of that level), if known.
    pub truth: Option<Vec<Tensor<2>>>,
    /// Landmark pairs (fixed, moving), for the validation TRE.
    pub landmarks: Option<(LandmarkSet, LandmarkSet)>,
    /// The fixed image's full-resolution grid.
    pub grid: Grid,
}

/// The pair folders of a dataset: `dir` itself if it holds `fixed.nii.gz`
/// and `moving.nii.gz`, else its subfolders that do, sorted by name.
pub fn find_pairs(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let is_pair = |d: &Path| d.join("fixed.nii.gz").is_file() && d.join("moving.nii.gz").is_file();
    if is_pair(dir) {
        return Ok(vec![dir.to_path_buf()]);
    }
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("dataset {}: cannot be read: {e}", dir.display()))?;
    let mut pairs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_pair(p))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        return Err(format!(
            "dataset {}: no pair folders in it (a pair folder holds fixed.nii.gz and moving.nii.gz, \
             and optionally gt_disp.nii.gz and landmarks.csv)",
            dir.display()
        ));
    }
    Ok(pairs)
}

fn read(path: &Path) -> Result<Volume, String> {
    read_file(path, ReadOptions::default())
        .map(|(v, _)| v)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The true displacement (RAS mm, on the fixed grid) at each level, in
/// that level's voxels (the moving image lies on the fixed grid).
fn truth_at(gt: &Volume, levels: &[Level], device: &Device) -> Result<Vec<Tensor<2>>, String> {
    levels
        .iter()
        .map(|l| {
            let on = if gt.grid.same_as(&l.grid) {
                gt.clone()
            } else {
                resample(gt, &l.grid, Interp::Linear, Border::Clamp).map_err(|e| e.to_string())?
            };
            let inv = affine::inverse(&l.grid.affine)
                .ok_or_else(|| "a level's grid has a singular orientation matrix".to_string())?;
            let n = on.grid.voxels();
            let mut vox = vec![0f32; 3 * n];
            for i in 0..n {
                let u = [
                    on.data[i] as f64,
                    on.data[n + i] as f64,
                    on.data[2 * n + i] as f64,
                ];
                for c in 0..3 {
                    vox[c * n + i] =
                        (inv[c][0] * u[0] + inv[c][1] * u[1] + inv[c][2] * u[2]) as f32;
                }
            }
            Ok(volume_to_tensor(
                &Volume {
                    grid: on.grid.clone(),
                    channels: 3,
                    data: vox,
                },
                device,
            ))
        })
        .collect()
}

/// Read and prepare one pair folder.
pub fn load_pair(dir: &Path, arch: &Architecture, device: &Device) -> Result<Pair, String> {
    let inputs = Inputs {
        fixed: read(&dir.join("fixed.nii.gz"))?,
        moving: read(&dir.join("moving.nii.gz"))?,
        fixed_mask: None,
        labels: None,
    };
    let gt_path = dir.join("gt_disp.nii.gz");
    let truth = if gt_path.is_file() {
        Some(read(&gt_path)?)
    } else {
        None
    };
    let lm_path = dir.join("landmarks.csv");
    let landmarks = if lm_path.is_file() {
        let text =
            std::fs::read_to_string(&lm_path).map_err(|e| format!("{}: {e}", lm_path.display()))?;
        Some(
            parse_pair_csv(&text, "landmarks.csv")
                .map_err(|e| format!("{}: {e}", lm_path.display()))?,
        )
    } else {
        None
    };
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    prepare_pair(&name, &inputs, truth.as_ref(), landmarks, arch, device)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Prepare a pair for training: normalised, at the model's levels, with
/// its true displacement (RAS mm on the fixed grid) at each level.
pub fn prepare_pair(
    name: &str,
    inputs: &Inputs,
    truth: Option<&Volume>,
    landmarks: Option<(LandmarkSet, LandmarkSet)>,
    arch: &Architecture,
    device: &Device,
) -> Result<Pair, String> {
    if inputs.fixed.channels != arch.channels {
        return Err(format!(
            "{} channel(s) per image, the network takes {}",
            inputs.fixed.channels, arch.channels
        ));
    }
    let (fixed, moving, _) = prepare(inputs, true).map_err(|e| e.to_string())?;
    let levels = predict::levels(arch, &fixed, &moving, device);
    let truth = match truth {
        Some(gt) => {
            if gt.channels != 3 || !gt.grid.same_as(&fixed.grid) {
                return Err(
                    "the true displacement must have 3 components on the fixed grid".to_string(),
                );
            }
            Some(truth_at(gt, &levels, device)?)
        }
        None => None,
    };
    Ok(Pair {
        name: name.to_string(),
        levels,
        truth,
        landmarks,
        grid: fixed.grid.clone(),
    })
}

/// The training loss on one pair: per level, similarity + smoothness (+
/// the supervised term), summed over the levels.
pub fn pair_loss(s: &Settings, params: &[Tensor<2>], pair: &Pair) -> Tensor<1> {
    let out = predict::forward(&s.architecture, params, &pair.levels);
    let mut total: Option<Tensor<1>> = None;
    let mut add = |t: Tensor<1>| {
        total = Some(match total.take() {
            Some(a) => a + t,
            None => t,
        })
    };
    for (i, ((v, u), level)) in out.into_iter().zip(&pair.levels).enumerate() {
        let dims = level.dims();
        let sampling = Sampling {
            moving: &level.moving,
            src: dims,
            points: level.identity.clone() + u.clone(),
            host: level.hosts(true),
        };
        for t in similarity_at(&s.sim, sampling, &level.fixed, dims, None) {
            add(t.value.mul_scalar(t.weight as f32));
        }
        if s.smoothness > 0.0 {
            add(regularize::diffusion(v, dims, None).mul_scalar(s.smoothness as f32));
        }
        if s.supervised > 0.0
            && let Some(truth) = &pair.truth
        {
            let sp = level.grid.spacing_mm();
            let mm = Tensor::<2>::from_data(
                burn::tensor::TensorData::new(
                    sp.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                    [3, 1],
                ),
                &u.device(),
            );
            let err = ((u - truth[i].clone()) * mm).square().mean();
            add(err.mul_scalar(s.supervised as f32));
        }
    }
    total.unwrap_or_else(|| Tensor::zeros([1], &pair.levels[0].identity.device()))
}

/// The mean landmark TRE (before, after) of the model's field over the
/// pairs that have landmarks.
pub fn validation_tre(
    arch: &Architecture,
    params: &[Tensor<2>],
    pairs: &[Pair],
) -> Result<Option<(f64, f64)>, String> {
    let mut sums = (0.0, 0.0, 0usize);
    for p in pairs {
        let Some((f, m)) = &p.landmarks else { continue };
        let Some((u, last)) = predict::finest(arch, params, &p.levels) else {
            continue;
        };
        let field = predict::to_grid(u, &last.grid, &p.grid)?;
        let (mapping, _) =
            Mapping::from_field(&field, FieldKind::DispVox, &p.grid).map_err(|e| e.to_string())?;
        let r = tre::tre(f, m, &mapping, None, &|_| false);
        if let (Some(b), Some(a)) = (r.before, r.after) {
            sums = (sums.0 + b.mean, sums.1 + a.mean, sums.2 + 1);
        }
    }
    Ok((sums.2 > 0).then(|| (sums.0 / sums.2 as f64, sums.1 / sums.2 as f64)))
}

/// Where an iteration stands, for a progress bar.
pub struct Progress {
    pub epoch: usize,
    pub epochs: usize,
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
}

/// One epoch's figures (kept in the model's header).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub mean_loss: f64,
    /// Validation TRE (mm) before and after the model's field.
    pub validation: Option<(f64, f64)>,
    pub seconds: f64,
}

/// What the training loop reports to its caller, and asks it.
pub trait Monitor {
    fn step(&mut self, p: &Progress);
    fn epoch(&mut self, r: &EpochReport, checkpoint: &Path);
    /// Whether to stop now (a checkpoint is written first).
    fn stop(&mut self) -> bool;
}

/// How a training run ended.
pub enum Ended {
    Completed(Box<Model>),
    /// Stopped on request after this many epochs and steps; the checkpoint holds it.
    Stopped {
        epoch: usize,
        step: usize,
    },
}

/// The checkpoint beside a model file: `model.wsm` → `model.wsm.ckpt`.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".ckpt");
    PathBuf::from(s)
}

/// The pairs' order in `epoch` (a seeded shuffle).
fn order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut rng = crate::register::stages::dip::SplitMix::new(
        seed ^ (epoch as u64).wrapping_mul(0xA076_1D64_78BD_642F),
    );
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.unit() * (i + 1) as f64) as usize;
        idx.swap(i, j.min(i));
    }
    idx
}

/// The training record kept in the header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub settings: Settings,
    pub dataset: String,
    pub train_pairs: Vec<String>,
    pub validation_pairs: Vec<String>,
    pub epochs: Vec<EpochReport>,
    pub iterations: usize,
    pub seconds: f64,
}

/// A fresh model: seeded initial weights (each level its own seed).
pub fn initial(s: &Settings, device: &Device) -> Vec<Tensor<2>> {
    let net = s.architecture.net();
    (0..s.architecture.levels_mm.len())
        .flat_map(|l| net.init(s.seed.wrapping_add(l as u64), device))
        .collect()
}

fn host(t: &Tensor<2>) -> Result<Vec<f32>, String> {
    t.clone()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| format!("could not read the weights from the device: {e:?}"))
}

/// Train, starting from `resume` (a checkpoint) or from seeded weights;
/// writes `out` (the weights) and its checkpoint after every epoch and
/// when stopped.
pub fn train(
    record: &mut Record,
    train: &[Pair],
    validation: &[Pair],
    resume: Option<&Model>,
    out: &Path,
    device: &Device,
    monitor: &mut dyn Monitor,
) -> Result<Ended, String> {
    let s = record.settings.clone();
    let arch = &s.architecture;
    if train.is_empty() {
        return Err("no training pairs".into());
    }
    let mut loss_sum = resume
        .and_then(|m| m.header.optimiser.as_ref())
        .map_or(0.0, |o| o.epoch_loss_sum);
    let (mut params, mut adams, mut epoch, mut step) = match resume {
        Some(m) => {
            let state = m
                .header
                .optimiser
                .clone()
                .ok_or("the checkpoint holds no optimiser state")?;
            let params = predict::tensors(m, device);
            let moments = m
                .moments
                .as_ref()
                .ok_or("the checkpoint holds no moments")?;
            let adams = moments
                .iter()
                .zip(&m.header.tensors)
                .map(|((a, b), shape)| {
                    let t = |v: &Vec<f32>| {
                        Tensor::from_data(burn::tensor::TensorData::new(v.clone(), *shape), device)
                    };
                    Adam::from_state(t(a), t(b), state.adam_steps)
                })
                .collect::<Vec<Adam>>();
            (params, adams, state.epoch, state.step)
        }
        None => {
            let params = initial(&s, device);
            let adams: Vec<Adam> = params.iter().map(Adam::new).collect();
            (params, adams, 0, 0)
        }
    };
    let save = |params: &[Tensor<2>],
                adams: &[Adam],
                record: &Record,
                epoch: usize,
                step: usize,
                loss_sum: f64|
     -> Result<Model, String> {
        let weights = params.iter().map(host).collect::<Result<Vec<_>, _>>()?;
        let mut moments = Vec::with_capacity(adams.len());
        let mut t = 0;
        for a in adams {
            let (m, v, steps) = a.state();
            moments.push((host(m)?, host(v)?));
            t = steps;
        }
        let model = Model {
            header: Header {
                architecture: arch.clone(),
                tensors: arch.shapes(),
                training: serde_json::to_value(record).unwrap_or_default(),
                optimiser: Some(OptimiserState {
                    epoch,
                    step,
                    adam_steps: t,
                    iterations: record.iterations,
                    epoch_loss_sum: loss_sum,
                }),
            },
            weights,
            moments: Some(moments),
        };
        model.write(&checkpoint_path(out)).map_err(|e| e.0)?;
        Ok(model)
    };
    let started = std::time::Instant::now();
    let seconds_before = record.seconds;
    while epoch < s.epochs {
        let t0 = std::time::Instant::now();
        let ord = order(s.seed, epoch, train.len());
        while step < train.len() {
            if monitor.stop() {
                record.seconds = seconds_before + started.elapsed().as_secs_f64();
                save(&params, &adams, record, epoch, step, loss_sum)?;
                return Ok(Ended::Stopped { epoch, step });
            }
            let pair = &train[ord[step]];
            let tracked: Vec<Tensor<2>> = params
                .iter()
                .map(|p| p.clone().autodiff().require_grad())
                .collect();
            let loss = pair_loss(&s, &tracked, pair);
            let value = loss
                .clone()
                .detach()
                .without_autodiff()
                .into_scalar::<f32>() as f64;
            if !value.is_finite() {
                return Err(format!(
                    "the loss became {value} at epoch {}, pair {} ({}): lower --lr (the last checkpoint is kept)",
                    epoch + 1,
                    step + 1,
                    pair.name
                ));
            }
            let grads = loss.backward();
            for (i, t) in tracked.iter().enumerate() {
                let Some(g) = t.grad(&grads) else { continue };
                params[i] = adams[i].step(params[i].clone(), g.without_autodiff(), s.lr);
            }
            loss_sum += value;
            record.iterations += 1;
            step += 1;
            monitor.step(&Progress {
                epoch,
                epochs: s.epochs,
                step,
                steps: train.len(),
                loss: value,
            });
        }
        let validation = validation_tre(arch, &params, validation)?;
        let report = EpochReport {
            epoch: epoch + 1,
            mean_loss: loss_sum / train.len() as f64,
            validation,
            seconds: t0.elapsed().as_secs_f64(),
        };
        record.epochs.push(report.clone());
        record.seconds = seconds_before + started.elapsed().as_secs_f64();
        epoch += 1;
        step = 0;
        loss_sum = 0.0;
        let model = save(&params, &adams, record, epoch, step, loss_sum)?;
        model.weights_only().write(out).map_err(|e| e.0)?;
        monitor.epoch(&report, &checkpoint_path(out));
    }
    // The last checkpoint's weights and record, without the optimiser's state.
    let model = save(&params, &adams, record, epoch, step, loss_sum)?.weights_only();
    model.write(out).map_err(|e| e.0)?;
    Ok(Ended::Completed(Box::new(model)))
}

/// The architecture and settings `warpscope train` uses unless told
/// otherwise.
pub fn default_settings() -> Settings {
    Settings {
        architecture: Architecture {
            name: super::ARCHITECTURE.into(),
            channels: 1,
            features: 8,
            residual_blocks: 2,
            sampling: crate::register::stages::dip::Downsampling::Pool,
            levels_mm: vec![16.0, 8.0],
            svf_steps: 7,
            output_scale: 0.05,
        },
        epochs: 10,
        lr: 1e-3,
        smoothness: 0.1,
        supervised: 0.0,
        sim: SimilarityWeights::lncc(5),
        seed: 1,
    }
}
