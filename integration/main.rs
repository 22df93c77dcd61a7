//! Integration tests: the real binary against the real kernel, each test in
//! a sandbox of its own (see `sandbox.rs`). They need root.

mod audit;
mod engine;
mod guests;
mod isolation;
mod reliability;
mod sandbox;
