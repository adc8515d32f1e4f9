//! HTTP sources: `http` probes send one request per path and yield one row per answer:
//! `path`, `status`, `latency_ms`, `body` (parsed JSON when the response says it is JSON,
//! else text; at most 1 MiB is read), `headers` (a map, lower-case names).
//!
//! - Any status is an answer (a 500 is a row with `status = 500`); a request that gets no
//!   answer — refused, timed out, DNS — makes the whole probe an error naming the path, so
//!   the invariants that read it are `error`, never `pass`.
//! - Redirects are not followed unless the probe says `follow_redirects: true`.
//! - Requests of one probe run concurrently (at most [`CONCURRENCY`] at once), rows in the
//!   order of `paths`.
//! - Secrets: the base URL (it may hold credentials) and every header value never appear in
//!   an error: errors are taken `without_url()` and scrubbed.
//! - TLS is rustls with the bundled web PKI roots (the workspace's one TLS stack).

use futures::StreamExt;
use invar_core::{HeaderValue, HttpProbe, HttpSource, Secret, Table, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Requests of one probe in flight at once.
pub const CONCURRENCY: usize = 8;
/// Bodies are read up to this many bytes; the rest is dropped.
pub const MAX_BODY: usize = 1024 * 1024;

/// An HTTP source: two clients (without and with redirects), its base URL and headers.
#[derive(Clone)]
pub struct HttpConn {
    plain: reqwest::Client,
    follow: reqwest::Client,
    base: Secret,
    timeout: Duration,
    headers: Vec<(String, HeaderValue)>,
}

impl std::fmt::Debug for HttpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConn")
            .field("base_url", &self.base)
            .finish_non_exhaustive()
    }
}

impl HttpConn {
    /// Builds the clients; nothing is sent yet (an HTTP source is "down" only when a request
    /// gets no answer).
    pub fn new(src: &HttpSource) -> Result<HttpConn, String> {
        let build = |policy: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .redirect(policy)
                .connect_timeout(src.timeout)
                .user_agent(concat!("invar/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build an http client: {}", e.without_url()))
        };
        Ok(HttpConn {
            plain: build(reqwest::redirect::Policy::none())?,
            follow: build(reqwest::redirect::Policy::limited(10))?,
            base: src.base_url.clone(),
            timeout: src.timeout,
            headers: src.headers.clone(),
        })
    }

    /// Sends every request of the probe and returns one row per path, or the reasons of the
    /// requests that got no answer (redacted).
    pub async fn read(&self, probe: &HttpProbe) -> Result<Table, String> {
        // Owned futures (not borrowing closures), so the probe's future is `Send + 'static`.
        let mut requests = Vec::with_capacity(probe.paths.len());
        for path in &probe.paths {
            let (me, probe, path) = (self.clone(), probe.clone(), path.clone());
            requests.push(async move { me.request(&probe, &path).await });
        }
        let answers: Vec<Result<Vec<Value>, String>> = futures::stream::iter(requests)
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut table = Table::new(
            ["path", "status", "latency_ms", "body", "headers"]
                .iter()
                .map(|c| c.to_string())
                .collect(),
        );
        let mut failed = Vec::new();
        for a in answers {
            match a {
                Ok(row) => table.rows.push(row),
                Err(e) => failed.push(e),
            }
        }
        if !failed.is_empty() {
            let n = probe.paths.len();
            return Err(self.scrub(&format!(
                "no answer to {} of {n} {}: {}",
                failed.len(),
                if n == 1 { "request" } else { "requests" },
                failed.join("; ")
            )));
        }
        Ok(table)
    }

    fn scrub(&self, text: &str) -> String {
        scrub(&self.base, &self.headers, text)
    }

    async fn request(&self, probe: &HttpProbe, path: &str) -> Result<Vec<Value>, String> {
        let url = format!("{}{path}", self.base.expose().trim_end_matches('/'));
        let method = reqwest::Method::from_bytes(probe.method.as_bytes())
            .map_err(|_| format!("unknown method `{}`", probe.method))?;
        let client = if probe.follow_redirects {
            &self.follow
        } else {
            &self.plain
        };
        let timeout = probe.timeout.unwrap_or(self.timeout);
        // The probe's headers replace the source's of the same name.
        let headers = header_map(self.headers.iter().chain(&probe.headers))?;
        let mut req = client
            .request(method, &url)
            .headers(headers)
            .timeout(timeout);
        if let Some(body) = &probe.body {
            req = req.body(body.clone());
        }
        let what = format!("{} {path}", probe.method);
        let failed = |e: reqwest::Error| {
            let e = e.without_url();
            if e.is_timeout() {
                format!(
                    "{what}: timed out after {}",
                    invar_core::units::format_duration(timeout)
                )
            } else {
                format!("{what}: {}", chain(&e))
            }
        };
        let t0 = Instant::now();
        let mut resp = req.send().await.map_err(failed)?;
        let status = resp.status().as_u16();
        let mut header_map: BTreeMap<String, Value> = BTreeMap::new();
        for (name, value) in resp.headers() {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            header_map
                .entry(name.as_str().to_ascii_lowercase())
                .and_modify(|e| {
                    if let Value::Text(t) = e {
                        t.push_str(", ");
                        t.push_str(&v);
                    }
                })
                .or_insert_with(|| Value::Text(v.clone()));
        }
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            let room = MAX_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_BODY {
                break;
            }
        }
        let latency_ms = t0.elapsed().as_millis() as i64;
        let body = if is_json {
            serde_json::from_slice::<serde_json::Value>(&body)
                .map(|j| Value::from_json(&j))
                .unwrap_or_else(|_| Value::Text(String::from_utf8_lossy(&body).into_owned()))
        } else {
            Value::Text(String::from_utf8_lossy(&body).into_owned())
        };
        Ok(vec![
            Value::Text(path.to_string()),
            Value::Int(i64::from(status)),
            Value::Int(latency_ms),
            body,
            Value::Map(header_map),
        ])
    }
}

