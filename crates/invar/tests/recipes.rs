//! The recipes in `docs/recipes/` cannot drift from the language or from each other: every
//! recipe's `invar.yaml` loads (with made-up URLs in the environment), every `--suite` and
//! `--only` its scripts name exists in it, and the scheduling files say what the README
//! promises (time zones, single flight, artifacts, cost guard). Also the release hygiene of
//! the binary itself: `--version` with the commit, shell completions, the man page.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn recipes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/recipes")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The environment the recipes document; any other `${VAR}` is a config error (undocumented).
fn fake_env(name: &str) -> Option<String> {
    match name {
        "APP_DATABASE_URL" => Some("postgres://invar_ro:pw@db.internal:5432/app".into()),
        "REPORTS_DATABASE_URL" => Some("mysql://invar_ro:pw@reports.internal:3306/reports".into()),
        _ => None,
    }
}

/// Every `--flag VALUE` in `text` (ignoring `$VARIABLE` values).
fn flag_values(text: &str, flag: &str) -> Vec<String> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '"' || c == '[' || c == ']' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter(|w| w[0] == flag && !w[1].starts_with('$'))
        .map(|w| w[1].to_string())
        .collect()
}

struct Recipe {
    dir: PathBuf,
    config: invar_core::Config,
    /// Every file but invar.yaml, concatenated.
    others: String,
}

fn recipe(name: &str, files: &[&str]) -> Recipe {
    let dir = recipes_dir().join(name);
    for f in files {
        assert!(dir.join(f).is_file(), "recipe {name} has {f}");
    }
    let config =
        invar_config::load_with_env(&dir.join("invar.yaml"), &fake_env).unwrap_or_else(|d| {
            panic!(
                "recipe {name}: invar.yaml does not load:\n{}",
                d.render(false)
            )
        });
    assert!(!config.invariants.is_empty(), "{name}: no invariants");
    let others: String = files
        .iter()
        .filter(|f| **f != "invar.yaml")
        .map(|f| read(&dir.join(f)))
        .collect::<Vec<_>>()
        .join("\n");
    // Every suite and id the scripts run exists in the config.
    for suite in flag_values(&others, "--suite") {
        assert!(
            config.suite(&suite).is_some(),
            "recipe {name} runs --suite {suite}, which its invar.yaml does not define"
        );
    }
    for ids in flag_values(&others, "--only") {
        for id in ids.split(',') {
            assert!(
                config.invariant(id).is_some(),
                "recipe {name} runs --only {id}, which its invar.yaml does not define"
            );
        }
    }
    // Every invariant carries what an on-call person needs.
    for inv in &config.invariants {
        assert!(!inv.title.is_empty(), "{name}: {} has a title", inv.id);
    }
    Recipe {
        dir,
        config,
        others,
    }
}

#[test]
fn every_recipe_directory_is_tested_and_listed() {
    let tested = [
        "cron",
        "systemd",
        "github-actions",
        "container",
        "kubernetes",
    ];
    let readme = read(&recipes_dir().join("README.md"));
    for entry in std::fs::read_dir(recipes_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                tested.contains(&name.as_str()),
                "docs/recipes/{name} has no test in tests/recipes.rs"
            );
            assert!(
                readme.contains(&format!("(`{name}/`)")) || readme.contains(&format!("`{name}/`")),
                "README lists {name}"
            );
        }
    }
    assert!(
        readme.contains("--hold 5m"),
        "README explains the stability hold"
    );
}

