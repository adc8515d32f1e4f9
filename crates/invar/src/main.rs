//! The `invar` command line: parses arguments, loads the config, runs the engine, renders the
//! report and maps it to the exit-code contract (0 held, 1 failed, 2 automation error, 3 bad
//! config or command line). Business rules live in the library crates.

mod demo;
mod history;
mod hold;
mod init;
mod output;
mod schedule_cmd;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use invar_sources::{Engine, RunOptions};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `invar --version`: the crate version, the git commit it was built from and the build date
/// (`build.rs`): `invar 0.1.0 (3f2a9c1d0e4b 2026-12-02)`.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("INVAR_GIT_COMMIT"),
    " ",
    env!("INVAR_BUILD_DATE"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "invar",
    version = VERSION,
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
    /// Run suites on their schedules and serve the API, /metrics and the status page until
    /// SIGTERM (which lets running runs finish, then exits 0).
    Watch {
        /// Listen here instead of `server.listen`, e.g. `127.0.0.1:9000` (port 0: any free port).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
    },
    /// Create a small SQLite application with seeded defects, its invar.yaml, and run it.
    Demo {
        /// Where to create `demo.db` and `invar.yaml` [default: the current directory]
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        render: RenderArgs,
    },
    /// Write a starting invar.yaml: from a database's schema (--from URL), or a commented skeleton.
    Init(InitArgs),
    /// Print the next fire times of a cron schedule in a time zone (one RFC 3339 line each).
    Schedule {
        /// A 5-field cron expression, e.g. `"0 2 * * SUN"`.
        expr: String,
        /// An IANA time zone [default: UTC].
        #[arg(long, value_name = "TZ")]
        timezone: Option<String>,
        /// Start here (RFC 3339, inclusive) [default: now].
        #[arg(long, value_name = "RFC3339")]
        from: Option<String>,
        /// How many fire times.
        #[arg(long, value_name = "N", default_value_t = 10)]
        count: u32,
    },
    /// Print a shell completion script: `invar completions bash > /etc/bash_completion.d/invar`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `invar man > /usr/local/share/man/man1/invar.1`.
    Man,
    /// Recorded runs, or one invariant's results (`--invariant ID`), newest first.
    History {
        /// One invariant's results instead of whole runs.
        #[arg(long, value_name = "ID")]
        invariant: Option<String>,
        /// Only runs of this suite.
        #[arg(long)]
        suite: Option<String>,
        /// Only the last DURATION, e.g. `24h`, `7d`.
        #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
        since: Option<Duration>,
        /// At most N rows.
        #[arg(long, value_name = "N", default_value_t = 50)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Incidents (one per invariant or source while it is red), newest first.
    Incidents {
        /// Only those still open.
        #[arg(long)]
        open: bool,
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// The operator's audit over a month or a recent window: runs, outcomes, incidents,
    /// flapping, vacuous passes, skips by reason, errors by source.
    Report {
        /// A calendar month (UTC), `YYYY-MM` [default: the current month so far].
        #[arg(long, value_name = "YYYY-MM", conflicts_with = "since")]
        month: Option<String>,
        /// The last DURATION instead, e.g. `24h`.
        #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
        since: Option<Duration>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
        format: ReportFormat,
        /// Write to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Markdown,
    Json,
}

#[derive(clap::Args)]
struct InitArgs {
    /// Read the schema of this database: postgres://…, mysql://… (or mariadb://…), sqlite://PATH
    /// or sqlite:PATH. The URL is never written into the file.
    #[arg(long, value_name = "URL")]
    from: Option<String>,
    /// Where to write the config.
    #[arg(long, value_name = "FILE", default_value = "invar.yaml")]
    output: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    force: bool,
    /// The environment variable the generated source reads its URL from.
    #[arg(long, value_name = "NAME", default_value = "INVAR_DATABASE_URL")]
    url_env: String,
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
    /// Evaluate only: record nothing, alert nothing, write no artifact.
    #[arg(long)]
    dry_run: bool,
    /// Exit 0 when the selection is empty instead of 3 ("no invariant selected"): a gate that
    /// checks nothing must say so, unless that is expected.
    #[arg(long)]
    allow_empty: bool,
    /// Also write each run report to DIR/YYYY-MM-DD/<run_id>.json.
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Stability hold: re-run until the suite has been green (exit 0) for this long; a red run
    /// restarts the window (post-deploy verification). E.g. `5m`.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    hold: Option<Duration>,
    /// With --hold: time between runs.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "30s", requires = "hold")]
    interval: Duration,
    /// With --hold: give up after this long and exit as the last red run [default: 3 × hold].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, requires = "hold")]
    hold_timeout: Option<Duration>,
    #[command(flatten)]
    render: RenderArgs,
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    let d = invar_core::units::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
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
    // One-shot commands log warnings only; the watcher also logs what it runs.
    let default_filter = match cli.command {
        Command::Watch { .. } => "info,sqlx=error,hyper=warn,tower=warn",
        _ => "warn,sqlx=error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("INVAR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
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
            if cfg.invariants.is_empty() {
                eprintln!(
                    "warning: {}: no invariants: `invar run` would check nothing",
                    path.display()
                );
            }
            for suite in cfg.suites.iter().filter(|_| !cfg.invariants.is_empty()) {
                if let Some(why) = empty_selection(&cfg, Some(&suite.name), &[]) {
                    eprintln!("warning: {}: {why}", path.display());
                }
            }
            println!(
                "{}: ok — {} sources, {} invariants, {} suites",
                path.display(),
                cfg.sources.len(),
                cfg.invariants.len(),
                cfg.suites.len()
            );
            Ok(0)
        }
        Command::Watch { listen } => {
            let path = config_path(&cli);
            let Some(cfg) = load(&path) else { return Ok(3) };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let opts = invar_watch::serve::WatchOptions {
                listen: listen.clone(),
                version: VERSION.to_string(),
                clock: invar_watch::clock::Clock::from_env(),
            };
            rt.block_on(invar_watch::serve::watch(std::sync::Arc::new(cfg), opts))?;
            Ok(0)
        }
        Command::Run(args) => {
            let path = config_path(&cli);
            let hold = match args.hold {
                None => None,
                Some(h) => {
                    let timeout = args
                        .hold_timeout
                        .unwrap_or_else(|| hold::Hold::default_timeout(h));
                    if timeout < h {
                        eprintln!(
                            "error: --hold-timeout ({}) must be at least --hold ({})",
                            invar_core::units::format_duration(timeout),
                            invar_core::units::format_duration(h)
                        );
                        return Ok(3);
                    }
                    Some(hold::Hold {
                        hold: h,
                        interval: args.interval,
                        timeout,
                    })
                }
            };
            let Some(cfg) = load(&path) else { return Ok(3) };
            let record = Record {
                dry_run: args.dry_run,
                artifacts: args.artifacts.clone(),
            };
            if !args.allow_empty
                && let Some(why) = empty_selection(&cfg, args.suite.as_deref(), &args.only)
            {
                eprintln!(
                    "error: no invariant selected ({why}): the run would check nothing; pass \
                     --allow-empty if that is expected"
                );
                return Ok(3);
            }
            run(
                cfg,
                args.suite.clone(),
                args.only.clone(),
                &args.render,
                &record,
                hold,
            )
        }
        Command::Init(args) => init_command(args),
        Command::History {
            invariant,
            suite,
            since,
            limit,
            format,
        } => {
            let since = since
                .map(|d| chrono::Utc::now() - chrono::TimeDelta::from_std(d).unwrap_or_default());
            let (invariant, suite, limit) = (invariant.clone(), suite.clone(), *limit);
            let json = *format == ListFormat::Json;
            read_history(&cli, move |store| {
                Box::pin(async move {
                    history::history(store, invariant, suite, since, limit, json).await
                })
            })
        }
        Command::Incidents {
            open,
            limit,
            format,
        } => {
            let (open, limit, json) = (*open, *limit, *format == ListFormat::Json);
            read_history(&cli, move |store| {
                Box::pin(async move { history::incidents(store, open, limit, json).await })
            })
        }
        Command::Report {
            month,
            since,
            format,
            output,
        } => {
            let (from, to) = match history::range(month.as_deref(), *since) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(3);
                }
            };
            let json = *format == ReportFormat::Json;
            let output = output.clone();
            read_history(&cli, move |store| {
                let output = output.clone();
                Box::pin(async move {
                    let data = store.report(from, to).await?;
                    let text = if json {
                        serde_json::to_string_pretty(&data)? + "\n"
                    } else {
                        history::report_markdown(&data)
                    };
                    match output {
                        Some(f) => {
                            std::fs::write(&f, text)
                                .with_context(|| format!("writing {}", f.display()))?;
                            Ok(String::new())
                        }
                        None => Ok(text),
                    }
                })
            })
        }
        Command::Schedule {
            expr,
            timezone,
            from,
            count,
        } => Ok(schedule_cmd::print(
            expr,
            timezone.as_deref(),
            from.as_deref(),
            *count,
        )),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "invar", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("writing the man page")?;
            Ok(0)
        }
        Command::Demo { dir, render } => {
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from("."));
            let path = demo::create(&dir).context("creating the demo")?;
            let Some(cfg) = load(&path) else { return Ok(3) };
            let record = Record {
                dry_run: false,
                artifacts: None,
            };
            let code = run(cfg, None, vec![], render, &record, None)?;
            demo::print_next_steps(
                &path,
                render.output.is_some() || render.format != Format::Table,
            );
            Ok(code)
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

/// What happens to each run besides printing it.
struct Record {
    dry_run: bool,
    artifacts: Option<PathBuf>,
}

type HistoryFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<String>> + 'a>>;

/// Opens the config's history store and prints what `f` renders from it.
fn read_history(
    cli: &Cli,
    f: impl for<'a> FnOnce(&'a dyn invar_store::Store) -> HistoryFuture<'a>,
) -> Result<i32> {
    let path = config_path(cli);
    let Some(cfg) = load(&path) else { return Ok(3) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let text = rt.block_on(async {
        let store = history::open(&cfg).await?;
        f(store.as_ref()).await
    });
    match text {
        Ok(t) => {
            print!("{t}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(2)
        }
    }
}

fn run(
    cfg: invar_core::Config,
    suite: Option<String>,
    only: Vec<String>,
    render: &RenderArgs,
    record: &Record,
    hold: Option<hold::Hold>,
) -> Result<i32> {
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
    let cfg = Arc::new(cfg);
    let engine = Engine::new(cfg.clone());
    // Every run is recorded (and its alerts sent) unless --dry-run; a store that cannot be
    // written is an automation error: the report still prints, the exit code becomes 2.
    let store = if record.dry_run {
        None
    } else {
        match rt.block_on(history::open(&cfg)) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("error: {e:#}");
                None
            }
        }
    };
    // `transitions` invariants decide against what earlier runs remembered; a dry run reads
    // the store (if there is one) but writes nothing.
    let memory_store = if record.dry_run {
        match rt.block_on(history::open_for_memory(&cfg)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e:#}");
                None
            }
        }
    } else {
        store.clone()
    };
    let memory_failed = std::cell::Cell::new(false);
    let load_memory = || -> std::collections::HashMap<String, Vec<invar_core::Remembered>> {
        let Some(s) = &memory_store else {
            return Default::default();
        };
        match rt.block_on(history::load_remembered(s.as_ref(), &cfg)) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("error: {e:#}");
                memory_failed.set(true);
                Default::default()
            }
        }
    };
    let mut record_failed = !record.dry_run && store.is_none();
    let after_run = |out: invar_sources::RunOutcome| -> (bool, invar_core::RunReport) {
        let mut ok = true;
        let (report, remembered) = (&out.report, out.remembered);
        if let Some(store) = &store
            && let Err(e) = rt.block_on(history::record(store, &cfg, report, remembered))
        {
            eprintln!("error: {e:#}");
            ok = false;
        }
        if !record.dry_run
            && let Some(dir) = &record.artifacts
            && let Err(e) = history::write_artifact(dir, report)
        {
            eprintln!("error: {e:#}");
            ok = false;
        }
        (ok, out.report)
    };
    let mut opts = RunOptions {
        suite: suite_name,
        only,
        trigger: "cli".into(),
        progress: None,
        remembered: Default::default(),
    };
    let report = match hold {
        None => {
            let progress = output::Progress::start();
            opts.progress = Some(progress.callback());
            opts.remembered = load_memory();
            let out = rt.block_on(async { engine.run(&opts).await });
            progress.finish();
            let (ok, report) = after_run(out);
            record_failed |= !ok;
            report
        }
        Some(h) => run_hold(&rt, &engine, &mut opts, h, &load_memory, &mut |out| {
            let (ok, report) = after_run(out);
            record_failed |= !ok;
            report
        }),
    };

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
    if memory_failed.get() && report.exit_code != 2 {
        eprintln!("exit 2: the states `transitions` invariants remember could not be read");
        return Ok(2);
    }
    if record_failed && report.exit_code != 2 {
        eprintln!("exit 2: the run was evaluated but could not be recorded");
        return Ok(2);
    }
    Ok(report.exit_code)
}

