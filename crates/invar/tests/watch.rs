//! `invar watch` as a process: the API contract (401, 403, 409, 422, the run report equal in
//! shape to `invar run --format json`, the OpenAPI document against the routes), SIGTERM
//! draining a running run and exiting 0, the dead-man's switch, and two replicas on one
//! Postgres store running each tick once and alerting once per incident.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::cargo::CommandCargoExt;
use serde_json::{Value as J, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN: &str = "admin-0123456789abcdef";
const READ: &str = "read-0123456789abcdef";

/// A running `invar watch`; killed on drop.
struct Watch {
    child: Child,
    base: String,
    log: Arc<Mutex<String>>,
}

impl Watch {
    fn start(dir: &Path, env: &[(&str, String)]) -> Watch {
        let mut cmd = Command::cargo_bin("invar").unwrap();
        cmd.current_dir(dir)
            .env_remove("INVAR_CONFIG")
            .env("NO_COLOR", "1")
            .env("INVAR_LOG", "info,sqlx=error")
            .args(["watch", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                let mut g = l.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("invar watch did not start:\n{}", log.lock().unwrap()));
        Watch {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then the exit code (within 30 s).
    fn terminate(&mut self) -> i32 {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no exit after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client over reqwest.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            // The API closes a keep-alive connection idle for 5 s (docs/WATCH.md); a pooled
            // connection reused right then is reset. Keep idle ones for less, as a client should.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .pool_idle_timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, String, String) {
        self.rt.block_on(async {
            let mut r = self.client.request(method.parse().unwrap(), url);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            if let Some(b) = body {
                r = r.header("content-type", "application/json").body(b);
            }
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("").to_string())
                .unwrap_or_default();
            (status, ctype, resp.text().await.unwrap())
        })
    }

    fn get(&self, url: &str, token: Option<&str>) -> (u16, J) {
        let (s, _, body) = self.send("GET", url, token, None);
        (s, serde_json::from_str(&body).unwrap_or(J::String(body)))
    }

    fn post(&self, url: &str, token: Option<&str>, body: J) -> (u16, J) {
        let (s, _, text) = self.send("POST", url, token, Some(body.to_string()));
        (s, serde_json::from_str(&text).unwrap_or(J::String(text)))
    }
}

/// The structure of a JSON value: object keys with their shapes, arrays by their first
/// element, scalars by type (null matches anything, as optional fields may be null).
fn shape(v: &J) -> J {
    match v {
        J::Object(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        J::Array(a) => J::Array(a.first().map(shape).into_iter().collect()),
        J::String(_) => json!("string"),
        J::Number(_) => json!("number"),
        J::Bool(_) => json!("bool"),
        J::Null => json!("null"),
    }
}

/// Equal shapes, where `null` on either side matches any shape.
fn same_shape(a: &J, b: &J, path: &str) {
    match (a, b) {
        (J::String(x), _) if x == "null" => {}
        (_, J::String(y)) if y == "null" => {}
        (J::Object(x), J::Object(y)) => {
            let kx: Vec<&String> = x.keys().collect();
            let ky: Vec<&String> = y.keys().collect();
            assert_eq!(kx, ky, "keys differ at {path}");
            for (k, v) in x {
                same_shape(v, &y[k], &format!("{path}.{k}"));
            }
        }
        (J::Array(x), J::Array(y)) => {
            if let (Some(p), Some(q)) = (x.first(), y.first()) {
                same_shape(p, q, &format!("{path}[0]"));
            }
        }
        _ => assert_eq!(a, b, "types differ at {path}"),
    }
}

fn write_config(dir: &Path, body: &str) {
    let server = format!(
        "server:\n  admin_token: \"{ADMIN}\"\n  read_token: \"{READ}\"\n  overdue_after: 2m\n"
    );
    std::fs::write(dir.join("invar.yaml"), format!("{server}{body}")).unwrap();
}

const API_CONFIG: &str = r#"
suites:
  quick: { select: "'quick' in tags" }
  slow:  { select: "'slow' in tags" }
invariants:
  - id: Q-PASS
    title: the literal list is not empty
    tags: [quick]
    probe: { values: [a, b] }
    fail_when: count == 0.0
  - id: Q-FAIL
    title: no value is bad
    severity: critical
    tags: [quick]
    probe: { values: [ok, bad, worse] }
    every_row: r.value == 'ok'
  - id: S-SLEEP
    title: a slow check
    tags: [slow]
    probe: { command: { run: [sleep, "3"], parse: text, timeout: 30s } }
    fail_when: rows[0].exit_code != 0.0
"#;

#[test]
fn the_api_contract() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, API_CONFIG);
    let w = Watch::start(d, &[]);
    let http = Http::new();

    let (s, body) = http.get(&w.url("/healthz"), None);
    assert_eq!((s, body["status"].as_str()), (200, Some("ok")));

    // 401 without a token or with a wrong one; errors are JSON with a message.
    let (s, body) = http.get(&w.url("/api/v1/invariants"), None);
    assert_eq!(s, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("bearer"), "{body}");
    let (s, _) = http.get(&w.url("/api/v1/invariants"), Some("not-the-token-at-all"));
    assert_eq!(s, 401);

    // The read token reads, and may not run: 403.
    let (s, body) = http.get(&w.url("/api/v1/invariants"), Some(READ));
    assert_eq!(s, 200);
    let ids: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["Q-PASS", "Q-FAIL", "S-SLEEP"]);
    let (s, body) = http.post(
        &w.url("/api/v1/runs"),
        Some(READ),
        json!({"suite": "quick"}),
    );
    assert_eq!(s, 403, "{body}");

    // 422 naming what is unknown.
    let (s, body) = http.post(
        &w.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"only": ["Q-PASS", "NOPE-1"]}),
    );
    assert_eq!(s, 422);
    assert!(body["error"].as_str().unwrap().contains("NOPE-1"), "{body}");
    assert!(
        !body["error"].as_str().unwrap().contains("Q-PASS"),
        "{body}"
    );
    let (s, body) = http.post(
        &w.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"suite": "quick", "only": ["S-SLEEP"]}),
    );
    assert_eq!(s, 422, "`only` reached outside its suite: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("S-SLEEP"),
        "{body}"
    );
    let (s, body) = http.post(
        &w.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"suite": "nightly"}),
    );
    assert_eq!(s, 422);
    assert!(
        body["error"].as_str().unwrap().contains("nightly"),
        "{body}"
    );

    // 409 while the same suite runs; the first run still answers its report.
    let first = {
        let url = w.url("/api/v1/runs");
        std::thread::spawn(move || Http::new().post(&url, Some(ADMIN), json!({"suite": "slow"})))
    };
    std::thread::sleep(Duration::from_millis(800));
    let (s, body) = http.post(
        &w.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"suite": "slow"}),
    );
    assert_eq!(s, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("slow"), "{body}");
    // Another suite is not blocked by it.
    let (s, api_report) = http.post(
        &w.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"suite": "quick"}),
    );
    assert_eq!(s, 200, "{api_report}");
    let (s, slow) = first.join().unwrap();
    assert_eq!(
        (s, slow["results"][0]["outcome"].as_str()),
        (200, Some("pass")),
        "{slow}"
    );

    // The run endpoint's report has the shape of `invar run --format json`.
    let out = Command::cargo_bin("invar")
        .unwrap()
        .current_dir(d)
        .env_remove("INVAR_CONFIG")
        .args(["run", "--suite", "quick", "--format", "json", "--dry-run"])
        .output()
        .unwrap();
    let cli_report: J = serde_json::from_slice(&out.stdout).unwrap();
    same_shape(&shape(&api_report), &shape(&cli_report), "report");
    assert_eq!(api_report["trigger"], "api");
    assert_eq!(api_report["counts"], cli_report["counts"]);
    assert_eq!(
        api_report["results"][1]["violations"],
        cli_report["results"][1]["violations"]
    );

    // The history reads: runs, one run, violations a page at a time, stats, incidents.
    // Walking the runs a page at a time gives exactly the full list.
    let (_, all) = http.get(&w.url("/api/v1/runs?limit=100"), Some(READ));
    let all: Vec<J> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].clone())
        .collect();
    assert!(all.len() >= 2, "{all:?}");
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            None => w.url("/api/v1/runs?limit=1"),
            Some(c) => w.url(&format!("/api/v1/runs?limit=1&cursor={c}")),
        };
        let (s, page) = http.get(&url, Some(READ));
        assert_eq!(s, 200, "{page}");
        walked.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["run_id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(walked, all);
    let (s, _) = http.get(&w.url("/api/v1/runs?cursor=yesterday"), Some(READ));
    assert_eq!(s, 422);
    let (s, runs) = http.get(&w.url("/api/v1/runs?suite=quick"), Some(READ));
    assert_eq!(s, 200);
    assert_eq!(runs["items"][0]["run_id"], api_report["run_id"]);
    let run_id = api_report["run_id"].as_str().unwrap();
    let (s, one) = http.get(&w.url(&format!("/api/v1/runs/{run_id}")), Some(READ));
    assert_eq!(s, 200);
    same_shape(&shape(&one), &shape(&api_report), "stored report");
    let (s, _) = http.get(&w.url("/api/v1/runs/no-such-run"), Some(READ));
    assert_eq!(s, 404);
    let (s, page1) = http.get(
        &w.url("/api/v1/violations?invariant=Q-FAIL&limit=1"),
        Some(READ),
    );
    assert_eq!(s, 200, "{page1}");
    assert_eq!(page1["items"].as_array().unwrap().len(), 1);
    let cursor = page1["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let (_, page2) = http.get(
        &w.url(&format!(
            "/api/v1/violations?invariant=Q-FAIL&limit=1&cursor={cursor}"
        )),
        Some(READ),
    );
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_ne!(page1["items"][0]["id"], page2["items"][0]["id"]);
    let (s, _) = http.get(&w.url("/api/v1/violations?cursor=zzz"), Some(READ));
    assert_eq!(s, 422);
    // A cursor whose row is gone is said to be, not taken for the end of the list.
    let (s, body) = http.get(&w.url("/api/v1/violations?cursor=999999999"), Some(READ));
    assert_eq!(s, 422, "{body}");
    let vid = page1["items"][0]["id"].as_i64().unwrap();
    let (s, v) = http.get(&w.url(&format!("/api/v1/violations/{vid}")), Some(READ));
    assert_eq!((s, v["invariant"].as_str()), (200, Some("Q-FAIL")));
    let (s, _) = http.get(&w.url("/api/v1/violations/999999999"), Some(READ));
    assert_eq!(s, 404);
    let (s, stats) = http.get(&w.url("/api/v1/violations/stats"), Some(READ));
    assert_eq!(s, 200);
    assert!(stats.to_string().contains("Q-FAIL"), "{stats}");
    let (s, inc) = http.get(&w.url("/api/v1/incidents?open=true"), Some(READ));
    assert_eq!(s, 200);
    let subjects: Vec<&str> = inc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["Q-FAIL"]);

    // A body over the 64 KiB limit is refused before it is read whole (on a client of its
    // own: the server drops that connection, which a pooled client could otherwise reuse; and
    // small enough to sit in the socket buffer, so the client is not cut off mid-write).
    // Every error is JSON with a message, axum's own rejections included.
    let (s, ctype, text) = Http::new().send(
        "POST",
        &w.url("/api/v1/runs"),
        Some(ADMIN),
        Some(format!("{{\"only\": [\"{}\"]}}", "x".repeat(70_000))),
    );
    assert_eq!(s, 413);
    assert!(ctype.starts_with("application/json"), "{ctype}: {text}");
    let (s, body) = http.get(&w.url("/api/v1/violations?since=yesterday"), Some(READ));
    assert_eq!(s, 400);
    assert!(body["error"].as_str().unwrap().contains("since"), "{body}");
    let (s, body) = http.get(&w.url("/api/v1/violations/abc"), Some(READ));
    assert_eq!(s, 400);
    assert!(body["error"].is_string(), "{body}");
    let (s, body) = http.get(&w.url("/no/such/route"), None);
    assert_eq!(s, 404);
    assert!(body["error"].is_string());

    // /metrics is Prometheus text; the status page is HTML.
    let (s, ctype, text) = http.send("GET", &w.url("/metrics"), None, None);
    assert_eq!(s, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    assert!(
        text.contains("invar_invariant_outcome{id=\"Q-FAIL\""),
        "{text}"
    );
    promtool_check(&text);
    let (s, ctype, html) = http.send("GET", &w.url("/"), None, None);
    assert_eq!(s, 200);
    assert!(ctype.starts_with("text/html"));
    assert!(html.contains("Q-FAIL"));

    // Secrets never leave: no token in any answer or in the log.
    assert!(!w.log().contains(ADMIN) && !w.log().contains(READ));
}

