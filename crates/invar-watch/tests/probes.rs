//! The watcher's HTTP edge under trouble, served in process by the production accept loop
//! (`serve::serve_http`) over a real SQLite store: `/livez` stays 200 while `/healthz` is 503
//! for an overdue suite and `/readyz` follows the store and the background loops; a client
//! that never finishes its request head is cut at the header timeout; a store that hangs (a
//! Postgres behind a relay the test freezes) makes the store routes 503 within about the
//! store timeout while `/livez` answers at once; and the alert families of
//! `/metrics` never present a prune as a counter going down.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use invar_watch::api;
use invar_watch::clock::Clock;
use invar_watch::serve::{HEADER_READ_TIMEOUT, Workers, serve_http};
use invar_watch::watcher::Watcher;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const READ: &str = "read-0123456789abcdef";
const ADMIN: &str = "admin-0123456789abcdef";

struct Served {
    base: String,
    addr: std::net::SocketAddr,
    watcher: Arc<Watcher>,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

/// A watcher over `dir/h.db` with `body` as the rest of its config, served on a free port
/// (no scheduler loops: a scheduled suite's ticks go unrun, so it turns overdue).
async fn serve(body: &str, clock: Clock, workers: Workers) -> Served {
    serve_with("store: sqlite://h.db\n", body, clock, workers).await
}

async fn serve_with(store: &str, body: &str, clock: Clock, workers: Workers) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invar.yaml");
    std::fs::write(
        &path,
        format!(
            "{store}server:\n  admin_token: \"{ADMIN}\"\n  read_token: \"{READ}\"\n  overdue_after: 1m\n{body}"
        ),
    )
    .unwrap();
    let cfg = Arc::new(invar_config::load(&path).unwrap());
    let store: Arc<dyn invar_store::Store> =
        Arc::from(invar_store::open(&cfg.store).await.unwrap());
    let watcher = Arc::new(Watcher::new(cfg, store, clock, "test".into()).unwrap());
    let (router, _) = api::router(watcher.clone(), workers);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(serve_http(listener, router, stop_rx));
    Served {
        base: format!("http://{addr}"),
        addr,
        watcher,
        _dir: dir,
        _stop: stop,
    }
}

const ONE_CHECK: &str = "invariants:\n  - id: A-1\n    title: a\n    severity: critical\n    probe: { values: [x] }\n    fail_when: count > 0.0\n";

