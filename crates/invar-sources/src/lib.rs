//! invar-sources: reads probes from real sources into [`invar_core::Table`]s, and runs a
//! snapshot — every distinct probe read once, concurrently, bounded per source — then hands
//! the tables to the pure evaluator in `invar-core`.
//!
//! One module per source kind (`sql`, `redis`, `http`, `lines`, `command`, `prometheus`), each implementing
//! [`SourceDriver`]; [`connect`] below is the one place that maps a configured kind to its
//! driver. `join` is the in-memory SQL across probes; the engine dispatches to drivers and
//! knows no kind.

pub mod command;
pub mod engine;
pub mod fusion;
pub mod http;
pub mod introspect;
pub mod join;
pub mod lines;
pub mod prometheus;
pub mod pushdown;
pub mod redis;
pub mod sink;
pub mod sql;

pub use engine::{Engine, RunOptions, RunOutcome, RunStats};

use futures::future::BoxFuture;
use invar_core::{Probe, SourceKind};
use sink::{Output, RowSink};
use std::path::PathBuf;
use std::sync::Arc;

/// What a read may use besides its probe.
#[derive(Debug, Clone)]
pub struct ReadCx {
    /// The run's instant (a `lines` probe's `since` is relative to it).
    pub now: chrono::DateTime<chrono::Utc>,
    /// The config file's directory: relative paths and commands start there.
    pub base_dir: PathBuf,
}

/// Why a read failed.
#[derive(Debug, Clone)]
pub struct ReadError {
    /// The probe's error, as its invariants show it.
    pub message: String,
    /// Set when the source itself stopped answering (not the probe being wrong): the reason
    /// goes into the report's `sources_unavailable`.
    pub down: Option<String>,
}

impl ReadError {
    pub fn probe(message: impl Into<String>) -> ReadError {
        ReadError {
            message: message.into(),
            down: None,
        }
    }
}

impl From<String> for ReadError {
    fn from(message: String) -> ReadError {
        ReadError::probe(message)
    }
}

/// A connected source of one kind. The engine asks it how many probes it may read at once,
/// what a cost guard may know about it, and to read probes; it never looks at the kind.
pub trait SourceDriver: Send + Sync {
    /// How many of its probes may be read at once.
    fn concurrency(&self) -> Concurrency;

    /// `source.size_bytes` for the cost guards, when known.
    fn size_bytes(&self) -> BoxFuture<'_, Option<u64>> {
        Box::pin(async { None })
    }

    /// Reads one probe into `sink`. A probe of another kind is an error naming the source.
    fn read(
        self: Arc<Self>,
        probe: &Probe,
        sink: RowSink,
        cx: &ReadCx,
    ) -> BoxFuture<'static, Result<Output, ReadError>>;

    /// The SQL pool behind this source: fused metrics and subset pushdown need one.
    fn sql(&self) -> Option<&sql::SqlPool> {
        None
    }

    /// Adds what this run cost the source to `stats`.
    fn count(&self, _name: &str, _stats: &mut RunStats) {}
}

/// How a driver's reads are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// At most this many probes of the source at once.
    PerSource(usize),
    /// The run's one bound for local work (files, commands), so a wide run cannot fork-bomb.
    Local,
    /// Nothing to wait for (literal values): never queued, never stopped by the budget.
    Inline,
}

/// A connected source, shared by the run's reads.
pub type Driver = Arc<dyn SourceDriver>;

/// Connects a configured source: the one registration point of source kinds.
pub async fn connect(kind: &SourceKind) -> Result<Driver, String> {
    Ok(match kind {
        SourceKind::Postgres(s) => Arc::new(sql::SqlPool::connect_postgres(s).await?),
        SourceKind::Mysql(s) => Arc::new(sql::SqlPool::connect_mysql(s).await?),
        SourceKind::Sqlite(s) => Arc::new(sql::SqlPool::connect_sqlite(s).await?),
        SourceKind::File(f) => Arc::new(lines::FileDriver::open(f)?),
        SourceKind::Redis(r) => Arc::new(redis::RedisConn::connect(r).await?),
        SourceKind::Http(h) => Arc::new(http::HttpConn::new(h)?),
        SourceKind::Prometheus(p) => Arc::new(prometheus::PromConn::new(p)?),
    })
}

/// The driver of a probe that names no source (literal values, a path, a command).
pub fn local_driver(probe: &Probe) -> Option<Driver> {
    match probe {
        Probe::Values(_) => Some(Arc::new(sink::ValuesDriver)),
        Probe::Lines(_) => Some(Arc::new(lines::PathDriver)),
        Probe::Command(_) => Some(Arc::new(command::CommandDriver)),
        _ => None,
    }
}

/// A read that fails at once.
pub(crate) fn fail(e: impl Into<ReadError>) -> BoxFuture<'static, Result<Output, ReadError>> {
    let e = e.into();
    Box::pin(async move { Err(e) })
}

/// The error of a probe sent to a source of another kind (`kind` with its article).
pub(crate) fn not_mine(probe: &Probe, kind: &str) -> BoxFuture<'static, Result<Output, ReadError>> {
    let name = probe.source().unwrap_or("?");
    fail(format!("`{name}` is not {kind} source"))
}
