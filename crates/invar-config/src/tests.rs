//! Loading whole configs: every check kind into the right model, includes, env, duplicates.

use super::*;
use invar_core::{Check, CommandParse, FailOn, FileRef, OnEmpty, Probe, Severity, SourceKind};
use std::time::Duration;

fn env(name: &str) -> Option<String> {
    match name {
        "APP_DATABASE_URL" => Some("postgres://app:hunter22@db/app".into()),
        "TEAM" => Some("payments".into()),
        _ => None,
    }
}

/// Writes `files` (name, text) into a fresh directory; returns it and the main file's path.
fn setup(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let main = dir.path().join(files[0].0);
    (dir, main)
}

fn ok(files: &[(&str, &str)]) -> (tempfile::TempDir, Config) {
    let (dir, main) = setup(files);
    match load_with_env(&main, &env) {
        Ok(c) => (dir, c),
        Err(d) => panic!("expected a valid config, got:\n{}", d.render(false)),
    }
}

fn errs(files: &[(&str, &str)]) -> Vec<Diagnostic> {
    let (_dir, main) = setup(files);
    match load_with_env(&main, &env) {
        Ok(_) => panic!("expected errors"),
        Err(d) => d.items,
    }
}

const FULL: &str = r#"
sources:
  app:     { type: postgres, url: "${APP_DATABASE_URL}", timeout: 10s }
  legacy:  { type: mysql, url: "mysql://u@h/db", read_only: false, max_connections: 8 }
  local:   { type: sqlite, path: data/app.db }
  bootlog: { type: file, path: /var/log/boot.log }
invariants:
  - id: INV-10
    title: Fetched-at timestamps are backfilled
    severity: critical
    tags: [gate, weekly]
    runbook: Re-run the nightly ingest.
    owner: "${TEAM}"
    timeout: 2m
    skip_if: source.size_bytes > 5000
    fire_after: 2
    resolve_after: 3
    alerts: [pager]
    probe:
      source: app
      sql: SELECT count(*) AS sample FROM programs
    skip_when: row.sample < 100
    fail_when: row.missing / row.sample > 0.01
    warn_when: row.missing > 0
    on_empty: skip
  - id: API-LINES
    title: Boot log has no panics
    probe: { lines: { source: bootlog, match: 'panic: (?P<msg>.*)', tail: 1000 } }
    every_row: r.msg == ""
  - id: CMD
    title: No zombies
    probe:
      command:
        run: [ps, -eo, "stat,comm"]
        timeout: 5s
        cwd: work
        env: { LC_ALL: C }
        parse: lines
  - id: S-01
    title: Same keys
    same:
      left:  { source: app, sql: "SELECT a, b FROM x", key: [a, b], age: started_at }
      right: { source: legacy, sql: "SELECT c, d FROM y", key: [c, d] }
      grace: 3s
  - id: L-03
    title: Subset
    subset:
      each: { values: [049_a.sql, 75] }
      in:   { lines: { path: migrations/boot.txt, match: '^(?P<value>\S+)' }, key: value }
  - id: D-01
    title: Disjoint
    disjoint:
      left:  { source: local, sql: "SELECT id FROM a", key: id }
      right: { source: local, sql: "SELECT id FROM b" }
suites:
  gate:   { select: "severity == 'critical' || 'gate' in tags" }
  weekly: { select: "'weekly' in tags", schedule: "0 4 * * MON", timezone: Asia/Tokyo, fail_on: warn, budget: 5m, misfire: skip }
alerts:
  ops: { type: slack, webhook_url: "${SLACK_URL_FOR_TESTS:-https://hooks.slack.invalid/T/B/x}" }
  pager: { type: webhook, url: "https://pager.invalid/hook", min_severity: critical }
store: sqlite://.invar/history.db
"#;