/// `GET /api/v1/invariants/{id}/measurements`: a read-token route, newest first, walked a
/// page at a time to exactly the full list; 404 for an id neither configured nor recorded;
/// 4xx (never 5xx) for bad query strings.
#[test]
fn the_measurements_route() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, API_CONFIG);
    let w = Watch::start(d, &[]);
    let http = Http::new();
    for _ in 0..3 {
        let (s, body) = http.post(
            &w.url("/api/v1/runs"),
            Some(ADMIN),
            json!({"suite": "quick"}),
        );
        assert_eq!(s, 200, "{body}");
    }
    let url = |q: &str| w.url(&format!("/api/v1/invariants/Q-FAIL/measurements{q}"));
    let (s, body) = http.get(&url(""), None);
    assert_eq!(s, 401, "{body}");
    let (s, _) = http.get(&url(""), Some("not-the-token-at-all"));
    assert_eq!(s, 401);
    let (s, all) = http.get(&url("?limit=100"), Some(READ));
    assert_eq!(s, 200, "{all}");
    assert_eq!(all["invariant"], "Q-FAIL");
    assert!(all["next_cursor"].is_null(), "{all}");
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{all}");
    for m in items {
        assert_eq!(m["outcome"], "fail", "{m}");
        assert!(m["measured"].is_object(), "{m}");
        assert!(
            m["run_id"].is_string() && m["started_at"].is_string(),
            "{m}"
        );
    }
    let starts: Vec<&str> = items
        .iter()
        .map(|m| m["started_at"].as_str().unwrap())
        .collect();
    assert!(
        starts.windows(2).all(|p| p[0] >= p[1]),
        "newest first: {starts:?}"
    );
    // The admin token reads too.
    let (s, _) = http.get(&url(""), Some(ADMIN));
    assert_eq!(s, 200);

    // A page at a time: exactly the full list.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            None => "?limit=1".to_string(),
            Some(c) => format!("?limit=1&cursor={c}"),
        };
        let (s, page) = http.get(&url(&q), Some(READ));
        assert_eq!(s, 200, "{page}");
        assert!(page["items"].as_array().unwrap().len() <= 1);
        walked.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["run_id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let ids: Vec<J> = items.iter().map(|m| m["run_id"].clone()).collect();
    assert_eq!(walked, ids);
    // `since` after the last run: nothing.
    let (s, later) = http.get(&url("?since=2999-01-01T00:00:00Z"), Some(READ));
    assert_eq!(
        (s, later["items"].as_array().unwrap().len()),
        (200, 0),
        "{later}"
    );

    // A configured invariant never run: an empty series; an unknown id: 404.
    let (s, none) = http.get(
        &w.url("/api/v1/invariants/S-SLEEP/measurements"),
        Some(READ),
    );
    assert_eq!(
        (s, none["items"].as_array().unwrap().len()),
        (200, 0),
        "{none}"
    );
    let (s, body) = http.get(&w.url("/api/v1/invariants/NOPE-1/measurements"), Some(READ));
    assert_eq!(s, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("NOPE-1"), "{body}");

    // Bad query strings are the client's: 4xx with a JSON message.
    for (q, want) in [
        ("?cursor=zzz", 422),
        ("?cursor=12~", 422),
        ("?cursor=~run", 422),
        ("?since=yesterday", 400),
        ("?limit=-1", 400),
        ("?limit=99999999999", 400),
        ("?nope=1", 200),
    ] {
        let (s, body) = http.get(&url(q), Some(READ));
        assert_eq!(s, want, "{q}: {body}");
        if want != 200 {
            assert!(body["error"].is_string(), "{q}: {body}");
        }
    }
    // A cursor for a later run than any: the rest is everything.
    let (s, body) = http.get(&url("?cursor=9999999999999~zzz"), Some(READ));
    assert_eq!(
        (s, body["items"].as_array().unwrap().len()),
        (200, 3),
        "{body}"
    );

    // The status page charts the same series, with the incident's opening on its timeline.
    let (s, _, html) = http.send("GET", &w.url("/"), None, None);
    assert_eq!(s, 200);
    let row = &html[html.find("data-invariant=\"Q-FAIL\"").unwrap()..];
    let row = &row[..row.find("</li>\n").unwrap()];
    assert!(
        row.contains("<svg class=\"trend\" data-measure=\"count\""),
        "{row}"
    );
    assert_eq!(row.matches("data-outcome=\"fail\" cx=").count(), 3, "{row}");
    assert!(
        row.contains("<li data-event=\"opened\">opened <time"),
        "{row}"
    );
}

