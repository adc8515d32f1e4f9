//! Secrets end to end (RELIABILITY.md): one config holding a secret of every kind — a SQL
//! password, a Redis password, an HTTP header, a webhook URL token, a PagerDuty routing key, the
//! API's tokens — run through `invar validate`, `invar run` (every format), `invar watch` (every
//! route, debug logs, deliveries) and the read commands; then every byte the store left on disk
//! is searched. No canary may appear anywhere but at the receivers it is meant for.
//!
//! PostgreSQL (trust auth: the password is sent nowhere but must still be hidden) and Redis
//! (no password set: its AUTH fails, so the error path is exercised) on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::cargo::CommandCargoExt;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CANARIES: [&str; 7] = [
    "pgCanaryPw7",
    "redisCanaryPw8",
    "httpCanaryTok9",
    "hookCanaryQ1",
    "pdCanaryKey2",
    "adminCanaryTok3xyzxyzxyz",
    "readCanaryTok4xyzxyzxyz",
];
const ADMIN: &str = "adminCanaryTok3xyzxyzxyz";

fn invar() -> Command {
    let mut c = Command::cargo_bin("invar").unwrap();
    c.env_remove("INVAR_CONFIG")
        .env("NO_COLOR", "1")
        .env("INVAR_LOG", "debug");
    c
}

/// Panics naming `what` and the canary when `text` holds one.
fn assert_clean(what: &str, text: &str) {
    for c in CANARIES {
        assert!(!text.contains(c), "{what} shows the secret `{c}`:\n{text}");
    }
}

fn config(dir: &Path, hook: &str, pd: &str) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // `closed` is dropped here: nothing listens on it.
    std::fs::write(
        dir.join("invar.yaml"),
        format!(
            r#"store: sqlite://h.db
server:
  admin_token: "{ADMIN}"
  read_token: "readCanaryTok4xyzxyzxyz"
sources:
  pg:    {{ type: postgres, url: "postgres://postgres:pgCanaryPw7@127.0.0.1:5432/test" }}
  cache: {{ type: redis, url: "redis://:redisCanaryPw8@127.0.0.1:6379/0" }}
  api:   {{ type: http, base_url: "http://{closed}", headers: {{ Authorization: "Bearer httpCanaryTok9" }} }}
alerts:
  hook:   {{ type: webhook, url: "{hook}?token=hookCanaryQ1" }}
  oncall: {{ type: pagerduty, routing_key: "pdCanaryKey2", url: "{pd}" }}
invariants:
  - id: SQL-1
    title: the database answers and fails on purpose
    severity: critical
    probe: {{ source: pg, sql: "SELECT 1 AS n" }}
    fail_when: row.n == 1.0
  - id: REDIS-1
    title: a redis key
    probe: {{ source: cache, redis: {{ string: "invar:canary:{{k}}" }} }}
    fail_when: count > 0.0
  - id: HTTP-1
    title: the api answers
    probe: {{ source: api, http: {{ path: /v1/health, timeout: 2s }} }}
    fail_when: count == 0.0
"#
        ),
    )
    .unwrap();
}