#[test]
fn every_check_kind_parses_into_the_model() {
    let (dir, c) = ok(&[("invar.yaml", FULL)]);
    let root = std::path::absolute(dir.path()).unwrap();
    assert_eq!(c.path, root.join("invar.yaml"));

    assert_eq!(c.sources.len(), 4);
    let SourceKind::Postgres(app) = &c.sources["app"].kind else {
        panic!()
    };
    assert_eq!(app.url.expose(), "postgres://app:hunter22@db/app");
    assert!(app.read_only);
    assert_eq!(app.timeout, Duration::from_secs(10));
    assert_eq!(app.max_connections, 4);
    let SourceKind::Mysql(legacy) = &c.sources["legacy"].kind else {
        panic!()
    };
    assert!(!legacy.read_only);
    assert_eq!(legacy.max_connections, 8);
    assert_eq!(legacy.timeout, Duration::from_secs(30));
    let SourceKind::Sqlite(local) = &c.sources["local"].kind else {
        panic!()
    };
    assert_eq!(local.path, root.join("data/app.db"));
    let SourceKind::File(boot) = &c.sources["bootlog"].kind else {
        panic!()
    };
    assert_eq!(boot.path, PathBuf::from("/var/log/boot.log"));

    assert_eq!(c.invariants.len(), 6);
    let inv = &c.invariants[0];
    assert_eq!(inv.id, "INV-10");
    assert_eq!(inv.severity, Severity::Critical);
    assert_eq!(inv.tags, ["gate", "weekly"]);
    assert_eq!(inv.owner.as_deref(), Some("payments"));
    assert_eq!(inv.timeout, Some(Duration::from_secs(120)));
    assert_eq!(
        inv.skip_if.as_ref().unwrap().source,
        "source.size_bytes > 5000"
    );
    assert_eq!((inv.fire_after, inv.resolve_after), (2, 3));
    assert_eq!(inv.alerts, ["pager"]);
    assert!(
        inv.defined_at.ends_with("invar.yaml:8"),
        "{}",
        inv.defined_at
    );
    let Check::Probe(p) = &inv.check else {
        panic!()
    };
    assert_eq!(
        p.probe,
        Probe::Sql {
            source: "app".into(),
            sql: "SELECT count(*) AS sample FROM programs".into()
        }
    );
    assert!(
        p.skip_when.is_some()
            && p.fail_when.is_some()
            && p.warn_when.is_some()
            && p.every_row.is_none()
    );
    assert_eq!(p.on_empty, OnEmpty::Skip);

    let Check::Probe(p) = &c.invariants[1].check else {
        panic!()
    };
    assert_eq!(c.invariants[1].severity, Severity::Major);
    assert_eq!(
        (c.invariants[1].fire_after, c.invariants[1].resolve_after),
        (1, 1)
    );
    let Probe::Lines(l) = &p.probe else { panic!() };
    assert_eq!(l.file, FileRef::Source("bootlog".into()));
    assert_eq!(l.pattern.as_deref(), Some("panic: (?P<msg>.*)"));
    assert_eq!(l.tail, Some(1000));
    assert!(p.every_row.is_some());
    assert_eq!(p.on_empty, OnEmpty::Pass);

    let Check::Probe(p) = &c.invariants[2].check else {
        panic!()
    };
    let Probe::Command(cmd) = &p.probe else {
        panic!()
    };
    assert_eq!(cmd.run, ["ps", "-eo", "stat,comm"]);
    assert_eq!(cmd.timeout, Duration::from_secs(5));
    assert_eq!(cmd.cwd, Some(root.join("work")));
    assert_eq!(cmd.env.get("LC_ALL").map(String::as_str), Some("C"));
    assert_eq!(cmd.parse, CommandParse::Lines);

    let Check::Same(s) = &c.invariants[3].check else {
        panic!()
    };
    assert_eq!(s.left.key, ["a", "b"]);
    assert_eq!(s.left.age.as_deref(), Some("started_at"));
    assert_eq!(s.right.key, ["c", "d"]);
    assert_eq!(s.grace, Some(Duration::from_secs(3)));
    assert_eq!(c.invariants[3].check.sources(), ["app", "legacy"]);

    let Check::Subset(s) = &c.invariants[4].check else {
        panic!()
    };
    assert_eq!(
        s.each.probe,
        Probe::Values(vec!["049_a.sql".into(), "75".into()])
    );
    assert!(s.each.key.is_empty());
    let Probe::Lines(l) = &s.within.probe else {
        panic!()
    };
    assert_eq!(l.file, FileRef::Path(root.join("migrations/boot.txt")));
    assert_eq!(s.within.key, ["value"]);

    let Check::Disjoint(d) = &c.invariants[5].check else {
        panic!()
    };
    assert_eq!(d.left.key, ["id"]);
    assert!(d.right.key.is_empty());
    assert_eq!(d.grace, None);

    assert_eq!(c.suites.len(), 2);
    assert_eq!(c.suites[0].name, "gate");
    assert_eq!(c.suites[0].fail_on, FailOn::Fail);
    assert!(c.suites[0].selects(&c.invariants[0]).unwrap());
    assert!(!c.suites[0].selects(&c.invariants[2]).unwrap());
    let weekly = c.suite("weekly").unwrap();
    assert_eq!(weekly.schedule.as_deref(), Some("0 4 * * MON"));
    assert_eq!(weekly.timezone.as_deref(), Some("Asia/Tokyo"));
    assert_eq!(weekly.fail_on, FailOn::Warn);
    assert_eq!(weekly.budget, Some(Duration::from_secs(300)));
}

#[test]
fn defaults_and_implicit_suite() {
    let (_d, c) = ok(&[(
        "invar.yaml",
        "invariants:\n  - id: A\n    title: t\n    probe: { values: [x] }\n    every_row: r.value != \"\"\n",
    )]);
    assert_eq!(c.suites, vec![invar_core::Suite::all()]);
    let Check::Probe(p) = &c.invariants[0].check else {
        panic!()
    };
    assert_eq!(p.probe, Probe::Values(vec!["x".into()]));
    assert_eq!(c.invariants[0].severity, Severity::Major);

    let (_d, c) = ok(&[(
        "invar.yaml",
        "invariants:\n  - id: B\n    title: t\n    probe:\n      command: { run: [true] }\n",
    )]);
    let Check::Probe(p) = &c.invariants[0].check else {
        panic!()
    };
    let Probe::Command(cmd) = &p.probe else {
        panic!()
    };
    assert_eq!(
        (cmd.timeout, cmd.parse, cmd.cwd.clone()),
        (Duration::from_secs(60), CommandParse::Text, None)
    );

    let (_d, c) = ok(&[("invar.yaml", "")]);
    assert!(c.invariants.is_empty() && c.sources.is_empty());
}

#[test]
fn env_interpolation_everywhere_with_defaults_and_escapes() {
    let (_d, c) = ok(&[(
        "invar.yaml",
        r#"
sources:
  db: { type: postgres, url: "${APP_DATABASE_URL}", timeout: "${DB_TIMEOUT:-5s}", read_only: "${RO:-false}", max_connections: "${MAXC:-2}" }
invariants:
  - id: "INV-${TEAM}"
    title: costs $$5 for ${TEAM:-nobody}
    probe: { source: db, sql: "SELECT 1 FROM ${SCHEMA:-public}.t" }
"#,
    )]);
    let SourceKind::Postgres(db) = &c.sources["db"].kind else {
        panic!()
    };
    assert_eq!(db.timeout, Duration::from_secs(5));
    assert!(!db.read_only);
    assert_eq!(db.max_connections, 2);
    assert_eq!(c.invariants[0].id, "INV-payments");
    assert_eq!(c.invariants[0].title, "costs $5 for payments");
    let Check::Probe(p) = &c.invariants[0].check else {
        panic!()
    };
    assert_eq!(
        p.probe,
        Probe::Sql {
            source: "db".into(),
            sql: "SELECT 1 FROM public.t".into()
        }
    );
}

#[test]
fn unset_env_var_is_positioned_at_the_reference() {
    let d = errs(&[(
        "invar.yaml",
        "sources:\n  db: { type: postgres, url: \"postgres://${DB_USER}@h/${DB_NAME}\" }\n",
    )]);
    assert_eq!(d.len(), 2);
    assert_eq!(d[0].message, "environment variable `DB_USER` is not set");
    assert_eq!((d[0].line, d[0].col, d[0].len), (2, 42, 10));
    assert_eq!(d[1].message, "environment variable `DB_NAME` is not set");
    assert_eq!(d[0].key_path, "sources.db.url");
}

#[test]
fn secrets_never_reach_messages() {
    let d = errs(&[(
        "invar.yaml",
        "sources:\n  db: { type: postgres, url: \"postgres://app:sekrit99@h/db\", timeout: 5x }\n",
    )]);
    assert_eq!(d.len(), 1);
    let rendered = Diagnostics { items: d }.render(false);
    assert!(!rendered.contains("sekrit99"), "{rendered}");
    assert!(
        rendered.contains("postgres://app:********@h/db"),
        "{rendered}"
    );
}

