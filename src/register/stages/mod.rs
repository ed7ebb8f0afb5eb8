//! Pipeline stages. Each takes the runner (live parameters, device, events)
//! and the pyramid levels, and returns its result as a value together with
//! how it ended, so a stopped or failed run still yields its last good field.

pub mod affine;
pub mod deformable;
pub mod ic;
pub mod native;
