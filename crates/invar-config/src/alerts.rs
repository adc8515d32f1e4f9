//! `alerts:` (named sinks), `store:` and `retention:` — where incident notices go and where
//! history lives.
//!
//! Webhook URLs and SMTP URLs are secrets: their values become [`Secret`]s at once and never
//! appear in a diagnostic (the echoed source line has them replaced by `***`).

use crate::cx::{Cx, File, sub};
use crate::diag::one_of_hint;
use crate::yaml::{Entry, Kind, Node};
use invar_core::{AlertSink, Invariant, Retention, Secret, Severity, SinkKind, StoreSpec};
use std::path::PathBuf;
use std::time::Duration;

const SINK_TYPES: &[&str] = &["slack", "webhook", "email"];
const COMMON_KEYS: &[&str] = &["type", "min_severity", "send_resolved", "repeat", "timeout"];
const SLACK_KEYS: &[&str] = &["webhook_url"];
const WEBHOOK_KEYS: &[&str] = &["url"];
const EMAIL_KEYS: &[&str] = &["smtp_url", "from", "to"];
const SECRET_KEYS: &[&str] = &["webhook_url", "url", "smtp_url"];
const RETENTION_KEYS: &[&str] = &["runs", "violations"];
const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads `alerts:`: a map of sink names to sinks, in file order.
pub(crate) fn alerts(cx: &mut Cx, node: Option<&Node>) -> Vec<AlertSink> {
    let entries = match node.map(|n| (n, &n.kind)) {
        None | Some((_, Kind::Null)) => return Vec::new(),
        Some((_, Kind::Map(entries))) => entries,
        Some((n, _)) => {
            let msg = format!(
                "`alerts` must be a map of names to sinks, found {}",
                n.describe()
            );
            let hint = "e.g. `alerts: { ops: { type: slack, webhook_url: \"${SLACK_URL}\" } }`";
            cx.err(n.pos, "alerts", msg, Some(hint.into()));
            return Vec::new();
        }
    };
    entries
        .iter()
        .filter_map(|e| sink(cx, e, &sub("alerts", &e.key)))
        .collect()
}

