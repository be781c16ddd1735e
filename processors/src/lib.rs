//! Sluice's processors: each is a `Consumer` that passes batches on to the next.

pub mod batch;
pub mod labels;
pub mod limits;
pub mod normalize;
pub mod route;
