//! `invar watch`: one long-running process that runs suites on their cron schedules (in their
//! time zones), serves the HTTP API, exposes Prometheus metrics and a status page — and stays
//! correct with several replicas on one Postgres store.
//!
//! - [`schedule`]: pure cron-in-a-zone arithmetic (DST gaps and folds) and misfire decisions.
//! - [`status`]: the snapshot of suites and invariants that [`metrics`] and [`page`] render.

pub mod api;
pub mod clock;
pub mod metrics;
pub mod page;
pub mod request;
pub mod scheduler;
pub mod serve;
pub mod status;
/// Cron in IANA zones; lives in invar-core so the config reader validates schedules with the
/// very rules the scheduler runs.
pub use invar_core::schedule;
pub mod watcher;
