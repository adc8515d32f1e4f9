//! The run, in three phases:
//!
//! 1. **plan** ([`Engine::plan`] → `RunPlan`): connect the sources the selected checks need
//!    (each through its kind's [`crate::SourceDriver`]), decide the cost guards, try subset
//!    pushdown, and list every distinct probe with the checks reading it and its shape (a
//!    table, or straight into key sets). Nothing is read.
//! 2. **read** (`Engine::read` → `Reads`): one spawned, shared future per distinct probe,
//!    metrics fused per source/table/filter, each waiting for its source's bound and the
//!    suite's budget; joins after their inputs.
//! 3. **decide** (`Engine::decide` → [`RunOutcome`]): each check awaits its reads within its
//!    timeout and is evaluated (pure, in `invar-core`) as soon as they are in; the report,
//!    the remembered states and the sources' costs are returned by value.
//!
//! The engine names no source kind: it asks drivers for their bound, their facts and their
//! reads.

use crate::fusion::FusedQuery;
use crate::sink::{Output, RowSink};
use crate::sql::Dialect;
use crate::{Concurrency, Driver, ReadCx};
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use invar_core::eval::KeyedResult;
use invar_core::hist::PastRun;
use invar_core::{
    Check, Config, Invariant, InvariantResult, JoinRelation, KeyedProbe, MetricsProbe, Outcome,
    Probe, ProbeResult, Remembered, RunProblem, RunReport, Snapshot, Suite, Value, Verdict,
    evaluate_with_memory, skip_if_decision,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What to run and how it was triggered.
#[derive(Clone)]
pub struct RunOptions {
    pub suite: String,
    /// Restrict to these ids (already checked to exist).
    pub only: Vec<String>,
    pub trigger: invar_core::Trigger,
    /// The run's instant on the caller's clock (the watcher's may be a test clock); None
    /// reads the system clock when the run starts.
    pub at: Option<DateTime<Utc>>,
    /// Called after each invariant is decided: (done, total).
    pub progress: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
    /// The remembered states of each `transitions` invariant (by id), as loaded from the
    /// history store; an invariant without an entry has never run (its run is a baseline).
    pub remembered: HashMap<String, Vec<Remembered>>,
    /// The earlier runs of each invariant with `history:` (by id), cut to its window, as
    /// loaded from the history store (invar-record); none: thin history.
    pub history: HashMap<String, Vec<PastRun>>,
    /// For each invariant vacuous for its whole `vacuous_after`: since when (invar-record).
    pub vacuous_since: HashMap<String, DateTime<Utc>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            suite: "all".into(),
            only: Vec::new(),
            trigger: invar_core::Trigger::Cli,
            at: None,
            progress: None,
            remembered: HashMap::new(),
            history: HashMap::new(),
            vacuous_since: HashMap::new(),
        }
    }
}

/// Source, table and filter: metrics probes sharing it are one query.
type FusionKey = (String, String, Option<String>);

type SharedProbe = Shared<BoxFuture<'static, ProbeResult>>;
type SharedKeyed = Shared<BoxFuture<'static, KeyedResult>>;

/// A probe read into a table.
fn as_table(fut: BoxFuture<'static, Result<Output, String>>) -> BoxFuture<'static, ProbeResult> {
    async move {
        fut.await?
            .into_table()
            .map(Arc::new)
            .ok_or_else(|| "internal error: a table probe was read as key sets".to_string())
    }
    .boxed()
}

/// A probe read straight into key sets.
fn as_keys(fut: BoxFuture<'static, Result<Output, String>>) -> BoxFuture<'static, KeyedResult> {
    async move {
        match fut.await? {
            Output::Keys(sets) => Ok(Arc::new(sets)),
            Output::Table(_) => Err("internal error: a keyed probe was read as a table".into()),
        }
    }
    .boxed()
}

/// Local probes (commands, files) of one run share this bound, so a wide run cannot
/// fork-bomb.
const LOCAL_PROBE_CONCURRENCY: usize = 8;
/// A join's in-memory SQL is bounded by this (the invariant's `timeout` may cut it sooner).
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The run's sources: connected, or why not.
type Conns = HashMap<String, Result<Driver, String>>;

/// Sources found unreachable while reading (an HTTP request without an answer, a Redis
/// connection lost mid-run): source → the first reason. Local to one run.
type DownDuringRun = Arc<std::sync::Mutex<BTreeMap<String, String>>>;

pub struct Engine {
    config: Arc<Config>,
}

/// What a run cost its sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Statements sent per SQL source.
    pub queries: BTreeMap<String, u64>,
    /// Probes read per Redis source (each distinct probe once per run).
    pub redis_reads: BTreeMap<String, u64>,
}

/// Everything a run produced, by value.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub report: RunReport,
    /// For each `transitions` invariant that was decided (not `error`, not skipped), every
    /// key it saw, seen now. Invariants absent here keep what the store remembers untouched.
    pub remembered: HashMap<String, Vec<Remembered>>,
    pub stats: RunStats,
}

