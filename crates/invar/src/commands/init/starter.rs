//! The starter config of `invar init`. With `--from URL` it reads the database's schema
//! (`invar_sources::introspect`) and writes starter invariants — orphan checks for declared
//! and likely foreign keys, duplicates for columns that look unique but have no unique index,
//! missing values for nullable columns that look required, freshness on large tables; without
//! it, a commented skeleton with one invariant of each common kind.
//!
//! The URL never reaches the file: the source reads it from `${INVAR_DATABASE_URL}` (or the
//! `--url-env` name). A SQLite path is not a secret and is written as a path relative to the
//! config file. Generation is a pure function of the schema ([`generate`]), unit-tested here.

use invar_core::{Secret, SqlSource, SqliteSource};
use invar_sources::introspect::{ColumnInfo, Schema, TableInfo, read_schema};
use invar_sources::sql::{Dialect, SqlPool};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Tables with more rows than this (by the database's own estimate) get a freshness check.
pub const FRESHNESS_MIN_ROWS: u64 = 10_000;

/// What `--from` points at.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Postgres(String),
    Mysql(String),
    Sqlite(PathBuf),
}

impl Target {
    /// `postgres://…` / `postgresql://…`, `mysql://…` / `mariadb://…`, `sqlite://PATH`,
    /// `sqlite:PATH` (`sqlite:///abs/path` is absolute), or the path of an existing file.
    pub fn parse(url: &str) -> Result<Target, String> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(Target::Postgres(url.to_string()));
        }
        if lower.starts_with("mysql://") {
            return Ok(Target::Mysql(url.to_string()));
        }
        if lower.starts_with("mariadb://") {
            return Ok(Target::Mysql(format!(
                "mysql://{}",
                &url["mariadb://".len()..]
            )));
        }
        if lower.starts_with("sqlite:") {
            let rest = &url["sqlite:".len()..];
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let path = rest.split('?').next().unwrap_or(rest);
            if path.is_empty() || path == ":memory:" {
                return Err("a sqlite URL needs the path of a database file".into());
            }
            return Ok(Target::Sqlite(PathBuf::from(path)));
        }
        if !url.contains("://") && Path::new(url).is_file() {
            return Ok(Target::Sqlite(PathBuf::from(url)));
        }
        let scheme = url.split("://").next().filter(|_| url.contains("://"));
        Err(match scheme {
            Some(s) => format!(
                "unsupported database URL scheme `{s}`: expected postgres://, mysql:// (or mariadb://), sqlite://PATH or sqlite:PATH"
            ),
            None => {
                "expected a database URL: postgres://…, mysql://…, sqlite://PATH or sqlite:PATH"
                    .into()
            }
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Target::Postgres(_) => Dialect::Postgres,
            Target::Mysql(_) => Dialect::Mysql,
            Target::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// The URL as it may be shown: password redacted.
    pub fn redacted(&self) -> String {
        match self {
            Target::Postgres(u) | Target::Mysql(u) => Secret::new(u.clone()).redacted(),
            Target::Sqlite(p) => p.display().to_string(),
        }
    }

    /// Connects read-only and reads the schema. Errors are scrubbed of the URL.
    pub async fn read_schema(&self) -> Result<Schema, String> {
        let timeout = Duration::from_secs(30);
        let pool = match self {
            Target::Postgres(u) | Target::Mysql(u) => {
                let src = SqlSource {
                    url: Secret::new(u.clone()),
                    read_only: true,
                    timeout,
                    max_connections: 1,
                };
                if matches!(self, Target::Postgres(_)) {
                    SqlPool::connect_postgres(&src).await?
                } else {
                    SqlPool::connect_mysql(&src).await?
                }
            }
            Target::Sqlite(p) => {
                SqlPool::connect_sqlite(&SqliteSource {
                    path: p.clone(),
                    read_only: true,
                    timeout,
                    max_connections: 1,
                })
                .await?
            }
        };
        read_schema(&pool).await
    }
}

/// How the generated file names its source.
pub struct SourceSpec {
    /// The `sources:` entry, without the leading name (a flow mapping).
    pub yaml: String,
    pub dialect: Dialect,
    /// For the header, SQLite only: the database file (server URLs never reach the file).
    pub origin: String,
    /// The environment variable the URL must be set in (none for SQLite).
    pub url_env: Option<String>,
}

/// The source entry for `target` in a config written at `config_path`.
pub fn source_spec(target: &Target, config_path: &Path, url_env: &str) -> SourceSpec {
    match target {
        Target::Postgres(_) | Target::Mysql(_) => {
            let ty = if target.dialect() == Dialect::Postgres {
                "postgres"
            } else {
                "mysql"
            };
            SourceSpec {
                yaml: format!("{{ type: {ty}, url: \"${{{url_env}}}\", timeout: 30s }}"),
                dialect: target.dialect(),
                origin: target.redacted(),
                url_env: Some(url_env.to_string()),
            }
        }
        Target::Sqlite(p) => {
            let rel = relative_to_config(p, config_path);
            SourceSpec {
                yaml: format!(
                    "{{ type: sqlite, path: {}, timeout: 30s }}",
                    yaml_scalar(&rel.display().to_string())
                ),
                dialect: Dialect::Sqlite,
                origin: p.display().to_string(),
                url_env: None,
            }
        }
    }
}

/// `db` as a path relative to the directory of `config` (the config resolves relative paths
/// against its own directory), or absolute when they share no ancestor worth walking up to.
fn relative_to_config(db: &Path, config: &Path) -> PathBuf {
    let abs = |p: &Path| -> PathBuf {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        std::fs::canonicalize(&p).unwrap_or(p)
    };
    let db = abs(db);
    let dir = abs(config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new(".")));
    if let Ok(rel) = db.strip_prefix(&dir) {
        return rel.to_path_buf();
    }
    // One or two levels up (`../data/app.db`) reads well; beyond that, absolute is clearer.
    let mut up = PathBuf::new();
    let mut base = dir.as_path();
    for _ in 0..2 {
        let Some(parent) = base.parent() else { break };
        up.push("..");
        base = parent;
        if let Ok(rel) = db.strip_prefix(base)
            && base != Path::new("/")
        {
            return up.join(rel);
        }
    }
    db
}

