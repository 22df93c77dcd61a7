//! netctx as a CNI plugin (spec 1.1.0; design §5): when `CNI_COMMAND` is
//! set, `main` hands over to [`run`]. The configuration comes on stdin, the
//! parameters in `CNI_*` variables; the answer (a result or the spec's error
//! object) goes to stdout. This module owns the plugin mode whole; it uses
//! the engine's message builders and rulesets but changes nothing of them.

mod attach;
mod config;
mod env;
mod error;
mod naming;
mod result;
mod version;