fn output(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `GET`/`POST` over a raw connection (`connection: close`), the whole answer as text.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn no_secret_reaches_output_logs_alerts_the_store_or_the_api() {
    if !invar_testkit::server_up("PostgreSQL", "127.0.0.1:5432", "scripts/ensure-services.sh")
        || !invar_testkit::server_up("Redis", "127.0.0.1:6379", "scripts/ensure-services.sh")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (hook, hook_got) = invar_testkit::json_receiver("/hook");
    let (pd, pd_got) = invar_testkit::json_receiver("/v2/enqueue");
    config(d, &hook, &pd);
    let cfg = d.join("invar.yaml");
    let cfg_s = cfg.to_str().unwrap();

    let (code, text) = output(invar().args(["--config", cfg_s, "validate"]));
    assert_eq!(code, 0, "{text}");
    assert_clean("invar validate", &text);
    for format in ["json", "table", "markdown", "junit"] {
        let (code, text) =
            output(invar().args(["--config", cfg_s, "run", "--dry-run", "--format", format]));
        assert_eq!(code, 2, "redis' AUTH fails and the API is down: {text}");
        assert_clean(&format!("invar run --format {format}"), &text);
    }
    // Recorded, with alerts sent: SQL-1 fails on purpose.
    let (code, text) = output(invar().args(["--config", cfg_s, "run", "--format", "json"]));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("\"SQL-1\""), "{text}");
    assert_clean("invar run", &text);
    for args in [
        &["history"][..],
        &["history", "--invariant", "SQL-1", "--format", "json"],
        &["incidents", "--format", "json"],
        &["report", "--format", "json"],
        &["silence", "list", "--all", "--format", "json"],
    ] {
        let (_, text) = output(invar().args(["--config", cfg_s]).args(args));
        assert_clean(&format!("invar {}", args.join(" ")), &text);
    }

    // The watcher: every route, with its debug log.
    let mut child = invar()
        .args(["watch", "--listen", "127.0.0.1:0", "--config", cfg_s])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
            let mut g = l.lock().unwrap();
            g.push_str(&line);
            g.push('\n');
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("invar watch did not start:\n{}", log.lock().unwrap()));
    let run = http(
        &addr,
        "POST",
        "/api/v1/runs",
        Some(ADMIN),
        r#"{"suite": "all"}"#,
    );
    assert!(run.starts_with("HTTP/1.1 200"), "{run}");
    assert_clean("POST /api/v1/runs", &run);
    let run_id = run
        .split("\"run_id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let silence = http(
        &addr,
        "POST",
        "/api/v1/silences",
        Some(ADMIN),
        r#"{"match": "id == 'HTTP-1'", "for": "1h", "reason": "canary check"}"#,
    );
    assert!(silence.starts_with("HTTP/1.1 201"), "{silence}");
    for path in [
        "/livez".to_string(),
        "/readyz".into(),
        "/healthz".into(),
        "/metrics".into(),
        "/".into(),
        "/openapi.json".into(),
        "/api/v1/invariants".into(),
        "/api/v1/invariants/SQL-1".into(),
        "/api/v1/suites".into(),
        "/api/v1/runs".into(),
        format!("/api/v1/runs/{run_id}"),
        "/api/v1/incidents".into(),
        "/api/v1/violations".into(),
        "/api/v1/silences?all=true".into(),
    ] {
        let answer = http(&addr, "GET", &path, Some(ADMIN), "");
        assert!(
            !answer.starts_with("HTTP/1.1 5"),
            "GET {path}: a server error:\n{answer}"
        );
        assert_clean(&format!("GET {path}"), &answer);
    }
    // A wrong token is refused without echoing anything back.
    let refused = http(
        &addr,
        "GET",
        "/api/v1/runs",
        Some("readCanaryTok4xyzxyzxyQ"),
        "",
    );
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert_clean("a 401", &refused);
    // The alerts went out (the receivers are where the webhook token and routing key belong).
    let t0 = Instant::now();
    while hook_got.lock().unwrap().is_empty() || pd_got.lock().unwrap().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no alert delivered:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let webhook_bodies = serde_json::to_string(&*hook_got.lock().unwrap()).unwrap();
    assert_clean("the webhook's body", &webhook_bodies);
    let pd_bodies = serde_json::to_string(&*pd_got.lock().unwrap()).unwrap();
    assert!(
        pd_bodies.contains("pdCanaryKey2"),
        "PagerDuty needs its key: {pd_bodies}"
    );
    assert_clean(
        "PagerDuty's body (but its routing key)",
        &pd_bodies.replace("pdCanaryKey2", ""),
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(200));
    let log = log.lock().unwrap().clone();
    assert!(log.contains("DEBUG"), "debug logging was on:\n{log}");
    assert_clean("the watcher's debug log", &log);

    // Every byte the store left on disk: the database, its WAL and shared memory.
    let mut files = 0;
    for entry in std::fs::read_dir(d).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "invar.yaml" || !path.is_file() {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).unwrap();
        for c in CANARIES {
            assert!(
                !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                "{name} holds the secret `{c}`"
            );
        }
    }
    assert!(files >= 1, "no store file was written");
}