/// Invariants selected by a suite (and `--only`), in config order.
pub fn select<'a>(
    config: &'a Config,
    suite: &Suite,
    only: &[String],
) -> Result<Vec<&'a Invariant>, String> {
    let mut out = Vec::new();
    for inv in &config.invariants {
        if !only.is_empty() {
            if only.contains(&inv.id) {
                out.push(inv);
            }
            continue;
        }
        if suite
            .selects(inv)
            .map_err(|e| format!("suite `{}`: {e}", suite.name))?
        {
            out.push(inv);
        }
    }
    Ok(out)
}

/// One selected invariant, as planned.
struct Planned<'c> {
    inv: &'c Invariant,
    /// Decided before anything is read: a cost guard's skip, or its error.
    early: Option<Verdict>,
    /// The subset check rewritten as one query, when the database can decide it.
    pushed: Option<Probe>,
    /// Set once one of its probes starts reading: past the budget's deadline its other
    /// probes still run.
    started: Arc<AtomicBool>,
}

impl Planned<'_> {
    /// The probes this check reads.
    fn reads(&self) -> Vec<&Probe> {
        match &self.pushed {
            Some(p) => vec![p],
            None => self.inv.check.probes(),
        }
    }
}

/// How a probe is read: into a table, or (read only by set checks) straight into key sets.
enum Shape {
    Table,
    Keys(Vec<KeyedProbe>),
}

/// The checks reading each probe (by index into the plan's checks).
type Readers = HashMap<Probe, Vec<usize>>;

/// Phase 1's result: what will be read, for whom, and how.
struct RunPlan<'c> {
    run_id: String,
    now: DateTime<Utc>,
    started: Instant,
    suite: Suite,
    budget: Option<Budget>,
    checks: Vec<Planned<'c>>,
    conns: Conns,
    /// Sources that could not be connected and that a check not skipped needed.
    unavailable: Vec<RunProblem>,
    /// Every distinct probe, in first-seen order, with its shape.
    probes: Vec<(Probe, Shape)>,
    readers: Readers,
}

/// Phase 2's result: one shared future per distinct probe and join.
struct Reads {
    tables: HashMap<Probe, SharedProbe>,
    keyed: HashMap<Probe, SharedKeyed>,
    joins: HashMap<JoinRelation, SharedProbe>,
    /// Per probe, set when the budget stopped it before it started.
    spent: HashMap<Probe, Arc<AtomicBool>>,
    down: DownDuringRun,
}

/// The run's bounds on concurrent reads: per source, and one for local work.
struct Bounds {
    per_source: HashMap<String, Arc<Semaphore>>,
    local: Arc<Semaphore>,
}

impl Engine {
    pub fn new(config: Arc<Config>) -> Engine {
        Engine { config }
    }