/// Every operation the OpenAPI document lists is served (no 404/405), and the document lists
/// every route that serves.
#[test]
fn the_openapi_document_matches_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, API_CONFIG);
    let w = Watch::start(d, &[]);
    let http = Http::new();
    let (s, doc) = http.get(&w.url("/openapi.json"), None);
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut listed = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            listed.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    listed.sort();
    let expected = [
        "DELETE /api/v1/silences/{id}",
        "GET /",
        "GET /api/v1/incidents",
        "GET /api/v1/invariants",
        "GET /api/v1/invariants/{id}/measurements",
        "GET /api/v1/runs",
        "GET /api/v1/runs/{id}",
        "GET /api/v1/silences",
        "GET /api/v1/violations",
        "GET /api/v1/violations/stats",
        "GET /api/v1/violations/{id}",
        "GET /healthz",
        "GET /livez",
        "GET /metrics",
        "GET /openapi.json",
        "GET /readyz",
        "POST /-/reload",
        "POST /api/v1/runs",
        "POST /api/v1/silences",
    ];
    assert_eq!(listed, expected);
    for op in &listed {
        let (method, path) = op.split_once(' ').unwrap();
        let path = path.replace("{id}", "1");
        let body = (method == "POST").then(|| json!({"suite": "quick"}).to_string());
        let (s, _, text) = http.send(method, &w.url(&path), Some(ADMIN), body);
        assert!(s != 404 || path.contains("/1"), "{op} answered 404: {text}");
        assert_ne!(s, 405, "{op} answered 405");
        assert!(s < 500, "{op} answered {s}: {text}");
        // The API operations are marked as needing the bearer token, and do.
        if path.starts_with("/api/v1") || path == "/-/reload" {
            let (s, _, _) = http.send(method, &w.url(&path), None, None);
            assert_eq!(s, 401, "{op} without a token");
        }
    }
}

