//! `sources:` — named connections, `type`-tagged.

use crate::cx::{Cx, Fields, MAX_CONNECTIONS, MAX_KEYS, sub};
use crate::diag::one_of_hint;
use crate::yaml::{Entry, Kind, Node};
use invar_core::{
    ClientCert, FileSource, HeaderValue, HttpSource, Probe, PrometheusSource, PromqlProbe,
    PromqlRange, RedisSource, RedisTls, Secret, Source, SourceKind, SqlSource, SqliteSource,
};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

/// A source's `type`. Every kind is listed once in [`SourceType::ALL`]; each `match` on it
/// is exhaustive, so a new kind cannot silently parse as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceType {
    Postgres,
    Mysql,
    Sqlite,
    File,
    Redis,
    Http,
    Prometheus,
}

impl SourceType {
    pub const ALL: &[SourceType] = &[
        SourceType::Postgres,
        SourceType::Mysql,
        SourceType::Sqlite,
        SourceType::File,
        SourceType::Redis,
        SourceType::Http,
        SourceType::Prometheus,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SourceType::Postgres => "postgres",
            SourceType::Mysql => "mysql",
            SourceType::Sqlite => "sqlite",
            SourceType::File => "file",
            SourceType::Redis => "redis",
            SourceType::Http => "http",
            SourceType::Prometheus => "prometheus",
        }
    }

    /// The keys a source of this type may have.
    fn keys(self) -> &'static [&'static str] {
        match self {
            SourceType::Postgres | SourceType::Mysql => SQL_KEYS,
            SourceType::Sqlite => SQLITE_KEYS,
            SourceType::File => FILE_KEYS,
            SourceType::Redis => REDIS_KEYS,
            SourceType::Http => HTTP_KEYS,
            SourceType::Prometheus => PROMETHEUS_KEYS,
        }
    }

    fn names() -> Vec<&'static str> {
        SourceType::ALL.iter().map(|t| t.name()).collect()
    }
}
const SQL_KEYS: &[&str] = &["type", "url", "read_only", "timeout", "max_connections"];
const SQLITE_KEYS: &[&str] = &["type", "path", "read_only", "timeout", "max_connections"];
const FILE_KEYS: &[&str] = &["type", "path"];
const REDIS_KEYS: &[&str] = &["type", "url", "timeout", "max_keys", "tls"];
const REDIS_TLS_KEYS: &[&str] = &["ca_file", "cert_file", "key_file"];
/// A `tls` file larger than this is not a PEM certificate or key (and is not read whole).
const MAX_PEM_BYTES: u64 = 1024 * 1024;
const HTTP_KEYS: &[&str] = &["type", "base_url", "timeout", "headers"];
const PROMETHEUS_KEYS: &[&str] = &["type", "url", "timeout", "headers"];
/// The source types a `promql` probe reads.
pub(crate) const PROMQL_TYPES: &[&str] = &["prometheus"];
/// Prometheus refuses a range query of more than 11,000 points per series.
const MAX_PROMQL_POINTS: u128 = 11_000;
/// A range query without `step` asks for about this many points.
const DEFAULT_PROMQL_POINTS: u32 = 250;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CONNECTIONS: u32 = 4;
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The default key cap of a `redis` probe: past it the probe is an error, never a truncation.
pub(crate) const DEFAULT_MAX_KEYS: u64 = 100_000;

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
        table
            .types
            .insert(entry.key.clone(), ty.map(SourceType::name));
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
fn source_type(cx: &mut Cx, entry: &Entry, path: &str) -> Option<SourceType> {
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
            Some(format!(
                "expected one of: {}",
                SourceType::names().join(", ")
            )),
        );
        return None;
    };
    let tpath = sub(path, "type");
    let name = cx.string(&t.value, &tpath)?;
    if let Some(ty) = SourceType::ALL.iter().find(|t| t.name() == name) {
        return Some(*ty);
    }
    cx.err(
        t.value.pos,
        &tpath,
        format!("unknown source type `{name}`"),
        Some(one_of_hint(&name, &SourceType::names())),
    );
    None
}

