//! `invar run --hold 5m [--interval 30s] [--hold-timeout 15m]`: the post-deploy stability
//! hold. The suite is re-run every `interval` until it has been green (exit code 0) for the
//! whole `hold` window; a red run restarts the window; the timeout ends it.
//!
//! The window opens at the start of the first green run of a streak and is met by a green run
//! that starts `hold` or more after it — so a 6 s hold takes at least 6 s, and the last run
//! lands on the window's end rather than up to one interval after it.
//!
//! When the timeout ends the hold, the result is the most recent red run — its report and its
//! exit code — because that run is why the hold was not met (a green last run that had not yet
//! covered the window must not exit 0). [`Hold::step`] is the pure decision, unit-tested with
//! made-up times; [`run`] is the loop that drives it.

use super::Session;
use crate::exit::Exit;
use anyhow::Result;
use invar_core::units::format_duration;
use invar_core::{Outcome, RunReport};
use invar_sources::RunOptions;
use std::time::{Duration, Instant};

/// Re-runs the suite until it has been green for the whole hold window, or the timeout ends
/// it; returns the report to show (the last run when held, else the last red run).
pub(super) fn run(session: &mut Session, opts: &mut RunOptions, h: Hold) -> Result<RunReport> {
    eprintln!(
        "hold: the suite must stay green for {} (a run every {}, giving up after {})",
        format_duration(h.hold),
        format_duration(h.interval),
        format_duration(h.timeout)
    );
    let start = Instant::now();
    let mut window = Window::default();
    let mut last_red: Option<RunReport> = None;
    loop {
        let started = start.elapsed();
        let (mut report, remembered) = session.evaluate(opts)?;
        session.keep(&mut report, remembered)?;
        let exit = Exit::of_report(&report);
        let (next, line) = h.step(
            &mut window,
            started,
            start.elapsed(),
            exit,
            &red_detail(&report),
        );
        eprintln!("{line}");
        match next {
            Next::Held => return Ok(report),
            Next::TimedOut => {
                return Ok(if exit.is_green() {
                    last_red.unwrap_or(report)
                } else {
                    report
                });
            }
            Next::RunAt(at) => {
                if !exit.is_green() {
                    last_red = Some(report);
                }
                std::thread::sleep(at.saturating_sub(start.elapsed()));
            }
        }
    }
}

/// `: A, B` — the ids that made a run red, the first three of them.
fn red_detail(report: &RunReport) -> String {
    let bad: Vec<&str> = report
        .results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail | Outcome::Error))
        .map(|r| r.id.as_str())
        .collect();
    match bad.len() {
        0 => String::new(),
        1..=3 => format!(": {}", bad.join(", ")),
        n => format!(": {}, … ({n} in all)", bad[..3].join(", ")),
    }
}

/// The hold's settings.
#[derive(Debug, Clone, Copy)]
pub struct Hold {
    pub hold: Duration,
    pub interval: Duration,
    pub timeout: Duration,
}

/// What to do after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Green for the whole window: done, exit 0.
    Held,
    /// The timeout ended the hold: report the last red run.
    TimedOut,
    /// Run again at this offset from the start.
    RunAt(Duration),
}

/// The hold's state between runs; offsets are from the hold's start.
#[derive(Debug, Default)]
pub struct Window {
    /// Start of the first green run of the current streak.
    pub green_since: Option<Duration>,
    pub runs: usize,
}

impl Hold {
    /// Default timeout: three windows (a red run inside the first leaves two more to recover).
    pub fn default_timeout(hold: Duration) -> Duration {
        hold * 3
    }

    /// Records a run that started at `started` and ended at `now` with `exit`; returns what
    /// to do next and a progress line for stderr.
    pub fn step(
        &self,
        w: &mut Window,
        started: Duration,
        now: Duration,
        exit: Exit,
        red_detail: &str,
    ) -> (Next, String) {
        w.runs += 1;
        let n = w.runs;
        let of = format_duration(self.hold);
        let exit_code = exit.code();
        let line = if exit.is_green() {
            let since = *w.green_since.get_or_insert(started);
            let green_for = started.saturating_sub(since);
            if green_for >= self.hold {
                return (
                    Next::Held,
                    format!(
                        "hold: run {n} green — held: green for {} of {of} ({n} runs in {})",
                        fmt(green_for),
                        fmt(now)
                    ),
                );
            }
            format!("hold: run {n} green — green for {} of {of}", fmt(green_for))
        } else {
            match w.green_since.take() {
                Some(since) => format!(
                    "hold: run {n} red (exit {exit_code}{red_detail}) — window restarted (had been green for {})",
                    fmt(started.saturating_sub(since))
                ),
                None => format!(
                    "hold: run {n} red (exit {exit_code}{red_detail}) — waiting for a green run to open the window"
                ),
            }
        };
        if now >= self.timeout {
            let green = w
                .green_since
                .map(|s| format!("green for {} of {of}", fmt(now.saturating_sub(s))))
                .unwrap_or_else(|| "still red".into());
            return (
                Next::TimedOut,
                format!(
                    "{line}\nhold: timed out after {} ({green}, {n} runs): reporting the last red run",
                    fmt(now)
                ),
            );
        }
        let mut next = (started + self.interval).max(now);
        if let Some(since) = w.green_since {
            next = next.min((since + self.hold).max(now));
        }
        (Next::RunAt(next.min(self.timeout)), line)
    }
}