    fn base_dir(&self) -> PathBuf {
        self.config
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Runs one suite. Never fails as a whole: whatever cannot be evaluated becomes `error`
    /// on the invariants that needed it.
    pub async fn run(&self, opts: &RunOptions) -> RunOutcome {
        let started = Instant::now();
        let now = opts.at.unwrap_or_else(Utc::now);
        let run_id = uuid::Uuid::now_v7().to_string();
        let suite = self
            .config
            .suite(&opts.suite)
            .cloned()
            .unwrap_or_else(Suite::all);
        let selected = match select(&self.config, &suite, &opts.only) {
            Ok(s) => s,
            Err(e) => {
                // A select that cannot be evaluated is an automation error for the whole run.
                let problem = RunProblem::select(e);
                let report = report(run_id, &suite, opts, now, started, vec![], vec![problem]);
                return RunOutcome {
                    report,
                    remembered: HashMap::new(),
                    stats: RunStats::default(),
                };
            }
        };
        let plan = self.plan(selected, suite, run_id, now, started).await;
        let reads = self.read(&plan);
        self.decide(plan, reads, opts).await
    }

    /// Phase 1: connect what the checks need, decide the cost guards, try pushdown, and list
    /// every distinct probe with its readers and shape. Nothing is read yet.
    async fn plan<'c>(
        &self,
        selected: Vec<&'c Invariant>,
        suite: Suite,
        run_id: String,
        now: DateTime<Utc>,
        started: Instant,
    ) -> RunPlan<'c> {
        let budget = suite.budget.map(|b| Budget {
            deadline: started + b,
            budget: b,
        });
        let mut needed: Vec<String> = Vec::new();
        for inv in &selected {
            for s in inv.check.sources() {
                if !needed.iter().any(|n| n == s) {
                    needed.push(s.to_string());
                }
            }
        }
        let conns = self.connect_all(&needed).await;
        let early = self.cost_guards(&selected, &conns, now).await;
        let conns_ref = &conns;
        let pushed = futures::future::join_all(selected.iter().enumerate().map(|(i, inv)| {
            let skipped = early[i].is_some();
            async move {
                match skipped {
                    true => None,
                    false => self.pushdown(&inv.check, conns_ref).await,
                }
            }
        }))
        .await;
        let checks: Vec<Planned> = selected
            .into_iter()
            .zip(early)
            .zip(pushed)
            .map(|((inv, early), pushed)| Planned {
                inv,
                early,
                pushed,
                started: Arc::default(),
            })
            .collect();
        let unavailable = needed
            .iter()
            .filter_map(|name| {
                let e = conns.get(name)?.as_ref().err()?;
                let used = checks
                    .iter()
                    .any(|c| c.early.is_none() && c.inv.check.sources().contains(&name.as_str()));
                used.then(|| RunProblem::source(name.clone(), e.clone()))
            })
            .collect();
        let (probes, readers) = shapes(&checks);
        RunPlan {
            run_id,
            now,
            started,
            suite,
            budget,
            checks,
            conns,
            unavailable,
            probes,
            readers,
        }
    }

    /// The cost guards (`skip_if`), decided before any probe is read: per check, its early
    /// verdict if it has one.
    async fn cost_guards(
        &self,
        selected: &[&Invariant],
        conns: &Conns,
        now: DateTime<Utc>,
    ) -> Vec<Option<Verdict>> {
        let mut facts_cache: HashMap<String, BTreeMap<String, Value>> = HashMap::new();
        let mut out = Vec::with_capacity(selected.len());
        for inv in selected {
            let Some(cond) = &inv.skip_if else {
                out.push(None);
                continue;
            };
            let mut facts = Vec::new();
            for s in inv.check.sources() {
                if !facts_cache.contains_key(s) {
                    let f = self.source_facts(s, conns.get(s)).await;
                    facts_cache.insert(s.to_string(), f);
                }
                facts.push(facts_cache[s].clone());
            }
            out.push(match skip_if_decision(cond, &facts, now) {
                Ok(reason) => reason.map(Verdict::skip),
                Err(e) => Some(Verdict::error(format!("skip_if: {e}"))),
            });
        }
        out
    }

    /// Phase 2: one spawned, shared future per distinct probe (metrics fused per source,
    /// table and filter), each waiting for its source's bound; joins after their inputs.
    fn read(&self, plan: &RunPlan<'_>) -> Reads {
        let mut bounds = Bounds {
            per_source: HashMap::new(),
            local: Arc::new(Semaphore::new(LOCAL_PROBE_CONCURRENCY)),
        };
        let mut reads = Reads {
            tables: HashMap::new(),
            keyed: HashMap::new(),
            joins: HashMap::new(),
            spent: HashMap::new(),
            down: Arc::default(),
        };
        self.read_fused(plan, &mut bounds, &mut reads);
        for (p, shape) in &plan.probes {
            if reads.tables.contains_key(p) {
                continue;
            }
            let gate = gate_for(plan, &[p]);
            reads.spent.insert(p.clone(), gate.spent.clone());
            match shape {
                Shape::Keys(sides) => {
                    let fut = self.read_probe(p, plan, &mut bounds, &reads.down, gate, sides);
                    reads.keyed.insert(p.clone(), spawn_shared(as_keys(fut)));
                }
                Shape::Table => {
                    let fut = self.read_probe(p, plan, &mut bounds, &reads.down, gate, &[]);
                    reads.tables.insert(p.clone(), spawn_shared(as_table(fut)));
                }
            }
        }
        for c in &plan.checks {
            let Check::Join(jc) = &c.inv.check else {
                continue;
            };
            let rel = jc.relation();
            if c.early.is_some() || reads.joins.contains_key(&rel) {
                continue;
            }
            let inputs: Vec<(String, SharedProbe)> = rel
                .tables
                .iter()
                .filter_map(|(name, p)| Some((name.clone(), reads.tables.get(p)?.clone())))
                .collect();
            let sql = rel.sql.clone();
            let fut = async move {
                let mut tables = Vec::with_capacity(inputs.len());
                for (name, f) in inputs {
                    tables.push((name.clone(), f.await.map_err(|e| format!("`{name}`: {e}"))?));
                }
                crate::join::run_join(&tables, &sql, JOIN_TIMEOUT)
                    .await
                    .map(Arc::new)
            }
            .boxed();
            reads.joins.insert(rel, spawn_shared(fut));
        }
        reads
    }

    /// Metrics probes over the same source, table and filter: one fused query, projected
    /// back to each member.
    fn read_fused(&self, plan: &RunPlan<'_>, bounds: &mut Bounds, reads: &mut Reads) {
        let mut groups: Vec<(FusionKey, Vec<&MetricsProbe>)> = Vec::new();
        for (p, _) in &plan.probes {
            if let Probe::Metrics(m) = p {
                match groups.iter_mut().find(|(k, _)| *k == m.fusion_key()) {
                    Some((_, members)) => members.push(m),
                    None => groups.push((m.fusion_key(), vec![m])),
                }
            }
        }
        for ((source, _, _), members) in &groups {
            let member_probes: Vec<Probe> = members
                .iter()
                .map(|m| Probe::Metrics((*m).clone()))
                .collect();
            let gate = gate_for(plan, &member_probes.iter().collect::<Vec<_>>());
            let fused_spent = gate.spent.clone();
            let dialect = match plan.conns.get(source) {
                Some(Ok(d)) => d.sql().map(|p| p.dialect()),
                _ => None,
            };
            let fused = dialect
                .and_then(|d| FusedQuery::build(d, members))
                .map(|q| {
                    let q = Arc::new(q);
                    let sql = Probe::Sql {
                        source: source.clone(),
                        sql: q.sql.clone(),
                    };
                    let fut = self.read_probe(&sql, plan, bounds, &reads.down, gate, &[]);
                    (q, spawn_shared(as_table(fut)))
                });
            for (m, probe) in members.iter().zip(member_probes) {
                let shared = match &fused {
                    Some((q, f)) => {
                        let (q, f, m) = (q.clone(), f.clone(), (*m).clone());
                        async move { f.await.and_then(|t| q.project(&t, &m).map(Arc::new)) }
                            .boxed()
                            .shared()
                    }
                    // Not an SQL source, or down: the driver's own answer.
                    None => {
                        let fut = self.read_probe(
                            &probe,
                            plan,
                            bounds,
                            &reads.down,
                            Gate::default(),
                            &[],
                        );
                        spawn_shared(as_table(fut))
                    }
                };
                reads.spent.insert(probe.clone(), fused_spent.clone());
                reads.tables.insert(probe, shared);
            }
        }
    }

    /// Phase 3: each check awaits its reads (within its timeout) and is evaluated (pure);
    /// the report, the remembered states and the sources' costs come back by value.
    async fn decide(&self, plan: RunPlan<'_>, reads: Reads, opts: &RunOptions) -> RunOutcome {
        let total = plan.checks.len();
        let done = Arc::new(AtomicUsize::new(0));
        let tick = move |done: &AtomicUsize, progress: &Option<Progress>| {
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(p) = progress {
                p(n, total);
            }
        };
        let mut results: Vec<Option<InvariantResult>> = vec![None; total];
        let mut tasks = Vec::new();
        for (i, c) in plan.checks.iter().enumerate() {
            if let Some(v) = &c.early {
                results[i] = Some(to_result(c.inv, v.clone(), Duration::ZERO));
                tick(&done, &opts.progress);
                continue;
            }
            let task = CheckTask::new(c, &reads, plan.budget, opts, plan.now);
            let (progress, done) = (opts.progress.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let out = task.run().await;
                tick(&done, &progress);
                (i, out)
            }));
        }
        // The tasks hold what they need: a probe's result is freed once the last check
        // reading it is decided, not at the end of the run.
        let Reads { down, .. } = reads;
        let mut remembered: HashMap<String, Vec<Remembered>> = HashMap::new();
        for t in tasks {
            match t.await {
                Ok((i, (r, memory))) => {
                    if let Some(m) = memory {
                        remembered.insert(r.id.clone(), m);
                    }
                    results[i] = Some(r)
                }
                Err(e) => tracing::error!(error = %e, "invariant task panicked"),
            }
        }
        let results: Vec<InvariantResult> = results
            .into_iter()
            .zip(&plan.checks)
            .map(|(r, c)| {
                r.unwrap_or_else(|| {
                    to_result(
                        c.inv,
                        Verdict::error("internal error: no verdict"),
                        Duration::ZERO,
                    )
                })
            })
            .collect();
        let mut stats = RunStats::default();
        for (name, c) in &plan.conns {
            if let Ok(d) = c {
                d.count(name, &mut stats);
            }
        }
        let mut unavailable = plan.unavailable;
        for (source, error) in down.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if !unavailable.iter().any(|u| &u.source == source) {
                unavailable.push(RunProblem::source(source.clone(), error.clone()));
            }
        }
        let report = report(
            plan.run_id,
            &plan.suite,
            opts,
            plan.now,
            plan.started,
            results,
            unavailable,
        );
        RunOutcome {
            report,
            remembered,
            stats,
        }
    }

    async fn connect_all(&self, names: &[String]) -> Conns {
        let futs = names.iter().filter_map(|name| {
            let src = self.config.sources.get(name)?;
            Some(async move { (name.clone(), crate::connect(&src.kind).await) })
        });
        futures::future::join_all(futs).await.into_iter().collect()
    }

    /// The `source` map a cost guard sees: `name`, `type`, `size_bytes` when known.
    async fn source_facts(
        &self,
        name: &str,
        conn: Option<&Result<Driver, String>>,
    ) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        m.insert("name".to_string(), Value::Text(name.to_string()));
        let Some(src) = self.config.sources.get(name) else {
            return m;
        };
        m.insert(
            "type".to_string(),
            Value::Text(src.kind.type_name().to_string()),
        );
        let size = match conn {
            Some(Ok(d)) => d.size_bytes().await,
            _ => None,
        };
        m.insert(
            "size_bytes".to_string(),
            size.map(|s| Value::Int(i64::try_from(s).unwrap_or(i64::MAX)))
                .unwrap_or(Value::Null),
        );
        m
    }

    /// The pushed-down form of a subset check, when the key columns' types (learned by
    /// preparing both queries; nothing runs) let the database compare keys exactly as
    /// memory does (`pushdown.rs`). SQLite also needs its guard query to find no REAL or
    /// BLOB key.
    async fn pushdown(&self, check: &invar_core::Check, conns: &Conns) -> Option<Probe> {
        use crate::pushdown::{KeyPair, key_class};
        let cand = crate::pushdown::candidate(check)?;
        let Some(Ok(driver)) = conns.get(cand.source) else {
            return None;
        };
        let pool = driver.sql()?;
        let d = pool.dialect();
        let (Ok(et), Ok(it)) = (
            pool.column_types(cand.each_sql).await,
            pool.column_types(cand.in_sql).await,
        ) else {
            return None;
        };
        let ty = |cols: &[(String, String)], name: &str| {
            cols.iter()
                .find(|(c, _)| c == name)
                .and_then(|(_, t)| key_class(d, t))
        };
        let pairs = cand
            .each_key
            .iter()
            .zip(cand.in_key)
            .map(|(ek, ik)| KeyPair::new(ty(&et, ek)?, ty(&it, ik)?))
            .collect::<Option<Vec<_>>>()?;
        if d == Dialect::Sqlite {
            let guard = pool
                .query(&crate::pushdown::sqlite_guard(&cand))
                .await
                .ok()?;
            let clean = guard
                .rows
                .first()
                .and_then(|r| r.first())
                .is_some_and(|v| v.as_f64() == Some(0.0));
            if !clean {
                return None;
            }
        }
        crate::pushdown::subset_pushdown(check, d, &pairs)
    }

    /// The driver that reads `probe`: its source's, or the local one for probes that name
    /// none.
    fn driver_for(&self, probe: &Probe, conns: &Conns) -> Result<Driver, String> {
        match probe.source() {
            Some(s) => match conns.get(s) {
                Some(Ok(d)) => Ok(d.clone()),
                Some(Err(e)) => Err(format!("source `{s}` is unavailable: {e}")),
                None => Err(format!("unknown source `{s}`")),
            },
            None => crate::local_driver(probe)
                .ok_or_else(|| format!("internal error: {} names no source", probe.describe())),
        }
    }

    /// One probe's read: waits for its source's bound (and the budget), then the driver
    /// reads it into a table or, for `sides`, into key sets.
    fn read_probe(
        &self,
        probe: &Probe,
        plan: &RunPlan<'_>,
        bounds: &mut Bounds,
        down: &DownDuringRun,
        gate: Gate,
        sides: &[KeyedProbe],
    ) -> BoxFuture<'static, Result<Output, String>> {
        let driver = match self.driver_for(probe, &plan.conns) {
            Ok(d) => d,
            Err(msg) => return async move { Err(msg) }.boxed(),
        };
        let sem = match driver.concurrency() {
            Concurrency::PerSource(n) => Some(
                bounds
                    .per_source
                    .entry(probe.source().unwrap_or_default().to_string())
                    .or_insert_with(|| Arc::new(Semaphore::new(n.max(1))))
                    .clone(),
            ),
            Concurrency::Local => Some(bounds.local.clone()),
            Concurrency::Inline => None,
        };
        let sink = match sides {
            [] => RowSink::table(),
            sides => RowSink::keys(sides),
        };
        let cx = ReadCx {
            now: plan.now,
            base_dir: self.base_dir(),
        };
        let read = driver.read(probe, sink, &cx);
        let (down, source) = (down.clone(), probe.source().map(str::to_string));
        async move {
            let _permit = match sem {
                Some(sem) => Some(gate.acquire(sem).await?),
                None => None,
            };
            read.await.map_err(|e| {
                if let (Some(reason), Some(source)) = (e.down, source) {
                    down.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(source)
                        .or_insert(reason);
                }
                e.message
            })
        }
        .boxed()
    }
}

