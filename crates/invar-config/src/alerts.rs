//! `alerts:` (named sinks), `store:` and `retention:` — where incident notices go and where
//! history lives.
//!
//! Webhook URLs, SMTP URLs, Alertmanager URLs and headers are secrets, and so is PagerDuty's
//! routing key (a [`SecretToken`]: not a URL): their values become secret types at once and
//! never appear in a diagnostic (the echoed source line has them replaced by `***`).

use crate::cx::{Cx, Fields, File, sub};
use crate::diag::one_of_hint;
use crate::yaml::{Entry, Kind, Node};
use invar_core::{
    AlertSink, AlertmanagerSink, Invariant, PagerdutySink, Retention, Secret, SecretToken,
    Severity, SinkKind, StoreSpec,
};
use std::path::PathBuf;
use std::time::Duration;

/// The sink kinds: the one table a sink's `type` string is read through. A kind added to
/// the model but not here fails to compile ([`SinkType::fields`] is an exhaustive match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkType {
    Slack,
    Webhook,
    Email,
    Alertmanager,
    Pagerduty,
}

impl SinkType {
    const ALL: [SinkType; 5] = [
        SinkType::Slack,
        SinkType::Webhook,
        SinkType::Email,
        SinkType::Alertmanager,
        SinkType::Pagerduty,
    ];

    fn name(self) -> &'static str {
        match self {
            SinkType::Slack => "slack",
            SinkType::Webhook => "webhook",
            SinkType::Email => "email",
            SinkType::Alertmanager => "alertmanager",
            SinkType::Pagerduty => "pagerduty",
        }
    }

    fn parse(s: &str) -> Option<SinkType> {
        SinkType::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The keys this kind takes besides [`COMMON_KEYS`].
    fn fields(self) -> &'static [&'static str] {
        match self {
            SinkType::Slack => &["webhook_url", "repeat"],
            SinkType::Webhook => &["url", "repeat"],
            SinkType::Email => &["smtp_url", "from", "to", "repeat"],
            SinkType::Alertmanager => &["url", "headers", "refresh"],
            SinkType::Pagerduty => &["routing_key", "url"],
        }
    }

    /// Why `repeat` does not apply, for the kinds that re-notify by themselves.
    fn no_repeat(self) -> Option<&'static str> {
        match self {
            SinkType::Alertmanager => Some(
                "Alertmanager repeats notifications itself (its route's `repeat_interval`); \
                 `refresh` sets how often invar re-posts an open incident",
            ),
            SinkType::Pagerduty => {
                Some("PagerDuty escalates an open incident itself (its escalation policy)")
            }
            SinkType::Slack | SinkType::Webhook | SinkType::Email => None,
        }
    }
}

fn sink_type_names() -> Vec<&'static str> {
    SinkType::ALL.iter().map(|t| t.name()).collect()
}

const COMMON_KEYS: &[&str] = &["type", "min_severity", "send_resolved", "timeout"];
/// Keys whose values are secrets, masked in echoed source lines.
const SECRET_KEYS: &[&str] = &["webhook_url", "url", "smtp_url", "routing_key"];
const RETENTION_KEYS: &[&str] = &["runs", "violations"];
const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Alertmanager's re-post interval: with `endsAt` four refreshes ahead, an alert outlives
/// runs up to 20 minutes apart, and a stopped invar's alerts resolve within 20 minutes.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

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

