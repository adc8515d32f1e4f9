//! Rendering a notice per sink: Slack Block Kit, the webhook body (docs/WEBHOOK.md), email.
//! (Alertmanager's and PagerDuty's bodies live with their sinks.)

use crate::plan::AlertPayload;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Slack's limit on a header's text.
const HEADER_MAX: usize = 150;
/// Characters per forensic line.
const LINE_MAX: usize = 200;

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `42m ago`, `3h 5m ago`, `2d 4h ago`.
pub(crate) fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let m = (now - then).num_minutes().max(0);
    match m {
        0 => "just now".into(),
        1..=59 => format!("{m}m ago"),
        60..=1439 if m % 60 == 0 => format!("{}h ago", m / 60),
        60..=1439 => format!("{}h {}m ago", m / 60, m % 60),
        _ if (m / 60) % 24 == 0 => format!("{}d ago", m / 1440),
        _ => format!("{}d {}h ago", m / 1440, (m / 60) % 24),
    }
}

fn duration_text(ms: i64) -> String {
    let base = DateTime::<Utc>::UNIX_EPOCH;
    ago(base, base + chrono::TimeDelta::milliseconds(ms))
        .trim_end_matches(" ago")
        .to_string()
}

/// One violation as `key=value key=value`.
fn forensic_line(v: &Value) -> String {
    let text = match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    truncate(&text, LINE_MAX)
}

/// One line per forensic violation, then `+N more` when the notice carries fewer than all.
pub(crate) fn forensic_lines(p: &AlertPayload) -> Vec<String> {
    let mut lines: Vec<String> = p.violations.iter().map(forensic_line).collect();
    let more = p.violations_total.saturating_sub(p.violations.len() as u64);
    if more > 0 {
        lines.push(format!("+{more} more"));
    }
    lines
}

fn headline(p: &AlertPayload) -> String {
    let state = match p.notice.as_str() {
        "resolved" => "RESOLVED",
        "reminder" => "STILL FIRING",
        "flapping" => "FLAPPING",
        _ => "FIRING",
    };
    let id = match p.subject_kind.as_str() {
        "source" => format!("source {}", p.subject),
        "suite" => format!("suite {}", p.subject),
        _ => p.subject.clone(),
    };
    format!("{state} {} · {id} — {}", p.severity.to_uppercase(), p.title)
}

/// The context line: run time, suite, incident id, how long it was open, last red.
fn context(p: &AlertPayload) -> String {
    let mut parts = vec![format!(
        "run {} ({}, {})",
        p.run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        p.run.suite,
        p.run.trigger
    )];
    if let Some(id) = &p.incident_id {
        parts.push(format!("incident {id}"));
    }
    if let (Some(o), Some(r)) = (p.opened_at, p.resolved_at) {
        parts.push(format!(
            "open for {}",
            duration_text((r - o).num_milliseconds())
        ));
    } else if p.notice == "reminder"
        && let Some(o) = p.opened_at
    {
        parts.push(format!("open since {}", ago(o, p.run.started_at)));
    }
    if let Some(l) = p.last_red_at {
        parts.push(format!("last red {}", ago(l, p.run.started_at)));
    }
    parts.join(" · ")
}