#[test]
fn includes_are_relative_sorted_and_merged() {
    let (_d, c) = ok(&[
        (
            "conf/invar.yaml",
            "include: [checks/*.yaml, extra.yaml]\nsources:\n  app: { type: sqlite, path: app.db }\ninvariants:\n  - { id: M, title: m, probe: { source: app, sql: SELECT 1 } }\n",
        ),
        (
            "conf/checks/b.yaml",
            "invariants:\n  - { id: B, title: b, probe: { source: logs, sql: SELECT 1 } }\n",
        ),
        (
            "conf/checks/a.yaml",
            "sources:\n  logs: { type: sqlite, path: ../logs.db }\ninvariants:\n  - { id: A, title: a, probe: { source: app, sql: SELECT 1 } }\n",
        ),
        ("conf/checks/ignored.yml", "this is not even looked at: ["),
        (
            "conf/extra.yaml",
            "invariants:\n  - { id: E, title: e, probe: { values: [1] } }\n",
        ),
    ]);
    let ids: Vec<&str> = c.invariants.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["M", "A", "B", "E"]);
    assert!(
        c.invariants[1].defined_at.ends_with("checks/a.yaml:4"),
        "{}",
        c.invariants[1].defined_at
    );
    let SourceKind::Sqlite(logs) = &c.sources["logs"].kind else {
        panic!()
    };
    // Resolved against the including file's directory: conf/checks/../logs.db.
    assert!(
        logs.path.ends_with("conf/checks/../logs.db"),
        "{}",
        logs.path.display()
    );
}

#[test]
fn duplicate_ids_across_files_point_at_the_second() {
    let d = errs(&[
        (
            "invar.yaml",
            "include: [more.yaml]\ninvariants:\n  - { id: X, title: a, probe: { values: [1] } }\n",
        ),
        (
            "more.yaml",
            "invariants:\n  - id: Y\n    title: y\n    probe: { values: [1] }\n  - id: X\n    title: b\n    probe: { values: [1] }\n",
        ),
    ]);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].file.ends_with("more.yaml"));
    assert_eq!((d[0].line, d[0].col), (5, 9));
    assert_eq!(d[0].message, "duplicate invariant id `X`");
    let hint = d[0].hint.as_deref().unwrap();
    assert!(hint.contains("invar.yaml:3"), "{hint}");
}

#[test]
fn duplicate_source_names_across_files() {
    let d = errs(&[
        (
            "invar.yaml",
            "include: [more.yaml]\nsources:\n  db: { type: sqlite, path: a.db }\n",
        ),
        (
            "more.yaml",
            "sources:\n  db: { type: sqlite, path: b.db }\n",
        ),
    ]);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].message, "duplicate source name `db`");
    assert!(d[0].hint.as_deref().unwrap().contains("invar.yaml:3"));
}

#[test]
fn include_problems() {
    // A glob that matches the main file itself is a cycle.
    let d = errs(&[
        ("invar.yaml", "include: ['*.yaml']\n"),
        ("other.yaml", "invariants: []\n"),
    ]);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].message.contains("includes itself"), "{}", d[0].message);

    let d = errs(&[
        (
            "invar.yaml",
            "include: [missing.yaml, 'none/*.yaml', 'checks/*.yml']\n",
        ),
        ("checks/a.yaml", ""),
    ]);
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(d[0].message.contains("`missing.yaml` does not exist"));
    assert!(d[1].message.contains("cannot read directory `none`"));
    assert!(d[2].message.contains("matches no files"));
    assert_eq!(d[2].key_path, "include[2]");

    // Included files may hold only invariants and sources.
    let d = errs(&[
        ("invar.yaml", "include: [x.yaml]\n"),
        ("x.yaml", "suites: {}\ninclude: []\nbogus: 1\n"),
    ]);
    assert_eq!(d.len(), 3, "{d:?}");
    assert_eq!(
        d[0].message,
        "`suites` is only allowed in the main config file"
    );
    assert_eq!(d[2].message, "unknown top-level key `bogus`");

    // Two patterns matching one file read it once.
    let (_d, c) = ok(&[
        ("invar.yaml", "include: [a.yaml, '*.yml']\n"),
        (
            "a.yml",
            "invariants: [{ id: A, title: a, probe: { values: [1] } }]\n",
        ),
        (
            "a.yaml",
            "invariants: [{ id: B, title: b, probe: { values: [1] } }]\n",
        ),
    ]);
    assert_eq!(c.invariants.len(), 2);
}

#[test]
fn errors_in_every_file_are_reported_together() {
    let d = errs(&[
        (
            "invar.yaml",
            "include: [a.yaml, b.yaml]\ninvariants:\n  - { id: M, titel: m, probe: { values: [1] } }\n",
        ),
        (
            "a.yaml",
            "invariants:\n  - { id: A, title: a, probe: { values: [1] }, severity: huge }\n",
        ),
        ("b.yaml", "invariants: [\n"),
    ]);
    let files: Vec<String> = d
        .iter()
        .map(|d| d.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["invar.yaml", "a.yaml", "b.yaml"], "{d:?}");
    // The syntax error at the end of b.yaml points after its last character.
    assert_eq!((d[2].line, d[2].col), (1, 14));
    assert!(d[2].source_line.is_some());
}

#[test]
fn set_check_key_counts_must_match() {
    let d = errs(&[(
        "invar.yaml",
        "invariants:\n  - id: S\n    title: s\n    same:\n      left: { values: [a], key: [value, x] }\n      right: { values: [b], key: value }\n",
    )]);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].message, "`left` has 2 key columns but `right` has 1");
    assert_eq!(d[0].key_path, "invariants[0].same.right.key");
    assert_eq!((d[0].line, d[0].col), (6, 34));
}