#[test]
fn sigterm_lets_the_running_run_finish_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, API_CONFIG);
    let mut w = Watch::start(d, &[]);
    let running = {
        let url = w.url("/api/v1/runs");
        std::thread::spawn(move || Http::new().post(&url, Some(ADMIN), json!({"suite": "slow"})))
    };
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(w.terminate(), 0, "{}", w.log());
    let (s, report) = running.join().unwrap();
    assert_eq!(s, 200, "the in-flight run was cut: {report}\n{}", w.log());
    // And it was recorded before the exit.
    let out = Command::cargo_bin("invar")
        .unwrap()
        .current_dir(d)
        .env_remove("INVAR_CONFIG")
        .args(["history", "--format", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(report["run_id"].as_str().unwrap()), "{text}");
}

/// `promtool check metrics` on a live `/metrics` answer (skipped loudly without promtool,
/// except under CI).
fn promtool_check(text: &str) {
    if let Some((clean, said)) = invar_testkit::promtool_check_metrics(text) {
        assert!(clean, "promtool: {said}\n{text}");
    }
}

/// A webhook receiver that keeps every JSON body.
fn receiver() -> (String, Arc<Mutex<Vec<J>>>) {
    invar_testkit::json_receiver("/hook")
}

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAqc", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Time runs 60× faster for both watchers, on one shared timeline: a `* * * * *` suite ticks
/// every real second.
fn fast_clock() -> (&'static str, String) {
    let anchor = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    ("INVAR_WATCH_TEST_CLOCK", format!("{anchor}:60"))
}