fn source(cx: &mut Cx, entry: &Entry, path: &str, ty: SourceType) -> Option<SourceKind> {
    let before = cx.count();
    let f = cx.map(&entry.value, path, ty.keys(), &[])?;
    let read_only = f
        .get("read_only")
        .and_then(|e| cx.bool(&e.value, &sub(path, "read_only")));
    let timeout = f
        .get("timeout")
        .and_then(|e| cx.duration(&e.value, &sub(path, "timeout")));
    let max_connections = f
        .get("max_connections")
        .and_then(|e| cx.u32(&e.value, &sub(path, "max_connections"), 1, MAX_CONNECTIONS));
    let kind = match ty {
        SourceType::Postgres | SourceType::Mysql => {
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
            if ty == SourceType::Postgres {
                SourceKind::Postgres(sql)
            } else {
                SourceKind::Mysql(sql)
            }
        }
        SourceType::Sqlite => {
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
        SourceType::Redis => {
            // The URL is a secret (it may hold a password): never in a message.
            let url = cx
                .required(&f, "url", path)
                .and_then(|e| redis_url(cx, &e.value, &sub(path, "url")));
            let tls = f.get("tls").and_then(|e| {
                let tpath = sub(path, "tls");
                let tls = redis_tls(cx, &e.value, &tpath)?;
                if let Some((_, false)) = url {
                    let msg =
                        "`tls` needs a `rediss://` URL: this source's `url` is plain `redis://`";
                    let hint = "write the URL as `rediss://…` to connect over TLS, or remove `tls`";
                    cx.err(e.key_pos, &tpath, msg, Some(hint.into()));
                    return None;
                }
                Some(tls)
            });
            let max_keys = f
                .get("max_keys")
                .and_then(|e| cx.uint(&e.value, &sub(path, "max_keys"), 1, MAX_KEYS));
            SourceKind::Redis(RedisSource {
                url: Secret::new(url?.0),
                timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                max_keys: max_keys.unwrap_or(DEFAULT_MAX_KEYS),
                tls,
            })
        }
        SourceType::Http => {
            let base_url = cx
                .required(&f, "base_url", path)
                .and_then(|e| http_url(cx, &e.value, &sub(path, "base_url")));
            let headers = f
                .get("headers")
                .and_then(|e| headers(cx, &e.value, &sub(path, "headers")));
            SourceKind::Http(HttpSource {
                base_url: Secret::new(base_url?),
                timeout: timeout.unwrap_or(DEFAULT_HTTP_TIMEOUT),
                headers: headers.unwrap_or_default(),
            })
        }
        SourceType::Prometheus => {
            let url = cx
                .required(&f, "url", path)
                .and_then(|e| http_url(cx, &e.value, &sub(path, "url")));
            let headers = f
                .get("headers")
                .and_then(|e| headers(cx, &e.value, &sub(path, "headers")));
            SourceKind::Prometheus(PrometheusSource {
                url: Secret::new(url?),
                timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
                headers: headers.unwrap_or_default(),
            })
        }
        SourceType::File => {
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

/// An `http://` or `https://` URL (a secret: its text never goes into a message).
fn http_url(cx: &mut Cx, node: &Node, path: &str) -> Option<String> {
    let url = cx.string(node, path)?;
    let key = path.rsplit('.').next().unwrap_or(path);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        let msg = format!("`{key}` must start with `http://` or `https://`");
        cx.err(node.pos, path, msg, None);
        return None;
    }
    Some(url)
}

/// A `redis` source's `url` and whether it asks for TLS (`rediss://`). The URL is a secret:
/// no message quotes it.
fn redis_url(cx: &mut Cx, node: &Node, path: &str) -> Option<(String, bool)> {
    let url = cx.string(node, path)?;
    if url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://") {
        let msg = "Redis Sentinel (`redis+sentinel://`) is not supported";
        let hint = "point the source at the current primary (`redis://` or `rediss://`), or at a \
                    proxy that follows failovers (e.g. HAProxy or Envoy); a run reads one server";
        cx.err(node.pos, path, msg, Some(hint.into()));
        return None;
    }
    let tls = if url.starts_with("rediss://") {
        true
    } else if url.starts_with("redis://") {
        false
    } else {
        let msg = "a `redis` source's `url` must start with `redis://` or `rediss://` (TLS)";
        let hint = "e.g. `redis://:${REDIS_PASSWORD}@127.0.0.1:6379/0`, or \
                    `rediss://user:${REDIS_PASSWORD}@redis.internal:6380/0`";
        cx.err(node.pos, path, msg, Some(hint.into()));
        return None;
    };
    if tls && url.rsplit_once('#').is_some_and(|(_, f)| f == "insecure") {
        let msg = "`#insecure` (TLS without verifying the server's certificate) is not supported";
        let hint = "give the CA that signed the server's certificate: `tls: { ca_file: ca.pem }`";
        cx.err(node.pos, path, msg, Some(hint.into()));
        return None;
    }
    Some((url, tls))
}

/// `tls: { ca_file, cert_file, key_file }` of a `redis` source: paths relative to the config
/// file's directory, each checked to be a readable PEM file of the right kind now (so a typo
/// is a positioned error, not a failed run). `cert_file` and `key_file` go together.
fn redis_tls(cx: &mut Cx, node: &Node, path: &str) -> Option<RedisTls> {
    let before = cx.count();
    let f = cx.map(node, path, REDIS_TLS_KEYS, &[])?;
    let ca_file = f
        .get("ca_file")
        .and_then(|e| pem_file(cx, e, path, Pem::Certificate));
    let cert_file = f
        .get("cert_file")
        .and_then(|e| pem_file(cx, e, path, Pem::Certificate));
    let key_file = f
        .get("key_file")
        .and_then(|e| pem_file(cx, e, path, Pem::PrivateKey));
    for (has, lacks) in [("cert_file", "key_file"), ("key_file", "cert_file")] {
        if let Some(e) = f.get(has)
            && f.get(lacks).is_none()
        {
            let msg = format!(
                "`{has}` needs `{lacks}`: a client certificate and its private key go together"
            );
            let hint = "give both for mutual TLS (`tls-auth-clients` on the server), or neither";
            cx.err(e.key_pos, &sub(path, has), msg, Some(hint.into()));
        }
    }
    if cx.count() != before {
        return None;
    }
    let client = match (cert_file, key_file) {
        (Some(cert_file), Some(key_file)) => Some(ClientCert {
            cert_file,
            key_file,
        }),
        _ => None,
    };
    Some(RedisTls { ca_file, client })
}

#[derive(Clone, Copy, PartialEq)]
enum Pem {
    Certificate,
    PrivateKey,
}

/// One `tls` file: resolved against the config file's directory, and readable as PEM holding
/// at least one certificate (or a private key). Messages name the file as written and as
/// resolved; its contents never appear.
fn pem_file(cx: &mut Cx, e: &Entry, tls_path: &str, want: Pem) -> Option<PathBuf> {
    let kpath = sub(tls_path, &e.key);
    let written = cx.string(&e.value, &kpath)?;
    if written.is_empty() {
        cx.err(e.value.pos, &kpath, format!("`{}` is empty", e.key), None);
        return None;
    }
    let full = cx.file.dir.join(&written);
    let shown = if full.as_path() == std::path::Path::new(&written) {
        format!("`{written}`")
    } else {
        format!("`{written}` ({})", full.display())
    };
    let relative = std::path::Path::new(&written).is_relative();
    let where_hint = || {
        relative.then(|| {
            format!(
                "relative paths are resolved against the config file's directory, {}",
                cx.file.dir.display()
            )
        })
    };
    let read = std::fs::metadata(&full).and_then(|m| {
        if !m.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        if m.len() > MAX_PEM_BYTES {
            return Err(std::io::Error::other(format!(
                "larger than {} KiB, so not a PEM certificate or key",
                MAX_PEM_BYTES / 1024
            )));
        }
        let mut text = Vec::new();
        std::fs::File::open(&full)?
            .take(MAX_PEM_BYTES)
            .read_to_end(&mut text)?;
        Ok(text)
    });
    let text = match read {
        Ok(t) => t,
        Err(err) => {
            let msg = format!("cannot read `{}` {shown}: {err}", e.key);
            let hint = where_hint();
            cx.err(e.value.pos, &kpath, msg, hint);
            return None;
        }
    };
    let text = String::from_utf8_lossy(&text);
    let problem = match want {
        Pem::Certificate if !text.contains("-----BEGIN CERTIFICATE-----") => {
            Some("holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".to_string())
        }
        Pem::PrivateKey if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") => Some(
            "holds an encrypted private key, which cannot be used: decrypt it first \
             (`openssl pkey -in key.pem -out key-plain.pem`)"
                .to_string(),
        ),
        Pem::PrivateKey
            if ![
                "PRIVATE KEY-----",
                "RSA PRIVATE KEY-----",
                "EC PRIVATE KEY-----",
            ]
            .iter()
            .any(|m| text.contains(&format!("-----BEGIN {m}"))) =>
        {
            Some("holds no PEM private key (`-----BEGIN PRIVATE KEY-----`)".to_string())
        }
        _ => None,
    };
    if let Some(problem) = problem {
        cx.err(
            e.value.pos,
            &kpath,
            format!("`{}` {shown} {problem}", e.key),
            None,
        );
        return None;
    }
    Some(full)
}

/// `headers: { Name: value }` — names checked to be header tokens, values kept as secrets
/// (their text never goes into a message).
pub(crate) fn headers(cx: &mut Cx, node: &Node, path: &str) -> Option<Vec<(String, HeaderValue)>> {
    let before = cx.count();
    let entries = cx.any_map(node, path)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let hpath = sub(path, &e.key);
        let token = !e.key.is_empty()
            && e.key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            let msg = format!("`{}` is not a valid header name", e.key);
            cx.err(
                e.key_pos,
                &hpath,
                msg,
                Some("letters, digits and `-`".into()),
            );
            continue;
        }
        if let Some(v) = cx.string(&e.value, &hpath) {
            if v.contains(['\r', '\n']) {
                cx.err(e.value.pos, &hpath, "a header value must be one line", None);
                continue;
            }
            out.push((e.key.clone(), HeaderValue::new(v)));
        }
    }
    (cx.count() == before).then_some(out)
}