/// What [`generate`] wrote, for the summary on stderr.
#[derive(Debug, Default)]
pub struct Summary {
    pub tables: usize,
    pub invariants: usize,
    pub orphans: usize,
    pub guesses: Vec<String>,
    pub duplicates: usize,
    pub missing: usize,
    pub freshness: usize,
}

impl Summary {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} table{}, {} invariant{} ({} orphan, {} duplicates, {} missing-value, {} freshness)",
            self.tables,
            plural(self.tables),
            self.invariants,
            plural(self.invariants),
            self.orphans,
            self.duplicates,
            self.missing,
            self.freshness,
        );
        if !self.guesses.is_empty() {
            let _ = write!(
                s,
                "\n{} of them {} guessed from column names (marked `# guess:`, tagged `guess`): {}",
                self.guesses.len(),
                if self.guesses.len() == 1 { "is" } else { "are" },
                self.guesses.join(", ")
            );
        }
        s
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The generated config: the YAML text and what it holds.
pub struct Generated {
    pub yaml: String,
    pub summary: Summary,
}

/// Writes the starter config for `schema`. Pure: same schema, same text.
pub fn generate(schema: &Schema, source: &SourceSpec) -> Generated {
    let d = source.dialect;
    let mut summary = Summary {
        tables: schema.tables.len(),
        ..Summary::default()
    };
    let mut out = String::new();
    // Never the URL, not even redacted: host and database names stay out of the file too.
    let from = match source.url_env {
        Some(_) => format!("a {} database", d.as_str()),
        None => format!("the sqlite database {}", source.origin),
    };
    let _ = writeln!(
        out,
        "# invar.yaml — starter invariants written by `invar init` from the schema of {from}\n\
         # ({} table{}). Each one is a starting point: read it, tune it, delete what is not true.",
        schema.tables.len(),
        plural(schema.tables.len())
    );
    out.push_str("#\n");
    if let Some(var) = &source.url_env {
        let example = match d {
            Dialect::Postgres => "postgres://user:password@host:5432/dbname",
            _ => "mysql://user:password@host:3306/dbname",
        };
        let _ = writeln!(
            out,
            "# The database URL is not in this file (it is a secret): set it in the environment of\n\
             # every run, e.g.  export {var}='{example}'"
        );
        out.push_str(
            "# Prefer a read-only role: invar opens read-only sessions, but a role is a guarantee.\n",
        );
    } else {
        out.push_str("# The path is relative to this file; invar opens the database read-only.\n");
    }
    out.push_str(
        "#\n\
         # Then:  invar validate              every mistake at once (exit 0 or 3)\n\
         #        invar run                   every invariant (exit 0 held, 1 failed, 2 error)\n\
         #        invar run --suite gate      only the deploy gate (declared foreign keys)\n\
         #\n\
         # Invariants marked `# guess:` come from column names, not from declared constraints:\n\
         # check those first (they are tagged `guess` and kept out of the gate).\n\n",
    );
    out.push_str("sources:\n");
    let _ = writeln!(out, "  app: {}", source.yaml);
    out.push_str(
        "\nsuites:\n\
         \x20 gate:  { select: \"'gate' in tags\" }                                  # blocks a deploy: invar run --suite gate\n\
         \x20 daily: { select: \"true\", schedule: \"0 4 * * *\", timezone: UTC }      # everything, once a day (see docs/recipes/)\n\n",
    );

    let mut ids: HashSet<String> = HashSet::new();
    let mut body = String::new();
    for t in &schema.tables {
        let mut section = String::new();
        table_invariants(schema, t, d, &mut ids, &mut summary, &mut section);
        if section.is_empty() {
            continue;
        }
        let rows = match t.row_estimate {
            Some(n) => format!(" (about {} row{})", thousands(n), plural(n as usize)),
            None => String::new(),
        };
        let _ = writeln!(body, "  # ---- {}{rows}", display_name(t));
        body.push_str(&section);
    }
    if body.is_empty() {
        out.push_str(
            "# No starter invariants: no foreign keys, and no column looks unique, required or like a\n\
             # timestamp. Write your own: the bad rows your application must never contain.\n\
             invariants: []\n",
        );
    } else {
        out.push_str("invariants:\n");
        out.push_str(&body);
    }
    summary.invariants = ids.len();
    Generated { yaml: out, summary }
}

