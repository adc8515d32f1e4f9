//! The watcher's state: one slot per suite (its engine, schedule and in-process single-flight
//! lock), the shared store, and running a suite under both locks — the in-process mutex and
//! the store's lease, which is what keeps replicas on one store from running a suite twice.

use crate::clock::Clock;
use crate::schedule::Schedule;
use crate::status::{
    DeliveryCounts, IncidentStatus, InvariantStatus, LastRun, RECENT_RUNS, RecentOutcome,
    StatusSnapshot, SuiteStatus,
};
use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use invar_core::Trigger;
use invar_core::{Config, RunReport, Suite};
use invar_record as recorder;
use invar_sources::{Engine, RunOptions};
use invar_store::{IncidentQuery, RunQuery, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a suite's lease lasts without renewal: a replica that dies mid-run blocks the
/// suite for at most this long.
const LEASE_TTL: Duration = Duration::from_secs(60);
/// Renewal period while a run holds the lease.
const LEASE_RENEW: Duration = Duration::from_secs(20);
/// How long a status snapshot is reused.
const SNAPSHOT_TTL: Duration = Duration::from_secs(2);
/// The most incident events the status page's timelines read (the newest).
const TIMELINE_EVENTS: u32 = 5_000;

/// Why a run did not happen.
#[derive(Debug)]
pub enum RunError {
    /// The suite is running (here or on another replica): `lock_skipped`.
    Busy,
    /// Unknown suite or invariant ids (the message names them).
    Unknown(String),
    /// The watcher is stopping (SIGTERM): no new runs.
    ShuttingDown,
    /// The store could not be used (the message is safe to show).
    Failed(anyhow::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Busy => f.write_str("the suite is already running"),
            RunError::Unknown(m) => f.write_str(m),
            RunError::ShuttingDown => f.write_str("invar watch is shutting down"),
            RunError::Failed(e) => f.write_str(&invar_core::error_chain(e.as_ref())),
        }
    }
}

pub struct SuiteSlot {
    pub suite: Suite,
    pub schedule: Option<Schedule>,
    engine: Engine,
    running: Arc<tokio::sync::Mutex<()>>,
    next_run: std::sync::Mutex<Option<DateTime<Utc>>>,
}

