//! invar-config: reads `invar.yaml` (with its includes and `${VAR}`s) into the validated
//! [`invar_core::Config`], or reports every mistake at once.
//!
//! It owns the path from text to model: a positioned YAML tree built from `saphyr-parser`
//! events (serde would stop at the first error), environment interpolation, `include:` globs,
//! and small typed extractors that push a [`Diagnostic`] — file, line:col, key path, message,
//! hint — and carry on. Conditions are compiled here, so a CEL mistake is a config error with
//! its position, never a runtime surprise. It does no network I/O; it only reads the config
//! files themselves.

mod alerts;
mod cx;
mod diag;
mod glob;
mod history;
mod interp;
mod invariants;
mod probes;
mod server;
mod silences;
mod sources;
mod suites;
mod yaml;

pub use diag::{Diagnostic, Diagnostics};

use cx::{Cx, File};
use invar_core::Config;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use yaml::{Entry, Kind, Node, Pos};

const TOP_KEYS: &[&str] = &[
    "sources",
    "invariants",
    "suites",
    "include",
    "alerts",
    "store",
    "server",
    "retention",
    "silences",
];
const INCLUDED_KEYS: &[&str] = &["sources", "invariants"];

/// Loads the config at `path`, reading `${VAR}`s from the process environment.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    load_with_env(path, &|name| std::env::var(name).ok())
}

/// Loads the config at `path`, reading `${VAR}`s from `env`.
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Diagnostics> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_from_str(path, &text, env),
        Err(e) => {
            let diags = vec![Diagnostic {
                file: path.to_path_buf(),
                line: 1,
                col: 1,
                key_path: String::new(),
                message: format!("cannot read `{}`: {}", path.display(), glob::io_reason(&e)),
                hint: None,
                len: 1,
                source_line: None,
            }];
            Err(Diagnostics { items: diags })
        }
    }
}

/// Loads a config whose main file holds `text` and is named `path` (its includes and
/// relative paths resolve against `path`'s directory, as for [`load_with_env`]). For tests
/// and fuzzing: it reads no file but the includes.
pub fn load_from_str(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Diagnostics> {
    let mut diags = Vec::new();
    let main = parse_file(path.to_path_buf(), text, &mut diags);

    let mut files = vec![main];
    let includes = {
        let mut cx = Cx {
            file: &files[0],
            env,
            diags: &mut diags,
        };
        check_top_keys(&mut cx, TOP_KEYS, false);
        include_list(&mut cx)
    };
    read_includes(&mut files, includes, env, &mut diags);

    let mut table = sources::SourceTable::default();
    let mut config_sources = BTreeMap::new();
    for file in &files {
        if let Some(node) = top(file, "sources") {
            let mut cx = Cx {
                file,
                env,
                diags: &mut diags,
            };
            sources::sources(&mut cx, node, &mut table, &mut config_sources);
        }
    }
    let mut ids = invariants::Ids::new();
    let mut config_invariants = Vec::new();
    for file in &files {
        if let Some(node) = top(file, "invariants") {
            let mut cx = Cx {
                file,
                env,
                diags: &mut diags,
            };
            invariants::invariants(&mut cx, node, &table, &mut ids, &mut config_invariants);
        }
    }
    let config_suites = {
        let mut cx = Cx {
            file: &files[0],
            env,
            diags: &mut diags,
        };
        suites::suites(&mut cx, top(&files[0], "suites"))
    };
    let (config_alerts, config_store, config_retention) = {
        let mut cx = Cx {
            file: &files[0],
            env,
            diags: &mut diags,
        };
        let sinks = alerts::alerts(&mut cx, top(&files[0], "alerts"));
        let store = alerts::store(&mut cx, top(&files[0], "store"));
        let retention = alerts::retention(&mut cx, top(&files[0], "retention"));
        (sinks, store, retention)
    };
    let (config_server, config_silences) = {
        let mut cx = Cx {
            file: &files[0],
            env,
            diags: &mut diags,
        };
        let server = server::server(&mut cx, top(&files[0], "server"));
        let silences = silences::silences(&mut cx, top(&files[0], "silences"));
        (server, silences)
    };
    if top(&files[0], "alerts").is_some() || config_invariants.iter().any(|i| !i.alerts.is_empty())
    {
        alerts::check_sink_names(&config_invariants, &config_alerts, &mut diags);
    }

    alerts::mask_literal_secrets(&files[0], &mut diags);
    if !diags.is_empty() {
        let order: Vec<&PathBuf> = files.iter().map(|f| &f.display).collect();
        let rank = |d: &Diagnostic| order.iter().position(|p| **p == d.file).unwrap_or(0);
        diags.sort_by_key(|d| (rank(d), d.line, d.col));
        return Err(Diagnostics { items: diags });
    }
    Ok(Config {
        path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        sources: config_sources,
        invariants: config_invariants,
        suites: config_suites,
        alerts: config_alerts,
        store: config_store.unwrap_or_default(),
        retention: config_retention,
        server: config_server,
        silences: config_silences,
        invariant_index: Default::default(),
    })
}

/// Parses one file's text; YAML mistakes are pushed as diagnostics in that file.
fn parse_file(display: PathBuf, text: &str, diags: &mut Vec<Diagnostic>) -> File {
    let parent = display.parent().unwrap_or(Path::new(""));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
    let (root, errors) = yaml::parse(text);
    let mut file = File {
        display,
        dir,
        lines: text.lines().map(str::to_string).collect(),
        root: None,
    };
    {
        let mut cx = Cx {
            file: &file,
            env: &|_| None,
            diags,
        };
        for e in errors {
            // An error at the end of the file points just after its last character.
            let (line, col) = match cx.file.lines.len() {
                n if n > 0 && e.line > n => (n, cx.file.lines[n - 1].chars().count()),
                _ => (e.line, e.col),
            };
            cx.error_at(line, col, e.len, "", e.message, e.hint);
        }
        if let Some(r) = &root
            && !matches!(r.kind, Kind::Map(_) | Kind::Null)
        {
            let msg = format!(
                "a config file must be a map of top-level keys, found {}",
                r.describe()
            );
            cx.err(
                r.pos,
                "",
                msg,
                Some(format!("expected keys such as: {}", TOP_KEYS.join(", "))),
            );
        }
    }
    file.root = root.filter(|r| matches!(r.kind, Kind::Map(_)));
    file
}

fn top_entries(file: &File) -> &[Entry] {
    match file.root.as_ref().map(|r| &r.kind) {
        Some(Kind::Map(entries)) => entries,
        _ => &[],
    }
}

fn top<'f>(file: &'f File, key: &str) -> Option<&'f Node> {
    top_entries(file)
        .iter()
        .find(|e| e.key == key)
        .map(|e| &e.value)
}

