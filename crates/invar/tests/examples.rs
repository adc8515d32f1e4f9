//! Every config under `examples/` loads without a single diagnostic, the README lists every
//! file, and together the files show every source type, check kind and probe kind.
//!
//! The matches below are exhaustive on purpose: a new source type, check kind or probe kind
//! does not compile here until it is named, and then this test wants an example of it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use invar_core::{Check, Config, Probe, SourceKind};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .canonicalize()
        .expect("the examples directory")
}

/// Every `*.yaml` under `dir`, recursively, sorted.
fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// Files under a `checks/` directory are include targets: they are loaded through the main
/// file that includes them (alone they would miss the sources that file defines).
fn is_include_target(p: &Path) -> bool {
    p.parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "checks")
}

/// Provides every variable: a URL of the right scheme for URL-ish names (redis, http, prometheus, mysql,
/// postgres, by the name), `x` otherwise.
fn fake_env(name: &str) -> Option<String> {
    let upper = name.to_ascii_uppercase();
    Some(if upper.contains("URL") || upper.contains("DSN") {
        if upper.contains("REDIS") || upper.contains("CACHE") {
            "redis://:p@127.0.0.1:6379/0".to_string()
        } else if ["API", "HTTP", "BASE", "HOOK", "PROMETHEUS"]
            .iter()
            .any(|k| upper.contains(k))
        {
            "https://api.example.com".to_string()
        } else if ["MYSQL", "MARIADB", "LEGACY", "LEDGER"]
            .iter()
            .any(|k| upper.contains(k))
        {
            "mysql://u:p@127.0.0.1:3306/test".to_string()
        } else {
            "postgres://u:p@127.0.0.1:5432/test".to_string()
        }
    } else if upper.contains("TOKEN") {
        // API tokens must be at least 16 characters.
        "t".repeat(24)
    } else {
        "x".to_string()
    })
}