#[test]
fn cron_recipe_converts_the_schedule_to_utc_and_warns_about_time_zones() {
    let r = recipe("cron", &["crontab.txt", "invar.yaml"]);
    let crontab = &r.others;
    assert!(crontab.contains("TIME ZONE"), "the warning is there");
    assert!(crontab.contains("Monday 04:00 JST = Sunday 19:00 UTC"));
    // The weekly line runs at 19:00 UTC on Sunday, i.e. the suite's Monday 04:00 Asia/Tokyo.
    assert!(
        crontab.lines().any(|l| l.starts_with("0 19 * * 0 ")),
        "{crontab}"
    );
    let weekly = r.config.suite("weekly").unwrap();
    assert_eq!(weekly.schedule.as_deref(), Some("0 4 * * MON"));
    assert_eq!(weekly.timezone.as_deref(), Some("Asia/Tokyo"));
    assert!(crontab.contains("flock -n"), "single flight");
    // `%` is special in crontab lines: every one in a command is escaped.
    for line in crontab
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("invar run"))
    {
        assert!(
            !line.replace("\\%", "").contains('%'),
            "unescaped % in: {line}"
        );
    }
}

#[test]
fn systemd_recipe_has_a_oneshot_service_and_a_persistent_timer_in_the_suite_zone() {
    let r = recipe(
        "systemd",
        &[
            "invar-weekly.service",
            "invar-weekly.timer",
            "env.example",
            "invar.yaml",
        ],
    );
    let service = read(&r.dir.join("invar-weekly.service"));
    let timer = read(&r.dir.join("invar-weekly.timer"));
    assert!(service.contains("Type=oneshot"));
    assert!(service.contains("EnvironmentFile=/etc/invar/env"));
    assert!(!service.contains("postgres://"), "no URL in the unit file");
    assert!(timer.contains("OnCalendar=Mon *-*-* 04:00:00 Asia/Tokyo"));
    assert!(timer.contains("Persistent=true"));
    assert!(timer.contains("Unit=invar-weekly.service"));
    let env = read(&r.dir.join("env.example"));
    assert!(env.contains("APP_DATABASE_URL="));
}

#[test]
fn github_actions_recipe_gates_on_push_sweeps_on_schedule_and_keeps_artifacts() {
    let r = recipe("github-actions", &["invariants.yml", "invar.yaml"]);
    let wf = &r.others;
    for needle in [
        "push:",
        "pull_request:",
        "schedule:",
        "workflow_dispatch:",
        "- cron: \"0 19 * * 0\"",
        "actions/upload-artifact@v4",
        "if: always()",
        "invar validate",
        "--hold $HOLD",
        "secrets.APP_DATABASE_URL",
    ] {
        assert!(wf.contains(needle), "workflow has {needle}");
    }
    // Suites chosen in the shell script exist (they are not written as --suite NAME).
    for suite in ["gate", "sweep", "weekly"] {
        assert!(wf.contains(&format!("suite={suite}")), "{suite}");
        assert!(r.config.suite(suite).is_some(), "{suite} is defined");
    }
    // No workflow input is expanded inside a script (injection).
    assert!(!wf.contains("run: echo ${{"), "inputs go through env");
    assert!(
        !wf.lines()
            .any(|l| l.contains("$GITHUB_OUTPUT") && l.contains("${{"))
    );
}