/// Unknown top-level keys; in an included file, only `invariants` and `sources`.
fn check_top_keys(cx: &mut Cx, allowed: &[&str], included: bool) {
    for e in top_entries(cx.file) {
        if allowed.contains(&e.key.as_str()) {
            continue;
        }
        if included && TOP_KEYS.contains(&e.key.as_str()) {
            let msg = format!("`{}` is only allowed in the main config file", e.key);
            cx.err(
                e.key_pos,
                &e.key,
                msg,
                Some(format!("an included file may hold: {}", allowed.join(", "))),
            );
        } else {
            let hint = diag::one_of_hint(&e.key, allowed);
            cx.err(
                e.key_pos,
                &e.key,
                format!("unknown top-level key `{}`", e.key),
                Some(hint),
            );
        }
    }
}

/// One file to include, with the include entry that named it (for errors).
struct Include {
    path: PathBuf,
    pos: Pos,
    key_path: String,
}

/// Expands the main file's `include:` globs, relative to it.
fn include_list(cx: &mut Cx) -> Vec<Include> {
    let Some(node) = top(cx.file, "include") else {
        return Vec::new();
    };
    let items = match &node.kind {
        Kind::Seq(items) => items,
        Kind::Null => return Vec::new(),
        _ => {
            let msg = format!(
                "`include` must be a list of paths or globs, found {}",
                node.describe()
            );
            cx.err(
                node.pos,
                "include",
                msg,
                Some("write a list, e.g. `include: [checks/*.yaml]`".into()),
            );
            return Vec::new();
        }
    };
    let base = cx
        .file
        .display
        .parent()
        .unwrap_or(Path::new(""))
        .to_path_buf();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key_path = format!("include[{i}]");
        let Some(pattern) = cx.string(item, &key_path) else {
            continue;
        };
        match glob::expand(&base, &pattern) {
            Ok(paths) => out.extend(paths.into_iter().map(|path| Include {
                path,
                pos: item.pos,
                key_path: key_path.clone(),
            })),
            Err(msg) => cx.err(item.pos, &key_path, msg, None),
        }
    }
    out
}

/// Reads every included file once, refusing the main file itself (a cycle).
fn read_includes(
    files: &mut Vec<File>,
    includes: Vec<Include>,
    env: &dyn Fn(&str) -> Option<String>,
    diags: &mut Vec<Diagnostic>,
) {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let main = canonical(&files[0].display);
    let mut seen = HashSet::from([main.clone()]);
    for inc in includes {
        let real = canonical(&inc.path);
        if real == main {
            let mut cx = Cx {
                file: &files[0],
                env,
                diags,
            };
            let msg = format!(
                "the config includes itself through `{}`",
                inc.path.display()
            );
            let hint = "an include cycle: narrow the pattern so it does not match the main file"
                .to_string();
            cx.err(inc.pos, &inc.key_path, msg, Some(hint));
            continue;
        }
        if !seen.insert(real) {
            // Two patterns matched the same file: read it once.
            continue;
        }
        match std::fs::read_to_string(&inc.path) {
            Ok(text) => {
                let file = parse_file(inc.path, &text, diags);
                let mut cx = Cx {
                    file: &file,
                    env,
                    diags,
                };
                check_top_keys(&mut cx, INCLUDED_KEYS, true);
                files.push(file);
            }
            Err(e) => {
                let mut cx = Cx {
                    file: &files[0],
                    env,
                    diags,
                };
                let msg = format!(
                    "cannot read included file `{}`: {}",
                    inc.path.display(),
                    glob::io_reason(&e)
                );
                cx.err(inc.pos, &inc.key_path, msg, None);
            }
        }
    }
}

#[cfg(test)]
mod tests;
