//! Warpscope: deformable registration of medical volumes, with a GPU viewer.
//!
//! Data flows one way: files → [`volume`] → prepare (resample, normalise,
//! pyramid) → register → result → view / export. See `docs/architecture.md`.

// Voxel maths indexes several 3-vectors and matrices in step; index loops
// say that more plainly than zipped iterators.
#![allow(clippy::needless_range_loop)]

pub mod app;
pub mod atomic;
pub mod cli;
pub mod demo;
pub mod gpu;
pub mod landmarks;
pub mod metrics;
pub mod parallel;
pub mod register;
pub mod render;
pub mod results;
pub mod session_file;
pub mod volume;
