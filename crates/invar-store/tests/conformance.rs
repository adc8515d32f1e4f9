//! One store story, every backend: the same sequence runs on SQLite (a temp file) and on the
//! real Postgres on loopback (a fresh schema per run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, TimeDelta, Utc};
use invar_core::incident::{self, EventKind, Notice, Observation, Policy, Signal, SubjectKind};
use invar_core::{Counts, InvariantResult, Outcome, Retention, RunProblem, RunReport, Secret};
use invar_store::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn result(id: &str, outcome: Outcome, reason: Option<&str>, violations: usize) -> InvariantResult {
    InvariantResult {
        id: id.into(),
        title: format!("title of {id}"),
        severity: "critical".into(),
        outcome,
        reason: reason.map(str::to_string),
        examined: 10,
        vacuous: false,
        duration_ms: 3,
        measured: json!({"rows": 10, "missing": violations})
            .as_object()
            .unwrap()
            .clone(),
        violations_total: violations as u64,
        violations: (0..violations)
            .map(|i| json!({"key": i, "state": "bad"}))
            .collect(),
        runbook: Some("re-run the ingest".into()),
        silenced: None,
    }
}

fn report(
    id: &str,
    suite: &str,
    at: DateTime<Utc>,
    results: Vec<InvariantResult>,
    unavailable: &[&str],
) -> RunReport {
    let mut counts = Counts::default();
    for r in &results {
        counts.add(r.outcome);
    }
    RunReport {
        run_id: id.into(),
        suite: suite.into(),
        trigger: invar_core::Trigger::Cli,
        started_at: at,
        duration_ms: 42,
        status: invar_core::report::run_status(&results),
        exit_code: if counts.error > 0 {
            2
        } else if counts.fail > 0 {
            1
        } else {
            0
        },
        counts,
        automation_error: counts.error > 0,
        assessment_failures: counts.fail,
        lock_skipped: false,
        skipped_budget: 0,
        sources_unavailable: unavailable
            .iter()
            .map(|s| RunProblem::source(*s, "connection refused"))
            .collect(),
        results,
    }
}

/// Records `r` with the real incident machine; every notice becomes one outbox row for the
/// sink `hook`.
async fn record(store: &dyn Store, r: &RunReport, sources: &[(&str, &[&str])]) -> Recorded {
    let at = r.started_at;
    let source_of = |id: &str| -> Vec<String> {
        sources
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, s)| s.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default()
    };
    let mut obs: Vec<Observation> = Vec::new();
    for s in &r.sources_unavailable {
        obs.push(Observation {
            held_by: Vec::new(),
            subject: format!("source:{}", s.source),
            kind: SubjectKind::Source,
            signal: Signal::Red,
            policy: Policy::default(),
            sources: vec![],
        });
    }
    for res in &r.results {
        obs.push(Observation {
            held_by: Vec::new(),
            subject: res.id.clone(),
            kind: SubjectKind::Invariant,
            signal: Signal::from_outcome(res.outcome),
            policy: Policy::default(),
            sources: source_of(&res.id),
        });
    }
    let run_id = r.run_id.clone();
    let planner = move |input: &PlanInput| {
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("inc-{run_id}-{n}")
        };
        let adv = incident::advance(&input.states, &obs, at, &mut id);
        let mut plan = Plan {
            states: adv.states,
            events: adv.events.clone(),
            ..Plan::default()
        };
        for e in &adv.events {
            plan.subjects.insert(
                e.subject.clone(),
                SubjectInfo {
                    title: format!("title of {}", e.subject),
                    severity: "critical".into(),
                },
            );
            if let Some(notice) = e.notice {
                let key = format!(
                    "{}:{}:hook",
                    e.incident_id.clone().unwrap_or_default(),
                    notice.as_str()
                );
                plan.outbox.push(NewDelivery {
                    id: format!("d-{key}"),
                    idempotency_key: key,
                    sink: "hook".into(),
                    notice: notice.as_str().into(),
                    incident_id: e.incident_id.clone(),
                    subject: e.subject.clone(),
                    payload: json!({"subject": e.subject, "status": notice.as_str()}),
                    created_at: at,
                });
            }
        }
        plan
    };
    let rec = RunRecord {
        report: r,
        sources: r.results.iter().map(|x| source_of(&x.id)).collect(),
        remembered: vec![],
    };
    store.record_run(&rec, &planner).await.unwrap()
}

