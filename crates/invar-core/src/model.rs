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
    /// `server:` — used by `invar watch`.
    pub server: Server,
    /// `silences:` — recurring maintenance windows (one-off silences live in the store).
    pub silences: Vec<crate::silence::SilenceRule>,
    /// Id → position in `invariants`, built on the first [`Config::invariant`]. Every hit is
    /// checked, so an index gone stale (the list changed since) only falls back to a scan.
    pub invariant_index: std::sync::OnceLock<std::collections::HashMap<String, usize>>,
}

impl Config {
    pub fn suite(&self, name: &str) -> Option<&Suite> {
        self.suites.iter().find(|s| s.name == name)
    }
    /// The invariant `id`, in constant time (recording a 10,000-invariant run looks each one
    /// up several times).
    pub fn invariant(&self, id: &str) -> Option<&Invariant> {
        let index = self.invariant_index.get_or_init(|| {
            let mut m = std::collections::HashMap::with_capacity(self.invariants.len());
            for (k, i) in self.invariants.iter().enumerate() {
                m.entry(i.id.clone()).or_insert(k);
            }
            m
        });
        index
            .get(id)
            .and_then(|k| self.invariants.get(*k))
            .filter(|i| i.id == id)
            .or_else(|| self.invariants.iter().find(|i| i.id == id))
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
    Redis(RedisSource),
    Http(HttpSource),
    Prometheus(PrometheusSource),
}

impl SourceKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceKind::Postgres(_) => "postgres",
            SourceKind::Mysql(_) => "mysql",
            SourceKind::Sqlite(_) => "sqlite",
            SourceKind::File(_) => "file",
            SourceKind::Redis(_) => "redis",
            SourceKind::Http(_) => "http",
            SourceKind::Prometheus(_) => "prometheus",
        }
    }
    pub fn is_sql(&self) -> bool {
        matches!(
            self,
            SourceKind::Postgres(_) | SourceKind::Mysql(_) | SourceKind::Sqlite(_)
        )
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

/// A `redis` source: `redis://[[user]:password@]host:port[/db]`, or `rediss://` for TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSource {
    pub url: Secret,
    /// Connecting and each command (a pipelined batch counts as one); default 30s.
    pub timeout: Duration,
    /// The default key cap of this source's probes; default 100,000.
    pub max_keys: u64,
    /// `tls:` — only with a `rediss://` URL. Without it a `rediss://` source trusts the
    /// bundled webpki roots and sends no client certificate.
    pub tls: Option<RedisTls>,
}

/// A `redis` source's `tls:` block: files read when connecting (so a rotated certificate is
/// picked up by the next run), each path absolute (resolved against the config file's
/// directory).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisTls {
    /// PEM CA certificate(s) the server's certificate must chain to, instead of the webpki
    /// roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate for mutual TLS (`tls-auth-clients yes`).
    pub client: Option<ClientCert>,
}

/// A PEM certificate chain and its PEM private key, for mutual TLS.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// An `http` source: requests go to `base_url` + each probe's path.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSource {
    /// May hold credentials (`https://user:pw@host`): a secret, shown redacted.
    pub base_url: Secret,
    /// Per request, unless the probe says otherwise; default 10s.
    pub timeout: Duration,
    /// Sent with every request of this source; the values are secrets.
    pub headers: Vec<(String, HeaderValue)>,
}

/// A `prometheus` source: `promql` probes query its HTTP API (`/api/v1/query`,
/// `/api/v1/query_range`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusSource {
    /// The server's base URL (`http://prom:9090`, or a path prefix behind a proxy); may hold
    /// credentials: a secret.
    pub url: Secret,
    /// Per query (also sent to Prometheus as its `timeout`); default 30s.
    pub timeout: Duration,
    /// Sent with every query; the values are secrets.
    pub headers: Vec<(String, HeaderValue)>,
}

/// An HTTP header value: a secret (`Authorization: Bearer …`). `Debug` and `Serialize` show
/// `***`; it orders and hashes by its value so probes stay comparable.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HeaderValue(Secret);

impl HeaderValue {
    pub fn new(v: impl Into<String>) -> HeaderValue {
        HeaderValue(Secret::new(v))
    }
    /// The raw value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
    /// Removes this value from `text` (error messages that might echo it).
    pub fn scrub(&self, text: &str) -> String {
        let v = self.expose();
        if v.len() >= 3 {
            text.replace(v, "***")
        } else {
            text.to_string()
        }
    }
}

impl std::fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl std::fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl PartialOrd for HeaderValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HeaderValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.expose().cmp(other.expose())
    }
}