/// Secret headers as reqwest's, marked sensitive; later names replace earlier ones.
pub(crate) fn header_map<'a>(
    headers: impl IntoIterator<Item = &'a (String, HeaderValue)>,
) -> Result<reqwest::header::HeaderMap, String> {
    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        let mut value = reqwest::header::HeaderValue::from_str(value.expose())
            .map_err(|_| format!("the value of header `{name}` is not valid"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// `text` without the base URL (it may hold credentials) or any header value.
pub(crate) fn scrub(base: &Secret, headers: &[(String, HeaderValue)], text: &str) -> String {
    let mut out = base.scrub(text);
    for (_, v) in headers {
        out = v.scrub(&out);
    }
    out
}

/// An error's innermost causes on one line: `tcp connect error: Connection refused (os error
/// 111)` (the outer layers only say "error sending request").
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut all = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        all.push(s.to_string());
        cur = s.source();
    }
    all.dedup();
    let keep = all.len().saturating_sub(2);
    all[keep..].join(": ")
}

/// Probes read at once from one HTTP source (each probe's own requests are bounded again by
/// [`CONCURRENCY`]).
const PROBE_CONCURRENCY: usize = 4;

impl crate::SourceDriver for HttpConn {
    fn concurrency(&self) -> crate::Concurrency {
        crate::Concurrency::PerSource(PROBE_CONCURRENCY)
    }

    fn read(
        self: std::sync::Arc<Self>,
        probe: &invar_core::Probe,
        sink: crate::sink::RowSink,
        _cx: &crate::ReadCx,
    ) -> futures::future::BoxFuture<'static, Result<crate::sink::Output, crate::ReadError>> {
        let invar_core::Probe::Http(hp) = probe else {
            return crate::not_mine(probe, "an http");
        };
        let hp = hp.clone();
        Box::pin(async move {
            match HttpConn::read(&self, &hp).await {
                Ok(t) => Ok(sink.fill(t)),
                // No answer: the source is down for this run.
                Err(e) => Err(crate::ReadError {
                    message: format!("`{}`: {e}", hp.source),
                    down: Some(e),
                }),
            }
        })
    }
}
