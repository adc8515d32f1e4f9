//! Sinks: deliver one outbox row. Success means a 2xx (HTTP) or an accepted message (SMTP);
//! every error is scrubbed of the sink's URL and credentials before anyone sees it.

use crate::plan::AlertPayload;
use crate::render;
use futures::future::BoxFuture;
use invar_core::{AlertSink, Secret, SinkKind, redact_endpoint};
use invar_store::Delivery;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// A failed attempt. `message` is already scrubbed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// The HTTP status or SMTP reply code, when the server answered.
    pub code: Option<i32>,
    pub message: String,
}

/// Somewhere notices go.
pub trait Sink: Send + Sync {
    /// Delivers one outbox row; Ok carries the HTTP status or SMTP code.
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<i32, DeliveryError>>;
    /// Per attempt.
    fn timeout(&self) -> Duration;
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

fn percent_decode(s: &str) -> String {
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

fn payload_of(d: &Delivery) -> Result<AlertPayload, DeliveryError> {
    serde_json::from_value(d.payload.clone()).map_err(|e| DeliveryError {
        code: None,
        message: format!("the stored notice cannot be read: {e}"),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpFormat {
    Slack,
    Webhook,
}

/// `slack` and `webhook`: a JSON POST.
pub struct HttpSink {
    name: String,
    url: Secret,
    format: HttpFormat,
    timeout: Duration,
    client: reqwest::Client,
}

impl HttpSink {
    fn new(name: &str, url: &Secret, format: HttpFormat, timeout: Duration) -> HttpSink {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("invar/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        HttpSink {
            name: name.to_string(),
            url: url.clone(),
            format,
            timeout,
            client,
        }
    }

    fn fail(&self, code: Option<i32>, message: String) -> DeliveryError {
        DeliveryError {
            code,
            message: scrub(&self.url, &message),
        }
    }
}

impl Sink for HttpSink {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<i32, DeliveryError>> {
        Box::pin(async move {
            let p = payload_of(d)?;
            let body = match self.format {
                HttpFormat::Slack => render::slack_message(&p),
                HttpFormat::Webhook => render::webhook_body(&p, &d.idempotency_key, &self.name),
            };
            let resp = self
                .client
                .post(self.url.expose())
                .header("Idempotency-Key", &d.idempotency_key)
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    let kind = if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "cannot connect"
                    } else {
                        "request failed"
                    };
                    // Never the URL: reqwest puts it in its errors.
                    let e = e.without_url();
                    let mut chain = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        chain.push_str(": ");
                        chain.push_str(&s.to_string());
                        src = s.source();
                    }
                    self.fail(None, format!("{kind}: {chain}"))
                })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(i32::from(status.as_u16()));
            }
            let text = resp.text().await.unwrap_or_default();
            let snippet: String = text.chars().take(200).collect();
            Err(self.fail(
                Some(i32::from(status.as_u16())),
                format!("http {}: {}", status.as_u16(), snippet.trim()),
            ))
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// `email`: SMTP with lettre. `smtp://` requires STARTTLS, `smtps://` is implicit TLS;
/// `?tls=none` (local relays only) sends in clear, `?tls=opportunistic` upgrades when
/// offered. Credentials come from the URL's user and password.
pub struct EmailSink {
    url: Secret,
    from: String,
    to: Vec<String>,
    timeout: Duration,
}

impl EmailSink {
    fn fail(&self, code: Option<i32>, message: String) -> DeliveryError {
        DeliveryError {
            code,
            message: scrub(&self.url, &message),
        }
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
        let bad = |m: &str| self.fail(None, format!("invalid smtp_url: {m}"));
        let raw = self.url.expose();
        let (scheme, rest) = raw.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = rest.split('/').next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
                (h, Some(p.parse::<u16>().map_err(|_| bad("invalid port"))?))
            }
            _ => (hostport, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let tls_mode = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("tls="))
            .unwrap_or("");
        let params = || {
            TlsParameters::new(host.to_string())
                .map_err(|e| self.fail(None, format!("tls setup failed: {e}")))
        };
        let (tls, default_port) = match (scheme.to_ascii_lowercase().as_str(), tls_mode) {
            ("smtps", _) => (Tls::Wrapper(params()?), 465),
            ("smtp", "none") => (Tls::None, 25),
            ("smtp", "opportunistic") => (Tls::Opportunistic(params()?), 587),
            ("smtp", "" | "required") => (Tls::Required(params()?), 587),
            ("smtp", _) => return Err(bad("`tls` must be required, opportunistic or none")),
            _ => return Err(bad("the scheme must be smtp or smtps")),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port.unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(self.timeout));
        if let Some(u) = userinfo {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            b = b.credentials(Credentials::new(percent_decode(user), percent_decode(pass)));
        }
        Ok(b.build())
    }
}

impl Sink for EmailSink {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<i32, DeliveryError>> {
        Box::pin(async move {
            let p = payload_of(d)?;
            let from: Mailbox = self
                .from
                .parse()
                .map_err(|e| self.fail(None, format!("invalid `from`: {e}")))?;
            let mut m = Message::builder()
                .from(from)
                .subject(render::email_subject(&p))
                .message_id(Some(format!(
                    "<{}@invar>",
                    d.idempotency_key.replace(
                        |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.',
                        "-"
                    )
                )));
            for to in &self.to {
                let mb: Mailbox = to
                    .parse()
                    .map_err(|e| self.fail(None, format!("invalid recipient `{to}`: {e}")))?;
                m = m.to(mb);
            }
            let msg = m
                .multipart(MultiPart::alternative_plain_html(
                    render::email_text(&p),
                    render::email_html(&p),
                ))
                .map_err(|e| self.fail(None, format!("cannot build the message: {e}")))?;
            let transport = self.transport()?;
            match transport.send(msg).await {
                Ok(resp) => Ok(i32::from(u16::from(resp.code()))),
                Err(e) => {
                    let code = e.status().map(|c| i32::from(u16::from(c)));
                    let mut chain = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        chain.push_str(": ");
                        chain.push_str(&s.to_string());
                        src = s.source();
                    }
                    Err(self.fail(code, format!("smtp: {chain}")))
                }
            }
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The sink a config entry describes.
pub fn build_sink(s: &AlertSink) -> Box<dyn Sink> {
    match &s.kind {
        SinkKind::Slack { webhook_url } => Box::new(HttpSink::new(
            &s.name,
            webhook_url,
            HttpFormat::Slack,
            s.timeout,
        )),
        SinkKind::Webhook { url } => {
            Box::new(HttpSink::new(&s.name, url, HttpFormat::Webhook, s.timeout))
        }
        SinkKind::Email { smtp_url, from, to } => Box::new(EmailSink {
            url: smtp_url.clone(),
            from: from.clone(),
            to: to.clone(),
            timeout: s.timeout,
        }),
    }
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
