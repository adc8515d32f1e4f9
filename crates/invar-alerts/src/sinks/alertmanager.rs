//! `alertmanager`: incidents as Prometheus Alertmanager alerts (`POST /api/v2/alerts`).
//!
//! Alertmanager resolves an alert by itself once its `endsAt` has passed (an alert posted
//! without one gets `now + resolve_timeout`). So a firing alert is sent with an explicit
//! `endsAt` a few refreshes ahead ([`AlertmanagerSink::ENDS_AFTER_REFRESHES`] × `refresh`,
//! computed when it is delivered, so a post delayed by an outage is still current), and the
//! planner re-posts it while the incident stays open. A resolved incident is posted once more
//! with `endsAt` = the time it resolved, which Alertmanager takes as resolved at once.
//!
//! The alert's identity in Alertmanager is its label set, so labels hold only what is stable
//! for the incident's life (never the run): `alertname`, `severity`, `suite`, `tag_<tag>`,
//! `source`. Everything else is an annotation.

use super::{DeliveryError, Sink, body_snippet, http_client, payload_of, request_error, scrub};
use crate::plan::AlertPayload;
use crate::render::forensic_lines;
use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use invar_core::{HeaderValue, Secret};
use invar_store::Delivery;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Delivers to one Alertmanager.
pub struct AlertmanagerSink {
    url: Secret,
    headers: Vec<(String, HeaderValue)>,
    refresh: Duration,
    timeout: Duration,
    client: reqwest::Client,
}

impl AlertmanagerSink {
    pub fn new(cfg: &invar_core::AlertmanagerSink, timeout: Duration) -> AlertmanagerSink {
        AlertmanagerSink {
            url: cfg.url.clone(),
            headers: cfg.headers.clone(),
            refresh: cfg.refresh,
            timeout,
            client: http_client(timeout),
        }
    }

    fn fail(&self, code: Option<i32>, message: String, permanent: bool) -> DeliveryError {
        let mut message = scrub(&self.url, &message);
        for (_, v) in &self.headers {
            message = v.scrub(&message);
        }
        DeliveryError {
            code,
            message,
            permanent,
        }
    }
}

