//! `pagerduty`: PagerDuty Events API v2. A firing incident is a `trigger` whose `dedup_key`
//! is the incident id, its resolve a `resolve` with the same key, so PagerDuty folds retries
//! and reminders into one PagerDuty incident and closes it.
//!
//! Answers: 2xx (PagerDuty says 202) is delivered; 429 and 5xx are retried with the outbox's
//! backoff; any other 4xx is PagerDuty refusing the event (a wrong routing key, a malformed
//! event), which no retry can fix: the row is parked with PagerDuty's message.

use super::{DeliveryError, Sink, http_client, payload_of, request_error, scrub};
use crate::plan::AlertPayload;
use futures::future::BoxFuture;
use invar_core::{Secret, SecretToken};
use invar_store::Delivery;
use serde_json::{Value, json};
use std::time::Duration;

/// PagerDuty's limits on `payload.summary` and `dedup_key`.
const SUMMARY_MAX: usize = 1024;
const DEDUP_MAX: usize = 255;

/// Delivers to one PagerDuty integration.
pub struct PagerdutySink {
    routing_key: SecretToken,
    url: Secret,
    timeout: Duration,
    client: reqwest::Client,
}

impl PagerdutySink {
    pub fn new(cfg: &invar_core::PagerdutySink, timeout: Duration) -> PagerdutySink {
        PagerdutySink {
            routing_key: cfg.routing_key.clone(),
            url: cfg.url.clone(),
            timeout,
            client: http_client(timeout),
        }
    }

    fn fail(&self, code: Option<i32>, message: String, permanent: bool) -> DeliveryError {
        DeliveryError {
            code,
            message: self.routing_key.scrub(&scrub(&self.url, &message)),
            permanent,
        }
    }
}

impl Sink for PagerdutySink {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<i32, DeliveryError>> {
        Box::pin(async move {
            let p = payload_of(d)?;
            let body = pagerduty_event(&p, &self.routing_key);
            let resp = self
                .client
                .post(self.url.expose())
                .json(&body)
                .send()
                .await
                .map_err(|e| self.fail(None, request_error(e), false))?;
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                return Ok(i32::from(status));
            }
            let text = resp.text().await.unwrap_or_default();
            let message = pagerduty_message(&text);
            let retry = status == 429 || status >= 500;
            let what = if retry {
                "pagerduty answered"
            } else {
                "pagerduty refused the event, not retried:"
            };
            Err(self.fail(
                Some(i32::from(status)),
                format!("{what} {status}: {message}"),
                !retry,
            ))
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// PagerDuty's own words from an error body (`{"message": …, "errors": […]}`), else the body.
fn pagerduty_message(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body
            .chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = v.get("message").and_then(Value::as_str) {
        parts.push(m.to_string());
    }
    if let Some(errs) = v.get("errors").and_then(Value::as_array) {
        parts.extend(errs.iter().filter_map(Value::as_str).map(str::to_string));
    }
    if parts.is_empty() {
        return v.to_string().chars().take(200).collect();
    }
    parts.join("; ").chars().take(500).collect()
}

/// invar's severities in PagerDuty's words.
fn severity(invar: &str) -> &'static str {
    match invar {
        "critical" => "critical",
        "minor" => "warning",
        _ => "error",
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The Events v2 body for one notice: `trigger` for a firing (or reminder), `resolve` for a
/// resolve, both keyed by the incident id.
pub fn pagerduty_event(p: &AlertPayload, routing_key: &SecretToken) -> Value {
    let dedup: String = p
        .incident_id
        .as_deref()
        .unwrap_or(&p.subject)
        .chars()
        .take(DEDUP_MAX)
        .collect();
    if p.status == "resolved" {
        return json!({
            "routing_key": routing_key.expose(),
            "event_action": "resolve",
            "dedup_key": dedup,
        });
    }
    let id = match p.subject_kind.as_str() {
        "source" | "suite" => format!("{} {}", p.subject_kind, p.subject),
        _ => p.subject.clone(),
    };
    let summary = clip(&format!("{id}: {} — {}", p.title, p.summary), SUMMARY_MAX);
    let details = json!({
        "incident": p.incident_id,
        "subject": id,
        "severity": p.severity,
        "measured": p.measured,
        "violations_total": p.violations_total,
        "violations": p.violations,
        "runbook": p.runbook,
        "owner": p.owner,
        "tags": p.tags,
        "suite": p.run.suite,
        "run_id": p.run.run_id,
    });
    let links: Vec<Value> = p
        .runbook
        .iter()
        .filter(|rb| rb.starts_with("https://") || rb.starts_with("http://"))
        .map(|rb| json!({"href": rb, "text": "Runbook"}))
        .collect();
    let mut event = json!({
        "routing_key": routing_key.expose(),
        "event_action": "trigger",
        "dedup_key": dedup,
        "client": "invar",
        "payload": {
            "summary": summary,
            "source": "invar",
            "severity": severity(&p.severity),
            "timestamp": p.opened_at.unwrap_or(p.run.started_at),
            "component": id,
            "group": p.run.suite,
            "class": p.subject_kind,
            "custom_details": details,
        },
    });
    if !links.is_empty() {
        event["links"] = Value::Array(links);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::payload;

    #[test]
    fn trigger_and_resolve_share_the_dedup_key() {
        let key = SecretToken::new("R0UTINGKEY0123456789abcdefabcdef");
        let mut p = payload();
        p.runbook = Some("https://wiki.example.com/runbooks/s-01".into());
        let t = pagerduty_event(&p, &key);
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "inc-1");
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["source"], "invar");
        assert!(
            t["payload"]["summary"]
                .as_str()
                .unwrap()
                .starts_with("S-01: ")
        );
        assert_eq!(
            t["payload"]["custom_details"]["violations"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
        assert_eq!(
            t["links"][0]["href"],
            "https://wiki.example.com/runbooks/s-01"
        );
        p.status = "resolved".into();
        let r = pagerduty_event(&p, &key);
        assert_eq!(r["event_action"], "resolve");
        assert_eq!(r["dedup_key"], t["dedup_key"]);
        assert_eq!(r.as_object().unwrap().len(), 3);
    }

    #[test]
    fn severities_map_and_text_is_clipped() {
        assert_eq!(
            [severity("critical"), severity("major"), severity("minor")],
            ["critical", "error", "warning"]
        );
        let mut p = payload();
        p.summary = "x".repeat(5000);
        p.runbook = Some("call the DBA".into());
        let t = pagerduty_event(&p, &SecretToken::new("k"));
        assert_eq!(
            t["payload"]["summary"].as_str().unwrap().chars().count(),
            SUMMARY_MAX
        );
        assert!(t.get("links").is_none());
        assert_eq!(
            pagerduty_message(
                r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect"]}"#
            ),
            "Event object is invalid; Length of 'routing_key' is incorrect"
        );
    }
}
