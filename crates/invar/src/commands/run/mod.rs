//! `invar run` (and the run of `invar demo`): the flags checked, the config's names checked,
//! then one run — or a stability hold of many ([`hold`]) — recorded, rendered, and mapped to
//! the exit-code contract.

pub(super) mod hold;

use super::recording;
use super::{Ctx, empty_selection};
use crate::cli::{Format, RenderArgs, RunArgs};
use crate::exit::{Exit, usage};
use crate::output;
use anyhow::{Context, Result};
use invar_core::{Config, Remembered, RunReport};
use invar_sources::{Engine, RunOptions};
use invar_store::Store;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What happens to each run besides printing it.
pub struct Record {
    pub dry_run: bool,
    pub artifacts: Option<PathBuf>,
}

/// `invar run`'s flags once they are known to make sense together.
struct RunPlan {
    hold: Option<hold::Hold>,
    record: Record,
}

impl RunPlan {
    /// Checks what clap cannot (no I/O): the hold's timeout against its window, `--output`.
    fn new(args: &RunArgs) -> Result<RunPlan, String> {
        let hold = match args.hold {
            None => None,
            Some(h) => {
                let timeout = args
                    .hold_timeout
                    .unwrap_or_else(|| hold::Hold::default_timeout(h));
                if timeout < h {
                    return Err(format!(
                        "--hold-timeout ({}) must be at least --hold ({})",
                        invar_core::units::format_duration(timeout),
                        invar_core::units::format_duration(h)
                    ));
                }
                Some(hold::Hold {
                    hold: h,
                    interval: args.interval,
                    timeout,
                })
            }
        };
        check_output(args.render.output.as_deref())?;
        Ok(RunPlan {
            hold,
            record: Record {
                dry_run: args.dry_run,
                artifacts: args.artifacts.clone(),
            },
        })
    }
}

/// `--output FILE` must be writable where it is, checked before the run rather than after
/// it was recorded and alerted: its directory exists and FILE is not a directory.
pub(super) fn check_output(file: Option<&Path>) -> Result<(), String> {
    let Some(file) = file else { return Ok(()) };
    if file.is_dir() {
        return Err(format!("--output `{}` is a directory", file.display()));
    }
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!(
            "--output `{}`: the directory `{}` does not exist",
            file.display(),
            dir.display()
        ));
    }
    Ok(())
}

pub fn execute(args: &RunArgs, cx: &Ctx) -> Result<Exit> {
    let plan = match RunPlan::new(args) {
        Ok(p) => p,
        Err(e) => return Ok(usage(e)),
    };
    let Some(cfg) = cx.load() else {
        return Ok(Exit::Usage);
    };
    if !args.allow_empty
        && let Some(why) = empty_selection(&cfg, args.suite.as_deref(), &args.only)
    {
        return Ok(usage(format!(
            "no invariant selected ({why}): the run would check nothing; pass \
             --allow-empty if that is expected"
        )));
    }
    run_suite(
        cfg,
        args.suite.clone(),
        args.only.clone(),
        &args.render,
        &plan.record,
        plan.hold,
        cx,
    )
}

/// The suite's name to run, once `suite` and every id of `only` are known to the config.
fn check_names(cfg: &Config, suite: Option<String>, only: &[String]) -> Result<String, String> {
    let name = match suite {
        Some(s) if cfg.suite(&s).is_none() => {
            let known: Vec<String> = cfg.suites.iter().map(|s| format!("`{}`", s.name)).collect();
            return Err(format!(
                "unknown suite `{s}`: expected one of {}",
                known.join(", ")
            ));
        }
        Some(s) => s,
        None => "all".into(),
    };
    let unknown: Vec<String> = only
        .iter()
        .filter(|id| cfg.invariant(id).is_none())
        .map(|id| format!("`{id}`"))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "unknown invariant ids in --only: {}",
            unknown.join(", ")
        ));
    }
    Ok(name)
}

/// Runs `suite` (every invariant when None) once, or under a hold; prints the report.
pub fn run_suite(
    cfg: Config,
    suite: Option<String>,
    only: Vec<String>,
    render: &RenderArgs,
    record: &Record,
    hold: Option<hold::Hold>,
    cx: &Ctx,
) -> Result<Exit> {
    let suite = match check_names(&cfg, suite, &only) {
        Ok(s) => s,
        Err(e) => return Ok(usage(e)),
    };
    let mut session = Session::open(Arc::new(cfg), record, cx)?;
    let mut opts = RunOptions {
        suite,
        only,
        trigger: invar_core::Trigger::Cli,
        ..RunOptions::default()
    };
    let report = match hold {
        None => {
            let progress = output::Progress::start();
            opts.progress = Some(progress.callback());
            let (mut report, remembered) = session.evaluate(&mut opts)?;
            progress.finish();
            session.keep(&mut report, remembered)?;
            report
        }
        Some(h) => hold::run(&mut session, &mut opts, h)?,
    };
    print_report(&report, render)?;
    Ok(session.exit(&report))
}