/// A Slack incoming-webhook message in Block Kit: header (severity, id, title), summary, up to
/// five forensic lines and "+N more", the runbook, and a context line.
pub fn slack_message(p: &AlertPayload) -> Value {
    let icon = match (p.status.as_str(), p.notice.as_str()) {
        ("resolved", _) => "✅",
        (_, "flapping") => "🔁",
        _ if p.severity == "critical" => "🚨",
        _ => "🔴",
    };
    let header = truncate(&format!("{icon} {}", headline(p)), HEADER_MAX);
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": p.summary}}),
    ];
    let lines = forensic_lines(p);
    if !lines.is_empty() {
        let (shown, more): (Vec<&String>, Vec<&String>) =
            lines.iter().partition(|l| !l.starts_with('+'));
        let mut text = format!(
            "```{}```",
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        if let Some(m) = more.first() {
            text.push('\n');
            text.push_str(m);
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
    }
    if let Some(rb) = &p.runbook
        && p.status == "firing"
    {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Runbook:* {rb}")}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context(p)}]}));
    json!({"text": headline(p), "blocks": blocks})
}

/// The generic webhook body (version 1, documented in docs/WEBHOOK.md).
pub fn webhook_body(p: &AlertPayload, idempotency_key: &str, sink: &str) -> Value {
    json!({
        "version": 1,
        "idempotency_key": idempotency_key,
        "sink": sink,
        "status": p.status,
        "notice": p.notice,
        "incident": {
            "id": p.incident_id,
            "opened_at": p.opened_at,
            "resolved_at": p.resolved_at,
            "last_red_at": p.last_red_at,
        },
        "subject": {"kind": p.subject_kind, "id": p.subject},
        "title": p.title,
        "severity": p.severity,
        "summary": p.summary,
        "runbook": p.runbook,
        "owner": p.owner,
        "violations_total": p.violations_total,
        "violations": p.violations,
        "measured": p.measured,
        "transitions": p.transitions,
        "run": p.run,
    })
}

pub fn email_subject(p: &AlertPayload) -> String {
    truncate(&format!("[invar] {}", headline(p)), 200)
}

pub fn email_text(p: &AlertPayload) -> String {
    let mut out = format!("{}\n\n{}\n", headline(p), p.summary);
    let lines = forensic_lines(p);
    if !lines.is_empty() {
        out.push('\n');
        for l in &lines {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
    }
    if let Some(rb) = &p.runbook {
        out.push_str(&format!("\nRunbook: {rb}\n"));
    }
    out.push_str(&format!("\n{}\n", context(p)));
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn email_html(p: &AlertPayload) -> String {
    let color = if p.status == "resolved" {
        "#2e7d32"
    } else {
        "#c62828"
    };
    let mut out = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\">\
         <h2 style=\"color:{color}\">{}</h2><p>{}</p>",
        html_escape(&headline(p)),
        html_escape(&p.summary)
    );
    let lines = forensic_lines(p);
    if !lines.is_empty() {
        out.push_str("<pre>");
        out.push_str(&html_escape(&lines.join("\n")));
        out.push_str("</pre>");
    }
    if let Some(rb) = &p.runbook {
        out.push_str(&format!("<p><b>Runbook:</b> {}</p>", html_escape(rb)));
    }
    out.push_str(&format!(
        "<p style=\"color:#666;font-size:small\">{}</p></body></html>",
        html_escape(&context(p))
    ));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::RunRef;

    pub(crate) fn payload() -> AlertPayload {
        let at = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        AlertPayload {
            notice: "firing".into(),
            status: "firing".into(),
            subject_kind: "invariant".into(),
            subject: "S-01".into(),
            incident_id: Some("inc-1".into()),
            title: "Every Redis slot is a running execution".into(),
            severity: "critical".into(),
            summary: "only_left keys (7 violations)".into(),
            runbook: Some("Release the leaked slots.".into()),
            owner: None,
            violations_total: 7,
            violations: (0..5)
                .map(|i| json!({"side": "only_left", "key": format!("agent-{i}")}))
                .collect(),
            measured: serde_json::Map::new(),
            run: RunRef {
                run_id: "r1".into(),
                suite: "sweep".into(),
                trigger: invar_core::Trigger::Schedule,
                started_at: at,
            },
            opened_at: Some(at),
            resolved_at: None,
            last_red_at: Some(at - chrono::TimeDelta::minutes(42)),
            transitions: None,
            tags: vec![],
            suites: vec![],
        }
    }

    #[test]
    fn slack_block_kit_has_every_part() {
        let m = slack_message(&payload());
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let header = blocks[0]["text"]["text"].as_str().unwrap();
        assert!(
            header.contains("CRITICAL") && header.contains("S-01"),
            "{header}"
        );
        assert_eq!(blocks[1]["text"]["text"], "only_left keys (7 violations)");
        let forensic = blocks[2]["text"]["text"].as_str().unwrap();
        assert_eq!(forensic.matches("side=only_left").count(), 5);
        assert!(forensic.ends_with("+2 more"), "{forensic}");
        assert!(
            blocks[3]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("Release the leaked slots.")
        );
        let ctx = blocks[4]["elements"][0]["text"].as_str().unwrap();
        assert_eq!(
            ctx,
            "run 2026-03-01 10:00:00 UTC (sweep, schedule) · incident inc-1 · last red 42m ago"
        );
    }

    #[test]
    fn durations_read_well() {
        let t = DateTime::<Utc>::UNIX_EPOCH;
        let m = |n| t + chrono::TimeDelta::minutes(n);
        assert_eq!(ago(t, m(0)), "just now");
        assert_eq!(ago(t, m(42)), "42m ago");
        assert_eq!(ago(t, m(120)), "2h ago");
        assert_eq!(ago(t, m(185)), "3h 5m ago");
        assert_eq!(ago(t, m(2 * 1440 + 240)), "2d 4h ago");
    }

    #[test]
    fn email_parts_escape_html() {
        let mut p = payload();
        p.summary = "<script>".into();
        assert!(email_html(&p).contains("&lt;script&gt;"));
        assert!(email_text(&p).contains("<script>"));
        assert!(email_subject(&p).starts_with("[invar] FIRING CRITICAL · S-01"));
    }
}
