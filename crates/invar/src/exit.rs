//! The exit-code contract of every one-shot command, as a type: the numbers live here only.

use invar_core::RunReport;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A command other than a run did what it was asked (exit 0).
    Ok,
    /// Every selected invariant held, or the suite's `fail_on` forgives what did not (exit 0).
    Held,
    /// At least one invariant failed: an assessment failure (exit 1).
    Failed,
    /// Something could not be evaluated, recorded or read: an automation error (exit 2; it
    /// takes precedence over 1).
    Automation,
    /// The configuration or the command line is invalid; nothing ran (exit 3).
    Usage,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok | Exit::Held => 0,
            Exit::Failed => 1,
            Exit::Automation => 2,
            Exit::Usage => 3,
        }
    }

    /// The exit a run report asks for. The engine sets `exit_code` by the contract (0, 1 or
    /// 2); anything else would be a bug there and is not a pass.
    pub fn of_report(report: &RunReport) -> Exit {
        match report.exit_code {
            0 => Exit::Held,
            1 => Exit::Failed,
            _ => Exit::Automation,
        }
    }

    /// Green: the run (or command) may let a pipeline go on.
    pub fn is_green(self) -> bool {
        self.code() == 0
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// Prints `error: {msg}` and gives the usage exit: for mistakes found before anything ran.
pub fn usage(msg: impl std::fmt::Display) -> Exit {
    eprintln!("error: {msg}");
    Exit::Usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        assert_eq!(Exit::Ok.code(), 0);
        assert_eq!(Exit::Held.code(), 0);
        assert_eq!(Exit::Failed.code(), 1);
        assert_eq!(Exit::Automation.code(), 2);
        assert_eq!(Exit::Usage.code(), 3);
        assert!(Exit::Held.is_green() && !Exit::Failed.is_green());
    }

    #[test]
    fn a_report_maps_to_its_exit_and_an_unknown_code_is_never_green() {
        let mut r = RunReport::new(
            "r".into(),
            "all",
            invar_core::Trigger::Cli,
            chrono::Utc::now(),
        );
        for (code, exit) in [
            (0, Exit::Held),
            (1, Exit::Failed),
            (2, Exit::Automation),
            (7, Exit::Automation),
            (-1, Exit::Automation),
        ] {
            r.exit_code = code;
            assert_eq!(Exit::of_report(&r), exit, "exit_code {code}");
        }
    }
}