/// Re-runs the suite until it has been green for the whole hold window, or the timeout ends
/// it; returns the report to show (the last run when held, else the last red run).
fn run_hold(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    opts: &mut RunOptions,
    h: hold::Hold,
    load_memory: &dyn Fn() -> std::collections::HashMap<String, Vec<invar_core::Remembered>>,
    after_run: &mut dyn FnMut(invar_sources::RunOutcome) -> invar_core::RunReport,
) -> invar_core::RunReport {
    use invar_core::Outcome;
    eprintln!(
        "hold: the suite must stay green for {} (a run every {}, giving up after {})",
        invar_core::units::format_duration(h.hold),
        invar_core::units::format_duration(h.interval),
        invar_core::units::format_duration(h.timeout)
    );
    let start = Instant::now();
    let mut window = hold::Window::default();
    let mut last_red: Option<invar_core::RunReport> = None;
    loop {
        let started = start.elapsed();
        opts.remembered = load_memory();
        let report = after_run(rt.block_on(async { engine.run(opts).await }));
        let bad: Vec<&str> = report
            .results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Fail | Outcome::Error))
            .map(|r| r.id.as_str())
            .collect();
        let detail = match bad.len() {
            0 => String::new(),
            1..=3 => format!(": {}", bad.join(", ")),
            n => format!(": {}, … ({n} in all)", bad[..3].join(", ")),
        };
        let (next, line) = h.step(
            &mut window,
            started,
            start.elapsed(),
            report.exit_code,
            &detail,
        );
        eprintln!("{line}");
        let green = report.exit_code == 0;
        match next {
            hold::Next::Held => return report,
            hold::Next::TimedOut => {
                return if green {
                    last_red.unwrap_or(report)
                } else {
                    report
                };
            }
            hold::Next::RunAt(at) => {
                if !green {
                    last_red = Some(report);
                }
                std::thread::sleep(at.saturating_sub(start.elapsed()));
            }
        }
    }
}