/// The table an invariant is written for, as the generators need it.
struct TableCx<'a> {
    schema: &'a Schema,
    t: &'a TableInfo,
    d: Dialect,
    /// The table's name as shown in ids and titles.
    tname: String,
    /// The table as SQL of `d`.
    from: String,
}

/// What the generators write into: the ids taken so far, the summary, the YAML text.
struct Out<'a> {
    ids: &'a mut HashSet<String>,
    summary: &'a mut Summary,
    out: &'a mut String,
}

fn table_invariants(
    schema: &Schema,
    t: &TableInfo,
    d: Dialect,
    ids: &mut HashSet<String>,
    summary: &mut Summary,
    out: &mut String,
) {
    let cx = TableCx {
        schema,
        t,
        d,
        tname: display_name(t),
        from: qualified(d, t.schema.as_deref(), &t.name),
    };
    let mut w = Out { ids, summary, out };
    declared_foreign_keys(&cx, &mut w);
    guessed_foreign_keys(&cx, &mut w);
    duplicates(&cx, &mut w);
    missing_values(&cx, &mut w);
    freshness(&cx, &mut w);
}

/// Declared foreign keys: every one gets an orphan check (a gate).
fn declared_foreign_keys(cx: &TableCx, w: &mut Out) {
    let (t, d, tname, from) = (cx.t, cx.d, &cx.tname, &cx.from);
    let (ids, summary, out) = (&mut *w.ids, &mut *w.summary, &mut *w.out);
    for fk in &t.foreign_keys {
        if fk.columns.is_empty()
            || fk.columns.len() != fk.ref_columns.len()
            || fk.ref_columns.iter().any(String::is_empty)
        {
            continue;
        }
        let parent = match &fk.ref_schema {
            Some(s) => format!("{s}.{}", fk.ref_table),
            None => fk.ref_table.clone(),
        };
        let id = unique_id(ids, &format!("orphans-{tname}-{}", fk.columns.join("-")));
        let cols = fk.columns.join(", ");
        let refs = fk.ref_columns.join(", ");
        let mut runbook = format!(
            "Rows of {tname} whose ({cols}) has no {parent} row: find what deleted the parents (or wrote the \
             children first), then restore the parents or re-home or delete the children."
        );
        match d {
            Dialect::Sqlite => runbook.push_str(
                " SQLite checks foreign keys only with PRAGMA foreign_keys = ON on every connection.",
            ),
            Dialect::Mysql => runbook.push_str(
                " MySQL skips the check under FOREIGN_KEY_CHECKS=0 (bulk loads, restores) and on MyISAM.",
            ),
            Dialect::Postgres if !fk.validated => runbook.push_str(
                " The constraint is NOT VALID: rows older than it were never checked; VALIDATE CONSTRAINT once this holds.",
            ),
            Dialect::Postgres => runbook.push_str(
                " A validated constraint cannot be broken by writes, but can by session_replication_role = replica or a restore without it.",
            ),
        }
        let comment = format!(
            "declared foreign key{}: {tname}({cols}) → {parent}({refs})",
            fk.name
                .as_deref()
                .map(|n| format!(" `{n}`"))
                .unwrap_or_default()
        );
        write_subset(
            out,
            SubsetSpec {
                comment: &comment,
                id: &id,
                title: &format!(
                    "Every {tname}.{} has its {parent} row",
                    fk.columns.join("+")
                ),
                severity: "critical",
                tags: &["gate", "integrity"],
                runbook: &runbook,
                child_sql: &select_keys(d, from, &fk.columns, true),
                child_key: &fk.columns,
                parent_sql: &select_keys(
                    d,
                    &qualified(d, fk.ref_schema.as_deref(), &fk.ref_table),
                    &fk.ref_columns,
                    false,
                ),
                parent_key: &fk.ref_columns,
            },
        );
        summary.orphans += 1;
    }
}

/// Likely foreign keys: `<table>_id` / `<singular>_id` matching a table's primary key.
fn guessed_foreign_keys(cx: &TableCx, w: &mut Out) {
    let (schema, t, d, tname, from) = (cx.schema, cx.t, cx.d, &cx.tname, &cx.from);
    let (ids, summary, out) = (&mut *w.ids, &mut *w.summary, &mut *w.out);
    for c in &t.columns {
        if t.in_foreign_key(&c.name) {
            continue;
        }
        let Some(parent) = guess_parent(schema, t, c) else {
            continue;
        };
        let pk = &parent.primary_key[0];
        let pname = display_name(parent);
        let id = unique_id(ids, &format!("orphans-{tname}-{}", c.name));
        let runbook = format!(
            "{tname}.{} is named like a reference to {pname}.{pk} but no foreign key is declared. If it is one: \
             fix the orphans, then declare the key. If it is not: delete this invariant.",
            c.name
        );
        write_subset(
            out,
            SubsetSpec {
                comment: &format!(
                    "guess: {tname}.{} looks like a reference to {pname}.{pk} (named like it; no foreign key declared)",
                    c.name
                ),
                id: &id,
                title: &format!("Every {tname}.{} has its {pname} row", c.name),
                severity: "major",
                tags: &["integrity", "guess"],
                runbook: &runbook,
                child_sql: &select_keys(d, from, std::slice::from_ref(&c.name), true),
                child_key: std::slice::from_ref(&c.name),
                parent_sql: &select_keys(
                    d,
                    &qualified(d, parent.schema.as_deref(), &parent.name),
                    std::slice::from_ref(pk),
                    false,
                ),
                parent_key: std::slice::from_ref(pk),
            },
        );
        summary.orphans += 1;
        summary.guesses.push(id);
    }
}

