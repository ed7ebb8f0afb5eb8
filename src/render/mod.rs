//! Slice rendering on wgpu. No egui here: the app wraps `GpuScene` in paint
//! callbacks; tests and the viewer benchmark draw it offscreen.
//!
//! - `geometry`: where a view looks (plane, slice, convention, zoom, pan).
//! - `scene`: what it shows (composite mode, windows, colour maps, overlays)
//!   and the uniform block built from that.
//! - `composite`: the pipeline, the volume textures by role, per-view bindings.
//! - `compute`: warped image and det J computed from the field on the GPU.
//! - `texture`: 3-D textures within the adapter's limits.
//! - `colormap`, `png`, `offscreen`.

pub mod colormap;
pub mod composite;
pub mod compute;
pub mod geometry;
pub mod offscreen;
pub mod png;
pub mod scene;
pub mod texture;

pub use colormap::ColorMap;
pub use composite::{GpuScene, Map, Slot};
pub use compute::{FieldCompute, LevelPlacement, LevelSource, Readback};
pub use geometry::{Convention, Plane, SliceView};
pub use scene::{
    Composite, CompositeUniform, Features, GridOverlay, IcOverlay, ImageStyle, JacobianOverlay,
    JacobianStyle, LabelOverlay, Mode, Overlays, Present, VectorOverlay,
};
pub use texture::GpuVolume;
