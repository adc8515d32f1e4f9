//! Alerts end to end against real servers: a local HTTP receiver (a small tokio server in this
//! file), a local SMTP server (`python3 -m aiosmtpd`), and the SQLite store on disk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, TimeDelta, Utc};
use invar_alerts::{Backoff, Outbox, record_run};
use invar_core::{Config, Counts, InvariantResult, Outcome, RunProblem, RunReport};
use invar_store::{DeliveryQuery, DeliveryStatus, IncidentQuery, Store};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const TOKEN: &str = "tok3nSECRETvalue";

// ---------------------------------------------------------------- a real HTTP receiver

#[derive(Debug, Clone)]
struct Received {
    path: String,
    idempotency_key: Option<String>,
    body: Value,
    at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answer 503 to this many requests before accepting.
    fail_next: Arc<AtomicU32>,
}

impl Receiver {
    /// Serves on `listener` until the test ends.
    fn serve(&self, listener: TcpListener) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut r = BufReader::new(r);
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (mut len, mut key) = (0usize, None);
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => len = value.trim().parse().unwrap_or(0),
                            "idempotency-key" => key = Some(value.trim().to_string()),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; len];
                    let _ = r.read_exact(&mut body).await;
                    let fail = me
                        .fail_next
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let status = if fail {
                        "503 Service Unavailable"
                    } else {
                        me.got.lock().unwrap().push(Received {
                            path,
                            idempotency_key: key,
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            at: Instant::now(),
                        });
                        "200 OK"
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = w.write_all(resp.as_bytes()).await;
                    let _ = w.shutdown().await;
                });
            }
        });
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// (subject, status, notice) of every webhook body received.
    fn notices(&self) -> Vec<(String, String, String)> {
        self.received()
            .iter()
            .filter(|r| r.body.get("version").is_some())
            .map(|r| {
                (
                    r.body["subject"]["id"].as_str().unwrap_or("").to_string(),
                    r.body["status"].as_str().unwrap_or("").to_string(),
                    r.body["notice"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

async fn receiver() -> (Receiver, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let r = Receiver::default();
    r.serve(l);
    (r, port)
}

/// A port nothing listens on (yet).
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------- config, runs, store

fn config(dir: &Path, sinks: &str) -> Config {
    let text = format!(
        r#"
sources:
  app: {{ type: sqlite, path: app.db }}
alerts:
{sinks}
invariants:
  - id: INV-1
    title: Every order has a customer
    severity: critical
    runbook: Re-run the nightly ingest.
    probe: {{ source: app, sql: "SELECT id FROM orders WHERE customer_id IS NULL" }}
  - id: INV-2
    title: Slots match executions
    severity: major
    fire_after: 2
    probe: {{ source: app, sql: "SELECT 1 WHERE 0" }}
  - id: INV-3
    title: Minor thing
    severity: minor
    probe: {{ values: [a] }}
"#
    );
    let path = dir.join("invar.yaml");
    std::fs::write(&path, text).unwrap();
    match invar_config::load_with_env(&path, &|_| None) {
        Ok(c) => c,
        Err(d) => panic!("{}", d.render(false)),
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
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
        measured: serde_json::Map::new(),
        violations_total: if failing { 7 } else { 0 },
        violations: if failing {
            (0..7)
                .map(|i| json!({"id": i, "customer_id": null}))
                .collect()
        } else {
            vec![]
        },
        runbook: None,
        silenced: None,
    }
}

fn run(n: i64, results: Vec<InvariantResult>, unavailable: &[&str]) -> RunReport {
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
        automation_error: counts.error > 0,
        assessment_failures: counts.fail,
        lock_skipped: false,
        skipped_budget: 0,
        sources_unavailable: unavailable
            .iter()
            .map(|s| RunProblem::source(*s, "unable to open database file"))
            .collect(),
        results,
    }
}

async fn store(dir: &Path) -> Arc<dyn Store> {
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

// ---------------------------------------------------------------- the stories

/// red, red, green, red → one firing, one resolved, one firing; `fire_after: 2` waits for
/// the second red.
#[tokio::test]
async fn one_alert_per_transition() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, port) = receiver().await;
    let cfg = config(
        dir.path(),
        &format!("  hook: {{ type: webhook, url: \"http://127.0.0.1:{port}/hook\" }}"),
    );
    let store = store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast());
    let plan = [
        (Outcome::Fail, Outcome::Fail),
        (Outcome::Fail, Outcome::Fail),
        (Outcome::Pass, Outcome::Pass),
        (Outcome::Fail, Outcome::Fail),
    ];
    let mut after_each = Vec::new();
    for (i, (a, b)) in plan.into_iter().enumerate() {
        let r = run(i as i64, vec![res("INV-1", a), res("INV-2", b)], &[]);
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
        outbox.flush(Duration::from_secs(5)).await.unwrap();
        after_each.push(rx.notices().len());
    }
    let n = |s: &str, st: &str| (s.to_string(), st.to_string(), st.to_string());
    let inv1: Vec<_> = rx
        .notices()
        .into_iter()
        .filter(|x| x.0 == "INV-1")
        .collect();
    assert_eq!(
        inv1,
        [
            n("INV-1", "firing"),
            n("INV-1", "resolved"),
            n("INV-1", "firing")
        ]
    );
    // INV-2 (fire_after: 2): the first red sends nothing, the second one firing; the green
    // resolves; the single red after it sends nothing.
    let inv2: Vec<_> = rx
        .notices()
        .into_iter()
        .filter(|x| x.0 == "INV-2")
        .collect();
    assert_eq!(inv2, [n("INV-2", "firing"), n("INV-2", "resolved")]);
    assert_eq!(after_each, [1, 2, 4, 5]);
    // Every notice has its own idempotency key, in the header and the body.
    let got = rx.received();
    let mut keys: Vec<String> = got
        .iter()
        .map(|r| r.idempotency_key.clone().unwrap())
        .collect();
    assert!(
        got.iter()
            .all(|r| r.body["idempotency_key"].as_str() == r.idempotency_key.as_deref())
    );
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 5);
    // The reopened incident knows when it was last red.
    let last = got.last().unwrap();
    assert_eq!(last.body["subject"]["id"], "INV-1");
    assert_eq!(last.body["incident"]["last_red_at"], "2026-03-01T10:15:00Z");
    assert_eq!(last.body["violations_total"], 7);
    assert_eq!(last.body["violations"].as_array().unwrap().len(), 5);
    assert_eq!(last.body["runbook"], "Re-run the nightly ingest.");
    assert_eq!(last.path, "/hook");
}

/// The receiver is down for two red runs, then up: the firing arrives exactly once, and
/// every attempt is recorded.
#[tokio::test]
async fn an_outage_delays_but_never_loses_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().await;
    let cfg = config(
        dir.path(),
        &format!("  hook: {{ type: webhook, url: \"http://127.0.0.1:{port}/hook\" }}"),
    );
    let store = store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast());
    for i in 0..2 {
        let r = run(i, vec![res("INV-1", Outcome::Fail)], &[]);
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
        let f = outbox.flush(Duration::from_millis(300)).await.unwrap();
        assert_eq!((f.delivered, f.pending), (0, 1), "run {i}");
    }
    // The receiver comes up on the same port; a third red run flushes the queue.
    let rx = Receiver::default();
    rx.serve(TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    rx.fail_next.store(2, Ordering::SeqCst); // and it still answers 503 twice
    let r = run(2, vec![res("INV-1", Outcome::Fail)], &[]);
    record_run(store.as_ref(), &cfg, &r).await.unwrap();
    let f = outbox.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!((f.delivered, f.pending), (1, 0));
    assert_eq!(
        rx.notices(),
        [("INV-1".into(), "firing".into(), "firing".into())]
    );
    // More flushes deliver nothing more.
    outbox.flush(Duration::from_millis(200)).await.unwrap();
    assert_eq!(rx.received().len(), 1);
    let d = &store.deliveries(&DeliveryQuery::default()).await.unwrap()[0];
    assert_eq!(d.status, DeliveryStatus::Delivered);
    let attempts = store.attempts(&d.id).await.unwrap();
    assert!(attempts.len() >= 5, "{attempts:?}");
    assert!(attempts[..attempts.len() - 1].iter().all(|a| !a.ok));
    assert!(attempts.iter().any(|a| a.code == Some(503)));
    assert!(attempts.last().unwrap().ok);
}