fn sink(cx: &mut Cx, entry: &Entry, path: &str) -> Option<AlertSink> {
    let before = cx.count();
    let Kind::Map(fields) = &entry.value.kind else {
        let msg = format!(
            "alert sink `{}` must be a map with a `type`, found {}",
            entry.key,
            entry.value.describe()
        );
        cx.err(entry.value.pos, path, msg, None);
        return None;
    };
    let Some(t) = fields.iter().find(|e| e.key == "type") else {
        let msg = format!("alert sink `{}` has no `type`", entry.key);
        let hint = format!("expected one of: {}", SINK_TYPES.join(", "));
        cx.err(entry.value.pos, path, msg, Some(hint));
        return None;
    };
    let tpath = sub(path, "type");
    let ty = cx.string(&t.value, &tpath)?;
    let specific = match ty.as_str() {
        "slack" => SLACK_KEYS,
        "webhook" => WEBHOOK_KEYS,
        "email" => EMAIL_KEYS,
        _ => {
            let msg = format!("unknown alert sink type `{ty}`");
            cx.err(t.value.pos, &tpath, msg, Some(one_of_hint(&ty, SINK_TYPES)));
            return None;
        }
    };
    let allowed: Vec<&str> = COMMON_KEYS.iter().chain(specific).copied().collect();
    let f = cx.map(&entry.value, path, &allowed, &[])?;

    let min_severity = f.get("min_severity").and_then(|e| {
        cx.choice(
            &e.value,
            &sub(path, "min_severity"),
            "severity",
            &["minor", "major", "critical"],
        )
    });
    let send_resolved = f
        .get("send_resolved")
        .and_then(|e| cx.bool(&e.value, &sub(path, "send_resolved")));
    let repeat = f
        .get("repeat")
        .and_then(|e| cx.duration(&e.value, &sub(path, "repeat")));
    let timeout = f
        .get("timeout")
        .and_then(|e| cx.duration(&e.value, &sub(path, "timeout")));

    let kind = match ty.as_str() {
        "slack" => secret_url(cx, &f, "webhook_url", path, &["https", "http"])
            .map(|webhook_url| SinkKind::Slack { webhook_url }),
        "webhook" => {
            secret_url(cx, &f, "url", path, &["https", "http"]).map(|url| SinkKind::Webhook { url })
        }
        _ => {
            let smtp_url = secret_url(cx, &f, "smtp_url", path, &["smtp", "smtps"]);
            let from = cx
                .required(&f, "from", path)
                .and_then(|e| cx.string(&e.value, &sub(path, "from")));
            let to = cx
                .required(&f, "to", path)
                .and_then(|e| cx.string_list(&e.value, &sub(path, "to")));
            if let Some(e) = f.get("to")
                && to.as_ref().is_some_and(Vec::is_empty)
            {
                let msg = "`to` must name at least one recipient";
                cx.err(e.value.pos, &sub(path, "to"), msg, None);
            }
            match (smtp_url, from, to) {
                (Some(smtp_url), Some(from), Some(to)) => {
                    Some(SinkKind::Email { smtp_url, from, to })
                }
                _ => None,
            }
        }
    };
    if cx.count() > before {
        return None;
    }
    Some(AlertSink {
        name: entry.key.clone(),
        kind: kind?,
        min_severity: match min_severity {
            Some("major") => Severity::Major,
            Some("critical") => Severity::Critical,
            _ => Severity::Minor,
        },
        send_resolved: send_resolved.unwrap_or(true),
        repeat,
        timeout: timeout.unwrap_or(DEFAULT_SINK_TIMEOUT),
    })
}

/// A required URL that is a secret: checked for its scheme, never echoed.
fn secret_url(
    cx: &mut Cx,
    f: &crate::cx::Fields,
    key: &str,
    path: &str,
    schemes: &[&str],
) -> Option<Secret> {
    let e = cx.required(f, key, path)?;
    let kpath = sub(path, key);
    let before = cx.count();
    let value = cx.string(&e.value, &kpath);
    if let Some(v) = &value {
        let scheme = v.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let ok = scheme
            .as_deref()
            .is_some_and(|s| schemes.contains(&s) && v.len() > s.len() + 3);
        if !ok {
            let shown: Vec<String> = schemes.iter().map(|s| format!("{s}://…")).collect();
            let msg = format!("`{key}` must be a URL starting with {}", shown.join(" or "));
            cx.err(
                e.value.pos,
                &kpath,
                msg,
                Some("its value is not shown: it is a secret".into()),
            );
        }
    }
    if cx.count() > before {
        return None;
    }
    value.map(Secret::new)
}

/// Reads `store:`: `sqlite://PATH` (relative to the config file), `postgres://…`, or a bare
/// path. Without `store:`, `.invar/history.db` next to the config file.
pub(crate) fn store(cx: &mut Cx, node: Option<&Node>) -> Option<StoreSpec> {
    let Some(node) = node else {
        return Some(StoreSpec::Sqlite {
            path: cx.file.dir.join(".invar/history.db"),
        });
    };
    let before = cx.count();
    let v = cx.string(node, "store")?;
    let lower = v.to_ascii_lowercase();
    let spec = if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Some(StoreSpec::Postgres {
            url: Secret::new(v.clone()),
        })
    } else if let Some(rest) = v
        .strip_prefix("sqlite://")
        .or_else(|| v.strip_prefix("sqlite:"))
    {
        let rest = rest.split('?').next().unwrap_or("");
        if rest.is_empty() {
            cx.err(
                node.pos,
                "store",
                "`store` names no file",
                Some("e.g. `store: sqlite://.invar/history.db`".into()),
            );
            None
        } else {
            Some(StoreSpec::Sqlite {
                path: cx.file.dir.join(PathBuf::from(rest)),
            })
        }
    } else if v.contains("://") {
        cx.err(
            node.pos,
            "store",
            "`store` must be `sqlite://PATH` or `postgres://…`",
            Some("the history store supports SQLite (default) and Postgres".into()),
        );
        None
    } else {
        Some(StoreSpec::Sqlite {
            path: cx.file.dir.join(&v),
        })
    };
    (cx.count() == before).then_some(spec).flatten()
}