/// Every distinct probe the checks read (first-seen order), its readers, and its shape:
/// probes read only by set checks on SQL or Redis go straight into key sets (no table).
fn shapes(checks: &[Planned<'_>]) -> (Vec<(Probe, Shape)>, Readers) {
    let mut order: Vec<Probe> = Vec::new();
    let mut readers: HashMap<Probe, Vec<usize>> = HashMap::new();
    let mut keyed_sides: HashMap<Probe, Vec<KeyedProbe>> = HashMap::new();
    let mut table_read: HashSet<Probe> = HashSet::new();
    for (i, c) in checks.iter().enumerate() {
        if c.early.is_some() {
            continue;
        }
        for p in c.reads() {
            let r = readers.entry(p.clone()).or_insert_with(|| {
                order.push(p.clone());
                Vec::new()
            });
            if !r.contains(&i) {
                r.push(i);
            }
        }
        if let Some(p) = &c.pushed {
            table_read.insert(p.clone());
            continue;
        }
        let sides = match &c.inv.check {
            Check::Same(p) | Check::Disjoint(p) => [&p.left, &p.right],
            Check::Subset(s) => [&s.each, &s.within],
            other => {
                table_read.extend(other.probes().into_iter().cloned());
                continue;
            }
        };
        for kp in sides {
            if matches!(kp.probe, Probe::Sql { .. } | Probe::Redis(_)) {
                keyed_sides
                    .entry(kp.probe.clone())
                    .or_default()
                    .push(kp.clone());
            } else {
                table_read.insert(kp.probe.clone());
            }
        }
    }
    let probes = order
        .into_iter()
        .map(|p| {
            let shape = match keyed_sides.remove(&p) {
                Some(sides) if !table_read.contains(&p) => Shape::Keys(sides),
                _ => Shape::Table,
            };
            (p, shape)
        })
        .collect();
    (probes, readers)
}

/// The gate of a read shared by these probes' readers.
fn gate_for(plan: &RunPlan<'_>, probes: &[&Probe]) -> Gate {
    Gate {
        budget: plan.budget,
        readers: probes
            .iter()
            .filter_map(|p| plan.readers.get(*p))
            .flatten()
            .map(|&i| plan.checks[i].started.clone())
            .collect(),
        spent: Arc::default(),
    }
}

/// Spawns a read so it progresses on its own, shared by every check that needs it.
fn spawn_shared<T: Clone + Send + Sync + 'static>(
    fut: BoxFuture<'static, Result<T, String>>,
) -> Shared<BoxFuture<'static, Result<T, String>>> {
    let handle = tokio::spawn(fut);
    async move {
        handle
            .await
            .unwrap_or_else(|e| Err(format!("probe task failed: {e}")))
    }
    .boxed()
    .shared()
}