/// Columns that look unique without a unique index.
fn duplicates(cx: &TableCx, w: &mut Out) {
    let (t, d, tname, from) = (cx.t, cx.d, &cx.tname, &cx.from);
    let (ids, summary, out) = (&mut *w.ids, &mut *w.summary, &mut *w.out);
    for c in &t.columns {
        if !looks_unique(&c.name) || t.has_unique_on(&c.name) || t.in_foreign_key(&c.name) {
            continue;
        }
        let col = ident(d, &c.name);
        let is_email = c.name.to_ascii_lowercase().contains("email");
        // Emails compare case-insensitively: Bob@x.com and bob@x.com are one person.
        let expr = if is_email {
            format!("lower({col}) AS {col}")
        } else {
            col.clone()
        };
        let group = if is_email {
            format!("lower({col})")
        } else {
            col.clone()
        };
        let sql = format!(
            "SELECT {expr}, count(*) AS n FROM {from} WHERE {col} IS NOT NULL GROUP BY {group} HAVING count(*) > 1"
        );
        let id = unique_id(ids, &format!("duplicates-{tname}-{}", c.name));
        let _ = writeln!(
            out,
            "  # guess: {tname}.{} looks unique by its name but has no unique index. Every row returned is a\n  \
             # duplicated value (n = how many rows share it).",
            c.name
        );
        let _ = writeln!(out, "  - id: {}", yaml_scalar(&id));
        let _ = writeln!(
            out,
            "    title: {}",
            yaml_scalar(&format!(
                "{tname}.{} is unique{}",
                c.name,
                if is_email { " (ignoring case)" } else { "" }
            ))
        );
        out.push_str("    severity: major\n    tags: [integrity, guess]\n");
        let _ = writeln!(
            out,
            "    runbook: {}",
            yaml_scalar(&format!(
                "Merge or remove the duplicated {tname} rows, then add a unique index on {tname}({}) so the \
                 database keeps it true. If duplicates are legitimate, delete this invariant.",
                c.name
            ))
        );
        let _ = writeln!(
            out,
            "    probe: {{ source: app, sql: {} }}\n",
            yaml_string(&sql)
        );
        summary.duplicates += 1;
        summary.guesses.push(id);
    }
}

/// Nullable columns that look required: a share of missing values, skipped on thin data.
fn missing_values(cx: &TableCx, w: &mut Out) {
    let (t, d, tname, from) = (cx.t, cx.d, &cx.tname, &cx.from);
    let (ids, summary, out) = (&mut *w.ids, &mut *w.summary, &mut *w.out);
    for c in &t.columns {
        if !c.nullable || !looks_required(&c.name) || t.in_foreign_key(&c.name) {
            continue;
        }
        let col = ident(d, &c.name);
        let sql =
            format!("SELECT count(*) AS sample, count(*) - count({col}) AS missing FROM {from}");
        let id = unique_id(ids, &format!("missing-{tname}-{}", c.name));
        let _ = writeln!(
            out,
            "  # guess: {tname}.{} is nullable but named like a required value. Skipped under 100 rows (thin\n  \
             # data is never a pass), fails over 1% missing.",
            c.name
        );
        let _ = writeln!(out, "  - id: {}", yaml_scalar(&id));
        let _ = writeln!(
            out,
            "    title: {}",
            yaml_scalar(&format!("{tname}.{} is almost never missing", c.name))
        );
        out.push_str("    severity: minor\n    tags: [quality, guess]\n");
        let _ = writeln!(
            out,
            "    runbook: {}",
            yaml_scalar(&format!(
                "Find what writes {tname} rows without {}: fix the writer, backfill, then consider NOT NULL.",
                c.name
            ))
        );
        let _ = writeln!(
            out,
            "    probe: {{ source: app, sql: {} }}",
            yaml_string(&sql)
        );
        out.push_str(
            "    skip_when: row.sample < 100\n    fail_when: row.missing / row.sample > 0.01\n\n",
        );
        summary.missing += 1;
        summary.guesses.push(id);
    }
}