async fn get(client: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value, Duration) {
    let t0 = Instant::now();
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, t0.elapsed())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // Below the API's 5 s idle keep-alive close (docs/WATCH.md).
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livez_stays_200_while_healthz_is_503_for_an_overdue_suite() {
    // 60x: a minute-by-minute schedule and a 1m grace play out in a few real seconds.
    let clock = Clock::Scaled {
        anchor: chrono::Utc::now(),
        scale: 60,
    };
    let workers = Workers::default();
    let s = serve(
        &format!("suites:\n  sweep: {{ select: \"true\", schedule: \"* * * * *\" }}\n{ONE_CHECK}"),
        clock,
        workers.clone(),
    )
    .await;
    let c = client();
    let t0 = Instant::now();
    let healthz = loop {
        let (st, body, _) = get(&c, &format!("{}/healthz", s.base), None).await;
        if st == 503 {
            break body;
        }
        assert_eq!(st, 200, "{body}");
        assert!(t0.elapsed() < Duration::from_secs(15), "never overdue");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(healthz["status"], "overdue", "{healthz}");
    assert_eq!(healthz["overdue"][0]["suite"], "sweep", "{healthz}");
    let (st, body, took) = get(&c, &format!("{}/livez", s.base), None).await;
    assert_eq!((st, &body["status"]), (200, &Value::from("ok")), "{body}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    // Overdue is not unready: the store answers and no loop has stopped.
    let (st, body, _) = get(&c, &format!("{}/readyz", s.base), None).await;
    assert_eq!(st, 200, "{body}");

    // A background loop that ended makes the watcher unready, naming it.
    let ended = tokio::spawn(async {});
    workers.add("scheduler `sweep`", ended.abort_handle());
    ended.await.unwrap();
    let (st, body, _) = get(&c, &format!("{}/readyz", s.base), None).await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("scheduler `sweep`"),
        "{body}"
    );
    let (st, _, _) = get(&c, &format!("{}/livez", s.base), None).await;
    assert_eq!(st, 200);

    // Both probes are in the OpenAPI document the API serves.
    let (_, doc, _) = get(&c, &format!("{}/openapi.json", s.base), None).await;
    for p in ["/livez", "/readyz", "/healthz"] {
        assert!(doc["paths"][p]["get"].is_object(), "{p} not in {doc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_at_the_header_timeout() {
    let s = serve(ONE_CHECK, Clock::System, Workers::default()).await;
    let addr = s.addr;
    // A slowloris client on its own thread: one byte of a request head every 300 ms, never
    // the blank line. The trickle must not extend the deadline.
    let slow = std::thread::spawn(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let head = b"GET /livez HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let t0 = Instant::now();
        let mut buf = [0u8; 512];
        for b in head.iter().cycle() {
            if tcp.write_all(&[*b]).is_err() {
                return (t0.elapsed(), "write failed".to_string());
            }
            match tcp.read(&mut buf) {
                Ok(0) => return (t0.elapsed(), "closed".to_string()),
                Ok(n) => {
                    return (
                        t0.elapsed(),
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return (t0.elapsed(), format!("read error: {e}")),
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return (t0.elapsed(), "still open after 30 s".to_string());
            }
        }
        unreachable!()
    });
    // Meanwhile the server answers others at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (st, _, took) = get(&client(), &format!("{}/livez", s.base), None).await;
    assert_eq!(st, 200);
    assert!(took < Duration::from_millis(500), "{took:?}");
    let (took, how) = tokio::task::spawn_blocking(move || slow.join().unwrap())
        .await
        .unwrap();
    eprintln!("slowloris client cut after {took:?} ({how:?})");
    // hyper may answer 408 before closing; either way the socket is not held.
    assert!(
        how == "closed" || how.starts_with("HTTP/1.1 408") || how.starts_with("read error"),
        "{how}"
    );
    assert!(
        took >= HEADER_READ_TIMEOUT - Duration::from_millis(500)
            && took < HEADER_READ_TIMEOUT + Duration::from_secs(2),
        "cut after {took:?}, expected about {HEADER_READ_TIMEOUT:?}"
    );
}

/// A TCP relay to `target` that can be frozen: while frozen it forwards nothing, so the server
/// behind it hangs as a stalled network or a frozen database host does (a refused connection
/// would fail fast, which is not the case to test).
struct Relay {
    addr: std::net::SocketAddr,
    frozen: watch::Sender<bool>,
}

async fn relay(target: &str) -> Relay {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        mut frozen: watch::Receiver<bool>,
    ) {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (frozen, rx) = watch::channel(false);
    let target = target.to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pipe(cr, sw, rx.clone()));
            tokio::spawn(pipe(sr, cw, rx.clone()));
        }
    });
    Relay { addr, frozen }
}