#[test]
fn two_replicas_on_one_postgres_store_run_each_tick_once_and_alert_once() {
    if !invar_testkit::server_up("PostgreSQL", "127.0.0.1:5432", "scripts/ensure-services.sh") {
        return;
    }
    let db = format!("invar_watch_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    psql("postgres", &format!("CREATE DATABASE {db}"));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (hook, bodies) = receiver();
    write_config(
        d,
        &format!(
            "store: postgres://postgres@127.0.0.1:5432/{db}\n\
             alerts:\n  hook: {{ type: webhook, url: \"${{HOOK_URL}}\" }}\n\
             suites:\n  every-minute: {{ select: \"true\", schedule: \"* * * * *\" }}\n\
             invariants:\n\
             \x20 - id: R-FAIL\n    title: always red\n    severity: critical\n    probe: {{ values: [bad] }}\n    fail_when: count > 0.0\n\
             \x20 - id: R-PASS\n    title: always green\n    probe: {{ values: [ok] }}\n    fail_when: count == 0.0\n"
        ),
    );
    let clock = fast_clock();
    let env = [(clock.0, clock.1.clone()), ("HOOK_URL", hook.clone())];
    let mut a = Watch::start(d, &env);
    let mut b = Watch::start(d, &env);
    // At least 10 ticks (one per real second), then stop both.
    let t0 = Instant::now();
    loop {
        let ticks: i64 = psql(&db, "SELECT count(*) FROM schedule_ticks")
            .parse()
            .unwrap_or(0);
        if ticks >= 12 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "only {ticks} ticks in 60 s:\n{}\n{}",
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(a.terminate(), 0);
    assert_eq!(b.terminate(), 0);

    let ticks: i64 = psql(
        &db,
        "SELECT count(*) FROM schedule_ticks WHERE suite = 'every-minute'",
    )
    .parse()
    .unwrap();
    let runs: i64 = psql(
        &db,
        "SELECT count(*) FROM runs WHERE trigger = 'schedule' AND NOT lock_skipped",
    )
    .parse()
    .unwrap();
    let skipped: i64 = psql(&db, "SELECT count(*) FROM runs WHERE lock_skipped")
        .parse()
        .unwrap();
    assert!(ticks >= 12, "{ticks}");
    // Every claimed tick was finished by its run, except those that found the suite running
    // (SIGTERM let the ticks in flight finish).
    let unfinished: i64 = psql(
        &db,
        "SELECT count(*) FROM schedule_ticks WHERE suite = 'every-minute' AND run_id IS NULL",
    )
    .parse()
    .unwrap();
    assert_eq!(unfinished, skipped, "claimed ticks without a recorded run");
    // Each claimed tick became exactly one recorded run (or a lock_skipped record), never two.
    assert_eq!(
        runs + skipped,
        ticks,
        "runs {runs} + lock_skipped {skipped} != ticks {ticks}"
    );
    let owners = psql(&db, "SELECT count(DISTINCT owner) FROM schedule_ticks");
    eprintln!(
        "ticks {ticks}, runs {runs}, lock_skipped {skipped}, replicas that ran ticks: {owners}"
    );

    // One incident, one alert, whoever ran the tick that opened it.
    let open = psql(
        &db,
        "SELECT count(*) FROM incidents WHERE resolved_at IS NULL",
    );
    assert_eq!(open, "1");
    let t0 = Instant::now();
    while bodies.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].to_string().contains("R-FAIL"));
    psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
}

