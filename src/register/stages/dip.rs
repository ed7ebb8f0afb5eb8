//! Registration regularised by architecture — a deep image prior
//! ("MIRRBA", methods.md §4; section `dip`).
//!
//! No training set: per pyramid level, coarse to fine, a small network
//! (LapIRN-shaped: an encoder, residual blocks at half resolution, a
//! decoder with a skip connection) is optimised from seeded random weights
//! on the one pair. Its input is the moving image seen through the field
//! so far and the fixed image; its output a stationary velocity field in
//! normalised units, added to the coarser levels' and integrated by
//! scaling and squaring. Loss: similarity + λ_smooth ‖∇v‖² + λ_diffeo
//! mean(max(0, −det J)), Adam on the weights.
//!
//! "Combined" (their best): with a field already there (another stage ran
//! before, e.g. `fast`'s deformable stage), the network's map is composed
//! after it — the field is kept at full resolution and the network
//! optimises a residual on top, so nothing of it is lost to the pyramid.
//!
//! The options the paper ablates are parameters: `levels` (depth 1–4),
//! `sampling` (max-pooling and nearest upsampling, or strided and
//! transposed convolutions) and `residual_blocks` (0 = none).

use burn::tensor::activation::leaky_relu;
use burn::tensor::module::{conv_transpose3d, conv3d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::deformable::resize_params;
use super::{
    Context, Planned, Row, Stage, check_iterations, coarse_to_fine, resize_per_level,
    similarity_rows,
};
use crate::register::field::{self, Dims};
use crate::register::loss::{Sampling, similarity_at, weighted_total};
use crate::register::params::{
    FieldUnits, ParamError, Pipeline, SimilarityWeights, check_rate, check_similarity, check_weight,
};
use crate::register::regularize;
use crate::register::session::{Halt, Loss, Place, Runner};
use crate::register::{Level, level_shift};

/// How the network halves and doubles its resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Downsampling {
    /// Max-pooling down, nearest-neighbour upsampling up (the paper's better choice).
    Pool,
    /// A stride-2 convolution down, a stride-2 transposed convolution up.
    Strided,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DipParams {
    pub enabled: bool,
    /// Pyramid levels, coarsest first (the network's depth, 1–4).
    pub levels: usize,
    /// Adam iterations per level, coarse → fine.
    pub iterations: Vec<usize>,
    /// Adam's learning rate on the weights: one value, or one per level.
    pub lr: Vec<f64>,
    /// Feature channels of the first convolution (twice as many at half
    /// resolution).
    pub features: usize,
    pub residual_blocks: usize,
    pub sampling: Downsampling,
    /// λ_smooth: weight of ‖∇v‖² (v in normalised units).
    pub smoothness: f64,
    /// λ_diffeo: weight of mean(max(0, −det J)) of the map.
    pub jacobian: f64,
    /// Scaling-and-squaring steps.
    pub svf_steps: usize,
    pub sim: SimilarityWeights,
    /// Seed of the weights' initialisation (the same on every device).
    pub seed: u64,
}

impl Default for DipParams {
    /// methods.md §4: 3 levels of 1000 / 1000 / 2000 iterations, Adam 1e-4,
    /// λ_smooth 0.1, λ_diffeo 1.0, NCC (local, window 7), off.
    fn default() -> Self {
        DipParams {
            enabled: false,
            levels: 3,
            iterations: vec![1000, 1000, 2000],
            lr: vec![1e-4],
            features: 8,
            residual_blocks: 2,
            sampling: Downsampling::Pool,
            smoothness: 0.1,
            jacobian: 1.0,
            svf_steps: 7,
            sim: SimilarityWeights::lncc(7),
            seed: 1,
        }
    }
}

/// The stage (section `dip`).
pub struct Dip;

impl Stage for Dip {
    fn key(&self) -> &'static str {
        "dip"
    }

    fn live(&self) -> &'static [&'static str] {
        &["mse", "ncc", "lncc", "mi", "lr", "smoothness", "jacobian"]
    }

    fn title(&self) -> &'static str {
        "deep image prior (a network fitted to this pair)"
    }

    fn runs(&self, p: &Pipeline) -> bool {
        p.dip.enabled
    }

    fn depth(&self, p: &Pipeline) -> usize {
        p.dip.levels
    }

    fn schedule(&self, p: &Pipeline) -> Vec<Planned> {
        coarse_to_fine("dip", &p.dip.iterations)
    }

    fn rows(&self, _p: &Pipeline) -> Vec<Row> {
        let mut rows = vec![
            Row::new(
                "dip.levels",
                "dip levels",
                "Pyramid levels, coarsest first (1–4)",
            ),
            Row::new(
                "dip.iterations",
                "dip iterations",
                "Adam iterations per level, comma-separated, coarse to fine",
            ),
            Row::new(
                "dip.lr",
                "dip lr",
                "Adam's learning rate on the network's weights: one value, or one per level",
            ),
            Row::new(
                "dip.features",
                "features",
                "Channels of the first convolution (twice as many at half resolution)",
            ),
            Row::new(
                "dip.residual_blocks",
                "residual blocks",
                "Residual blocks at half resolution (0 = none)",
            ),
            Row::new(
                "dip.smoothness",
                "smoothness",
                "Weight of ‖∇v‖² (normalised units)",
            ),
            Row::new(
                "dip.jacobian",
                "dip jacobian",
                "Weight of mean(max(0, −det J))",
            ),
            Row::new(
                "dip.svf_steps",
                "dip squarings",
                "Scaling-and-squaring steps (≤ 12)",
            ),
            Row::new("dip.seed", "seed", "Seed of the weights' initialisation"),
            Row::new(
                "dip.sampling",
                "down/up sampling",
                "Max-pooling and upsampling, or strided and transposed convolutions",
            )
            .choices(&["pool", "strided"]),
        ];
        rows.extend(similarity_rows("dip"));
        rows
    }

    fn after_set(&self, p: &mut Pipeline, name: &str) {
        if name == "levels" {
            resize_per_level(&mut p.dip.iterations, p.dip.levels, 100);
        }
    }

    fn validate(&self, p: &Pipeline) -> Result<(), ParamError> {
        let d = &p.dip;
        let err = |m: String| Err(ParamError(m));
        check_similarity("dip", &d.sim, d.enabled)?;
        if !(1..=4).contains(&d.levels) {
            return err(format!("dip.levels = {} must be between 1 and 4", d.levels));
        }
        check_iterations("dip.iterations", &d.iterations, d.levels)?;
        crate::register::params::check_per_level("dip.lr", &d.lr, d.levels)?;
        for &lr in &d.lr {
            check_rate("dip.lr", lr)?;
        }
        if !(1..=64).contains(&d.features) {
            return err(format!(
                "dip.features = {} must be between 1 and 64",
                d.features
            ));
        }
        if d.residual_blocks > 8 {
            return err(format!(
                "dip.residual_blocks = {} must be at most 8",
                d.residual_blocks
            ));
        }
        check_weight("dip.smoothness", d.smoothness)?;
        check_weight("dip.jacobian", d.jacobian)?;
        if !(1..=12).contains(&d.svf_steps) {
            return err(format!(
                "dip.svf_steps = {} must be between 1 and 12",
                d.svf_steps
            ));
        }
        Ok(())
    }

    fn run(&self, ctx: &mut Context) -> Result<(), Halt> {
        let start = ctx.field();
        let parts = ctx.levels();
        let (field, halt) = optimise(parts.runner, parts.levels, start);
        if let Some(u) = field {
            ctx.set_field(u);
        }
        halt.map_or(Ok(()), Err)
    }
}

