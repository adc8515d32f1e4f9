//! invar-store: the history store — runs, results (with their `measured` block), violations,
//! incidents, remembered states for `transitions`, the alert outbox and every delivery attempt,
//! schedule ticks, leases and silences.
//!
//! One [`Store`] in three parts — [`History`], [`Outbox`] and [`Coordination`] — and two
//! backends: embedded SQLite (the default, WAL) and Postgres (several watchers sharing one
//! history). Both are one generic [`SqlStore`] over a small [`Backend`] trait that holds only
//! what differs (opening, the serialised write transaction, bulk inserts, the migrations'
//! DDL); every statement is written once (BIGINT unix-millisecond timestamps, JSON as text,
//! `$N` placeholders) and every row is read by column name. Migrations are embedded per
//! backend and versioned in `invar_migrations`. One conformance story
//! (`tests/conformance.rs`) runs on both.
//!
//! Recording a run is **one transaction**: the run, its results and violations, the incident
//! transitions and the outbox rows they cause. The incident planning itself is a pure function
//! handed to [`History::record_run`]: it runs inside the transaction on the states as stored
//! (runs are serialised: SQLite `BEGIN IMMEDIATE`, Postgres an advisory transaction lock), so
//! two watchers sharing a Postgres history cannot both open the same incident.
//!
//! The store never sees a secret: sinks are named, never addressed, and delivery errors are
//! scrubbed before they reach [`Outbox::record_attempt`].

mod migrate;
mod sql;
mod types;

pub use types::*;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use invar_core::incident::IncidentState;
use invar_core::{Retention, RunReport, Secret, StoreSpec};
use std::collections::BTreeMap;
use std::path::Path;

pub use sql::{Backend, PgBackend, PgStore, SqlStore, SqliteBackend, SqliteStore};

