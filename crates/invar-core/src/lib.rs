//! invar-core: the model (invariants, probes, tables, outcomes), CEL conditions, set relations
//! and the run report — everything that decides a verdict, as pure functions of a snapshot.
//!
//! Nothing here does I/O: sources read probes into [`Table`]s elsewhere, and [`evaluate`]
//! turns an invariant plus the tables it needs into a [`Verdict`]. That keeps every verdict
//! testable without servers and deterministic for the same snapshot.

pub mod cel_check;
pub mod condition;
pub mod errors;
pub mod eval;
pub mod hist;
pub mod incident;
pub mod keyset;
pub mod metrics;
pub mod model;
pub mod report;
pub mod schedule;
pub mod secret;
pub mod silence;
pub mod units;
pub mod value;

pub use condition::{Condition, ConditionError, Scope};
pub use errors::error_chain;
pub use eval::{
    ProbeResult, Snapshot, evaluate, evaluate_with_memory, skip_if_decision, transitions_step,
};
pub use metrics::{MetricFn, MetricsProbe};
pub use model::*;
pub use report::{
    Counts, InvariantResult, Outcome, ProblemKind, RunProblem, RunReport, SilencedBy, Trigger,
    Verdict,
};
pub use secret::{Secret, redact_url};
pub use value::{Table, Value};
