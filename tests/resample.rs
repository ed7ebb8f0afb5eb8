//! Resampling through world coordinates, Gaussian smoothing and the pyramid.

mod common;

use common::{noise, shared};
use warpscope::volume::affine::{self, Mat4};
use warpscope::volume::nifti::{self, ReadOptions};
use warpscope::volume::pyramid::{self, gaussian_pyramid, half_grid};
use warpscope::volume::resample::{Border, Interp, resample};
use warpscope::volume::smooth::{gaussian_blur, gaussian_kernel};
use warpscope::volume::{Grid, Volume};

fn oblique() -> Mat4 {
    let (c, s) = (0.3f64.cos(), 0.3f64.sin());
    [
        [1.1 * c, -0.8 * s, 0.05, -20.0],
        [1.1 * s, 0.8 * c, 0.0, 14.0],
        [0.0, 0.1, 1.7, 3.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

fn random_volume(dims: [usize; 3], affine: Mat4, seed: u64) -> Volume {
    let n = dims.iter().product::<usize>();
    Volume::from_data(Grid::new(dims, affine), 2, noise(2 * n, seed)).expect("sizes")
}

/// A volume whose value is an affine function of world position.
fn world_ramp(grid: &Grid) -> Volume {
    let f = |w: [f64; 3]| (0.3 * w[0] - 0.2 * w[1] + 0.5 * w[2] + 7.0) as f32;
    let [nx, ny, nz] = grid.dims;
    let mut data = Vec::with_capacity(grid.voxels());
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                data.push(f(grid.voxel_to_world([x as f64, y as f64, z as f64])));
            }
        }
    }
    Volume::from_data(grid.clone(), 1, data).expect("sizes")
}

#[test]
fn resampling_onto_itself_is_the_identity() {
    let vol = random_volume([13, 11, 9], oblique(), 1);
    for interp in [Interp::Linear, Interp::Nearest] {
        let out = resample(&vol, &vol.grid, interp, Border::Constant(0.0)).expect("resample");
        let max = out
            .data
            .iter()
            .zip(&vol.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-5, "{interp:?}: max difference {max}");
    }
}