/// `invar init [--from URL]`: writes the starter config; never overwrites without --force.
fn init_command(args: &InitArgs) -> Result<i32> {
    let path = &args.output;
    if path.exists() && !args.force {
        eprintln!(
            "error: `{}` already exists: choose another --output FILE, or --force to overwrite it",
            path.display()
        );
        return Ok(3);
    }
    let Some(from) = &args.from else {
        write_config(path, init::SKELETON, args.force)?;
        eprintln!(
            "wrote {}: a commented skeleton (one invariant of each common kind).\n\
             Next: point `app` at your database, edit the invariants, then `invar validate` and `invar run`.\n\
             Or start from your schema: invar init --from postgres://… --output {} --force",
            path.display(),
            path.display()
        );
        return Ok(0);
    };
    let target = match init::Target::parse(from) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --from: {e}");
            return Ok(3);
        }
    };
    let var_ok = !args.url_env.is_empty()
        && args
            .url_env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !var_ok {
        eprintln!(
            "error: --url-env `{}` is not an environment variable name",
            args.url_env
        );
        return Ok(3);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let schema = match rt.block_on(target.read_schema()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: cannot read the schema of {}: {e}",
                target.redacted()
            );
            return Ok(2);
        }
    };
    let spec = init::source_spec(&target, path, &args.url_env);
    let generated = init::generate(&schema, &spec);
    write_config(path, &generated.yaml, args.force)?;

    // The file must load: check it with the URL's variable set, as a run would have it.
    let url = match &target {
        init::Target::Postgres(u) | init::Target::Mysql(u) => Some(u.clone()),
        init::Target::Sqlite(_) => None,
    };
    let env = |name: &str| {
        if name == args.url_env {
            url.clone()
        } else {
            std::env::var(name).ok()
        }
    };
    if let Err(d) = invar_config::load_with_env(path, &env) {
        eprint!("{}", d.render(stderr_color()));
        eprintln!(
            "error: `invar init` wrote a config that does not load (a bug: please report it with the schema)"
        );
        return Ok(2);
    }
    eprintln!("wrote {}: {}", path.display(), generated.summary.describe());
    let cfg = if path == Path::new("invar.yaml") {
        String::new()
    } else {
        format!(" --config {}", path.display())
    };
    eprintln!("Next:");
    if let Some(var) = &spec.url_env {
        eprintln!(
            "  export {var}='{}'   # with the real password; never in the file",
            target.redacted()
        );
    }
    eprintln!("  invar validate{cfg}");
    eprintln!("  invar run{cfg}                 # then tune or delete what is not true");
    Ok(0)
}

/// Writes `text` to `path`: a new file unless `force` (no race with a file appearing meanwhile).
fn write_config(path: &Path, text: &str, force: bool) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
