//! Sinks: deliver one outbox row. One module per kind, each implementing [`Sink`]; the one
//! registration point is [`build_sink`], an exhaustive `match` over the config's
//! [`SinkKind`] (a new kind that is not registered does not compile).
//!
//! Success means the receiver accepted the notice (a 2xx, an accepted SMTP message); every
//! error is scrubbed of the sink's URL and credentials before anyone sees it.

mod alertmanager;
mod email;
mod http;
mod pagerduty;

pub use alertmanager::{AlertmanagerSink, alertmanager_alerts};
pub use email::EmailSink;
pub use http::HttpSink;
pub use pagerduty::{PagerdutySink, pagerduty_event};

use crate::plan::AlertPayload;
use futures::future::BoxFuture;
use invar_core::{AlertSink, Secret, SinkKind, redact_endpoint};
use invar_store::Delivery;
use std::time::Duration;

/// A failed attempt. `message` is already scrubbed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// The HTTP status or SMTP reply code, when the server answered.
    pub code: Option<i32>,
    pub message: String,
    /// The receiver refused this notice for good (PagerDuty's 400): retrying cannot help, so
    /// the outbox parks the row instead of retrying it.
    pub permanent: bool,
}

impl DeliveryError {
    /// A failure worth retrying (connection, timeout, 5xx, 429).
    pub fn retry(code: Option<i32>, message: String) -> DeliveryError {
        DeliveryError {
            code,
            message,
            permanent: false,
        }
    }
}

/// Somewhere notices go.
pub trait Sink: Send + Sync {
    /// Delivers one outbox row; Ok carries the HTTP status or SMTP code.
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<i32, DeliveryError>>;
    /// Per attempt.
    fn timeout(&self) -> Duration;
}

/// The sink a config entry describes: the one place a sink kind is registered.
pub fn build_sink(s: &AlertSink) -> Box<dyn Sink> {
    match &s.kind {
        SinkKind::Slack { webhook_url } => {
            Box::new(HttpSink::slack(&s.name, webhook_url, s.timeout))
        }
        SinkKind::Webhook { url } => Box::new(HttpSink::webhook(&s.name, url, s.timeout)),
        SinkKind::Email { smtp_url, from, to } => {
            Box::new(EmailSink::new(smtp_url, from, to, s.timeout))
        }
        SinkKind::Alertmanager(a) => Box::new(AlertmanagerSink::new(a, s.timeout)),
        SinkKind::Pagerduty(p) => Box::new(PagerdutySink::new(p, s.timeout)),
    }
}

/// Removes a secret URL from `text`: the whole URL, the URL without its scheme, its path and
/// query (a webhook's token), its user and password.
pub fn scrub(secret: &Secret, text: &str) -> String {
    let url = secret.expose();
    if url.is_empty() {
        return text.to_string();
    }
    let shown = redact_endpoint(url);
    let mut out = text.replace(url, &shown);
    if let Some((_, rest)) = url.split_once("://") {
        out = out.replace(rest, "***");
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if tail.len() > 1 {
            out = out.replace(tail, "/***");
        }
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            for piece in [pass, user] {
                if piece.len() >= 3 {
                    out = out.replace(piece, "***");
                    let decoded = percent_decode(piece);
                    if decoded.len() >= 3 && decoded != piece {
                        out = out.replace(&decoded, "***");
                    }
                }
            }
        }
    }
    // What the split above misses (a password holding `/`, or `?token=`-style query secrets
    // of an unparsable URL) the core's URL parsing finds.
    for s in invar_core::secret::url_secrets(url) {
        if s.chars().count() >= 3 {
            out = out.replace(&s, "***");
        }
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let b = (h * 16 + l) as u8;
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn payload_of(d: &Delivery) -> Result<AlertPayload, DeliveryError> {
    serde_json::from_value(d.payload.clone())
        .map_err(|e| DeliveryError::retry(None, format!("the stored notice cannot be read: {e}")))
}

/// The HTTP client every HTTP sink uses: rustls, a per-attempt timeout, invar's user agent.
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("invar/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// A request that got no answer, as text: what went wrong and the error chain, without the
/// URL (reqwest puts it in its errors). The caller still scrubs it.
pub(crate) fn request_error(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    format!("{kind}: {chain}")
}

/// The first 200 characters of a response body, for an error message.
pub(crate) async fn body_snippet(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    text.chars()
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_every_piece_of_a_secret_url() {
        let s = Secret::new("https://hooks.slack.com/services/T000/B000/tok3nSECRET");
        let msg = "error sending request for url (https://hooks.slack.com/services/T000/B000/tok3nSECRET): refused; path /services/T000/B000/tok3nSECRET";
        let out = scrub(&s, msg);
        assert!(!out.contains("tok3nSECRET"), "{out}");
        assert!(out.contains("https://hooks.slack.com/***"), "{out}");
        let m = Secret::new("smtps://ops%40example.com:pa%24%24word@mail.example.com:465");
        let out = scrub(
            &m,
            "auth failed for ops@example.com with pa$$word and pa%24%24word",
        );
        assert!(
            !out.contains("pa$$word") && !out.contains("pa%24%24word"),
            "{out}"
        );
        assert!(!out.contains("ops@example.com"), "{out}");
    }
}
