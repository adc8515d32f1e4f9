//! Rendering a run report: table (colour on a terminal), JSON, JUnit XML, Markdown; and the
//! progress bar on stderr for runs that take longer than a second.

use crate::cli::Format;
use invar_core::{InvariantResult, Outcome, ProblemKind, RunReport};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// Violations shown under each failure in the table and Markdown outputs.
const SHOWN_VIOLATIONS: usize = 5;

pub fn render(report: &RunReport, format: Format, color: bool) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(report)? + "\n",
        Format::Table => table(report, color),
        Format::Junit => junit(report)?,
        Format::Markdown => markdown(report),
    })
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn outcome(&self, o: Outcome) -> String {
        let (label, code) = match o {
            Outcome::Pass => ("PASS ", "32"),
            Outcome::Warn => ("WARN ", "33"),
            Outcome::Fail => ("FAIL ", "1;31"),
            Outcome::Skip => ("SKIP ", "36"),
            Outcome::Error => ("ERROR", "1;35"),
        };
        self.paint(code, label)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// Failures and errors first, so the reader sees what matters without scrolling.
fn order(o: Outcome) -> u8 {
    match o {
        Outcome::Error => 0,
        Outcome::Fail => 1,
        Outcome::Warn => 2,
        Outcome::Skip => 3,
        Outcome::Pass => 4,
    }
}

fn sorted(report: &RunReport) -> Vec<&InvariantResult> {
    let mut rs: Vec<&InvariantResult> = report.results.iter().collect();
    rs.sort_by_key(|r| order(r.outcome));
    rs
}

fn table(report: &RunReport, color: bool) -> String {
    let st = Style { on: color };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} suite `{}` · {} invariants · {} ms",
        st.paint("1", "invar"),
        report.suite,
        report.results.len(),
        report.duration_ms
    );
    for s in &report.sources_unavailable {
        let what = match s.kind {
            ProblemKind::Source => format!("source `{}` unavailable", s.source),
            ProblemKind::Select => "the suite's `select` failed".to_string(),
            ProblemKind::Overdue => "the suite is overdue".to_string(),
        };
        let _ = writeln!(out, "{} {what}: {}", st.paint("1;35", "!"), s.error);
    }
    out.push('\n');
    let id_w = report
        .results
        .iter()
        .map(|r| r.id.len())
        .max()
        .unwrap_or(2)
        .min(24);
    for r in sorted(report) {
        let _ = writeln!(
            out,
            "  {}  {:<8}  {:<id_w$}  {}{}",
            st.outcome(r.outcome),
            r.severity,
            r.id,
            r.title,
            if r.vacuous {
                st.dim(" (vacuous)")
            } else {
                String::new()
            },
        );
        let pad = " ".repeat(2 + 5 + 2 + 8 + 2 + id_w + 2);
        if let Some(s) = &r.silenced {
            let _ = writeln!(out, "{pad}{}", st.paint("35", &silenced_line(s)));
        }
        if r.outcome != Outcome::Pass
            && let Some(reason) = &r.reason
        {
            let _ = writeln!(out, "{pad}{}", st.dim(reason));
        }
        if matches!(r.outcome, Outcome::Fail | Outcome::Warn) {
            for v in r.violations.iter().take(SHOWN_VIOLATIONS) {
                let _ = writeln!(out, "{pad}· {}", truncate(&v.to_string(), 160));
            }
            let more = r
                .violations_total
                .saturating_sub(SHOWN_VIOLATIONS.min(r.violations.len()) as u64);
            if more > 0 {
                let _ = writeln!(out, "{pad}… and {more} more");
            }
        }
        if matches!(r.outcome, Outcome::Fail | Outcome::Error)
            && let Some(rb) = &r.runbook
        {
            let _ = writeln!(out, "{pad}{} {}", st.paint("1", "runbook:"), rb.trim());
        }
    }
    out.push('\n');
    out.push_str(&summary_line(report, color));
    out
}

pub fn summary_line(report: &RunReport, color: bool) -> String {
    let st = Style { on: color };
    let c = &report.counts;
    let status = match report.status {
        Outcome::Pass => st.paint("1;32", "held"),
        Outcome::Warn => st.paint("1;33", "held with warnings"),
        Outcome::Fail => st.paint("1;31", "failed"),
        Outcome::Error => st.paint("1;35", "could not be fully evaluated"),
        Outcome::Skip => "skipped".into(),
    };
    format!(
        "{status}: {} pass · {} warn · {} fail · {} skip · {} error → exit {}\n",
        c.pass, c.warn, c.fail, c.skip, c.error, report.exit_code
    )
}