#[test]
fn probe_kind_rules() {
    let d = errs(&[(
        "invar.yaml",
        r#"
sources:
  log: { type: file, path: x.log }
  db:  { type: sqlite, path: x.db }
  cache: { type: redis, url: "redis://x" }
invariants:
  - { id: A, title: a, probe: { source: log, sql: SELECT 1 } }
  - { id: B, title: b, probe: { lines: { source: db } } }
  - { id: C, title: c, probe: { sql: SELECT 1 } }
  - { id: D, title: d, probe: { source: db, values: [1] } }
  - { id: E, title: e, probe: { source: cache, sql: SELECT 1 } }
  - { id: F, title: f, probe: { command: { run: "ps -e" } } }
  - { id: G, title: g, probe: { source: cache, redis: { zset: "k:{id}", list: k } } }
  - { id: H, title: h, join: { sql: x } }
  - { id: I, title: i, same: { left: { values: [1] } }, fail_when: "true" }
"#,
    )]);
    let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "source `log` is a `file` source; `sql` needs a postgres or mysql or sqlite source",
            "source `db` is a `sqlite` source; `lines` needs a file source",
            "an `sql` probe needs a `source`",
            "`source` is not used by a `values` probe",
            "source `cache` is a `redis` source; `sql` needs a postgres or mysql or sqlite source",
            "`run` must be a list (the program and its arguments), found a string",
            "a `redis` probe reads one kind; found `zset` and `list`",
            "`join` is missing required key `tables`",
            "`same` is missing required key `right`",
            "`fail_when` only applies to a `probe` or `join` check, not `same`",
        ]
    );
}

#[test]
fn cel_errors_map_into_the_file() {
    let d = errs(&[(
        "invar.yaml",
        "invariants:\n  - id: A\n    title: a\n    probe: { values: [1] }\n    fail_when: count > 0 && rowz.x\n    warn_when: \"count > 0 && rowz.x\"\n    skip_when: |\n      count > 0 &&\n        rowz.x > 1\n",
    )]);
    assert_eq!(d.len(), 3, "{d:?}");
    assert_eq!((d[0].line, d[0].col, d[0].len), (5, 29, 4));
    assert_eq!((d[1].line, d[1].col), (6, 30));
    assert_eq!((d[2].line, d[2].col), (9, 9));
    assert_eq!(d[0].hint.as_deref(), Some("did you mean `rows`?"));
}

#[test]
fn load_reads_the_process_environment() {
    let (_d, main) = setup(&[(
        "invar.yaml",
        "invariants:\n  - { id: \"${PATH:-x}\", title: t, probe: { values: [1] } }\n",
    )]);
    let c = load(&main).unwrap();
    assert_eq!(
        c.invariants[0].id,
        std::env::var("PATH").unwrap_or_else(|_| "x".into())
    );
}

#[test]
fn unreadable_main_file() {
    let d = load_with_env(Path::new("/nonexistent/invar.yaml"), &env).unwrap_err();
    assert_eq!(d.len(), 1);
    assert_eq!(
        d.items[0].message,
        "cannot read `/nonexistent/invar.yaml`: no such file or directory"
    );
    assert!(
        d.render(false).contains("--> /nonexistent/invar.yaml:1:1"),
        "{}",
        d.render(false)
    );
}

#[test]
fn redis_http_join_and_since_load() {
    let (_d, c) = ok(&[(
        "invar.yaml",
        r#"
sources:
  cache: { type: redis, url: "redis://:hunter22@127.0.0.1:6379/0", max_keys: 500 }
  api:   { type: http, base_url: "https://api.example.com", timeout: 3s,
           headers: { Authorization: "Bearer tok-123" } }
  app:   { type: postgres, url: "${APP_DATABASE_URL}" }
  log:   { type: file, path: x.log }
invariants:
  - id: S-03
    title: every slot expires
    probe: { source: cache, redis: { ttl: "agent:slot:{agent}:{execution}", max_keys: 10 } }
    every_row: r.ttl > 0
  - id: API
    title: sweep
    probe: { source: api, http: { paths: [/a, /b], method: post, body: "{}", timeout: 1s,
             headers: { X-Key: k }, follow_redirects: true } }
    every_row: r.status == 200
  - id: S-02
    title: overbooking
    join:
      tables:
        slots:  { source: cache, redis: { zset: "agent:slots:{agent}" } }
        agents: { source: app, sql: "SELECT name, max_parallel_tasks FROM agents" }
      sql: SELECT 1
    fail_when: count > 0
  - id: LOG
    title: fresh
    probe: { lines: { source: log, match: FAIL, since: 15m } }
"#,
    )]);
    let SourceKind::Redis(r) = &c.sources["cache"].kind else {
        panic!()
    };
    assert_eq!(r.max_keys, 500);
    assert!(!format!("{r:?}").contains("hunter22"));
    let SourceKind::Http(h) = &c.sources["api"].kind else {
        panic!()
    };
    assert_eq!(h.timeout, Duration::from_secs(3));
    assert!(!format!("{h:?}").contains("tok-123"));
    let Check::Probe(p) = &c.invariants[0].check else {
        panic!()
    };
    let Probe::Redis(rp) = &p.probe else { panic!() };
    assert_eq!(
        (rp.kind, rp.max_keys),
        (invar_core::RedisKind::Ttl, Some(10))
    );
    let Check::Probe(p) = &c.invariants[1].check else {
        panic!()
    };
    let Probe::Http(hp) = &p.probe else { panic!() };
    assert_eq!(hp.method, "POST");
    assert_eq!(hp.paths, ["/a", "/b"]);
    assert!(hp.follow_redirects);
    assert!(!format!("{:?}", p.probe).contains("\"k\""));
    let Check::Join(j) = &c.invariants[2].check else {
        panic!()
    };
    assert_eq!(j.tables.len(), 2);
    assert_eq!(c.invariants[2].check.sources(), ["cache", "app"]);
    assert!(j.fail_when.is_some());
    let Check::Probe(p) = &c.invariants[3].check else {
        panic!()
    };
    let Probe::Lines(l) = &p.probe else { panic!() };
    assert_eq!(l.since, Some(Duration::from_secs(900)));
}

const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIGHfake\n-----END PRIVATE KEY-----\n";

