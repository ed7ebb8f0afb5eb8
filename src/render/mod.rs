//! Slice rendering on wgpu. No egui here: the app wraps these in paint
//! callbacks, tests draw them offscreen.

pub mod geometry;
pub mod slice;

pub use geometry::{Convention, Plane, SliceView};
pub use slice::{SliceBinding, SlicePipeline, SliceUniform, VolumeTexture};
