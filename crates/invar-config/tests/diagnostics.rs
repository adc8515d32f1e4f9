//! How config mistakes are rendered: one snapshot per kind of mistake, from fixture files
//! under `tests/fixtures/errors/` (paths are relative to the crate, so snapshots are stable).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use invar_config::{Diagnostics, load_with_env};
use std::path::Path;

fn env(name: &str) -> Option<String> {
    (name == "APP_DATABASE_URL").then(|| "postgres://app:hunter22@db/app".to_string())
}

fn diagnostics(fixture: &str) -> Diagnostics {
    let path = Path::new("tests/fixtures/errors").join(fixture);
    match load_with_env(&path, &env) {
        Ok(_) => panic!("{fixture} should not load"),
        Err(d) => d,
    }
}

fn rendered(fixture: &str) -> String {
    let d = diagnostics(fixture);
    let out = d.render(false);
    assert!(!out.contains("hunter22"), "a secret leaked:\n{out}");
    assert!(!out.contains('\x1b'), "plain rendering has no colour");
    out
}

macro_rules! snapshot {
    ($name:ident) => {
        #[test]
        fn $name() {
            insta::assert_snapshot!(rendered(concat!(stringify!($name), ".yaml")));
        }
    };
}

snapshot!(unknown_key);
snapshot!(unknown_top_key);
snapshot!(missing_title);
snapshot!(bad_severity);
snapshot!(bad_duration);
snapshot!(cel_syntax);
snapshot!(cel_unknown_variable);
snapshot!(cel_block);
snapshot!(unknown_source);
snapshot!(unset_env);
snapshot!(two_check_kinds);
snapshot!(no_check_kind);
snapshot!(bad_regex);
snapshot!(duplicate_id_include);
snapshot!(yaml_syntax);
snapshot!(wrong_type);
snapshot!(unsupported_source);
snapshot!(bad_schedule);
snapshot!(duplicate_key);
snapshot!(secret_in_line);
snapshot!(three_mistakes);
snapshot!(unsupported_check_kind);
snapshot!(condition_on_set_check);

#[test]
fn three_mistakes_in_one_file_are_all_reported() {
    let d = diagnostics("three_mistakes.yaml");
    let found: Vec<(usize, usize, &str)> = d
        .items
        .iter()
        .map(|d| (d.line, d.col, d.key_path.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (2, 63, "sources.app.timeout"),
            (6, 15, "invariants[0].severity"),
            (8, 28, "invariants[0].fail_when"),
        ],
        "{}",
        d.render(false)
    );
    assert_eq!(d.len(), 3);
    assert!(d.render(false).ends_with("3 errors\n"));
}

#[test]
fn colour_only_when_asked() {
    let d = diagnostics("unknown_key.yaml");
    assert!(d.render(true).contains('\x1b'));
    assert_eq!(d.to_string(), d.render(false));
}

/// A command's output caps are range-checked with their position; in range they load.
#[test]
fn command_output_caps_are_range_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("invar.yaml");
    let write = |caps: &str| {
        std::fs::write(
            &path,
            format!(
                "invariants:\n  - id: C\n    title: t\n    severity: minor\n    probe: {{ command: {{ run: [\"true\"], {caps} }} }}\n"
            ),
        )
        .unwrap();
    };
    for (caps, want) in [
        (
            "max_output: 10",
            "`max_output` must be between 1KiB and 1GiB",
        ),
        (
            "max_output: 2GiB",
            "`max_output` must be between 1KiB and 1GiB",
        ),
        ("max_output: lots", "invalid size `lots` for `max_output`"),
        (
            "max_rows: 0",
            "`max_rows` must be a whole number from 1 to 10000000",
        ),
        (
            "max_rows: 20000000",
            "`max_rows` is too large: at most 10000000",
        ),
    ] {
        write(caps);
        let out = match load_with_env(&path, &env) {
            Ok(_) => panic!("{caps} should not load"),
            Err(d) => d.render(false),
        };
        assert!(out.contains(want), "{caps}:\n{out}");
        assert!(out.contains("invar.yaml:5:"), "{caps}: no position:\n{out}");
    }
    write("max_output: 1MiB, max_rows: 10");
    let cfg = load_with_env(&path, &env).unwrap();
    let invar_core::Check::Probe(pc) = &cfg.invariants[0].check else {
        panic!("not a probe check");
    };
    let invar_core::Probe::Command(c) = &pc.probe else {
        panic!("not a command probe");
    };
    assert_eq!((c.max_output, c.max_rows), (1024 * 1024, 10));
}
