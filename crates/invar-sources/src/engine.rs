//! The run: select, guard, connect, read every distinct probe once (concurrently, bounded per
//! source), evaluate each invariant as soon as its probes are in, and assemble the report.

use crate::fusion::FusedQuery;
use crate::http::HttpConn;
use crate::redis::RedisConn;
use crate::sink::{Output, Sink};
use crate::sql::{Dialect, SqlPool};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use invar_core::KeyedProbe;
use invar_core::MetricsProbe;
use invar_core::eval::KeyedResult;
use invar_core::{
    Check, Config, Invariant, InvariantResult, JoinRelation, Outcome, Probe, ProbeResult,
    Remembered, RunReport, Snapshot, SourceKind, SourceUnavailable, Suite, Table, Value, Verdict,
    evaluate_with_memory, skip_if_decision,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What to run and how it was triggered.
#[derive(Clone)]
pub struct RunOptions {
    pub suite: String,
    /// Restrict to these ids (already checked to exist).
    pub only: Vec<String>,
    /// `cli`, `schedule` or `api`.
    pub trigger: String,
    /// Called after each invariant is decided: (done, total).
    pub progress: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
    /// The remembered states of each `transitions` invariant (by id), as loaded from the
    /// history store; an invariant without an entry has never run (its run is a baseline).
    pub remembered: HashMap<String, Vec<Remembered>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            suite: "all".into(),
            only: Vec::new(),
            trigger: "cli".into(),
            progress: None,
            remembered: HashMap::new(),
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

/// Probes that are not SQL (commands, files) share one bound, so a wide run cannot fork-bomb.
const LOCAL_PROBE_CONCURRENCY: usize = 8;
/// Probes read at once from one Redis or HTTP source (an HTTP probe's own requests are
/// bounded again inside it).
const REMOTE_PROBE_CONCURRENCY: usize = 4;
/// A join's in-memory SQL is bounded by this (the invariant's `timeout` may cut it sooner).
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A connected source. Files have none (they are opened per probe).
#[derive(Debug, Clone)]
enum Conn {
    Sql(Arc<SqlPool>),
    Redis(Arc<RedisConn>),
    Http(Arc<HttpConn>),
}

impl Conn {
    fn sql(&self) -> Option<&Arc<SqlPool>> {
        match self {
            Conn::Sql(p) => Some(p),
            _ => None,
        }
    }
}

type Conns = HashMap<String, Result<Conn, String>>;

/// Sources found unreachable while reading (an HTTP request without an answer, a Redis
/// connection lost mid-run): source → the first reason.
type DownDuringRun = Arc<std::sync::Mutex<BTreeMap<String, String>>>;

pub struct Engine {
    config: Arc<Config>,
    last_stats: std::sync::Mutex<RunStats>,
    last_remembered: std::sync::Mutex<HashMap<String, Vec<Remembered>>>,
}

/// What the last run cost its sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Statements sent per SQL source.
    pub queries: BTreeMap<String, u64>,
    /// Probes read per Redis source (each distinct probe once per run).
    pub redis_reads: BTreeMap<String, u64>,
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

impl Engine {
    pub fn new(config: Arc<Config>) -> Engine {
        Engine {
            config,
            last_stats: Default::default(),
            last_remembered: Default::default(),
        }
    }

    /// The states to remember from the most recent [`Engine::run`]: for each `transitions`
    /// invariant that was decided (not `error`, not skipped), every key it saw, seen now.
    /// Invariants absent here keep what the store remembers untouched.
    pub fn take_remembered(&self) -> HashMap<String, Vec<Remembered>> {
        std::mem::take(
            &mut *self
                .last_remembered
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Statistics of the most recent [`Engine::run`].
    pub fn last_stats(&self) -> RunStats {
        self.last_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn base_dir(&self) -> PathBuf {
        self.config
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Runs one suite and returns the report. Never fails as a whole: whatever cannot be
    /// evaluated becomes `error` on the invariants that needed it.
    pub async fn run(&self, opts: &RunOptions) -> RunReport {
        let started = Instant::now();
        self.take_remembered();
        let now = chrono::Utc::now();
        let run_id = uuid::Uuid::now_v7().to_string();
        let suite = self
            .config
            .suite(&opts.suite)
            .cloned()
            .unwrap_or_else(Suite::all);

        let mut results: Vec<Option<InvariantResult>> = Vec::new();
        let selected = match select(&self.config, &suite, &opts.only) {
            Ok(s) => s,
            Err(e) => {
                // A select that cannot be evaluated is an automation error for the whole run.
                return self.report(
                    run_id,
                    &suite,
                    opts,
                    now,
                    started,
                    vec![],
                    vec![SourceUnavailable {
                        source: "suite".into(),
                        error: e,
                    }],
                );
            }
        };
        results.resize(selected.len(), None);
        let total = selected.len();
        // The suite's budget: checks that have not started by then are skipped.
        let budget = suite.budget.map(|b| Budget {
            deadline: started + b,
            budget: b,
        });
        // Whether each invariant's check has started (one of its probes began reading).
        let started_flags: Vec<Arc<AtomicBool>> = (0..total)
            .map(|_| Arc::new(AtomicBool::new(false)))
            .collect();

        // Sources the selected checks need; connected once, concurrently.
        let mut needed: Vec<String> = Vec::new();
        for inv in &selected {
            for s in inv.check.sources() {
                if !needed.iter().any(|n| n == s) {
                    needed.push(s.to_string());
                }
            }
        }
        let pools = self.connect_all(&needed).await;
        // Cost guards, decided before any probe is read.
        let mut facts_cache: HashMap<String, BTreeMap<String, Value>> = HashMap::new();
        let mut skipped: HashMap<usize, Verdict> = HashMap::new();
        for (i, inv) in selected.iter().enumerate() {
            let Some(cond) = &inv.skip_if else { continue };
            let mut facts = Vec::new();
            for s in inv.check.sources() {
                if !facts_cache.contains_key(s) {
                    let f = self.source_facts(s, pools.get(s)).await;
                    facts_cache.insert(s.to_string(), f);
                }
                facts.push(facts_cache[s].clone());
            }
            match skip_if_decision(cond, &facts, now) {
                Ok(Some(reason)) => {
                    skipped.insert(i, Verdict::skip(reason));
                }
                Ok(None) => {}
                Err(e) => {
                    skipped.insert(i, Verdict::error(format!("skip_if: {e}")));
                }
            }
        }

        // A source counts as unavailable for this run when a check that was not skipped needed it.
        let mut unavailable: Vec<SourceUnavailable> = Vec::new();
        for name in &needed {
            let used = selected.iter().enumerate().any(|(i, inv)| {
                !skipped.contains_key(&i) && inv.check.sources().contains(&name.as_str())
            });
            if let Some(Err(e)) = pools.get(name)
                && used
            {
                unavailable.push(SourceUnavailable {
                    source: name.clone(),
                    error: e.clone(),
                });
            }
        }

        // One shared future per distinct probe; per-source semaphores bound the concurrency.
        let mut semaphores: HashMap<String, Arc<Semaphore>> = HashMap::new();
        let local = Arc::new(Semaphore::new(LOCAL_PROBE_CONCURRENCY));
        let mut probes: HashMap<Probe, SharedProbe> = HashMap::new();
        let mut pushed: HashMap<usize, Probe> = HashMap::new();
        let dialect_of = |s: &str| match pools.get(s) {
            Some(Ok(Conn::Sql(p))) => Some(p.dialect()),
            _ => None,
        };
        let down: DownDuringRun = Arc::default();
        // In first-seen order; the set keeps planning linear in the number of probes.
        let mut wanted: Vec<Probe> = Vec::new();
        let mut seen: std::collections::HashSet<Probe> = std::collections::HashSet::new();
        // Pushdown candidates learn their key types by preparing both queries: all at once,
        // not one round trip after another before any probe starts.
        let pools_ref = &pools;
        let rewritten = futures::future::join_all(
            selected
                .iter()
                .enumerate()
                .filter(|(i, _)| !skipped.contains_key(i))
                .map(|(i, inv)| async move { (i, self.pushdown(&inv.check, pools_ref).await) }),
        )
        .await;
        for (i, p) in rewritten {
            if let Some(p) = p {
                pushed.insert(i, p);
            }
        }
        // The invariants that read each probe (whose checks start when it starts).
        let mut readers: HashMap<Probe, Vec<usize>> = HashMap::new();
        for (i, inv) in selected.iter().enumerate() {
            if skipped.contains_key(&i) {
                continue;
            }
            let mine: Vec<Probe> = match pushed.get(&i) {
                Some(p) => vec![p.clone()],
                None => inv.check.probes().into_iter().cloned().collect(),
            };
            for p in mine {
                let r = readers.entry(p.clone()).or_default();
                if !r.contains(&i) {
                    r.push(i);
                }
                if seen.insert(p.clone()) {
                    wanted.push(p);
                }
            }
        }
        let gate_for = |probes: &[&Probe]| Gate {
            budget,
            readers: probes
                .iter()
                .filter_map(|p| readers.get(*p))
                .flatten()
                .map(|&i| started_flags[i].clone())
                .collect(),
            spent: Arc::default(),
        };
        // Per probe, set when the budget stopped it before it started.
        let mut spent: HashMap<Probe, Arc<AtomicBool>> = HashMap::new();
        // Metrics probes over the same source, table and filter become one fused query.
        let mut groups: Vec<(FusionKey, Vec<&MetricsProbe>)> = Vec::new();
        for p in &wanted {
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
            let gate = gate_for(&member_probes.iter().collect::<Vec<_>>());
            let fused_spent = gate.spent.clone();
            let fused = match dialect_of(source) {
                Some(d) => {
                    let q = Arc::new(FusedQuery::build(d, members));
                    let sql = Probe::Sql {
                        source: source.clone(),
                        sql: q.sql.clone(),
                    };
                    Some((
                        q,
                        self.spawn_shared(as_table(self.probe_future(
                            &sql,
                            &pools,
                            &mut semaphores,
                            &local,
                            &down,
                            now,
                            gate,
                            Sink::table(),
                        ))),
                    ))
                }
                None => None,
            };
            for (m, probe) in members.iter().zip(member_probes) {
                let shared = match &fused {
                    Some((q, f)) => {
                        let (q, f, m) = (q.clone(), f.clone(), (*m).clone());
                        async move { f.await.and_then(|t| q.project(&t, &m).map(Arc::new)) }
                            .boxed()
                            .shared()
                    }
                    // The source is down: the same error as any other probe on it.
                    None => self.spawn_shared(as_table(self.probe_future(
                        &probe,
                        &pools,
                        &mut semaphores,
                        &local,
                        &down,
                        now,
                        Gate::default(),
                        Sink::table(),
                    ))),
                };
                spent.insert(probe.clone(), fused_spent.clone());
                probes.insert(probe, shared);
            }
        }
        // Probes read only by set checks (SQL, Redis) go straight into key sets: no table.
        let mut keyed_sides: HashMap<Probe, Vec<KeyedProbe>> = HashMap::new();
        let mut table_read: std::collections::HashSet<Probe> = Default::default();
        for (i, inv) in selected.iter().enumerate() {
            if skipped.contains_key(&i) {
                continue;
            }
            if let Some(p) = pushed.get(&i) {
                table_read.insert(p.clone());
                continue;
            }
            let sides = match &inv.check {
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
        keyed_sides.retain(|p, _| !table_read.contains(p));
        let mut keyed: HashMap<Probe, SharedKeyed> = HashMap::new();
        for p in wanted {
            if probes.contains_key(&p) || keyed.contains_key(&p) {
                continue;
            }
            let gate = gate_for(&[&p]);
            spent.insert(p.clone(), gate.spent.clone());
            let sides = keyed_sides.get(&p);
            let sink = sides.map_or_else(Sink::table, |s| Sink::keys(s));
            let fut =
                self.probe_future(&p, &pools, &mut semaphores, &local, &down, now, gate, sink);
            if sides.is_some() {
                keyed.insert(p, self.spawn_shared(as_keys(fut)));
            } else {
                probes.insert(p, self.spawn_shared(as_table(fut)));
            }
        }
        // Joins: each distinct relation computed once, after its probes are in.
        let mut joins: HashMap<JoinRelation, SharedProbe> = HashMap::new();
        for (i, inv) in selected.iter().enumerate() {
            let Check::Join(jc) = &inv.check else {
                continue;
            };
            if skipped.contains_key(&i) {
                continue;
            }
            let rel = jc.relation();
            if joins.contains_key(&rel) {
                continue;
            }
            let inputs: Vec<(String, SharedProbe)> = rel
                .tables
                .iter()
                .map(|(name, p)| (name.clone(), probes[p].clone()))
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
            joins.insert(rel, self.spawn_shared(fut));
        }
        // Each invariant: await its probes (within its timeout), then evaluate (pure).
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for (i, inv) in selected.iter().enumerate() {
            if let Some(v) = skipped.remove(&i) {
                results[i] = Some(to_result(inv, v, Duration::ZERO));
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if let Some(p) = &opts.progress {
                    p(n, total);
                }
                continue;
            }
            let inv: Invariant = (*inv).clone();
            let pushed_probe = pushed.get(&i).cloned();
            let mut needed_probes: Vec<(Probe, SharedProbe)> = Vec::new();
            let mut needed_keys: Vec<(Probe, SharedKeyed)> = Vec::new();
            let mine: Vec<&Probe> = match &pushed_probe {
                Some(p) => vec![p],
                None => inv.check.probes(),
            };
            for p in mine {
                match keyed.get(p) {
                    Some(f) => needed_keys.push((p.clone(), f.clone())),
                    None => needed_probes.push((p.clone(), probes[p].clone())),
                }
            }
            let needed_join: Option<(JoinRelation, SharedProbe)> = match &inv.check {
                Check::Join(jc) => {
                    let rel = jc.relation();
                    joins.get(&rel).cloned().map(|f| (rel, f))
                }
                _ => None,
            };
            let progress = opts.progress.clone();
            let done = done.clone();
            let previous = match &inv.check {
                Check::Transitions(_) => opts.remembered.get(&inv.id).cloned(),
                _ => None,
            };
            let my_spent: Vec<Arc<AtomicBool>> = needed_probes
                .iter()
                .map(|(p, _)| p)
                .chain(needed_keys.iter().map(|(p, _)| p))
                .filter_map(|p| spent.get(p).cloned())
                .collect();
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let read = async {
                    let mut snap = Snapshot::new(now);
                    if let Some(prev) = previous {
                        snap.remembered.insert(inv.id.clone(), prev);
                    }
                    for (p, f) in needed_probes {
                        let r = f.await;
                        snap.probes.insert(p, r);
                    }
                    for (p, f) in needed_keys {
                        let r = f.await;
                        snap.keyed.insert(p, r);
                    }
                    if let Some((rel, f)) = needed_join {
                        let r = f.await;
                        snap.joins.insert(rel, r);
                    }
                    snap
                };
                let budget_spent = || {
                    my_spent
                        .iter()
                        .any(|s| s.load(Ordering::SeqCst))
                        .then(|| budget.map(|b| b.reason()))
                        .flatten()
                };
                let (verdict, memory) = match inv.timeout {
                    Some(limit) => match tokio::time::timeout(limit, read).await {
                        Ok(snap) => match budget_spent() {
                            Some(reason) => (Verdict::skip(reason), None),
                            None => decide(&inv, &snap, pushed_probe.as_ref()),
                        },
                        Err(_) => (
                            Verdict::error(format!(
                                "timed out after {}",
                                invar_core::units::format_duration(limit)
                            )),
                            None,
                        ),
                    },
                    None => {
                        let snap = read.await;
                        match budget_spent() {
                            Some(reason) => (Verdict::skip(reason), None),
                            None => decide(&inv, &snap, pushed_probe.as_ref()),
                        }
                    }
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if let Some(p) = &progress {
                    p(n, total);
                }
                (i, to_result(&inv, verdict, t0.elapsed()), memory)
            }));
        }
        // The tasks hold what they need: a probe's result is freed once the last check reading
        // it is decided, not at the end of the run.
        drop((probes, keyed, joins));
        let mut remembered: HashMap<String, Vec<Remembered>> = HashMap::new();
        for t in tasks {
            match t.await {
                Ok((i, r, memory)) => {
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
            .zip(&selected)
            .map(|(r, inv)| {
                r.unwrap_or_else(|| {
                    to_result(
                        inv,
                        Verdict::error("internal error: no verdict"),
                        Duration::ZERO,
                    )
                })
            })
            .collect();
        let stats = RunStats {
            queries: pools
                .iter()
                .filter_map(|(name, p)| {
                    let p = p.as_ref().ok()?.sql()?;
                    Some((name.clone(), p.queries()))
                })
                .collect(),
            redis_reads: pools
                .iter()
                .filter_map(|(name, c)| match c {
                    Ok(Conn::Redis(r)) => Some((name.clone(), r.reads())),
                    _ => None,
                })
                .collect(),
        };
        // Sources that went down while being read (HTTP without an answer, Redis lost).
        for (source, error) in down.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if !unavailable.iter().any(|u| &u.source == source) {
                unavailable.push(SourceUnavailable {
                    source: source.clone(),
                    error: error.clone(),
                });
            }
        }
        *self.last_stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
        *self
            .last_remembered
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = remembered;
        self.report(run_id, &suite, opts, now, started, results, unavailable)
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        run_id: String,
        suite: &Suite,
        opts: &RunOptions,
        now: chrono::DateTime<chrono::Utc>,
        started: Instant,
        results: Vec<InvariantResult>,
        sources_unavailable: Vec<SourceUnavailable>,
    ) -> RunReport {
        let skipped_budget = results
            .iter()
            .filter(|r| {
                r.outcome == Outcome::Skip && r.reason.as_deref().is_some_and(is_budget_skip)
            })
            .count() as u64;
        let mut report = RunReport::new(run_id, &suite.name, &opts.trigger, now);
        report.duration_ms = started.elapsed().as_millis() as u64;
        report.skipped_budget = skipped_budget;
        report.set_results(results, sources_unavailable, suite.fail_on);
        report
    }

    async fn connect_all(&self, names: &[String]) -> Conns {
        let futs = names.iter().filter_map(|name| {
            let src = self.config.sources.get(name)?;
            let name = name.clone();
            let kind = src.kind.clone();
            Some(async move {
                let sql = |r: Result<SqlPool, String>| r.map(|p| Conn::Sql(Arc::new(p)));
                let r = match &kind {
                    SourceKind::Postgres(s) => sql(SqlPool::connect_postgres(s).await),
                    SourceKind::Mysql(s) => sql(SqlPool::connect_mysql(s).await),
                    SourceKind::Sqlite(s) => sql(SqlPool::connect_sqlite(s).await),
                    SourceKind::Redis(r) => RedisConn::connect(r)
                        .await
                        .map(|c| Conn::Redis(Arc::new(c))),
                    SourceKind::Http(h) => HttpConn::new(h).map(|c| Conn::Http(Arc::new(c))),
                    SourceKind::File(f) => {
                        if f.path.exists() {
                            return None;
                        }
                        Err(format!("file {} does not exist", f.path.display()))
                    }
                };
                Some((name, r))
            })
        });
        futures::future::join_all(futs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The `source` map a cost guard sees: `name`, `type`, `size_bytes` when known.
    async fn source_facts(
        &self,
        name: &str,
        pool: Option<&Result<Conn, String>>,
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
        let size = match &src.kind {
            SourceKind::Sqlite(s) => std::fs::metadata(&s.path).ok().map(|m| m.len()),
            SourceKind::File(f) => std::fs::metadata(&f.path).ok().map(|m| m.len()),
            _ => match pool {
                Some(Ok(Conn::Sql(p))) => p.size_bytes().await.ok(),
                _ => None,
            },
        };
        m.insert(
            "size_bytes".to_string(),
            size.map(|s| Value::Int(s as i64)).unwrap_or(Value::Null),
        );
        m
    }

    /// The pushed-down form of a subset check, when the key columns' types (learned by
    /// preparing both queries; nothing runs) let the database compare keys exactly as
    /// memory does (`pushdown.rs`). SQLite also needs its guard query to find no REAL or
    /// BLOB key.
    async fn pushdown(&self, check: &invar_core::Check, pools: &Conns) -> Option<Probe> {
        use crate::pushdown::{KeyPair, key_class};
        let cand = crate::pushdown::candidate(check)?;
        let Some(Ok(Conn::Sql(pool))) = pools.get(cand.source) else {
            return None;
        };
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

    /// Spawns a probe so it progresses on its own, shared by every invariant that needs it.
    fn spawn_shared<T: Clone + Send + Sync + 'static>(
        &self,
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

    #[allow(clippy::too_many_arguments)]
    fn probe_future(
        &self,
        probe: &Probe,
        pools: &Conns,
        semaphores: &mut HashMap<String, Arc<Semaphore>>,
        local: &Arc<Semaphore>,
        down: &DownDuringRun,
        now: chrono::DateTime<chrono::Utc>,
        gate: Gate,
        sink: Sink,
    ) -> BoxFuture<'static, Result<Output, String>> {
        let probe = probe.clone();
        // A connected source of the probe, or the probe's error.
        let conn_of = |source: &str| -> Result<Conn, String> {
            match pools.get(source) {
                Some(Ok(c)) => Ok(c.clone()),
                Some(Err(e)) => Err(format!("source `{source}` is unavailable: {e}")),
                None => Err(format!("unknown source `{source}`")),
            }
        };
        let mut remote_sem = |source: &str| {
            semaphores
                .entry(source.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(REMOTE_PROBE_CONCURRENCY)))
                .clone()
        };
        match &probe {
            Probe::Redis(rp) => {
                let conn = match conn_of(&rp.source) {
                    Ok(Conn::Redis(c)) => c,
                    Ok(_) => {
                        let msg = format!("`{}` is not a redis source", rp.source);
                        return async move { Err(msg) }.boxed();
                    }
                    Err(msg) => return async move { Err(msg) }.boxed(),
                };
                let sem = remote_sem(&rp.source);
                let (rp, down) = (rp.clone(), down.clone());
                async move {
                    let _permit = gate.acquire(sem).await?;
                    match conn.read_into(&rp, sink).await {
                        Ok(s) => s.finish_blocking().await,
                        Err(e) => {
                            let msg = format!("`{}`: {}", rp.source, e.message);
                            if e.source_down {
                                down.lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .entry(rp.source.clone())
                                    .or_insert_with(|| e.message.clone());
                            }
                            Err(msg)
                        }
                    }
                }
                .boxed()
            }
            Probe::Http(hp) => {
                let conn = match conn_of(&hp.source) {
                    Ok(Conn::Http(c)) => c,
                    Ok(_) => {
                        let msg = format!("`{}` is not an http source", hp.source);
                        return async move { Err(msg) }.boxed();
                    }
                    Err(msg) => return async move { Err(msg) }.boxed(),
                };
                let sem = remote_sem(&hp.source);
                let (hp, down) = (hp.clone(), down.clone());
                async move {
                    let _permit = gate.acquire(sem).await?;
                    match conn.read(&hp).await {
                        Ok(t) => Ok(sink.fill(t)),
                        Err(e) => {
                            // No answer: the source is down for this run.
                            down.lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .entry(hp.source.clone())
                                .or_insert_with(|| e.clone());
                            Err(format!("`{}`: {e}", hp.source))
                        }
                    }
                }
                .boxed()
            }
            Probe::Sql { source, sql } => {
                let pool = match pools.get(source) {
                    Some(Ok(Conn::Sql(p))) => p.clone(),
                    Some(Ok(_)) => {
                        let msg = format!("`{source}` is not an sql source");
                        return async move { Err(msg) }.boxed();
                    }
                    Some(Err(e)) => {
                        let msg = format!("source `{source}` is unavailable: {e}");
                        return async move { Err(msg) }.boxed();
                    }
                    None => {
                        let msg = format!("unknown source `{source}`");
                        return async move { Err(msg) }.boxed();
                    }
                };
                let limit = match self.config.sources.get(source).map(|s| &s.kind) {
                    Some(SourceKind::Postgres(s)) | Some(SourceKind::Mysql(s)) => s.max_connections,
                    Some(SourceKind::Sqlite(s)) => s.max_connections,
                    _ => 4,
                }
                .max(1) as usize;
                let sem = semaphores
                    .entry(source.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                    .clone();
                let sql = sql.clone();
                let source = source.clone();
                async move {
                    let _permit = gate.acquire(sem).await?;
                    pool.query_into(&sql, sink)
                        .await
                        .map_err(|e| format!("`{source}`: {e}"))?
                        .finish_blocking()
                        .await
                }
                .boxed()
            }
            Probe::Metrics(m) => {
                // Reached only when the source has no pool (fused queries go through `Sql`).
                let msg = match pools.get(&m.source) {
                    Some(Err(e)) => format!("source `{}` is unavailable: {e}", m.source),
                    _ => format!("source `{}` cannot run metrics", m.source),
                };
                async move { Err(msg) }.boxed()
            }
            Probe::Values(vals) => {
                let t = Table {
                    columns: vec!["value".into()],
                    rows: vals.iter().map(|v| vec![Value::Text(v.clone())]).collect(),
                };
                async move { Ok(sink.fill(t)) }.boxed()
            }
            Probe::Lines(lp) => {
                let path = match &lp.file {
                    invar_core::FileRef::Path(p) => Ok(self.base_dir().join(p)),
                    invar_core::FileRef::Source(s) => {
                        match self.config.sources.get(s).map(|s| &s.kind) {
                            Some(SourceKind::File(f)) => match pools.get(s) {
                                Some(Err(e)) => Err(format!("source `{s}` is unavailable: {e}")),
                                _ => Ok(f.path.clone()),
                            },
                            _ => Err(format!("`{s}` is not a file source")),
                        }
                    }
                };
                let lp = lp.clone();
                let sem = local.clone();
                async move {
                    let path = path?;
                    let _permit = gate.acquire(sem).await?;
                    tokio::task::spawn_blocking(move || {
                        crate::lines::read_lines_at(&path, &lp, now)
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .map(|t| sink.fill(t))
                }
                .boxed()
            }
            Probe::Command(cp) => {
                let cp = cp.clone();
                let dir = self.base_dir();
                let sem = local.clone();
                async move {
                    let _permit = gate.acquire(sem).await?;
                    crate::command::run_command(&cp, &dir)
                        .await
                        .map(|t| sink.fill(t))
                }
                .boxed()
            }
        }
    }
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
    }
}
