//! The chaos suite: the real `invar` binary against real servers that the tests start and
//! break on purpose, each case asserting what docs/ALERTS.md, docs/WATCH.md and RELIABILITY.md
//! promise. A private `redis-server` killed mid-query; a webhook answering 500 across runs;
//! `invar run` and `invar watch` each SIGKILLed at random points 50 times; two runs at once on
//! one SQLite store, 20 times; the store's disk full (a tiny tmpfs). Figures go to stderr (`--nocapture`) and to
//! RELIABILITY.md. The whole file runs in well under a minute.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value as J;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn invar() -> Command {
    let mut c = Command::cargo_bin("invar").unwrap();
    c.env_remove("INVAR_CONFIG")
        .env("NO_COLOR", "1")
        .env("INVAR_LOG", "warn,sqlx=error");
    c
}

fn run(cfg: &Path) -> (i32, J, String) {
    let out = invar()
        .args(["run", "--format", "json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(J::Null);
    (
        out.status.code().unwrap_or(-1),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn outcome(report: &J, id: &str) -> String {
    report["results"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id))
        .map_or("missing".into(), |r| {
            r["outcome"].as_str().unwrap_or("?").into()
        })
}

/// `sqlite3 db sql` (the shell from Debian's sqlite3), its output trimmed.
fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap_or_else(|e| panic!("the sqlite3 shell is needed (Debian package sqlite3): {e}"));
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A webhook receiver whose answer the test sets (`status`); it keeps every request's JSON
/// body with the status it was answered with, and waits `delay` before answering.
struct Receiver {
    url: String,
    status: Arc<AtomicU16>,
    seen: Arc<Mutex<Vec<(u16, J)>>>,
}

fn receiver(delay: Duration) -> Receiver {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let status = Arc::new(AtomicU16::new(200));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (st, sn) = (status.clone(), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (st, sn) = (st.clone(), sn.clone());
            std::thread::spawn(move || {
                let Ok(clone) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(clone);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                std::thread::sleep(delay);
                let code = st.load(Ordering::SeqCst);
                if let Ok(j) = serde_json::from_slice(&body) {
                    sn.lock().unwrap().push((code, j));
                }
                let _ = stream.write_all(
                    format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                );
            });
        }
    });
    Receiver { url, status, seen }
}

/// A private `redis-server` on a free port, killed (SIGKILL) on drop.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    fn start(dir: &Path) -> Option<Redis> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            assert!(
                !invar_testkit::in_ci(),
                "redis-server is not installed and CI is set (Debian package redis-server)"
            );
            eprintln!(
                "\n!!!!!!!! WARNING: redis-server is not installed; this test is SKIPPED !!!!!!!!\n"
            );
            return None;
        };
        let r = Redis { child, port };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(r)
    }

    /// Sends a raw command and reads one reply line. A server still starting up (or a loaded
    /// machine) may reset the first connections: retried for up to 5 s.
    fn cmd(&self, line: &str) -> String {
        let once = || -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
            s.write_all(format!("{line}\r\n").as_bytes())?;
            let mut r = BufReader::new(s);
            let mut out = String::new();
            r.read_line(&mut out)?;
            Ok(out.trim().to_string())
        };
        let t0 = Instant::now();
        loop {
            match once() {
                Ok(out) if !out.is_empty() => return out,
                Ok(_) | Err(_) if t0.elapsed() < Duration::from_secs(5) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => panic!("redis {line}: {other:?}"),
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_source_killed_mid_query_is_error_exit_2_and_the_rest_is_decided() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(mut redis) = Redis::start(d) else {
        return;
    };
    assert_eq!(redis.cmd("SET chaos:key v"), "+OK");
    let cfg = d.join("invar.yaml");
    std::fs::write(
        &cfg,
        format!(
            "store: sqlite://h.db\n\
             sources:\n  cache: {{ type: redis, url: \"redis://:s3cret-pw@127.0.0.1:{}/0\", timeout: 8s }}\n\
             invariants:\n\
             \x20 - id: R-1\n    title: the key is there\n    probe: {{ source: cache, redis: {{ string: \"chaos:key\" }} }}\n    fail_when: count == 0.0\n\
             \x20 - id: P-1\n    title: passes\n    probe: {{ values: [a] }}\n    fail_when: count == 0.0\n\
             \x20 - id: F-1\n    title: fails\n    probe: {{ values: [a] }}\n    fail_when: count > 0.0\n",
            redis.port
        ),
    )
    .unwrap();
    // Redis is single-threaded: while DEBUG SLEEP runs, invar's read waits in the middle of
    // its query; the server is killed during that wait.
    let port = redis.port;
    let sleeper = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(b"DEBUG SLEEP 5\r\n");
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
    });
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let child = invar()
        .args(["run", "--format", "json", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1_000));
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    let killed_at = t0.elapsed();
    let out: Output = child.wait_with_output().unwrap();
    let took = t0.elapsed();
    let _ = sleeper.join();
    let report: J = serde_json::from_slice(&out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("redis killed at {killed_at:?}; the run ended at {took:?}");
    assert_eq!(out.status.code(), Some(2), "{report}\n{stderr}");
    assert_eq!(outcome(&report, "R-1"), "error", "{report}");
    assert_eq!(outcome(&report, "P-1"), "pass", "{report}");
    assert_eq!(outcome(&report, "F-1"), "fail", "{report}");
    // Cut by the kill, not by the 8 s timeout nor the 5 s sleep.
    assert!(took < Duration::from_secs(4), "{took:?}");
    let all = format!("{report}{stderr}");
    assert!(!all.contains("s3cret-pw"), "the password leaked: {all}");
}