impl Sink for AlertmanagerSink {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<i32, DeliveryError>> {
        Box::pin(async move {
            let p = payload_of(d)?;
            let body = alertmanager_alerts(&p, Utc::now(), self.refresh);
            let endpoint = format!("{}/api/v2/alerts", self.url.expose().trim_end_matches('/'));
            let mut req = self.client.post(endpoint).json(&body);
            for (name, value) in &self.headers {
                req = req.header(name, value.expose());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| self.fail(None, request_error(e), false))?;
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                return Ok(i32::from(status));
            }
            let snippet = body_snippet(resp).await;
            // 400 and 422 are Alertmanager refusing this alert (a label it cannot take):
            // resending the same body cannot succeed. Anything else (a proxy's 401, a 5xx)
            // may pass later.
            let permanent = matches!(status, 400 | 422);
            Err(self.fail(
                Some(i32::from(status)),
                format!("alertmanager answered {status}: {snippet}"),
                permanent,
            ))
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A label name Alertmanager accepts (`[a-zA-Z_][a-zA-Z0-9_]*`): other characters become `_`.
fn label_name(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The subject as invar names it: an invariant id, `source:NAME` or `suite:NAME`.
fn alertname(p: &AlertPayload) -> String {
    match p.subject_kind.as_str() {
        "source" | "suite" => format!("{}:{}", p.subject_kind, p.subject),
        _ => p.subject.clone(),
    }
}

/// The body posted for one notice at `now`: a one-alert array. A firing alert ends
/// `ENDS_AFTER_REFRESHES × refresh` after `now`; a resolved one when it resolved.
pub fn alertmanager_alerts(p: &AlertPayload, now: DateTime<Utc>, refresh: Duration) -> Value {
    let mut labels = Map::new();
    labels.insert("alertname".into(), json!(alertname(p)));
    labels.insert("severity".into(), json!(p.severity));
    if !p.suites.is_empty() {
        labels.insert("suite".into(), json!(p.suites.join(",")));
    }
    for tag in &p.tags {
        labels.insert(format!("tag_{}", label_name(tag)), json!("true"));
    }
    labels.insert("source".into(), json!("invar"));

    let mut ann = Map::new();
    ann.insert("title".into(), json!(p.title));
    ann.insert("summary".into(), json!(p.summary));
    if let Some(rb) = &p.runbook {
        ann.insert("runbook".into(), json!(rb));
    }
    let lines = forensic_lines(p);
    if !lines.is_empty() {
        ann.insert("violations".into(), json!(lines.join("\n")));
    }
    if let Some(id) = &p.incident_id {
        ann.insert("incident".into(), json!(id));
    }
    if let Some(owner) = &p.owner {
        ann.insert("owner".into(), json!(owner));
    }
    if !p.measured.is_empty() {
        ann.insert(
            "measured".into(),
            json!(Value::Object(p.measured.clone()).to_string()),
        );
    }
    if !p.tags.is_empty() {
        ann.insert("tags".into(), json!(p.tags.join(",")));
    }

    let starts = p.opened_at.unwrap_or(p.run.started_at);
    let ends = if p.status == "resolved" {
        p.resolved_at.unwrap_or(now).max(starts)
    } else {
        let ttl = refresh.saturating_mul(invar_core::AlertmanagerSink::ENDS_AFTER_REFRESHES);
        now + TimeDelta::from_std(ttl).unwrap_or(TimeDelta::days(1))
    };
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    json!([{
        "labels": labels,
        "annotations": ann,
        "startsAt": ts(starts),
        "endsAt": ts(ends),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::payload;

    #[test]
    fn labels_are_stable_and_valid() {
        let mut p = payload();
        p.tags = vec!["gate".into(), "team-a".into(), "9lives".into()];
        p.suites = vec!["sweep".into()];
        let now = p.run.started_at + TimeDelta::minutes(3);
        let body = alertmanager_alerts(&p, now, Duration::from_secs(300));
        let a = &body[0];
        assert_eq!(a["labels"]["alertname"], "S-01");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["labels"]["suite"], "sweep");
        assert_eq!(a["labels"]["source"], "invar");
        assert_eq!(a["labels"]["tag_gate"], "true");
        assert_eq!(a["labels"]["tag_team_a"], "true");
        assert_eq!(a["labels"]["tag__9lives"], "true");
        assert_eq!(a["labels"].as_object().unwrap().len(), 7);
        assert_eq!(a["annotations"]["runbook"], "Release the leaked slots.");
        assert!(
            a["annotations"]["violations"]
                .as_str()
                .unwrap()
                .ends_with("+2 more")
        );
        assert_eq!(a["startsAt"], "2026-03-01T10:00:00.000Z");
        // Four refreshes after the post.
        assert_eq!(a["endsAt"], "2026-03-01T10:23:00.000Z");
        // A later refresh of the same incident keeps every label.
        let again = alertmanager_alerts(&p, now + TimeDelta::hours(1), Duration::from_secs(300));
        assert_eq!(again[0]["labels"], a["labels"]);
    }

    #[test]
    fn a_resolve_ends_when_it_resolved() {
        let mut p = payload();
        p.status = "resolved".into();
        p.notice = "resolved".into();
        p.resolved_at = Some(p.run.started_at + TimeDelta::minutes(30));
        let now = p.run.started_at + TimeDelta::hours(2);
        let a = &alertmanager_alerts(&p, now, Duration::from_secs(300))[0];
        assert_eq!(a["endsAt"], "2026-03-01T10:30:00.000Z");
        // Never before it started (Alertmanager refuses that).
        p.resolved_at = Some(p.run.started_at - TimeDelta::minutes(1));
        let a = &alertmanager_alerts(&p, now, Duration::from_secs(300))[0];
        assert_eq!(a["endsAt"], a["startsAt"]);
        p.subject_kind = "source".into();
        p.subject = "app".into();
        let a = &alertmanager_alerts(&p, now, Duration::from_secs(300))[0];
        assert_eq!(a["labels"]["alertname"], "source:app");
    }
}