/// A `promql` probe's `promql: "…"`, `range` and `step`, on `source` (resolved by the caller).
pub(crate) fn promql_probe(
    cx: &mut Cx,
    f: &Fields,
    query: &Node,
    path: &str,
    source: Option<String>,
) -> Option<Probe> {
    let before = cx.count();
    let qpath = sub(path, "promql");
    let q = cx.string(query, &qpath).and_then(|q| {
        if q.trim().is_empty() {
            cx.err(
                query.pos,
                &qpath,
                "`promql` must be a query, found an empty string",
                None,
            );
            return None;
        }
        Some(q)
    });
    let range = f
        .get("range")
        .and_then(|e| Some((e, cx.duration(&e.value, &sub(path, "range"))?)));
    let step = f
        .get("step")
        .and_then(|e| Some((e, cx.duration(&e.value, &sub(path, "step"))?)));
    let range = match (range, step) {
        (None, None) => None,
        (None, Some((e, _))) => {
            let msg = "`step` needs a `range` (an instant query has no step)";
            let hint = "add `range: 1h` for a range query, or remove `step`";
            cx.err(e.key_pos, &sub(path, "step"), msg, Some(hint.into()));
            None
        }
        (Some((e, r)), step) => promql_range(cx, path, (e, r), step),
    };
    if cx.count() > before {
        return None;
    }
    Some(Probe::Promql(PromqlProbe {
        source: source?,
        query: q?,
        range,
    }))
}