/// Freshness on large tables: the newest timestamp must be recent.
fn freshness(cx: &TableCx, w: &mut Out) {
    let (t, d, tname, from) = (cx.t, cx.d, &cx.tname, &cx.from);
    let (ids, summary, out) = (&mut *w.ids, &mut *w.summary, &mut *w.out);
    if t.row_estimate.is_some_and(|n| n > FRESHNESS_MIN_ROWS)
        && let Some((c, age)) = freshness_column(t, d)
    {
        let sql = format!(
            "SELECT age_s FROM (SELECT {age} AS age_s FROM {from}) newest WHERE age_s IS NOT NULL"
        );
        let id = unique_id(ids, &format!("fresh-{tname}-{}", c.name));
        let _ = writeln!(
            out,
            "  # guess: {tname} is large (about {} rows) and has {}: its newest value should be recent.\n  \
             # age_s = seconds since the newest {}; tune the threshold to the longest quiet spell you accept.{}",
            thousands(t.row_estimate.unwrap_or(0)),
            c.name,
            c.name,
            if d == Dialect::Mysql {
                "\n  # MySQL compares with NOW() in the session time zone: store DATETIMEs in it, or use UTC_TIMESTAMP()."
            } else {
                ""
            }
        );
        let _ = writeln!(out, "  - id: {}", yaml_scalar(&id));
        let _ = writeln!(
            out,
            "    title: {}",
            yaml_scalar(&format!("{tname}.{} moved in the last day", c.name))
        );
        out.push_str("    severity: major\n    tags: [freshness, guess]\n");
        let _ = writeln!(
            out,
            "    runbook: {}",
            yaml_scalar(&format!(
                "Nothing wrote {tname}.{} for over a day: check its writer (the application, an ingest job). \
                 A table that is quiet by design needs a larger threshold.",
                c.name
            ))
        );
        let _ = writeln!(
            out,
            "    probe: {{ source: app, sql: {} }}",
            yaml_string(&sql)
        );
        out.push_str(
            "    on_empty: skip                 # an empty table cannot be fresh or stale\n    \
             fail_when: row.age_s > 86400.0   # one day, in seconds\n\n",
        );
        summary.freshness += 1;
        summary.guesses.push(id);
    }
}

struct SubsetSpec<'a> {
    comment: &'a str,
    id: &'a str,
    title: &'a str,
    severity: &'a str,
    tags: &'a [&'a str],
    runbook: &'a str,
    child_sql: &'a str,
    child_key: &'a [String],
    parent_sql: &'a str,
    parent_key: &'a [String],
}

fn write_subset(out: &mut String, s: SubsetSpec) {
    let _ = writeln!(out, "  # {}", s.comment);
    let _ = writeln!(out, "  - id: {}", yaml_scalar(s.id));
    let _ = writeln!(out, "    title: {}", yaml_scalar(s.title));
    let _ = writeln!(out, "    severity: {}", s.severity);
    let _ = writeln!(out, "    tags: [{}]", s.tags.join(", "));
    let _ = writeln!(out, "    runbook: {}", yaml_scalar(s.runbook));
    out.push_str("    subset:\n");
    let _ = writeln!(
        out,
        "      each: {{ source: app, sql: {}, key: {} }}",
        yaml_string(s.child_sql),
        yaml_key(s.child_key)
    );
    let _ = writeln!(
        out,
        "      in:   {{ source: app, sql: {}, key: {} }}",
        yaml_string(s.parent_sql),
        yaml_key(s.parent_key)
    );
    out.push('\n');
}

/// `SELECT a, b FROM t [WHERE a IS NOT NULL AND b IS NOT NULL]`.
fn select_keys(d: Dialect, from: &str, cols: &[String], not_null: bool) -> String {
    let list: Vec<String> = cols.iter().map(|c| ident(d, c)).collect();
    let mut sql = format!("SELECT {} FROM {from}", list.join(", "));
    if not_null {
        let conds: Vec<String> = list.iter().map(|c| format!("{c} IS NOT NULL")).collect();
        let _ = write!(sql, " WHERE {}", conds.join(" AND "));
    }
    sql
}

/// The parent a column named like `<table>_id` / `<singular>_id` refers to: a table with a
/// one-column primary key whose name is the prefix, or its plural. Prefers the child's schema.
fn guess_parent<'a>(schema: &'a Schema, t: &TableInfo, c: &ColumnInfo) -> Option<&'a TableInfo> {
    let lower = c.name.to_ascii_lowercase();
    let stem = lower.strip_suffix("_id")?;
    if stem.is_empty() {
        return None;
    }
    let mut names = vec![stem.to_string(), format!("{stem}s"), format!("{stem}es")];
    if let Some(s) = stem.strip_suffix('y') {
        names.push(format!("{s}ies"));
    }
    let candidates: Vec<&TableInfo> = schema
        .tables
        .iter()
        .filter(|p| p.primary_key.len() == 1 && names.contains(&p.name.to_ascii_lowercase()))
        // A table's own primary key is not a reference to itself.
        .filter(|p| {
            !(p.schema == t.schema && p.name == t.name && t.primary_key == [c.name.clone()])
        })
        .collect();
    candidates
        .iter()
        .find(|p| p.schema == t.schema)
        .or_else(|| candidates.first())
        .copied()
}

