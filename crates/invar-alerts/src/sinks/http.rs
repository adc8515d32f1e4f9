//! `slack` and `webhook`: one JSON POST per notice, the idempotency key in a header.

use super::{DeliveryError, Sink, body_snippet, http_client, payload_of, request_error, scrub};
use crate::render;
use futures::future::BoxFuture;
use invar_core::Secret;
use invar_store::Delivery;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HttpFormat {
    Slack,
    Webhook,
}

/// `slack` (Block Kit) and `webhook` (docs/WEBHOOK.md): a JSON POST.
pub struct HttpSink {
    name: String,
    url: Secret,
    format: HttpFormat,
    timeout: Duration,
    client: reqwest::Client,
}

impl HttpSink {
    pub fn slack(name: &str, url: &Secret, timeout: Duration) -> HttpSink {
        HttpSink::new(name, url, HttpFormat::Slack, timeout)
    }

    pub fn webhook(name: &str, url: &Secret, timeout: Duration) -> HttpSink {
        HttpSink::new(name, url, HttpFormat::Webhook, timeout)
    }

    fn new(name: &str, url: &Secret, format: HttpFormat, timeout: Duration) -> HttpSink {
        HttpSink {
            name: name.to_string(),
            url: url.clone(),
            format,
            timeout,
            client: http_client(timeout),
        }
    }

    fn fail(&self, code: Option<i32>, message: String) -> DeliveryError {
        DeliveryError::retry(code, scrub(&self.url, &message))
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
                .map_err(|e| self.fail(None, request_error(e)))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(i32::from(status.as_u16()));
            }
            let snippet = body_snippet(resp).await;
            Err(self.fail(
                Some(i32::from(status.as_u16())),
                format!("http {}: {snippet}", status.as_u16()),
            ))
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}
