//! Finite-difference checks of every loss and regulariser with respect to
//! the displacement field, on a tiny volume, on the CPU (flex) and GPU
//! (wgpu; lavapipe where there is no GPU) devices.

mod common;

use burn::tensor::{Device, Tensor};
use warpscope::register::field::{self, Dims};
use warpscope::register::{Backend, loss, make_device, regularize};

const DIMS: Dims = [7, 6, 5];

type Loss<'a> = dyn Fn(Tensor<2>) -> Tensor<1> + 'a;

fn n() -> usize {
    DIMS[0] * DIMS[1] * DIMS[2]
}

/// A smooth-ish test image in [0, 1].
fn image(seed: u64, device: &Device) -> Tensor<2> {
    let [nx, ny, _] = DIMS;
    let noise = common::noise(n(), seed);
    let data: Vec<f32> = (0..n())
        .map(|i| {
            let (x, y, z) = (
                (i % nx) as f32,
                ((i / nx) % ny) as f32,
                (i / (nx * ny)) as f32,
            );
            0.5 + 0.25 * (0.9 * x + 0.3 * y).sin() * (0.7 * z + 0.2).cos() + 0.2 * noise[i]
        })
        .collect();
    field::upload(data, 1, device)
}

/// Displacements whose sampling points stay inside the grid and away from
/// integer coordinates (trilinear sampling is smooth only between voxels):
/// fractional parts in [0.25, 0.75].
fn field_values(seed: u64, amplitude: f32) -> Vec<f32> {
    let r = common::noise(3 * n(), seed);
    r.iter()
        .map(|&v| {
            let whole = if amplitude >= 1.0 {
                ((v * 7.0) as i32 % 3 - 1) as f32
            } else {
                0.0
            };
            whole + 0.25 + 0.5 * v
        })
        .collect()
}

fn devices() -> Vec<(&'static str, Device)> {
    let mut d = vec![("cpu", make_device(Backend::Cpu).expect("flex device"))];
    match make_device(Backend::Gpu) {
        Ok(g) => d.push(("gpu", g)),
        Err(e) => {
            panic!("the wgpu device is needed for these tests (install mesa-vulkan-drivers): {e}")
        }
    }
    d
}

/// Compare the autodiff directional derivative of `f` at `u` along random
/// directions with a central difference of step `h` (small enough to stay
/// between the kinks of trilinear sampling and of max(0, ·), large enough
/// for float32).
fn check_h(name: &str, device: &Device, u: &[f32], h: f32, f: &dyn Fn(Tensor<2>) -> Tensor<1>) {
    let base = field::upload(u.to_vec(), 3, device);
    let tracked = base.clone().autodiff().require_grad();
    let value = f(tracked.clone());
    let grads = value.backward();
    let g = tracked
        .grad(&grads)
        .expect("gradient")
        .into_data()
        .try_into_vec::<f32>()
        .expect("read");
    for seed in 0..3u64 {
        let d: Vec<f32> = common::noise(u.len(), 100 + seed)
            .iter()
            .map(|v| v - 0.5)
            .collect();
        let plus: Vec<f32> = u.iter().zip(&d).map(|(a, b)| a + h * b).collect();
        let minus: Vec<f32> = u.iter().zip(&d).map(|(a, b)| a - h * b).collect();
        let fp = f(field::upload(plus, 3, device)).into_scalar::<f32>() as f64;
        let fm = f(field::upload(minus, 3, device)).into_scalar::<f32>() as f64;
        let numeric = (fp - fm) / (2.0 * h as f64);
        let analytic: f64 = g
            .iter()
            .zip(&d)
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum();
        let scale = numeric.abs().max(analytic.abs()).max(1e-4);
        assert!(
            (numeric - analytic).abs() / scale < 0.03,
            "{name}: autodiff {analytic:.6e} vs finite difference {numeric:.6e} (direction {seed})"
        );
        assert!(
            analytic.abs() > 1e-7,
            "{name}: the gradient is zero, the check would prove nothing"
        );
    }
}

