//! Integration tests: the real binary against the real kernel, each test in
//! a sandbox of its own (see `sandbox.rs`). They need root.

mod announce;
mod attacks;
mod audit;
mod bind_hooks;
mod cni;
mod cni_cri;
mod cni_dns;
mod cni_podman;
mod cni_pods;
mod cni_uplink;
mod coexist;
mod confine;
mod engine;
mod fabric;
mod fences;
mod fences_net;
mod guests;
mod host_table;
mod integrity;
mod isolation;
mod ops;
mod policy;
mod policy_deny;
mod policy_dns;
mod policy_sets;
mod pty;
mod reliability;
mod sandbox;
mod uplink;
mod uplink_scale;
mod userns;
