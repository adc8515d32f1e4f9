//! One module per command body. Each checks its arguments (conflicts, values, the config's
//! names) before any I/O it does, and answers an [`Exit`]; an `Err` is an automation error.

mod demo;
mod history;
mod init;
mod recording;
mod report;
mod run;
mod schedule;
mod series;
mod silence;
mod validate;
mod watch;

use crate::cli::{Cli, Command};
use crate::exit::Exit;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::cell::OnceCell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// What every command may use: the config path and the process's one async runtime.
pub struct Ctx {
    pub config: PathBuf,
    rt: OnceCell<tokio::runtime::Runtime>,
}

impl Ctx {
    pub fn new(cli: &Cli) -> Ctx {
        Ctx {
            config: cli
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from("invar.yaml")),
            rt: OnceCell::new(),
        }
    }

    /// The runtime, built on first use: `validate`, `schedule` and `man` never need one.
    pub fn rt(&self) -> Result<&tokio::runtime::Runtime> {
        if let Some(rt) = self.rt.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(self.rt.get_or_init(|| rt))
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> Result<F::Output> {
        Ok(self.rt()?.block_on(f))
    }

    /// Loads the config, printing every diagnostic; None means exit 3.
    pub fn load(&self) -> Option<invar_core::Config> {
        load(&self.config)
    }
}

/// Runs the command; an error that escaped it is an automation error (exit 2).
pub fn dispatch(cli: Cli) -> Exit {
    let cx = Ctx::new(&cli);
    match execute(cli.command, &cx) {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("error: {}", invar_core::error_chain(e.as_ref()));
            Exit::Automation
        }
    }
}

fn execute(command: Command, cx: &Ctx) -> Result<Exit> {
    match command {
        Command::Validate => Ok(validate::execute(cx)),
        Command::Run(args) => run::execute(&args, cx),
        Command::Watch(args) => watch::execute(&args, cx),
        Command::Demo(args) => demo::execute(&args, cx),
        Command::Init(args) => init::execute(&args, cx),
        Command::Schedule(args) => Ok(schedule::execute(&args)),
        Command::History(args) => history::history(&args, cx),
        Command::Incidents(args) => history::incidents(&args, cx),
        Command::Report(args) => report::execute(&args, cx),
        Command::Silence(cmd) => silence::execute(&cmd, cx),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "invar", &mut std::io::stdout());
            Ok(Exit::Ok)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("writing the man page")?;
            Ok(Exit::Ok)
        }
    }
}

pub fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Loads the config at `path`, printing every diagnostic; None means exit 3.
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

/// Why a run of `suite` (or every invariant) with `only` would select nothing, if it would.
/// A `select` that cannot be evaluated is left to the run, which reports it as an error.
fn empty_selection(
    cfg: &invar_core::Config,
    suite: Option<&str>,
    only: &[String],
) -> Option<String> {
    let s = match suite {
        Some(name) => cfg.suite(name)?.clone(),
        None => invar_core::Suite::all(),
    };
    match invar_sources::engine::select(cfg, &s, only) {
        Ok(sel) if sel.is_empty() => Some(match (suite, only.is_empty()) {
            (_, false) => "`--only` names no invariant of the config".to_string(),
            (Some(name), true) => format!("suite `{name}`: its `select` matches no invariant"),
            (None, true) => "the config has no invariants".to_string(),
        }),
        _ => None,
    }
}