fn check(name: &str, device: &Device, u: &[f32], f: &dyn Fn(Tensor<2>) -> Tensor<1>) {
    check_h(name, device, u, 1e-2, f)
}

#[test]
fn similarity_gradients_match_finite_differences() {
    for (dev_name, device) in devices() {
        let moving = image(1, &device);
        let fixed = image(2, &device);
        let grid = field::identity_grid(DIMS, &device);
        let u = field_values(3, 0.5);
        let mask_data: Vec<f32> = common::noise(n(), 9)
            .iter()
            .map(|v| if *v > 0.3 { 1.0 } else { 0.2 })
            .collect();
        let weight = field::upload(mask_data, 1, &device);
        let warp = |u: Tensor<2>| field::warp(moving.clone(), DIMS, u, grid.clone());
        let cases: Vec<(&str, Box<Loss>)> = vec![
            ("mse", Box::new(|u| loss::mse(warp(u), fixed.clone(), None))),
            (
                "mse weighted",
                Box::new(|u| loss::mse(warp(u), fixed.clone(), Some(&weight))),
            ),
            ("ncc", Box::new(|u| loss::ncc(warp(u), fixed.clone(), None))),
            (
                "ncc weighted",
                Box::new(|u| loss::ncc(warp(u), fixed.clone(), Some(&weight))),
            ),
            (
                "lncc 3",
                Box::new(|u| loss::local_ncc(warp(u), fixed.clone(), DIMS, 3, None)),
            ),
            (
                "lncc 5 weighted",
                Box::new(|u| loss::local_ncc(warp(u), fixed.clone(), DIMS, 5, Some(&weight))),
            ),
            (
                "mi",
                Box::new(|u| loss::mutual_information(warp(u), fixed.clone(), 8, None)),
            ),
            (
                "mi weighted",
                Box::new(|u| loss::mutual_information(warp(u), fixed.clone(), 8, Some(&weight))),
            ),
        ];
        for (name, f) in &cases {
            check(&format!("{dev_name} {name}"), &device, &u, f.as_ref());
        }
    }
}

#[test]
fn regulariser_gradients_match_finite_differences() {
    for (dev_name, device) in devices() {
        let grid = field::identity_grid(DIMS, &device);
        let u = field_values(4, 0.5);
        // Large displacements so that some voxels fold (det J < 0).
        let folding: Vec<f32> = field_values(5, 1.0).iter().map(|v| 2.0 * v).collect();
        let v = field::upload(
            field_values(6, 0.5).iter().map(|x| -x).collect(),
            3,
            &device,
        );
        let weight = field::upload(common::noise(n(), 8), 1, &device);
        let dets = regularize::jacobian_det(field::upload(folding.clone(), 3, &device), DIMS)
            .into_data()
            .try_into_vec::<f32>()
            .expect("read");
        assert!(
            dets.iter().any(|d| *d < 0.0),
            "the folding field must fold somewhere"
        );
        check(&format!("{dev_name} diffusion"), &device, &u, &|u| {
            regularize::diffusion(u, DIMS, None)
        });
        check(
            &format!("{dev_name} diffusion weighted"),
            &device,
            &u,
            &|u| regularize::diffusion(u, DIMS, Some(&weight)),
        );
        check_h(
            &format!("{dev_name} jacobian"),
            &device,
            &folding,
            1e-3,
            &|u| regularize::jacobian_penalty(u, DIMS, None),
        );
        check(
            &format!("{dev_name} inverse consistency"),
            &device,
            &u,
            &|u| regularize::inverse_consistency(u, v.clone(), DIMS, grid.clone()),
        );
        let moving = image(7, &device);
        let fixed = image(8, &device);
        check(&format!("{dev_name} svf warp mse"), &device, &u, &|u| {
            let phi = field::exp_velocity(u.mul_scalar(0.5), DIMS, grid.clone(), 3);
            loss::mse(
                field::warp(moving.clone(), DIMS, phi, grid.clone()),
                fixed.clone(),
                None,
            )
        });
    }
}