async fn story(store: &dyn Store) {
    let h = TimeDelta::hours(1);
    assert!(store.runs(&RunQuery::default()).await.unwrap().is_empty());
    assert!(store.incident_states().await.unwrap().is_empty());
    assert!(store.latest_outcomes(20).await.unwrap().is_empty());
    assert_eq!(
        store.violation_stats(None).await.unwrap(),
        ViolationStats::default()
    );
    assert_eq!(
        store.delivery_counts().await.unwrap(),
        DeliveryCounts::default()
    );

    // Run 1: A fails with 3 violations, B passes vacuously, C is skipped by its cost guard,
    // D errors because source `app` is down.
    let mut b = result("B", Outcome::Pass, Some("vacuous: no keys to check"), 0);
    b.vacuous = true;
    b.examined = 0;
    let r1 = report(
        "run-1",
        "gate",
        t0(),
        vec![
            result(
                "A",
                Outcome::Fail,
                Some("fail_when held: `row.missing > 0`"),
                3,
            ),
            b,
            result(
                "C",
                Outcome::Skip,
                Some("cost guard: `source.size_bytes > 5GB` held"),
                0,
            ),
            result("D", Outcome::Error, Some("source `app` is unavailable"), 0),
        ],
        &["app"],
    );
    let rec = record(store, &r1, &[("A", &["app2"]), ("D", &["app"])]).await;
    assert_eq!((rec.results, rec.violations), (4, 3));
    let opened: Vec<&str> = rec
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Opened)
        .map(|e| e.subject.as_str())
        .collect();
    assert_eq!(opened, ["source:app", "A"]);
    assert_eq!(rec.deliveries, 2);

    // The run reads back as its report.
    let back = store.run_report("run-1").await.unwrap().unwrap();
    assert_eq!(back, r1);
    assert!(store.run_report("nope").await.unwrap().is_none());

    // Run 2, an hour later: A passes (resolves), the source is back.
    let r2 = report(
        "run-2",
        "gate",
        t0() + h,
        vec![result("A", Outcome::Pass, None, 0)],
        &[],
    );
    let rec2 = record(store, &r2, &[]).await;
    assert_eq!(rec2.events.len(), 1);
    assert_eq!(rec2.events[0].kind, EventKind::Resolved);
    assert_eq!(rec2.events[0].notice, Some(Notice::Resolved));

    // Run 3, two hours later, another suite: A fails again — a new incident that knows when
    // A was last red.
    let r3 = report(
        "run-3",
        "weekly",
        t0() + h * 2,
        vec![result("A", Outcome::Fail, None, 1)],
        &[],
    );
    let rec3 = record(store, &r3, &[]).await;
    assert_eq!(rec3.events[0].kind, EventKind::Opened);
    assert_eq!(rec3.events[0].last_red_at, Some(t0()));

    // History.
    let runs = store.runs(&RunQuery::default()).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        ["run-3", "run-2", "run-1"]
    );
    assert_eq!(runs[2].sources_unavailable.len(), 1);
    assert_eq!(runs[2].counts.error, 1);
    let gate = RunQuery {
        suite: Some("gate".into()),
        limit: 1,
        ..RunQuery::default()
    };
    let one = store.runs(&gate).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].run_id, "run-2");
    let since = RunQuery {
        since: Some(t0() + h),
        ..RunQuery::default()
    };
    assert_eq!(store.runs(&since).await.unwrap().len(), 2);
    let a = store
        .results(&ResultQuery {
            invariant: Some("A".into()),
            ..ResultQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        a.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(),
        ["fail", "pass", "fail"]
    );
    assert_eq!(a[2].measured["missing"], json!(3));
    assert_eq!(a[0].suite, "weekly");
    assert_eq!(a[0].trigger, "cli");

    // Incidents.
    let all = store.incidents(&IncidentQuery::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    let open = store
        .incidents(&IncidentQuery {
            open_only: true,
            ..IncidentQuery::default()
        })
        .await
        .unwrap();
    let mut subjects: Vec<&str> = open.iter().map(|i| i.subject.as_str()).collect();
    subjects.sort();
    // The source incident stays open: no later run needed `app`.
    assert_eq!(subjects, ["A", "source:app"]);
    let a_open = open.iter().find(|i| i.subject == "A").unwrap();
    assert_eq!(a_open.last_red_at, Some(t0()));
    assert_eq!(a_open.opened_run_id, "run-3");
    assert_eq!(a_open.kind, "invariant");
    let resolved = all.iter().find(|i| i.resolved_at.is_some()).unwrap();
    assert_eq!(resolved.resolved_run_id.as_deref(), Some("run-2"));
    assert_eq!(resolved.title, "title of A");

    // Violations, paged with a cursor.
    let mut q = ViolationQuery {
        invariant: Some("A".into()),
        limit: 3,
        ..ViolationQuery::default()
    };
    let p1 = store.violations(&q).await.unwrap();
    assert_eq!(p1.items.len(), 3);
    assert_eq!(p1.items[0].run_id, "run-3");
    assert!(p1.next_cursor.is_some());
    q.cursor = p1.next_cursor.clone();
    let p2 = store.violations(&q).await.unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.next_cursor, None);
    assert_eq!(p2.items[0].observed, json!({"key": 0, "state": "bad"}));
    assert_eq!(p1.items[1].observed, json!({"key": 2, "state": "bad"}));
    let minor = ViolationQuery {
        severity: Some("minor".into()),
        ..ViolationQuery::default()
    };
    assert!(store.violations(&minor).await.unwrap().items.is_empty());
    let recent = ViolationQuery {
        since: Some(t0() + h),
        ..ViolationQuery::default()
    };
    assert_eq!(store.violations(&recent).await.unwrap().items.len(), 1);

    // One violation by id.
    let v = &p1.items[0];
    assert_eq!(store.violation(v.id).await.unwrap().as_ref(), Some(v));
    assert_eq!(store.violation(-1).await.unwrap(), None);

    // Violation counts per invariant and severity, all time and since.
    let stats = store.violation_stats(None).await.unwrap();
    assert_eq!(stats.total, 4);
    assert_eq!(
        stats.by_severity,
        BTreeMap::from([("critical".to_string(), 4)])
    );
    assert_eq!(
        stats.invariants,
        [InvariantViolationStats {
            id: "A".into(),
            severity: "critical".into(),
            count: 4,
            first_at: t0(),
            last_at: t0() + h * 2,
        }]
    );
    let stats = store.violation_stats(Some(t0() + h)).await.unwrap();
    assert_eq!(stats.since, Some(t0() + h));
    assert_eq!(
        (
            stats.total,
            stats.invariants[0].count,
            stats.invariants[0].first_at
        ),
        (1, 1, t0() + h * 2)
    );

    // The latest outcomes of each invariant, newest first.
    let latest = store.latest_outcomes(2).await.unwrap();
    assert_eq!(latest.keys().collect::<Vec<_>>(), ["A", "B", "C", "D"]);
    assert_eq!(
        latest["A"],
        [
            OutcomeAt {
                run_id: "run-3".into(),
                started_at: t0() + h * 2,
                outcome: "fail".into(),
                reason: None,
                violations_total: 1,
                measured: json!({"rows": 10, "missing": 1})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
            OutcomeAt {
                run_id: "run-2".into(),
                started_at: t0() + h,
                outcome: "pass".into(),
                reason: None,
                violations_total: 0,
                measured: json!({"rows": 10, "missing": 0})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
        ]
    );
    assert_eq!(latest["C"].len(), 1);
    assert_eq!(latest["C"][0].outcome, "skip");
    assert_eq!(
        latest["C"][0].reason.as_deref(),
        Some("cost guard: `source.size_bytes > 5GB` held")
    );
    assert_eq!(
        store.latest_outcomes(1).await.unwrap()["A"][0].run_id,
        "run-3"
    );
    assert!(store.latest_outcomes(0).await.unwrap().is_empty());

    // The outbox: one row per notice, in order; a lease keeps a second worker off.
    let pending = store.pending(None, 0).await.unwrap();
    let notices: Vec<(&str, &str)> = pending
        .iter()
        .map(|d| (d.subject.as_str(), d.notice.as_str()))
        .collect();
    assert_eq!(
        notices,
        [
            ("source:app", "firing"),
            ("A", "firing"),
            ("A", "resolved"),
            ("A", "firing")
        ]
    );
    let d = &pending[1];
    let now = t0() + h * 3;
    assert!(
        store
            .claim(&d.id, "w1", now + TimeDelta::seconds(30), now)
            .await
            .unwrap()
    );
    assert!(
        !store
            .claim(&d.id, "w2", now + TimeDelta::seconds(30), now)
            .await
            .unwrap()
    );
    let retry_at = now + TimeDelta::seconds(10);
    store
        .record_attempt(&AttemptRecord {
            delivery_id: d.id.clone(),
            attempt: 1,
            at: now,
            duration_ms: 5,
            ok: false,
            code: Some(503),
            error: Some("http 503".into()),
            next_attempt_at: Some(retry_at),
        })
        .await
        .unwrap();
    // Not due yet, but still pending (a one-shot flush attempts it anyway).
    let due_now = store.pending(Some(now), 0).await.unwrap();
    assert!(due_now.iter().all(|x| x.id != d.id));
    assert!(
        store
            .pending(None, 0)
            .await
            .unwrap()
            .iter()
            .any(|x| x.id == d.id)
    );
    // The lease was released with the attempt: another worker may take it.
    assert!(
        store
            .claim(&d.id, "w2", retry_at + TimeDelta::seconds(30), retry_at)
            .await
            .unwrap()
    );
    store
        .record_attempt(&AttemptRecord {
            delivery_id: d.id.clone(),
            attempt: 2,
            at: retry_at,
            duration_ms: 4,
            ok: true,
            code: Some(200),
            error: None,
            next_attempt_at: None,
        })
        .await
        .unwrap();
    let after = store
        .deliveries(&DeliveryQuery {
            incident_id: d.incident_id.clone(),
            ..DeliveryQuery::default()
        })
        .await
        .unwrap();
    let done = after.iter().find(|x| x.id == d.id).unwrap();
    assert_eq!(done.status, DeliveryStatus::Delivered);
    assert_eq!(done.attempts, 2);
    assert_eq!(done.delivered_at, Some(retry_at));
    assert!(
        !store
            .claim(&d.id, "w3", retry_at + TimeDelta::hours(1), retry_at + h)
            .await
            .unwrap()
    );
    let attempts = store.attempts(&d.id).await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.attempt, a.ok, a.code))
            .collect::<Vec<_>>(),
        [(1, false, Some(503)), (2, true, Some(200))]
    );
    assert_eq!(store.pending(None, 0).await.unwrap().len(), 3);
    assert_eq!(
        store.delivery_counts().await.unwrap(),
        DeliveryCounts {
            delivered: 1,
            failed_attempts: 1,
            pending: 3
        }
    );

    // The planner sees who was notified of open incidents.
    let seen = std::sync::Mutex::new(None);
    let probe = |input: &PlanInput| {
        *seen.lock().unwrap() = Some(input.notified.clone());
        Plan::default()
    };
    let r4 = report("run-4", "gate", t0() + h * 4, vec![], &[]);
    store
        .record_run(
            &RunRecord {
                report: &r4,
                sources: vec![],
                remembered: vec![RememberedState {
                    invariant: "E-02".into(),
                    key: "exec-1".into(),
                    state: "success".into(),
                    seen_at: t0() + h * 4,
                }],
            },
            &probe,
        )
        .await
        .unwrap();
    let notified: BTreeMap<String, BTreeMap<String, DateTime<Utc>>> =
        seen.lock().unwrap().take().unwrap();
    assert_eq!(notified.len(), 2, "{notified:?}");
    assert!(notified.values().all(|m| m.contains_key("hook")));

    // Remembered states for `transitions`.
    let rem = store.remembered("E-02").await.unwrap();
    assert_eq!(rem.len(), 1);
    assert_eq!(rem[0].state, "success");
    assert_eq!(store.forget_before("E-02", t0()).await.unwrap(), 0);
    assert_eq!(store.forget_before("E-02", t0() + h * 5).await.unwrap(), 1);

    // The audit over the whole range.
    let rep = store.report(t0(), t0() + h * 24).await.unwrap();
    let suites: Vec<(&str, &str, u64)> = rep
        .runs
        .iter()
        .map(|r| (r.suite.as_str(), r.trigger.as_str(), r.runs))
        .collect();
    assert_eq!(suites, [("gate", "cli", 3), ("weekly", "cli", 1)]);
    let oa = rep.outcomes.iter().find(|o| o.id == "A").unwrap();
    assert_eq!((oa.runs, oa.pass, oa.fail), (3, 1, 2));
    assert_eq!(rep.incidents_opened, 3);
    assert_eq!(rep.incidents_resolved, 1);
    assert_eq!(rep.median_time_to_resolve_ms, Some(3_600_000));
    assert_eq!(
        rep.vacuous,
        [Count {
            name: "B".into(),
            count: 1
        }]
    );
    assert_eq!(
        rep.skips_by_reason,
        [Count {
            name: "cost_guard".into(),
            count: 1
        }]
    );
    assert_eq!(
        rep.errors_by_source,
        [Count {
            name: "app".into(),
            count: 1
        }]
    );
    assert_eq!(
        rep.unavailable_by_source,
        [Count {
            name: "app".into(),
            count: 1
        }]
    );
    // A range with nothing in it.
    let empty = store.report(t0() - h * 48, t0() - h * 24).await.unwrap();
    assert!(empty.runs.is_empty() && empty.incidents.is_empty());

    // Idempotency keys are unique: recording the same notice twice queues it once.
    let dup = |input: &PlanInput| {
        let _ = input;
        Plan {
            outbox: vec![NewDelivery {
                id: "d-dup-2".into(),
                idempotency_key: pending[0].idempotency_key.clone(),
                sink: "hook".into(),
                notice: "firing".into(),
                incident_id: pending[0].incident_id.clone(),
                subject: pending[0].subject.clone(),
                payload: json!({}),
                created_at: t0() + h * 5,
            }],
            ..Plan::default()
        }
    };
    let r5 = report("run-5", "gate", t0() + h * 5, vec![], &[]);
    store
        .record_run(
            &RunRecord {
                report: &r5,
                sources: vec![],
                remembered: vec![],
            },
            &dup,
        )
        .await
        .unwrap();
    assert_eq!(store.pending(None, 0).await.unwrap().len(), 3);

    // A run id is recorded once: a second recording fails and leaves nothing behind.
    let again = store
        .record_run(
            &RunRecord {
                report: &r5,
                sources: vec![],
                remembered: vec![],
            },
            &dup,
        )
        .await;
    assert!(again.is_err());

    // Retention: two days later with `runs: 1d`, the runs go; pending deliveries, open
    // incidents and young violations stay.
    let pruned = store
        .prune(
            Retention {
                runs: Duration::from_secs(86_400),
                violations: Duration::from_secs(365 * 86_400),
            },
            t0() + h * 48,
        )
        .await
        .unwrap();
    assert_eq!(pruned.runs, 5);
    assert_eq!(pruned.results, 6);
    assert_eq!(pruned.violations, 0);
    assert_eq!(pruned.incidents, 1);
    assert_eq!(pruned.deliveries, 1);
    assert!(store.runs(&RunQuery::default()).await.unwrap().is_empty());
    assert_eq!(store.pending(None, 0).await.unwrap().len(), 3);
    assert_eq!(
        store
            .incidents(&IncidentQuery {
                open_only: true,
                ..IncidentQuery::default()
            })
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store
            .violations(&ViolationQuery::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    let pruned = store
        .prune(
            Retention {
                runs: Duration::from_secs(86_400),
                violations: Duration::from_secs(86_400),
            },
            t0() + h * 48,
        )
        .await
        .unwrap();
    assert_eq!(pruned.violations, 4);
    // The incident states survive pruning: the next run continues where this one stopped.
    assert!(store.incident_states().await.unwrap().contains_key("A"));
}

#[tokio::test]
async fn sqlite_story() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/.invar/history.db");
    let store = open_sqlite(&path).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    story(&store).await;
    drop(store);
    // Reopening migrates nothing and keeps the data.
    let again = open_sqlite(&path).await.unwrap();
    assert!(again.incident_states().await.unwrap().contains_key("A"));
}