#[test]
fn redis_tls_loads_with_paths_relative_to_the_config_file() {
    let (d, c) = ok(&[
        (
            "conf/invar.yaml",
            r#"
sources:
  mtls:  { type: redis, url: "rediss://invar:hunter22@redis.internal:6380/0",
           tls: { ca_file: certs/ca.pem, cert_file: certs/client.pem, key_file: certs/client.key } }
  ca:    { type: redis, url: "rediss://:hunter22@redis.internal:6380/0", tls: { ca_file: certs/ca.pem } }
  roots: { type: redis, url: "rediss://redis.example.com:6380" }
  acl:   { type: redis, url: "redis://invar:hunter22@127.0.0.1:6379/2" }
"#,
        ),
        ("conf/certs/ca.pem", CERT_PEM),
        ("conf/certs/client.pem", CERT_PEM),
        // An RSA key in PKCS#1 form is a private key too.
        (
            "conf/certs/client.key",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEfake\n-----END RSA PRIVATE KEY-----\n",
        ),
    ]);
    let certs = d.path().join("conf/certs");
    let redis = |name: &str| match &c.sources[name].kind {
        SourceKind::Redis(r) => r.clone(),
        other => panic!("{other:?}"),
    };
    let mtls = redis("mtls");
    assert_eq!(
        mtls.tls,
        Some(invar_core::RedisTls {
            ca_file: Some(certs.join("ca.pem")),
            client: Some(invar_core::ClientCert {
                cert_file: certs.join("client.pem"),
                key_file: certs.join("client.key"),
            }),
        })
    );
    assert!(!format!("{mtls:?}").contains("hunter22"));
    let ca = redis("ca").tls.unwrap();
    assert_eq!((ca.ca_file, ca.client), (Some(certs.join("ca.pem")), None));
    // `rediss://` without `tls`: the webpki roots, no client certificate.
    assert_eq!(redis("roots").tls, None);
    assert_eq!(
        redis("acl").url.expose(),
        "redis://invar:hunter22@127.0.0.1:6379/2"
    );
}

/// Every mistake of a `tls` block (and of a Redis URL's scheme) is an error at its own
/// file:line:col, naming the key and the file; no message shows a URL's password.
#[test]
fn redis_tls_mistakes_are_positioned_and_name_the_file() {
    let (dir, main) = setup(&[
        (
            "invar.yaml",
            r#"sources:
  plain:    { type: redis, url: "redis://u:pw-one@h:6379/0", tls: { ca_file: ca.pem } }
  nokey:    { type: redis, url: "rediss://h:6380", tls: { cert_file: client.pem } }
  nocert:   { type: redis, url: "rediss://h:6380", tls: { key_file: client.key } }
  missing:  { type: redis, url: "rediss://h:6380", tls: { ca_file: certs/nope.pem } }
  notpem:   { type: redis, url: "rediss://h:6380", tls: { ca_file: notes.txt } }
  notakey:  { type: redis, url: "rediss://h:6380", tls: { cert_file: client.pem, key_file: ca.pem } }
  dir:      { type: redis, url: "rediss://h:6380", tls: { ca_file: certs } }
  crypt:    { type: redis, url: "rediss://h:6380", tls: { cert_file: client.pem, key_file: enc.key } }
  typo:     { type: redis, url: "rediss://h:6380", tls: { ca_flie: ca.pem } }
  notmap:   { type: redis, url: "rediss://h:6380", tls: ca.pem }
  sentinel: { type: redis, url: "redis+sentinel://:pw-two@h:26379/mymaster" }
  insecure: { type: redis, url: "rediss://:pw-three@h:6380/#insecure" }
  scheme:   { type: redis, url: "unix://:pw-four@/run/redis.sock" }
"#,
        ),
        ("ca.pem", CERT_PEM),
        ("client.pem", CERT_PEM),
        ("client.key", KEY_PEM),
        ("notes.txt", "not a certificate\n"),
        (
            "enc.key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFfake\n-----END ENCRYPTED PRIVATE KEY-----\n",
        ),
        ("certs/readme", "a directory\n"),
    ]);
    let d = match load_with_env(&main, &env) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(d) => d,
    };
    let rendered = d.render(false);
    for pw in ["pw-one", "pw-two", "pw-three", "pw-four"] {
        assert!(!rendered.contains(pw), "`{pw}` leaked:\n{rendered}");
    }
    let got: Vec<(usize, usize, &str, &str)> = d
        .items
        .iter()
        .map(|d| (d.line, d.col, d.key_path.as_str(), d.message.as_str()))
        .collect();
    let abs = |p: &str| dir.path().join(p).display().to_string();
    let expected: Vec<(usize, usize, &str, String)> = vec![
        (
            2,
            62,
            "sources.plain.tls",
            "`tls` needs a `rediss://` URL: this source's `url` is plain `redis://`".into(),
        ),
        (
            3,
            59,
            "sources.nokey.tls.cert_file",
            "`cert_file` needs `key_file`: a client certificate and its private key go together"
                .into(),
        ),
        (
            4,
            59,
            "sources.nocert.tls.key_file",
            "`key_file` needs `cert_file`: a client certificate and its private key go together"
                .into(),
        ),
        (
            5,
            68,
            "sources.missing.tls.ca_file",
            format!(
                "cannot read `ca_file` `certs/nope.pem` ({}): No such file or directory (os error 2)",
                abs("certs/nope.pem")
            ),
        ),
        (
            6,
            68,
            "sources.notpem.tls.ca_file",
            format!(
                "`ca_file` `notes.txt` ({}) holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                abs("notes.txt")
            ),
        ),
        (
            7,
            92,
            "sources.notakey.tls.key_file",
            format!(
                "`key_file` `ca.pem` ({}) holds no PEM private key (`-----BEGIN PRIVATE KEY-----`)",
                abs("ca.pem")
            ),
        ),
        (
            8,
            68,
            "sources.dir.tls.ca_file",
            format!(
                "cannot read `ca_file` `certs` ({}): not a regular file",
                abs("certs")
            ),
        ),
        (
            9,
            92,
            "sources.crypt.tls.key_file",
            format!(
                "`key_file` `enc.key` ({}) holds an encrypted private key, which cannot be used: \
                 decrypt it first (`openssl pkey -in key.pem -out key-plain.pem`)",
                abs("enc.key")
            ),
        ),
        (
            10,
            59,
            "sources.typo.tls.ca_flie",
            "unknown key `ca_flie`".into(),
        ),
        (
            11,
            57,
            "sources.notmap.tls",
            "`tls` must be a map, found a string".into(),
        ),
        (
            12,
            33,
            "sources.sentinel.url",
            "Redis Sentinel (`redis+sentinel://`) is not supported".into(),
        ),
        (
            13,
            33,
            "sources.insecure.url",
            "`#insecure` (TLS without verifying the server's certificate) is not supported".into(),
        ),
        (
            14,
            33,
            "sources.scheme.url",
            "a `redis` source's `url` must start with `redis://` or `rediss://` (TLS)".into(),
        ),
    ];
    let expected: Vec<(usize, usize, &str, &str)> = expected
        .iter()
        .map(|(l, c, p, m)| (*l, *c, *p, m.as_str()))
        .collect();
    assert_eq!(got, expected, "{rendered}");
    // Each is rendered at file:line:col; a relative path's hint names the directory.
    assert!(rendered.contains("invar.yaml:5:68"), "{rendered}");
    let missing = &d.items[3];
    assert!(
        missing
            .hint
            .as_deref()
            .is_some_and(|h| h.contains(&dir.path().display().to_string())),
        "{missing:?}"
    );
    // The sentinel hint says what to do instead.
    assert!(
        d.items[10]
            .hint
            .as_deref()
            .is_some_and(|h| h.contains("current primary")),
        "{:?}",
        d.items[10]
    );
}