#[test]
fn a_webhook_failing_across_runs_gets_each_notice_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hook = receiver(Duration::ZERO);
    let state = d.join("state.log");
    let cfg = d.join("invar.yaml");
    std::fs::write(
        &cfg,
        format!(
            "store: sqlite://h.db\nalerts:\n  hook: {{ type: webhook, url: \"{}\" }}\n\
             invariants:\n  - id: W-1\n    title: no BAD line\n    severity: critical\n    probe: {{ lines: {{ path: {}, match: BAD }} }}\n    fail_when: count > 0.0\n",
            hook.url,
            state.display()
        ),
    )
    .unwrap();
    // Red while the webhook answers 500: the firing notice stays queued (each `invar run`
    // retries for its 10 s flush window).
    hook.status.store(500, Ordering::SeqCst);
    std::fs::write(&state, "BAD\n").unwrap();
    let (code, _, err) = run(&cfg);
    assert_eq!(code, 1, "{err}");
    // Green, still 500: the resolved notice queues behind the firing one.
    std::fs::write(&state, "ok\n").unwrap();
    let (code, _, err) = run(&cfg);
    assert_eq!(code, 0, "{err}");
    let failed = hook.seen.lock().unwrap().len();
    assert!(failed >= 2, "no attempt while failing");
    // Recovered: both arrive, firing first, once each.
    hook.status.store(200, Ordering::SeqCst);
    let (code, _, err) = run(&cfg);
    assert_eq!(code, 0, "{err}");
    let seen = hook.seen.lock().unwrap().clone();
    let ok: Vec<&J> = seen
        .iter()
        .filter(|(c, _)| *c == 200)
        .map(|(_, j)| j)
        .collect();
    let notices: Vec<&str> = ok
        .iter()
        .map(|j| j["notice"].as_str().unwrap_or("?"))
        .collect();
    eprintln!(
        "webhook: {failed} attempts answered 500 over 2 runs, then {:?}",
        notices
    );
    assert_eq!(notices, ["firing", "resolved"], "{ok:#?}");
    assert_ne!(ok[0]["idempotency_key"], ok[1]["idempotency_key"]);
    // Every failed attempt was one of those two notices (the same keys, retried).
    for (_, j) in seen.iter().filter(|(c, _)| *c != 200) {
        assert!(
            ok.iter()
                .any(|o| o["idempotency_key"] == j["idempotency_key"]),
            "{j}"
        );
    }
    let db = d.join("h.db");
    assert_eq!(
        sqlite(&db, "SELECT count(*) FROM outbox WHERE status = 'pending'"),
        "0"
    );
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A small deterministic generator (xorshift64*): the kill points are the same every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The config both SIGKILL storms run: K-1 follows a state file (flipped by the test), K-2
/// always passes, K-3 takes 50 ms (a wider window for kills in evaluation).
/// Suites `k0`…`k49` all select everything: a watcher killed mid-run leaves its suite's lease
/// to expire (60 s, docs/WATCH.md), so each kill of `invar watch` asks for a suite of its own.
fn kill_config(cfg: &Path, hook: &Receiver, state: &Path, extra: &str) {
    let suites: String = (0..50)
        .map(|i| format!("  k{i}: {{ select: \"true\" }}\n"))
        .collect();
    std::fs::write(
        cfg,
        format!(
            "store: sqlite://h.db\n{extra}alerts:\n  hook: {{ type: webhook, url: \"{}\", timeout: 1s }}\n\
             suites:\n{suites}\
             invariants:\n\
             \x20 - id: K-1\n    title: no BAD line\n    severity: critical\n    probe: {{ lines: {{ path: {}, match: BAD }} }}\n    fail_when: count > 0.0\n\
             \x20 - id: K-2\n    title: passes\n    probe: {{ values: [a, b] }}\n    fail_when: count == 0.0\n\
             \x20 - id: K-3\n    title: a slower check\n    probe: {{ command: {{ run: [sleep, \"0.05\"], parse: text }} }}\n    fail_when: count == 0.0\n",
            hook.url,
            state.display()
        ),
    )
    .unwrap();
}