type Progress = Arc<dyn Fn(usize, usize) + Send + Sync>;

/// One check's wait and evaluation, owning what it needs (it runs on its own task).
struct CheckTask {
    inv: Invariant,
    now: DateTime<Utc>,
    pushed: Option<Probe>,
    tables: Vec<(Probe, SharedProbe)>,
    keyed: Vec<(Probe, SharedKeyed)>,
    join: Option<(JoinRelation, SharedProbe)>,
    previous: Option<Vec<Remembered>>,
    /// The earlier runs `hist` sees, for an invariant with `history:`.
    past: Option<Vec<PastRun>>,
    vacuous_since: Option<DateTime<Utc>>,
    spent: Vec<Arc<AtomicBool>>,
    budget: Option<Budget>,
}

impl CheckTask {
    fn new(
        c: &Planned<'_>,
        reads: &Reads,
        budget: Option<Budget>,
        opts: &RunOptions,
        now: DateTime<Utc>,
    ) -> CheckTask {
        let mut tables = Vec::new();
        let mut keyed = Vec::new();
        let mut spent = Vec::new();
        for p in c.reads() {
            match (reads.keyed.get(p), reads.tables.get(p)) {
                (Some(f), _) => keyed.push((p.clone(), f.clone())),
                (None, Some(f)) => tables.push((p.clone(), f.clone())),
                // Never planned: the evaluator reports the probe as not read.
                (None, None) => {}
            }
            spent.extend(reads.spent.get(p).cloned());
        }
        let join = match &c.inv.check {
            Check::Join(jc) => {
                let rel = jc.relation();
                reads.joins.get(&rel).cloned().map(|f| (rel, f))
            }
            _ => None,
        };
        let previous = match &c.inv.check {
            Check::Transitions(_) => opts.remembered.get(&c.inv.id).cloned(),
            _ => None,
        };
        let past = c
            .inv
            .history
            .as_ref()
            .and_then(|_| opts.history.get(&c.inv.id).cloned());
        let vacuous_since = opts.vacuous_since.get(&c.inv.id).copied();
        CheckTask {
            inv: c.inv.clone(),
            now,
            pushed: c.pushed.clone(),
            tables,
            keyed,
            join,
            previous,
            past,
            vacuous_since,
            spent,
            budget,
        }
    }