impl Serialize for HeaderValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
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
    /// Keys of a Redis source, walked with SCAN, read in pipelined batches.
    Redis(RedisProbe),
    /// Requests to an HTTP source: one row per path.
    Http(HttpProbe),
    /// A PromQL query: one row per series (labels as columns, `value`), or per sample of a
    /// range query (labels, `at`, `value`).
    Promql(PromqlProbe),
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
            Probe::Redis(r) => Some(&r.source),
            Probe::Http(h) => Some(&h.source),
            Probe::Promql(q) => Some(&q.source),
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
            Probe::Redis(r) => format!(
                "redis {} `{}` on `{}`",
                r.kind.as_str(),
                r.pattern,
                r.source
            ),
            Probe::Http(h) => match h.paths.as_slice() {
                [one] => format!("http {} {one} on `{}`", h.method, h.source),
                many => format!(
                    "http {} of {} paths on `{}`",
                    h.method,
                    many.len(),
                    h.source
                ),
            },
            Probe::Promql(q) => match &q.range {
                None => format!("promql on `{}`", q.source),
                Some(r) => format!(
                    "promql over {} on `{}`",
                    crate::units::format_duration(r.range),
                    q.source
                ),
            },
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
    /// Only lines whose leading timestamp is at most this old (relative to the run's start);
    /// a line without a timestamp inherits the previous line's.
    pub since: Option<Duration>,
}

/// What a `redis` probe reads from each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisKind {
    /// `key`, `member`, `score` (a float).
    Zset,
    /// `key`, `member`.
    Set,
    /// `key`, `field`, `value`.
    Hash,
    /// `key`, `value`.
    String,
    /// `key`, `index`, `value`.
    List,
    /// `key`, `ttl` in seconds (-1: no expiry, -2: missing).
    Ttl,
}

impl RedisKind {
    pub const ALL: &[RedisKind] = &[
        RedisKind::Zset,
        RedisKind::Set,
        RedisKind::Hash,
        RedisKind::String,
        RedisKind::List,
        RedisKind::Ttl,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RedisKind::Zset => "zset",
            RedisKind::Set => "set",
            RedisKind::Hash => "hash",
            RedisKind::String => "string",
            RedisKind::List => "list",
            RedisKind::Ttl => "ttl",
        }
    }
    pub fn parse(s: &str) -> Option<RedisKind> {
        RedisKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
    /// The columns of every row, before the pattern's captures.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            RedisKind::Zset => &["key", "member", "score"],
            RedisKind::Set => &["key", "member"],
            RedisKind::Hash => &["key", "field", "value"],
            RedisKind::String => &["key", "value"],
            RedisKind::List => &["key", "index", "value"],
            RedisKind::Ttl => &["key", "ttl"],
        }
    }
}

/// `redis: { zset: "agent:slots:{agent}", max_keys: 1000 }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RedisProbe {
    pub source: String,
    pub kind: RedisKind,
    /// A key, or a pattern with `{captures}` (already checked by [`RedisPattern::parse`]).
    pub pattern: String,
    /// Overrides the source's key cap.
    pub max_keys: Option<u64>,
}

/// A key pattern with `{name}` captures: `agent:slot:{agent}:{execution}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisPattern {
    /// The SCAN MATCH glob (`agent:slot:*:*`; glob characters of the text escaped), or None
    /// when the pattern has no capture and names one key.
    pub glob: Option<String>,
    /// An anchored regex whose named groups are the captures (None without captures).
    pub regex: Option<String>,
    /// The capture names, in order.
    pub captures: Vec<String>,
}

impl RedisPattern {
    /// Parses `{name}` captures; `{{` and `}}` are a literal brace. A capture name is letters,
    /// digits and `_`, unique within the pattern.
    pub fn parse(pattern: &str) -> Result<RedisPattern, String> {
        let mut glob = String::new();
        let mut regex = String::from("^");
        let mut captures: Vec<String> = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    push_literal(&mut glob, &mut regex, '{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    push_literal(&mut glob, &mut regex, '}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("unclosed `{{{name}` in `{pattern}`")),
                        }
                    }
                    let ok = !name.is_empty()
                        && !name.starts_with(|c: char| c.is_ascii_digit())
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !ok {
                        return Err(format!(
                            "`{{{name}}}` is not a capture: name it with letters, digits and `_`"
                        ));
                    }
                    if captures.contains(&name) {
                        return Err(format!("capture `{{{name}}}` appears twice"));
                    }
                    glob.push('*');
                    regex.push_str(&format!("(?P<{name}>.+?)"));
                    captures.push(name);
                }
                '}' => {
                    return Err(format!(
                        "a lone `}}` in `{pattern}`; write `}}}}` for a literal brace"
                    ));
                }
                c => push_literal(&mut glob, &mut regex, c),
            }
        }
        regex.push('$');
        if pattern.is_empty() {
            return Err("the key pattern is empty".into());
        }
        let has = !captures.is_empty();
        Ok(RedisPattern {
            glob: has.then_some(glob),
            regex: has.then_some(regex),
            captures,
        })
    }
}