#[test]
fn container_recipe_bounds_the_boot_gate_and_guards_the_expensive_check() {
    let r = recipe("container", &["entrypoint.sh", "Dockerfile", "invar.yaml"]);
    let entry = read(&r.dir.join("entrypoint.sh"));
    assert!(entry.starts_with("#!/bin/sh"));
    assert!(
        entry.contains("timeout \"$GATE_SECONDS\" invar run"),
        "outer bound"
    );
    assert!(entry.contains("exec \"$@\""), "the app replaces the shell");
    assert!(
        entry.contains("INVAR_BOOT_GATE"),
        "a loud emergency override"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(r.dir.join("entrypoint.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "entrypoint.sh is executable");
    }
    // The cost guard: the integrity check is skipped (never passed) above 5 GB.
    let guarded = r
        .config
        .invariants
        .iter()
        .find(|i| i.id == "BOOT-03")
        .unwrap();
    assert!(
        guarded.skip_if.is_some(),
        "BOOT-03 has a skip_if cost guard"
    );
    assert!(read(&r.dir.join("invar.yaml")).contains("skip_if: source.size_bytes > 5GB"));
    let boot = r.config.suite("boot").unwrap();
    assert!(boot.budget.is_some(), "the boot suite has a budget");
}

#[test]
fn container_boot_gate_skips_the_integrity_check_on_a_large_database() {
    // The same guard, run for real: a small database is checked, a "large" one (the
    // threshold lowered to 1 byte) is skipped with the reason, and neither passes vacuously.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .create_if_missing(true);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
            sqlx::raw_sql("CREATE TABLE t (x INTEGER)")
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
        });
    let text = read(&recipes_dir().join("container/invar.yaml"))
        .replace("/data/app.db", &db.display().to_string())
        .replace(
            "/app/migrations/boot_manifest.txt",
            &dir.path().join("manifest.txt").display().to_string(),
        );
    for (threshold, outcome) in [("5GB", "pass"), ("1", "skip")] {
        let cfg = dir.path().join("invar.yaml");
        std::fs::write(
            &cfg,
            text.replace(
                "source.size_bytes > 5GB",
                &format!("source.size_bytes > {threshold}"),
            ),
        )
        .unwrap();
        let out = Command::cargo_bin("invar")
            .unwrap()
            .env("NO_COLOR", "1")
            .args(["run", "--only", "BOOT-03", "--format", "json", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["results"][0]["outcome"], outcome, "{report:#}");
        if outcome == "skip" {
            assert!(
                report["results"][0]["reason"]
                    .as_str()
                    .unwrap()
                    .contains("size_bytes"),
                "{report:#}"
            );
        }
    }
}

#[test]
fn kubernetes_recipe_runs_in_the_suite_zone_without_overlap_or_retries() {
    let r = recipe("kubernetes", &["cronjob.yaml", "invar.yaml"]);
    let cj = &r.others;
    assert!(cj.contains("kind: CronJob"));
    assert!(cj.contains("timeZone: \"Asia/Tokyo\""));
    assert!(cj.contains("schedule: \"30 3 * * *\""));
    assert!(cj.contains("concurrencyPolicy: Forbid"));
    assert!(cj.contains("backoffLimit: 0"));
    assert!(cj.contains("secretRef:"));
    assert!(!cj.contains("postgres://") && !cj.contains("mysql://"));
    let nightly = r.config.suite("nightly").unwrap();
    assert_eq!(nightly.schedule.as_deref(), Some("30 3 * * *"));
    assert_eq!(nightly.timezone.as_deref(), Some("Asia/Tokyo"));
    // The args list names the suite as separate items.
    assert!(cj.contains("\"--suite\", \"nightly\""));
}

// ---- release hygiene --------------------------------------------------------------------

fn invar_stdout(args: &[&str]) -> String {
    let out = Command::cargo_bin("invar")
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "invar {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_the_crate_version_the_commit_and_the_build_date() {
    let v = invar_stdout(&["--version"]);
    assert!(
        v.starts_with(&format!("invar {} (", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let inner = v.trim().rsplit('(').next().unwrap().trim_end_matches(')');
    let (commit, date) = inner.split_once(' ').expect("commit and date");
    // YYYY-MM-DD, a plausible calendar date.
    let parts: Vec<u32> = date.split('-').map(|p| p.parse().unwrap()).collect();
    assert!(
        date.len() == 10
            && parts.len() == 3
            && parts[0] >= 2025
            && (1..=12).contains(&parts[1])
            && (1..=31).contains(&parts[2]),
        "{v}"
    );
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{v}"
    );
    // In a git checkout (CI clones one), the commit is known.
    if Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.git")
        .exists()
    {
        assert_ne!(commit, "unknown", "{v}");
    }
}

#[test]
fn completions_and_man_page_cover_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = invar_stdout(&["completions", shell]);
        assert!(script.len() > 500, "{shell}");
        for cmd in ["run", "validate", "init", "--hold"] {
            assert!(script.contains(cmd), "{shell} completes {cmd}");
        }
    }
    let man = invar_stdout(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH invar 1"),
        "{man}"
    );
    for cmd in ["run", "validate", "init", "completions"] {
        assert!(man.contains(cmd), "man page mentions {cmd}");
    }
    let bad = Command::cargo_bin("invar")
        .unwrap()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(3));
}