/// Whole seconds under a minute read better than `1s` for 1.9 s: round to the nearest second.
fn fmt(d: Duration) -> String {
    let secs = (d.as_millis() + 500) / 1000;
    if secs == 0 {
        return "0s".into();
    }
    format_duration(Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn hold() -> Hold {
        Hold {
            hold: s(6),
            interval: s(1),
            timeout: s(18),
        }
    }

    #[test]
    fn green_throughout_holds_at_the_end_of_the_window() {
        let h = hold();
        let mut w = Window::default();
        let mut t = 0;
        loop {
            let (next, _) = h.step(&mut w, s(t), s(t), Exit::Held, "");
            match next {
                Next::Held => break,
                Next::RunAt(at) => t = at.as_secs(),
                Next::TimedOut => panic!("timed out"),
            }
        }
        assert_eq!(t, 6);
        assert_eq!(w.runs, 7);
    }

    #[test]
    fn a_red_run_restarts_the_window() {
        let h = hold();
        let mut w = Window::default();
        for t in 0..3 {
            h.step(&mut w, s(t), s(t), Exit::Held, "");
        }
        let (next, line) = h.step(&mut w, s(3), s(3), Exit::Failed, ": x failed");
        assert!(
            line.contains("window restarted (had been green for 3s)"),
            "{line}"
        );
        assert_eq!(next, Next::RunAt(s(4)));
        let (_, line) = h.step(&mut w, s(4), s(4), Exit::Held, "");
        assert!(line.contains("green for 0s of 6s"), "{line}");
        let (next, _) = h.step(&mut w, s(10), s(10), Exit::Held, "");
        assert_eq!(next, Next::Held);
    }

    #[test]
    fn the_last_run_lands_on_the_end_of_the_window() {
        let h = Hold {
            hold: s(60),
            interval: s(25),
            timeout: s(600),
        };
        let mut w = Window::default();
        assert_eq!(
            h.step(&mut w, s(0), s(1), Exit::Held, "").0,
            Next::RunAt(s(25))
        );
        assert_eq!(
            h.step(&mut w, s(25), s(26), Exit::Held, "").0,
            Next::RunAt(s(50))
        );
        assert_eq!(
            h.step(&mut w, s(50), s(51), Exit::Held, "").0,
            Next::RunAt(s(60))
        );
        assert_eq!(h.step(&mut w, s(60), s(61), Exit::Held, "").0, Next::Held);
    }

    #[test]
    fn timeout_reports_even_when_the_last_run_was_green() {
        let h = Hold {
            hold: s(6),
            interval: s(1),
            timeout: s(8),
        };
        let mut w = Window::default();
        h.step(&mut w, s(0), s(0), Exit::Failed, "");
        h.step(&mut w, s(5), s(5), Exit::Held, "");
        let (next, line) = h.step(&mut w, s(8), s(8), Exit::Held, "");
        assert_eq!(next, Next::TimedOut);
        assert!(
            line.contains("timed out after 8s (green for 3s of 6s"),
            "{line}"
        );
    }

    #[test]
    fn slow_runs_go_back_to_back_and_stop_at_the_timeout() {
        let h = hold();
        let mut w = Window::default();
        assert_eq!(
            h.step(&mut w, s(0), s(3), Exit::Failed, "").0,
            Next::RunAt(s(3))
        );
        assert_eq!(
            h.step(&mut w, s(16), s(17), Exit::Failed, "").0,
            Next::RunAt(s(17))
        );
        assert_eq!(
            h.step(&mut w, s(17), s(18), Exit::Failed, "").0,
            Next::TimedOut
        );
    }
}