/// Errors of the store. Messages never hold a connection URL's password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be opened (or is newer than this invar). Only the message is kept: the
    /// driver's error is scrubbed of the URL's secrets into it, and its own text could show
    /// them.
    #[error("cannot open the history store: {0}")]
    Open(String),
    #[error("history store migration {version} (`{name}`) failed: {source}")]
    Migrate {
        version: i64,
        name: String,
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed; the driver's error is the source.
    #[error("history store: {0}")]
    Db(#[source] sqlx::Error),
    #[error("history store holds data this version cannot read: {0}")]
    Decode(String),
    /// A request the store cannot run (a malformed cursor).
    #[error("history store: {0}")]
    Invalid(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The pure planner run inside [`History::record_run`]'s transaction: given the stored incident
/// states and who was notified of the open incidents, it returns what to write.
pub type Planner<'a> = dyn Fn(&PlanInput) -> Plan + Send + Sync + 'a;

/// What happened: runs, their results and violations, incidents, the report's aggregates,
/// retention and the remembered states of `transitions` invariants.
pub trait History: Send + Sync {
    /// Records a run — run, results, violations, remembered states, and whatever `plan`
    /// decides (incident states, events, outbox rows) — in one transaction.
    fn record_run<'a>(
        &'a self,
        run: &'a RunRecord<'a>,
        plan: &'a Planner<'a>,
    ) -> BoxFuture<'a, Result<Recorded>>;

    /// Every stored incident state, by subject.
    fn incident_states(&self) -> BoxFuture<'_, Result<BTreeMap<String, IncidentState>>>;

    /// Runs, newest first.
    fn runs<'a>(&'a self, q: &'a RunQuery) -> BoxFuture<'a, Result<Vec<RunSummary>>>;

    /// One run as its report (violations as stored, capped as in the report).
    fn run_report<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<Option<RunReport>>>;

    /// Results of invariants across runs, newest first.
    fn results<'a>(&'a self, q: &'a ResultQuery) -> BoxFuture<'a, Result<Vec<ResultEntry>>>;

    /// Incidents, newest first.
    fn incidents<'a>(&'a self, q: &'a IncidentQuery) -> BoxFuture<'a, Result<Vec<IncidentRow>>>;

    /// Violations, newest first (by `at`, then by id), a page at a time (`cursor` from the
    /// previous page: the id of its last row). A cursor whose row was pruned meanwhile ends the
    /// listing (everything older was pruned with it).
    fn violations<'a>(&'a self, q: &'a ViolationQuery)
    -> BoxFuture<'a, Result<Page<ViolationRow>>>;

    /// One violation by id.
    fn violation(&self, id: i64) -> BoxFuture<'_, Result<Option<ViolationRow>>>;

    /// Stored violations per invariant and severity (most first), with totals; all of them or
    /// those at or after `since`.
    fn violation_stats(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> BoxFuture<'_, Result<ViolationStats>>;

    /// For each invariant with recorded results: its `per_invariant` most recent results,
    /// newest first.
    fn latest_outcomes(
        &self,
        per_invariant: u32,
    ) -> BoxFuture<'_, Result<BTreeMap<String, Vec<OutcomeAt>>>>;

    /// The audit over `[from, to)`.
    fn report(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> BoxFuture<'_, Result<ReportData>>;

    /// Deletes what `retention` no longer keeps. Pending deliveries and open incidents are
    /// never pruned; claimed schedule ticks age like runs, but each suite keeps its latest.
    fn prune(&self, retention: Retention, now: DateTime<Utc>)
    -> BoxFuture<'_, Result<PruneCounts>>;

    /// The remembered states of one `transitions` invariant.
    fn remembered<'a>(&'a self, invariant: &'a str) -> BoxFuture<'a, Result<Vec<RememberedState>>>;

    /// Deletes remembered states of `invariant` last seen before `before`.
    fn forget_before<'a>(
        &'a self,
        invariant: &'a str,
        before: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<u64>>;

    /// One invariant's measured series, newest first (by start, then run id), a page at a
    /// time (`cursor`: the previous page's `next_cursor`). Reads `results_invariant_started`.
    fn measurements<'a>(
        &'a self,
        q: &'a MeasurementQuery,
    ) -> BoxFuture<'a, Result<Page<Measurement>>>;

    /// Incident events at or after `since`, oldest first, at most `limit` (the newest kept).
    fn incident_events(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<IncidentEventRow>>>;
}

/// The alert outbox: deliveries waiting for a sink, their leases and every attempt.
pub trait Outbox: Send + Sync {
    /// Pending deliveries, oldest first: all of them (`due_at: None`), or those due by then.
    fn pending(
        &self,
        due_at: Option<DateTime<Utc>>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Delivery>>>;

    /// Takes a lease on a pending delivery so one worker attempts it at a time. False when
    /// another worker holds an unexpired lease or it was delivered meanwhile.
    fn claim<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Records one attempt and its consequence (delivered, or the next attempt time) in one
    /// transaction, releasing the lease.
    fn record_attempt<'a>(&'a self, a: &'a AttemptRecord) -> BoxFuture<'a, Result<()>>;

    /// Deliveries (any status), oldest first, for inspection and tests.
    fn deliveries<'a>(&'a self, q: &'a DeliveryQuery) -> BoxFuture<'a, Result<Vec<Delivery>>>;

    /// Every attempt of one delivery, in order.
    fn attempts<'a>(&'a self, delivery_id: &'a str) -> BoxFuture<'a, Result<Vec<AttemptRecord>>>;

    /// Delivered and pending outbox rows, and failed attempts, counted in one statement.
    fn delivery_counts(&self) -> BoxFuture<'_, Result<DeliveryCounts>>;
}

/// What replicas sharing a store agree on: claimed schedule ticks, named leases and silences.
pub trait Coordination: Send + Sync {
    /// Claims the scheduled `tick` of `suite` for `owner`: true for exactly one caller across
    /// every process sharing the store, false for all others (whoever claimed it first).
    fn claim_tick<'a>(
        &'a self,
        suite: &'a str,
        tick: DateTime<Utc>,
        owner: &'a str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>>;

    /// The latest tick of `suite` anyone claimed.
    fn last_tick<'a>(&'a self, suite: &'a str) -> BoxFuture<'a, Result<Option<DateTime<Utc>>>>;

    /// Takes over a tick claimed before `stale_before` whose run was never recorded (its
    /// replica died mid-run): true for exactly one caller.
    fn reclaim_tick<'a>(
        &'a self,
        suite: &'a str,
        tick: DateTime<Utc>,
        owner: &'a str,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Marks a claimed tick as run: its run (`run_id`) was recorded.
    fn finish_tick<'a>(
        &'a self,
        suite: &'a str,
        tick: DateTime<Utc>,
        run_id: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// The latest tick of `suite` whose run was recorded ([`Coordination::finish_tick`]).
    fn last_finished_tick<'a>(
        &'a self,
        suite: &'a str,
    ) -> BoxFuture<'a, Result<Option<DateTime<Utc>>>>;

    /// Takes or extends the named lease until `until`: true when it was free, expired
    /// (`until <= now`) or already held by `owner`; false while another owner holds it.
    /// One statement, race-free across processes.
    fn acquire_lease<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Extends a lease `owner` holds; false when it no longer holds it (expired and taken, or
    /// released). Never re-creates a released lease.
    fn renew_lease<'a>(
        &'a self,
        name: &'a str,
        owner: &'a str,
        until: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Releases the named lease if `owner` holds it; otherwise does nothing.
    fn release_lease<'a>(&'a self, name: &'a str, owner: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Stores a new silence (its id a fresh UUID v7) and returns it as stored (times at
    /// millisecond precision). The matcher is kept as text; the store does not compile it.
    fn add_silence<'a>(&'a self, s: &'a NewSilence) -> BoxFuture<'a, Result<Silence>>;

    /// Silences, by start then id: all of them (`active_at: None`, expired ones included), or
    /// those active at an instant — `starts_at <= t < ends_at` and not expired by then
    /// (`expired_at` unset or after `t`).
    fn silences(&self, active_at: Option<DateTime<Utc>>) -> BoxFuture<'_, Result<Vec<Silence>>>;

    /// Ends a silence early at `at`: false when no silence has that id or it was already
    /// expired (the first expiry is kept).
    fn expire_silence<'a>(&'a self, id: &'a str, at: DateTime<Utc>) -> BoxFuture<'a, Result<bool>>;
}

/// The history store: [`History`], [`Outbox`] and [`Coordination`] on one backend. Every
/// method is one statement or one transaction. Dyn-compatible: callers hold a
/// `Box<dyn Store>` or an `Arc<dyn Store>`, on which every part's methods are callable as they
/// are; on a concrete [`SqliteStore`] or [`PgStore`], bring the part's trait into scope.
pub trait Store: History + Outbox + Coordination {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// Opens (creating and migrating) the store a config names.
pub async fn open(spec: &StoreSpec) -> Result<Box<dyn Store>> {
    match spec {
        StoreSpec::Sqlite { path } => Ok(Box::new(SqliteStore::open(path).await?)),
        StoreSpec::Postgres { url } => Ok(Box::new(PgStore::connect(url, None).await?)),
    }
}

/// Opens a SQLite store at `path` (its directory is created).
pub async fn open_sqlite(path: &Path) -> Result<SqliteStore> {
    SqliteStore::open(path).await
}

/// Connects a Postgres store; `schema` (created if missing) sets the `search_path`.
pub async fn connect_postgres(url: &Secret, schema: Option<&str>) -> Result<PgStore> {
    PgStore::connect(url, schema).await
}