/// A range and its step: both positive, at most [`MAX_PROMQL_POINTS`] points; without a step,
/// about [`DEFAULT_PROMQL_POINTS`] points (whole seconds, at least 1s).
fn promql_range(
    cx: &mut Cx,
    path: &str,
    (re, range): (&Entry, Duration),
    step: Option<(&Entry, Duration)>,
) -> Option<PromqlRange> {
    if range.is_zero() {
        cx.err(
            re.value.pos,
            &sub(path, "range"),
            "`range` must be longer than 0s",
            None,
        );
        return None;
    }
    let step = match step {
        None => Duration::from_secs((range / DEFAULT_PROMQL_POINTS).as_secs().max(1)),
        Some((se, step)) => {
            let spath = sub(path, "step");
            if step.is_zero() {
                cx.err(se.value.pos, &spath, "`step` must be longer than 0s", None);
                return None;
            }
            let points = range.as_millis() / step.as_millis().max(1);
            if points > MAX_PROMQL_POINTS {
                let msg = format!(
                    "`range` / `step` is {points} points; Prometheus allows at most {MAX_PROMQL_POINTS}"
                );
                cx.err(
                    se.value.pos,
                    &spath,
                    msg,
                    Some("use a longer `step`".into()),
                );
                return None;
            }
            step
        }
    };
    Some(PromqlRange { range, step })
}