/// One convolution of the network: `[out, in, k, k, k]` (a transposed one
/// `[in, out, k, k, k]`), with a bias per output channel.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Layer {
    inp: usize,
    out: usize,
    k: usize,
    transposed: bool,
}

impl Layer {
    fn conv(inp: usize, out: usize) -> Layer {
        Layer {
            inp,
            out,
            k: 3,
            transposed: false,
        }
    }

    fn shape(&self) -> [usize; 5] {
        let k = self.k;
        if self.transposed {
            [self.inp, self.out, k, k, k]
        } else {
            [self.out, self.inp, k, k, k]
        }
    }
}

/// The network's layout: its convolutions in the order `forward` uses them.
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    channels: usize,
    features: usize,
    blocks: usize,
    sampling: Downsampling,
}

/// Negative slope of the leaky ReLUs.
const SLOPE: f64 = 0.2;
/// Half-width of the output layer's uniform initialisation: the network
/// starts at (almost) the identity map.
const OUTPUT_INIT: f64 = 1e-5;

impl Net {
    pub fn new(channels: usize, p: &DipParams) -> Net {
        Net {
            channels,
            features: p.features,
            blocks: p.residual_blocks,
            sampling: p.sampling,
        }
    }

    fn layers(&self) -> Vec<Layer> {
        let f = self.features;
        let mut l = vec![Layer::conv(2 * self.channels, f), Layer::conv(f, 2 * f)];
        for _ in 0..self.blocks {
            l.push(Layer::conv(2 * f, 2 * f));
            l.push(Layer::conv(2 * f, 2 * f));
        }
        if self.sampling == Downsampling::Strided {
            l.push(Layer {
                inp: 2 * f,
                out: 2 * f,
                k: 2,
                transposed: true,
            });
        }
        l.push(Layer::conv(3 * f, f));
        l.push(Layer::conv(f, 3));
        l
    }