fn looks_unique(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const EXACT: &[&str] = &[
        "email",
        "email_address",
        "username",
        "user_name",
        "login",
        "slug",
        "handle",
        "uuid",
        "guid",
        "sku",
        "isbn",
        "api_key",
    ];
    const NOT_KEYS: &[&str] = &[
        "sort_key",
        "partition_key",
        "primary_key",
        "foreign_key",
        "cache_key",
        "group_key",
        "order_key",
    ];
    EXACT.contains(&n.as_str())
        || n.ends_with("_uuid")
        || n.ends_with("_slug")
        || (n.ends_with("_key") && !NOT_KEYS.contains(&n.as_str()))
}

fn looks_required(name: &str) -> bool {
    const REQUIRED: &[&str] = &[
        "email",
        "email_address",
        "name",
        "full_name",
        "display_name",
        "username",
        "title",
        "status",
        "state",
        "created_at",
        "inserted_at",
    ];
    REQUIRED.contains(&name.to_ascii_lowercase().as_str())
}

/// The column to judge freshness by (`updated_at`-like first), and the SQL for the seconds
/// since its newest value — `None` when the column's type cannot be read as a time.
fn freshness_column(t: &TableInfo, d: Dialect) -> Option<(&ColumnInfo, String)> {
    const PREFERRED: &[&str] = &[
        "updated_at",
        "modified_at",
        "last_modified_at",
        "last_modified",
        "changed_at",
        "created_at",
        "inserted_at",
        "created",
    ];
    for want in PREFERRED {
        let Some(c) = t.columns.iter().find(|c| c.name.eq_ignore_ascii_case(want)) else {
            continue;
        };
        let col = ident(d, &c.name);
        let ty = c.data_type.to_ascii_lowercase();
        let is_int = ty.contains("int");
        let is_time = ty.contains("time") || ty.starts_with("date");
        let age = match d {
            Dialect::Postgres if is_time => {
                format!("EXTRACT(EPOCH FROM now() - max({col})::timestamptz)::float8")
            }
            Dialect::Postgres if is_int => {
                format!("(EXTRACT(EPOCH FROM now()) - max({col}))::float8")
            }
            Dialect::Mysql if is_time => format!("TIMESTAMPDIFF(SECOND, max({col}), NOW())"),
            Dialect::Mysql if is_int => format!("UNIX_TIMESTAMP() - max({col})"),
            // SQLite: integers are unix seconds, anything else an ISO-8601 text.
            Dialect::Sqlite if is_int => {
                format!("CAST(strftime('%s', 'now') AS INTEGER) - max({col})")
            }
            Dialect::Sqlite => format!("(julianday('now') - julianday(max({col}))) * 86400.0"),
            _ => continue,
        };
        return Some((c, age));
    }
    None
}

fn display_name(t: &TableInfo) -> String {
    match &t.schema {
        Some(s) => format!("{s}.{}", t.name),
        None => t.name.clone(),
    }
}