#[test]
fn redis_http_join_mistakes_are_positioned() {
    let d = errs(&[(
        "invar.yaml",
        r#"
sources:
  cache: { type: redis, url: "http://x", db: 1 }
  api:   { type: http, base_url: "api.example.com", headers: { "Bad Name": x } }
invariants:
  - { id: A, title: a, probe: { source: cache, redis: { zset: "k:{a", max_key: 1 } } }
  - { id: B, title: b, probe: { source: cache, redis: { hash: "k:{key}" } } }
  - { id: C, title: c, probe: { source: api, http: { path: healthz, method: FETCH } } }
  - { id: D, title: d, probe: { http: { paths: [] } } }
  - { id: E, title: e, join: { tables: { "a-b": { values: [1] } }, sql: "" } }
  - { id: F, title: f, probe: { lines: { path: x, since: soon } } }
"#,
    )]);
    let got: Vec<(&str, &str)> = d
        .iter()
        .map(|d| (d.key_path.as_str(), d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "sources.cache.url",
                "a `redis` source's `url` must start with `redis://` or `rediss://` (TLS)"
            ),
            ("sources.cache.db", "unknown key `db`"),
            (
                "sources.api.base_url",
                "`base_url` must start with `http://` or `https://`"
            ),
            (
                "sources.api.headers.Bad Name",
                "`Bad Name` is not a valid header name"
            ),
            ("invariants[0].probe.redis.zset", "unclosed `{a` in `k:{a`"),
            ("invariants[0].probe.redis.max_key", "unknown key `max_key`"),
            (
                "invariants[1].probe.redis.hash",
                "capture `{key}` has the name of a column of `hash`"
            ),
            ("invariants[2].probe.http.path", "`healthz` is not a path"),
            (
                "invariants[2].probe.http.method",
                "unknown HTTP method `FETCH`"
            ),
            ("invariants[3].probe", "a `http` probe needs a `source`"),
            ("invariants[3].probe.http.paths", "`paths` is empty"),
            (
                "invariants[4].join.tables.a-b",
                "`a-b` is not a usable table name"
            ),
            ("invariants[4].join.sql", "`sql` is empty"),
            (
                "invariants[5].probe.lines.since",
                "invalid duration `soon` for `since`"
            ),
        ],
        "{d:#?}"
    );
    // The max_keys hint names the allowed keys.
    assert!(d[5].hint.as_deref().unwrap().contains("max_keys"));
}

#[test]
fn transitions_parse_with_positioned_errors() {
    let (_d, c) = ok(&[(
        "invar.yaml",
        "invariants:\n  - id: E-02\n    title: t\n    transitions:\n      probe: { values: [a] }\n      key: [id, agent]\n      state: status\n      allowed:\n        queued: [running]\n        success: []\n        failed:\n      remember: 24h\n",
    )]);
    let Check::Transitions(t) = &c.invariants[0].check else {
        panic!("{:?}", c.invariants[0].check)
    };
    assert_eq!(t.key, ["id", "agent"]);
    assert_eq!(t.state, "status");
    assert_eq!(t.allowed["queued"], ["running"]);
    assert!(t.allowed["success"].is_empty() && t.allowed["failed"].is_empty());
    assert_eq!(t.remember, std::time::Duration::from_secs(86_400));
    assert!(t.allows("queued", "running") && !t.allows("success", "running"));

    let e = errs(&[(
        "invar.yaml",
        "invariants:\n  - id: E-02\n    title: t\n    transitions:\n      probe: { values: [a] }\n      key: id\n      allowed:\n        queued: running\n      remember: 0s\n      fail_when: \"true\"\n",
    )]);
    let at: Vec<(usize, &str)> = e.iter().map(|d| (d.line, d.key_path.as_str())).collect();
    assert!(at.contains(&(5, "invariants[0].transitions")), "{at:?}"); // no `state`
    assert!(
        at.contains(&(8, "invariants[0].transitions.allowed.queued")),
        "{at:?}"
    );
    assert!(
        at.contains(&(9, "invariants[0].transitions.remember")),
        "{at:?}"
    );
    assert!(
        at.contains(&(10, "invariants[0].transitions.fail_when")),
        "{at:?}"
    );
}