    /// The shapes of the tensors [`Net::init`] gives, in order.
    pub fn shapes(&self) -> Vec<[usize; 2]> {
        self.layers()
            .iter()
            .flat_map(|l| {
                let s = l.shape();
                [[s[0], s.iter().product::<usize>() / s[0]], [1, l.out]]
            })
            .collect()
    }

    /// Number of trainable values.
    pub fn size(&self) -> usize {
        self.layers()
            .iter()
            .map(|l| l.shape().iter().product::<usize>() + l.out)
            .sum()
    }

    /// Seeded initial weights, as `[out, in·k³]` (transposed: `[in,
    /// out·k³]`) and `[1, out]` tensors: Kaiming-uniform for the leaky
    /// ReLUs, biases 0, the output layer near 0.
    pub fn init(&self, seed: u64, device: &burn::tensor::Device) -> Vec<Tensor<2>> {
        let mut rng = SplitMix(seed);
        let layers = self.layers();
        let last = layers.len() - 1;
        let mut out = Vec::with_capacity(2 * layers.len());
        for (i, l) in layers.iter().enumerate() {
            let s = l.shape();
            let fan_in = (s[1] * l.k * l.k * l.k) as f64;
            let bound = if i == last {
                OUTPUT_INIT
            } else {
                (6.0 / ((1.0 + SLOPE * SLOPE) * fan_in)).sqrt()
            };
            let n: usize = s.iter().product();
            let w: Vec<f32> = (0..n)
                .map(|_| ((rng.unit() * 2.0 - 1.0) * bound) as f32)
                .collect();
            let cols = n / s[0];
            out.push(Tensor::from_data(TensorData::new(w, [s[0], cols]), device));
            out.push(Tensor::zeros([1, l.out], device));
        }
        out
    }

    /// The velocity (normalised units, `[3, N]`) the network gives for
    /// `input` (`[2C, N]` on `dims`).
    pub fn forward(&self, params: &[Tensor<2>], input: Tensor<2>, dims: Dims) -> Tensor<2> {
        let [nx, ny, nz] = dims;
        let even = |n: usize| n + n % 2;
        let [ex, ey, ez] = [even(nx), even(ny), even(nz)];
        let c = input.dims()[0];
        let x: Tensor<5> = input.reshape([1, c, nz, ny, nx]);
        let x = x.pad(
            [(0, 0), (0, 0), (0, ez - nz), (0, ey - ny), (0, ex - nx)],
            burn::tensor::ops::PadMode::Constant(0.0),
        );
        let layers = self.layers();
        let mut k = 0;
        let mut conv = |x: Tensor<5>, stride: usize| -> Tensor<5> {
            let l = layers[k];
            let w: Tensor<5> = params[2 * k].clone().reshape(l.shape());
            let b: Tensor<1> = params[2 * k + 1].clone().reshape([l.out]);
            k += 1;
            if l.transposed {
                conv_transpose3d(
                    x,
                    w,
                    Some(b),
                    ConvTransposeOptions::new([2, 2, 2], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1),
                )
            } else {
                conv3d(
                    x,
                    w,
                    Some(b),
                    ConvOptions::new([stride; 3], [1, 1, 1], [1, 1, 1], 1),
                )
            }
        };
        let e1 = leaky_relu(conv(x, 1), SLOPE);
        let e2 = match self.sampling {
            Downsampling::Pool => leaky_relu(conv(max_pool2(e1.clone()), 1), SLOPE),
            Downsampling::Strided => leaky_relu(conv(e1.clone(), 2), SLOPE),
        };
        let mut r = e2;
        for _ in 0..self.blocks {
            let h = leaky_relu(conv(r.clone(), 1), SLOPE);
            r = leaky_relu(r + conv(h, 1), SLOPE);
        }
        let up = match self.sampling {
            Downsampling::Pool => upsample2(r),
            Downsampling::Strided => conv(r, 2),
        };
        let d = leaky_relu(conv(Tensor::cat(vec![up, e1], 1), 1), SLOPE);
        let v = conv(d, 1);
        let v = v.narrow(2, 0, nz).narrow(3, 0, ny).narrow(4, 0, nx);
        v.reshape([3, nx * ny * nz])
    }
}