fn push_literal(glob: &mut String, regex: &mut String, c: char) {
    if matches!(c, '*' | '?' | '[' | ']' | '\\') {
        glob.push('\\');
    }
    glob.push(c);
    if "\\.+*?()|[]{}^$#&-~".contains(c) {
        regex.push('\\');
    }
    regex.push(c);
}

/// `http: { path | paths, method, headers, body, timeout, follow_redirects }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct HttpProbe {
    pub source: String,
    /// Each path is one request (and one row), relative to the source's `base_url`.
    pub paths: Vec<String>,
    /// Upper-case; default `GET`.
    pub method: String,
    /// Added to (and overriding) the source's headers; the values are secrets.
    pub headers: Vec<(String, HeaderValue)>,
    pub body: Option<String>,
    /// Per request; default the source's `timeout`.
    pub timeout: Option<Duration>,
    /// Default false: a 3xx is the answer.
    pub follow_redirects: bool,
}

/// `promql: "…"` with an optional `range` and `step`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PromqlProbe {
    pub source: String,
    pub query: String,
    /// Set for a range query, evaluated over `[now - range, now]`.
    pub range: Option<PromqlRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PromqlRange {
    pub range: Duration,
    pub step: Duration,
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
    /// Bytes kept of stdout and of stderr each; more cuts the probe (`error`).
    pub max_output: u64,
    /// Rows a parsed stdout may give; more cuts the probe (`error`).
    pub max_rows: u64,
}

impl CommandProbe {
    pub const DEFAULT_MAX_OUTPUT: u64 = 16 * 1024 * 1024;
    pub const DEFAULT_MAX_ROWS: u64 = 100_000;
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
    /// `anomaly:` — fail (or warn) when a measure strays from its own history.
    pub anomaly: Option<Anomaly>,
}

/// `history:` — the earlier runs an invariant's conditions see as `hist` (docs/HISTORY.md).
#[derive(Debug, Clone, PartialEq)]
pub struct HistorySpec {
    pub window: Duration,
    /// Fewer runs in the window than this: `skip` ("thin history"), never a pass.
    pub min_runs: u32,
    /// Only runs on the same weekday, in the suite's time zone.
    pub same_weekday: bool,
}

/// `anomaly: { measure, method: mad, threshold, warn_threshold, direction }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub measure: String,
    pub threshold: f64,
    pub warn_threshold: Option<f64>,
    pub direction: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Both,
    /// Only values above the median count.
    Up,
    /// Only values below the median count.
    Down,
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

/// `join`: named probes loaded into an embedded SQL engine, the operator's SQL run there, and
/// its rows decided as a `probe` check's are.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinCheck {
    /// Table name → probe, in file order.
    pub tables: Vec<(String, Probe)>,
    pub sql: String,
    pub skip_when: Option<Condition>,
    pub fail_when: Option<Condition>,
    pub warn_when: Option<Condition>,
    pub every_row: Option<Condition>,
    pub on_empty: OnEmpty,
}

/// What a join computes (its tables and SQL, without the conditions): equal relations are
/// computed once per run; the snapshot holds their result tables.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct JoinRelation {
    pub tables: Vec<(String, Probe)>,
    pub sql: String,
}

impl JoinCheck {
    pub fn relation(&self) -> JoinRelation {
        JoinRelation {
            tables: self.tables.clone(),
            sql: self.sql.clone(),
        }
    }
}

/// `transitions`: each key's state may only move along the `allowed` graph between runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionsCheck {
    pub probe: Probe,
    /// The columns naming a key (at least one).
    pub key: Vec<String>,
    /// The column holding the key's state.
    pub state: String,
    /// From-state → the states it may move to. A state with no entry (or an empty list) may
    /// not move at all.
    pub allowed: BTreeMap<String, Vec<String>>,
    /// A key unseen for longer than this is forgotten (its next sighting is a new baseline).
    pub remember: Duration,
}

impl TransitionsCheck {
    /// Whether a key may move from `from` to `to` (staying put always may).
    pub fn allows(&self, from: &str, to: &str) -> bool {
        from == to
            || self
                .allowed
                .get(from)
                .is_some_and(|tos| tos.iter().any(|t| t == to))
    }
}