/// The 79 panics of mutated examples (`remember: 18446744073709551616s`): every number in the
/// config is range-checked with a positioned error stating the allowed range. One case per
/// kind of number: (field, config, line, message fragment).
#[test]
fn every_number_is_range_checked_with_its_position() {
    const HUGE_S: &str = "18446744073709551616s";
    let inv = |extra: &str| {
        format!(
            "sources:\n  db: {{ type: sqlite, path: a.db }}\ninvariants:\n  - id: A\n    title: a\n{extra}"
        )
    };
    let cases: Vec<(&str, String, usize, &str)> = vec![
        (
            "timeout (invariant)",
            inv(&format!("    timeout: {HUGE_S}\n    probe: {{ values: [1] }}\n")),
            6,
            "`timeout` is too long: at most 10 years (`3650d`), found `18446744073709551616s`",
        ),
        (
            "timeout (source)",
            "sources:\n  db: { type: postgres, url: \"postgres://h/d\", timeout: 99999999999999999999s }\n"
                .to_string(),
            2,
            "`timeout` is too long: at most 10 years",
        ),
        (
            "remember",
            inv(&format!(
                "    transitions:\n      probe: {{ values: [a] }}\n      key: id\n      state: s\n      allowed: {{ a: [] }}\n      remember: {HUGE_S}\n"
            )),
            11,
            "`remember` is too long: at most 10 years",
        ),
        (
            "grace",
            inv(&format!(
                "    same:\n      left: {{ values: [1], key: a }}\n      right: {{ values: [1], key: a }}\n      grace: {HUGE_S}\n"
            )),
            9,
            "`grace` is too long",
        ),
        (
            "since",
            "sources:\n  log: { type: file, path: x.log }\ninvariants:\n  - id: A\n    title: a\n    probe: { lines: { source: log, since: 3651d } }\n"
                .to_string(),
            6,
            "`since` is too long: at most 10 years",
        ),
        (
            "budget",
            format!("suites:\n  s: {{ select: \"true\", budget: {HUGE_S} }}\n"),
            2,
            "`budget` is too long",
        ),
        (
            "overdue_after",
            "server:\n  listen: 127.0.0.1:8080\n  overdue_after: 99999999999999999999999999999999m\n"
                .to_string(),
            3,
            "`overdue_after` is too long",
        ),
        (
            "retention",
            format!("retention: {{ runs: {HUGE_S} }}\n"),
            1,
            "`runs` is too long",
        ),
        (
            "fire_after",
            inv("    fire_after: 10001\n    probe: { values: [1] }\n"),
            6,
            "`fire_after` is too large: at most 10000, found `10001`",
        ),
        (
            "resolve_after",
            inv("    resolve_after: 18446744073709551616\n    probe: { values: [1] }\n"),
            6,
            "`resolve_after` is too large: at most 10000, found `18446744073709551616`",
        ),
        (
            "max_connections",
            "sources:\n  db: { type: postgres, url: \"postgres://h/d\", max_connections: 4294967296 }\n"
                .to_string(),
            2,
            "`max_connections` is too large: at most 1000",
        ),
        (
            "max_keys (source)",
            "sources:\n  c: { type: redis, url: \"redis://127.0.0.1/0\", max_keys: 100000001 }\n"
                .to_string(),
            2,
            "`max_keys` is too large: at most 100000000",
        ),
        (
            "tail",
            "sources:\n  log: { type: file, path: x.log }\ninvariants:\n  - id: A\n    title: a\n    probe: { lines: { source: log, tail: 99999999999999999999999 } }\n"
                .to_string(),
            6,
            "`tail` is too large: at most 10000000",
        ),
        (
            "count below its minimum",
            inv("    fire_after: 0\n    probe: { values: [1] }\n"),
            6,
            "`fire_after` must be a whole number from 1 to 10000, found `0`",
        ),
        (
            "negative count",
            inv("    fire_after: -3\n    probe: { values: [1] }\n"),
            6,
            "`fire_after` must be a whole number from 1 to 10000, found `-3`",
        ),
        (
            "port",
            "server:\n  listen: 127.0.0.1:65536\n".to_string(),
            2,
            "listen",
        ),
        (
            "size literal in a condition",
            "sources:\n  db: { type: sqlite, path: a.db }\ninvariants:\n  - id: A\n    title: a\n    skip_if: source.size_bytes > 99999999999999999999999TB\n    probe: { source: db, sql: SELECT 1 }\n"
                .to_string(),
            6,
            "",
        ),
        (
            "cron field",
            "suites:\n  s: { select: \"true\", schedule: \"99999999999999999999 * * * *\" }\n"
                .to_string(),
            2,
            "",
        ),
    ];
    for (kind, yaml, line, fragment) in cases {
        let d = errs(&[("invar.yaml", &yaml)]);
        let hit = d
            .iter()
            .find(|x| x.line == line && x.message.contains(fragment));
        assert!(
            hit.is_some(),
            "{kind}: expected line {line} `{fragment}`, got {d:#?}"
        );
    }
}

/// `fail_when: "frobnicate(row.n)"` and `"row.n + 'a' && 3"` were accepted by `validate` and
/// failed only at run time: now config errors positioned at the call and at the `&&`.
#[test]
fn unknown_cel_functions_and_visible_type_errors_are_config_errors() {
    let d = errs(&[(
        "invar.yaml",
        "invariants:\n  - id: A\n    title: a\n    probe: { values: [1] }\n    fail_when: \"frobnicate(row.n)\"\n  - id: B\n    title: b\n    probe: { values: [1] }\n    fail_when: \"row.n + 'a' && 3\"\n",
    )]);
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!((d[0].line, d[0].col), (5, 27), "{d:#?}");
    assert!(
        d[0].message.starts_with("unknown function `frobnicate`"),
        "{}",
        d[0].message
    );
    assert_eq!((d[1].line, d[1].col), (9, 29), "{d:#?}"); // the `&&`
    assert_eq!(
        d[1].message,
        "`&&` needs true or false on each side, found an int"
    );
}

#[test]
fn promql_probes_load_and_their_mistakes_are_positioned() {
    let (_d, c) = ok(&[(
        "invar.yaml",
        r#"
sources:
  prom: { type: prometheus, url: "http://prom:9090", headers: { Authorization: "Bearer pq-777" } }
invariants:
  - { id: A, title: a, probe: { source: prom, promql: "up == 0" } }
  - { id: B, title: b, probe: { source: prom, promql: "up", range: 1h, step: 1m }, every_row: r.value == 1.0 }
  - { id: C, title: c, probe: { source: prom, promql: "up", range: 1h } }
"#,
    )]);
    let SourceKind::Prometheus(p) = &c.sources["prom"].kind else {
        panic!()
    };
    assert_eq!(p.timeout, Duration::from_secs(30));
    assert!(!format!("{p:?}").contains("pq-777"));
    let range = |i: usize| {
        let Check::Probe(pc) = &c.invariants[i].check else {
            panic!()
        };
        let Probe::Promql(q) = &pc.probe else {
            panic!()
        };
        q.range.map(|r| (r.range.as_secs(), r.step.as_secs()))
    };
    assert_eq!(range(0), None);
    assert_eq!(range(1), Some((3600, 60)));
    // Without `step`: about 250 points, whole seconds.
    assert_eq!(range(2), Some((3600, 14)));

    let d = errs(&[(
        "invar.yaml",
        r#"
sources:
  prom: { type: prometheus, url: "prom:9090" }
  db:   { type: sqlite, path: x.db }
invariants:
  - { id: A, title: a, probe: { source: db, promql: "up" } }
  - { id: B, title: b, probe: { promql: "up" } }
  - { id: C, title: c, probe: { source: prom2, promql: "" } }
  - { id: D, title: d, probe: { source: db, sql: SELECT 1, range: 1h } }
  - { id: E, title: e, probe: { source: prom, promql: up, step: 1m } }
  - { id: F, title: f, probe: { source: prom, promql: up, range: 30d, step: 1s } }
  - { id: G, title: g, probe: { source: prom, promql: up, range: 0s } }
"#,
    )]);
    let got: Vec<(usize, &str)> = d.iter().map(|d| (d.line, d.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (3, "`url` must start with `http://` or `https://`"),
            (
                6,
                "source `db` is a `sqlite` source; `promql` needs a prometheus source"
            ),
            (7, "a `promql` probe needs a `source`"),
            (8, "unknown source `prom2`"),
            (8, "`promql` must be a query, found an empty string"),
            (9, "`range` is only used by a `promql` probe"),
            (10, "`step` needs a `range` (an instant query has no step)"),
            (
                11,
                "`range` / `step` is 2592000 points; Prometheus allows at most 11000"
            ),
            (12, "`range` must be longer than 0s"),
        ]
    );
}