    async fn run(self) -> (InvariantResult, Option<Vec<Remembered>>) {
        let t0 = Instant::now();
        let CheckTask {
            inv,
            now,
            pushed,
            tables,
            keyed,
            join,
            previous,
            past,
            vacuous_since,
            spent,
            budget,
        } = self;
        let read = async {
            let mut snap = Snapshot::new(now);
            if let Some(prev) = previous {
                snap.remembered.insert(inv.id.clone(), prev);
            }
            if let Some(past) = past {
                snap.history.insert(inv.id.clone(), past);
            }
            if let Some(since) = vacuous_since {
                snap.vacuous_since.insert(inv.id.clone(), since);
            }
            for (p, f) in tables {
                snap.probes.insert(p, f.await);
            }
            for (p, f) in keyed {
                snap.keyed.insert(p, f.await);
            }
            if let Some((rel, f)) = join {
                snap.joins.insert(rel, f.await);
            }
            snap
        };
        let budget_spent = || {
            spent
                .iter()
                .any(|s| s.load(Ordering::SeqCst))
                .then(|| budget.map(|b| b.reason()))
                .flatten()
        };
        let snap = match inv.timeout {
            Some(limit) => tokio::time::timeout(limit, read).await.ok(),
            None => Some(read.await),
        };
        let (verdict, memory) = match (snap, budget_spent()) {
            (None, _) => (
                Verdict::error(format!(
                    "timed out after {}",
                    invar_core::units::format_duration(inv.timeout.unwrap_or_default())
                )),
                None,
            ),
            (Some(_), Some(reason)) => (Verdict::skip(reason), None),
            (Some(snap), None) => decide(&inv, &snap, pushed.as_ref()),
        };
        (to_result(&inv, verdict, t0.elapsed()), memory)
    }
}

