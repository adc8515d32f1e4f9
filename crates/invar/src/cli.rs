//! The command line's clap types, and nothing else: what each command and flag is, with its
//! help. Checks that need more than one flag, or the config, live with the commands
//! (`commands/`), before they do any I/O.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// `invar --version`: the crate version, the git commit it was built from and the build date
/// (`build.rs`): `invar 0.1.0 (3f2a9c1d0e4b 2026-12-02)`.
pub const VERSION: &str = concat!(
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
pub struct Cli {
    /// The config file [default: $INVAR_CONFIG, else ./invar.yaml]
    #[arg(long, global = true, env = "INVAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log lines on stderr: `text` for people, `json` (one object per line) for log shippers
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "INVAR_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check the config file and report every mistake at once (exit 0 or 3).
    Validate,
    /// Run a suite and report (exit 0 held, 1 failed, 2 automation error, 3 bad config).
    Run(RunArgs),
    /// Run suites on their schedules and serve the API, /metrics and the status page until
    /// SIGTERM (which lets running runs finish, then exits 0).
    Watch(WatchArgs),
    /// Create a small SQLite application with seeded defects, its invar.yaml, and run it.
    Demo(DemoArgs),
    /// Write a starting invar.yaml: from a database's schema (--from URL), or a commented skeleton.
    Init(InitArgs),
    /// Print the next fire times of a cron schedule in a time zone (one RFC 3339 line each).
    Schedule(ScheduleArgs),
    /// Print a shell completion script: `invar completions bash > /etc/bash_completion.d/invar`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `invar man > /usr/local/share/man/man1/invar.1`.
    Man,
    /// Recorded runs, or one invariant's results (`--invariant ID`), newest first.
    History(HistoryArgs),
    /// Incidents (one per invariant or source while it is red), newest first.
    Incidents(IncidentsArgs),
    /// The operator's audit over a month or a recent window: runs, outcomes, incidents,
    /// flapping, vacuous passes, skips by reason, errors by source.
    Report(ReportArgs),
    /// One-off silences in the history store (shared by replicas): while one matches an
    /// invariant its firing notice waits; `add` prints the new silence's id.
    #[command(subcommand)]
    Silence(SilenceCommand),
}

#[derive(Subcommand)]
pub enum SilenceCommand {
    /// Silence what `--match` selects, from now (or `--starts`) for `--for`.
    Add(SilenceAddArgs),
    /// Silences active now (`--all`: every one, expired ones included).
    List(SilenceListArgs),
    /// End a silence now.
    Expire {
        /// The id `add` printed.
        id: String,
    },
}

#[derive(clap::Args)]
pub struct SilenceAddArgs {
    /// CEL over `id`, `severity`, `tags` and `suite`, e.g. `"id == 'ORD-01'"`.
    #[arg(long = "match", value_name = "CEL")]
    pub matcher: String,
    /// How long, e.g. `4h`.
    #[arg(long = "for", value_name = "DURATION", value_parser = duration_arg)]
    pub duration: Duration,
    /// Why (shown with the silence).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Start here (RFC 3339) [default: now].
    #[arg(long, value_name = "RFC3339")]
    pub starts: Option<String>,
    /// Who made it [default: $USER].
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

#[derive(clap::Args)]
pub struct SilenceListArgs {
    /// Every silence, expired and future ones too.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

// The argument structs carry no doc comment of their own: a command's help is its variant's.

#[derive(clap::Args)]
pub struct WatchArgs {
    /// Listen here instead of `server.listen`, e.g. `127.0.0.1:9000` (port 0: any free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where to create `demo.db` and `invar.yaml` [default: the current directory]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub render: RenderArgs,
}

#[derive(clap::Args)]
pub struct ScheduleArgs {
    /// A 5-field cron expression, e.g. `"0 2 * * SUN"`.
    pub expr: String,
    /// An IANA time zone [default: UTC].
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// Start here (RFC 3339, inclusive) [default: now].
    #[arg(long, value_name = "RFC3339")]
    pub from: Option<String>,
    /// How many fire times.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub count: u32,
}

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// One invariant's results instead of whole runs.
    #[arg(long, value_name = "ID")]
    pub invariant: Option<String>,
    /// Only runs of this suite.
    #[arg(long)]
    pub suite: Option<String>,
    /// Only the last DURATION, e.g. `24h`, `7d`.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub since: Option<Duration>,
    /// At most N rows (the newest).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u32,
    /// With `--invariant`, `table` adds one line per numeric measure (a sparkline on a
    /// terminal), `json` adds the series, `csv` is one row per result with a column per
    /// measure, oldest first.
    #[arg(long, value_enum, default_value_t = HistoryFormat::Table)]
    pub format: HistoryFormat,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum HistoryFormat {
    Table,
    Json,
    Csv,
}

#[derive(clap::Args)]
pub struct IncidentsArgs {
    /// Only those still open.
    #[arg(long)]
    pub open: bool,
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: u32,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A calendar month (UTC), `YYYY-MM` [default: the current month so far].
    #[arg(long, value_name = "YYYY-MM", conflicts_with = "since")]
    pub month: Option<String>,
    /// The last DURATION instead, e.g. `24h`.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub since: Option<Duration>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
    pub format: ReportFormat,
    /// Write to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Json,
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// Read the schema of this database: postgres://…, mysql://… (or mariadb://…), sqlite://PATH
    /// or sqlite:PATH. The URL is never written into the file.
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// Where to write the config.
    #[arg(long, value_name = "FILE", default_value = "invar.yaml")]
    pub output: PathBuf,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// The environment variable the generated source reads its URL from.
    #[arg(long, value_name = "NAME", default_value = "INVAR_DATABASE_URL")]
    pub url_env: String,
}

#[derive(clap::Args, Clone)]
pub struct RenderArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The suite to run [default: every invariant, as the implicit suite `all`].
    #[arg(long)]
    pub suite: Option<String>,
    /// Only these invariant ids (comma-separated), regardless of the suite's select.
    #[arg(long, value_delimiter = ',', value_name = "ID[,ID…]")]
    pub only: Vec<String>,
    /// Evaluate only: record nothing, alert nothing, write no artifact.
    #[arg(long)]
    pub dry_run: bool,
    /// Exit 0 when the selection is empty instead of 3 ("no invariant selected"): a gate that
    /// checks nothing must say so, unless that is expected.
    #[arg(long)]
    pub allow_empty: bool,
    /// Also write each run report to DIR/YYYY-MM-DD/<run_id>.json.
    #[arg(long, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
    /// Stability hold: re-run until the suite has been green (exit 0) for this long; a red run
    /// restarts the window (post-deploy verification). E.g. `5m`.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub hold: Option<Duration>,
    /// With --hold: time between runs.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, default_value = "30s", requires = "hold")]
    pub interval: Duration,
    /// With --hold: give up after this long and exit as the last red run [default: 3 × hold].
    #[arg(long, value_name = "DURATION", value_parser = duration_arg, requires = "hold")]
    pub hold_timeout: Option<Duration>,
    #[command(flatten)]
    pub render: RenderArgs,
}

pub fn duration_arg(s: &str) -> Result<Duration, String> {
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