impl SuiteSlot {
    pub fn is_running(&self) -> bool {
        self.running.try_lock().is_err()
    }
    pub fn set_next_run(&self, t: Option<DateTime<Utc>>) {
        *self.next_run.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
    pub fn next_run(&self) -> Option<DateTime<Utc>> {
        *self.next_run.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Watcher {
    pub cfg: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// This replica's name in leases and tick claims: `host-pid-random`.
    pub owner: String,
    pub clock: Clock,
    /// When this watcher started, on its clock: ticks before it belong to the misfire policy,
    /// not to the dead-man's switch.
    pub started_at: DateTime<Utc>,
    pub version: String,
    /// Config suites, plus the implicit `all` (runs of `--only` ids and of configs without
    /// suites).
    suites: BTreeMap<String, Arc<SuiteSlot>>,
    /// Set on SIGTERM: no new tick is claimed and no new run starts.
    draining: std::sync::atomic::AtomicBool,
    /// Scheduled ticks in flight, awaited on shutdown.
    tick_tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The last status snapshot, reused for a moment so scrapes and open status pages cannot
    /// load the store the scheduler needs.
    snapshot_cache: tokio::sync::Mutex<Option<(std::time::Instant, Arc<StatusSnapshot>)>>,
}

impl Watcher {
    pub fn new(
        cfg: Arc<Config>,
        store: Arc<dyn Store>,
        clock: Clock,
        version: String,
    ) -> Result<Watcher> {
        let mut suites = BTreeMap::new();
        let mut all: Vec<Suite> = cfg.suites.clone();
        if cfg.suite("all").is_none() {
            all.push(Suite::all());
        }
        for s in all {
            let schedule = match &s.schedule {
                Some(expr) => Some(
                    Schedule::parse(expr, s.timezone.as_deref())
                        .map_err(|e| anyhow::anyhow!("suite `{}`: {e}", s.name))?,
                ),
                None => None,
            };
            suites.insert(
                s.name.clone(),
                Arc::new(SuiteSlot {
                    suite: s,
                    schedule,
                    engine: Engine::new(cfg.clone()),
                    running: Arc::new(tokio::sync::Mutex::new(())),
                    next_run: std::sync::Mutex::new(None),
                }),
            );
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        let owner = format!(
            "{host}-{}-{}",
            std::process::id(),
            &uuid::Uuid::now_v7().simple().to_string()[24..]
        );
        let started_at = clock.now();
        Ok(Watcher {
            cfg,
            store,
            owner,
            clock,
            started_at,
            version,
            suites,
            draining: Default::default(),
            tick_tasks: Default::default(),
            snapshot_cache: Default::default(),
        })
    }

    pub fn slot(&self, suite: &str) -> Option<&Arc<SuiteSlot>> {
        self.suites.get(suite)
    }

    /// Suites in config order (the implicit `all` last when the config has none by that name).
    pub fn slots(&self) -> Vec<&Arc<SuiteSlot>> {
        let mut out = self.shown_slots();
        if self.cfg.suite("all").is_none()
            && let Some(slot) = self.suites.get("all")
        {
            out.push(slot);
        }
        out
    }

    /// Suites to show and measure: the config's (a config without `suites:` has the one
    /// implicit `all`; the `all` added for `only` runs is not shown beside real suites).
    fn shown_slots(&self) -> Vec<&Arc<SuiteSlot>> {
        self.cfg
            .suites
            .iter()
            .filter_map(|s| self.suites.get(&s.name))
            .collect()
    }

    /// Checks a run request: the suite exists and every `only` id is an invariant.
    pub fn check_request(&self, suite: &str, only: &[String]) -> Result<(), RunError> {
        if !self.suites.contains_key(suite) {
            let known: Vec<String> = self
                .slots()
                .iter()
                .map(|s| format!("`{}`", s.suite.name))
                .collect();
            return Err(RunError::Unknown(format!(
                "unknown suite `{suite}`: expected one of {}",
                known.join(", ")
            )));
        }
        let unknown: Vec<String> = only
            .iter()
            .filter(|id| self.cfg.invariant(id).is_none())
            .map(|id| format!("`{id}`"))
            .collect();
        if !unknown.is_empty() {
            return Err(RunError::Unknown(format!(
                "unknown invariant ids: {}",
                unknown.join(", ")
            )));
        }
        // `only` narrows a suite; it never reaches outside it (that would run another suite's
        // invariants without that suite's lock).
        if let Some(s) = self.cfg.suite(suite) {
            let outside: Vec<String> = only
                .iter()
                .filter_map(|id| self.cfg.invariant(id))
                .filter(|inv| !s.selects(inv).unwrap_or(false))
                .map(|inv| format!("`{}`", inv.id))
                .collect();
            if !outside.is_empty() {
                return Err(RunError::Unknown(format!(
                    "not in suite `{suite}`: {}",
                    outside.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Runs a suite once under its single-flight locks and records it. `Busy` when it is
    /// already running here or on another replica. The run is a task of its own: a caller that
    /// goes away (an HTTP client timing out) does not cut it, and the lease is always released.
    pub async fn run_suite(
        self: &Arc<Self>,
        suite: &str,
        only: Vec<String>,
        trigger: Trigger,
    ) -> Result<RunReport, RunError> {
        self.check_request(suite, &only)?;
        if self.is_draining() {
            return Err(RunError::ShuttingDown);
        }
        let slot = self.suites[suite].clone();
        let Ok(guard) = slot.running.clone().try_lock_owned() else {
            return Err(RunError::Busy);
        };
        let lease = format!("suite:{suite}");
        let now = self.clock.now();
        let got = self
            .store
            .acquire_lease(&lease, &self.owner, now + ttl(), now)
            .await
            .context("taking the suite's lease in the history store")
            .map_err(RunError::Failed)?;
        if !got {
            return Err(RunError::Busy);
        }
        let w = self.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            let renew = {
                let store = w.store.clone();
                let owner = w.owner.clone();
                let lease = lease.clone();
                let clock = w.clock.clone();
                tokio::spawn(async move {
                    loop {
                        clock.sleep_until(clock.now() + renew_every()).await;
                        match store.renew_lease(&lease, &owner, clock.now() + ttl()).await {
                            Ok(true) => {}
                            Ok(false) => tracing::error!(
                                lease,
                                "the suite's lease was lost mid-run (the store was unreachable \
                                 longer than the lease); another replica may run it too"
                            ),
                            Err(e) => {
                                tracing::warn!(error = %e, lease, "cannot renew the suite's lease")
                            }
                        }
                    }
                })
            };
            let result = w.run_locked(&slot, only, trigger).await;
            // Stop renewing (and let an in-flight renewal finish) before releasing.
            renew.abort();
            let _ = renew.await;
            if let Err(e) = w.store.release_lease(&lease, &w.owner).await {
                tracing::warn!(error = %e, lease, "cannot release the suite's lease; it expires");
            }
            result
        });
        match task.await {
            Ok(r) => r.map_err(RunError::Failed),
            Err(e) => Err(RunError::Failed(anyhow::anyhow!(
                "the run's task failed: {e}"
            ))),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Starts a scheduled tick as a task the shutdown waits for; `reclaim` as in
    /// [`Watcher::tick`].
    pub fn spawn_tick(self: &Arc<Self>, suite: String, tick: DateTime<Utc>, reclaim: bool) {
        if self.is_draining() {
            return;
        }
        let w = self.clone();
        let handle = tokio::spawn(async move { w.tick(&suite, tick, reclaim).await });
        let mut tasks = self.tick_tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|h| !h.is_finished());
        tasks.push(handle);
    }

    async fn run_locked(
        &self,
        slot: &SuiteSlot,
        only: Vec<String>,
        trigger: Trigger,
    ) -> Result<RunReport> {
        let remembered = recorder::load_remembered(self.store.as_ref(), &self.cfg).await?;
        // Runs, their records and the outbox live on the wall clock; the scheduler's clock
        // (which tests scale) decides only when ticks are due and leases end.
        let now = Utc::now();
        let history =
            recorder::load_history(self.store.as_ref(), &self.cfg, &slot.suite.name, now).await?;
        let vacuous_since =
            recorder::load_vacuity(self.store.as_ref(), &self.cfg, &slot.suite.name, now).await?;
        let opts = RunOptions {
            suite: slot.suite.name.clone(),
            only,
            trigger,
            at: Some(now),
            progress: None,
            remembered,
            history,
            vacuous_since,
        };
        let invar_sources::RunOutcome {
            mut report,
            remembered,
            ..
        } = slot.engine.run(&opts).await;
        recorder::record(self.store.as_ref(), &self.cfg, &mut report, remembered).await?;
        tracing::info!(
            suite = %report.suite,
            trigger = trigger.as_str(),
            run_id = %report.run_id,
            status = report.status.as_str(),
            duration_ms = report.duration_ms,
            "run recorded"
        );
        Ok(report)
    }

    /// One scheduled tick: claimed once across replicas, then run; a tick that finds its suite
    /// still running is recorded as `lock_skipped`. `reclaim` also takes over the tick when an
    /// earlier claim is stale and its run was never recorded (its replica died mid-run): the
    /// misfire catch-up.
    pub async fn tick(self: &Arc<Self>, suite: &str, tick: DateTime<Utc>, reclaim: bool) {
        let now = self.clock.now();
        let claimed = match self.store.claim_tick(suite, tick, &self.owner, now).await {
            Ok(false) if reclaim => {
                // Older than a lease: its replica stopped renewing, so it is not running.
                let stale = now - ttl();
                self.store
                    .reclaim_tick(suite, tick, &self.owner, now, stale)
                    .await
            }
            other => other,
        };
        match claimed {
            Ok(true) => {}
            Ok(false) => return, // another replica has this tick
            Err(e) => {
                tracing::error!(error = %e, suite, %tick, "cannot claim the scheduled tick");
                return;
            }
        }
        match self.run_suite(suite, Vec::new(), Trigger::Schedule).await {
            Ok(report) => {
                if let Err(e) = self.store.finish_tick(suite, tick, &report.run_id).await {
                    tracing::error!(error = %e, suite, %tick, "cannot mark the tick as run");
                }
            }
            Err(RunError::Busy) => {
                tracing::warn!(suite, %tick, "the suite is still running: lock_skipped");
                let mut report = lock_skipped_report(suite, Trigger::Schedule, Utc::now());
                if let Err(e) = recorder::record(
                    self.store.as_ref(),
                    &self.cfg,
                    &mut report,
                    Default::default(),
                )
                .await
                {
                    tracing::error!(error = %e, suite, "cannot record the lock_skipped run");
                }
            }
            Err(e) => tracing::error!(error = %e, suite, %tick, "scheduled run failed"),
        }
    }

    /// The dead-man's switch: suites whose scheduled tick passed more than `overdue_after` ago
    /// with no run recorded for it — the tick was never claimed, its run hangs or died, or it
    /// found the suite running and no run of the suite was recorded since. (suite, the overdue
    /// tick). A tick from before this watcher started that nobody claimed belongs to the
    /// misfire policy, not to the switch.
    pub async fn overdue(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let mut out = Vec::new();
        for slot in self.shown_slots() {
            if let Some(due) = self.overdue_tick(slot).await? {
                out.push((slot.suite.name.clone(), due));
            }
        }
        Ok(out)
    }

    async fn overdue_tick(&self, slot: &SuiteSlot) -> Result<Option<DateTime<Utc>>> {
        let Some(schedule) = &slot.schedule else {
            return Ok(None);
        };
        let grace = TimeDelta::from_std(self.cfg.server.overdue_after).unwrap_or(TimeDelta::MAX);
        let Some(due) = schedule.latest_at_or_before(self.clock.now() - grace) else {
            return Ok(None);
        };
        let name = &slot.suite.name;
        let store = self.store.as_ref();
        let finished = store
            .last_finished_tick(name)
            .await
            .context("reading the last scheduled run")?;
        if finished.is_some_and(|f| f >= due) {
            return Ok(None);
        }
        if due < self.started_at {
            let claimed = store
                .last_tick(name)
                .await
                .context("reading the last scheduled tick")?;
            if claimed.is_none_or(|c| c < due) {
                return Ok(None);
            }
        }
        // A run of the suite recorded since the tick (an API run that made the tick busy).
        let since = store
            .runs(&RunQuery {
                suite: Some(name.clone()),
                since: Some(due),
                limit: 20,
                ..Default::default()
            })
            .await
            .context("reading runs")?;
        if since
            .iter()
            .any(|r| !r.lock_skipped && r.trigger != Trigger::Watchdog.as_str())
        {
            return Ok(None);
        }
        Ok(Some(due))
    }

    /// What the status page and `/metrics` show: read at most once per [`SNAPSHOT_TTL`]
    /// (concurrent requests wait for one read).
    pub async fn snapshot(&self) -> Result<Arc<StatusSnapshot>> {
        let mut cache = self.snapshot_cache.lock().await;
        if let Some((at, snap)) = cache.as_ref()
            && at.elapsed() < SNAPSHOT_TTL
        {
            return Ok(snap.clone());
        }
        let snap = Arc::new(self.read_snapshot().await?);
        *cache = Some((std::time::Instant::now(), snap.clone()));
        Ok(snap)
    }

    async fn read_snapshot(&self) -> Result<StatusSnapshot> {
        let store = self.store.as_ref();
        let overdue: BTreeMap<String, DateTime<Utc>> = self.overdue().await?.into_iter().collect();
        let mut suites = Vec::new();
        for slot in self.shown_slots() {
            // The latest run that ran: a lock_skipped record says only that one was running, a
            // watchdog record that none did.
            let recent = store
                .runs(&RunQuery {
                    suite: Some(slot.suite.name.clone()),
                    limit: 20,
                    ..Default::default()
                })
                .await
                .context("reading runs")?;
            let last = recent
                .iter()
                .position(|r| !r.lock_skipped && r.trigger != Trigger::Watchdog.as_str())
                .map_or(recent.first().cloned(), |i| recent.get(i).cloned());
            suites.push(SuiteStatus {
                name: slot.suite.name.clone(),
                schedule: slot.suite.schedule.clone(),
                timezone: slot
                    .suite
                    .timezone
                    .clone()
                    .unwrap_or_else(|| "UTC".to_string()),
                next_run: slot.next_run(),
                last_run: last.map(|r| LastRun {
                    run_id: r.run_id,
                    trigger: r.trigger,
                    started_at: r.started_at,
                    duration_ms: r.duration_ms,
                    status: r.status,
                    lock_skipped: r.lock_skipped,
                    skipped_budget: r.skipped_budget,
                }),
                running: slot.is_running(),
                overdue: overdue.contains_key(&slot.suite.name),
                overdue_since: overdue.get(&slot.suite.name).copied(),
            });
        }
        let recent = store
            .latest_outcomes(RECENT_RUNS as u32)
            .await
            .context("reading recent outcomes")?;
        let open = store
            .incidents(&IncidentQuery {
                open_only: true,
                limit: 10_000,
                ..Default::default()
            })
            .await
            .context("reading open incidents")?;
        let open: BTreeMap<&str, DateTime<Utc>> = open
            .iter()
            .map(|i| (i.subject.as_str(), i.opened_at))
            .collect();
        let silences = invar_alerts::active_silences(store, &self.cfg, self.clock.now())
            .await
            .context("reading silences")?;
        let events = self.timeline_events(&recent).await?;
        let mut invariants = Vec::new();
        for inv in &self.cfg.invariants {
            let runs = recent.get(&inv.id).map(Vec::as_slice).unwrap_or(&[]);
            let latest = runs.first();
            // The oldest run of the current streak of equal outcomes.
            let last_change = latest.map(|l| {
                runs.iter()
                    .take_while(|r| r.outcome == l.outcome)
                    .last()
                    .map_or(l.started_at, |r| r.started_at)
            });
            invariants.push(InvariantStatus {
                id: inv.id.clone(),
                title: inv.title.clone(),
                severity: inv.severity.as_str().to_string(),
                incident: if open.contains_key(inv.id.as_str()) {
                    IncidentStatus::Firing
                } else {
                    IncidentStatus::Ok
                },
                incident_since: open.get(inv.id.as_str()).copied(),
                last_outcome: latest.map(|l| l.outcome.clone()),
                last_reason: latest.and_then(|l| l.reason.clone()),
                last_run_at: latest.map(|l| l.started_at),
                last_change,
                violations: latest.map_or(0, |l| l.violations_total),
                silenced: invar_alerts::silencing(&self.cfg, &silences, inv),
                recent: runs
                    .iter()
                    .rev()
                    .map(|r| RecentOutcome {
                        run_id: r.run_id.clone(),
                        at: r.started_at,
                        outcome: r.outcome.clone(),
                    })
                    .collect(),
                trend: crate::status::trend_of(
                    runs,
                    events.get(inv.id.as_str()).map_or(&[], Vec::as_slice),
                ),
            });
        }
        let d = store
            .delivery_counts()
            .await
            .context("reading alert deliveries")?;
        Ok(StatusSnapshot {
            generated_at: Utc::now(),
            version: self.version.clone(),
            store: store.backend().to_string(),
            suites,
            invariants,
            deliveries: DeliveryCounts {
                delivered: d.delivered,
                failed_attempts: d.failed_attempts,
                pending: d.pending,
            },
        })
    }

    /// The incident events of the status page's timelines, by subject (oldest first): one
    /// query for all invariants, from the oldest recent run of a configured invariant on (the
    /// newest [`TIMELINE_EVENTS`] of them).
    async fn timeline_events(
        &self,
        recent: &BTreeMap<String, Vec<invar_store::OutcomeAt>>,
    ) -> Result<BTreeMap<String, Vec<invar_store::IncidentEventRow>>> {
        let mut by_subject: BTreeMap<String, Vec<invar_store::IncidentEventRow>> = BTreeMap::new();
        let Some(since) = self
            .cfg
            .invariants
            .iter()
            .filter_map(|i| recent.get(&i.id)?.last().map(|r| r.started_at))
            .min()
        else {
            return Ok(by_subject);
        };
        let events = self
            .store
            .incident_events(since, TIMELINE_EVENTS)
            .await
            .context("reading incident events")?;
        for e in events {
            by_subject.entry(e.subject.clone()).or_default().push(e);
        }
        Ok(by_subject)
    }

    /// The dead-man's switch's alert: for each overdue tick, one replica (the one that claims
    /// `overdue:SUITE` at that tick) records a `watchdog` run for the suite — red for its
    /// `suite:NAME` incident, which alerts once like any incident and resolves on the next
    /// recorded scheduled run.
    pub async fn watchdog(&self) -> Result<()> {
        for (suite, due) in self.overdue().await? {
            let key = format!("overdue:{suite}");
            if !self
                .store
                .claim_tick(&key, due, &self.owner, self.clock.now())
                .await
                .context("claiming the overdue notice")?
            {
                continue;
            }
            // Re-checked after the claim: the run may have been recorded meanwhile, and a red
            // written after its green would open an incident for a suite that ran.
            let still = match self.slot(&suite) {
                Some(slot) => self.overdue_tick(slot).await? == Some(due),
                None => false,
            };
            if !still {
                continue;
            }
            let grace = invar_core::units::format_duration(self.cfg.server.overdue_after);
            let tz = self
                .slot(&suite)
                .and_then(|s| s.schedule.as_ref())
                .map_or("UTC", |s| s.timezone_name());
            let msg = format!(
                "the scheduled run of suite `{suite}` due at {} ({tz}) was not recorded within {grace}",
                due.format("%Y-%m-%d %H:%M UTC")
            );
            tracing::error!(suite, %due, "{msg}");
            // No results, the reason as the run's problem: an automation error.
            let mut report = new_report(&suite, Trigger::Watchdog, Utc::now());
            let reason = invar_core::RunProblem::overdue(msg);
            report.set_results(Vec::new(), vec![reason], invar_core::FailOn::Fail);
            recorder::record(
                self.store.as_ref(),
                &self.cfg,
                &mut report,
                Default::default(),
            )
            .await?;
        }
        Ok(())
    }

    /// Stops new runs and waits for the running ones: returns every suite's lock, held.
    pub async fn drain(&self) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Ticks already started (claiming, or running) finish first.
        let tasks = std::mem::take(&mut *self.tick_tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        let mut guards = Vec::new();
        for slot in self.suites.values() {
            guards.push(slot.running.clone().lock_owned().await);
        }
        guards
    }
}

fn ttl() -> TimeDelta {
    TimeDelta::from_std(LEASE_TTL).unwrap_or(TimeDelta::MAX)
}

fn renew_every() -> TimeDelta {
    TimeDelta::from_std(LEASE_RENEW).unwrap_or(TimeDelta::MAX)
}

/// An empty report of a run of `suite` starting at `at`.
fn new_report(suite: &str, trigger: Trigger, at: DateTime<Utc>) -> RunReport {
    RunReport::new(uuid::Uuid::now_v7().to_string(), suite, trigger, at)
}

/// The record of a tick that found its suite still running: no results, `lock_skipped`.
pub fn lock_skipped_report(suite: &str, trigger: Trigger, at: DateTime<Utc>) -> RunReport {
    let mut report = new_report(suite, trigger, at);
    report.lock_skipped = true;
    report
}