#[test]
fn a_translation_of_k_voxels_shifts_by_exactly_k() {
    let vol = random_volume([12, 10, 8], oblique(), 2);
    for (axis, k) in [(0usize, 3i64), (1, -2), (2, 1)] {
        // Target grid: the source grid moved by k voxels along `axis`, so
        // target voxel p sits on source voxel p + k·e_axis.
        let mut target = vol.grid.clone();
        for r in 0..3 {
            target.affine[r][3] += k as f64 * vol.grid.affine[r][axis];
        }
        let out = resample(&vol, &target, Interp::Linear, Border::Constant(0.0)).expect("resample");
        let [nx, ny, nz] = vol.grid.dims;
        for c in 0..2 {
            for z in 0..nz {
                for y in 0..ny {
                    for x in 0..nx {
                        let mut src = [x as i64, y as i64, z as i64];
                        src[axis] += k;
                        let inside =
                            (0..3).all(|a| src[a] >= 0 && src[a] < vol.grid.dims[a] as i64);
                        let expected = if inside {
                            vol.get(c, src[0] as usize, src[1] as usize, src[2] as usize)
                        } else {
                            0.0
                        };
                        let got = out.get(c, x, y, z);
                        assert!(
                            (got - expected).abs() < 1e-5,
                            "axis {axis} k {k} at {x},{y},{z}: {got} vs {expected}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_flipped_and_permuted_copy_resamples_back_exactly() {
    // Store the same image in LPS order with axes permuted (k, i, j): a
    // different orientation of the same world content.
    let ras = random_volume([6, 5, 4], affine::diagonal([2.0, 1.5, 3.0]), 3).extract_channel(0);
    let [nx, ny, nz] = ras.grid.dims;
    // New voxel (a, b, c) = old voxel (nx−1−b, ny−1−c, a): new dims (nz, nx, ny).
    let old = &ras.grid.affine;
    let perm: Mat4 = [
        [0.0, -1.0, 0.0, (nx - 1) as f64],
        [0.0, 0.0, -1.0, (ny - 1) as f64],
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let lps_affine = affine::mul(old, &perm);
    let new_dims = [nz, nx, ny];
    let mut data = vec![0f32; ras.voxels()];
    for c in 0..ny {
        for b in 0..nx {
            for a in 0..nz {
                data[(c * nx + b) * nz + a] = ras.get(0, nx - 1 - b, ny - 1 - c, a);
            }
        }
    }
    let other = Volume::from_data(Grid::new(new_dims, lps_affine), 1, data).expect("sizes");
    assert_eq!(other.grid.orientation(), "SLP");
    let back =
        resample(&other, &ras.grid, Interp::Linear, Border::Constant(0.0)).expect("resample");
    let max = back
        .data
        .iter()
        .zip(&ras.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max < 1e-5, "max difference {max}");
}

#[test]
fn trilinear_reproduces_linear_functions_across_spacing_and_field_of_view() {
    let src = world_ramp(&Grid::new([20, 18, 16], oblique()));
    // A finer, axis-aligned grid inside the source's field of view.
    let mut a = affine::diagonal([0.7, 0.6, 0.9]);
    a[0][3] = -12.0;
    a[1][3] = 12.0;
    a[2][3] = 8.0;
    let target = Grid::new([15, 14, 12], a);
    let out = resample(&src, &target, Interp::Linear, Border::Constant(-1.0)).expect("resample");
    let expected = world_ramp(&target);
    let mut checked = 0;
    for (i, (&got, &want)) in out.data.iter().zip(&expected.data).enumerate() {
        // Only where the point lies inside the source volume.
        let [nx, ny, _] = target.dims;
        let p = target.voxel_to_world([
            (i % nx) as f64,
            ((i / nx) % ny) as f64,
            (i / (nx * ny)) as f64,
        ]);
        let v = src.grid.world_to_voxel(p).expect("invertible");
        if (0..3).all(|k| v[k] >= 0.0 && v[k] <= (src.grid.dims[k] - 1) as f64) {
            assert!((got - want).abs() < 1e-3, "voxel {i}: {got} vs {want}");
            checked += 1;
        } else if (0..3).any(|k| v[k] < -1.0 || v[k] > src.grid.dims[k] as f64) {
            assert_eq!(got, -1.0, "outside the source the border value is used");
        }
    }
    assert!(checked > 500, "only {checked} voxels inside");
}

#[test]
fn nearest_resampling_keeps_label_values() {
    let labels: Vec<f32> = noise(10 * 9 * 8, 4)
        .into_iter()
        .map(|v| (v * 5.0).floor())
        .collect();
    let vol = Volume::from_data(Grid::new([10, 9, 8], oblique()), 1, labels).expect("sizes");
    let mut a = affine::diagonal([0.5, 0.5, 0.5]);
    a[0][3] = -15.0;
    a[1][3] = 10.0;
    a[2][3] = 5.0;
    let out = resample(
        &vol,
        &Grid::new([20, 20, 20], a),
        Interp::Nearest,
        Border::Constant(0.0),
    )
    .expect("resample");
    assert!(
        out.data
            .iter()
            .all(|v| v.fract() == 0.0 && (0.0..5.0).contains(v))
    );
    assert!(out.data.iter().any(|&v| v >= 1.0));
}

#[test]
fn gaussian_smoothing_preserves_constants_and_mass() {
    let k = gaussian_kernel(1.3);
    assert_eq!(k.len(), 2 * 4 + 1);
    assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    let constant = Volume::from_data(Grid::new([9, 8, 7], affine::IDENTITY), 1, vec![3.5; 504])
        .expect("sizes");
    let s = gaussian_blur(&constant, [1.0, 2.0, 0.7]);
    assert!(
        s.data.iter().all(|v| (v - 3.5).abs() < 1e-5),
        "borders renormalised"
    );
    // An impulse spreads with the right variance along x.
    let mut impulse = Volume::filled(Grid::new([41, 1, 1], affine::IDENTITY), 1, 0.0);
    impulse.data[20] = 1.0;
    let s = gaussian_blur(&impulse, [2.0, 0.0, 0.0]);
    // The spread is the kernel's variance, which is σ² to within the effects
    // of sampling and of cutting the kernel at 3σ.
    let var: f32 = s
        .data
        .iter()
        .enumerate()
        .map(|(i, v)| v * (i as f32 - 20.0).powi(2))
        .sum();
    let k2 = gaussian_kernel(2.0);
    let r = (k2.len() / 2) as f32;
    let kernel_var: f32 = k2
        .iter()
        .enumerate()
        .map(|(i, w)| w * (i as f32 - r).powi(2))
        .sum();
    assert!(
        (var - kernel_var).abs() < 1e-4,
        "variance {var} vs kernel {kernel_var}"
    );
    assert!(
        (kernel_var - 4.0).abs() < 0.1,
        "kernel variance {kernel_var}"
    );
}

#[test]
fn pyramid_halves_the_grid_and_keeps_world_position() {
    let grid = Grid::new([21, 16, 9], oblique());
    let ramp = world_ramp(&grid);
    let levels = gaussian_pyramid(&ramp, 3, pyramid::DEFAULT_SIGMA_VOX);
    assert_eq!(levels.len(), 3);
    assert_eq!(levels[1].grid.dims, [11, 8, 5]);
    assert_eq!(levels[2].grid.dims, [6, 4, 3]);
    assert_eq!(
        half_grid(&Grid::new([7, 1, 4], affine::IDENTITY)).dims,
        [4, 1, 2]
    );
    // Same world extent: the box of the coarse grid encloses the same centre.
    for level in &levels[1..] {
        let sp = level.grid.spacing_mm();
        let fine = grid.spacing_mm();
        let factor = (levels[0].grid.dims[0] as f64 / level.grid.dims[0] as f64).round();
        assert!((sp[0] / fine[0] - factor).abs() < 1e-9);
    }
    // Gaussian smoothing and linear sampling keep a linear function linear
    // away from the borders: each coarse voxel holds the ramp at its world position.
    let coarse = &levels[1];
    let expected = world_ramp(&coarse.grid);
    let [nx, ny, nz] = coarse.grid.dims;
    for z in 2..nz - 2 {
        for y in 2..ny - 2 {
            for x in 2..nx - 2 {
                let (g, w) = (coarse.get(0, x, y, z), expected.get(0, x, y, z));
                assert!((g - w).abs() < 1e-3, "({x},{y},{z}): {g} vs {w}");
            }
        }
    }
}

#[test]
fn real_las_volume_resamples_onto_ras_as_an_exact_flip() {
    // The ROBEX head is stored LAS at 1.5 mm. A RAS grid with the same voxel
    // centres must receive exactly the x-reversed samples.
    let (head, _) = nifti::read_file(
        shared("sources/robex_t1_head.nii.gz"),
        ReadOptions::default(),
    )
    .expect("robex");
    assert_eq!(head.grid.orientation(), "LAS");
    let (lo, _) = warpscope::render::geometry::world_bounds(&head.grid);
    let mut a = affine::diagonal([1.5, 1.5, 1.5]);
    for r in 0..3 {
        a[r][3] = lo[r] + 0.75;
    }
    let ras = resample(
        &head,
        &Grid::new(head.grid.dims, a),
        Interp::Linear,
        Border::Constant(0.0),
    )
    .expect("to RAS");
    assert_eq!(ras.grid.orientation(), "RAS");
    let [nx, ny, nz] = head.grid.dims;
    for z in (0..nz).step_by(7) {
        for y in (0..ny).step_by(5) {
            for x in 0..nx {
                let (got, want) = (ras.get(0, x, y, z), head.get(0, nx - 1 - x, y, z));
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "({x},{y},{z}): {got} vs {want}"
                );
            }
        }
    }
}