/// 2×2×2 max-pooling of `[1, C, D, H, W]` (even sizes).
fn max_pool2(x: Tensor<5>) -> Tensor<5> {
    let [_, c, d, h, w] = x.dims();
    let x: Tensor<5> = x.reshape([c, d, h, w / 2, 2]).max_dim(4);
    let x: Tensor<5> = x.reshape([c, d, h / 2, 2, w / 2]).max_dim(3);
    let x: Tensor<4> = x.reshape([c, d / 2, 2, (h / 2) * (w / 2)]).max_dim(2);
    x.reshape([1, c, d / 2, h / 2, w / 2])
}

/// Nearest-neighbour ×2 upsampling of `[1, C, D, H, W]`.
fn upsample2(x: Tensor<5>) -> Tensor<5> {
    let [_, c, d, h, w] = x.dims();
    let x: Tensor<3> = x.reshape([c * d * h, w, 1]).expand([c * d * h, w, 2]);
    let x: Tensor<4> = x.reshape([c * d, h, 1, 2 * w]).expand([c * d, h, 2, 2 * w]);
    let x: Tensor<4> = x.reshape([c, d, 1, 4 * h * w]).expand([c, d, 2, 4 * h * w]);
    x.reshape([1, c, 2 * d, 2 * h, 2 * w])
}

/// A small seeded generator (SplitMix64): the same weights on every device.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The stage's pyramid levels, coarsest first, among `available`.
fn order(p: &Pipeline, shift: usize, available: usize) -> Vec<usize> {
    let lowest = shift.min(available.saturating_sub(1));
    let count = p.dip.levels.min(available - lowest);
    (lowest..lowest + count).rev().collect()
}

/// What one level's loss needs besides the weights.
pub struct LevelProblem<'a> {
    pub net: &'a Net,
    pub level: &'a Level,
    /// The network's input, `[2C, N]`.
    pub input: Tensor<2>,
    /// The coarser levels' velocity on this level (normalised units).
    pub base: Option<Tensor<2>>,
    /// The field the map is composed after (Combined), voxels of this level.
    pub start: Option<Tensor<2>>,
}

impl LevelProblem<'_> {
    /// The velocity (normalised units) and the map's displacement (voxels).
    pub fn field(&self, pl: &Pipeline, params: &[Tensor<2>]) -> (Tensor<2>, Tensor<2>) {
        let mut v = self
            .net
            .forward(params, self.input.clone(), self.level.dims());
        if let Some(b) = &self.base {
            v = v + b.clone();
        }
        let r = exp_normalised(v.clone(), self.level, pl.dip.svf_steps);
        (v, after(self.start.as_ref(), r, self.level))
    }

    /// The stage's loss for `params`.
    pub fn loss(&self, pl: &Pipeline, params: &[Tensor<2>]) -> Loss {
        let d = &pl.dip;
        let dims = self.level.dims();
        let (v, u) = self.field(pl, params);
        let sampling = Sampling {
            moving: &self.level.moving,
            src: dims,
            points: self.level.identity.clone() + u.clone(),
            host: self.level.hosts(pl.fused),
        };
        let mut terms: Vec<(String, f64, Tensor<1>)> = similarity_at(
            &d.sim,
            sampling,
            &self.level.fixed,
            dims,
            self.level.mask.as_ref(),
        )
        .into_iter()
        .map(|t| (t.name.to_string(), t.weight, t.value))
        .collect();
        if d.smoothness > 0.0 {
            terms.push((
                "smoothness".into(),
                d.smoothness,
                regularize::diffusion(v, dims, None),
            ));
        }
        if d.jacobian > 0.0 {
            terms.push((
                "jacobian".into(),
                d.jacobian,
                regularize::jacobian_penalty(u, dims, None),
            ));
        }
        weighted_total(terms)
    }
}

