//! The modules the fuzz targets exercise, compiled from Warpscope's own
//! sources (`src/volume/`, and the two helpers it uses) without the rest of
//! the crate: the readers need only flate2, so an instrumented build takes
//! a minute instead of compiling burn, wgpu and eframe under sanitizers.
#![allow(dead_code)]

#[path = "../../../src/atomic.rs"]
pub mod atomic;
#[path = "../../../src/parallel.rs"]
pub mod parallel;
#[path = "../../../src/volume/mod.rs"]
pub mod volume;
