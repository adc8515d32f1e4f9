//! `email`: SMTP with lettre, a plain-text and an HTML part.

use super::{DeliveryError, Sink, payload_of, percent_decode, scrub};
use crate::render;
use futures::future::BoxFuture;
use invar_core::Secret;
use invar_store::Delivery;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// `smtp://` requires STARTTLS, `smtps://` is implicit TLS; `?tls=none` (local relays only)
/// sends in clear, `?tls=opportunistic` upgrades when offered. Credentials come from the URL's
/// user and password.
pub struct EmailSink {
    url: Secret,
    from: String,
    to: Vec<String>,
    timeout: Duration,
}

impl EmailSink {
    pub fn new(url: &Secret, from: &str, to: &[String], timeout: Duration) -> EmailSink {
        EmailSink {
            url: url.clone(),
            from: from.to_string(),
            to: to.to_vec(),
            timeout,
        }
    }

    fn fail(&self, code: Option<i32>, message: String) -> DeliveryError {
        DeliveryError::retry(code, scrub(&self.url, &message))
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

    fn message(&self, d: &Delivery) -> Result<Message, DeliveryError> {
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
        m.multipart(MultiPart::alternative_plain_html(
            render::email_text(&p),
            render::email_html(&p),
        ))
        .map_err(|e| self.fail(None, format!("cannot build the message: {e}")))
    }
}

impl Sink for EmailSink {
    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<i32, DeliveryError>> {
        Box::pin(async move {
            let msg = self.message(d)?;
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