/// The report of a run.
fn report(
    run_id: String,
    suite: &Suite,
    opts: &RunOptions,
    now: DateTime<Utc>,
    started: Instant,
    results: Vec<InvariantResult>,
    sources_unavailable: Vec<RunProblem>,
) -> RunReport {
    let skipped_budget = results
        .iter()
        .filter(|r| r.outcome == Outcome::Skip && r.reason.as_deref().is_some_and(is_budget_skip))
        .count() as u64;
    let mut report = RunReport::new(run_id, &suite.name, opts.trigger, now);
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report.skipped_budget = skipped_budget;
    report.set_results(results, sources_unavailable, suite.fail_on);
    report
}

/// The suite's budget for one run.
#[derive(Debug, Clone, Copy)]
struct Budget {
    deadline: Instant,
    budget: Duration,
}

impl Budget {
    /// The reason of a check the budget stopped (`budget:` is how the history store
    /// categorises it).
    fn reason(&self) -> String {
        format!(
            "budget: the suite's {} budget was spent before this check started",
            invar_core::units::format_duration(self.budget)
        )
    }
}

/// Whether a skip reason is the budget's.
fn is_budget_skip(reason: &str) -> bool {
    reason.starts_with("budget:")
}

/// Where a probe waits for its turn to read: past the suite's budget deadline, a probe no
/// started check needs is not read (its invariants become `skip`). Starting marks every
/// invariant that reads it as started, so their other probes still run after the deadline.
#[derive(Debug, Clone, Default)]
struct Gate {
    budget: Option<Budget>,
    /// The started flags of the invariants that read this probe.
    readers: Vec<Arc<AtomicBool>>,
    /// Set when the budget stopped this probe.
    spent: Arc<AtomicBool>,
}