/// The remembered state of one key of a `transitions` invariant, as of its last sighting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Remembered {
    /// The key's text: the column's text for one key column, a JSON array of the columns'
    /// texts for several.
    pub key: String,
    pub state: String,
    pub seen_at: chrono::DateTime<chrono::Utc>,
}

/// Exactly one check kind per invariant.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Probe(ProbeCheck),
    Same(PairCheck),
    Subset(SubsetCheck),
    Disjoint(PairCheck),
    Join(JoinCheck),
    Transitions(TransitionsCheck),
}

impl Check {
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Probe(_) => "probe",
            Check::Same(_) => "same",
            Check::Subset(_) => "subset",
            Check::Disjoint(_) => "disjoint",
            Check::Join(_) => "join",
            Check::Transitions(_) => "transitions",
        }
    }
    /// Every probe this check reads.
    pub fn probes(&self) -> Vec<&Probe> {
        match self {
            Check::Probe(p) => vec![&p.probe],
            Check::Same(p) | Check::Disjoint(p) => vec![&p.left.probe, &p.right.probe],
            Check::Subset(s) => vec![&s.each.probe, &s.within.probe],
            Check::Join(j) => j.tables.iter().map(|(_, p)| p).collect(),
            Check::Transitions(t) => vec![&t.probe],
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

impl Invariant {
    /// `id`, `severity` and `tags` as CEL variables: what a suite's `select` and a silence's
    /// `match` read.
    pub fn cel_context(&self) -> cel::Context<'static, 'static> {
        let mut ctx = crate::condition::context();
        ctx.add_variable_from_value("id", self.id.clone());
        ctx.add_variable_from_value("severity", self.severity.as_str().to_string());
        ctx.add_variable_from_value("tags", self.tags.clone());
        ctx
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
    /// `history:` — its conditions may use `hist`; None: they may not.
    pub history: Option<HistorySpec>,
    /// `vacuous_after:` — a vacuous pass in every run for this long is a `warn` (the suite's
    /// setting when None).
    pub vacuous_after: Option<Duration>,
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
    /// An IANA zone name (validated by the config reader); None is UTC.
    pub timezone: Option<String>,
    pub budget: Option<Duration>,
    pub misfire: Misfire,
    /// `vacuous_after:` for its invariants that set none.
    pub vacuous_after: Option<Duration>,
}

/// What the watcher does about scheduled runs missed while it was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Missed ticks are dropped; the next tick runs as usual (default).
    #[default]
    Skip,
    /// One catch-up run at start when at least one tick was missed.
    RunOnce,
}

/// `server:` — where `invar watch` serves its API, metrics and status page.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// `host:port` (default `127.0.0.1:8080`).
    pub listen: String,
    /// Allows every API call, including `POST /api/v1/runs`.
    pub admin_token: Option<Secret>,
    /// Allows the read-only API calls.
    pub read_token: Option<Secret>,
    /// A scheduled tick whose run is not recorded this long after the tick makes the suite
    /// overdue (default 5m).
    pub overdue_after: Duration,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8080".into(),
            admin_token: None,
            read_token: None,
            overdue_after: Duration::from_secs(300),
        }
    }
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
            misfire: Misfire::Skip,
            vacuous_after: None,
        }
    }

    /// Whether this suite selects `inv`.
    pub fn selects(&self, inv: &Invariant) -> Result<bool, String> {
        let Some(cond) = &self.select else {
            return Ok(true);
        };
        cond.eval_bool(&inv.cel_context())
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
    /// Prometheus Alertmanager's `/api/v2/alerts`.
    Alertmanager(AlertmanagerSink),
    /// PagerDuty Events API v2.
    Pagerduty(PagerdutySink),
}

/// `alertmanager`: open incidents are posted, and re-posted every `refresh`, as firing alerts
/// whose `endsAt` lies [`AlertmanagerSink::ENDS_AFTER_REFRESHES`] refreshes ahead.
#[derive(Clone, PartialEq)]
pub struct AlertmanagerSink {
    /// The Alertmanager's base URL (`http://am:9093`); a secret, it may hold credentials.
    pub url: Secret,
    /// Sent with every post (`Authorization` for a proxy in front); the values are secrets.
    pub headers: Vec<(String, HeaderValue)>,
    /// How often an open incident is re-posted (at the next run after it passed).
    pub refresh: Duration,
}

impl AlertmanagerSink {
    /// A firing alert ends this many refreshes after it was posted, so up to three missed
    /// refreshes (a slow run, a short outage) do not resolve it in Alertmanager.
    pub const ENDS_AFTER_REFRESHES: u32 = 4;
}

