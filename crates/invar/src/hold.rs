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
//! made-up times.

use invar_core::units::format_duration;
use std::time::Duration;

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

    /// Records a run that started at `started` and ended at `now` with `exit_code`; returns
    /// what to do next and a progress line for stderr.
    pub fn step(
        &self,
        w: &mut Window,
        started: Duration,
        now: Duration,
        exit_code: i32,
        red_detail: &str,
    ) -> (Next, String) {
        w.runs += 1;
        let n = w.runs;
        let of = format_duration(self.hold);
        let line = if exit_code == 0 {
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
            let (next, _) = h.step(&mut w, s(t), s(t), 0, "");
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
            h.step(&mut w, s(t), s(t), 0, "");
        }
        let (next, line) = h.step(&mut w, s(3), s(3), 1, ": x failed");
        assert!(
            line.contains("window restarted (had been green for 3s)"),
            "{line}"
        );
        assert_eq!(next, Next::RunAt(s(4)));
        let (_, line) = h.step(&mut w, s(4), s(4), 0, "");
        assert!(line.contains("green for 0s of 6s"), "{line}");
        let (next, _) = h.step(&mut w, s(10), s(10), 0, "");
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
        assert_eq!(h.step(&mut w, s(0), s(1), 0, "").0, Next::RunAt(s(25)));
        assert_eq!(h.step(&mut w, s(25), s(26), 0, "").0, Next::RunAt(s(50)));
        assert_eq!(h.step(&mut w, s(50), s(51), 0, "").0, Next::RunAt(s(60)));
        assert_eq!(h.step(&mut w, s(60), s(61), 0, "").0, Next::Held);
    }

    #[test]
    fn timeout_reports_even_when_the_last_run_was_green() {
        let h = Hold {
            hold: s(6),
            interval: s(1),
            timeout: s(8),
        };
        let mut w = Window::default();
        h.step(&mut w, s(0), s(0), 1, "");
        h.step(&mut w, s(5), s(5), 0, "");
        let (next, line) = h.step(&mut w, s(8), s(8), 0, "");
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
        assert_eq!(h.step(&mut w, s(0), s(3), 1, "").0, Next::RunAt(s(3)));
        assert_eq!(h.step(&mut w, s(16), s(17), 1, "").0, Next::RunAt(s(17)));
        assert_eq!(h.step(&mut w, s(17), s(18), 1, "").0, Next::TimedOut);
    }
}
