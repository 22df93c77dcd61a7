mod config;
mod model;
mod msgs;
mod netns;
mod nl;
mod owner;
mod plan;
mod state;
fn main() {}