/// The stage on `lv` (level 0 = the fixed grid), from `start` (voxels on
/// `lv[0]`) if a field is there: the map's displacement on `lv[0]` and how
/// the run ended.
pub fn optimise(
    runner: &mut Runner,
    lv: &[Level],
    start: Option<Tensor<2>>,
) -> (Option<Tensor<2>>, Option<Halt>) {
    let shift = level_shift(&runner.pipeline, &lv[0].grid);
    let order = order(&runner.pipeline, shift, lv.len());
    let nl = order.len();
    let device = runner.device.clone();
    let channels = lv[0].fixed.dims()[0];
    let net = Net::new(channels, &runner.pipeline.dip);
    // The velocity so far (normalised units) and the level it is on.
    let mut velocity: Option<(Tensor<2>, usize)> = None;
    let mut halt = None;
    for (li, &k) in order.iter().enumerate() {
        let level = &lv[k];
        let dims = level.dims();
        let pl = runner.pipeline.clone();
        let base = velocity
            .as_ref()
            .map(|(v, from)| resize_params(FieldUnits::Normalized, v.clone(), &lv[*from], level));
        let start_here = start
            .as_ref()
            .map(|u| resize_params(FieldUnits::Voxel, u.clone(), &lv[0], level));
        // The moving image through the field so far, beside the fixed one.
        let so_far = match &base {
            Some(b) => Some(after(
                start_here.as_ref(),
                exp_normalised(b.clone(), level, pl.dip.svf_steps),
                level,
            )),
            None => start_here.clone(),
        };
        let seen = match so_far {
            Some(u) => field::warp(level.moving.clone(), dims, u, level.identity.clone()),
            None => level.moving.clone(),
        };
        let problem = LevelProblem {
            net: &net,
            level,
            input: Tensor::cat(vec![seen, level.fixed.clone()], 0),
            base,
            start: start_here,
        };
        let mut params = net.init(pl.dip.seed.wrapping_add(li as u64), &device);
        let to_field = |ps: &[Tensor<2>]| problem.field(&pl, ps).1;
        let place = Place {
            stage: "dip",
            level: li,
            levels: nl,
            grid: &level.grid,
            to_field: &to_field,
        };
        let iters = pl.dip.iterations.get(li).copied().unwrap_or(0);
        let r = runner.optimise(
            &place,
            iters,
            &mut params,
            |pl| Pipeline::level_value(&pl.dip.lr, li),
            None,
            |pl, t| problem.loss(pl, t),
        );
        let (v, u) = problem.field(&runner.pipeline, &params);
        // A learning rate too large for the network gives a finite loss on
        // a field that leaves the image: stop, keeping the coarser levels'.
        let reach = u.abs().max().into_scalar::<f32>();
        let size = dims.iter().copied().max().unwrap_or(1) as f32;
        if reach.is_nan() || reach > size {
            halt = Some(Halt::Failed(format!(
                "the network's field diverged at level {} (displacements up to {reach:.0} voxels \
                 on a grid of {size:.0}): stopped, keeping the field from before this level; lower dip.lr",
                li + 1
            )));
            break;
        }
        velocity = Some((v, k));
        if let Err(h) = r {
            halt = Some(h);
            break;
        }
    }
    // The map on the full-resolution grid: the velocity integrated on its
    // level, brought up, then composed after the start there.
    let Some((v, k)) = velocity else {
        return (start, halt);
    };
    let r = exp_normalised(v, &lv[k], runner.pipeline.dip.svf_steps);
    let r = if k == 0 {
        r
    } else {
        resize_params(FieldUnits::Voxel, r, &lv[k], &lv[0])
    };
    (Some(after(start.as_ref(), r, &lv[0])), halt)
}

/// The displacement (voxels of `level`) of exp(v), v in normalised units.
fn exp_normalised(v: Tensor<2>, level: &Level, steps: usize) -> Tensor<2> {
    let dims = level.dims();
    let scale = super::deformable::unit_scale(FieldUnits::Normalized, dims, &v.device());
    field::exp_velocity(v * scale, dims, level.identity.clone(), steps)
}