/// The process dies after recording a run and before delivering: the next process delivers
/// the alert once.
#[tokio::test]
async fn a_crash_between_record_and_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, port) = receiver().await;
    let cfg = config(
        dir.path(),
        &format!("  hook: {{ type: webhook, url: \"http://127.0.0.1:{port}/hook\" }}"),
    );
    {
        let store = store(dir.path()).await;
        let r = run(0, vec![res("INV-1", Outcome::Fail)], &[]);
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
        // "Killed" here: no flush, the store is dropped.
    }
    assert!(rx.received().is_empty());
    let store = store(dir.path()).await;
    // The next run is still red: no second notice is planned; the queued one is delivered.
    let r = run(1, vec![res("INV-1", Outcome::Fail)], &[]);
    record_run(store.as_ref(), &cfg, &r).await.unwrap();
    let outbox = Outbox::new(store.clone(), &cfg.alerts);
    outbox.flush(Duration::from_secs(5)).await.unwrap();
    outbox.flush(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        rx.notices(),
        [("INV-1".into(), "firing".into(), "firing".into())]
    );
}

/// A source that cannot be read opens one source incident; its invariants' errors alert
/// nothing; recovery resolves it.
#[tokio::test]
async fn a_source_outage_is_one_incident() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, port) = receiver().await;
    let cfg = config(
        dir.path(),
        &format!("  hook: {{ type: webhook, url: \"http://127.0.0.1:{port}/hook\" }}"),
    );
    let store = store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts);
    for i in 0..4 {
        let r = run(
            i,
            vec![res("INV-1", Outcome::Error), res("INV-2", Outcome::Error)],
            &["app"],
        );
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
        outbox.flush(Duration::from_secs(5)).await.unwrap();
    }
    let r = run(
        4,
        vec![res("INV-1", Outcome::Pass), res("INV-2", Outcome::Pass)],
        &[],
    );
    record_run(store.as_ref(), &cfg, &r).await.unwrap();
    outbox.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        rx.notices(),
        [
            ("app".into(), "firing".into(), "firing".into()),
            ("app".into(), "resolved".into(), "resolved".into())
        ]
    );
    let first = &rx.received()[0].body;
    assert_eq!(first["subject"]["kind"], "source");
    assert_eq!(first["severity"], "critical"); // the highest of INV-1 and INV-2
    assert!(
        first["summary"]
            .as_str()
            .unwrap()
            .contains("unable to open database file")
    );
}

