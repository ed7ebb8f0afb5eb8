//! What a view shows, as plain values: the composite mode of two images,
//! each image's window and colour map, and the field overlays. Turned into
//! the uniform block of `shaders/composite.wgsl` for one view. Serde lets
//! screenshots (and sessions) record exactly what was drawn.

use serde::{Deserialize, Serialize};

use super::colormap::ColorMap;
use super::geometry::{SliceView, to_wgsl_mat4};
use crate::volume::Grid;
use crate::volume::affine::{self, Mat4};

/// How the two images (A and B) are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// A alone, through its colour map.
    Single,
    /// Tiles of A and B, anchored in world space along the view's axes.
    Checkerboard,
    /// A green, B magenta: grey where they agree (the MIRRBA figures' convention).
    GreenMagenta,
    /// gain·|A − B| of the windowed values, through A's colour map.
    Difference,
    /// (1 − α)·A + α·B.
    Blend,
    /// A and B alternating on a timer.
    Flicker,
    /// A left of a draggable divider, B right of it.
    Swipe,
}

impl Mode {
    pub const ALL: [Mode; 7] = [
        Mode::Single,
        Mode::Checkerboard,
        Mode::GreenMagenta,
        Mode::Difference,
        Mode::Blend,
        Mode::Flicker,
        Mode::Swipe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Single => "single image",
            Mode::Checkerboard => "checkerboard",
            Mode::GreenMagenta => "green–magenta",
            Mode::Difference => "difference",
            Mode::Blend => "blend",
            Mode::Flicker => "flicker",
            Mode::Swipe => "swipe",
        }
    }

    /// Whether the mode shows image B at all.
    pub fn uses_b(self) -> bool {
        self != Mode::Single
    }

    /// The shader's mode number and its parameter.
    fn shader(self, c: &Composite, flicker_shows_b: bool) -> (f32, f32) {
        match self {
            Mode::Single => (0.0, 0.0),
            Mode::Checkerboard => (1.0, c.tile_mm),
            Mode::GreenMagenta => (2.0, 0.0),
            Mode::Difference => (3.0, c.difference_gain),
            Mode::Blend => (4.0, c.blend),
            Mode::Flicker => (4.0, if flicker_shows_b { 1.0 } else { 0.0 }),
            Mode::Swipe => (5.0, c.swipe),
        }
    }
}

/// Composite-mode parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Composite {
    pub mode: Mode,
    /// Checkerboard tile edge (mm).
    pub tile_mm: f32,
    /// Blend: fraction of B.
    pub blend: f32,
    /// Difference: |A − B| is multiplied by this before the colour map.
    pub difference_gain: f32,
    /// Flicker: seconds per image.
    pub flicker_period_s: f32,
    /// Swipe: divider position across the view (0 = left edge, 1 = right edge).
    pub swipe: f32,
    /// Trilinear interpolation (else nearest voxel).
    pub interpolate: bool,
}

impl Default for Composite {
    fn default() -> Self {
        Self {
            mode: Mode::Single,
            tile_mm: 20.0,
            blend: 0.5,
            difference_gain: 1.0,
            flicker_period_s: 0.6,
            swipe: 0.5,
            interpolate: true,
        }
    }
}

/// An image's display: window (low, high in its own units) and colour map.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageStyle {
    pub window: (f32, f32),
    pub colormap: ColorMap,
}

impl Default for ImageStyle {
    fn default() -> Self {
        Self {
            window: (0.0, 1.0),
            colormap: ColorMap::Grey,
        }
    }
}

/// Lines of the deformed regular grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GridOverlay {
    pub on: bool,
    pub spacing_mm: f32,
    pub opacity: f32,
    pub width_px: f32,
    pub colour: [f32; 3],
}

impl Default for GridOverlay {
    fn default() -> Self {
        Self {
            on: false,
            spacing_mm: 5.0,
            opacity: 0.8,
            width_px: 1.0,
            colour: [1.0, 0.85, 0.1],
        }
    }
}