/// The sink's `type`, read through [`SinkType`]; an unknown one is an error listing the kinds.
fn sink_type(cx: &mut Cx, entry: &Entry, fields: &[Entry], path: &str) -> Option<SinkType> {
    let Some(t) = fields.iter().find(|e| e.key == "type") else {
        let msg = format!("alert sink `{}` has no `type`", entry.key);
        let hint = format!("expected one of: {}", sink_type_names().join(", "));
        cx.err(entry.value.pos, path, msg, Some(hint));
        return None;
    };
    let tpath = sub(path, "type");
    let ty = cx.string(&t.value, &tpath)?;
    let parsed = SinkType::parse(&ty);
    if parsed.is_none() {
        let msg = format!("unknown alert sink type `{ty}`");
        let hint = one_of_hint(&ty, &sink_type_names());
        cx.err(t.value.pos, &tpath, msg, Some(hint));
    }
    parsed
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
    let ty = sink_type(cx, entry, fields, path)?;
    if let (Some(why), Some(r)) = (ty.no_repeat(), fields.iter().find(|e| e.key == "repeat")) {
        let msg = format!("`repeat` does not apply to a `{}` sink", ty.name());
        cx.err(r.key_pos, &sub(path, "repeat"), msg, Some(why.into()));
        return None;
    }
    let allowed: Vec<&str> = COMMON_KEYS.iter().chain(ty.fields()).copied().collect();
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
    let kind = sink_kind(cx, ty, &f, path);
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

/// The kind-specific part of a sink, one arm per [`SinkType`].
fn sink_kind(cx: &mut Cx, ty: SinkType, f: &Fields, path: &str) -> Option<SinkKind> {
    let web = &["https", "http"];
    match ty {
        SinkType::Slack => secret_url(cx, f, "webhook_url", path, web)
            .map(|webhook_url| SinkKind::Slack { webhook_url }),
        SinkType::Webhook => {
            secret_url(cx, f, "url", path, web).map(|url| SinkKind::Webhook { url })
        }
        SinkType::Email => email(cx, f, path),
        SinkType::Alertmanager => {
            let url = secret_url(cx, f, "url", path, web);
            let headers = f
                .get("headers")
                .and_then(|e| crate::sources::headers(cx, &e.value, &sub(path, "headers")));
            let refresh = match f.get("refresh") {
                None => Some(DEFAULT_REFRESH),
                Some(e) => positive_duration(cx, &e.value, &sub(path, "refresh")),
            };
            Some(SinkKind::Alertmanager(AlertmanagerSink {
                url: url?,
                headers: headers.unwrap_or_default(),
                refresh: refresh?,
            }))
        }
        SinkType::Pagerduty => {
            let routing_key = routing_key(cx, f, path);
            let url = match f.get("url") {
                Some(_) => secret_url(cx, f, "url", path, web),
                None => Some(Secret::new(PagerdutySink::DEFAULT_URL)),
            };
            Some(SinkKind::Pagerduty(PagerdutySink {
                routing_key: routing_key?,
                url: url?,
            }))
        }
    }
}

fn email(cx: &mut Cx, f: &Fields, path: &str) -> Option<SinkKind> {
    let smtp_url = secret_url(cx, f, "smtp_url", path, &["smtp", "smtps"]);
    let from = cx
        .required(f, "from", path)
        .and_then(|e| cx.string(&e.value, &sub(path, "from")));
    let to = cx
        .required(f, "to", path)
        .and_then(|e| cx.string_list(&e.value, &sub(path, "to")));
    if let Some(e) = f.get("to")
        && to.as_ref().is_some_and(Vec::is_empty)
    {
        let msg = "`to` must name at least one recipient";
        cx.err(e.value.pos, &sub(path, "to"), msg, None);
    }
    Some(SinkKind::Email {
        smtp_url: smtp_url?,
        from: from?,
        to: to?,
    })
}

fn positive_duration(cx: &mut Cx, node: &Node, path: &str) -> Option<Duration> {
    let d = cx.duration(node, path)?;
    if d < Duration::from_secs(1) {
        let msg = format!("`{}` must be at least 1s", crate::cx::name_of(path));
        cx.err(node.pos, path, msg, None);
        return None;
    }
    Some(d)
}

/// PagerDuty's routing key: required, one line, a token that is never echoed.
fn routing_key(cx: &mut Cx, f: &Fields, path: &str) -> Option<SecretToken> {
    let e = cx.required(f, "routing_key", path)?;
    let kpath = sub(path, "routing_key");
    let v = cx.string(&e.value, &kpath)?;
    let v = v.trim();
    if v.is_empty() || v.contains(char::is_whitespace) {
        cx.err(
            e.value.pos,
            &kpath,
            "`routing_key` must be one word (the integration key of a PagerDuty service)",
            Some("its value is not shown: it is a secret".into()),
        );
        return None;
    }
    Some(SecretToken::new(v))
}

/// A required URL that is a secret: checked for its scheme, never echoed.
fn secret_url(cx: &mut Cx, f: &Fields, key: &str, path: &str, schemes: &[&str]) -> Option<Secret> {
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
                        if let Some(Kind::Map(hs)) = fields
                            .iter()
                            .find(|f| f.key == "headers")
                            .map(|f| &f.value.kind)
                        {
                            literals.extend(hs.iter().filter_map(|h| raw_literal(&h.value)));
                        }
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
    use invar_core::{PagerdutySink, Severity, SinkKind, StoreSpec};
    use std::time::Duration;

    fn load(text: &str) -> Result<invar_core::Config, crate::Diagnostics> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("invar.yaml");
        std::fs::write(&p, text).unwrap();
        let env = |n: &str| match n {
            "HOOK" => Some("https://hooks.example.com/services/T0/B0/tok3nSECRET".to_string()),
            "PD_KEY" => Some("R0UT1NGk3yR0UT1NGk3yR0UT1NGk3y00".to_string()),
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
  bad: { type: pagerduty2 }
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
            "unknown alert sink type `pagerduty2`",
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

    /// The one diagnostic about `key_path`, rendered.
    fn diag_at(d: &crate::Diagnostics, key_path: &str) -> crate::Diagnostic {
        let found: Vec<_> = d.items.iter().filter(|x| x.key_path == key_path).collect();
        assert_eq!(found.len(), 1, "{}", d.render(false));
        found[0].clone()
    }

    #[test]
    fn alertmanager_and_pagerduty_sinks_load() {
        let c = load(
            r#"
alerts:
  am: { type: alertmanager, url: "http://am.example:9093", headers: { Authorization: "Bearer h3aderSECRET" } }
  am2: { type: alertmanager, url: "https://am.example", refresh: 1m, min_severity: critical }
  pd: { type: pagerduty, routing_key: "${PD_KEY}" }
  pd2: { type: pagerduty, routing_key: "${PD_KEY}", url: "http://127.0.0.1:9/v2/enqueue", send_resolved: false }
"#,
        )
        .unwrap();
        let SinkKind::Alertmanager(am) = &c.alerts[0].kind else {
            panic!("{:?}", c.alerts[0])
        };
        assert_eq!(am.url.expose(), "http://am.example:9093");
        assert_eq!(am.refresh, Duration::from_secs(300));
        assert_eq!(am.headers[0].0, "Authorization");
        assert_eq!(am.headers[0].1.expose(), "Bearer h3aderSECRET");
        assert_eq!(c.alerts[0].repeat, None);
        let SinkKind::Alertmanager(am2) = &c.alerts[1].kind else {
            panic!("{:?}", c.alerts[1])
        };
        assert_eq!(am2.refresh, Duration::from_secs(60));
        assert_eq!(c.alerts[1].min_severity, Severity::Critical);
        let SinkKind::Pagerduty(pd) = &c.alerts[2].kind else {
            panic!("{:?}", c.alerts[2])
        };
        assert_eq!(pd.routing_key.expose(), "R0UT1NGk3yR0UT1NGk3yR0UT1NGk3y00");
        assert_eq!(pd.url.expose(), PagerdutySink::DEFAULT_URL);
        let SinkKind::Pagerduty(pd2) = &c.alerts[3].kind else {
            panic!("{:?}", c.alerts[3])
        };
        assert_eq!(pd2.url.expose(), "http://127.0.0.1:9/v2/enqueue");
        assert!(!c.alerts[3].send_resolved);
        assert_eq!(c.alerts[2].kind.type_name(), "pagerduty");
        // Neither the routing key nor a header value is ever printed.
        let shown = format!("{:?}", c.alerts);
        assert!(!shown.contains("R0UT1NGk3y"), "{shown}");
        assert!(!shown.contains("h3aderSECRET"), "{shown}");
        assert_eq!(format!("{}", pd.routing_key), "***");
    }

    #[test]
    fn an_unknown_sink_kind_is_a_positioned_error_listing_the_kinds() {
        let d = load("alerts:\n  ops:\n    type: pagerdutty\n    routing_key: x\n").unwrap_err();
        let e = diag_at(&d, "alerts.ops.type");
        assert_eq!((e.line, e.col), (3, 11), "{}", d.render(false));
        assert_eq!(e.message, "unknown alert sink type `pagerdutty`");
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "did you mean `pagerduty`? expected one of: slack, webhook, email, alertmanager, pagerduty"
            )
        );
        assert!(
            d.render(false).contains("invar.yaml:3:11"),
            "{}",
            d.render(false)
        );
        // Nothing is built for it (no silent default kind): that is the only error.
        assert_eq!(d.items.len(), 1, "{}", d.render(false));
        let d = load("alerts:\n  ops: { url: \"http://x\" }\n").unwrap_err();
        let e = diag_at(&d, "alerts.ops");
        assert_eq!(e.message, "alert sink `ops` has no `type`");
        assert!(e.hint.unwrap().contains("alertmanager, pagerduty"));
    }

    #[test]
    fn a_pagerduty_sink_needs_a_routing_key() {
        let d = load("alerts:\n  pd:\n    type: pagerduty\n").unwrap_err();
        let e = diag_at(&d, "alerts.pd");
        assert_eq!(e.message, "`pd` is missing required key `routing_key`");
        assert_eq!(e.line, 3, "{}", d.render(false));
        let d = load("alerts:\n  pd: { type: pagerduty, routing_key: \"\" }\n").unwrap_err();
        let e = diag_at(&d, "alerts.pd.routing_key");
        assert!(e.message.contains("must be one word"), "{}", e.message);
        assert_eq!(e.line, 2);
        // An unset variable is reported where it is used.
        let d = load("alerts:\n  pd: { type: pagerduty, routing_key: \"${NOPE}\" }\n").unwrap_err();
        assert!(d.render(false).contains("NOPE"), "{}", d.render(false));
    }

    #[test]
    fn sink_specific_mistakes_are_positioned_and_never_echo_a_secret() {
        let d = load(
            r#"
alerts:
  am: { type: alertmanager, url: "am:9093", refresh: 0s, headers: { X-Token: "h3aderL1TERAL" } }
  am2: { type: alertmanager, url: "http://am:9093", repeat: 4h }
  pd: { type: pagerduty, routing_key: "l1teralR0UT1NGk3y", url: "ftp://x", headers: {} }
"#,
        )
        .unwrap_err();
        let text = d.render(false);
        assert!(!text.contains("l1teralR0UT1NGk3y"), "{text}");
        assert!(!text.contains("h3aderL1TERAL"), "{text}");
        assert!(text.contains("X-Token: \"***\""), "{text}");
        let e = diag_at(&d, "alerts.am.url");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("https://… or http://…"), "{}", e.message);
        assert_eq!(
            diag_at(&d, "alerts.am.refresh").message,
            "`refresh` must be at least 1s"
        );
        let e = diag_at(&d, "alerts.am2.repeat");
        assert_eq!(e.line, 4);
        assert!(e.hint.unwrap().contains("repeat_interval"));
        assert_eq!(
            diag_at(&d, "alerts.pd.headers").message,
            "unknown key `headers`"
        );
    }
}
