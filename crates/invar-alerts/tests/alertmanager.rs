//! The `alertmanager` sink against a real Prometheus Alertmanager (Debian's
//! `prometheus-alertmanager`, installed by `scripts/ensure-services.sh`), started by each test
//! on a free port with its own config and storage and clustering off, killed by PID at the end
//! (a Drop guard, so also when the test panics). Runs are recorded and flushed the way
//! `invar run` does: `record_run`, then `Outbox::flush`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use chrono::{DateTime, TimeDelta, Utc};
use invar_alerts::{Backoff, Outbox, record_run};
use invar_core::{Config, Counts, InvariantResult, Outcome, RunReport};
use invar_store::{DeliveryQuery, DeliveryStatus, Store};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A running Alertmanager; killed and reaped on drop.
struct Alertmanager {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// Its log, for a failing assertion's message.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v2/alerts`: the alerts it holds (resolved ones are left out by Alertmanager).
    async fn alerts(&self) -> Vec<Value> {
        let v: Value = reqwest::get(format!("{}/api/v2/alerts", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v.as_array().cloned().unwrap_or_default()
    }

    /// The alert named `name`, waiting (up to 10 s) until `want` holds for the list.
    async fn wait_for(&self, name: &str, want: impl Fn(Option<&Value>) -> bool) -> Option<Value> {
        let mut last = None;
        for _ in 0..100 {
            let all = self.alerts().await;
            last = all
                .into_iter()
                .find(|a| a["labels"]["alertname"].as_str() == Some(name));
            if want(last.as_ref()) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "alertmanager never reached the expected state for {name}; last: {last:?}\n{}",
            self.log()
        );
    }
}

fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|d| [d.join("prometheus-alertmanager"), d.join("alertmanager")])
            .find(|p| p.is_file())
    });
    let debian = PathBuf::from("/usr/bin/prometheus-alertmanager");
    on_path.or_else(|| debian.is_file().then_some(debian))
}

