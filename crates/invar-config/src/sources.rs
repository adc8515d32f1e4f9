//! `sources:` — named connections, `type`-tagged.

use crate::cx::{Cx, sub};
use crate::diag::one_of_hint;
use crate::yaml::{Entry, Kind, Node};
use invar_core::{FileSource, Secret, Source, SourceKind, SqlSource, SqliteSource};
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) const SOURCE_TYPES: &[&str] = &["postgres", "mysql", "sqlite", "file"];
const LATER_TYPES: &[&str] = &["redis", "http"];
const SQL_KEYS: &[&str] = &["type", "url", "read_only", "timeout", "max_connections"];
const SQLITE_KEYS: &[&str] = &["type", "path", "read_only", "timeout", "max_connections"];
const FILE_KEYS: &[&str] = &["type", "path"];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CONNECTIONS: u32 = 4;

/// Every source name seen in any file, with its type when that type is valid (so references
/// to a source whose definition has mistakes do not cascade into more errors).
#[derive(Default)]
pub(crate) struct SourceTable {
    pub types: BTreeMap<String, Option<&'static str>>,
    /// Where each name was first defined (`file:line`), for duplicate messages.
    pub defined_at: BTreeMap<String, String>,
}

impl SourceTable {
    pub fn names(&self) -> Vec<&str> {
        self.types.keys().map(String::as_str).collect()
    }
}

/// Reads a `sources:` block, recording every name in `table` and every valid source in `out`.
pub(crate) fn sources(
    cx: &mut Cx,
    node: &Node,
    table: &mut SourceTable,
    out: &mut BTreeMap<String, Source>,
) {
    let entries = match &node.kind {
        Kind::Map(entries) => entries,
        Kind::Null => return,
        _ => {
            let msg = format!(
                "`sources` must be a map of names to sources, found {}",
                node.describe()
            );
            cx.err(node.pos, "sources", msg, None);
            return;
        }
    };
    for entry in entries {
        let path = sub("sources", &entry.key);
        let here = format!("{}:{}", cx.file.display.display(), entry.key_pos.line);
        if let Some(first) = table.defined_at.get(&entry.key) {
            let msg = format!("duplicate source name `{}`", entry.key);
            cx.err(
                entry.key_pos,
                &path,
                msg,
                Some(format!("`{}` is first defined at {first}", entry.key)),
            );
            continue;
        }
        table.defined_at.insert(entry.key.clone(), here);
        let ty = source_type(cx, entry, &path);
        table.types.insert(entry.key.clone(), ty);
        if let Some(ty) = ty
            && let Some(kind) = source(cx, entry, &path, ty)
        {
            out.insert(
                entry.key.clone(),
                Source {
                    name: entry.key.clone(),
                    kind,
                },
            );
        }
    }
}

/// The `type` of a source, when it is present and supported.
fn source_type(cx: &mut Cx, entry: &Entry, path: &str) -> Option<&'static str> {
    let Kind::Map(fields) = &entry.value.kind else {
        let msg = format!(
            "source `{}` must be a map with a `type`, found {}",
            entry.key,
            entry.value.describe()
        );
        cx.err(entry.value.pos, path, msg, None);
        return None;
    };
    let Some(t) = fields.iter().find(|e| e.key == "type") else {
        let msg = format!("source `{}` has no `type`", entry.key);
        cx.err(
            entry.value.pos,
            path,
            msg,
            Some(format!("expected one of: {}", SOURCE_TYPES.join(", "))),
        );
        return None;
    };
    let tpath = sub(path, "type");
    let name = cx.string(&t.value, &tpath)?;
    if let Some(ty) = SOURCE_TYPES.iter().find(|s| **s == name) {
        return Some(ty);
    }
    if LATER_TYPES.contains(&name.as_str()) {
        let hint = format!("expected one of: {}", SOURCE_TYPES.join(", "));
        cx.err(
            t.value.pos,
            &tpath,
            format!("source type `{name}` is not supported yet"),
            Some(hint),
        );
    } else {
        cx.err(
            t.value.pos,
            &tpath,
            format!("unknown source type `{name}`"),
            Some(one_of_hint(&name, SOURCE_TYPES)),
        );
    }
    None
}

fn source(cx: &mut Cx, entry: &Entry, path: &str, ty: &str) -> Option<SourceKind> {
    let before = cx.count();
    let allowed = match ty {
        "postgres" | "mysql" => SQL_KEYS,
        "sqlite" => SQLITE_KEYS,
        _ => FILE_KEYS,
    };
    let f = cx.map(&entry.value, path, allowed, &[])?;
    let read_only = f
        .get("read_only")
        .and_then(|e| cx.bool(&e.value, &sub(path, "read_only")));
    let timeout = f
        .get("timeout")
        .and_then(|e| cx.duration(&e.value, &sub(path, "timeout")));
    let max_connections = f
        .get("max_connections")
        .and_then(|e| cx.u32(&e.value, &sub(path, "max_connections"), 1));
    let kind = match ty {
        "postgres" | "mysql" => {
            // The URL is a secret: its value never goes into a message.
            let url = cx
                .required(&f, "url", path)
                .and_then(|e| cx.string(&e.value, &sub(path, "url")));
            let sql = SqlSource {
                url: Secret::new(url?),
                read_only: read_only.unwrap_or(true),
                timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                max_connections: max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            };
            if ty == "postgres" {
                SourceKind::Postgres(sql)
            } else {
                SourceKind::Mysql(sql)
            }
        }
        "sqlite" => {
            let p = cx
                .required(&f, "path", path)
                .and_then(|e| cx.string(&e.value, &sub(path, "path")));
            SourceKind::Sqlite(SqliteSource {
                path: cx.file.dir.join(p?),
                read_only: read_only.unwrap_or(true),
                timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                max_connections: max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            })
        }
        _ => {
            let p = cx
                .required(&f, "path", path)
                .and_then(|e| cx.string(&e.value, &sub(path, "path")));
            SourceKind::File(FileSource {
                path: cx.file.dir.join(p?),
            })
        }
    };
    (cx.count() == before).then_some(kind)
}