/// `silenced by ID until T: reason` — why an invariant's notices are held back.
pub fn silenced_line(s: &invar_core::SilencedBy) -> String {
    let mut line = format!(
        "silenced by {} until {}",
        s.id,
        s.until.format("%Y-%m-%d %H:%M UTC")
    );
    if !s.reason.is_empty() {
        line.push_str(": ");
        line.push_str(&s.reason);
    }
    line
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn violations_text(r: &InvariantResult) -> String {
    let mut s = String::new();
    for v in &r.violations {
        let _ = writeln!(s, "{v}");
    }
    let more = r.violations_total.saturating_sub(r.violations.len() as u64);
    if more > 0 {
        let _ = writeln!(s, "… and {more} more");
    }
    s
}

fn junit(report: &RunReport) -> anyhow::Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut rep = Report::new("invar");
    let mut suite = TestSuite::new(report.suite.clone());
    for r in &report.results {
        let status = match r.outcome {
            Outcome::Pass | Outcome::Warn => TestCaseStatus::success(),
            Outcome::Skip => {
                let mut s = TestCaseStatus::skipped();
                if let Some(reason) = &r.reason {
                    s.set_message(reason.clone());
                }
                s
            }
            Outcome::Fail | Outcome::Error => {
                let kind = if r.outcome == Outcome::Fail {
                    NonSuccessKind::Failure
                } else {
                    NonSuccessKind::Error
                };
                let mut s = TestCaseStatus::non_success(kind);
                s.set_message(r.reason.clone().unwrap_or_default());
                s.set_type(r.outcome.as_str());
                let mut desc = violations_text(r);
                if let Some(rb) = &r.runbook {
                    let _ = write!(desc, "runbook: {rb}");
                }
                s.set_description(desc);
                s
            }
        };
        let mut tc = TestCase::new(r.id.clone(), status);
        tc.set_classname(format!("invar.{}.{}", report.suite, r.severity));
        tc.set_time(Duration::from_millis(r.duration_ms));
        if r.outcome == Outcome::Warn {
            tc.set_system_out(format!("warn: {}", r.reason.clone().unwrap_or_default()));
        }
        tc.add_property(quick_junit::Property::new("title", r.title.clone()));
        suite.add_test_case(tc);
    }
    suite.set_time(Duration::from_millis(report.duration_ms));
    rep.add_test_suite(suite);
    Ok(rep.to_string()?)
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn markdown(report: &RunReport) -> String {
    let mut out = String::new();
    let c = &report.counts;
    let _ = writeln!(
        out,
        "# invar run `{}` — {}\n",
        report.suite,
        report.status.as_str()
    );
    let _ = writeln!(
        out,
        "Started {} · {} ms · run `{}` · exit {}\n",
        report
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        report.duration_ms,
        report.run_id,
        report.exit_code
    );
    let _ = writeln!(
        out,
        "| pass | warn | fail | skip | error |\n|---:|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} |\n",
        c.pass, c.warn, c.fail, c.skip, c.error
    );
    if !report.sources_unavailable.is_empty() {
        let _ = writeln!(out, "**Sources unavailable:**\n");
        for s in &report.sources_unavailable {
            let _ = writeln!(out, "- `{}`: {}", s.source, md_escape(&s.error));
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "| outcome | severity | id | title | detail |\n|---|---|---|---|---|"
    );
    for r in sorted(report) {
        let mut detail = r.reason.clone().unwrap_or_default();
        if let Some(s) = &r.silenced {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(&silenced_line(s));
        }
        let _ = writeln!(
            out,
            "| {}{} | {} | `{}` | {} | {} |",
            r.outcome.as_str(),
            if r.vacuous { " (vacuous)" } else { "" },
            r.severity,
            r.id,
            md_escape(&r.title),
            md_escape(&detail)
        );
    }
    for r in sorted(report)
        .into_iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail | Outcome::Error))
    {
        let _ = writeln!(
            out,
            "\n## {} `{}` — {}\n",
            r.outcome.as_str(),
            r.id,
            md_escape(&r.title)
        );
        if !r.violations.is_empty() {
            out.push_str("```\n");
            for v in r.violations.iter().take(SHOWN_VIOLATIONS) {
                let _ = writeln!(out, "{v}");
            }
            let more = r
                .violations_total
                .saturating_sub(SHOWN_VIOLATIONS.min(r.violations.len()) as u64);
            if more > 0 {
                let _ = writeln!(out, "… and {more} more");
            }
            out.push_str("```\n");
        }
        if let Some(rb) = &r.runbook {
            let _ = writeln!(out, "\n**Runbook:** {}", rb.trim());
        }
    }
    out
}

/// A progress bar on stderr, shown only on a terminal and only once a run passes one second.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn start() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(0),
            indicatif::ProgressDrawTarget::hidden(),
        );
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} invariants decided [{elapsed}] {wide_bar}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let shown = bar.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            if !shown.is_finished() {
                shown.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(120));
            }
        });
        Progress { bar: Some(bar) }
    }

    pub fn callback(&self) -> Arc<dyn Fn(usize, usize) + Send + Sync> {
        let bar = self.bar.clone();
        Arc::new(move |done, total| {
            if let Some(b) = &bar {
                b.set_length(total as u64);
                b.set_position(done as u64);
            }
        })
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