/// Starts an Alertmanager on `port` with its config and storage under `dir`. None (a loud
/// skip) when it is not installed outside CI; a failure under CI.
async fn start(dir: &Path, port: u16) -> Option<Alertmanager> {
    let Some(bin) = binary() else {
        invar_testkit::skip(
            "prometheus-alertmanager is not installed",
            "install it with `bash scripts/ensure-services.sh` (Debian package `prometheus-alertmanager`)",
        );
        return None;
    };
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let storage = dir.join(format!("am-data-{port}"));
    std::fs::create_dir_all(&storage).unwrap();
    let log = dir.join(format!("alertmanager-{port}.log"));
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", storage.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // From here it is killed on every path.
    let am = Alertmanager {
        child,
        base: format!("http://127.0.0.1:{port}"),
        log,
    };
    for _ in 0..150 {
        let ready = reqwest::get(format!("{}/-/ready", am.base))
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Some(am);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("alertmanager did not get ready on {port}:\n{}", am.log());
}

async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

fn config(dir: &Path, am_port: u16) -> Config {
    let text = format!(
        r#"
sources:
  app: {{ type: sqlite, path: app.db }}
alerts:
  am: {{ type: alertmanager, url: "http://127.0.0.1:{am_port}/", refresh: 5m }}
suites:
  gate: {{ select: "'gate' in tags" }}
invariants:
  - id: INV-1
    title: Every order has a customer
    severity: critical
    tags: [gate, team-a]
    runbook: Re-run the nightly ingest.
    probe: {{ source: app, sql: "SELECT id FROM orders WHERE customer_id IS NULL" }}
"#
    );
    let path = dir.join("invar.yaml");
    std::fs::write(&path, text).unwrap();
    match invar_config::load_with_env(&path, &|_| None) {
        Ok(c) => c,
        Err(d) => panic!("{}", d.render(false)),
    }
}

fn res(outcome: Outcome) -> InvariantResult {
    let failing = outcome == Outcome::Fail;
    InvariantResult {
        id: "INV-1".into(),
        title: "Every order has a customer".into(),
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

/// Run `n`, 15 minutes after run `n-1`, the first two hours ago.
fn run(base: DateTime<Utc>, n: i64, outcome: Outcome) -> RunReport {
    let results = vec![res(outcome)];
    let mut counts = Counts::default();
    counts.add(outcome);
    RunReport {
        run_id: format!("run-{n}"),
        suite: "gate".into(),
        trigger: invar_core::Trigger::Cli,
        started_at: (base + TimeDelta::minutes(15 * n)),
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

/// Whole milliseconds, as the report's timestamps are.
fn two_hours_ago() -> DateTime<Utc> {
    let t = Utc::now() - TimeDelta::hours(2);
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// red → red → green: active after the first run (labels, annotations, `startsAt`, an
/// `endsAt` ahead), refreshed by the second (15 min later, past `refresh: 5m`), gone from
/// `/api/v2/alerts` after the green one.
#[tokio::test]
async fn red_red_green_in_a_real_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().await;
    let Some(am) = start(dir.path(), port).await else {
        return;
    };
    let cfg = config(dir.path(), port);
    let store = store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast());
    let base = two_hours_ago();

    record_run(store.as_ref(), &cfg, &run(base, 0, Outcome::Fail))
        .await
        .unwrap();
    let f = outbox.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!((f.delivered, f.pending), (1, 0), "{}", am.log());
    let a = am
        .wait_for("INV-1", |a| {
            a.is_some_and(|a| a["status"]["state"] == "active")
        })
        .await
        .unwrap();
    let labels = &a["labels"];
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["suite"], "gate");
    assert_eq!(labels["source"], "invar");
    assert_eq!(labels["tag_gate"], "true");
    assert_eq!(labels["tag_team_a"], "true");
    let ann = &a["annotations"];
    assert_eq!(ann["title"], "Every order has a customer");
    assert_eq!(ann["summary"], "7 rows returned (7 violations)");
    assert_eq!(ann["runbook"], "Re-run the nightly ingest.");
    let violations = ann["violations"].as_str().unwrap();
    assert_eq!(violations.lines().count(), 6, "{violations}");
    assert!(violations.ends_with("+2 more"), "{violations}");
    assert_eq!(ts(&a["startsAt"]), base);
    let ends = ts(&a["endsAt"]);
    let ahead = ends - Utc::now();
    assert!(
        ahead > TimeDelta::minutes(19) && ahead <= TimeDelta::minutes(20),
        "endsAt {ends} is not four refreshes ahead"
    );

    // Still red 15 minutes later: a refresh is planned and posted; still active.
    record_run(store.as_ref(), &cfg, &run(base, 1, Outcome::Fail))
        .await
        .unwrap();
    let f = outbox.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!((f.delivered, f.pending), (1, 0));
    let rows = store
        .deliveries(&DeliveryQuery {
            sink: Some("am".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let notices: Vec<&str> = rows.iter().map(|d| d.notice.as_str()).collect();
    assert_eq!(notices, ["firing", "reminder"]);
    assert!(rows.iter().all(|d| d.status == DeliveryStatus::Delivered));
    let again = am
        .wait_for("INV-1", |a| {
            a.is_some_and(|a| a["status"]["state"] == "active")
        })
        .await
        .unwrap();
    assert_eq!(
        again["fingerprint"], a["fingerprint"],
        "one alert, refreshed"
    );
    assert_eq!(ts(&again["startsAt"]), base);
    assert!(ts(&again["endsAt"]) >= ends);

    // Green: posted with endsAt = the resolution time, so Alertmanager resolves it at once.
    record_run(store.as_ref(), &cfg, &run(base, 2, Outcome::Pass))
        .await
        .unwrap();
    let f = outbox.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!((f.delivered, f.pending), (1, 0));
    am.wait_for("INV-1", |a| {
        a.is_none_or(|a| ts(&a["endsAt"]) <= Utc::now() && a["status"]["state"] != "active")
    })
    .await;
    // A run that plans nothing new posts nothing.
    record_run(store.as_ref(), &cfg, &run(base, 3, Outcome::Pass))
        .await
        .unwrap();
    let f = outbox.flush(Duration::from_secs(2)).await.unwrap();
    assert_eq!(f.delivered, 0);
}

/// Alertmanager down during the red run: the firing stays queued (attempts recorded) and
/// arrives, active, once it is back.
#[tokio::test]
async fn an_alert_posted_while_alertmanager_is_down_arrives_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().await;
    if binary().is_none() {
        // The same loud skip (or CI failure) as everywhere else.
        start(dir.path(), port).await;
        return;
    }
    let cfg = config(dir.path(), port);
    let store = store(dir.path()).await;
    let outbox = Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast());
    let base = two_hours_ago();
    record_run(store.as_ref(), &cfg, &run(base, 0, Outcome::Fail))
        .await
        .unwrap();
    let f = outbox.flush(Duration::from_millis(500)).await.unwrap();
    assert_eq!((f.delivered, f.pending), (0, 1));
    assert!(f.failed_attempts >= 1);
    let pending = store.pending(None, 0).await.unwrap();
    assert!(
        pending[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot connect")),
        "{pending:?}"
    );

    let am = start(dir.path(), port).await.unwrap();
    let f = outbox.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!((f.delivered, f.pending), (1, 0), "{}", am.log());
    let a = am
        .wait_for("INV-1", |a| {
            a.is_some_and(|a| a["status"]["state"] == "active")
        })
        .await
        .unwrap();
    // endsAt is computed when delivered, so a late post is still current.
    assert!(ts(&a["endsAt"]) > Utc::now() + TimeDelta::minutes(19));
    assert_eq!(am.alerts().await.len(), 1);
}

/// A stand-in for an Alertmanager behind a proxy (a real one ignores headers, so this one is
/// a local listener): answers `status` with a body that echoes the `Authorization` header,
/// and records what it got.
async fn echoing_receiver(status: u16) -> (u16, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = l.accept().await {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            let _ = r.read_line(&mut line).await;
            let (mut len, mut auth) = (0usize, String::new());
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).await.unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let (name, value) = h.split_once(':').unwrap_or((&h, ""));
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => len = value.trim().parse().unwrap_or(0),
                    "authorization" => auth = value.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body).await;
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            seen.lock().unwrap().push((path, auth.clone()));
            let text = format!("bad request from {auth}");
            let resp = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = w.write_all(resp.as_bytes()).await;
            let _ = w.shutdown().await;
        }
    });
    (port, got)
}

/// `headers` are sent with every post and never shown: a 400 (Alertmanager refusing the
/// alert) is parked, and its stored error has the echoed header value scrubbed; a 503 is
/// retried instead.
#[tokio::test]
async fn headers_are_sent_and_a_refusal_is_parked_without_them() {
    const TOKEN: &str = "pr0xyT0KENsecret";
    for (status, parks) in [(400u16, true), (503, false)] {
        let dir = tempfile::tempdir().unwrap();
        let (port, got) = echoing_receiver(status).await;
        let text = format!(
            "sources:\n  app: {{ type: sqlite, path: app.db }}\nalerts:\n  am: {{ type: alertmanager, url: \"http://127.0.0.1:{port}\", headers: {{ Authorization: \"Bearer {TOKEN}\" }} }}\ninvariants:\n  - id: INV-1\n    title: t\n    severity: critical\n    probe: {{ source: app, sql: \"SELECT 1\" }}\n"
        );
        let path = dir.path().join("invar.yaml");
        std::fs::write(&path, text).unwrap();
        let cfg = invar_config::load_with_env(&path, &|_| None).unwrap();
        assert!(!format!("{cfg:?}").contains(TOKEN));
        let store = store(dir.path()).await;
        let outbox = Outbox::new(store.clone(), &cfg.alerts).with_backoff(fast());
        record_run(
            store.as_ref(),
            &cfg,
            &run(two_hours_ago(), 0, Outcome::Fail),
        )
        .await
        .unwrap();
        let f = outbox.flush(Duration::from_millis(1500)).await.unwrap();
        assert_eq!(f.delivered, 0);
        assert_eq!((f.parked, f.pending), if parks { (1, 0) } else { (0, 1) });
        let requests = got.lock().unwrap().clone();
        assert_eq!(
            requests[0],
            ("/api/v2/alerts".to_string(), format!("Bearer {TOKEN}"))
        );
        assert_eq!(
            requests.len() == 1,
            parks,
            "a refusal is tried once: {requests:?}"
        );
        let row = &store.pending(None, 0).await.unwrap()[0];
        let err = row.last_error.clone().unwrap();
        assert!(
            err.contains(&format!("alertmanager answered {status}")),
            "{err}"
        );
        assert!(!err.contains(TOKEN), "{err}");
        for a in store.attempts(&row.id).await.unwrap() {
            assert!(!a.error.unwrap_or_default().contains(TOKEN));
        }
    }
}