/// Arrows of the in-plane displacement on a lattice of screen cells.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VectorOverlay {
    pub on: bool,
    /// Lattice spacing (screen pixels).
    pub spacing_px: f32,
    /// Arrow length per displacement length (1 = true length on screen).
    pub scale: f32,
    pub opacity: f32,
    pub colour: [f32; 3],
}

impl Default for VectorOverlay {
    fn default() -> Self {
        Self {
            on: false,
            spacing_px: 24.0,
            scale: 1.0,
            opacity: 0.9,
            colour: [0.2, 1.0, 0.4],
        }
    }
}

/// How det J is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JacobianStyle {
    /// Diverging log scale centred on det J = 1, folds in their own colour.
    Log,
    /// methods.md §5: blue positive, white zero, red negative.
    Signed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JacobianOverlay {
    pub on: bool,
    pub style: JacobianStyle,
    pub opacity: f32,
    /// Log style: det J from 1/range to range spans the scale; signed: −range … range.
    pub range: f32,
    /// Colour of folds (det J ≤ 0) in the log style; drawn at least at `fold_alpha`.
    pub fold_colour: [f32; 3],
    pub fold_alpha: f32,
    /// Log style: transparent at det J = 1, opaque at the ends of the scale
    /// (so the anatomy shows where nothing changes).
    pub fade: bool,
}

impl Default for JacobianOverlay {
    fn default() -> Self {
        Self {
            on: false,
            style: JacobianStyle::Log,
            opacity: 0.9,
            range: 1.5,
            fold_colour: [1.0, 1.0, 0.0],
            fold_alpha: 1.0,
            fade: true,
        }
    }
}

/// Inverse-consistency weights w, windowed to t ∈ [0, 1] (by default their
/// own range), drawn as the down-weighting 1 − t through the colour map with
/// alpha growing with it: clear at the highest weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IcOverlay {
    pub on: bool,
    pub opacity: f32,
    pub colormap: ColorMap,
}

