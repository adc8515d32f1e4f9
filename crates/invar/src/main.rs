//! The `invar` command line: parses arguments ([`cli`]), runs one command body
//! ([`commands`]) and maps it to the exit-code contract ([`exit`]: 0 held, 1 failed,
//! 2 automation error, 3 bad config or command line). Business rules live in the library
//! crates.

mod cli;
mod commands;
mod exit;
mod output;

use clap::Parser;
use exit::Exit;
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; every other command-line mistake is exit 3.
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Ok
                }
                _ => Exit::Usage,
            }
            .into();
        }
    };
    init_logging(
        matches!(cli.command, cli::Command::Watch(_)),
        cli.log_format,
    );
    commands::dispatch(cli).into()
}

/// Logs go to stderr. One-shot commands log warnings only; the watcher also logs what it runs.
/// `json`: one object per line (`timestamp`, `level`, `target`, `fields`), never coloured.
fn init_logging(watch: bool, format: cli::LogFormat) {
    let default_filter = if watch {
        "info,sqlx=error,hyper=warn,tower=warn"
    } else {
        "warn,sqlx=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("INVAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Json => builder.json().with_ansi(false).init(),
        cli::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
}