/// `min_severity`, `send_resolved: false` and `repeat` per sink; Slack gets Block Kit.
#[tokio::test]
async fn per_sink_filters_reminders_and_block_kit() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, port) = receiver().await;
    let cfg = config(
        dir.path(),
        &format!(
            "  slack: {{ type: slack, webhook_url: \"http://127.0.0.1:{port}/slack\", min_severity: critical, repeat: 30m }}\n  \
             quiet: {{ type: webhook, url: \"http://127.0.0.1:{port}/quiet\", send_resolved: false }}"
        ),
    );
    let store = store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts);
    // Runs every 15 minutes: INV-1 (critical) and INV-3 (minor) red for 4 runs, then green.
    for i in 0..5 {
        let o = if i < 4 { Outcome::Fail } else { Outcome::Pass };
        let r = run(i, vec![res("INV-1", o), res("INV-3", o)], &[]);
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
        outbox.flush(Duration::from_secs(5)).await.unwrap();
    }
    let got = rx.received();
    let slack: Vec<&Received> = got.iter().filter(|r| r.path == "/slack").collect();
    let quiet: Vec<&Received> = got.iter().filter(|r| r.path == "/quiet").collect();
    // Slack: INV-1 only (critical): firing, a reminder 30 min later (run 2), resolved.
    let headers: Vec<String> = slack
        .iter()
        .map(|r| {
            r.body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(headers.len(), 3, "{headers:#?}");
    assert!(headers[0].contains("FIRING CRITICAL · INV-1 — Every order has a customer"));
    assert!(headers[1].contains("STILL FIRING"));
    assert!(headers[2].contains("RESOLVED"));
    let blocks = slack[0].body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert!(
        blocks[2]["text"]["text"]
            .as_str()
            .unwrap()
            .ends_with("+2 more")
    );
    assert!(
        blocks[3]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("Re-run the nightly ingest.")
    );
    let ctx = blocks[4]["elements"][0]["text"].as_str().unwrap();
    assert!(
        ctx.starts_with("run 2026-03-01 10:00:00 UTC (all, cli) · incident inc-run-0-"),
        "{ctx}"
    );
    // Quiet: both invariants fire, nothing resolves.
    let quiet_status: Vec<(&str, &str)> = quiet
        .iter()
        .map(|r| {
            (
                r.body["subject"]["id"].as_str().unwrap(),
                r.body["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(quiet_status, [("INV-1", "firing"), ("INV-3", "firing")]);
}

// ---------------------------------------------------------------- a real SMTP server

struct Smtp {
    child: std::process::Child,
    out: Arc<Mutex<String>>,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python_with_aiosmtpd() -> Option<String> {
    for py in ["/usr/bin/python3", "python3"] {
        let ok = std::process::Command::new(py)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(py.to_string());
        }
    }
    None
}

async fn smtp_server(port: u16) -> Option<Smtp> {
    let Some(py) = python_with_aiosmtpd() else {
        if invar_testkit::in_ci() {
            panic!("aiosmtpd is required when CI is set: apt-get install -y python3-aiosmtpd");
        }
        eprintln!("warning: skipping the SMTP test: python3-aiosmtpd is not installed");
        return None;
    };
    let mut child = std::process::Command::new(py)
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    // From here the child is killed and reaped on every path (Drop).
    let server = Smtp {
        child,
        out: out.clone(),
    };
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("aiosmtpd did not start on port {port}");
}

/// Email through a real SMTP server, down for the first attempt: delivered once, with a plain
/// text and an HTML part.
#[tokio::test]
async fn email_through_a_real_smtp_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().await;
    let cfg = config(
        dir.path(),
        &format!(
            "  mail: {{ type: email, smtp_url: \"smtp://127.0.0.1:{port}?tls=none\", from: invar@example.com, to: [ops@example.com, dba@example.com] }}"
        ),
    );
    let store = store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast());
    let r = run(0, vec![res("INV-1", Outcome::Fail)], &[]);
    record_run(store.as_ref(), &cfg, &r).await.unwrap();
    let f = outbox.flush(Duration::from_millis(300)).await.unwrap();
    assert_eq!(f.delivered, 0);
    let Some(smtp) = smtp_server(port).await else {
        return;
    };
    let f = outbox.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!((f.delivered, f.pending), (1, 0));
    outbox.flush(Duration::from_millis(200)).await.unwrap();
    let mut text = String::new();
    for _ in 0..50 {
        text = smtp.out.lock().unwrap().clone();
        if text.contains("END MESSAGE") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        text.matches("---------- MESSAGE FOLLOWS ----------")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("Subject: [invar] FIRING CRITICAL"), "{text}");
    assert!(
        text.contains("text/plain") && text.contains("text/html"),
        "{text}"
    );
    assert!(text.contains("ops@example.com") && text.contains("dba@example.com"));
}

// ---------------------------------------------------------------- secrets

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

/// A webhook URL holding a token (in its path and query) and SMTP credentials never appear in
/// a log line, an error, the store's files, or the config's debug output.
#[tokio::test(flavor = "current_thread")]
async fn secrets_never_leak() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not `set_default`: other tests of this binary run on other threads, and a
    // callsite they reach first (with no subscriber there) could be cached as uninteresting,
    // silently dropping this test's "alert delivered" line. Their lines carry no token.
    tracing::subscriber::set_global_default(subscriber).expect("only this test sets a subscriber");

    let dir = tempfile::tempdir().unwrap();
    let down = closed_port().await;
    let smtp_down = closed_port().await;
    let (rx, port) = receiver().await;
    let cfg = config(
        dir.path(),
        &format!(
            "  hook: {{ type: webhook, url: \"http://127.0.0.1:{down}/hooks/{TOKEN}?token={TOKEN}\" }}\n  \
             slack: {{ type: slack, webhook_url: \"http://127.0.0.1:{port}/services/T0/B0/{TOKEN}\" }}\n  \
             mail: {{ type: email, smtp_url: \"smtp://ops:{TOKEN}@127.0.0.1:{smtp_down}?tls=none\", from: a@example.com, to: [b@example.com] }}"
        ),
    );
    assert!(!format!("{cfg:?}").contains(TOKEN));
    let store = store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast());
    rx.fail_next.store(1, Ordering::SeqCst);
    for i in 0..2 {
        let o = if i == 0 { Outcome::Fail } else { Outcome::Pass };
        let r = run(i, vec![res("INV-1", o)], &[]);
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
        outbox.flush(Duration::from_millis(500)).await.unwrap();
    }
    // On a loaded machine the Slack retry may need more than one short flush: keep flushing
    // (the down sinks stay queued either way) until it arrived or 10 s passed.
    let slack = || {
        rx.received()
            .iter()
            .filter(|r| r.path.starts_with("/services"))
            .count()
    };
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while slack() < 2 && std::time::Instant::now() < until {
        outbox.flush(Duration::from_millis(500)).await.unwrap();
    }
    // The reachable Slack sink got its firing and resolve; the others are still queued.
    assert_eq!(
        rx.received()
            .iter()
            .filter(|r| r.path.starts_with("/services"))
            .count(),
        2
    );
    let pending = store.pending(None, 0).await.unwrap();
    assert_eq!(pending.len(), 4);
    let mut errors = Vec::new();
    for d in &pending {
        for a in store.attempts(&d.id).await.unwrap() {
            errors.extend(a.error);
        }
        errors.extend(d.last_error.clone());
    }
    assert!(!errors.is_empty());
    for e in &errors {
        assert!(!e.contains(TOKEN), "error leaks the token: {e}");
        assert!(!e.contains("/hooks/"), "error leaks the URL path: {e}");
    }
    let incidents = store.incidents(&IncidentQuery::default()).await.unwrap();
    assert!(!format!("{incidents:?}").contains(TOKEN));

    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("alert delivery failed"), "{log}");
    assert!(log.contains("alert delivered"), "{log}");
    assert!(!log.contains(TOKEN), "a log line leaks the token:\n{log}");

    drop(outbox);
    drop(store);
    for entry in std::fs::read_dir(dir.path().join(".invar")).unwrap() {
        let p = entry.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let found = bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes());
        assert!(!found, "{} holds the token", p.display());
    }
}

