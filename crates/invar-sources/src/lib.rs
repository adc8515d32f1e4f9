//! invar-sources: reads probes from real sources into [`invar_core::Table`]s, and runs a
//! snapshot — every distinct probe read once, concurrently, bounded per source — then hands
//! the tables to the pure evaluator in `invar-core`.
//!
//! One module per source type (`sql`, `redis`, `http`, `lines`, `command`), `join` for the
//! in-memory SQL across probes; the engine is the only place that knows about all of them.

pub mod command;
pub mod engine;
pub mod fusion;
pub mod http;
pub mod introspect;
pub mod join;
pub mod lines;
pub mod pushdown;
pub mod redis;
pub mod sink;
pub mod sql;

pub use engine::{Engine, RunOptions, RunStats};
