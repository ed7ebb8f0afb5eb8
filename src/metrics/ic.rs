//! Inverse-consistency error of a forward and a backward registration.
//!
//! With C_f mapping fixed voxels to moving world points and C_b mapping
//! moving voxels to fixed world points, the error at a fixed voxel x is
//! |C_b(C_f(x)) − x| in mm: zero for a perfectly inverse-consistent pair
//! (methods.md §1 step 5 and §5's ‖Φ_AB ∘ Φ_BA − Id‖).

use super::Mapping;
use crate::volume::Volume;

/// Error map on the fixed grid (mm); NaN where C_f(x) leaves the backward field's grid.
pub fn ic_error(forward: &Mapping, backward: &Mapping) -> Volume {
    let g = forward.grid();
    let n = g.voxels();
    let c = &forward.coords.data;
    let data = (0..n)
        .map(|i| {
            let y = [
                f64::from(c[i]),
                f64::from(c[n + i]),
                f64::from(c[2 * n + i]),
            ];
            let x = g.voxel_to_world(crate::volume::voxel_of(i, g.dims));
            match backward.map_point(y) {
                Some(z) => {
                    (((z[0] - x[0]).powi(2) + (z[1] - x[1]).powi(2) + (z[2] - x[2]).powi(2)).sqrt())
                        as f32
                }
                None => f32::NAN,
            }
        })
        .collect();
    Volume {
        grid: g.clone(),
        channels: 1,
        data,
    }
}