/// The state K-1 reads in iteration `i`: it flips every 6 iterations, so incidents open and
/// resolve under the kills (faster flips make it flapping, whose incidents are quiet by design).
fn flip(state: &Path, i: usize) {
    std::fs::write(
        state,
        if (i / 6).is_multiple_of(2) {
            "BAD\n"
        } else {
            "ok\n"
        },
    )
    .unwrap();
}

/// A kill during a delivery leaves its row leased by the dead process (for twice the sink's
/// timeout plus 5 s): it is delivered again, with its key, once the lease ends. Waits that
/// out; returns how many rows were left leased.
fn wait_out_leases(db: &Path) -> u64 {
    let leased: u64 = sqlite(
        db,
        "SELECT count(*) FROM outbox WHERE status = 'pending' AND lease_until IS NOT NULL",
    )
    .parse()
    .unwrap();
    let until: i64 = sqlite(
        db,
        "SELECT coalesce(max(lease_until), 0) FROM outbox WHERE status = 'pending'",
    )
    .parse()
    .unwrap();
    let wait = until - chrono_now_ms();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64 + 200));
    }
    leased
}

#[test]
fn sigkill_at_random_points_leaves_whole_runs_and_each_notice_once() {
    const KILLS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A short delay before each answer widens the window between send and acknowledgement.
    let hook = receiver(Duration::from_millis(30));
    let (state, cfg, db) = (d.join("state.log"), d.join("invar.yaml"), d.join("h.db"));
    kill_config(&cfg, &hook, &state, "");
    // One clean run first: the store exists, so kills land in evaluation, recording and
    // delivery rather than all in the migration.
    std::fs::write(&state, "ok\n").unwrap();
    let (code, _, err) = run(&cfg);
    assert_eq!(code, 0, "{err}");
    let mut rng = Rng(0x5EED_0011_u64);
    let mut exited = 0;
    let t0 = Instant::now();
    for i in 0..KILLS {
        flip(&state, i);
        let mut child = invar()
            .args(["run", "--format", "json", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(160)));
        if child.try_wait().unwrap().is_some() {
            exited += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let kills_took = t0.elapsed();
    let leased = wait_out_leases(&db);
    // A run after the storm delivers whatever the kills left queued.
    std::fs::write(&state, "ok\n").unwrap();
    let (code, _, err) = run(&cfg);
    assert!(
        code == 0 || code == 1,
        "the store is broken after the kills: {err}"
    );
    check_whole_runs_and_notices(&db, &hook, "invar run", KILLS, exited, kills_took, leased);
}

const ADMIN: &str = "chaos-admin-0123456789abcdef";

/// `invar watch --listen 127.0.0.1:0` on `cfg`, and the address it listens on. Its stderr is
/// drained by a thread (a full pipe would stall it) into the returned log.
fn start_watch(cfg: &Path) -> (std::process::Child, String, Arc<Mutex<String>>) {
    let mut child = invar()
        .args(["watch", "--listen", "127.0.0.1:0", "--config"])
        .arg(cfg)
        .env("INVAR_LOG", "info,sqlx=error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
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
    (child, addr, log)
}

/// Asks the watcher at `addr` for a run of `suite` (`POST /api/v1/runs`) and returns the open
/// connection without reading the answer: closing it could cancel the request, and the kill,
/// not the client, is what this test is about.
fn ask_for_run(addr: &str, suite: &str) -> std::net::TcpStream {
    let body = format!(r#"{{"suite": "{suite}"}}"#);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(
        format!(
            "POST /api/v1/runs HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {ADMIN}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s
}

#[test]
fn sigkill_of_invar_watch_at_random_points_leaves_whole_runs_and_each_notice_once() {
    const KILLS: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hook = receiver(Duration::from_millis(30));
    let (state, cfg, db) = (d.join("state.log"), d.join("invar.yaml"), d.join("h.db"));
    kill_config(
        &cfg,
        &hook,
        &state,
        &format!("server:\n  admin_token: \"{ADMIN}\"\n"),
    );
    std::fs::write(&state, "ok\n").unwrap();
    let (code, _, err) = run(&cfg);
    assert_eq!(code, 0, "{err}");
    let runs = || -> u64 { sqlite(&db, "SELECT count(*) FROM runs").parse().unwrap() };
    let mut rng = Rng(0x5EED_0022_u64);
    let mut recorded_first = 0;
    let t0 = Instant::now();
    for i in 0..KILLS {
        flip(&state, i);
        let before = runs();
        let (mut child, addr, log) = start_watch(&cfg);
        let conn = ask_for_run(&addr, &format!("k{i}"));
        // Up to 250 ms: the run (about 60 ms of checks), its recording, and the outbox
        // worker's delivery through a receiver that waits 30 ms before it answers.
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        assert!(
            child.try_wait().unwrap().is_none(),
            "invar watch exited by itself:\n{}",
            log.lock().unwrap()
        );
        let _ = child.kill();
        let _ = child.wait();
        drop(conn);
        if runs() > before {
            recorded_first += 1;
        }
    }
    let kills_took = t0.elapsed();
    let leased = wait_out_leases(&db);
    std::fs::write(&state, "ok\n").unwrap();
    let (code, _, err) = run(&cfg);
    assert!(
        code == 0 || code == 1,
        "the store is broken after the kills: {err}"
    );
    check_whole_runs_and_notices(
        &db,
        &hook,
        "invar watch",
        KILLS,
        recorded_first,
        kills_took,
        leased,
    );
    assert!(
        recorded_first > 0 && recorded_first < KILLS,
        "the kills should land both before and after recording: {recorded_first} of {KILLS} recorded"
    );
}

/// What a storm of SIGKILLs must leave: every recorded run whole, every notice of every
/// incident once in the outbox and delivered (once, or again with the same key when a kill
/// fell between send and acknowledgement), nothing pending. Prints the figures.
fn check_whole_runs_and_notices(
    db: &Path,
    hook: &Receiver,
    what: &str,
    kills: usize,
    exited: usize,
    kills_took: Duration,
    leased: u64,
) {
    let q = |sql: &str| sqlite(db, sql);
    let runs: u64 = q("SELECT count(*) FROM runs").parse().unwrap();
    // Every recorded run is whole: its counts add up to its result rows, all three.
    assert_eq!(
        q(
            "SELECT count(*) FROM runs r WHERE n_pass + n_warn + n_fail + n_skip + n_error != 3 \
           OR (SELECT count(*) FROM results s WHERE s.run_id = r.run_id) != 3"
        ),
        "0"
    );
    assert_eq!(
        q("SELECT count(*) FROM results WHERE run_id NOT IN (SELECT run_id FROM runs)"),
        "0"
    );
    // Each notice of each incident is in the outbox once, and none is missing.
    assert_eq!(
        q(
            "SELECT count(*) FROM (SELECT incident_id, notice, sink FROM outbox \
           GROUP BY incident_id, notice, sink HAVING count(*) > 1)"
        ),
        "0"
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM (SELECT idempotency_key FROM outbox GROUP BY 1 HAVING count(*) > 1)"
        ),
        "0"
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM incidents i WHERE NOT EXISTS (SELECT 1 FROM outbox o \
           WHERE o.incident_id = i.id AND o.notice = 'firing') AND NOT EXISTS (SELECT 1 FROM \
           outbox o WHERE o.idempotency_key LIKE i.subject || ':flapping:%')"
        ),
        "0"
    );
    assert_eq!(
        q(
            "SELECT count(*) FROM incidents i WHERE i.resolved_at IS NOT NULL AND EXISTS \
           (SELECT 1 FROM outbox o WHERE o.incident_id = i.id AND o.notice = 'firing') AND NOT EXISTS \
           (SELECT 1 FROM outbox o WHERE o.incident_id = i.id AND o.notice = 'resolved')"
        ),
        "0"
    );
    assert_eq!(
        q("SELECT count(*) FROM outbox WHERE status = 'pending'"),
        "0"
    );
    // Delivered exactly once, or once more with the same key when a kill fell between the
    // send and its acknowledgement: every key received is an outbox row's.
    let keys: std::collections::BTreeSet<String> = q("SELECT idempotency_key FROM outbox")
        .lines()
        .map(str::to_string)
        .collect();
    let seen = hook.seen.lock().unwrap().clone();
    let mut per_key = std::collections::BTreeMap::<String, usize>::new();
    for (_, j) in &seen {
        let k = j["idempotency_key"].as_str().unwrap_or("?").to_string();
        assert!(keys.contains(&k), "a notice not in the outbox: {j}");
        *per_key.entry(k).or_default() += 1;
    }
    assert_eq!(per_key.len(), keys.len(), "a notice was never sent");
    let again = per_key.values().filter(|n| **n > 1).count();
    let incidents = q("SELECT count(*) FROM incidents");
    let flapping = q("SELECT count(*) FROM outbox WHERE idempotency_key LIKE '%:flapping:%'");
    eprintln!(
        "{what}: {kills} SIGKILLs in {kills_took:?} ({exited} had already finished): {runs} runs \
         recorded, all whole; {incidents} incidents, {} notices ({flapping} flapping), each once in \
         the outbox; {leased} left leased by a killed process, {again} sent again with the same key",
        keys.len()
    );
    assert!(
        runs >= 2 && keys.len() >= 2,
        "the kills left too little to check"
    );
}

#[test]
fn two_runs_at_once_on_one_sqlite_store_never_lock_or_lose_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("invar.yaml");
    std::fs::write(
        &cfg,
        "store: sqlite://h.db\ninvariants:\n\
         \x20 - id: T-1\n    title: passes\n    probe: { values: [a] }\n    fail_when: count == 0.0\n\
         \x20 - id: T-2\n    title: fails\n    probe: { values: [a] }\n    fail_when: count > 0.0\n",
    )
    .unwrap();
    let t0 = Instant::now();
    for i in 0..20 {
        let spawn = || {
            invar()
                .args(["run", "--format", "json", "--config"])
                .arg(&cfg)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "round {i}: {err}");
            assert!(!err.to_lowercase().contains("locked"), "round {i}: {err}");
        }
        let runs = sqlite(&d.join("h.db"), "SELECT count(*) FROM runs");
        assert_eq!(runs, (2 * (i + 1)).to_string(), "round {i}: a run was lost");
    }
    eprintln!(
        "20 rounds of two concurrent runs in {:?}: 40 runs recorded",
        t0.elapsed()
    );
}

/// A tiny tmpfs mounted for the test (root only), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_under_the_store_is_a_clear_error_exit_2_with_the_run_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mnt = d.join("m");
    let cfg = d.join("invar.yaml");
    let body = "invariants:\n  - id: D-1\n    title: fails\n    severity: critical\n    probe: { values: [a] }\n    fail_when: count > 0.0\n";
    let Some(fs) = Tmpfs::mount(&mnt, "1m") else {
        // Not root (no mount): a store under a path that cannot be a directory instead.
        assert!(
            !invar_testkit::in_ci(),
            "cannot mount a tmpfs and CI is set: run the chaos suite as root"
        );
        eprintln!(
            "\n!!!!!!!! WARNING: cannot mount a tmpfs; testing an unwritable store path instead !!!!!!!!\n"
        );
        std::fs::write(d.join("file"), "").unwrap();
        std::fs::write(&cfg, format!("store: sqlite://file/h.db\n{body}")).unwrap();
        let (code, report, err) = run(&cfg);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("history store"), "{err}");
        assert_eq!(outcome(&report, "D-1"), "fail", "{report}");
        return;
    };
    std::fs::write(&cfg, format!("store: sqlite://m/h.db\n{body}")).unwrap();
    let (code, _, err) = run(&cfg);
    assert_eq!(code, 1, "{err}");
    // Fill what is left of the file system.
    let mut f = std::fs::File::create(mnt.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    drop(f);
    let (code, report, err) = run(&cfg);
    eprintln!("disk full: exit {code}: {}", err.trim());
    assert_eq!(code, 2, "{err}");
    // SQLite says "database or disk is full" when a write hits the limit, and only "disk I/O
    // error" when the shared-memory file cannot grow at open: invar then says the file system
    // is full. Either way the message names the store and what to fix.
    assert!(
        err.contains("history store")
            && (err.contains("disk is full") || err.contains("file system holding")),
        "{err}"
    );
    if err.contains("disk I/O error") {
        assert!(
            err.contains(&format!("`{}` is full", mnt.display())),
            "{err}"
        );
    }
    // The run itself was decided and reported; only recording failed.
    assert_eq!(outcome(&report, "D-1"), "fail", "{report}");
    // A new store on the full file system fails at open: the message says the file system
    // is full, whatever SQLite's own words.
    let cfg_new = d.join("new.yaml");
    std::fs::write(&cfg_new, format!("store: sqlite://m/new.db\n{body}")).unwrap();
    let (code, report, err) = run(&cfg_new);
    eprintln!("disk full, new store: exit {code}: {}", err.trim());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot open the history store")
            && err.contains(&format!(
                "the file system holding `{}` is full",
                mnt.display()
            )),
        "{err}"
    );
    assert_eq!(outcome(&report, "D-1"), "fail", "{report}");
    // Space again: the same store records (nothing was left broken).
    std::fs::remove_file(mnt.join("filler")).unwrap();
    let (code, _, err) = run(&cfg);
    assert_eq!(code, 1, "{err}");
    drop(fs);
}