/// Reads `retention: { runs: 90d, violations: 365d }`.
pub(crate) fn retention(cx: &mut Cx, node: Option<&Node>) -> Retention {
    let mut r = Retention::default();
    let Some(node) = node else { return r };
    let Some(f) = cx.map(node, "retention", RETENTION_KEYS, &[]) else {
        return r;
    };
    if let Some(d) = f
        .get("runs")
        .and_then(|e| cx.duration(&e.value, "retention.runs"))
    {
        r.runs = d;
    }
    if let Some(d) = f
        .get("violations")
        .and_then(|e| cx.duration(&e.value, "retention.violations"))
    {
        r.violations = d;
    }
    r
}

fn raw_literal(n: &Node) -> Option<&str> {
    match &n.kind {
        Kind::Scalar(s, _) if !s.contains("${") && s.len() >= 4 => Some(s.as_str()),
        _ => None,
    }
}

/// Replaces secret literals written straight into the main file (`webhook_url: https://…`)
/// in every echoed source line, whichever mistake is reported on that line.
pub(crate) fn mask_literal_secrets(file: &File, diags: &mut [crate::Diagnostic]) {
    let mut literals: Vec<&str> = Vec::new();
    if let Some(Kind::Map(top)) = file.root.as_ref().map(|r| &r.kind) {
        for e in top {
            if e.key == "store" {
                literals.extend(raw_literal(&e.value));
            }
            if e.key == "server"
                && let Kind::Map(fields) = &e.value.kind
            {
                literals.extend(
                    fields
                        .iter()
                        .filter(|f| f.key.ends_with("_token"))
                        .filter_map(|f| raw_literal(&f.value)),
                );
            }
            if e.key == "alerts"
                && let Kind::Map(sinks) = &e.value.kind
            {
                for s in sinks {
                    if let Kind::Map(fields) = &s.value.kind {
                        literals.extend(
                            fields
                                .iter()
                                .filter(|f| SECRET_KEYS.contains(&f.key.as_str()))
                                .filter_map(|f| raw_literal(&f.value)),
                        );
                    }
                }
            }
        }
    }
    for d in diags.iter_mut().filter(|d| d.file == file.display) {
        if let Some(line) = &mut d.source_line {
            for lit in &literals {
                *line = line.replace(lit, "***");
            }
        }
    }
}