/// From the end of a run to the receiver: how long the one-shot flush takes (printed).
#[tokio::test]
async fn delivery_latency_from_run_end() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, port) = receiver().await;
    let cfg = config(
        dir.path(),
        &format!("  hook: {{ type: webhook, url: \"http://127.0.0.1:{port}/hook\" }}"),
    );
    let store = store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts);
    let mut samples = Vec::new();
    // Six transitions: a seventh within 24 h would be flapping (one notice, then quiet).
    for i in 0..6 {
        let o = if i % 2 == 0 {
            Outcome::Fail
        } else {
            Outcome::Pass
        };
        let r = run(i, vec![res("INV-1", o)], &[]);
        let end = Instant::now();
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
        outbox.flush(Duration::from_secs(5)).await.unwrap();
        let got = rx.received();
        samples.push((got.last().unwrap().at - end).as_secs_f64() * 1000.0);
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "delivery latency, run end → receiver (record + flush, SQLite, loopback): median {:.1} ms, max {:.1} ms",
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
    assert_eq!(rx.received().len(), 6);
}

/// A listener that accepts connections and never answers (a hung receiver); it holds them
/// until the test ends.
async fn hung_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

fn hung_and_healthy(dir: &Path, hung: u16, ok: u16) -> Config {
    config(
        dir,
        &format!(
            "  a_hung: {{ type: webhook, url: \"http://127.0.0.1:{hung}/hook\", timeout: 10s }}\n  \
             ok: {{ type: webhook, url: \"http://127.0.0.1:{ok}/hook\" }}"
        ),
    )
}

