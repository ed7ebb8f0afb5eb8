//! Similarity terms on `[C, N]` image tensors: each returns a scalar
//! dissimilarity (lower is better) averaged over channels, optionally
//! weighted per voxel by a `[1, N]` map (a mask, or inverse-consistency
//! weights). With a weight map w, a voxel term t becomes mean(w · t).

mod mi;
mod ncc;

pub use mi::mutual_information;
pub use ncc::{local_ncc, ncc};

use burn::tensor::Tensor;

use super::field::Dims;
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