/// `r` composed with the field `start` where there is one (Combined), on
/// `level`: a point moves by `r`, then by `start` where it lands — the
/// network registers the image as `start` already warps it.
fn after(start: Option<&Tensor<2>>, r: Tensor<2>, level: &Level) -> Tensor<2> {
    match start {
        Some(u0) => field::compose(u0.clone(), r, level.dims(), level.identity.clone()),
        None => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pooling and upsampling keep the layout: a 2×2×2 block's maximum,
    /// and each voxel repeated into its block.
    #[test]
    fn pool_and_upsample_keep_the_layout() {
        let device = burn::tensor::Device::flex();
        let (d, h, w) = (2, 4, 6);
        let data: Vec<f32> = (0..d * h * w).map(|i| i as f32).collect();
        let x: Tensor<5> =
            Tensor::from_data(TensorData::new(data.clone(), [1, 1, d, h, w]), &device);
        let p = max_pool2(x.clone());
        assert_eq!(p.dims(), [1, 1, 1, 2, 3]);
        let got = p.into_data().try_into_vec::<f32>().expect("read");
        // Block (0, j, i) covers z 0–1, y 2j–2j+1, x 2i–2i+1: its maximum is at z 1.
        let want: Vec<f32> = (0..2)
            .flat_map(|j| (0..3).map(move |i| ((h * w) + (2 * j + 1) * w + 2 * i + 1) as f32))
            .collect();
        assert_eq!(got, want);
        let u = upsample2(x);
        assert_eq!(u.dims(), [1, 1, 2 * d, 2 * h, 2 * w]);
        let up = u.into_data().try_into_vec::<f32>().expect("read");
        for z in 0..2 * d {
            for y in 0..2 * h {
                for xx in 0..2 * w {
                    let got = up[(z * 2 * h + y) * 2 * w + xx];
                    assert_eq!(got, data[((z / 2) * h + y / 2) * w + xx / 2]);
                }
            }
        }
    }

    /// The gradient of a weighted sum of the pooled maxima reaches each
    /// block's maximum with that block's weight, and nothing else.
    #[test]
    fn pooling_passes_the_gradient_to_each_maximum() {
        let device = burn::tensor::Device::flex();
        let (d, h, w) = (2, 2, 4);
        // Distinct values, shuffled so that maxima sit anywhere in a block.
        let data: Vec<f32> = (0..d * h * w).map(|i| ((i * 7) % 16) as f32).collect();
        let x: Tensor<5> =
            Tensor::from_data(TensorData::new(data.clone(), [1, 1, d, h, w]), &device);
        let x = x.autodiff().require_grad();
        let weights: Tensor<5> =
            Tensor::from_data(TensorData::new(vec![3f32, 5.0], [1, 1, 1, 1, 2]), &device);
        let loss = (max_pool2(x.clone()) * weights.autodiff()).sum();
        let g = x
            .grad(&loss.backward())
            .expect("gradient")
            .into_data()
            .try_into_vec::<f32>()
            .expect("read");
        for (block, weight) in [(0usize, 3f32), (1, 5.0)] {
            let members: Vec<usize> = (0..d * h * w).filter(|i| (i % w) / 2 == block).collect();
            let argmax = members
                .iter()
                .copied()
                .max_by(|a, b| data[*a].total_cmp(&data[*b]))
                .expect("block");
            for i in members {
                assert_eq!(g[i], if i == argmax { weight } else { 0.0 }, "voxel {i}");
            }
        }
    }

    /// The output layer starts near zero: an untrained network is the identity map.
    #[test]
    fn an_untrained_network_is_almost_the_identity() {
        let device = burn::tensor::Device::flex();
        let p = DipParams::default();
        let dims = [7, 6, 5];
        for sampling in [Downsampling::Pool, Downsampling::Strided] {
            let net = Net::new(
                1,
                &DipParams {
                    sampling,
                    ..p.clone()
                },
            );
            let params = net.init(3, &device);
            assert_eq!(
                params
                    .iter()
                    .map(|t| t.dims()[0] * t.dims()[1])
                    .sum::<usize>(),
                net.size()
            );
            let n = 7 * 6 * 5;
            let input: Vec<f32> = (0..2 * n)
                .map(|i| ((i * 7919) % 101) as f32 / 100.0)
                .collect();
            let input = Tensor::from_data(TensorData::new(input, [2, n]), &device);
            let v = net.forward(&params, input, dims);
            assert_eq!(v.dims(), [3, n]);
            let max = v.abs().max().into_scalar::<f32>();
            assert!(max > 0.0 && max < 1e-3, "{sampling:?}: |v| up to {max}");
        }
    }
}
