//! Mutual information from a Parzen-window (Gaussian kernel) joint
//! histogram, differentiable with respect to both images.

use burn::tensor::{Tensor, TensorData};

/// −MI (nats) between `warped` and `fixed`, per channel, averaged. Both
/// images are expected in [0, 1] (the engine normalises its inputs); `bins`
/// Gaussian bins with σ = one bin width. With a weight map each voxel's
/// contribution to the histogram is weighted.
pub fn mutual_information(
    warped: Tensor<2>,
    fixed: Tensor<2>,
    bins: usize,
    weight: Option<&Tensor<2>>,
) -> Tensor<1> {
    let device = warped.device();
    let n = warped.dims()[1];
    let bins = bins.max(2);
    let centres: Vec<f32> = (0..bins).map(|b| b as f32 / (bins - 1) as f32).collect();
    let centres: Tensor<3> = Tensor::from_data(TensorData::new(centres, [1, bins, 1]), &device);
    let sigma = 1.0 / (bins - 1) as f32;
    let parzen = |x: Tensor<2>| -> Tensor<3> {
        // [C, 1, N] − [1, B, 1] → [C, B, N], normalised over bins per voxel.
        let d = x.unsqueeze_dim::<3>(1) - centres.clone();
        let k = d.square().mul_scalar(-0.5 / (sigma * sigma)).exp();
        let s = k.clone().sum_dim(1).add_scalar(1e-10);
        k / s
    };
    let mut pa = parzen(warped);
    let pb = parzen(fixed);
    if let Some(w) = weight {
        pa = pa * w.clone().unsqueeze_dim::<3>(1);
    }
    // Joint histogram [C, B, B] = Pa · Pbᵀ / (total weight).
    let counts = pa.matmul(pb.swap_dims(1, 2));
    let joint = match weight {
        Some(w) => counts / w.clone().sum().add_scalar(1e-10).reshape([1, 1, 1]),
        None => counts.div_scalar(n as f32),
    };
    let marg_a = joint.clone().sum_dim(2);
    let marg_b = joint.clone().sum_dim(1);
    let eps = 1e-10f32;
    let outer = marg_a * marg_b;
    let mi = (joint.clone() * ((joint.add_scalar(eps)).log() - outer.add_scalar(eps).log()))
        .sum_dims(&[1, 2]);
    mi.neg().mean()
}