/// `invar run`'s flush: a sink that accepts and never answers delays neither the healthy
/// sink's notice nor the end of the flush past its bound.
#[tokio::test]
async fn a_hung_sink_does_not_hold_the_others_in_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, port) = receiver().await;
    let cfg = hung_and_healthy(dir.path(), hung_port().await, port);
    let store = store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast());
    let r = run(0, vec![res("INV-1", Outcome::Fail)], &[]);
    record_run(store.as_ref(), &cfg, &r).await.unwrap();
    let started = Instant::now();
    let f = outbox.flush(Duration::from_secs(3)).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "flush took {took:?}");
    assert_eq!((f.delivered, f.pending), (1, 1), "{f:?}");
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].at - started < Duration::from_secs(2),
        "the healthy sink waited {:?}",
        got[0].at - started
    );
    // The hung sink's row stays queued, its cut attempt recorded.
    let hung = store
        .deliveries(&DeliveryQuery::default())
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.sink == "a_hung")
        .unwrap();
    assert_eq!(hung.status, DeliveryStatus::Pending);
    let attempts = store.attempts(&hung.id).await.unwrap();
    assert!(!attempts.is_empty() && attempts.iter().all(|a| !a.ok));
}

/// `invar watch`'s outbox loop: while the hung sink's attempt waits for its 10 s timeout,
/// the healthy sink delivers a firing and then a resolve, each within 2 s of its run.
#[tokio::test]
async fn a_hung_sink_does_not_hold_the_others_in_the_watcher() {
    let dir = tempfile::tempdir().unwrap();
    let (rx, port) = receiver().await;
    let cfg = hung_and_healthy(dir.path(), hung_port().await, port);
    let store = store(dir.path()).await;
    let outbox = Arc::new(Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let outbox = outbox.clone();
        tokio::spawn(async move {
            outbox
                .run(Duration::from_millis(100), async {
                    let _ = stop_rx.await;
                })
                .await
        })
    };
    for (i, outcome, want) in [(0, Outcome::Fail, 1), (1, Outcome::Pass, 2)] {
        let r = run(i, vec![res("INV-1", outcome)], &[]);
        record_run(store.as_ref(), &cfg, &r).await.unwrap();
        let recorded = Instant::now();
        while rx.received().len() < want && recorded.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = rx.received();
        assert_eq!(got.len(), want, "run {i}");
        assert!(
            got[want - 1].at - recorded < Duration::from_secs(2),
            "run {i}: the healthy sink waited {:?}",
            got[want - 1].at - recorded
        );
    }
    assert_eq!(
        rx.notices(),
        [
            ("INV-1".into(), "firing".into(), "firing".into()),
            ("INV-1".into(), "resolved".into(), "resolved".into())
        ]
    );
    let _ = stop_tx.send(());
    // Shutdown waits for the hung sink's attempt in progress (bounded by its timeout).
    tokio::time::timeout(Duration::from_secs(15), worker)
        .await
        .unwrap()
        .unwrap();
}
