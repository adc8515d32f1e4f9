//! The `pagerduty` sink against a local Events API v2 receiver (a small tokio server in this
//! file) that checks the documented body shape — `routing_key`, `event_action`, `dedup_key`,
//! and for a `trigger` `payload.summary/source/severity` — and answers as scripted: 202,
//! 429, 5xx, or PagerDuty's 400 for an invalid event. Runs are recorded and flushed the way
//! `invar run` does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, TimeDelta, Utc};
use invar_alerts::{Backoff, Outbox, record_run};
use invar_core::{Config, Counts, InvariantResult, Outcome, RunReport};
use invar_store::{DeliveryQuery, IncidentQuery, Store};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const KEY: &str = "R0UT1NGk3yR0UT1NGk3yR0UT1NGk3y42";

/// A local PagerDuty: every request is checked, then answered from `script` (front first),
/// or 202 when the script is empty. Accepted events are kept.
#[derive(Clone, Default)]
struct PagerDuty {
    accepted: Arc<Mutex<Vec<Value>>>,
    /// Every request's (answer, event_action, dedup_key), in order.
    answered: Arc<Mutex<Vec<(u16, String, String)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

/// Events v2's rules for a body: the problems with it, as PagerDuty lists them.
fn problems(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    if s("routing_key") != Some(KEY) {
        out.push("Length of 'routing_key' is incorrect (should be 32 characters)".into());
    }
    let action = s("event_action").unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        out.push("'event_action' is invalid".into());
    }
    match s("dedup_key") {
        Some(k) if !k.is_empty() && k.len() <= 255 => {}
        _ => out.push("'dedup_key' is missing or too long".into()),
    }
    if action == "trigger" {
        let p = &v["payload"];
        let ps = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
        let summary = ps("summary");
        if summary.is_empty() || summary.chars().count() > 1024 {
            out.push("'payload.summary' is missing or too long".into());
        }
        if ps("source").is_empty() {
            out.push("'payload.source' is missing".into());
        }
        if !["critical", "error", "warning", "info"].contains(&ps("severity")) {
            out.push("'payload.severity' is invalid".into());
        }
        if p.get("custom_details").is_some_and(|d| !d.is_object()) {
            out.push("'payload.custom_details' must be an object".into());
        }
        if let Some(links) = v.get("links") {
            let ok = links
                .as_array()
                .is_some_and(|l| l.iter().all(|x| x["href"].is_string()));
            if !ok {
                out.push("'links' must be objects with an href".into());
            }
        }
    }
    out
}

impl PagerDuty {
    async fn start() -> (PagerDuty, u16) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let pd = PagerDuty::default();
        let me = pd.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = l.accept().await {
                let me = me.clone();
                tokio::spawn(async move { me.answer(stream).await });
            }
        });
        (pd, port)
    }

    async fn answer(&self, stream: tokio::net::TcpStream) {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let mut line = String::new();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        let _ = r.read_exact(&mut body).await;
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let wrong = problems(&v);
        let scripted = self.script.lock().unwrap().pop_front();
        let (status, reply) = if !line.starts_with("POST /v2/enqueue ") {
            (404, json!({"message": "not found"}))
        } else if !wrong.is_empty() || scripted == Some(400) {
            let errors = if wrong.is_empty() {
                vec!["scripted refusal".to_string()]
            } else {
                wrong
            };
            (
                400,
                json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
            )
        } else if let Some(code) = scripted {
            (code, json!({"status": "throttled", "message": "slow down"}))
        } else {
            self.accepted.lock().unwrap().push(v.clone());
            (
                202,
                json!({"status": "success", "message": "Event processed", "dedup_key": v["dedup_key"]}),
            )
        };
        self.answered.lock().unwrap().push((
            status,
            v["event_action"].as_str().unwrap_or("").to_string(),
            v["dedup_key"].as_str().unwrap_or("").to_string(),
        ));
        let text = reply.to_string();
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = w.write_all(resp.as_bytes()).await;
        let _ = w.shutdown().await;
    }

    fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().unwrap().clone()
    }
}

fn config(dir: &Path, port: u16, key_var: &str) -> Config {
    let text = format!(
        r#"
sources:
  app: {{ type: sqlite, path: app.db }}
alerts:
  pd: {{ type: pagerduty, routing_key: "${{{key_var}}}", url: "http://127.0.0.1:{port}/v2/enqueue" }}
invariants:
  - id: INV-1
    title: Every order has a customer
    severity: critical
    runbook: https://wiki.example.com/runbooks/orders
    probe: {{ source: app, sql: "SELECT id FROM orders WHERE customer_id IS NULL" }}
  - id: INV-2
    title: Slots match executions
    severity: major
    probe: {{ source: app, sql: "SELECT 1 WHERE 0" }}
"#
    );
    let path = dir.join("invar.yaml");
    std::fs::write(&path, text).unwrap();
    let env = |n: &str| match n {
        "PD_KEY" => Some(KEY.to_string()),
        "PD_WRONG_KEY" => Some("not-the-key".to_string()),
        _ => None,
    };
    match invar_config::load_with_env(&path, &env) {
        Ok(c) => c,
        Err(d) => panic!("{}", d.render(false)),
    }
}

