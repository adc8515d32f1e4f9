//! `invar run`'s checks before anything runs: the flags (no I/O) and the config's names.

use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn run_args(args: &[&str]) -> RunArgs {
    let argv = ["invar", "run"].iter().chain(args).copied();
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Run(a) => a,
        _ => unreachable!("parsed `run`"),
    }
}

const CONFIG: &str = r#"
suites:
  gate: { select: "'gate' in tags" }
invariants:
  - id: MIG-01
    title: The migrations are listed
    severity: critical
    tags: [gate]
    probe: { values: [001_init.sql] }
    fail_when: rows.size() == 0
"#;

fn config(dir: &Path) -> PathBuf {
    let path = dir.join("invar.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    path
}

#[test]
fn a_hold_timeout_shorter_than_the_hold_is_a_usage_error() {
    let err = RunPlan::new(&run_args(&["--hold", "10s", "--hold-timeout", "5s"]))
        .err()
        .unwrap();
    assert_eq!(err, "--hold-timeout (5s) must be at least --hold (10s)");
    let plan = RunPlan::new(&run_args(&["--hold", "10s"])).unwrap();
    let h = plan.hold.unwrap();
    assert_eq!((h.hold.as_secs(), h.timeout.as_secs()), (10, 30));
    assert!(RunPlan::new(&run_args(&[])).unwrap().hold.is_none());
}

#[test]
fn output_must_be_a_file_in_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let missing = format!("{d}/nope/report.json");
    let err = RunPlan::new(&run_args(&["--output", &missing]))
        .err()
        .unwrap();
    assert!(err.contains("does not exist"), "{err}");
    let err = RunPlan::new(&run_args(&["--output", &d])).err().unwrap();
    assert!(err.contains("is a directory"), "{err}");
    let ok = format!("{d}/report.json");
    assert!(RunPlan::new(&run_args(&["--output", &ok])).is_ok());
    // A bare file name is in the current directory, which exists.
    assert!(check_output(Some(Path::new("report.json"))).is_ok());
}

#[test]
fn unknown_suite_and_ids_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = invar_config::load(&config(dir.path())).unwrap();
    assert_eq!(check_names(&cfg, None, &[]).unwrap(), "all");
    assert_eq!(check_names(&cfg, Some("gate".into()), &[]).unwrap(), "gate");
    assert_eq!(
        check_names(&cfg, Some("nightly".into()), &[]).unwrap_err(),
        "unknown suite `nightly`: expected one of `gate`"
    );
    assert_eq!(
        check_names(&cfg, None, &["MIG-01".into(), "X".into(), "Y".into()]).unwrap_err(),
        "unknown invariant ids in --only: `X`, `Y`"
    );
}

#[test]
fn a_bad_flag_stops_the_run_before_the_store_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let cx = Ctx {
        config: config(dir.path()),
        ..Ctx::new(&Cli::try_parse_from(["invar", "validate"]).unwrap())
    };
    let missing = dir.path().join("nope/report.json");
    let args = run_args(&["--output", missing.to_str().unwrap()]);
    assert_eq!(execute(&args, &cx).unwrap(), Exit::Usage);
    assert!(
        !dir.path().join(".invar").exists(),
        "nothing ran, nothing recorded"
    );
    // The same run with a writable --output runs, records and writes the report.
    let out = dir.path().join("report.json");
    let args = run_args(&["--format", "json", "--output", out.to_str().unwrap()]);
    assert_eq!(execute(&args, &cx).unwrap(), Exit::Held);
    assert!(dir.path().join(".invar/history.db").exists());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(report["exit_code"], 0);
}