fn print_report(report: &RunReport, render: &RenderArgs) -> Result<()> {
    let to_terminal = render.output.is_none() && std::io::stdout().is_terminal();
    let color = to_terminal && std::env::var_os("NO_COLOR").is_none();
    let text = output::render(report, render.format, color)?;
    match &render.output {
        Some(file) => {
            std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
            if render.format != Format::Table {
                eprint!("{}", output::summary_line(report, super::stderr_color()));
            }
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// One `invar run` process: the engine, the store its runs are recorded in, and whether
/// reading memory or recording ever failed (each turns the exit into an automation error).
struct Session<'a> {
    cx: &'a Ctx,
    cfg: Arc<Config>,
    engine: Engine,
    record: &'a Record,
    /// Where runs are recorded: None with `--dry-run`, or when the store cannot be opened.
    store: Option<Arc<dyn Store>>,
    /// Where `transitions` invariants' states are read from (also under `--dry-run`).
    memory: Option<Arc<dyn Store>>,
    memory_failed: bool,
    record_failed: bool,
}

impl<'a> Session<'a> {
    /// Opens the stores. Every run is recorded (and its alerts sent) unless `--dry-run`; a
    /// store that cannot be opened is an automation error: the report still prints, the exit
    /// code becomes 2.
    fn open(cfg: Arc<Config>, record: &'a Record, cx: &'a Ctx) -> Result<Session<'a>> {
        let store = if record.dry_run {
            None
        } else {
            cx.block_on(recording::open(&cfg))?
                .map_err(|e| eprintln!("error: {}", invar_core::error_chain(e.as_ref())))
                .ok()
        };
        // A dry run reads what earlier runs remembered (if there is a store) but writes nothing.
        let memory = if record.dry_run {
            cx.block_on(recording::open_for_memory(&cfg))?
                .unwrap_or_else(|e| {
                    eprintln!("error: {}", invar_core::error_chain(e.as_ref()));
                    None
                })
        } else {
            store.clone()
        };
        Ok(Session {
            cx,
            engine: Engine::new(cfg.clone()),
            cfg,
            record,
            record_failed: !record.dry_run && store.is_none(),
            store,
            memory,
            memory_failed: false,
        })
    }

    /// What earlier runs left that this run reads back — `transitions` states, `history:`
    /// windows, vacuity streaks — through `load` on the store; without one, nothing. On a
    /// read error, nothing either: the error is printed and the exit becomes 2.
    fn read_back<T: Default>(
        &mut self,
        load: impl AsyncFnOnce(&dyn Store, &Config) -> anyhow::Result<T>,
    ) -> Result<T> {
        let Some(s) = self.memory.clone() else {
            return Ok(T::default());
        };
        Ok(match self.cx.block_on(load(s.as_ref(), &self.cfg))? {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: {}", invar_core::error_chain(e.as_ref()));
                self.memory_failed = true;
                T::default()
            }
        })
    }

    /// One run of the engine, and the states it leaves for `transitions` invariants. The one
    /// place the CLI reads the engine's results.
    fn evaluate(
        &mut self,
        opts: &mut RunOptions,
    ) -> Result<(RunReport, HashMap<String, Vec<Remembered>>)> {
        // One instant for the window and the run, so a run never sees itself.
        let now = chrono::Utc::now();
        let suite = opts.suite.clone();
        opts.remembered = self.read_back(invar_record::load_remembered)?;
        opts.history =
            self.read_back(async |s, c| invar_record::load_history(s, c, &suite, now).await)?;
        opts.vacuous_since =
            self.read_back(async |s, c| invar_record::load_vacuity(s, c, &suite, now).await)?;
        opts.at = Some(now);
        let out = self.cx.block_on(self.engine.run(opts))?;
        Ok((out.report, out.remembered))
    }

    /// Records the run (and delivers its alerts) and writes its artifact; a failure of either
    /// is reported and makes the exit 2, the other still happens. Marks the invariants a
    /// silence holds (a dry run knows only the config's windows).
    fn keep(
        &mut self,
        report: &mut RunReport,
        remembered: HashMap<String, Vec<Remembered>>,
    ) -> Result<()> {
        if self.store.is_none() {
            let windows = invar_core::silence::active_rules(&self.cfg.silences, report.started_at);
            invar_alerts::mark_silenced(&self.cfg, report, &windows);
        }
        if let Some(store) = &self.store
            && let Err(e) = self
                .cx
                .block_on(recording::record(store, &self.cfg, report, remembered))?
        {
            eprintln!("error: {}", invar_core::error_chain(e.as_ref()));
            self.record_failed = true;
        }
        if !self.record.dry_run
            && let Some(dir) = &self.record.artifacts
            && let Err(e) = recording::write_artifact(dir, report)
        {
            eprintln!("error: {}", invar_core::error_chain(e.as_ref()));
            self.record_failed = true;
        }
        Ok(())
    }

    /// The report's exit, unless memory or recording failed: then an automation error.
    fn exit(&self, report: &RunReport) -> Exit {
        let exit = Exit::of_report(report);
        let automation = Exit::Automation;
        if self.memory_failed && exit != automation {
            eprintln!(
                "exit {}: the states `transitions` invariants remember could not be read",
                automation.code()
            );
            return automation;
        }
        if self.record_failed && exit != automation {
            eprintln!(
                "exit {}: the run was evaluated but could not be recorded",
                automation.code()
            );
            return automation;
        }
        exit
    }
}

#[cfg(test)]
mod tests;