impl Gate {
    fn any_started(&self) -> bool {
        self.readers.iter().any(|s| s.load(Ordering::SeqCst))
    }

    /// Past the deadline, with no reader started: the probe is not read.
    fn stop(&self, b: &Budget) -> Option<String> {
        if Instant::now() >= b.deadline && !self.any_started() {
            self.spent.store(true, Ordering::SeqCst);
            return Some(b.reason());
        }
        None
    }

    /// Takes a permit of `sem`, unless the budget runs out first.
    async fn acquire(&self, sem: Arc<Semaphore>) -> Result<OwnedSemaphorePermit, String> {
        let permit = match &self.budget {
            None => sem.acquire_owned().await.map_err(|e| e.to_string())?,
            Some(b) => {
                let acquire = sem.acquire_owned();
                tokio::pin!(acquire);
                tokio::select! {
                    p = &mut acquire => p.map_err(|e| e.to_string())?,
                    _ = tokio::time::sleep_until(b.deadline.into()) => {
                        if let Some(reason) = self.stop(b) {
                            return Err(reason);
                        }
                        acquire.await.map_err(|e| e.to_string())?
                    }
                }
            }
        };
        if let Some(reason) = self.budget.as_ref().and_then(|b| self.stop(b)) {
            return Err(reason);
        }
        for s in &self.readers {
            s.store(true, Ordering::SeqCst);
        }
        Ok(permit)
    }
}

/// The verdict, plus the states a `transitions` invariant remembers from this run.
fn decide(
    inv: &Invariant,
    snap: &Snapshot,
    pushed: Option<&Probe>,
) -> (Verdict, Option<Vec<Remembered>>) {
    match pushed {
        Some(p) => (
            match snap.probes.get(p) {
                Some(Ok(t)) => invar_core::eval::subset_from_pushdown(t),
                Some(Err(e)) => Verdict::error(e.clone()),
                None => Verdict::error("pushed-down probe was not read"),
            },
            None,
        ),
        None => evaluate_with_memory(inv, snap),
    }
}

fn to_result(inv: &Invariant, v: Verdict, took: Duration) -> InvariantResult {
    InvariantResult {
        id: inv.id.clone(),
        title: inv.title.clone(),
        severity: inv.severity.as_str().to_string(),
        outcome: v.outcome,
        reason: v.reason,
        examined: v.examined,
        vacuous: v.vacuous,
        duration_ms: took.as_millis() as u64,
        measured: v.measured,
        violations_total: v.violations_total,
        violations: v.violations,
        runbook: inv.runbook.clone(),
        silenced: None,
    }
}