const HIST_SOURCES: &str = "sources:\n  app: { type: sqlite, path: app.db }\ninvariants:\n";

#[test]
fn history_and_anomaly_parse_into_the_model() {
    let (_d, c) = ok(&[(
        "invar.yaml",
        &format!(
            "{HIST_SOURCES}  - id: H-1\n    title: orders keep up\n    history: {{ window: 14d, min_runs: 5, same_weekday: true }}\n    probe: {{ source: app, metrics: {{ table: orders, compute: {{ n: \"count()\" }} }} }}\n    fail_when: row.n < 0.5 * hist.n.median\n    anomaly: {{ measure: n, threshold: 3.5, warn_threshold: 2.5, direction: down }}\n  - id: H-2\n    title: defaults\n    history: {{ window: 7d }}\n    probe: {{ source: app, sql: \"SELECT 1 AS x\" }}\n    fail_when: row.x > hist.x.p90\n"
        ),
    )]);
    let h = c.invariants[0].history.as_ref().unwrap();
    assert_eq!(
        (h.window.as_secs(), h.min_runs, h.same_weekday),
        (14 * 86_400, 5, true)
    );
    let Check::Probe(pc) = &c.invariants[0].check else {
        panic!()
    };
    let a = pc.anomaly.as_ref().unwrap();
    assert_eq!(
        (
            a.measure.as_str(),
            a.threshold,
            a.warn_threshold,
            a.direction
        ),
        ("n", 3.5, Some(2.5), invar_core::Direction::Down)
    );
    let h2 = c.invariants[1].history.as_ref().unwrap();
    assert_eq!((h2.min_runs, h2.same_weekday), (7, false));
}

#[test]
fn hist_mistakes_are_positioned() {
    let case = |body: &str| -> Vec<(usize, usize, String)> {
        errs(&[("invar.yaml", &format!("{HIST_SOURCES}{body}"))])
            .into_iter()
            .map(|d| (d.line, d.col, d.message))
            .collect()
    };
    // `hist` without `history:`: at the `hist` in the expression.
    let e = case(
        "  - id: H-1\n    title: t\n    probe: { source: app, sql: \"SELECT 1 AS n\" }\n    fail_when: row.n < 0.5 * hist.n.median\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!((e[0].0, e[0].1), (7, 30), "{e:?}");
    assert!(e[0].2.contains("`hist` needs `history:`"), "{e:?}");
    // An unknown statistic.
    let e = case(
        "  - id: H-1\n    title: t\n    history: { window: 14d }\n    probe: { source: app, sql: \"SELECT 1 AS n\" }\n    fail_when: row.n < hist.n.average\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].2.contains("unknown statistic `hist.n.average`"),
        "{e:?}"
    );
    assert_eq!(e[0].0, 8);
    // A measure a metrics probe does not compute.
    let e = case(
        "  - id: H-1\n    title: t\n    history: { window: 14d }\n    probe: { source: app, metrics: { table: orders, compute: { n: \"count()\" } } }\n    fail_when: row.n < hist.total.median\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].2.contains("unknown measure `hist.total`"), "{e:?}");
    // `anomaly` without `history:`; an unknown measure; thresholds out of order.
    let e = case(
        "  - id: H-1\n    title: t\n    probe: { source: app, sql: \"SELECT 1 AS n\" }\n    anomaly: { measure: n, threshold: 3.5 }\n",
    );
    assert!(
        e.iter()
            .any(|d| d.2.contains("`anomaly` needs `history:`") && d.0 == 7),
        "{e:?}"
    );
    let e = case(
        "  - id: H-1\n    title: t\n    history: { window: 14d }\n    probe: { source: app, metrics: { table: orders, compute: { n: \"count()\" } } }\n    anomaly: { measure: m, threshold: 3.5 }\n",
    );
    assert!(
        e.iter().any(|d| d.2.contains("unknown measure `m`")),
        "{e:?}"
    );
    let e = case(
        "  - id: H-1\n    title: t\n    history: { window: 14d }\n    probe: { source: app, sql: \"SELECT 1 AS n\" }\n    anomaly: { measure: n, threshold: 3.5, warn_threshold: 4 }\n",
    );
    assert!(
        e.iter().any(|d| d.2.contains("must be below `threshold`")),
        "{e:?}"
    );
    // A window of nothing, a zero min_runs, history on a set check.
    let e = case(
        "  - id: H-1\n    title: t\n    history: { window: 0s, min_runs: 0 }\n    probe: { source: app, sql: \"SELECT 1 AS n\" }\n    fail_when: row.n < hist.n.median\n",
    );
    assert!(
        e.iter()
            .any(|d| d.2.contains("`window` must be more than 0")),
        "{e:?}"
    );
    assert!(e.iter().any(|d| d.2.contains("min_runs")), "{e:?}");
    let e = case(
        "  - id: H-1\n    title: t\n    history: { window: 1d }\n    same:\n      left:  { source: app, sql: \"SELECT 1 AS k\", key: [k] }\n      right: { source: app, sql: \"SELECT 1 AS k\", key: [k] }\n",
    );
    assert!(
        e.iter()
            .any(|d| d.2.contains("`history` applies to a `probe` check")),
        "{e:?}"
    );
}
