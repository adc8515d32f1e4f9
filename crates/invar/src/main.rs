//! The `invar` command line: parses arguments, loads the config, runs the engine, renders the
//! report and maps it to the exit-code contract (0 held, 1 failed, 2 automation error, 3 bad
//! config or command line). Business rules live in the library crates.

mod demo;
mod output;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use invar_sources::{Engine, RunOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "invar",
    version,
    about = "Check what must always be true about your running systems."
)]
struct Cli {
    /// The config file [default: $INVAR_CONFIG, else ./invar.yaml]
    #[arg(long, global = true, env = "INVAR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the config file and report every mistake at once (exit 0 or 3).
    Validate,
    /// Run a suite and report (exit 0 held, 1 failed, 2 automation error, 3 bad config).
    Run(RunArgs),
    /// Create a small SQLite application with seeded defects, its invar.yaml, and run it.
    Demo {
        /// Where to create `demo.db` and `invar.yaml` [default: the current directory]
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        render: RenderArgs,
    },
}

#[derive(clap::Args, Clone)]
pub struct RenderArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The suite to run [default: every invariant, as the implicit suite `all`].
    #[arg(long)]
    suite: Option<String>,
    /// Only these invariant ids (comma-separated), regardless of the suite's select.
    #[arg(long, value_delimiter = ',', value_name = "ID[,ID…]")]
    only: Vec<String>,
    /// Evaluate only: record nothing, alert nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    render: RenderArgs,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Junit,
    Markdown,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; every other command-line mistake is exit 3.
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(3),
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INVAR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match real_main(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| PathBuf::from("invar.yaml"))
}

fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Loads the config, printing every diagnostic; None means exit 3.
fn load(path: &Path) -> Option<invar_core::Config> {
    if !path.exists() {
        eprintln!(
            "error: config file `{}` not found (use --config FILE, set INVAR_CONFIG, or run `invar demo` for an example)",
            path.display()
        );
        return None;
    }
    match invar_config::load(path) {
        Ok(c) => Some(c),
        Err(d) => {
            eprint!("{}", d.render(stderr_color()));
            None
        }
    }
}

fn real_main(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Validate => {
            let path = config_path(&cli);
            let Some(cfg) = load(&path) else { return Ok(3) };
            println!(
                "{}: ok — {} sources, {} invariants, {} suites",
                path.display(),
                cfg.sources.len(),
                cfg.invariants.len(),
                cfg.suites.len()
            );
            Ok(0)
        }
        Command::Run(args) => {
            let path = config_path(&cli);
            let Some(cfg) = load(&path) else { return Ok(3) };
            run(
                cfg,
                args.suite.clone(),
                args.only.clone(),
                &args.render,
                args.dry_run,
            )
        }
        Command::Demo { dir, render } => {
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from("."));
            let path = demo::create(&dir).context("creating the demo")?;
            let Some(cfg) = load(&path) else { return Ok(3) };
            let code = run(cfg, None, vec![], render, false)?;
            demo::print_next_steps(
                &path,
                render.output.is_some() || render.format != Format::Table,
            );
            Ok(code)
        }
    }
}

fn run(
    cfg: invar_core::Config,
    suite: Option<String>,
    only: Vec<String>,
    render: &RenderArgs,
    _dry_run: bool,
) -> Result<i32> {
    // TODO(issue 4): record the run in the history store unless --dry-run.
    let suite_name = match suite {
        Some(s) => {
            if cfg.suite(&s).is_none() {
                let known: Vec<String> =
                    cfg.suites.iter().map(|s| format!("`{}`", s.name)).collect();
                eprintln!(
                    "error: unknown suite `{s}`: expected one of {}",
                    known.join(", ")
                );
                return Ok(3);
            }
            s
        }
        None => "all".into(),
    };
    let unknown: Vec<&String> = only
        .iter()
        .filter(|id| cfg.invariant(id).is_none())
        .collect();
    if !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|s| format!("`{s}`")).collect();
        eprintln!(
            "error: unknown invariant ids in --only: {}",
            list.join(", ")
        );
        return Ok(3);
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let engine = Engine::new(Arc::new(cfg));
    let progress = output::Progress::start();
    let opts = RunOptions {
        suite: suite_name,
        only,
        trigger: "cli".into(),
        progress: Some(progress.callback()),
    };
    let report = rt.block_on(async { engine.run(&opts).await });
    progress.finish();

    let to_terminal = render.output.is_none() && std::io::stdout().is_terminal();
    let color = to_terminal && std::env::var_os("NO_COLOR").is_none();
    let text = output::render(&report, render.format, color)?;
    match &render.output {
        Some(file) => {
            std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
            if render.format != Format::Table {
                eprint!("{}", output::summary_line(&report, stderr_color()));
            }
        }
        None => print!("{text}"),
    }
    Ok(report.exit_code)
}