fn unique_id(ids: &mut HashSet<String>, want: &str) -> String {
    let mut id = want.to_string();
    let mut n = 2;
    while ids.contains(&id) {
        id = format!("{want}-{n}");
        n += 1;
    }
    ids.insert(id.clone());
    id
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

// ---- SQL identifiers --------------------------------------------------------------------

/// Words that must be quoted as identifiers in at least one of the three dialects.
const RESERVED: &[&str] = &[
    "all",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "between",
    "both",
    "by",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "cross",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "delete",
    "desc",
    "distinct",
    "do",
    "drop",
    "else",
    "end",
    "except",
    "exists",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "in",
    "index",
    "inner",
    "insert",
    "intersect",
    "interval",
    "into",
    "is",
    "join",
    "key",
    "keys",
    "leading",
    "left",
    "like",
    "limit",
    "natural",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "primary",
    "range",
    "rank",
    "read",
    "references",
    "release",
    "right",
    "row",
    "rows",
    "schema",
    "select",
    "session_user",
    "set",
    "some",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "update",
    "user",
    "using",
    "values",
    "when",
    "where",
    "window",
    "with",
];

/// An identifier as SQL of `d`: bare when it is safe, else quoted.
pub fn ident(d: Dialect, name: &str) -> String {
    let simple = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        // Postgres folds bare identifiers to lower case.
        && (d != Dialect::Postgres || !name.chars().any(|c| c.is_ascii_uppercase()))
        && !RESERVED.contains(&name.to_ascii_lowercase().as_str());
    if simple {
        return name.to_string();
    }
    match d {
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

fn qualified(d: Dialect, schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", ident(d, s), ident(d, name)),
        None => ident(d, name),
    }
}

// ---- YAML scalars -----------------------------------------------------------------------

/// A plain YAML scalar when that reads back as the same string, else double-quoted.
fn yaml_scalar(s: &str) -> String {
    const SPECIAL: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~",
    ];
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        && !s.chars().any(|c| {
            matches!(
                c,
                ':' | '#'
                    | ','
                    | '['
                    | ']'
                    | '{'
                    | '}'
                    | '&'
                    | '*'
                    | '!'
                    | '|'
                    | '>'
                    | '\''
                    | '"'
                    | '%'
                    | '@'
                    | '`'
                    | '$'
                    | '\\'
            ) || c.is_control()
        })
        && s.trim() == s
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err();
    if plain { s.to_string() } else { yaml_string(s) }
}

/// Always quoted: double quotes unless the text has some (quoted identifiers), then single.
/// `$` is doubled-up nowhere: `${…}` is interpolated from the environment in any string, so a
/// literal `${` would need care — identifiers never contain it.
fn yaml_string(s: &str) -> String {
    if !s.contains('"') && !s.contains('\\') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn yaml_key(cols: &[String]) -> String {
    if cols.len() == 1 {
        yaml_scalar(&cols[0])
    } else {
        let parts: Vec<String> = cols.iter().map(|c| yaml_scalar(c)).collect();
        format!("[{}]", parts.join(", "))
    }
}

// ---- the skeleton -----------------------------------------------------------------------

/// `invar init` without `--from`: one invariant of each common kind, commented.
pub const SKELETON: &str = r#"# invar.yaml — what must always be true about your running systems.
# Edit it, then:  invar validate   (every mistake at once: exit 0, or 3)
#                 invar run        (exit 0 held, 1 an invariant failed, 2 something could not be checked)
# Start from your own database instead:  invar init --from postgres://…  (or mysql://…, sqlite:PATH)

sources:
  # Secrets come from the environment, never from this file: ${NAME} or ${NAME:-default}.
  app:     { type: postgres, url: "${INVAR_DATABASE_URL:-postgres://app@127.0.0.1:5432/app}", timeout: 30s }
  bootlog: { type: file, path: logs/boot.log }
  # legacy: { type: mysql,  url: "${LEGACY_DATABASE_URL}" }
  # local:  { type: sqlite, path: data/app.db }            # relative to this file; opened read-only

suites:
  gate:   { select: "severity == 'critical' || 'gate' in tags" }    # invar run --suite gate
  weekly: { select: "'weekly' in tags", schedule: "0 4 * * MON", timezone: UTC }

invariants:
  # probe: the SQL selects the bad rows; every row it returns is a violation.
  - id: APP-01
    title: No order has a negative total
    severity: critical
    tags: [gate]
    runbook: Refunds are separate rows; find the writer that stored a negative total.
    probe: { source: app, sql: "SELECT id, total_cents FROM orders WHERE total_cents < 0" }

  # subset: orphans. Every order's customer exists (both sides on one source run as one anti-join).
  - id: APP-02
    title: Every order belongs to an existing customer
    severity: critical
    tags: [gate]
    runbook: Find what deleted the customer; restore it or re-home the orders.
    subset:
      each: { source: app, sql: "SELECT customer_id FROM orders WHERE customer_id IS NOT NULL", key: customer_id }
      in:   { source: app, sql: "SELECT id FROM customers", key: id }

  # conditions: skip on thin data (a skip is never a pass), fail over 1%, warn on any.
  - id: APP-03
    title: Almost every customer has an email
    tags: [weekly]
    runbook: Find the sign-up path that skips the email field.
    probe: { source: app, sql: "SELECT count(*) AS sample, count(*) - count(email) AS missing FROM customers" }
    skip_when: row.sample < 100
    fail_when: row.missing / row.sample > 0.01
    warn_when: row.missing > 0

  # lines: a known failure signature must not appear in the tail of a log.
  - id: APP-04
    title: The boot log shows no schema guard failure
    tags: [gate]
    runbook: A required migration is missing; apply it before the application boots.
    probe: { lines: { source: bootlog, match: 'schema_guard FAIL (?P<detail>.*)', tail: 1000 } }

  # subset with literal values: every required migration is applied (a boot gate).
  # - id: APP-05
  #   title: Every required migration is applied
  #   severity: critical
  #   tags: [gate]
  #   subset:
  #     each: { values: [001_init.sql, 002_payments.sql] }
  #     in:   { source: app, sql: "SELECT version FROM schema_migrations", key: version }

  # same: two probes hold exactly the same keys; keys younger than the grace are not yet a mismatch.
  # - id: APP-06
  #   title: Every paid order has one payment, and every payment a paid order
  #   same:
  #     left:  { source: app, sql: "SELECT id, updated_at FROM orders WHERE status = 'paid'", key: id, age: updated_at }
  #     right: { source: app, sql: "SELECT order_id, paid_at FROM payments", key: order_id, age: paid_at }
  #     grace: 10m

  # cost guard: decided before probing; a huge database skips (with the reason), never passes.
  # - id: APP-07
  #   title: The local database passes a quick integrity check
  #   skip_if: source.size_bytes > 5GB
  #   probe: { source: local, sql: "PRAGMA quick_check" }
  #   fail_when: row.quick_check != "ok"

  # command: argv (no shell); every_row states what each row must satisfy.
  # - id: APP-08
  #   title: No zombie processes
  #   severity: minor
  #   probe: { command: { run: [ps, -eo, "stat=,comm="], parse: lines, timeout: 10s } }
  #   every_row: "!r.line.startsWith('Z')"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use invar_sources::introspect::{ForeignKey, UniqueIndex};

    fn col(name: &str, ty: &str, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            data_type: ty.into(),
            nullable,
        }
    }

    fn shop() -> Schema {
        Schema {
            dialect: Some(Dialect::Postgres),
            tables: vec![
                TableInfo {
                    name: "customers".into(),
                    columns: vec![
                        col("id", "integer", false),
                        col("email", "text", true),
                        col("name", "text", false),
                    ],
                    primary_key: vec!["id".into()],
                    unique: vec![UniqueIndex {
                        name: "customers_pkey".into(),
                        columns: vec!["id".into()],
                        expression: None,
                        partial: false,
                    }],
                    row_estimate: Some(50_000),
                    ..TableInfo::default()
                },
                TableInfo {
                    name: "order".into(),
                    columns: vec![
                        col("id", "integer", false),
                        col("customer_id", "integer", true),
                        col("user_id", "integer", true),
                        col("updated_at", "timestamp with time zone", true),
                    ],
                    primary_key: vec!["id".into()],
                    foreign_keys: vec![ForeignKey {
                        name: Some("order_customer_fk".into()),
                        columns: vec!["customer_id".into()],
                        ref_schema: None,
                        ref_table: "customers".into(),
                        ref_columns: vec!["id".into()],
                        validated: true,
                    }],
                    row_estimate: Some(20_000),
                    ..TableInfo::default()
                },
                TableInfo {
                    name: "users".into(),
                    columns: vec![col("id", "integer", false), col("Slug", "text", true)],
                    primary_key: vec!["id".into()],
                    row_estimate: Some(10),
                    ..TableInfo::default()
                },
            ],
        }
    }

    fn spec(d: Dialect) -> SourceSpec {
        SourceSpec {
            yaml: "{ type: postgres, url: \"${INVAR_DATABASE_URL}\" }".into(),
            dialect: d,
            origin: "postgres://app:***@db/app".into(),
            url_env: Some("INVAR_DATABASE_URL".into()),
        }
    }

    #[test]
    fn generates_every_kind_with_guesses_marked() {
        let g = generate(&shop(), &spec(Dialect::Postgres));
        let y = &g.yaml;
        assert!(y.contains("- id: orphans-order-customer_id"), "{y}");
        assert!(
            y.contains(r#"each: { source: app, sql: 'SELECT customer_id FROM "order" WHERE customer_id IS NOT NULL', key: customer_id }"#),
            "{y}"
        );
        assert!(y.contains("# guess: order.user_id looks like a reference to users.id"));
        assert!(y.contains("- id: duplicates-customers-email"));
        assert!(y.contains("lower(email) AS email"));
        assert!(y.contains(r#"GROUP BY "Slug" HAVING"#), "{y}");
        assert!(y.contains("- id: missing-customers-email"));
        assert!(
            !y.contains("missing-customers-name"),
            "NOT NULL is enforced already"
        );
        assert!(y.contains("- id: fresh-order-updated_at"));
        assert!(!y.contains("fresh-users"), "small tables get no freshness");
        assert_eq!(g.summary.orphans, 2);
        assert_eq!(g.summary.guesses.len(), 5, "{:?}", g.summary.guesses);
        assert_eq!(g.summary.invariants, 6);
        assert!(
            !y.contains("postgres://app"),
            "the URL never reaches the file"
        );
    }

    #[test]
    fn composite_keys_and_quoting() {
        let mut s = shop();
        s.tables[1].foreign_keys[0].columns = vec!["customer_id".into(), "user_id".into()];
        s.tables[1].foreign_keys[0].ref_columns = vec!["id".into(), "tenant".into()];
        let y = generate(&s, &spec(Dialect::Mysql)).yaml;
        assert!(y.contains("key: [customer_id, user_id]"), "{y}");
        assert!(y.contains("SELECT id, tenant FROM customers"), "{y}");
        assert!(y.contains("FROM `order` WHERE customer_id IS NOT NULL AND user_id IS NOT NULL"));
        assert!(
            !y.contains("orphans-order-user_id"),
            "part of a declared key: no guess"
        );
    }

    #[test]
    fn target_urls() {
        assert_eq!(
            Target::parse("sqlite:///tmp/x.db").unwrap(),
            Target::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            Target::parse("sqlite:data/x.db?mode=ro").unwrap(),
            Target::Sqlite("data/x.db".into())
        );
        assert_eq!(
            Target::parse("mariadb://root@h/db").unwrap(),
            Target::Mysql("mysql://root@h/db".into())
        );
        assert!(Target::parse("redis://x").unwrap_err().contains("`redis`"));
        assert_eq!(
            Target::parse("postgres://u:pw@h/db").unwrap().redacted(),
            "postgres://u:***@h/db"
        );
    }

    #[test]
    fn scalars() {
        assert_eq!(yaml_scalar("orders"), "orders");
        assert_eq!(yaml_scalar("yes"), "\"yes\"");
        assert_eq!(yaml_scalar("a: b"), "\"a: b\"");
        assert_eq!(yaml_scalar("12"), "\"12\"");
        assert_eq!(ident(Dialect::Postgres, "Slug"), "\"Slug\"");
        assert_eq!(ident(Dialect::Sqlite, "Slug"), "Slug");
        assert_eq!(ident(Dialect::Mysql, "order"), "`order`");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
