//! The `http` source against a real HTTP/1.1 server on loopback (started here, on a free
//! port): a sweep over several paths whose violations are exactly the failing paths, JSON
//! bodies, redirects, the body cap, timeouts and refused connections (`error`, never `pass`),
//! and header secrets that never appear in a report.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use invar_core::{Outcome, RunReport};
use invar_sources::{Engine, RunOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const TOKEN: &str = "sekrit-token-4242";

/// A tiny HTTP/1.1 server: one thread per connection, `Connection: close`. Counts the
/// requests that carried `Authorization: Bearer TOKEN`.
struct Server {
    port: u16,
    authorized: Arc<AtomicUsize>,
}

fn respond(stream: &mut std::net::TcpStream, status: &str, ctype: &str, extra: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn serve() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let authorized = Arc::new(AtomicUsize::new(0));
    let auth = authorized.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let auth = auth.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let mut content_length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if lower.starts_with("authorization:") && line.contains(TOKEN) {
                        auth.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        content_length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; content_length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                match path.as_str() {
                    "/ok" | "/v1/ok" => respond(
                        &mut stream,
                        "200 OK",
                        "application/json; charset=utf-8",
                        "X-Thing: A\r\n",
                        br#"{"ok": true, "count": 7, "items": [1, 2]}"#,
                    ),
                    "/text" => respond(&mut stream, "200 OK", "text/plain", "", b"plain words"),
                    "/fail" => respond(
                        &mut stream,
                        "500 Internal Server Error",
                        "text/plain",
                        "",
                        b"boom",
                    ),
                    "/redirect" => respond(
                        &mut stream,
                        "302 Found",
                        "text/plain",
                        "Location: /ok\r\n",
                        b"",
                    ),
                    "/echo" => respond(&mut stream, "200 OK", "text/plain", "", &body),
                    "/big" => respond(
                        &mut stream,
                        "200 OK",
                        "text/plain",
                        "",
                        &vec![b'x'; 2 * 1024 * 1024],
                    ),
                    "/slow" => {
                        std::thread::sleep(Duration::from_secs(3));
                        respond(&mut stream, "200 OK", "text/plain", "", b"late");
                    }
                    _ => respond(
                        &mut stream,
                        "404 Not Found",
                        "text/plain",
                        "",
                        b"no such path",
                    ),
                }
            });
        }
    });
    Server { port, authorized }
}

async fn run(yaml: &str) -> RunReport {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invar.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cfg = invar_config::load_with_env(&path, &|_| None)
        .unwrap_or_else(|d| panic!("{}", d.render(false)));
    Engine::new(Arc::new(cfg))
        .run(&RunOptions::default())
        .await
        .report
}

fn result<'a>(r: &'a RunReport, id: &str) -> &'a invar_core::InvariantResult {
    r.results
        .iter()
        .find(|x| x.id == id)
        .unwrap_or_else(|| panic!("no result {id}"))
}

#[tokio::test]
async fn a_sweep_names_exactly_the_failing_paths() {
    let s = serve();
    let yaml = format!(
        r#"
sources:
  api: {{ type: http, base_url: "http://user:basic-pw-77@127.0.0.1:{port}", timeout: 5s,
          headers: {{ Authorization: "Bearer {TOKEN}" }} }}
invariants:
  - id: SWEEP
    title: every endpoint answers 200
    probe: {{ source: api, http: {{ paths: [/ok, /fail, /missing, /redirect, /text] }} }}
    every_row: r.status == 200 && r.latency_ms < 2000
  - id: FOLLOW
    title: redirects followed on request
    probe: {{ source: api, http: {{ path: /redirect, follow_redirects: true }} }}
    every_row: r.status == 200 && r.body.ok == true
  - id: JSON
    title: JSON bodies and headers are values
    probe: {{ source: api, http: {{ path: /v1/ok }} }}
    fail_when: >-
      row.status != 200 || row.body.count != 7.0 || size(row.body.items) != 2
      || row.headers["x-thing"] != "A" || !row.headers["content-type"].startsWith("application/json")
  - id: POST
    title: a POST with a body and a probe header
    probe: {{ source: api, http: {{ path: /echo, method: POST, body: "hello", headers: {{ X-Extra: "1" }} }} }}
    every_row: r.status == 200 && r.body == "hello"
  - id: BIG
    title: bodies are capped at 1 MiB
    probe: {{ source: api, http: {{ path: /big }} }}
    every_row: size(r.body) == 1048576
"#,
        port = s.port
    );
    let report = run(&yaml).await;
    let r = result(&report, "SWEEP");
    assert_eq!(r.outcome, Outcome::Fail, "{r:?}");
    let paths: Vec<&str> = r
        .violations
        .iter()
        .map(|v| v["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/fail", "/missing", "/redirect"]);
    let statuses: Vec<i64> = r
        .violations
        .iter()
        .map(|v| v["status"].as_i64().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [500, 404, 302],
        "a 500 is an answer, not an error"
    );
    assert_eq!(r.examined, 5);
    for id in ["FOLLOW", "JSON", "POST", "BIG"] {
        let r = result(&report, id);
        assert_eq!(r.outcome, Outcome::Pass, "{id}: {r:?}");
    }
    assert!(report.sources_unavailable.is_empty());
    // Every request carried the source's secret header; no report shows it.
    assert!(s.authorized.load(Ordering::Relaxed) >= 9);
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains(TOKEN), "{json}");
    assert!(!json.contains("basic-pw-77"), "{json}");
}

#[tokio::test]
async fn no_answer_is_an_error_naming_the_path_never_a_pass() {
    let s = serve();
    // A port with nothing listening: bind, note, drop.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let yaml = format!(
        r#"
sources:
  down: {{ type: http, base_url: "http://127.0.0.1:{closed}", headers: {{ Authorization: "Bearer {TOKEN}" }} }}
  api:  {{ type: http, base_url: "http://127.0.0.1:{port}" }}
invariants:
  - id: REFUSED
    title: refused
    probe: {{ source: down, http: {{ paths: [/a, /b] }} }}
    every_row: r.status == 200
  - id: SLOW
    title: timed out
    probe: {{ source: api, http: {{ paths: [/ok, /slow], timeout: 500ms }} }}
    every_row: r.status == 200
  - id: FINE
    title: another probe of the same source still decides
    probe: {{ source: api, http: {{ path: /ok }} }}
    every_row: r.status == 200
"#,
        port = s.port
    );
    let report = run(&yaml).await;
    let r = result(&report, "REFUSED");
    assert_eq!(r.outcome, Outcome::Error, "{r:?}");
    let reason = r.reason.as_deref().unwrap();
    assert!(
        reason.contains("GET /a") && reason.contains("GET /b"),
        "{reason}"
    );
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    let r = result(&report, "SLOW");
    assert_eq!(r.outcome, Outcome::Error, "{r:?}");
    let reason = r.reason.as_deref().unwrap();
    assert!(
        reason.contains("GET /slow: timed out after 500ms") && !reason.contains("GET /ok"),
        "{reason}"
    );
    assert_eq!(result(&report, "FINE").outcome, Outcome::Pass);
    assert_eq!(report.exit_code, 2);
    let down: Vec<&str> = report
        .sources_unavailable
        .iter()
        .map(|u| u.source.as_str())
        .collect();
    assert_eq!(down, ["api", "down"]);
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains(TOKEN), "{json}");
}
