//! Integration tests: the real binary against the real kernel, each test in
//! a sandbox of its own (see `sandbox.rs`). They need root.

mod attacks;
mod confine;
mod engine;
mod guests;
mod isolation;
mod pty;
mod reliability;
mod sandbox;