fn res(id: &str, outcome: Outcome) -> InvariantResult {
    let failing = outcome == Outcome::Fail;
    InvariantResult {
        id: id.into(),
        title: format!("title of {id}"),
        severity: "critical".into(),
        outcome,
        reason: failing.then(|| "7 rows returned".to_string()),
        examined: 7,
        vacuous: false,
        duration_ms: 1,
        measured: [("late".to_string(), json!(7))].into_iter().collect(),
        violations_total: if failing { 7 } else { 0 },
        violations: if failing {
            (0..7).map(|i| json!({"id": i})).collect()
        } else {
            vec![]
        },
        runbook: None,
        silenced: None,
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn run(n: i64, results: Vec<InvariantResult>) -> RunReport {
    let mut counts = Counts::default();
    for r in &results {
        counts.add(r.outcome);
    }
    RunReport {
        run_id: format!("run-{n}"),
        suite: "all".into(),
        trigger: invar_core::Trigger::Cli,
        started_at: (t0() + TimeDelta::minutes(15 * n)),
        duration_ms: 5,
        status: invar_core::report::run_status(&results),
        exit_code: 0,
        counts,
        automation_error: false,
        assessment_failures: counts.fail,
        lock_skipped: false,
        skipped_budget: 0,
        sources_unavailable: vec![],
        results,
    }
}

async fn open_store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(
        invar_store::open_sqlite(&dir.join(".invar/history.db"))
            .await
            .unwrap(),
    )
}

fn fast() -> Backoff {
    Backoff {
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    }
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every tracing line of this test binary (set once; both tests log through it).
fn logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        logs
    })
    .clone()
}

/// Two incidents of INV-1 (red, red, green, red, green): each is one `trigger` and one
/// `resolve` with its own `dedup_key` = the incident id; the first trigger meets a 429 and a
/// 502 and is retried until PagerDuty takes it. The routing key is in no log line, stored
/// row or file, incident, or the deliveries as the API serialises them.
#[tokio::test]
async fn one_trigger_and_one_resolve_per_incident_and_throttling_is_retried() {
    let logs = logs();
    let dir = tempfile::tempdir().unwrap();
    let (pd, port) = PagerDuty::start().await;
    let cfg = config(dir.path(), port, "PD_KEY");
    assert!(!format!("{cfg:?}").contains(KEY));
    let store = open_store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast());
    pd.script.lock().unwrap().extend([429, 502]);
    let outcomes = [
        Outcome::Fail,
        Outcome::Fail,
        Outcome::Pass,
        Outcome::Fail,
        Outcome::Pass,
    ];
    for (i, o) in outcomes.into_iter().enumerate() {
        let r = run(i as i64, vec![res("INV-1", o), res("INV-2", Outcome::Pass)]);
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
        let f = outbox.flush(Duration::from_secs(10)).await.unwrap();
        assert_eq!((f.pending, f.parked), (0, 0), "after run {i}: {f:?}");
    }

    let got = pd.accepted();
    let actions: Vec<&str> = got
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["trigger", "resolve", "trigger", "resolve"]);
    let incidents = store.incidents(&IncidentQuery::default()).await.unwrap();
    let mut ids: Vec<&str> = incidents.iter().map(|i| i.id.as_str()).collect();
    ids.sort();
    let (k1, k2) = (&got[0]["dedup_key"], &got[2]["dedup_key"]);
    assert_eq!(&got[1]["dedup_key"], k1);
    assert_eq!(&got[3]["dedup_key"], k2);
    assert_ne!(k1, k2);
    let mut keys = vec![k1.as_str().unwrap(), k2.as_str().unwrap()];
    keys.sort();
    assert_eq!(keys, ids, "dedup_key is the incident id");

    let t = &got[0];
    assert_eq!(t["payload"]["severity"], "critical");
    assert_eq!(t["payload"]["source"], "invar");
    assert!(
        t["payload"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("INV-1: Every order has a customer — 7 rows returned")
    );
    let details = &t["payload"]["custom_details"];
    assert_eq!(details["measured"]["late"], 7);
    assert_eq!(details["violations"].as_array().unwrap().len(), 5);
    assert_eq!(details["violations_total"], 7);
    assert_eq!(
        details["runbook"],
        "https://wiki.example.com/runbooks/orders"
    );
    assert_eq!(
        t["links"][0]["href"],
        "https://wiki.example.com/runbooks/orders"
    );

    // The throttled trigger: 429, then 502, then 202 — three attempts, one event.
    let answered = pd.answered.lock().unwrap().clone();
    let codes: Vec<u16> = answered.iter().map(|a| a.0).collect();
    assert_eq!(codes, [429, 502, 202, 202, 202, 202]);
    let rows = store.deliveries(&DeliveryQuery::default()).await.unwrap();
    assert_eq!(rows.len(), 4);
    let attempts = store.attempts(&rows[0].id).await.unwrap();
    let seen: Vec<Option<i32>> = attempts.iter().map(|a| a.code).collect();
    assert_eq!(seen, [Some(429), Some(502), Some(202)]);
    assert!(attempts[0].error.as_deref().unwrap().contains("429"));

    // The routing key is nowhere invar writes.
    let mut written = format!("{rows:?}{incidents:?}");
    written.push_str(&serde_json::to_string(&rows).unwrap());
    for d in &rows {
        written.push_str(&format!("{:?}", store.attempts(&d.id).await.unwrap()));
    }
    written.push_str(&format!("{:?}", store.run_report("run-0").await.unwrap()));
    assert!(!written.contains(KEY), "a stored row holds the routing key");
    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("alert delivered"), "{log}");
    assert!(log.contains("alert delivery failed"), "{log}");
    assert!(
        !log.contains(KEY),
        "a log line holds the routing key:\n{log}"
    );
    drop(outbox);
    drop(store);
    for entry in std::fs::read_dir(dir.path().join(".invar")).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let found = bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes());
        assert!(!found, "{} holds the routing key", p.display());
    }
}

