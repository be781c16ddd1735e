//! Sluice's benchmark harness: the same workload through Sluice and through a peer collector, one
//! after the other, measured from outside (CPU time and peak RSS from `/proc`, what arrived at a
//! counting sink). See `bench/README.md` for the scenarios and how to run them.
//!
//! - [`workload`] builds every request body before the clock starts;
//! - [`loadgen`] sends them over a few connections, retrying pushback;
//! - [`sink`] receives what the collector sends on, decodes it and counts samples and series;
//! - [`targets`] serves the scrape targets of W4;
//! - [`collector`] starts, measures and stops a collector process pinned to one core;
//! - [`scenarios`] wires them for W1 to W5, and [`report`] prints the tables.

pub mod collector;
pub mod loadgen;
pub mod report;
pub mod scenarios;
pub mod sink;
pub mod targets;
pub mod workload;