#[test]
fn a_scheduled_run_that_does_not_happen_makes_healthz_503_and_alerts_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (hook, bodies) = receiver();
    // The tick's run hangs (a 20 s command: minutes on the 60x clock). After `overdue_after`
    // (2m: two real seconds) with no run recorded for the tick, the suite is overdue; every
    // later tick finds it still running (lock_skipped), so it stays overdue.
    write_config(
        d,
        "alerts:\n  hook: { type: webhook, url: \"${HOOK_URL}\" }\n\
         suites:\n  sweep: { select: \"true\", schedule: \"* * * * *\" }\n\
         invariants:\n  - id: H-1\n    title: hangs\n    severity: critical\n    probe: { command: { run: [sleep, \"20\"], parse: text, timeout: 60s } }\n    fail_when: count == 0.0\n",
    );
    let clock = fast_clock();
    let w = Watch::start(d, &[(clock.0, clock.1.clone()), ("HOOK_URL", hook)]);
    let http = Http::new();
    let t0 = Instant::now();
    let body = loop {
        let (s, body) = http.get(&w.url("/healthz"), None);
        if s == 503 {
            break body;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "never overdue:\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        body["message"].as_str().unwrap().contains("`sweep`"),
        "{body}"
    );
    let (_, _, metrics) = http.send("GET", &w.url("/metrics"), None, None);
    assert!(
        metrics.contains("invar_suite_overdue{suite=\"sweep\"} 1"),
        "{metrics}"
    );
    let (_, _, html) = http.send("GET", &w.url("/"), None, None);
    assert!(
        html.contains("data-suite=\"sweep\" data-overdue=\"true\""),
        "{html}"
    );

    // Several overdue ticks go by (one watchdog record each): one alert, for the suite.
    std::thread::sleep(Duration::from_secs(5));
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:#?}\n{}", w.log());
    let alert = got[0].to_string();
    assert!(
        alert.contains("\"suite\"") && alert.contains("sweep"),
        "{alert}"
    );
    assert!(alert.contains("did not run on time"), "{alert}");
    let (_, runs) = http.get(&w.url("/api/v1/runs?suite=sweep"), Some(READ));
    let watchdog = runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"] == "watchdog")
        .count();
    assert!(watchdog >= 2, "{runs}");
}

