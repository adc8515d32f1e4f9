//! The canary worked example (docs/canary): its config loads, and against the real Redis and
//! Postgres the seeded data is green and each injected fault fails exactly its invariant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::Command;
use serde_json::Value as J;
use std::path::{Path, PathBuf};

fn canary_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/canary")
}

#[test]
fn the_canary_config_loads_with_every_invariant() {
    let cfg = invar_config::load(&canary_dir().join("invar.yaml")).expect("docs/canary/invar.yaml");
    let ids: Vec<&str> = cfg.invariants.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["S-01", "S-02", "S-03", "L-03", "E-02"]);
    let kinds: Vec<&str> = cfg.invariants.iter().map(|i| i.check.kind()).collect();
    assert_eq!(kinds, ["same", "join", "probe", "subset", "transitions"]);
}

fn script(name: &str, args: &[&str]) {
    let out = std::process::Command::new("bash")
        .arg(canary_dir().join(name))
        .args(args)
        .env_remove("CANARY_DATABASE_URL")
        .env_remove("CANARY_REDIS_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One `invar run` of the canary config (copied into `dir`, so its history stays there):
/// the exit code and the ids that did not pass.
fn run(dir: &Path) -> (i32, Vec<String>) {
    let out = Command::cargo_bin("invar")
        .unwrap()
        .current_dir(dir)
        .env_remove("INVAR_CONFIG")
        .env_remove("CANARY_DATABASE_URL")
        .env_remove("CANARY_REDIS_URL")
        .args(["run", "--format", "json"])
        .output()
        .unwrap();
    let report: J = serde_json::from_slice(&out.stdout).unwrap();
    let bad = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] != "pass")
        .map(|r| {
            format!(
                "{}:{}",
                r["id"].as_str().unwrap(),
                r["outcome"].as_str().unwrap()
            )
        })
        .collect();
    (out.status.code().unwrap(), bad)
}

#[test]
fn seeded_is_green_and_each_fault_fails_exactly_its_invariant() {
    let start = "scripts/ensure-services.sh";
    if !invar_testkit::server_up("PostgreSQL", "127.0.0.1:5432", start)
        || !invar_testkit::server_up("Redis", "127.0.0.1:6379", start)
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        canary_dir().join("invar.yaml"),
        dir.path().join("invar.yaml"),
    )
    .unwrap();
    for (fault, id) in [
        ("leak-slot", "S-01"),
        ("overbook", "S-02"),
        ("no-ttl", "S-03"),
        ("orphan-sharing", "L-03"),
        ("reversal", "E-02"),
    ] {
        script("seed.sh", &[]);
        let (code, bad) = run(dir.path());
        assert_eq!((code, bad), (0, vec![]), "seeded, before {fault}");
        script("inject.sh", &[fault]);
        let (code, bad) = run(dir.path());
        assert_eq!(
            (code, bad),
            (1, vec![format!("{id}:fail")]),
            "after {fault}"
        );
    }
    script("seed.sh", &[]);
    let (code, bad) = run(dir.path());
    assert_eq!((code, bad), (0, vec![]), "reset");
}