/// The loopback Postgres, or None (with a warning) when it is not there and `CI` is unset.
pub async fn postgres(schema: &str) -> Option<PgStore> {
    let url = std::env::var("INVAR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match connect_postgres(&Secret::new(url), Some(schema)).await {
        Ok(s) => Some(s),
        Err(e) if invar_testkit::in_ci() => {
            panic!("postgres is required when CI is set: {e}")
        }
        Err(e) => {
            eprintln!("warning: skipping the postgres store story: {e}");
            None
        }
    }
}

#[tokio::test]
async fn postgres_story() {
    let schema = format!("invar_store_{}", uuid::Uuid::now_v7().simple());
    let Some(store) = postgres(&schema).await else {
        return;
    };
    assert_eq!(store.backend(), "postgres");
    story(&store).await;
    store.drop_schema(&schema).await.unwrap();
}

/// Ticks and leases, seen by two handles on one store (`a` and `b`: two pools, as two
/// replicas would have).
async fn schedule_and_leases(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    let stores = [a.clone(), b.clone()];
    let now = t0();
    assert_eq!(a.last_tick("nightly").await.unwrap(), None);

    // Many claimants of one tick at once, through both handles: exactly one wins. Five ticks
    // in a row, to give a race a chance to show.
    for k in 0..5 {
        let tick = t0() + TimeDelta::hours(k);
        let winners = race(&stores, 24, move |store, i| async move {
            store
                .claim_tick("nightly", tick, &format!("w{i}"), now)
                .await
                .unwrap()
        })
        .await;
        assert_eq!(winners, 1, "tick {k}");
        assert_eq!(b.last_tick("nightly").await.unwrap(), Some(tick));
    }
    let last = t0() + TimeDelta::hours(4);
    // A claimed tick stays claimed; claiming a missed earlier tick does not move the latest.
    assert!(!a.claim_tick("nightly", last, "late", now).await.unwrap());
    assert!(
        a.claim_tick("nightly", t0() - TimeDelta::hours(1), "w0", now)
            .await
            .unwrap()
    );
    assert_eq!(a.last_tick("nightly").await.unwrap(), Some(last));
    // Claimed is not finished: only ticks whose run was recorded count as run.
    assert_eq!(b.last_finished_tick("nightly").await.unwrap(), None);
    let second = t0() + TimeDelta::hours(1);
    a.finish_tick("nightly", second, "run-2").await.unwrap();
    assert_eq!(b.last_finished_tick("nightly").await.unwrap(), Some(second));
    // Finishing a tick nobody claimed records nothing.
    a.finish_tick("nightly", t0() + TimeDelta::days(9), "run-x")
        .await
        .unwrap();
    assert_eq!(b.last_finished_tick("nightly").await.unwrap(), Some(second));
    // A claimed tick that never finished can be taken over once it is stale, by one caller;
    // a finished or fresh claim cannot.
    let third = t0() + TimeDelta::hours(2);
    let later = now + TimeDelta::minutes(10);
    assert!(
        !a.reclaim_tick("nightly", third, "w9", later, now)
            .await
            .unwrap()
    );
    let winners = race(&stores, 12, move |store, i| async move {
        store
            .reclaim_tick("nightly", third, &format!("r{i}"), later, later)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(winners, 1);
    assert!(
        !a.reclaim_tick("nightly", second, "w9", later, later)
            .await
            .unwrap()
    );
    // Suites are independent.
    assert_eq!(a.last_tick("weekly").await.unwrap(), None);
    assert_eq!(a.last_finished_tick("weekly").await.unwrap(), None);
    assert!(a.claim_tick("weekly", last, "w0", now).await.unwrap());

    // Retention ages ticks like runs but keeps each suite's latest.
    let week = Duration::from_secs(7 * 86_400);
    a.prune(
        Retention {
            runs: Duration::from_secs(86_400),
            violations: week,
        },
        t0() + TimeDelta::days(3),
    )
    .await
    .unwrap();
    assert_eq!(a.last_tick("nightly").await.unwrap(), Some(last));
    assert_eq!(a.last_tick("weekly").await.unwrap(), Some(last));
    // (So a pruned tick, days old, could be claimed again.)
    assert!(a.claim_tick("nightly", t0(), "w1", now).await.unwrap());
    assert!(!a.claim_tick("nightly", last, "w1", now).await.unwrap());

    // Renewal extends only the holder's lease and never re-creates a released one.
    assert!(
        a.acquire_lease("suite:renew", "w1", now + TimeDelta::seconds(30), now)
            .await
            .unwrap()
    );
    assert!(
        a.renew_lease("suite:renew", "w1", now + TimeDelta::seconds(60))
            .await
            .unwrap()
    );
    assert!(
        !b.renew_lease("suite:renew", "w2", now + TimeDelta::seconds(90))
            .await
            .unwrap()
    );
    a.release_lease("suite:renew", "w1").await.unwrap();
    assert!(
        !a.renew_lease("suite:renew", "w1", now + TimeDelta::seconds(90))
            .await
            .unwrap()
    );
    assert!(
        b.acquire_lease("suite:renew", "w2", now + TimeDelta::seconds(30), now)
            .await
            .unwrap()
    );

    // Leases: one winner among many at once.
    let until = now + TimeDelta::seconds(30);
    let winners = race(&stores, 24, move |store, i| async move {
        store
            .acquire_lease("suite:nightly", &format!("w{i}"), until, now)
            .await
            .unwrap()
    })
    .await;
    assert_eq!(winners, 1);
    // Who won? Only the holder can extend it.
    let mut holder = None;
    for i in 0..24 {
        let owner = format!("w{i}");
        if a.acquire_lease("suite:nightly", &owner, until + TimeDelta::seconds(30), now)
            .await
            .unwrap()
        {
            assert!(holder.is_none(), "two holders");
            holder = Some(owner);
        }
    }
    let holder = holder.expect("a holder");
    let other = if holder == "w0" { "w1" } else { "w0" };
    let until = until + TimeDelta::seconds(30);
    // Another owner cannot take it before it expires, nor release it.
    assert!(
        !b.acquire_lease(
            "suite:nightly",
            other,
            until,
            until - TimeDelta::milliseconds(1)
        )
        .await
        .unwrap()
    );
    b.release_lease("suite:nightly", other).await.unwrap();
    assert!(
        !b.acquire_lease("suite:nightly", other, until + TimeDelta::seconds(30), now)
            .await
            .unwrap()
    );
    // Other names are other leases.
    assert!(
        b.acquire_lease("suite:weekly", other, until, now)
            .await
            .unwrap()
    );
    // Expired (`until <= now`): the next one takes it, and then holds it.
    assert!(
        b.acquire_lease(
            "suite:nightly",
            other,
            until + TimeDelta::seconds(30),
            until
        )
        .await
        .unwrap()
    );
    assert!(
        !a.acquire_lease(
            "suite:nightly",
            &holder,
            until + TimeDelta::seconds(60),
            until
        )
        .await
        .unwrap()
    );
    // Released by its owner: free at once.
    b.release_lease("suite:nightly", other).await.unwrap();
    assert!(
        a.acquire_lease(
            "suite:nightly",
            &holder,
            until + TimeDelta::seconds(30),
            until
        )
        .await
        .unwrap()
    );
    // After expiry, many at once: again one winner.
    let later = until + TimeDelta::minutes(5);
    let winners = race(&stores, 24, move |store, i| async move {
        store
            .acquire_lease(
                "suite:nightly",
                &format!("x{i}"),
                later + TimeDelta::seconds(30),
                later,
            )
            .await
            .unwrap()
    })
    .await;
    assert_eq!(winners, 1);

    // Remembered states: a run that records after a newer one (two suites running the same
    // `transitions` invariant at once) does not roll the state back; the newer one wins.
    let remember = |run: &'static str, state: &'static str, at: DateTime<Utc>| {
        let a = a.clone();
        async move {
            let r = report(run, "weekly", at, vec![], &[]);
            a.record_run(
                &RunRecord {
                    report: &r,
                    sources: vec![],
                    remembered: vec![RememberedState {
                        invariant: "E-9".into(),
                        key: "exec-1".into(),
                        state: state.into(),
                        seen_at: at,
                    }],
                },
                &|_: &PlanInput| Plan::default(),
            )
            .await
            .unwrap();
        }
    };
    remember("rem-new", "success", t0() + TimeDelta::hours(4)).await;
    remember("rem-old", "running", t0() + TimeDelta::hours(3)).await;
    let rem = b.remembered("E-9").await.unwrap();
    assert_eq!((rem.len(), rem[0].state.as_str()), (1, "success"));
    remember("rem-newer", "failed", t0() + TimeDelta::hours(5)).await;
    assert_eq!(b.remembered("E-9").await.unwrap()[0].state, "failed");
}

/// Runs `n` tasks at once (released together by a barrier), alternating between the stores;
/// returns how many returned true.
async fn race<F, Fut>(stores: &[Arc<dyn Store>; 2], n: usize, f: F) -> usize
where
    F: Fn(Arc<dyn Store>, usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let fut = f(stores[i % 2].clone(), i);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            fut.await
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    won
}

/// Records a run with no incident planning.
async fn record_plain(store: &dyn Store, r: &RunReport) {
    let none = |_: &PlanInput| Plan::default();
    store
        .record_run(
            &RunRecord {
                report: r,
                sources: vec![],
                remembered: vec![],
            },
            &none,
        )
        .await
        .unwrap();
}

/// Every page of `q`, checking each page's size and that pages follow on.
async fn all_pages(store: &dyn Store, mut q: ViolationQuery) -> Vec<ViolationRow> {
    let mut out: Vec<ViolationRow> = Vec::new();
    loop {
        let page = store.violations(&q).await.unwrap();
        assert!(page.items.len() <= q.limit as usize);
        if page.next_cursor.is_some() {
            assert_eq!(page.items.len(), q.limit as usize);
        }
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

/// Violation pages under every filter, stats and recent outcomes over several runs, one of
/// them recorded late (so id order and time order differ).
async fn watch_reads(store: &dyn Store) {
    let m = TimeDelta::minutes(1);
    let run = |n: i64, x: usize, y: usize| {
        let mut ry = result(
            "Y",
            if y > 0 { Outcome::Fail } else { Outcome::Pass },
            None,
            y,
        );
        ry.severity = "minor".into();
        let rx = result(
            "X",
            if x > 0 { Outcome::Fail } else { Outcome::Pass },
            None,
            x,
        );
        report(
            &format!("run-{n}"),
            "gate",
            t0() + m * n as i32,
            vec![rx, ry],
            &[],
        )
    };
    // Runs at minutes 0, 2, 3, 4, then minute 1 recorded last; one big run of 120.
    for (n, x, y) in [(0, 7, 3), (2, 0, 2), (3, 120, 1), (4, 5, 0), (1, 4, 4)] {
        record_plain(store, &run(n, x, y)).await;
    }
    let every = all_pages(
        store,
        ViolationQuery {
            limit: 1000,
            ..ViolationQuery::default()
        },
    )
    .await;
    assert_eq!(every.len(), 7 + 3 + 2 + 120 + 1 + 5 + 4 + 4);
    // Newest first by time, then id: the late run sits at its minute.
    for w in every.windows(2) {
        assert!((w[0].at, w[0].id) > (w[1].at, w[1].id), "{w:?}");
    }
    assert_eq!(every[0].run_id, "run-4");
    assert_eq!(every.last().unwrap().run_id, "run-0");
    let minute_1: Vec<&str> = every
        .iter()
        .filter(|v| v.at == t0() + m)
        .map(|v| v.run_id.as_str())
        .collect();
    assert_eq!(minute_1, ["run-1"; 8]);

    // Every filter, paged in small pages, gives exactly the filtered full listing.
    let queries = [
        ViolationQuery::default(),
        ViolationQuery {
            invariant: Some("X".into()),
            ..ViolationQuery::default()
        },
        ViolationQuery {
            severity: Some("minor".into()),
            ..ViolationQuery::default()
        },
        ViolationQuery {
            since: Some(t0() + m * 2),
            ..ViolationQuery::default()
        },
        ViolationQuery {
            invariant: Some("X".into()),
            severity: Some("critical".into()),
            since: Some(t0() + m),
            ..ViolationQuery::default()
        },
        ViolationQuery {
            invariant: Some("Y".into()),
            severity: Some("critical".into()),
            ..ViolationQuery::default()
        },
    ];
    for base in queries {
        let want: Vec<&ViolationRow> = every
            .iter()
            .filter(|v| base.invariant.as_ref().is_none_or(|i| &v.invariant == i))
            .filter(|v| base.severity.as_ref().is_none_or(|s| &v.severity == s))
            .filter(|v| base.since.is_none_or(|t| v.at >= t))
            .collect();
        for limit in [1, 3, 50] {
            let got = all_pages(
                store,
                ViolationQuery {
                    limit,
                    ..base.clone()
                },
            )
            .await;
            assert_eq!(
                got.iter().collect::<Vec<_>>(),
                want,
                "{base:?} limit {limit}"
            );
        }
    }
    // Default page size 50; a cursor whose row is gone ends the listing.
    let first = store.violations(&ViolationQuery::default()).await.unwrap();
    assert_eq!(first.items.len(), 50);
    assert_eq!(
        first.next_cursor.as_deref(),
        Some(every[49].id.to_string().as_str())
    );
    let gone = ViolationQuery {
        cursor: Some("999999".into()),
        ..ViolationQuery::default()
    };
    assert_eq!(
        store.violations(&gone).await.unwrap(),
        Page {
            items: vec![],
            next_cursor: None
        }
    );
    let bad = ViolationQuery {
        cursor: Some("abc".into()),
        ..ViolationQuery::default()
    };
    assert!(store.violations(&bad).await.is_err());
    for v in [&every[0], &every[60], every.last().unwrap()] {
        assert_eq!(store.violation(v.id).await.unwrap().as_ref(), Some(v));
    }

    // Stats: most first, with first and last times.
    let stats = store.violation_stats(None).await.unwrap();
    assert_eq!(stats.total, every.len() as u64);
    assert_eq!(
        stats.by_severity,
        BTreeMap::from([("critical".to_string(), 136), ("minor".to_string(), 10)])
    );
    let row = |id: &str, severity: &str, count, first_at, last_at| InvariantViolationStats {
        id: id.into(),
        severity: severity.into(),
        count,
        first_at,
        last_at,
    };
    assert_eq!(
        stats.invariants,
        [
            row("X", "critical", 136, t0(), t0() + m * 4),
            row("Y", "minor", 10, t0(), t0() + m * 3),
        ]
    );
    let since = store.violation_stats(Some(t0() + m * 3)).await.unwrap();
    assert_eq!(since.total, 126);
    assert_eq!(since.invariants[0].first_at, t0() + m * 3);
    assert_eq!(since.invariants[1].count, 1);

    // Recent outcomes, newest first by start time whatever the recording order.
    let latest = store.latest_outcomes(3).await.unwrap();
    let strip = |id: &str| -> Vec<(String, String, u64)> {
        latest[id]
            .iter()
            .map(|o| (o.run_id.clone(), o.outcome.clone(), o.violations_total))
            .collect()
    };
    let s = |r: &str, o: &str, n: u64| (r.to_string(), o.to_string(), n);
    assert_eq!(
        strip("X"),
        [
            s("run-4", "fail", 5),
            s("run-3", "fail", 120),
            s("run-2", "pass", 0)
        ]
    );
    assert_eq!(
        strip("Y"),
        [
            s("run-4", "pass", 0),
            s("run-3", "fail", 1),
            s("run-2", "fail", 2)
        ]
    );
    let all = store.latest_outcomes(100).await.unwrap();
    assert_eq!(all["X"].len(), 5);
    assert_eq!(
        all["X"].iter().map(|o| o.started_at).collect::<Vec<_>>(),
        (0..5).rev().map(|n| t0() + m * n).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_schedule_and_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let a: Arc<dyn Store> = Arc::new(open_sqlite(&path).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(open_sqlite(&path).await.unwrap());
    schedule_and_leases(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_schedule_and_leases() {
    let schema = format!("invar_store_{}", uuid::Uuid::now_v7().simple());
    let Some(a) = postgres(&schema).await else {
        return;
    };
    let b = postgres(&schema).await.expect("a second connection");
    let a = Arc::new(a);
    schedule_and_leases(a.clone(), Arc::new(b)).await;
    a.drop_schema(&schema).await.unwrap();
}

#[tokio::test]
async fn sqlite_watch_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(&dir.path().join("history.db")).await.unwrap();
    watch_reads(&store).await;
}

#[tokio::test]
async fn postgres_watch_reads() {
    let schema = format!("invar_store_{}", uuid::Uuid::now_v7().simple());
    let Some(store) = postgres(&schema).await else {
        return;
    };
    watch_reads(&store).await;
    store.drop_schema(&schema).await.unwrap();
}

/// Silences: stored as given (at millisecond precision), listed all or by the instant they are
/// active at (start inclusive, end exclusive, not yet expired), expired once.
async fn silences(store: &dyn Store) {
    let m = TimeDelta::minutes(1);
    assert!(store.silences(None).await.unwrap().is_empty());
    assert!(store.silences(Some(t0())).await.unwrap().is_empty());
    let new = |starts: DateTime<Utc>, ends: DateTime<Utc>, reason: &str| NewSilence {
        matcher: format!("notice.subject == \"{reason}\""),
        starts_at: starts,
        ends_at: ends,
        reason: reason.into(),
        created_by: "ops@example.com".into(),
        created_at: t0() - m,
    };
    // Sub-millisecond parts are not kept.
    let fine = t0() + TimeDelta::microseconds(1_500);
    let a = store
        .add_silence(&new(fine, t0() + m * 60, "A"))
        .await
        .unwrap();
    assert_eq!(a.starts_at, t0() + TimeDelta::milliseconds(1));
    assert_eq!((a.ends_at, a.created_at), (t0() + m * 60, t0() - m));
    assert_eq!(a.matcher, "notice.subject == \"A\"");
    assert_eq!(
        (a.reason.as_str(), a.created_by.as_str()),
        ("A", "ops@example.com")
    );
    assert_eq!(a.expired_at, None);
    let id = uuid::Uuid::parse_str(&a.id).unwrap();
    assert_eq!(id.get_version_num(), 7);
    let b = store
        .add_silence(&new(t0() + m * 30, t0() + m * 120, "B"))
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(store.silences(None).await.unwrap(), [a.clone(), b.clone()]);

    let active = async |t: DateTime<Utc>| -> Vec<String> {
        let list = store.silences(Some(t)).await.unwrap();
        list.into_iter().map(|s| s.reason).collect()
    };
    assert!(active(t0()).await.is_empty(), "A starts 1.5 ms later");
    assert_eq!(active(t0() + TimeDelta::milliseconds(1)).await, ["A"]);
    assert_eq!(active(t0() + m * 45).await, ["A", "B"]);
    assert_eq!(active(t0() + m * 60).await, ["B"], "the end is exclusive");
    assert!(active(t0() + m * 120).await.is_empty());

    // Expired early: over from then on, still listed; expiring again or an unknown id: false.
    assert!(store.expire_silence(&b.id, t0() + m * 50).await.unwrap());
    assert!(!store.expire_silence(&b.id, t0() + m * 55).await.unwrap());
    assert!(!store.expire_silence("no-such-silence", t0()).await.unwrap());
    assert_eq!(active(t0() + m * 45).await, ["A", "B"]);
    assert_eq!(active(t0() + m * 50).await, ["A"]);
    assert!(active(t0() + m * 90).await.is_empty());
    let all = store.silences(None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[1].expired_at,
        Some(t0() + m * 50),
        "the first expiry is kept"
    );
    assert_eq!(all[0], a);
}

#[tokio::test]
async fn sqlite_silences() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let store = open_sqlite(&path).await.unwrap();
    silences(&store).await;
    drop(store);
    // Reopening keeps them (the migration is not applied twice).
    let again = open_sqlite(&path).await.unwrap();
    assert_eq!(again.silences(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn postgres_silences() {
    let schema = format!("invar_store_{}", uuid::Uuid::now_v7().simple());
    let Some(store) = postgres(&schema).await else {
        return;
    };
    silences(&store).await;
    store.drop_schema(&schema).await.unwrap();
}

/// A failing statement is a `StoreError::Db` whose source is the driver's error.
async fn error_source(store: &dyn Store) {
    use std::error::Error as _;
    let r = report("run-dup", "gate", t0(), vec![], &[]);
    record_plain(store, &r).await;
    let none = |_: &PlanInput| Plan::default();
    let run = RunRecord {
        report: &r,
        sources: vec![],
        remembered: vec![],
    };
    let e = store.record_run(&run, &none).await.unwrap_err();
    assert!(matches!(e, StoreError::Db(_)), "{e:?}");
    let source = e.source().expect("a source");
    let sqlx = source
        .downcast_ref::<sqlx::Error>()
        .expect("the source is an sqlx error");
    assert!(
        matches!(sqlx, sqlx::Error::Database(d) if d.is_unique_violation()),
        "{sqlx:?}"
    );
    assert!(e.to_string().starts_with("history store: "), "{e}");
    // A malformed cursor is refused before any statement runs.
    let bad = ViolationQuery {
        cursor: Some("not-a-cursor".into()),
        ..ViolationQuery::default()
    };
    let e = store.violations(&bad).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
}

#[tokio::test]
async fn sqlite_error_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(&dir.path().join("history.db")).await.unwrap();
    error_source(&store).await;
}

#[tokio::test]
async fn postgres_error_source() {
    let schema = format!("invar_store_{}", uuid::Uuid::now_v7().simple());
    let Some(store) = postgres(&schema).await else {
        return;
    };
    error_source(&store).await;
    store.drop_schema(&schema).await.unwrap();
}

/// A store that cannot be opened says so without the URL's password, and keeps no driver
/// error as its source (its text could hold the URL).
#[tokio::test]
async fn open_error_hides_the_password() {
    use std::error::Error as _;
    // Refused while parsing: no server needed.
    let url = Secret::new("postgres://invar:hunter2-secret@127.0.0.1:99999/test");
    let e = connect_postgres(&url, None)
        .await
        .err()
        .expect("no such port");
    assert!(matches!(e, StoreError::Open(_)), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("hunter2-secret"), "{text}");
    assert!(e.source().is_none());
}

/// The measured series of one invariant a page at a time (runs sharing a millisecond
/// included), and the incident events the status page's timeline reads.
async fn measurements_and_events(store: &dyn Store) {
    let at = |n: i64| t0() + TimeDelta::minutes(n);
    // Runs 2 and 3 start in the same millisecond; M fails in runs 2 and 3.
    let starts = [at(0), at(1), at(2), at(2), at(3)];
    for (n, s) in starts.iter().enumerate() {
        let outcome = if n == 2 || n == 3 {
            Outcome::Fail
        } else {
            Outcome::Pass
        };
        let mut r = result("M", outcome, None, 0);
        r.measured = json!({"count": n * 10, "note": "x"})
            .as_object()
            .unwrap()
            .clone();
        let other = result("N", Outcome::Pass, None, 0);
        let rep = report(&format!("run-{n}"), "all", *s, vec![r, other], &[]);
        record(store, &rep, &[]).await;
    }
    let mut q = MeasurementQuery {
        invariant: "M".into(),
        limit: 2,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = store.measurements(&q).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|p| {
            (
                p.run_id.clone(),
                p.outcome.clone(),
                p.measured["count"].as_i64().unwrap(),
            )
        }));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<(String, String, i64)> = [
        (4, "pass"),
        (3, "fail"),
        (2, "fail"),
        (1, "pass"),
        (0, "pass"),
    ]
    .iter()
    .map(|(n, o)| (format!("run-{n}"), o.to_string(), n * 10))
    .collect();
    assert_eq!(seen, want);
    // `since` keeps the start; an unknown invariant has no series; a bad cursor is refused.
    let recent = store
        .measurements(&MeasurementQuery {
            invariant: "M".into(),
            since: Some(at(2)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(recent.items.len(), 3);
    assert!(recent.next_cursor.is_none());
    let none = MeasurementQuery {
        invariant: "nope".into(),
        ..Default::default()
    };
    assert!(store.measurements(&none).await.unwrap().items.is_empty());
    let bad = MeasurementQuery {
        invariant: "M".into(),
        cursor: Some("12x".into()),
        ..Default::default()
    };
    assert!(matches!(
        store.measurements(&bad).await,
        Err(StoreError::Invalid(_))
    ));
    // The recent outcomes carry what was measured (the page's trend chart).
    let latest = store.latest_outcomes(3).await.unwrap();
    assert_eq!(latest["M"][0].measured["count"], json!(40));

    // M's incident opened in run 2 and resolved in run 4, oldest first.
    let events = store.incident_events(t0(), 100).await.unwrap();
    let of_m: Vec<(&str, Option<&str>, DateTime<Utc>)> = events
        .iter()
        .filter(|e| e.subject == "M")
        .map(|e| (e.event.as_str(), e.notice.as_deref(), e.at))
        .collect();
    assert_eq!(
        of_m,
        [
            ("opened", Some("firing"), at(2)),
            ("resolved", Some("resolved"), at(3))
        ]
    );
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(store.incident_events(at(4), 100).await.unwrap().is_empty());
    // The limit keeps the newest.
    let last = store.incident_events(t0(), 1).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].event, "resolved");
}

#[tokio::test]
async fn sqlite_measurements_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(&dir.path().join("history.db")).await.unwrap();
    measurements_and_events(&store).await;
}

#[tokio::test]
async fn postgres_measurements_and_events() {
    let schema = format!("invar_store_{}", uuid::Uuid::now_v7().simple());
    let Some(store) = postgres(&schema).await else {
        return;
    };
    measurements_and_events(&store).await;
    store.drop_schema(&schema).await.unwrap();
}