fn psql(db: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-tAqc", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_is_503_fast_on_store_routes_while_livez_is_instant() {
    if !invar_testkit::server_up(
        "PostgreSQL",
        "127.0.0.1:5432",
        "bash scripts/ensure-services.sh",
    ) {
        return;
    }
    let db = format!("invar_probes_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
    psql("postgres", &format!("CREATE DATABASE {db}"));
    let relay = relay("127.0.0.1:5432").await;
    let s = serve_with(
        &format!("store: postgres://postgres@{}/{db}\n", relay.addr),
        // A yearly schedule: `/healthz` reads the store for its last tick.
        &format!("suites:\n  yearly: {{ select: \"true\", schedule: \"0 0 1 1 *\" }}\n{ONE_CHECK}"),
        Clock::System,
        Workers::default(),
    )
    .await;
    let c = client();
    let (st, body, _) = get(&c, &format!("{}/api/v1/runs", s.base), Some(READ)).await;
    assert_eq!(st, 200, "{body}");
    let (st, _, _) = get(&c, &format!("{}/readyz", s.base), None).await;
    assert_eq!(st, 200);

    relay.frozen.send_replace(true);
    let mut took = BTreeMap::new();
    for path in [
        "/api/v1/runs",
        "/api/v1/incidents",
        "/api/v1/violations/stats",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        let (st, body, t) = get(&c, &format!("{}{path}", s.base), Some(READ)).await;
        assert_eq!(st, 503, "{path}: {body}");
        let text = body.to_string();
        assert!(
            text.contains("store") && !text.contains("postgres://"),
            "{path}: {text}"
        );
        assert!(t < Duration::from_millis(2_800), "{path} took {t:?}");
        took.insert(path, t);
        let (st, _, t) = get(&c, &format!("{}/livez", s.base), None).await;
        assert_eq!(st, 200);
        assert!(t < Duration::from_millis(200), "/livez took {t:?}");
    }
    // A run is refused before it would wait on the store for its lease.
    let t0 = Instant::now();
    let resp = c
        .post(format!("{}/api/v1/runs", s.base))
        .bearer_auth(ADMIN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    took.insert("POST /api/v1/runs", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_millis(1_800), "{took:?}");
    eprintln!("store frozen: {took:?}");

    relay.frozen.send_replace(false);
    let t0 = Instant::now();
    loop {
        let (st, body, _) = get(&c, &format!("{}/readyz", s.base), None).await;
        if st == 200 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "still not ready after the store came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (st, _, _) = get(&c, &format!("{}/api/v1/runs", s.base), Some(READ)).await;
    assert_eq!(st, 200);
    drop(s);
    psql("postgres", &format!("DROP DATABASE {db} WITH (FORCE)"));
}

/// `/metrics` as (family → (type, summed value)).
fn scrape(text: &str) -> BTreeMap<String, (String, f64)> {
    let mut types = BTreeMap::new();
    let mut out: BTreeMap<String, (String, f64)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = line.split(['{', ' ']).next().unwrap().to_string();
            let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            let kind = types.get(&name).cloned().unwrap_or_default();
            out.entry(name).or_insert((kind, 0.0)).1 += value;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_between_two_scrapes_lowers_no_counter() {
    let (hook, bodies) = invar_testkit::json_receiver("/hook");
    let s = serve(
        &format!("alerts:\n  hook: {{ type: webhook, url: \"{hook}\" }}\n{ONE_CHECK}"),
        Clock::System,
        Workers::default(),
    )
    .await;
    let w = s.watcher.clone();
    w.run_suite("all", vec![], invar_core::Trigger::Api)
        .await
        .unwrap();
    let outbox = invar_alerts::Outbox::new(w.store.clone(), &w.cfg.alerts);
    let flushed = outbox.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(flushed.delivered, 1, "{flushed:?}");
    assert_eq!(bodies.lock().unwrap().len(), 1);

    let c = client();
    let metrics = |c: reqwest::Client, url: String| async move {
        c.get(url).send().await.unwrap().text().await.unwrap()
    };
    let before_text = metrics(c.clone(), format!("{}/metrics", s.base)).await;
    let before = scrape(&before_text);
    assert_eq!(
        before["invar_alert_outbox_delivered"].1, 1.0,
        "{before_text}"
    );

    // Retention of zero a day from now: every delivered alert and run goes.
    let pruned = w
        .store
        .prune(
            invar_core::model::Retention {
                runs: Duration::ZERO,
                violations: Duration::ZERO,
            },
            chrono::Utc::now() + chrono::Duration::days(1),
        )
        .await
        .unwrap();
    assert_eq!(pruned.deliveries, 1, "{pruned:?}");
    // The snapshot is reused for 2 s.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let after_text = metrics(c.clone(), format!("{}/metrics", s.base)).await;
    let after = scrape(&after_text);
    // The prune is visible (so the comparison below compares something)...
    assert_eq!(after["invar_alert_outbox_delivered"].1, 0.0, "{after_text}");
    // ...and no family typed counter, nor any `_total`, went down.
    for (name, (kind, v)) in &before {
        if kind == "counter" || name.ends_with("_total") {
            let now = after.get(name).map_or(0.0, |x| x.1);
            assert!(now >= *v, "{name} went from {v} to {now}");
        }
    }
    for (name, (kind, _)) in &after {
        assert!(
            kind != "counter" || name.ends_with("_total"),
            "{name}: a counter must end in _total"
        );
    }
    // Prometheus' own linter on the real scrape.
    if let Some((clean, said)) = invar_testkit::promtool_check_metrics(&after_text) {
        assert!(clean, "promtool: {said}\n{after_text}");
    }
}