impl Default for IcOverlay {
    fn default() -> Self {
        Self {
            on: false,
            opacity: 0.9,
            colormap: ColorMap::Hot,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelOverlay {
    pub on: bool,
    pub opacity: f32,
}

impl Default for LabelOverlay {
    fn default() -> Self {
        Self {
            on: false,
            opacity: 1.0,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Overlays {
    pub grid: GridOverlay,
    pub vectors: VectorOverlay,
    pub jacobian: JacobianOverlay,
    pub ic: IcOverlay,
    pub labels: LabelOverlay,
}

/// What is on the GPU for one frame, by grid (textures live in `GpuScene`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Present<'a> {
    pub a: Option<(&'a Grid, ImageStyle)>,
    pub b: Option<(&'a Grid, ImageStyle)>,
    /// The field's grid (the fixed display grid); det J lives on it too.
    pub field: Option<&'a Grid>,
    pub jacobian: bool,
    /// IC weights' grid and window (their colour map is the overlay's).
    pub ic: Option<(&'a Grid, (f32, f32))>,
    /// Label grid, and whether the labels are in moving space (drawn through the field).
    pub labels: Option<(&'a Grid, bool)>,
    /// Flicker's current phase.
    pub flicker_shows_b: bool,
}

/// `Layer` of composite.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LayerUniform {
    pub to_vox: [[f32; 4]; 4],
    pub dims: [f32; 4],
    pub style: [f32; 4],
}

/// `Params` of composite.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CompositeUniform {
    pub a: LayerUniform,
    pub b: LayerUniform,
    pub ic: LayerUniform,
    pub labels: LayerUniform,
    pub uv_to_world: [[f32; 4]; 4],
    pub world_to_field: [[f32; 4]; 4],
    pub field_to_world: [[f32; 4]; 4],
    pub world_to_px: [[f32; 4]; 4],
    pub field_dims: [f32; 4],
    pub view: [f32; 4],
    pub mode: [f32; 4],
    pub grid: [f32; 4],
    pub grid_colour: [f32; 4],
    pub vectors: [f32; 4],
    pub vector_colour: [f32; 4],
    pub jacobian: [f32; 4],
    pub fold_colour: [f32; 4],
    pub label_opts: [f32; 4],
    pub background: [f32; 4],
}

/// Which parts of the composite shader a view needs; a pipeline is built
/// per combination (the rest is compiled out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Features {
    pub use_b: bool,
    pub grid: bool,
    pub vectors: bool,
    pub jacobian: bool,
    pub ic: bool,
    pub labels: bool,
}

impl Features {
    /// Everything (what the uniform flags alone would select at run time).
    pub const ALL: Features = Features {
        use_b: true,
        grid: true,
        vectors: true,
        jacobian: true,
        ic: true,
        labels: true,
    };

    /// The overridable constants of `composite.wgsl`.
    pub fn constants(self) -> [(&'static str, f64); 6] {
        let f = |b: bool| if b { 1.0 } else { 0.0 };
        [
            ("USE_B", f(self.use_b)),
            ("GRID", f(self.grid)),
            ("VECTORS", f(self.vectors)),
            ("JACOBIAN", f(self.jacobian)),
            ("IC", f(self.ic)),
            ("LABELS", f(self.labels)),
        ]
    }
}

fn dims4(grid: &Grid) -> [f32; 4] {
    [
        grid.dims[0] as f32,
        grid.dims[1] as f32,
        grid.dims[2] as f32,
        1.0,
    ]
}

fn rgb4(c: [f32; 3], a: f32) -> [f32; 4] {
    [c[0], c[1], c[2], a]
}

fn flag(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

/// The linear part of an affine as a 4×4 with no translation.
fn linear(m: &Mat4) -> Mat4 {
    let mut l = *m;
    for r in 0..3 {
        l[r][3] = 0.0;
    }
    l
}

/// World mm vector → view pixels (x right, y down), from the uv → world map
/// whose u and v columns are orthogonal (views are world-aligned).
pub fn world_to_px(uv_to_world: &Mat4, size_px: [f64; 2]) -> Mat4 {
    let mut m = [[0.0; 4]; 4];
    for (row, (col, size)) in [(0, size_px[0]), (1, size_px[1])].into_iter().enumerate() {
        let c = [
            uv_to_world[0][col],
            uv_to_world[1][col],
            uv_to_world[2][col],
        ];
        let n2 = c.iter().map(|v| v * v).sum::<f64>().max(1e-30);
        for k in 0..3 {
            m[row][k] = size * c[k] / n2;
        }
    }
    m[3][3] = 1.0;
    m
}

impl CompositeUniform {
    /// The uniforms for drawing `view` into a viewport of `size_px`.
    /// `None` when an image's world matrix is singular.
    pub fn new(
        view: &SliceView,
        size_px: [f64; 2],
        present: &Present,
        composite: &Composite,
        overlays: &Overlays,
    ) -> Option<Self> {
        let uv_to_world = view.uv_to_world(size_px);
        let image = |img: Option<(&Grid, ImageStyle)>| -> Option<LayerUniform> {
            Some(match img {
                Some((grid, style)) => LayerUniform {
                    to_vox: to_wgsl_mat4(&view.uv_to_voxel(grid, size_px)?),
                    dims: dims4(grid),
                    style: [
                        style.window.0,
                        style.window.1,
                        style.colormap.row() as f32,
                        1.0,
                    ],
                },
                None => LayerUniform::default_absent(),
            })
        };
        let a = image(present.a)?;
        let b = image(present.b)?;
        let ic = match present.ic {
            Some((grid, window)) if overlays.ic.on => LayerUniform {
                style: [
                    window.0,
                    window.1,
                    overlays.ic.colormap.row() as f32,
                    overlays.ic.opacity,
                ],
                ..image(Some((grid, ImageStyle::default())))?
            },
            _ => LayerUniform::default_absent(),
        };
        let (labels, through_field) = match present.labels {
            Some((grid, moving)) if overlays.labels.on => (
                LayerUniform {
                    to_vox: to_wgsl_mat4(&affine::inverse(&grid.affine)?),
                    dims: dims4(grid),
                    style: [0.0; 4],
                },
                moving && present.field.is_some(),
            ),
            _ => (LayerUniform::default_absent(), false),
        };
        let (world_to_field, field_to_world, field_dims) = match present.field {
            Some(g) => (affine::inverse(&g.affine)?, linear(&g.affine), dims4(g)),
            None => (affine::IDENTITY, affine::IDENTITY, [1.0, 1.0, 1.0, 0.0]),
        };
        let (h, v) = view.plane.in_plane_axes();
        let (mode, param) = composite.mode.shader(composite, present.flicker_shows_b);
        let g = &overlays.grid;
        let vec = &overlays.vectors;
        let j = &overlays.jacobian;
        Some(Self {
            a,
            b: if composite.mode.uses_b() {
                b
            } else {
                LayerUniform::default_absent()
            },
            ic,
            labels,
            uv_to_world: to_wgsl_mat4(&uv_to_world),
            world_to_field: to_wgsl_mat4(&world_to_field),
            field_to_world: to_wgsl_mat4(&field_to_world),
            world_to_px: to_wgsl_mat4(&world_to_px(&uv_to_world, size_px)),
            field_dims,
            view: [size_px[0] as f32, size_px[1] as f32, h as f32, v as f32],
            mode: [mode, param, flag(j.fade), flag(composite.interpolate)],
            grid: [g.spacing_mm, g.opacity, g.width_px, flag(g.on)],
            grid_colour: rgb4(g.colour, 1.0),
            vectors: [vec.spacing_px, vec.scale, vec.opacity, flag(vec.on)],
            vector_colour: rgb4(vec.colour, 1.0),
            jacobian: [
                if !j.on {
                    0.0
                } else if j.style == JacobianStyle::Log {
                    1.0
                } else {
                    2.0
                },
                j.opacity,
                j.range,
                flag(present.jacobian),
            ],
            fold_colour: rgb4(j.fold_colour, j.fold_alpha),
            label_opts: [
                flag(overlays.labels.on),
                overlays.labels.opacity,
                flag(through_field),
                0.0,
            ],
            background: [0.0, 0.0, 0.0, 1.0],
        })
    }
}

impl CompositeUniform {
    /// The shader parts these uniforms switch on.
    pub fn features(&self) -> Features {
        let on = |v: f32| v > 0.5;
        let field = on(self.field_dims[3]);
        Features {
            use_b: on(self.b.dims[3]) && self.mode[0] != 0.0,
            grid: field && on(self.grid[3]),
            vectors: field && on(self.vectors[3]),
            jacobian: field && self.jacobian[0] > 0.5 && on(self.jacobian[3]),
            ic: on(self.ic.dims[3]),
            labels: on(self.label_opts[0]) && on(self.labels.dims[3]),
        }
    }
}

impl LayerUniform {
    fn default_absent() -> Self {
        Self {
            to_vox: to_wgsl_mat4(&affine::IDENTITY),
            dims: [1.0, 1.0, 1.0, 0.0],
            style: [0.0, 1.0, 0.0, 0.0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::geometry::{Convention, Plane};

    #[test]
    fn uniform_matches_the_wgsl_layout() {
        // 4 layers × 96 + 4 matrices × 64 + 11 vec4 × 16, as composite.wgsl's Params.
        assert_eq!(
            std::mem::size_of::<CompositeUniform>(),
            4 * 96 + 4 * 64 + 11 * 16
        );
    }

    #[test]
    fn world_to_px_inverts_the_view_map() {
        let grid = Grid::new([40, 50, 30], affine::diagonal([1.5, 1.0, 2.0]));
        for plane in Plane::ALL {
            for conv in [Convention::Radiological, Convention::Neurological] {
                let view = SliceView::centred(plane, &grid, conv);
                let size = [300.0, 200.0];
                let m = view.uv_to_world(size);
                let w2p = world_to_px(&m, size);
                // Moving 10 px right and 5 px down in the view.
                let a = view.world_at([0.3, 0.4], size);
                let b = view.world_at([0.3 + 10.0 / 300.0, 0.4 + 5.0 / 200.0], size);
                let d = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
                let px = affine::apply(&linear(&w2p), d);
                assert!(
                    (px[0] - 10.0).abs() < 1e-9 && (px[1] - 5.0).abs() < 1e-9,
                    "{plane:?} {conv:?}: {px:?}"
                );
            }
        }
    }
}