/// PagerDuty's 400 is final: the attempt keeps PagerDuty's message, the row is parked (no
/// further attempt, by the flush or later), and the sink's next notices still go.
#[tokio::test]
async fn a_refused_event_is_parked_with_pagerdutys_message() {
    let logs = logs();
    let dir = tempfile::tempdir().unwrap();
    let (pd, port) = PagerDuty::start().await;
    let cfg = config(dir.path(), port, "PD_KEY");
    let store = open_store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast());
    pd.script.lock().unwrap().push_back(400);
    let r = run(
        0,
        vec![res("INV-1", Outcome::Fail), res("INV-2", Outcome::Pass)],
    );
    record_run(store.as_ref(), &cfg, &r).await.unwrap();
    let f = outbox.flush(Duration::from_secs(2)).await.unwrap();
    assert_eq!((f.delivered, f.pending, f.parked), (0, 0, 1), "{f:?}");
    let refused = store.pending(None, 0).await.unwrap();
    assert_eq!(refused.len(), 1);
    let err = refused[0].last_error.clone().unwrap();
    assert!(err.contains("Event object is invalid"), "{err}");
    assert!(err.contains("not retried"), "{err}");
    assert_eq!(
        store.attempts(&refused[0].id).await.unwrap()[0].code,
        Some(400)
    );

    // INV-2 goes red: its trigger is not held behind the refused one.
    let r = run(
        1,
        vec![res("INV-1", Outcome::Fail), res("INV-2", Outcome::Fail)],
    );
    record_run(store.as_ref(), &cfg, &r).await.unwrap();
    let f = outbox.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!((f.delivered, f.pending, f.parked), (1, 0, 1), "{f:?}");
    let got = pd.accepted();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["payload"]["component"], "INV-2");
    assert_eq!(
        got[0]["payload"]["severity"], "error",
        "major is PagerDuty's error"
    );
    // Never attempted again.
    outbox.flush(Duration::from_millis(300)).await.unwrap();
    assert_eq!(store.attempts(&refused[0].id).await.unwrap().len(), 1);
    assert_eq!(pd.answered.lock().unwrap().len(), 2);
    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("parked, not retried"), "{log}");

    // A wrong routing key is refused the same way, and PagerDuty's words name the problem
    // without the key.
    let dir2 = tempfile::tempdir().unwrap();
    let cfg = config(dir2.path(), port, "PD_WRONG_KEY");
    let store2 = open_store(dir2.path()).await;
    let outbox = Outbox::new(store2.clone(), &cfg.alerts).with_backoff(fast());
    let r = run(0, vec![res("INV-1", Outcome::Fail)]);
    record_run(store2.as_ref(), &cfg, &r).await.unwrap();
    let f = outbox.flush(Duration::from_secs(2)).await.unwrap();
    assert_eq!(f.parked, 1);
    let err = store2.pending(None, 0).await.unwrap()[0]
        .last_error
        .clone()
        .unwrap();
    assert!(err.contains("routing_key"), "{err}");
    assert!(!err.contains("not-the-key"), "{err}");
}