fn rel(p: &Path) -> String {
    p.strip_prefix(examples_dir())
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

fn load_all() -> Vec<(PathBuf, Config)> {
    let mut files = Vec::new();
    yaml_files(&examples_dir(), &mut files);
    assert!(!files.is_empty(), "no example files found");
    let mut failures = Vec::new();
    let mut loaded = Vec::new();
    for f in files.iter().filter(|f| !is_include_target(f)) {
        match invar_config::load_with_env(f, &fake_env) {
            Ok(cfg) => loaded.push((f.clone(), cfg)),
            Err(d) => failures.push(format!(
                "{} has {} diagnostics:\n{}",
                rel(f),
                d.items.len(),
                d.render(false)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    loaded
}

#[test]
fn every_example_loads_without_diagnostics() {
    for (path, cfg) in load_all() {
        assert!(
            !cfg.invariants.is_empty(),
            "{} defines no invariants",
            rel(&path)
        );
    }
}

#[test]
fn include_targets_are_loaded_through_their_parent() {
    let loaded = load_all();
    let mut all = Vec::new();
    yaml_files(&examples_dir(), &mut all);
    for target in all.iter().filter(|f| is_include_target(f)) {
        let where_defined: Vec<&str> = loaded
            .iter()
            .flat_map(|(_, c)| &c.invariants)
            .map(|i| i.defined_at.as_str())
            .collect();
        let name = target.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            where_defined
                .iter()
                .any(|d| d.contains(&format!("checks/{name}:"))),
            "{} is under checks/ but no example includes it (defined_at seen: {where_defined:?})",
            rel(target)
        );
    }
}

#[test]
fn readme_lists_every_example() {
    let readme = std::fs::read_to_string(examples_dir().join("README.md")).expect("README.md");
    let mut files = Vec::new();
    yaml_files(&examples_dir(), &mut files);
    let missing: Vec<String> = files
        .iter()
        .map(|f| rel(f))
        .filter(|r| !readme.contains(&format!("]({r})")))
        .collect();
    assert!(
        missing.is_empty(),
        "examples/README.md does not link: {missing:?}"
    );
}

fn source_kind(k: &SourceKind) -> &'static str {
    match k {
        SourceKind::Postgres(_) => "postgres",
        SourceKind::Mysql(_) => "mysql",
        SourceKind::Sqlite(_) => "sqlite",
        SourceKind::File(_) => "file",
        SourceKind::Redis(_) => "redis",
        SourceKind::Http(_) => "http",
        SourceKind::Prometheus(_) => "prometheus",
    }
}

fn check_kind(c: &Check) -> &'static str {
    match c {
        Check::Probe(_) => "probe",
        Check::Same(_) => "same",
        Check::Subset(_) => "subset",
        Check::Disjoint(_) => "disjoint",
        Check::Join(_) => "join",
        Check::Transitions(_) => "transitions",
    }
}

fn probe_kind(p: &Probe) -> &'static str {
    match p {
        Probe::Sql { .. } => "sql",
        Probe::Values(_) => "values",
        Probe::Lines(_) => "lines",
        Probe::Command(_) => "command",
        Probe::Metrics(_) => "metrics",
        Probe::Redis(_) => "redis",
        Probe::Http(_) => "http",
        Probe::Promql(_) => "promql",
    }
}

fn set(items: &[&'static str]) -> BTreeSet<&'static str> {
    items.iter().copied().collect()
}

#[test]
fn examples_cover_every_source_check_and_probe_kind() {
    let loaded = load_all();
    let mut sources = BTreeSet::new();
    let mut checks = BTreeSet::new();
    let mut probes = BTreeSet::new();
    let mut command_parse = BTreeSet::new();
    let mut redis_kinds = BTreeSet::new();
    let mut features = BTreeSet::new();
    for (_, cfg) in &loaded {
        for s in cfg.sources.values() {
            sources.insert(source_kind(&s.kind));
        }
        for inv in &cfg.invariants {
            checks.insert(check_kind(&inv.check));
            for p in inv.check.probes() {
                probes.insert(probe_kind(p));
                if let Probe::Command(c) = p {
                    command_parse.insert(format!("{:?}", c.parse));
                }
                if let Probe::Redis(r) = p {
                    redis_kinds.insert(r.kind.as_str());
                    if r.max_keys.is_some() {
                        features.insert("redis max_keys");
                    }
                }
                if let Probe::Http(h) = p {
                    if h.paths.len() > 1 {
                        features.insert("http paths");
                    }
                    if !h.headers.is_empty() {
                        features.insert("http probe headers");
                    }
                    if h.body.is_some() {
                        features.insert("http body");
                    }
                }
                if let Probe::Promql(q) = p
                    && q.range.is_some()
                {
                    features.insert("promql range");
                }
                if let Probe::Lines(l) = p
                    && l.since.is_some()
                {
                    features.insert("lines since");
                }
            }
            if inv.skip_if.is_some() {
                features.insert("skip_if");
            }
            match &inv.check {
                Check::Probe(pc) => {
                    let conds = [
                        ("skip_when", pc.skip_when.is_some()),
                        ("fail_when", pc.fail_when.is_some()),
                        ("warn_when", pc.warn_when.is_some()),
                        ("every_row", pc.every_row.is_some()),
                    ];
                    for (name, present) in conds {
                        if present {
                            features.insert(name);
                        }
                    }
                    if pc.fail_when.is_none() && pc.every_row.is_none() {
                        features.insert("default mode");
                    }
                    match pc.on_empty {
                        invar_core::OnEmpty::Fail => features.insert("on_empty: fail"),
                        invar_core::OnEmpty::Skip => features.insert("on_empty: skip"),
                        invar_core::OnEmpty::Pass => false,
                    };
                }
                Check::Same(p) | Check::Disjoint(p) => {
                    if p.grace.is_some() && (p.left.age.is_some() || p.right.age.is_some()) {
                        features.insert(if check_kind(&inv.check) == "same" {
                            "same with age + grace"
                        } else {
                            "disjoint with age + grace"
                        });
                    }
                }
                Check::Join(j) => {
                    let sources: BTreeSet<&str> =
                        j.tables.iter().filter_map(|(_, p)| p.source()).collect();
                    if sources.len() > 1 {
                        features.insert("join across sources");
                    }
                    if j.fail_when.is_none() && j.every_row.is_none() {
                        features.insert("join default mode");
                    }
                }
                Check::Transitions(t) => {
                    if t.key.len() > 1 {
                        features.insert("transitions with composite keys");
                    }
                    if t.allowed.values().any(Vec::is_empty) {
                        features.insert("transitions with terminal states");
                    }
                }
                Check::Subset(s) => {
                    if s.each.key.len() > 1 {
                        features.insert("subset with composite keys");
                    }
                    if matches!(s.each.probe, Probe::Values(_)) {
                        features.insert("subset with values");
                    }
                }
            }
        }
        if !cfg.silences.is_empty() {
            features.insert("silences");
        }
        if cfg.suites.iter().any(|s| s.schedule.is_some()) {
            features.insert("scheduled suite");
        }
        if cfg
            .suites
            .iter()
            .any(|s| s.fail_on == invar_core::FailOn::Never)
        {
            features.insert("fail_on: never");
        }
    }
    assert_eq!(
        sources,
        set(&[
            "file",
            "http",
            "mysql",
            "postgres",
            "prometheus",
            "redis",
            "sqlite"
        ]),
        "source types"
    );
    assert_eq!(
        checks,
        set(&["disjoint", "join", "probe", "same", "subset", "transitions"]),
        "check kinds"
    );
    assert_eq!(
        probes,
        set(&[
            "command", "http", "lines", "metrics", "promql", "redis", "sql", "values"
        ]),
        "probe kinds"
    );
    let all_redis: BTreeSet<&str> = invar_core::RedisKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(redis_kinds, all_redis, "redis probe kinds");
    assert_eq!(
        command_parse,
        ["Json", "Lines", "Text"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "command parse modes"
    );
    let wanted = set(&[
        "default mode",
        "skip_when",
        "fail_when",
        "warn_when",
        "every_row",
        "on_empty: fail",
        "on_empty: skip",
        "same with age + grace",
        "subset with composite keys",
        "subset with values",
        "skip_if",
        "scheduled suite",
        "fail_on: never",
        "redis max_keys",
        "http paths",
        "http probe headers",
        "http body",
        "lines since",
        "promql range",
        "silences",
        "join across sources",
        "join default mode",
        "transitions with composite keys",
        "transitions with terminal states",
    ]);
    let missing: Vec<&&str> = wanted.difference(&features).collect();
    assert!(missing.is_empty(), "no example shows: {missing:?}");
}