/// Single flight across processes: a suite running on one watcher is busy (409) on another
/// that shares its store — here the default SQLite store, through its lease row.
#[test]
fn a_suite_running_on_one_watcher_is_busy_on_another_sharing_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, API_CONFIG);
    let a = Watch::start(d, &[]);
    let b = Watch::start(d, &[]);
    let running = {
        let url = a.url("/api/v1/runs");
        std::thread::spawn(move || Http::new().post(&url, Some(ADMIN), json!({"suite": "slow"})))
    };
    std::thread::sleep(Duration::from_millis(800));
    let http = Http::new();
    let (s, body) = http.post(
        &b.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"suite": "slow"}),
    );
    assert_eq!(s, 409, "{body}\n{}", b.log());
    let (s, _) = running.join().unwrap();
    assert_eq!(s, 200);
    // Released when the run ends: the other watcher may run it now.
    let (s, body) = http.post(
        &b.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"suite": "slow"}),
    );
    assert_eq!(s, 200, "{body}");

    // A client that gives up does not cut the run: it finishes, is recorded and releases its
    // lease (the other watcher may run the suite right after).
    let gave_up = http.rt.block_on(async {
        reqwest::Client::builder()
            .timeout(Duration::from_millis(800))
            .build()
            .unwrap()
            .post(a.url("/api/v1/runs"))
            .bearer_auth(ADMIN)
            .json(&json!({"suite": "slow"}))
            .send()
            .await
    });
    assert!(gave_up.is_err(), "the 3 s run answered within 800 ms");
    let (s, _) = http.post(
        &b.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"suite": "slow"}),
    );
    assert_eq!(s, 409, "the abandoned run should still be running");
    std::thread::sleep(Duration::from_secs(3));
    let (s, runs) = http.get(&b.url("/api/v1/runs?suite=slow"), Some(READ));
    assert_eq!(s, 200);
    assert_eq!(runs["items"].as_array().unwrap().len(), 3, "{runs}");
    let (s, body) = http.post(
        &b.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"suite": "slow"}),
    );
    assert_eq!(s, 200, "the lease was not released: {body}");
}

/// Waits (up to 20 s) until the watcher's log holds `text`.
fn wait_log(w: &Watch, text: &str) {
    let t0 = Instant::now();
    while !w.log().contains(text) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no `{text}` in the log:\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn invariant_ids(http: &Http, w: &Watch) -> Vec<String> {
    let (s, body) = http.get(&w.url("/api/v1/invariants"), Some(READ));
    assert_eq!(s, 200, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn hangup(w: &Watch) {
    let pid = w.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn sighup_and_post_reload_keep_a_broken_config_out_and_schedule_a_new_suite() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, API_CONFIG);
    let clock = fast_clock();
    let mut cmd_env = vec![(clock.0, clock.1.clone())];
    cmd_env.push(("INVAR_LOG_FORMAT", "json".to_string()));
    let w = Watch::start(d, &cmd_env);
    let http = Http::new();
    assert!(invariant_ids(&http, &w).contains(&"Q-PASS".to_string()));

    // A broken config: refused, the running one stays, and the log says why.
    std::fs::write(
        d.join("invar.yaml"),
        "invariants: [ {id: X, title: t, probe: {sql: 1} ]\n",
    )
    .unwrap();
    hangup(&w);
    wait_log(
        &w,
        "config reload refused (SIGHUP); keeping the running config",
    );
    assert_eq!(http.get(&w.url("/livez"), None).0, 200);
    assert!(invariant_ids(&http, &w).contains(&"Q-PASS".to_string()));
    // The same through the API: 401 without a token, 403 with the read token, 422 with why.
    assert_eq!(http.post(&w.url("/-/reload"), None, json!({})).0, 401);
    assert_eq!(http.post(&w.url("/-/reload"), Some(READ), json!({})).0, 403);
    let (s, body) = http.post(&w.url("/-/reload"), Some(ADMIN), json!({}));
    assert_eq!(s, 422, "{body}");
    assert!(body.to_string().contains("invar.yaml:1"), "{body}");
    assert!(invariant_ids(&http, &w).contains(&"Q-PASS".to_string()));

    // A new scheduled suite: after SIGHUP it is known, and it runs on its schedule.
    write_config(
        d,
        &format!(
            "{API_CONFIG}  - id: T-1\n    title: ticks\n    tags: [tick]\n    probe: {{ values: [a] }}\n    fail_when: count == 0.0\n"
        )
        .replace(
            "suites:\n",
            "suites:\n  ticker: { select: \"'tick' in tags\", schedule: \"* * * * *\" }\n",
        ),
    );
    hangup(&w);
    wait_log(&w, "config reloaded (SIGHUP): +suite ticker");
    assert!(invariant_ids(&http, &w).contains(&"T-1".to_string()));
    let t0 = Instant::now();
    loop {
        let (s, body) = http.get(&w.url("/api/v1/runs"), Some(READ));
        assert_eq!(s, 200);
        let ticked = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["suite"] == "ticker");
        if ticked {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the new suite never ran:\n{body}\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (s, body) = http.post(&w.url("/-/reload"), Some(ADMIN), json!({}));
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["reloaded"], true);

    // `--log-format json` (here through INVAR_LOG_FORMAT): the log records are JSON objects.
    let log = w.log();
    let records: Vec<J> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["fields"]["message"] == "config reloaded" && r["level"] == "INFO"),
        "{log}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["fields"]["message"] == "config reload refused; keeping the running config"),
        "{log}"
    );
}