/// Every sink an invariant names under `alerts:` must exist.
pub(crate) fn check_sink_names(
    invariants: &[Invariant],
    sinks: &[AlertSink],
    diags: &mut Vec<crate::Diagnostic>,
) {
    let names: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
    for inv in invariants {
        for name in &inv.alerts {
            if names.contains(&name.as_str()) {
                continue;
            }
            let (file, line) = match inv.defined_at.rsplit_once(':') {
                Some((f, l)) => (PathBuf::from(f), l.parse().unwrap_or(1)),
                None => (PathBuf::from(&inv.defined_at), 1),
            };
            let hint = if names.is_empty() {
                "no sinks are defined: add them under the top-level `alerts:`".to_string()
            } else {
                one_of_hint(name, &names)
            };
            diags.push(crate::Diagnostic {
                file,
                line,
                col: 1,
                key_path: format!("invariants.{}.alerts", inv.id),
                message: format!("invariant `{}` names unknown alert sink `{name}`", inv.id),
                hint: Some(hint),
                len: 1,
                source_line: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::load_with_env;
    use invar_core::{Severity, SinkKind, StoreSpec};
    use std::time::Duration;

    fn load(text: &str) -> Result<invar_core::Config, crate::Diagnostics> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("invar.yaml");
        std::fs::write(&p, text).unwrap();
        let env = |n: &str| match n {
            "HOOK" => Some("https://hooks.example.com/services/T0/B0/tok3nSECRET".to_string()),
            "SMTP" => Some("smtps://user:pa55word@mail.example.com:465".to_string()),
            _ => None,
        };
        load_with_env(&p, &env)
    }

    #[test]
    fn sinks_store_and_retention_load() {
        let c = load(
            r#"
alerts:
  ops:   { type: slack, webhook_url: "${HOOK}", min_severity: major, repeat: 4h }
  pager: { type: webhook, url: "${HOOK}", send_resolved: false, timeout: 3s }
  mail:  { type: email, smtp_url: "${SMTP}", from: invar@example.com, to: [ops@example.com] }
store: sqlite://state/h.db
retention: { runs: 30d }
"#,
        )
        .unwrap();
        assert_eq!(c.alerts.len(), 3);
        assert_eq!(c.alerts[0].name, "ops");
        assert_eq!(c.alerts[0].min_severity, Severity::Major);
        assert_eq!(c.alerts[0].repeat, Some(Duration::from_secs(4 * 3600)));
        assert!(c.alerts[0].send_resolved);
        assert!(!c.alerts[1].send_resolved);
        assert_eq!(c.alerts[1].timeout, Duration::from_secs(3));
        assert!(matches!(&c.alerts[2].kind, SinkKind::Email { to, .. } if to.len() == 1));
        assert!(!format!("{:?}", c.alerts).contains("tok3nSECRET"));
        assert!(!format!("{:?}", c.alerts).contains("pa55word"));
        match &c.store {
            StoreSpec::Sqlite { path } => {
                assert!(path.is_absolute() && path.ends_with("state/h.db"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.retention.runs, Duration::from_secs(30 * 86400));
        assert_eq!(c.retention.violations, Duration::from_secs(365 * 86400));
    }

    #[test]
    fn default_store_is_next_to_the_config() {
        let c = load("invariants: []\n").unwrap();
        match &c.store {
            StoreSpec::Sqlite { path } => {
                assert!(path.is_absolute() && path.ends_with(".invar/history.db"))
            }
            other => panic!("{other:?}"),
        }
        assert!(c.alerts.is_empty());
    }

    #[test]
    fn mistakes_are_reported_without_the_secret() {
        let d = load(
            r#"
alerts:
  ops: { type: slack, webhook_url: "ftp://x:tok3nSECRET@h/p", min_severity: high }
  bad: { type: pagerduty }
  mail: { type: email, smtp_url: "https://nope.example/tok3nSECRET", to: [] }
store: postgres://u:tok3nSECRET@db/x
retention: { runs: forever, keep: 1 }
"#,
        )
        .unwrap_err();
        let text = d.render(false);
        assert!(!text.contains("tok3nSECRET"), "{text}");
        for needle in [
            "`webhook_url` must be a URL starting with https://… or http://…",
            "unknown severity `high`",
            "unknown alert sink type `pagerduty`",
            "`mail` is missing required key `from`",
            "`to` must name at least one recipient",
            "`smtp_url` must be a URL starting with smtp://… or smtps://…",
            "invalid duration `forever`",
            "unknown key `keep`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn invariants_name_existing_sinks() {
        let d = load(
            r#"
alerts:
  ops: { type: webhook, url: "https://h.example/x" }
invariants:
  - id: A
    title: a
    alerts: [opz]
    probe: { values: [x] }
"#,
        )
        .unwrap_err();
        let text = d.render(false);
        assert!(
            text.contains("invariant `A` names unknown alert sink `opz`"),
            "{text}"
        );
        assert!(text.contains("did you mean `ops`?"), "{text}");
    }
}
