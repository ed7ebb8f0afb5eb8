//! Similarity terms on `[C, N]` image tensors: each returns a scalar
//! dissimilarity (lower is better) averaged over channels, optionally
//! weighted per voxel by a `[1, N]` map (a mask, or inverse-consistency
//! weights). With a weight map w, a voxel term t becomes mean(w · t).

mod mi;
mod ncc;

pub use mi::mutual_information;
pub use ncc::{FLAT_VAR, LOCAL_EPS, local_ncc, ncc};

use burn::tensor::{Tensor, TensorData};

use super::field::{self, Dims, Outside};
use super::fused;
use super::params::SimilarityWeights;

/// Mean squared error, mean over channels and voxels.
pub fn mse(warped: Tensor<2>, fixed: Tensor<2>, weight: Option<&Tensor<2>>) -> Tensor<1> {
    let sq = (warped - fixed).square();
    weighted_mean(sq, weight)
}

/// mean(w · t) over every element of `[C, N]` (w broadcast over channels).
pub fn weighted_mean(t: Tensor<2>, weight: Option<&Tensor<2>>) -> Tensor<1> {
    match weight {
        Some(w) => (t * w.clone()).mean(),
        None => t.mean(),
    }
}

/// One similarity term's value, named for the progress stream.
pub struct Term {
    pub name: &'static str,
    pub weight: f64,
    pub value: Tensor<1>,
}

/// Every similarity term with a non-zero weight.
pub fn similarity_terms(
    sim: &SimilarityWeights,
    warped: &Tensor<2>,
    fixed: &Tensor<2>,
    dims: Dims,
    weight: Option<&Tensor<2>>,
) -> Vec<Term> {
    let mut out = Vec::new();
    if sim.mse > 0.0 {
        out.push(Term {
            name: "mse",
            weight: sim.mse,
            value: mse(warped.clone(), fixed.clone(), weight),
        });
    }
    if sim.ncc > 0.0 {
        out.push(Term {
            name: "ncc",
            weight: sim.ncc,
            value: ncc(warped.clone(), fixed.clone(), weight),
        });
    }
    if sim.lncc > 0.0 {
        out.push(Term {
            name: "lncc",
            weight: sim.lncc,
            value: local_ncc(warped.clone(), fixed.clone(), dims, sim.window, weight),
        });
    }
    if sim.mi > 0.0 {
        out.push(Term {
            name: "mi",
            weight: sim.mi,
            value: mutual_information(warped.clone(), fixed.clone(), sim.mi_bins, weight),
        });
    }
    out
}

/// The moving image and where to sample it; `host` copies of the images
/// select the fused CPU kernels for MSE and local NCC.
pub struct Sampling<'a> {
    pub moving: &'a Tensor<2>,
    pub src: Dims,
    /// `[3, N]` voxel coordinates of the moving grid, one per fixed voxel.
    pub points: Tensor<2>,
    pub host: Option<Hosts<'a>>,
}

/// CPU copies of the images (channel-major, as `Volume::data`).
#[derive(Clone, Copy)]
pub struct Hosts<'a> {
    pub moving: &'a [f32],
    pub fixed: &'a [f32],
}

impl<'a> Hosts<'a> {
    /// The backward direction: the images swap roles.
    pub fn swapped(self) -> Hosts<'a> {
        Hosts {
            moving: self.fixed,
            fixed: self.moving,
        }
    }
}

/// A scalar tensor whose value is `value` and whose gradient with respect
/// to `points` is `grad`: value + Σ g·p − Σ g·detach(p). The last two sums
/// are computed from identical numbers, so they cancel exactly.
pub fn surrogate(points: &Tensor<2>, grad: Vec<f32>, value: f64) -> Tensor<1> {
    let device = points.device();
    let n = points.dims()[1];
    let g: Tensor<2> = Tensor::from_data(TensorData::new(grad, [3, n]), &device);
    let linear = (points.clone() * g.clone()).sum() - (points.clone().detach() * g).sum();
    linear + Tensor::<1>::from_data(TensorData::new(vec![value as f32], [1]), &device)
}

fn host_vec(t: &Tensor<2>) -> Option<Vec<f32>> {
    t.clone()
        .detach()
        .without_autodiff()
        .into_data()
        .try_into_vec::<f32>()
        .ok()
}

/// Every similarity term with a non-zero weight, for `moving` sampled at the
/// given points against `fixed` on a grid of `dims`.
pub fn similarity_at(
    sim: &SimilarityWeights,
    s: Sampling,
    fixed: &Tensor<2>,
    dims: Dims,
    weight: Option<&Tensor<2>>,
) -> Vec<Term> {
    let fused_inputs = s
        .host
        .filter(|_| sim.mse > 0.0 || sim.lncc > 0.0)
        .and_then(|h| Some((h, host_vec(&s.points)?)));
    let Some((host, points)) = fused_inputs else {
        let warped = field::sample_linear(s.moving.clone(), s.src, s.points, Outside::Zero);
        return similarity_terms(sim, &warped, fixed, dims, weight);
    };
    let channels = fixed.dims()[0];
    let w = weight.and_then(host_vec);
    let mut out = Vec::new();
    if sim.mse > 0.0 {
        let r = fused::mse(
            host.moving,
            host.fixed,
            channels,
            s.src,
            &points,
            w.as_deref(),
        );
        out.push(Term {
            name: "mse",
            weight: sim.mse,
            value: surrogate(&s.points, r.grad, r.value),
        });
    }
    if sim.lncc > 0.0 {
        let r = fused::local_ncc(
            host.moving,
            host.fixed,
            channels,
            dims,
            s.src,
            &points,
            sim.window,
            w.as_deref(),
        );
        out.push(Term {
            name: "lncc",
            weight: sim.lncc,
            value: surrogate(&s.points, r.grad, r.value),
        });
    }
    if sim.ncc > 0.0 || sim.mi > 0.0 {
        let rest = SimilarityWeights {
            mse: 0.0,
            lncc: 0.0,
            ..sim.clone()
        };
        let warped = field::sample_linear(s.moving.clone(), s.src, s.points, Outside::Zero);
        out.extend(similarity_terms(&rest, &warped, fixed, dims, weight));
    }
    out
}

/// Σ weight · value, with each term kept for the progress stream.
pub fn weighted_total(terms: Vec<(String, f64, Tensor<1>)>) -> crate::register::session::Loss {
    let mut total: Option<Tensor<1>> = None;
    let mut named = Vec::with_capacity(terms.len());
    for (name, w, v) in terms {
        let t = v.clone().mul_scalar(w as f32);
        total = Some(match total {
            None => t,
            Some(s) => s + t,
        });
        named.push((name, v));
    }
    crate::register::session::Loss {
        total: total.expect("a validated pipeline has at least one similarity term"),
        terms: named,
    }
}

/// Soft Dice loss of one-hot label channels `[K, N]`: 1 − mean over labels
/// of 2 Σ w·f / (Σ w + Σ f) (w the warped moving labels, trilinear, f the
/// fixed ones).
pub fn soft_dice(warped: Tensor<2>, fixed: Tensor<2>) -> Tensor<1> {
    let inter = (warped.clone() * fixed.clone()).sum_dim(1);
    let total = warped.sum_dim(1) + fixed.sum_dim(1);
    let dice = inter.mul_scalar(2.0) / total.add_scalar(1e-6);
    dice.mean().neg().add_scalar(1.0)
}
