//! The engine's GPU kernels (WGSL on wgpu; lavapipe where there is no GPU)
//! against the CPU's fused kernels, which the composed tensor path and
//! finite differences check in `engine_gradients.rs`, and against finite
//! differences directly: values, gradients, the Adam step, the affine
//! gradient, and the operations outside the loop (smoothing, resampling,
//! the pyramid step, level changes, the IC weight map).

mod common;

use std::sync::Arc;

use warpscope::gpu::engine::optim::{Live, Mode, Optim, Problem, sampling_matrix};
use warpscope::gpu::engine::{Buf, Gpu, ops};
use warpscope::register::fused;
use warpscope::register::params::SimilarityWeights;
use warpscope::volume::affine;
use warpscope::volume::pyramid::downsample2;
use warpscope::volume::resample::{Border, Interp, resample_index_map};
use warpscope::volume::smooth::gaussian_blur;
use warpscope::volume::{Grid, Volume, voxel_of};

const DIMS: [usize; 3] = [13, 11, 9];

fn gpu() -> Arc<Gpu> {
    let h = warpscope::gpu::headless()
        .expect("a wgpu device (install mesa-vulkan-drivers where there is no GPU)");
    Arc::new(Gpu::new(h.device, h.queue, &h.info).expect("the engine's kernels"))
}

fn n() -> usize {
    DIMS.iter().product()
}

/// A smooth test image in [0, 1] with some noise, `channels` channels.
fn image(seed: u64, channels: usize) -> Vec<f32> {
    let noise = common::noise(n() * channels, seed);
    (0..n() * channels)
        .map(|j| {
            let (c, i) = (j / n(), j % n());
            let p = voxel_of(i, DIMS);
            let (x, y, z) = (p[0] as f32, p[1] as f32, p[2] as f32);
            0.5 + 0.3 * (0.7 * x + 0.4 * y + 0.3 * c as f32).sin() * (0.5 * z + 0.2).cos()
                + 0.1 * noise[j]
        })
        .collect()
}

/// A field (voxels) with sampling points away from integer coordinates.
fn field(seed: u64) -> Vec<f32> {
    common::noise(3 * n(), seed)
        .iter()
        .map(|v| 0.25 + 0.5 * v - 0.5)
        .collect()
}

fn channels(gpu: &Gpu, data: &[f32], c: usize) -> Vec<Buf> {
    (0..c)
        .map(|k| {
            gpu.upload("test image", &data[k * n()..(k + 1) * n()])
                .expect("upload")
        })
        .collect()
}

fn theta(gpu: &Gpu, u: &[f32]) -> [Buf; 3] {
    std::array::from_fn(|a| {
        gpu.upload("test field", &u[a * n()..(a + 1) * n()])
            .expect("upload")
    })
}

fn points(u: &[f32]) -> Vec<f32> {
    let mut q = u.to_vec();
    for i in 0..n() {
        let p = voxel_of(i, DIMS);
        for a in 0..3 {
            q[a * n() + i] += p[a] as f32;
        }
    }
    q
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// One evaluation (learning rate 0): the history row and dL/dθ.
fn evaluate_dense(
    gpu: &Arc<Gpu>,
    fixed: &[f32],
    moving: &[f32],
    c: usize,
    u: &[f32],
    sim: &SimilarityWeights,
    diffusion: f64,
    weight: Option<&[f32]>,
) -> ([f32; 9], Vec<f32>) {
    let problem = Problem {
        dims: DIMS,
        fixed: channels(gpu, fixed, c),
        moving: channels(gpu, moving, c),
        weight: weight.map(|w| gpu.upload("weight", w).expect("upload")),
        reg_weight: None,
    };
    let mut o = Optim::new(
        gpu.clone(),
        &problem,
        sim,
        Mode::Dense {
            theta: theta(gpu, u),
            scale: [1.0; 3],
        },
        Live::new(sim, diffusion, 0.0, 0.0),
    )
    .expect("optimiser");
    let rows = o.iterate_quietly(1).expect("iterate");
    (rows[0], o.gradient().expect("gradient"))
}

/// MSE and local NCC (two channels, a weight map) and diffusion: values and
/// dL/dθ equal the CPU's fused kernels.
#[test]
fn dense_values_and_gradients_match_the_cpu() {
    let gpu = gpu();
    let c = 2;
    let (fixed, moving) = (image(1, c), image(2, c));
    let u = field(3);
    let q = points(&u);
    let w: Vec<f32> = common::noise(n(), 4).iter().map(|v| 0.2 + v).collect();
    for (name, sim, weight) in [
        ("mse", SimilarityWeights::mse(), None),
        ("lncc3", SimilarityWeights::lncc(3), None),
        ("lncc5 weighted", SimilarityWeights::lncc(5), Some(&w[..])),
        (
            "mse + lncc",
            SimilarityWeights {
                mse: 0.7,
                lncc: 0.4,
                ..SimilarityWeights::lncc(3)
            },
            Some(&w[..]),
        ),
    ] {
        let lambda = 0.3;
        let (row, grad) = evaluate_dense(&gpu, &fixed, &moving, c, &u, &sim, lambda, weight);
        let mut want = vec![0f32; 3 * n()];
        let mut total = 0f64;
        let mut terms = Vec::new();
        for (k, wt) in [(0usize, sim.mse), (1, sim.lncc)] {
            if wt == 0.0 {
                continue;
            }
            let r = if k == 0 {
                fused::mse(&moving, &fixed, c, DIMS, &q, weight)
            } else {
                fused::local_ncc(&moving, &fixed, c, DIMS, DIMS, &q, sim.window, weight)
            };
            for (g, v) in want.iter_mut().zip(&r.grad) {
                *g += wt as f32 * v;
            }
            total += wt * r.value;
            terms.push((k, r.value));
        }
        let d = fused::diffusion_into(&u, DIMS, None, lambda as f32, &mut want);
        total += lambda * d;
        for (k, v) in terms {
            assert!(
                (f64::from(row[1 + k]) - v).abs() < 1e-5 * v.abs().max(1.0),
                "{name}: term {k}: GPU {} CPU {v}",
                row[1 + k]
            );
        }
        assert!(
            (f64::from(row[5]) - d).abs() < 1e-5 * d.max(1.0),
            "{name}: diffusion GPU {} CPU {d}",
            row[5]
        );
        assert!(
            (f64::from(row[0]) - total).abs() < 1e-5 * total.abs().max(1.0),
            "{name}: total GPU {} CPU {total}",
            row[0]
        );
        let err = max_rel(&grad, &want);
        println!(
            "{name}: value {:.6}, gradient max relative error {err:.2e}",
            row[0]
        );
        assert!(err < 1e-4, "{name}: gradient differs by {err}");
    }
}