/// Silences through the API: one added while an invariant is green holds back the firing of
/// the incident that opens under it (recorded, but nothing queued for the sink); expiring it
/// while still red sends that firing once. Read tokens cannot write; bad bodies are 422.
#[test]
fn an_api_silence_holds_back_a_firing_until_it_is_expired_while_still_red() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (hook, got) = receiver();
    write_config(
        d,
        &format!("alerts:\n  hook: {{ type: webhook, url: \"{hook}\" }}\n{API_CONFIG}"),
    );
    let w = Watch::start(d, &[]);
    let http = Http::new();
    let url = w.url("/api/v1/silences");
    let body = json!({"match": "id == 'Q-FAIL'", "for": "1h", "reason": "deploy"});
    assert_eq!(http.post(&url, Some(READ), body.clone()).0, 403);
    assert_eq!(http.post(&url, None, body.clone()).0, 401);
    for bad in [
        json!({"match": "id ==", "for": "1h"}),
        json!({"match": "true", "for": "soon"}),
        json!({"match": "true", "for": "1h", "extra": 1}),
    ] {
        let (s, b) = http.post(&url, Some(ADMIN), bad.clone());
        assert_eq!(s, 422, "{bad}: {b}");
    }
    let (s, created) = http.post(&url, Some(ADMIN), body);
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (s, listed) = http.get(&url, Some(READ));
    assert_eq!(s, 200);
    assert_eq!(listed["items"][0]["id"], id.as_str(), "{listed}");

    // Red under the silence: the incident opens, nothing is sent.
    let (s, report) = http.post(
        &w.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"suite": "quick"}),
    );
    assert_eq!(s, 200, "{report}");
    let silenced: Vec<&J> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("silenced").is_some())
        .collect();
    assert_eq!(silenced.len(), 1, "only Q-FAIL is matched: {report}");
    assert_eq!(silenced[0]["id"], "Q-FAIL");
    assert_eq!(silenced[0]["silenced"]["id"], id.as_str());
    assert_eq!(silenced[0]["silenced"]["reason"], "deploy");
    let (_, inc) = http.get(&w.url("/api/v1/incidents?open=true"), Some(READ));
    assert!(inc.to_string().contains("Q-FAIL"), "{inc}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(got.lock().unwrap().is_empty(), "{:?}", got.lock().unwrap());
    // The status page and /metrics say which silence holds it, until when.
    let (_, _, metrics) = http.send("GET", &w.url("/metrics"), None, None);
    assert!(
        metrics.contains("invar_invariant_silenced{id=\"Q-FAIL\",severity=\"critical\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "invar_invariant_silenced_until_timestamp_seconds{{id=\"Q-FAIL\",severity=\"critical\",silence=\"{id}\"}}"
        )),
        "{metrics}"
    );
    let (_, _, html) = http.send("GET", &w.url("/"), None, None);
    assert!(
        html.contains(&format!("data-silenced-by=\"{id}\"")),
        "{html}"
    );

    // Expired while still red: the next run releases the firing, once.
    let (s, _, b) = http.send("DELETE", &format!("{url}/{id}"), Some(ADMIN), None);
    assert_eq!(s, 200, "{b}");
    let (s, _, _) = http.send("DELETE", &format!("{url}/{id}"), Some(ADMIN), None);
    assert_eq!(s, 404, "a second expiry finds no active silence");
    let (s, _) = http.post(
        &w.url("/api/v1/runs"),
        Some(ADMIN),
        json!({"suite": "quick"}),
    );
    assert_eq!(s, 200);
    let t0 = Instant::now();
    while got.lock().unwrap().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no firing:\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let bodies = got.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].to_string().contains("Q-FAIL"), "{bodies:?}");
    let (_, listed) = http.get(&url, Some(READ));
    assert_eq!(listed["items"], json!([]), "expired: not active");
}
