//! The validated model: what `invar-config` produces and the engine runs.
//!
//! Every type here is already checked: names resolve, conditions compiled, durations parsed.

use crate::condition::Condition;
use crate::secret::Secret;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration after loading includes and validation.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The main config file; relative paths are resolved against its directory.
    pub path: PathBuf,
    pub sources: BTreeMap<String, Source>,
    /// In file order (the main file first, then includes in order).
    pub invariants: Vec<Invariant>,
    /// In file order. Without a `suites:` block, one implicit suite `all`.
    pub suites: Vec<Suite>,
    /// `alerts:` — the named alert sinks, in file order.
    pub alerts: Vec<AlertSink>,
    /// `store:` — where history, incidents and the alert outbox live.
    pub store: StoreSpec,
    /// `retention:` — how long history is kept.
    pub retention: Retention,
}

impl Config {
    pub fn suite(&self, name: &str) -> Option<&Suite> {
        self.suites.iter().find(|s| s.name == name)
    }
    pub fn invariant(&self, id: &str) -> Option<&Invariant> {
        self.invariants.iter().find(|i| i.id == id)
    }
}

/// A named connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub kind: SourceKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Postgres(SqlSource),
    Mysql(SqlSource),
    Sqlite(SqliteSource),
    File(FileSource),
}

impl SourceKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceKind::Postgres(_) => "postgres",
            SourceKind::Mysql(_) => "mysql",
            SourceKind::Sqlite(_) => "sqlite",
            SourceKind::File(_) => "file",
        }
    }
    pub fn is_sql(&self) -> bool {
        !matches!(self, SourceKind::File(_))
    }
}

/// `postgres` and `mysql` sources.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlSource {
    pub url: Secret,
    /// Default true: sessions are read-only.
    pub read_only: bool,
    /// Statement timeout; default 30s.
    pub timeout: Duration,
    /// Pool size; default 4.
    pub max_connections: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SqliteSource {
    /// Absolute (resolved against the config file's directory).
    pub path: PathBuf,
    pub read_only: bool,
    pub timeout: Duration,
    pub max_connections: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileSource {
    /// Absolute (resolved against the config file's directory).
    pub path: PathBuf,
}

/// One read of a source that yields a table. Equal probes are read once per run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    Sql {
        source: String,
        sql: String,
    },
    /// Literal values (as text); column `value`.
    Values(Vec<String>),
    Lines(LinesProbe),
    Command(CommandProbe),
    /// Named aggregates over one table; fused per (source, table, where) into one query.
    Metrics(crate::metrics::MetricsProbe),
}