/// `pagerduty`: Events API v2 `trigger` and `resolve`, deduplicated by incident id.
#[derive(Clone, PartialEq)]
pub struct PagerdutySink {
    /// The integration's routing key: a token, never shown.
    pub routing_key: SecretToken,
    /// The events endpoint (default [`PagerdutySink::DEFAULT_URL`]).
    pub url: Secret,
}

impl PagerdutySink {
    pub const DEFAULT_URL: &'static str = "https://events.pagerduty.com/v2/enqueue";
}

/// A secret that is a bare token (a routing key), not a URL: the same opaque secret as a
/// header value (`Debug`, `Display` and `Serialize` show `***`).
pub type SecretToken = HeaderValue;

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
            SinkKind::Alertmanager(a) => f
                .debug_struct("Alertmanager")
                .field("url", &redact_endpoint(a.url.expose()))
                .field("headers", &a.headers)
                .field("refresh", &a.refresh)
                .finish(),
            SinkKind::Pagerduty(p) => f
                .debug_struct("Pagerduty")
                .field("routing_key", &p.routing_key)
                .field("url", &redact_endpoint(p.url.expose()))
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
    /// The URL this sink delivers to (a secret: a webhook's path or a URL's password).
    pub fn secret(&self) -> &Secret {
        match self {
            SinkKind::Slack { webhook_url } => webhook_url,
            SinkKind::Webhook { url } => url,
            SinkKind::Email { smtp_url, .. } => smtp_url,
            SinkKind::Alertmanager(a) => &a.url,
            SinkKind::Pagerduty(p) => &p.url,
        }
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Slack { .. } => "slack",
            SinkKind::Webhook { .. } => "webhook",
            SinkKind::Email { .. } => "email",
            SinkKind::Alertmanager(_) => "alertmanager",
            SinkKind::Pagerduty(_) => "pagerduty",
        }
    }
    /// Whether the receiver keeps its own incident state keyed by invar's incident (it
    /// resolves by incident): such a sink is sent no flapping notice, which has no incident.
    pub fn mirrors_incidents(&self) -> bool {
        match self {
            SinkKind::Alertmanager(_) | SinkKind::Pagerduty(_) => true,
            SinkKind::Slack { .. } | SinkKind::Webhook { .. } | SinkKind::Email { .. } => false,
        }
    }
    /// How often the receiver must be re-sent an open incident to keep it open
    /// (Alertmanager expires what is not refreshed) — also while the incident is held.
    pub fn refresh(&self) -> Option<Duration> {
        match self {
            SinkKind::Alertmanager(a) => Some(a.refresh),
            SinkKind::Slack { .. }
            | SinkKind::Webhook { .. }
            | SinkKind::Email { .. }
            | SinkKind::Pagerduty(_) => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_patterns_become_a_glob_and_a_regex() {
        let p = RedisPattern::parse("agent:slot:{agent}:{execution}").unwrap();
        assert_eq!(p.glob.as_deref(), Some("agent:slot:*:*"));
        assert_eq!(p.captures, ["agent", "execution"]);
        assert_eq!(
            p.regex.as_deref(),
            Some("^agent:slot:(?P<agent>.+?):(?P<execution>.+?)$")
        );
        // Glob and regex characters of the text are literal; `{{` is a brace.
        let p = RedisPattern::parse("a*b.[x]{{y}}:{id}").unwrap();
        assert_eq!(p.glob.as_deref(), Some("a\\*b.\\[x\\]{y}:*"));
        assert_eq!(
            p.regex.as_deref(),
            Some("^a\\*b\\.\\[x\\]\\{y\\}:(?P<id>.+?)$")
        );
        // No capture: one key, no scan.
        let p = RedisPattern::parse("canary:drain_tick_at").unwrap();
        assert_eq!((p.glob, p.regex), (None, None));
        for bad in ["", "k:{", "k:{}", "k:{1a}", "k:{a}:{a}", "k:}"] {
            assert!(RedisPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_values_never_print() {
        let h = HttpProbe {
            source: "api".into(),
            paths: vec!["/x".into()],
            method: "GET".into(),
            headers: vec![("Authorization".into(), HeaderValue::new("Bearer t0ken"))],
            body: None,
            timeout: None,
            follow_redirects: false,
        };
        assert!(!format!("{h:?}").contains("t0ken"));
        assert!(!serde_json::to_string(&h).unwrap().contains("t0ken"));
        assert_eq!(h.headers[0].1.scrub("got Bearer t0ken"), "got ***");
    }
}
