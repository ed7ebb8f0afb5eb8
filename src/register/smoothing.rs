//! Smoothing of the gradient and of the field inside the deformable
//! stage's optimiser (FireANTs' `smooth_grad_sigma` / `smooth_warp_sigma`):
//! the gradient is smoothed before each Adam step, the field after it. A
//! dense field then behaves like a Gaussian-parametrised one (the
//! smoothness elastix's B-spline grid gives), without its fixed control
//! grid. The gradient's σ is stated in mm (converted per level and axis:
//! the same physical pooling on 1 mm and 2 mm images), the field's in
//! voxels of the level (it is applied at every iteration, a per-voxel
//! regulariser like the diffusion weight).
//!
//! The Gaussian is approximated by four box passes per axis
//! ([`crate::volume::smooth::box_radii`]): O(1) per voxel whatever σ, and
//! the GPU engine runs the very same passes (`shaders/engine/smooth.wgsl`).

use burn::tensor::{Tensor, TensorData};

use crate::register::params::Pipeline;
use crate::volume::Grid;
use crate::volume::smooth::{BOX_PASSES, box_radii, boxes_in_place};

/// Box radii per axis (x, y, z), [`BOX_PASSES`] passes each.
pub type Radii = [[usize; BOX_PASSES]; 3];

/// The smoothing of one level: radii for the gradient and for the field
/// (`None` = off).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Smoothing {
    pub grad: Option<Radii>,
    pub warp: Option<Radii>,
}

/// σ per axis (voxels) as box radii; `None` when no axis gets a box wider
/// than one voxel.
pub fn radii(sigma_vox: [f64; 3]) -> Option<Radii> {
    let r: Radii = std::array::from_fn(|a| box_radii(sigma_vox[a]));
    r.iter().flatten().any(|&v| v > 0).then_some(r)
}

/// σ in mm as box radii on a grid of `spacing` (mm per voxel along each
/// axis: the same physical width on 1 mm and 2 mm grids); `None` as
/// [`radii`].
pub fn radii_mm(sigma_mm: f64, spacing: [f64; 3]) -> Option<Radii> {
    radii(std::array::from_fn(|a| {
        if spacing[a] > 0.0 {
            sigma_mm / spacing[a]
        } else {
            0.0
        }
    }))
}

impl Smoothing {
    /// The deformable stage's smoothing at level index `li` (0 = coarsest
    /// run) on `grid`.
    pub fn at(pl: &Pipeline, grid: &Grid, li: usize) -> Smoothing {
        let d = &pl.deformable;
        let grad_mm = Pipeline::level_value(&d.smooth_grad_mm, li);
        let warp_vox = Pipeline::level_value(&d.smooth_warp_vox, li);
        Smoothing {
            grad: radii_mm(grad_mm, grid.spacing_mm()),
            warp: radii([warp_vox; 3]),
        }
    }

    pub fn is_off(&self) -> bool {
        self.grad.is_none() && self.warp.is_none()
    }
}

/// Smooth each of the three components of `field` ([3, N] flat) in place.
pub fn field_in_place(radii: &Radii, field: &mut [f32], dims: [usize; 3], scratch: &mut Vec<f32>) {
    let n = dims.iter().product::<usize>();
    for c in field.chunks_mut(n).take(3) {
        boxes_in_place(c, dims, *radii, scratch);
    }
}

/// [`field_in_place`] on a `[3, N]` tensor (through host memory: this
/// serves the composed reference path, not the hot paths).
pub fn tensor(radii: &Radii, t: Tensor<2>, dims: [usize; 3]) -> Tensor<2> {
    let device = t.device();
    let shape = t.dims();
    match t.clone().into_data().try_into_vec::<f32>() {
        Ok(mut v) => {
            field_in_place(radii, &mut v, dims, &mut Vec::new());
            Tensor::from_data(TensorData::new(v, shape), &device)
        }
        Err(_) => t,
    }
}
