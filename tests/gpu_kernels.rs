//! The engine's GPU kernels (WGSL on wgpu; lavapipe where there is no GPU)
//! against the CPU's fused kernels, which the composed tensor path and
//! finite differences check in `engine_gradients.rs`, and against finite
//! differences directly: values, gradients, the Adam step, the affine
//! gradient, and the operations outside the loop (smoothing, resampling,
//! the pyramid step, level changes, the IC weight map).

mod common;

use std::sync::Arc;

use warpscope::gpu::engine::optim::{Dense, Live, Mode, Optim, Problem, sampling_matrix};
use warpscope::gpu::engine::{Buf, Gpu, ops};
use warpscope::register::fused;
use warpscope::register::params::{Pipeline, SimilarityWeights};
use warpscope::register::stages::affine::level_frames;
use warpscope::register::stages::deformable;
use warpscope::register::{self};
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

/// A field (voxels) with sampling points away from integer coordinates
/// (fractional parts in [0.25, 0.75]: trilinear sampling is smooth there).
fn field(seed: u64) -> Vec<f32> {
    common::noise(3 * n(), seed)
        .iter()
        .map(|v| 0.25 + 0.5 * v)
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
#[allow(clippy::too_many_arguments)]
fn evaluate_dense(
    gpu: &Arc<Gpu>,
    fixed: &[f32],
    moving: &[f32],
    c: usize,
    u: &[f32],
    sim: &SimilarityWeights,
    diffusion: f64,
    weight: Option<&[f32]>,
) -> ([f32; 17], Vec<f32>) {
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
        Mode::Dense(Dense::plain(theta(gpu, u), [1.0; 3])),
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

fn volume(data: Vec<f32>, channels: usize) -> Volume {
    Volume::from_data(Grid::new(DIMS, affine::IDENTITY), channels, data).expect("volume")
}

/// Terms and dL/dθ (each direction's 3N values, concatenated) of the
/// composed deformable objective on the CPU: the reference.
fn composed(
    pl: &Pipeline,
    fixed: &Volume,
    moving: &Volume,
    thetas: &[Vec<f32>],
    weights: Option<&[f32]>,
    base: Option<&[f32]>,
) -> (Vec<(String, f64)>, f64, Vec<f32>) {
    let device = burn::tensor::Device::flex();
    let lv = register::levels(
        std::slice::from_ref(fixed),
        std::slice::from_ref(moving),
        None,
        &device,
    );
    let params: Vec<burn::tensor::Tensor<2>> = thetas
        .iter()
        .map(|t| {
            warpscope::register::field::upload(t.clone(), 3, &device)
                .autodiff()
                .require_grad()
        })
        .collect();
    let w = weights.map(|w| warpscope::register::field::upload(w.to_vec(), 1, &device));
    let base = base.map(|b| warpscope::register::field::upload(b.to_vec(), 3, &device));
    let loss = deformable::objective(pl, &lv[0], 0, &params, w.as_ref(), base.as_ref());
    let read = |t: burn::tensor::Tensor<1>| -> f64 {
        f64::from(t.without_autodiff().into_scalar::<f32>())
    };
    let terms: Vec<(String, f64)> = loss
        .terms
        .iter()
        .map(|(name, t)| (name.clone(), read(t.clone().detach())))
        .collect();
    let total = read(loss.total.clone().detach());
    let grads = loss.total.backward();
    let mut grad = Vec::new();
    for p in &params {
        let g = p.grad(&grads).expect("gradient");
        grad.extend(g.into_data().try_into_vec::<f32>().expect("read"));
    }
    (terms, total, grad)
}

/// History index of a composed term's name.
fn history_index(name: &str) -> usize {
    let (base, dir) = match name.strip_suffix("_bwd") {
        Some(b) => (b, 8),
        None => (name, 0),
    };
    let kind = match base {
        "mse" => 0,
        "lncc" => 1,
        "ncc" => 2,
        "mi" => 3,
        "diffusion" => 4,
        "jacobian" => 5,
        "inverse_consistency" => 6,
        other => panic!("no GPU term {other}"),
    };
    1 + kind + dir
}

/// One GPU evaluation of a dense model (learning rate 0) on `images`
/// (fixed, moving, channels), with a held start field `base` if any.
fn gpu_dense(
    gpu: &Arc<Gpu>,
    pl: &Pipeline,
    (fixed, moving, c): (&[f32], &[f32], usize),
    thetas: &[Vec<f32>],
    weights: Option<&[f32]>,
    base: Option<&[f32]>,
) -> ([f32; 17], Vec<f32>) {
    let d = &pl.deformable;
    // Learning rate 0: the parameters stay where they are.
    let mut live = Live::deformable(pl, 0);
    live.reg[2] = 0.0;
    let problem = Problem {
        dims: DIMS,
        fixed: channels(gpu, fixed, c),
        moving: channels(gpu, moving, c),
        weight: weights.map(|w| gpu.upload("weight", w).expect("upload")),
        reg_weight: weights.map(|w| gpu.upload("weight", w).expect("upload")),
    };
    let mut o = Optim::new(
        gpu.clone(),
        &problem,
        &d.sim,
        Mode::Dense(
            Dense::of(pl, thetas.iter().map(|t| theta(gpu, t)).collect(), DIMS)
                .held(base.map(|b| theta(gpu, b))),
        ),
        live,
    )
    .expect("optimiser");
    let rows = o.iterate_quietly(1).expect("iterate");
    (rows[0], o.gradient().expect("gradient"))
}

fn pipeline(sets: &[&str]) -> Pipeline {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Pipeline::preset("fast")
        .expect("preset")
        .with_overrides(&sets)
        .expect("set")
}

/// The field models — a velocity field integrated by scaling and squaring,
/// the Jacobian penalty (on a field that folds), both directions with the
/// inverse-consistency loss, normalised units, IC weights, a held start
/// field (`deformable.start = residual`: sampled and penalised through
/// u + base, diffusion on θ alone) — give the composed path's term values
/// and gradient.
#[test]
fn model_kernels_match_the_composed_path() {
    let gpu = gpu();
    let (fixed, moving) = (image(11, 1), image(12, 1));
    let (fv, mv) = (volume(fixed.clone(), 1), volume(moving.clone(), 1));
    let small = field(13);
    let other: Vec<f32> = field(14).iter().map(|v| -0.8 * v).collect();
    // Large displacements so that some voxels fold.
    let folding: Vec<f32> = common::noise(3 * n(), 15)
        .iter()
        .map(|v| 3.0 * (v - 0.5))
        .collect();
    let w: Vec<f32> = common::noise(n(), 16).iter().map(|v| 0.3 + v).collect();
    let start: Vec<f32> = folding.iter().map(|v| 0.8 * v).collect();
    let svf_mse = vec![
        "deformable.svf=true",
        "deformable.svf_steps=3",
        "deformable.mse=1",
        "deformable.lncc=0",
    ];
    // (name, settings, θ per direction, IC weights, held start)
    type Case<'a> = (
        &'a str,
        Vec<&'a str>,
        Vec<Vec<f32>>,
        Option<&'a [f32]>,
        Option<&'a [f32]>,
    );
    let cases: Vec<Case> = vec![
        ("svf mse", svf_mse.clone(), vec![small.clone()], None, None),
        (
            "jacobian",
            vec![
                "deformable.jacobian=0.5",
                "deformable.mse=1",
                "deformable.lncc=0",
            ],
            vec![folding.clone()],
            None,
            None,
        ),
        (
            "global ncc + mse, IC weights",
            vec![
                "deformable.ncc=0.7",
                "deformable.mse=0.4",
                "deformable.lncc=0",
            ],
            vec![small.clone()],
            Some(&w[..]),
            None,
        ),
        (
            "mutual information, 16 bins",
            vec![
                "deformable.mi=1",
                "deformable.mi_bins=16",
                "deformable.lncc=0",
            ],
            vec![small.clone()],
            None,
            None,
        ),
        (
            "mutual information 32 bins + mse, IC weights",
            vec!["deformable.mi=0.5", "deformable.mse=1", "deformable.lncc=0"],
            vec![small.clone()],
            Some(&w[..]),
            None,
        ),
        (
            "global ncc + lncc",
            vec!["deformable.ncc=1", "deformable.window=5"],
            vec![small.clone()],
            None,
            None,
        ),
        (
            "jacobian, IC weights, lncc",
            vec!["deformable.jacobian=0.5", "deformable.window=3"],
            vec![folding.clone()],
            Some(&w[..]),
            None,
        ),
        (
            "symmetric, inverse consistency, jacobian, lncc",
            vec![
                "deformable.symmetric=true",
                "deformable.inverse_consistency=10",
                "deformable.jacobian=0.1",
                "deformable.window=3",
            ],
            vec![small.clone(), other.clone()],
            None,
            None,
        ),
        (
            "symmetric svf, normalised units",
            vec![
                "deformable.symmetric=true",
                "deformable.inverse_consistency=2",
                "deformable.svf=true",
                "deformable.svf_steps=4",
                "deformable.units=normalized",
                "deformable.mse=1",
                "deformable.lncc=0",
            ],
            vec![
                small.iter().map(|v| v * 0.1).collect(),
                other.iter().map(|v| v * 0.1).collect(),
            ],
            None,
            None,
        ),
        // A held start: the start folds in places, so the Jacobian penalty
        // sees u + base; the diffusion sees θ alone.
        (
            "held start, jacobian, diffusion, lncc",
            vec![
                "deformable.jacobian=0.5",
                "deformable.window=3",
                "deformable.diffusion=2",
            ],
            vec![small.clone()],
            None,
            Some(&start[..]),
        ),
        (
            "held start, svf, mse, IC weights",
            svf_mse.clone(),
            vec![small.clone()],
            Some(&w[..]),
            Some(&small[..]),
        ),
        (
            "held start, symmetric, inverse consistency",
            vec![
                "deformable.symmetric=true",
                "deformable.inverse_consistency=10",
                "deformable.window=3",
            ],
            vec![small.clone(), other.clone()],
            None,
            Some(&other[..]),
        ),
    ];
    for (name, sets, thetas, weights, base) in cases {
        let pl = pipeline(&sets);
        let (terms, total, want) = composed(&pl, &fv, &mv, &thetas, weights, base);
        let (row, got) = gpu_dense(&gpu, &pl, (&fixed, &moving, 1), &thetas, weights, base);
        for (t, v) in &terms {
            let g = f64::from(row[history_index(t)]);
            assert!(
                (g - v).abs() < 2e-4 * v.abs().max(1e-2),
                "{name}: {t}: GPU {g} vs composed {v}"
            );
        }
        assert!(
            (f64::from(row[0]) - total).abs() < 2e-4 * total.abs().max(1e-2),
            "{name}: total GPU {} vs composed {total}",
            row[0]
        );
        let err = max_rel(&got, &want);
        println!("{name}: {terms:?}; gradient max relative error {err:.2e}");
        assert!(err < 2e-3, "{name}: gradient differs by {err}");
    }
}

/// The GPU's dense gradients against central differences of its own loss.
#[test]
fn dense_gradients_match_finite_differences() {
    let gpu = gpu();
    let (fixed, moving) = (image(21, 1), image(22, 1));
    let u = field(23);
    for (name, sets) in [
        ("lncc + diffusion", vec!["deformable.window=3"]),
        (
            "svf mse + jacobian",
            vec![
                "deformable.svf=true",
                "deformable.svf_steps=3",
                "deformable.mse=1",
                "deformable.lncc=0",
                "deformable.jacobian=1",
            ],
        ),
    ] {
        let pl = pipeline(&sets);
        let (_, g) = gpu_dense(
            &gpu,
            &pl,
            (&fixed, &moving, 1),
            std::slice::from_ref(&u),
            None,
            None,
        );
        let h = 1e-2f32;
        for seed in 0..2u64 {
            let d: Vec<f32> = common::noise(u.len(), 200 + seed)
                .iter()
                .map(|v| v - 0.5)
                .collect();
            let at = |s: f32| -> f64 {
                let t: Vec<f32> = u.iter().zip(&d).map(|(a, b)| a + s * b).collect();
                f64::from(gpu_dense(&gpu, &pl, (&fixed, &moving, 1), &[t], None, None).0[0])
            };
            let numeric = (at(h) - at(-h)) / (2.0 * f64::from(h));
            let analytic: f64 = g.iter().zip(&d).map(|(a, b)| f64::from(*a * *b)).sum();
            let scale = numeric.abs().max(analytic.abs()).max(1e-4);
            println!("{name}: analytic {analytic:.6e}, numeric {numeric:.6e}");
            assert!(
                analytic.abs() > 1e-6,
                "{name}: zero gradient proves nothing"
            );
            assert!(
                (numeric - analytic).abs() / scale < 0.03,
                "{name}: analytic {analytic:.6e} vs finite difference {numeric:.6e}"
            );
        }
    }
}

/// The affine gradient dL/dΔ (MSE fused, and local NCC through its box
/// passes) equals the CPU's reduction of its fused kernels' dL/dq, and a
/// finite difference of the GPU's own loss.
#[test]
fn affine_gradient_matches_the_cpu() {
    let gpu = gpu();
    let c = 2;
    let (fixed, moving) = (image(31, c), image(32, c));
    let grid = Grid::new(DIMS, affine::IDENTITY);
    let (into, back) = level_frames(&grid, &grid).expect("invertible");
    let delta = [
        0.0213, -0.0117, 0.0151, 0.0337, 0.0103, -0.0219, 0.0011, -0.0413, 0.0057, 0.0131, 0.0223,
        0.0271,
    ];
    let eval = |sim: &SimilarityWeights, delta: [f64; 12]| {
        let problem = Problem {
            dims: DIMS,
            fixed: channels(&gpu, &fixed, c),
            moving: channels(&gpu, &moving, c),
            weight: None,
            reg_weight: None,
        };
        let mut o = Optim::new(
            gpu.clone(),
            &problem,
            sim,
            Mode::Affine {
                into,
                back,
                delta: Box::new(delta),
            },
            Live::new(sim, 0.0, 0.0, 0.0),
        )
        .expect("optimiser");
        let row = o.iterate_quietly(1).expect("iterate")[0];
        (f64::from(row[0]), o.affine_gradient().expect("gradient"))
    };
    for (name, sim) in [
        ("mse", SimilarityWeights::mse()),
        ("lncc", SimilarityWeights::lncc(3)),
        (
            "ncc",
            SimilarityWeights {
                ncc: 1.0,
                lncc: 0.0,
                ..SimilarityWeights::lncc(3)
            },
        ),
        (
            "mi",
            SimilarityWeights {
                mi: 1.0,
                lncc: 0.0,
                mi_bins: 16,
                ..SimilarityWeights::lncc(3)
            },
        ),
    ] {
        let (value, g) = eval(&sim, delta);
        if sim.ncc > 0.0 || sim.mi > 0.0 {
            // No fused CPU kernel: finite differences only.
            let dir: [f64; 12] = std::array::from_fn(|j| ((j * 7 % 5) as f64 - 2.0) * 0.5);
            let h = 1e-3;
            let shifted = |s: f64| std::array::from_fn(|j| delta[j] + s * dir[j]);
            let numeric = (eval(&sim, shifted(h)).0 - eval(&sim, shifted(-h)).0) / (2.0 * h);
            let analytic: f64 = g.iter().zip(&dir).map(|(a, b)| f64::from(*a) * b).sum();
            println!(
                "{name}: value {value}, directional derivative {analytic:.6e} vs {numeric:.6e}"
            );
            assert!(
                (numeric - analytic).abs() < 0.03 * numeric.abs().max(analytic.abs()).max(1e-4),
                "{name}: analytic {analytic} vs numeric {numeric}"
            );
            continue;
        }
        // CPU: the points, the fused kernels' dL/dq, the reduction.
        let k = sampling_matrix(&into, &back, &delta);
        let mut q = vec![0f32; 3 * n()];
        for i in 0..n() {
            let p = voxel_of(i, DIMS);
            for r in 0..3 {
                q[r * n() + i] =
                    (k[r][0] * p[0] + k[r][1] * p[1] + k[r][2] * p[2] + k[r][3]) as f32;
            }
        }
        let r = if sim.mse > 0.0 {
            fused::mse(&moving, &fixed, c, DIMS, &q, None)
        } else {
            fused::local_ncc(&moving, &fixed, c, DIMS, DIMS, &q, 3, None)
        };
        let mut want = [0f64; 12];
        for i in 0..n() {
            let p = voxel_of(i, DIMS);
            let x: Vec<f64> = (0..3)
                .map(|a| into[a][0] * p[0] + into[a][1] * p[1] + into[a][2] * p[2] + into[a][3])
                .chain([1.0])
                .collect();
            for rr in 0..3 {
                let h: f64 = (0..3)
                    .map(|a| back[a][rr] * f64::from(r.grad[a * n() + i]))
                    .sum();
                for kk in 0..4 {
                    want[rr * 4 + kk] += h * x[kk];
                }
            }
        }
        assert!(
            (value - r.value).abs() < 1e-5 * r.value.max(1e-3),
            "{name}: value GPU {value} CPU {}",
            r.value
        );
        let got: Vec<f32> = g.to_vec();
        let want32: Vec<f32> = want.iter().map(|v| *v as f32).collect();
        let err = max_rel(&got, &want32);
        println!("{name}: dL/dΔ {got:?}\n  CPU {want32:?}\n  max relative error {err:.2e}");
        // Central difference along one direction of Δ.
        let dir: [f64; 12] = std::array::from_fn(|j| ((j * 7 % 5) as f64 - 2.0) * 0.5);
        let h = 1e-3;
        let shifted = |s: f64| std::array::from_fn(|j| delta[j] + s * dir[j]);
        let numeric = (eval(&sim, shifted(h)).0 - eval(&sim, shifted(-h)).0) / (2.0 * h);
        let analytic: f64 = got.iter().zip(&dir).map(|(a, b)| f64::from(*a) * b).sum();
        let cpu: f64 = want.iter().zip(&dir).map(|(a, b)| a * b).sum();
        println!("{name}: directional derivative {analytic:.6e} (CPU {cpu:.6e}) vs {numeric:.6e}");
        assert!(err < 1e-3, "{name}: affine gradient differs by {err}");
        assert!(
            (numeric - analytic).abs() < 0.03 * numeric.abs().max(analytic.abs()).max(1e-4),
            "{name}: analytic {analytic} vs numeric {numeric}"
        );
    }
}

/// Two Adam steps on the GPU equal two steps computed on the CPU from the
/// fused kernels' gradients.
#[test]
fn adam_steps_match_the_cpu() {
    let gpu = gpu();
    let (fixed, moving) = (image(41, 1), image(42, 1));
    let u0 = field(43);
    let (lr, lambda) = (0.05f32, 0.3f32);
    let sim = SimilarityWeights::mse();
    let problem = Problem {
        dims: DIMS,
        fixed: channels(&gpu, &fixed, 1),
        moving: channels(&gpu, &moving, 1),
        weight: None,
        reg_weight: None,
    };
    let th = theta(&gpu, &u0);
    let mut o = Optim::new(
        gpu.clone(),
        &problem,
        &sim,
        Mode::Dense(Dense::plain(th.clone(), [1.0; 3])),
        Live::new(&sim, f64::from(lambda), 0.0, f64::from(lr)),
    )
    .expect("optimiser");
    o.iterate_quietly(2).expect("iterate");
    let got: Vec<f32> = th.iter().flat_map(|b| gpu.read(b).expect("read")).collect();
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut u = u0.clone();
    let (mut m, mut v) = (vec![0f32; u.len()], vec![0f32; u.len()]);
    for t in 1..=2 {
        let mut g = fused::mse(&moving, &fixed, 1, DIMS, &points(&u), None).grad;
        fused::diffusion_into(&u, DIMS, None, lambda, &mut g);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for j in 0..u.len() {
            m[j] = b1 * m[j] + (1.0 - b1) * g[j];
            v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
            u[j] -= lr * (m[j] / c1) / ((v[j] / c2).sqrt() + eps);
        }
    }
    let far = got
        .iter()
        .zip(&u)
        .filter(|(a, b)| (*a - *b).abs() > 1e-4)
        .count();
    let moved = got
        .iter()
        .zip(&u0)
        .filter(|(a, b)| (*a - *b).abs() > 0.05)
        .count();
    println!("{far} of {} components differ by more than 1e-4", u.len());
    assert!(moved > u.len() / 2, "two steps should move most components");
    // Adam normalises each step: a component whose gradient is about zero
    // may step either way; allow a handful.
    assert!(far * 200 < u.len(), "{far} components differ");
}

/// Smoothing, resampling, the pyramid step, level changes, scaling and
/// squaring and the IC weight map equal their CPU counterparts.
#[test]
fn operations_match_the_cpu() {
    let gpu = gpu();
    let grid = Grid::new(
        DIMS,
        affine::mul(
            &affine::IDENTITY,
            &[
                [1.5, 0.0, 0.0, -10.0],
                [0.0, 1.2, 0.1, 4.0],
                [0.0, 0.0, 2.0, 1.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        ),
    );
    let img = Volume::from_data(grid.clone(), 1, image(51, 1)).expect("volume");
    let b = gpu.upload("image", &img.data).expect("upload");
    let close = |what: &str, a: &[f32], b: &[f32], tol: f32| {
        let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        println!("{what}: max difference {err:.2e}");
        assert_eq!(a.len(), b.len(), "{what}: sizes");
        assert!(err < tol, "{what}: differs by {err}");
    };
    for sigma in [1.0, 2.0] {
        let g = ops::blur(&gpu, &b, DIMS, [sigma; 3]).expect("blur");
        let c = gaussian_blur(&img, [sigma; 3]);
        close(
            &format!("blur σ {sigma}"),
            &gpu.read(&g).expect("read"),
            &c.data,
            1e-5,
        );
    }
    let (half, hg) = ops::downsample2(&gpu, &b, &grid, 1.0).expect("downsample");
    let c = downsample2(&img, 1.0);
    assert_eq!(hg.dims, c.grid.dims);
    assert!(warpscope::volume::same_affine(&hg.affine, &c.grid.affine));
    close(
        "pyramid step",
        &gpu.read(&half).expect("read"),
        &c.data,
        1e-5,
    );
    let rot = affine::mul(
        &[
            [0.98, -0.17, 0.02, 1.3],
            [0.17, 0.98, 0.05, -0.7],
            [-0.03, -0.05, 1.01, 0.4],
            [0.0, 0.0, 0.0, 1.0],
        ],
        &affine::IDENTITY,
    );
    for border in [Border::Constant(0.0), Border::Clamp] {
        let g = ops::resample(&gpu, &b, DIMS, DIMS, &rot, border).expect("resample");
        let c = resample_index_map(&img, &grid, &rot, Interp::Linear, border);
        close(
            &format!("resample {border:?}"),
            &gpu.read(&g).expect("read"),
            &c.data,
            1e-4,
        );
    }
    // A field brought to a finer level.
    let u = field(52);
    let th = theta(&gpu, &u);
    let to = [25, 21, 17];
    let to_from = [
        [0.5, 0.0, 0.0, -0.25],
        [0.0, 0.5, 0.0, -0.25],
        [0.0, 0.0, 0.5, -0.25],
    ];
    let vectors = [
        [2.0, 0.0, 0.0, 0.0],
        [0.0, 2.0, 0.0, 0.0],
        [0.0, 0.0, 2.0, 0.0],
    ];
    let r =
        ops::resize(&gpu, &th, DIMS, [1.0; 3], to, [1.0; 3], &to_from, &vectors).expect("resize");
    let got: Vec<f32> = r.iter().flat_map(|b| gpu.read(b).expect("read")).collect();
    let want = fused::resize_field(&u, DIMS, to, &to_from, &vectors);
    close("level change", &got, &want, 1e-4);
    // Scaling and squaring.
    let device = burn::tensor::Device::flex();
    let ident = warpscope::register::field::identity_grid(DIMS, &device);
    let e = ops::exp_field(&gpu, &th, [0.8; 3], DIMS, 4).expect("exp");
    let got: Vec<f32> = e.iter().flat_map(|b| gpu.read(b).expect("read")).collect();
    let v = warpscope::register::field::upload(u.iter().map(|x| x * 0.8).collect(), 3, &device);
    let want = warpscope::register::field::exp_velocity(v, DIMS, ident.clone(), 4)
        .into_data()
        .try_into_vec::<f32>()
        .expect("read");
    close("scaling and squaring", &got, &want, 1e-4);
    // The inverse by fixed-point iteration.
    let got = ops::invert(&gpu, &th, DIMS, 5).expect("invert");
    let got: Vec<f32> = got
        .iter()
        .flat_map(|b| gpu.read(b).expect("read"))
        .collect();
    let want = warpscope::register::field::invert(
        warpscope::register::field::upload(u.clone(), 3, &device),
        DIMS,
        ident.clone(),
        5,
    )
    .into_data()
    .try_into_vec::<f32>()
    .expect("read");
    close("inverse", &got, &want, 1e-4);
    // The IC weight map of two fields, the error counted on a foreground
    // (a slab of the volume).
    let back: Vec<f32> = field(53).iter().map(|x| -0.7 * x).collect();
    let n: usize = DIMS.iter().product();
    let fg: Vec<f32> = (0..n).map(|i| f32::from(i < n / 2)).collect();
    let fg_buf = gpu.upload("foreground", &fg).expect("upload");
    let w = ops::ic_weights(
        &gpu,
        &th,
        &theta(&gpu, &back),
        &fg_buf,
        [1.0; 3],
        DIMS,
        2.0,
        2.0,
    )
    .expect("weights");
    let err = warpscope::register::regularize::round_trip_error(
        warpscope::register::field::upload(u.clone(), 3, &device),
        warpscope::register::field::upload(back, 3, &device),
        DIMS,
        ident,
    )
    .into_data()
    .try_into_vec::<f32>()
    .expect("read");
    let err = Volume::from_data(Grid::new(DIMS, affine::IDENTITY), 1, err).expect("volume");
    let want = warpscope::register::stages::ic::weights_from_error(&err, &fg, 2.0, 2.0);
    close("IC weights", &gpu.read(&w).expect("read"), &want.data, 1e-4);
}

/// A device lost in the middle of a run (simulated by destroying it): the
/// optimiser reports an error instead of panicking, and so does building
/// another one.
#[test]
fn a_lost_device_is_an_error_not_a_crash() {
    let gpu = gpu();
    let (fixed, moving) = (image(61, 1), image(62, 1));
    let sim = SimilarityWeights::lncc(3);
    let problem = Problem {
        dims: DIMS,
        fixed: channels(&gpu, &fixed, 1),
        moving: channels(&gpu, &moving, 1),
        weight: None,
        reg_weight: None,
    };
    let mut o = Optim::new(
        gpu.clone(),
        &problem,
        &sim,
        Mode::Dense(Dense::plain(theta(&gpu, &field(63)), [1.0; 3])),
        Live::new(&sim, 0.3, 0.0, 0.1),
    )
    .expect("optimiser");
    o.iterate_quietly(2).expect("iterations before the loss");
    let th2 = theta(&gpu, &field(64));
    gpu.device.destroy();
    let after = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        o.iterate_quietly(2).map(|_| ())
    }));
    match after {
        Ok(Err(e)) => {
            println!("after the loss: {e}");
            assert!(e.contains("lost"), "the message says what happened: {e}");
        }
        Ok(Ok(())) => panic!("iterations on a destroyed device reported success"),
        Err(_) => panic!("iterations on a destroyed device panicked"),
    }
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Optim::new(
            gpu.clone(),
            &problem,
            &sim,
            Mode::Dense(Dense::plain(th2.clone(), [1.0; 3])),
            Live::new(&sim, 0.3, 0.0, 0.1),
        )
        .map(|_| ())
    }));
    assert!(
        matches!(again, Ok(Err(_))),
        "building on a destroyed device must fail with a message"
    );
}
