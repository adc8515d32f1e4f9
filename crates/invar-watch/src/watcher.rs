//! The watcher's state: one slot per suite (its engine, schedule and in-process single-flight
//! lock), the shared store, and running a suite under both locks — the in-process mutex and
//! the store's lease, which is what keeps replicas on one store from running a suite twice.

use crate::clock::Clock;
use crate::recorder;
use crate::schedule::Schedule;
use crate::status::{
    DeliveryCounts, IncidentStatus, InvariantStatus, LastRun, RECENT_RUNS, RecentOutcome,
    StatusSnapshot, SuiteStatus,
};
use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use invar_core::{Config, Counts, Outcome, RunReport, Suite};
use invar_sources::{Engine, RunOptions};
use invar_store::{IncidentQuery, RunQuery, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How long a suite's lease lasts without renewal: a replica that dies mid-run blocks the
/// suite for at most this long.
const LEASE_TTL: Duration = Duration::from_secs(60);
/// Renewal period while a run holds the lease.
const LEASE_RENEW: Duration = Duration::from_secs(20);

/// Why a run did not happen.
#[derive(Debug)]
pub enum RunError {
    /// The suite is running (here or on another replica): `lock_skipped`.
    Busy,
    /// Unknown suite or invariant ids (the message names them).
    Unknown(String),
    /// The store could not be used (the message is safe to show).
    Failed(anyhow::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Busy => f.write_str("the suite is already running"),
            RunError::Unknown(m) => f.write_str(m),
            RunError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

pub struct SuiteSlot {
    pub suite: Suite,
    pub schedule: Option<Schedule>,
    engine: Engine,
    running: tokio::sync::Mutex<()>,
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
                    running: tokio::sync::Mutex::new(()),
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
        })
    }

    pub fn slot(&self, suite: &str) -> Option<&Arc<SuiteSlot>> {
        self.suites.get(suite)
    }

    /// Suites in config order (the implicit `all` last when the config has none by that name).
    pub fn slots(&self) -> Vec<&Arc<SuiteSlot>> {
        let mut out: Vec<&Arc<SuiteSlot>> = Vec::new();
        for s in &self.cfg.suites {
            if let Some(slot) = self.suites.get(&s.name) {
                out.push(slot);
            }
        }
        if self.cfg.suite("all").is_none()
            && let Some(slot) = self.suites.get("all")
        {
            out.push(slot);
        }
        out
    }

    /// Suites to show and measure: the configured ones (the implicit `all` only when the
    /// config has no suites of its own).
    fn shown_slots(&self) -> Vec<&Arc<SuiteSlot>> {
        let configured_all = self.cfg.suites.len() == 1 && self.cfg.suites[0].name == "all";
        self.slots()
            .into_iter()
            .filter(|s| s.suite.name != "all" || configured_all || self.cfg.suite("all").is_some())
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
        Ok(())
    }

    /// Runs a suite once under its single-flight locks and records it. `Busy` when it is
    /// already running here or on another replica.
    pub async fn run_suite(
        &self,
        suite: &str,
        only: Vec<String>,
        trigger: &str,
    ) -> Result<RunReport, RunError> {
        self.check_request(suite, &only)?;
        let slot = self.suites[suite].clone();
        let Ok(_guard) = slot.running.try_lock() else {
            return Err(RunError::Busy);
        };
        let lease = format!("suite:{suite}");
        let now = Utc::now();
        let got = self
            .store
            .acquire_lease(&lease, &self.owner, now + ttl(), now)
            .await
            .context("taking the suite's lease in the history store")
            .map_err(RunError::Failed)?;
        if !got {
            return Err(RunError::Busy);
        }
        let renew = {
            let store = self.store.clone();
            let owner = self.owner.clone();
            let lease = lease.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_RENEW).await;
                    let now = Utc::now();
                    if let Err(e) = store.acquire_lease(&lease, &owner, now + ttl(), now).await {
                        tracing::warn!(error = %e, lease, "cannot renew the suite's lease");
                    }
                }
            })
        };
        let result = self.run_locked(&slot, only, trigger).await;
        renew.abort();
        if let Err(e) = self.store.release_lease(&lease, &self.owner).await {
            tracing::warn!(error = %e, lease, "cannot release the suite's lease; it expires");
        }
        result.map_err(RunError::Failed)
    }

    async fn run_locked(
        &self,
        slot: &SuiteSlot,
        only: Vec<String>,
        trigger: &str,
    ) -> Result<RunReport> {
        let remembered = recorder::load_remembered(self.store.as_ref(), &self.cfg).await?;
        let opts = RunOptions {
            suite: slot.suite.name.clone(),
            only,
            trigger: trigger.into(),
            progress: None,
            remembered,
        };
        let report = slot.engine.run(&opts).await;
        let remembered = slot.engine.take_remembered();
        recorder::record(self.store.as_ref(), &self.cfg, &report, remembered).await?;
        tracing::info!(
            suite = %report.suite,
            trigger,
            run_id = %report.run_id,
            status = report.status.as_str(),
            duration_ms = report.duration_ms,
            "run recorded"
        );
        Ok(report)
    }

    /// One scheduled tick: claimed once across replicas, then run; a tick that finds its suite
    /// still running is recorded as `lock_skipped`.
    pub async fn tick(&self, suite: &str, tick: DateTime<Utc>) {
        match self
            .store
            .claim_tick(suite, tick, &self.owner, self.clock.now())
            .await
        {
            Ok(true) => {}
            Ok(false) => return, // another replica has this tick
            Err(e) => {
                tracing::error!(error = %e, suite, %tick, "cannot claim the scheduled tick");
                return;
            }
        }
        match self.run_suite(suite, Vec::new(), "schedule").await {
            Ok(report) => {
                if let Err(e) = self.store.finish_tick(suite, tick, &report.run_id).await {
                    tracing::error!(error = %e, suite, %tick, "cannot mark the tick as run");
                }
            }
            Err(RunError::Busy) => {
                tracing::warn!(suite, %tick, "the suite is still running: lock_skipped");
                let report = lock_skipped_report(suite, "schedule");
                if let Err(e) =
                    recorder::record(self.store.as_ref(), &self.cfg, &report, Default::default())
                        .await
                {
                    tracing::error!(error = %e, suite, "cannot record the lock_skipped run");
                }
            }
            Err(e) => tracing::error!(error = %e, suite, %tick, "scheduled run failed"),
        }
    }

    /// The dead-man's switch: suites whose scheduled tick passed more than `overdue_after` ago
    /// with no run of it (or of a later tick) recorded — the tick was never claimed, or its run
    /// hangs, or it found the suite still running. (suite, the overdue tick). Ticks before this
    /// watcher started belong to the misfire policy and are not counted.
    pub async fn overdue(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let grace = TimeDelta::from_std(self.cfg.server.overdue_after).unwrap_or(TimeDelta::MAX);
        let now = self.clock.now();
        let mut out = Vec::new();
        for slot in self.shown_slots() {
            let Some(schedule) = &slot.schedule else {
                continue;
            };
            let Some(due) = schedule.latest_at_or_before(now - grace) else {
                continue;
            };
            if due < self.started_at {
                continue;
            }
            let last = self
                .store
                .last_finished_tick(&slot.suite.name)
                .await
                .context("reading the last scheduled run")?;
            if last.is_none_or(|l| l < due) {
                out.push((slot.suite.name.clone(), due));
            }
        }
        Ok(out)
    }

    /// What the status page and `/metrics` show, read from the store and this process.
    pub async fn snapshot(&self) -> Result<StatusSnapshot> {
        let store = self.store.as_ref();
        let overdue: BTreeMap<String, DateTime<Utc>> = self.overdue().await?.into_iter().collect();
        let mut suites = Vec::new();
        for slot in self.shown_slots() {
            // The latest run that ran: a lock_skipped record says only that one was running.
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
                .position(|r| !r.lock_skipped)
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
                recent: runs
                    .iter()
                    .rev()
                    .map(|r| RecentOutcome {
                        run_id: r.run_id.clone(),
                        at: r.started_at,
                        outcome: r.outcome.clone(),
                    })
                    .collect(),
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
            let mut report = lock_skipped_report(&suite, invar_core::incident::OVERDUE_TRIGGER);
            report.lock_skipped = false;
            report.status = Outcome::Error;
            report.exit_code = 2;
            report.automation_error = true;
            report.sources_unavailable = vec![invar_core::SourceUnavailable {
                source: "schedule".into(),
                error: msg,
            }];
            recorder::record(self.store.as_ref(), &self.cfg, &report, Default::default()).await?;
        }
        Ok(())
    }

    /// Stops new runs and waits for the running ones: returns every suite's lock, held.
    pub async fn drain(&self) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut guards = Vec::new();
        for slot in self.suites.values() {
            guards.push(slot.running.lock().await);
        }
        guards
    }

    /// Ids the config knows, for 422 answers.
    pub fn invariant_ids(&self) -> BTreeSet<&str> {
        self.cfg.invariants.iter().map(|i| i.id.as_str()).collect()
    }
}

fn ttl() -> TimeDelta {
    TimeDelta::from_std(LEASE_TTL).unwrap_or(TimeDelta::MAX)
}

/// The record of a tick that found its suite still running: no results, `lock_skipped`.
pub fn lock_skipped_report(suite: &str, trigger: &str) -> RunReport {
    RunReport {
        run_id: uuid::Uuid::now_v7().to_string(),
        suite: suite.to_string(),
        trigger: trigger.to_string(),
        started_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        duration_ms: 0,
        status: Outcome::Pass,
        exit_code: 0,
        counts: Counts::default(),
        automation_error: false,
        assessment_failures: 0,
        lock_skipped: true,
        skipped_budget: 0,
        sources_unavailable: Vec::new(),
        results: Vec::new(),
    }
}