impl Probe {
    /// The source this probe reads, if it names one.
    pub fn source(&self) -> Option<&str> {
        match self {
            Probe::Sql { source, .. } => Some(source),
            Probe::Lines(l) => match &l.file {
                FileRef::Source(s) => Some(s),
                FileRef::Path(_) => None,
            },
            Probe::Metrics(m) => Some(&m.source),
            Probe::Values(_) | Probe::Command(_) => None,
        }
    }
    /// A short description for messages (never contains secrets: SQL text is the user's).
    pub fn describe(&self) -> String {
        match self {
            Probe::Sql { source, .. } => format!("sql on `{source}`"),
            Probe::Values(v) => format!("{} literal values", v.len()),
            Probe::Lines(l) => match &l.file {
                FileRef::Source(s) => format!("lines of `{s}`"),
                FileRef::Path(p) => format!("lines of {}", p.display()),
            },
            Probe::Command(c) => format!("command `{}`", c.run.join(" ")),
            Probe::Metrics(m) => format!("metrics of `{}` on `{}`", m.table, m.source),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRef {
    /// A `file` source by name.
    Source(String),
    /// A path, resolved against the config file's directory.
    Path(PathBuf),
}

/// `lines`: one row per matching line: `line_no`, `text`, `ts`, plus named captures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LinesProbe {
    pub file: FileRef,
    /// A regex (already checked to compile). None: every line.
    pub pattern: Option<String>,
    /// Only the last N lines of the file are read.
    pub tail: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandParse {
    /// One row per stdout line: `line` (plus `exit_code`).
    Lines,
    /// stdout is a JSON array of objects (or one object, or JSON lines): one row each.
    Json,
    /// One row: `stdout`, `stderr`, `exit_code`.
    Text,
}

/// `command`: argv (no shell), timeout, cwd, env.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct CommandProbe {
    pub run: Vec<String>,
    pub timeout: Duration,
    /// Resolved against the config file's directory; default that directory.
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub parse: CommandParse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnEmpty {
    #[default]
    Pass,
    Skip,
    Fail,
}

/// A probe plus the columns that identify a row in set relations.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedProbe {
    pub probe: Probe,
    /// Key columns; empty means "every column" (or `value` for a `values` probe).
    pub key: Vec<String>,
    /// A timestamp or unix-seconds column: rows younger than `grace` are not yet a mismatch.
    pub age: Option<String>,
}

/// `probe` + conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeCheck {
    pub probe: Probe,
    pub skip_when: Option<Condition>,
    pub fail_when: Option<Condition>,
    pub warn_when: Option<Condition>,
    pub every_row: Option<Condition>,
    pub on_empty: OnEmpty,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PairCheck {
    pub left: KeyedProbe,
    pub right: KeyedProbe,
    pub grace: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubsetCheck {
    pub each: KeyedProbe,
    pub within: KeyedProbe,
    pub grace: Option<Duration>,
}

/// Exactly one check kind per invariant.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Probe(ProbeCheck),
    Same(PairCheck),
    Subset(SubsetCheck),
    Disjoint(PairCheck),
}

impl Check {
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Probe(_) => "probe",
            Check::Same(_) => "same",
            Check::Subset(_) => "subset",
            Check::Disjoint(_) => "disjoint",
        }
    }
    /// Every probe this check reads.
    pub fn probes(&self) -> Vec<&Probe> {
        match self {
            Check::Probe(p) => vec![&p.probe],
            Check::Same(p) | Check::Disjoint(p) => vec![&p.left.probe, &p.right.probe],
            Check::Subset(s) => vec![&s.each.probe, &s.within.probe],
        }
    }
    /// The named sources this check depends on, deduplicated, in order.
    pub fn sources(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in self.probes() {
            if let Some(s) = p.source()
                && !out.contains(&s)
            {
                out.push(s);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invariant {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub runbook: Option<String>,
    pub owner: Option<String>,
    /// The whole check; past it the outcome is `error`.
    pub timeout: Option<Duration>,
    /// Cost guard over `source`, decided before probing.
    pub skip_if: Option<Condition>,
    pub fire_after: u32,
    pub resolve_after: u32,
    pub alerts: Vec<String>,
    pub check: Check,
    /// Where it was defined (`file:line`), for messages.
    pub defined_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailOn {
    /// Exit 1 on any `fail` (default).
    #[default]
    Fail,
    /// Exit 1 on any `fail` or `warn`.
    Warn,
    /// Never exit 1 for assessments (errors still exit 2).
    Never,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    /// CEL over `id`, `severity`, `tags`; None selects everything.
    pub select: Option<Condition>,
    pub fail_on: FailOn,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub budget: Option<Duration>,
}

impl Suite {
    /// The implicit suite used when the config has no `suites:` block.
    pub fn all() -> Suite {
        Suite {
            name: "all".into(),
            select: None,
            fail_on: FailOn::Fail,
            schedule: None,
            timezone: None,
            budget: None,
        }
    }

    /// Whether this suite selects `inv`.
    pub fn selects(&self, inv: &Invariant) -> Result<bool, String> {
        let Some(cond) = &self.select else {
            return Ok(true);
        };
        let mut ctx = cel::Context::default();
        ctx.add_variable_from_value("id", inv.id.clone());
        ctx.add_variable_from_value("severity", inv.severity.as_str().to_string());
        ctx.add_variable_from_value("tags", inv.tags.clone());
        cond.eval_bool(&ctx)
    }
}

/// An alert sink (`alerts:` entry): where incident notices go.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSink {
    /// The key under `alerts:`; invariants name sinks by it.
    pub name: String,
    pub kind: SinkKind,
    /// Invariants below this severity are not sent here (default `minor`: everything).
    pub min_severity: Severity,
    /// Send a notice when an incident resolves (default true). A sink that was sent an
    /// incident's firing notice is sent its resolve even if its filters changed since.
    pub send_resolved: bool,
    /// A reminder interval while an incident stays open; None: no reminders.
    pub repeat: Option<Duration>,
    /// Per delivery attempt; default 10s.
    pub timeout: Duration,
}

impl AlertSink {
    /// Whether an invariant's notices go to this sink: named by its `alerts:` list, or, when
    /// the list is empty, admitted by `min_severity`.
    pub fn admits(&self, severity: Severity, named: &[String]) -> bool {
        if named.is_empty() {
            severity >= self.min_severity
        } else {
            named.iter().any(|n| n == &self.name) && severity >= self.min_severity
        }
    }
}

/// `Debug` shows only each URL's scheme and host: a webhook URL's path is its token.
#[derive(Clone, PartialEq)]
pub enum SinkKind {
    /// A Slack incoming webhook; the message is Block Kit.
    Slack { webhook_url: Secret },
    /// A generic JSON webhook (body documented in docs/WEBHOOK.md).
    Webhook { url: Secret },
    /// SMTP: `smtp://` (STARTTLS) or `smtps://` (implicit TLS), credentials in the URL.
    Email {
        smtp_url: Secret,
        from: String,
        to: Vec<String>,
    },
}

impl std::fmt::Debug for SinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkKind::Slack { webhook_url } => f
                .debug_struct("Slack")
                .field("webhook_url", &redact_endpoint(webhook_url.expose()))
                .finish(),
            SinkKind::Webhook { url } => f
                .debug_struct("Webhook")
                .field("url", &redact_endpoint(url.expose()))
                .finish(),
            SinkKind::Email { smtp_url, from, to } => f
                .debug_struct("Email")
                .field("smtp_url", &redact_endpoint(smtp_url.expose()))
                .field("from", from)
                .field("to", to)
                .finish(),
        }
    }
}

/// A URL reduced to what is safe to show: `https://hooks.slack.com/***` (scheme and host; the
/// user, password, path and query are dropped — a webhook's path is its token).
pub fn redact_endpoint(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".to_string();
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}/***")
}

impl SinkKind {
    /// The secret URL this sink delivers to.
    pub fn secret(&self) -> &Secret {
        match self {
            SinkKind::Slack { webhook_url } => webhook_url,
            SinkKind::Webhook { url } => url,
            SinkKind::Email { smtp_url, .. } => smtp_url,
        }
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Slack { .. } => "slack",
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Email { .. } => "email",
        }
    }
}

/// `store:` — the history store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreSpec {
    /// Embedded SQLite (WAL). Relative paths are resolved against the config file's directory.
    Sqlite { path: PathBuf },
    /// A shared Postgres history (several watchers).
    Postgres { url: Secret },
}

impl Default for StoreSpec {
    fn default() -> Self {
        StoreSpec::Sqlite {
            path: PathBuf::from(".invar/history.db"),
        }
    }
}

/// `retention:` — history older than this is pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Runs, results, incidents and delivered alerts (default 90d).
    pub runs: Duration,
    /// Violations (default 365d).
    pub violations: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            runs: Duration::from_secs(90 * 86_400),
            violations: Duration::from_secs(365 * 86_400),
        }
    }
}
