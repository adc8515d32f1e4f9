//! Prometheus sources: a `promql` probe is one query of the HTTP API, evaluated at the run's
//! instant (`/api/v1/query`), or over `[now - range, now]` every `step`
//! (`/api/v1/query_range`).
//!
//! Rows:
//! - an instant vector: one row per series, its labels as columns (sorted; a series without a
//!   label has `null` there) and `value`, a double;
//! - a range vector or a range query: one row per sample, labels, `at` (a timestamp), `value`;
//! - a scalar or a string: one row, `value`.
//!
//! A label named `value` or `at` is the column `value_label` / `at_label`, so it never hides
//! the sample. An empty result is zero rows: a `fail_when` over it is a vacuous pass, and
//! `skip_when: count == 0` makes "no telemetry" a skip.
//!
//! Errors: Prometheus' own (`bad_data: parse error …`, an evaluation timeout, `warnings`) make
//! the probe an `error` with that text; no answer (refused, timed out, a non-JSON 5xx from a
//! proxy) makes the source unavailable for the run. The URL and header values are secrets:
//! every message is scrubbed of them.

use crate::http::{chain, header_map, scrub};
use crate::sink::{Output, RowSink};
use crate::{Concurrency, ReadCx, ReadError, SourceDriver};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use invar_core::{HeaderValue, Probe, PrometheusSource, PromqlProbe, Secret, Table, Value};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Probes of one source read at once.
const PROBE_CONCURRENCY: usize = 4;
/// An answer larger than this is refused (a query that selects far too much), never held.
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// A Prometheus server: one HTTP client, its base URL and headers.
pub struct PromConn {
    client: reqwest::Client,
    base: Secret,
    timeout: Duration,
    /// Kept to scrub messages of their values.
    headers: Vec<(String, HeaderValue)>,
    /// The same, as sent (built once).
    header_map: reqwest::header::HeaderMap,
}

impl PromConn {
    /// Builds the client; nothing is sent yet (the server is "down" only when a query gets no
    /// answer).
    pub fn new(src: &PrometheusSource) -> Result<PromConn, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(5))
            .connect_timeout(src.timeout)
            .user_agent(concat!("invar/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an http client: {}", e.without_url()))?;
        Ok(PromConn {
            client,
            base: src.url.clone(),
            timeout: src.timeout,
            headers: src.headers.clone(),
            header_map: header_map(&src.headers)?,
        })
    }

    fn scrub(&self, text: &str) -> String {
        scrub(&self.base, &self.headers, text)
    }

    /// Runs the query; `Err` holds the message and whether the server gave no answer.
    async fn query(&self, q: &PromqlProbe, now: DateTime<Utc>) -> Result<Table, ReadError> {
        let secs = |t: DateTime<Utc>| format!("{:.3}", t.timestamp_millis() as f64 / 1000.0);
        // The form is built before any await: its serializer is not `Send`.
        let (form, endpoint) = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("query", &q.query);
            form.append_pair("timeout", &format!("{}ms", self.timeout.as_millis()));
            let endpoint = match &q.range {
                None => {
                    form.append_pair("time", &secs(now));
                    "api/v1/query"
                }
                Some(r) => {
                    let range =
                        chrono::Duration::from_std(r.range).unwrap_or(chrono::Duration::MAX);
                    let start = now
                        .checked_sub_signed(range)
                        .unwrap_or(DateTime::UNIX_EPOCH);
                    form.append_pair("start", &secs(start));
                    form.append_pair("end", &secs(now));
                    form.append_pair("step", &format!("{}ms", r.step.as_millis().max(1)));
                    "api/v1/query_range"
                }
            };
            (form.finish(), endpoint)
        };
        let url = format!("{}/{endpoint}", self.base.expose().trim_end_matches('/'));
        // A little past Prometheus' own timeout, so its message (not ours) explains a slow query.
        let timeout = self.timeout + Duration::from_secs(2);
        let down = |e: reqwest::Error| {
            let e = e.without_url();
            let m = if e.is_timeout() {
                format!(
                    "no answer within {}",
                    invar_core::units::format_duration(timeout)
                )
            } else {
                chain(&e)
            };
            let m = self.scrub(&m);
            ReadError {
                message: m.clone(),
                down: Some(m),
            }
        };
        let mut resp = self
            .client
            .post(url)
            .headers(self.header_map.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .timeout(timeout)
            .send()
            .await
            .map_err(down)?;
        let status = resp.status();
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(down)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(ReadError::probe(format!(
                    "the answer is larger than {} MiB; narrow the query (fewer series or a longer `step`)",
                    MAX_ANSWER / (1024 * 1024)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let answer = decode(status, &body).map_err(|e| match e {
            Decoded::Refused(m) => ReadError::probe(self.scrub(&m)),
            Decoded::NoAnswer(m) => {
                let m = self.scrub(&m);
                ReadError {
                    message: m.clone(),
                    down: Some(m),
                }
            }
        })?;
        Ok(answer)
    }
}

/// Why an answer is not a table.
enum Decoded {
    /// Prometheus answered and refused the query (its own message).
    Refused(String),
    /// What answered is not Prometheus at work (a proxy's 502, an HTML page).
    NoAnswer(String),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    histogram: Option<serde_json::Value>,
    #[serde(default)]
    histograms: Option<serde_json::Value>,
}

/// An HTTP answer of the query API as a table.
fn decode(status: reqwest::StatusCode, body: &[u8]) -> Result<Table, Decoded> {
    let env: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(_) if status.is_server_error() => {
            return Err(Decoded::NoAnswer(format!(
                "HTTP {status} without a Prometheus answer"
            )));
        }
        Err(e) => {
            return Err(Decoded::Refused(format!(
                "HTTP {status}: not a Prometheus API answer ({e})"
            )));
        }
    };
    if env.status != "success" {
        let kind = env.error_type.unwrap_or_else(|| "error".into());
        let msg = env.error.unwrap_or_else(|| format!("HTTP {status}"));
        return Err(Decoded::Refused(format!("prometheus: {kind}: {msg}")));
    }
    if !env.warnings.is_empty() {
        return Err(Decoded::Refused(format!(
            "prometheus warned: {}",
            env.warnings.join("; ")
        )));
    }
    let Some(data) = env.data else {
        return Err(Decoded::Refused(
            "prometheus: a success without `data`".into(),
        ));
    };
    let bad =
        |e: serde_json::Error| Decoded::Refused(format!("prometheus: unreadable result: {e}"));
    match data.result_type.as_str() {
        "vector" | "matrix" => {
            let series: Vec<Series> = serde_json::from_value(data.result).map_err(bad)?;
            series_table(series, data.result_type == "matrix")
        }
        "scalar" | "string" => {
            let (_, v): (f64, String) = serde_json::from_value(data.result).map_err(bad)?;
            let value = if data.result_type == "scalar" {
                sample(&v)?
            } else {
                Value::Text(v)
            };
            let mut t = Table::new(vec!["value".into()]);
            t.rows.push(vec![value]);
            Ok(t)
        }
        other => Err(Decoded::Refused(format!(
            "prometheus: unknown result type `{other}`"
        ))),
    }
}

fn sample(v: &str) -> Result<Value, Decoded> {
    // Prometheus writes `NaN`, `+Inf` and `-Inf`, which Rust's parser reads too.
    v.parse::<f64>()
        .map(Value::Float)
        .map_err(|_| Decoded::Refused(format!("prometheus: `{v}` is not a number")))
}

fn series_table(series: Vec<Series>, matrix: bool) -> Result<Table, Decoded> {
    let labels: BTreeSet<&str> = series
        .iter()
        .flat_map(|s| s.metric.keys().map(String::as_str))
        .collect();
    let labels: Vec<String> = labels.into_iter().map(str::to_string).collect();
    let mut cols: Vec<String> = labels
        .iter()
        .map(|l| match l.as_str() {
            "value" | "at" => format!("{l}_label"),
            _ => l.clone(),
        })
        .collect();
    if matrix {
        cols.push("at".into());
    }
    cols.push("value".into());
    let mut t = Table::new(cols);
    for s in &series {
        if s.histogram.is_some() || s.histograms.is_some() {
            return Err(Decoded::Refused(
                "prometheus: a native histogram has no single value; query a number from it (e.g. `histogram_quantile(0.99, …)`)".into(),
            ));
        }
        let row_labels: Vec<Value> = labels
            .iter()
            .map(|l| {
                s.metric
                    .get(l)
                    .map_or(Value::Null, |v| Value::Text(v.clone()))
            })
            .collect();
        if matrix {
            for (at, v) in &s.values {
                let mut row = row_labels.clone();
                row.push(timestamp(*at));
                row.push(sample(v)?);
                t.rows.push(row);
            }
        } else if let Some((_, v)) = &s.value {
            let mut row = row_labels;
            row.push(sample(v)?);
            t.rows.push(row);
        }
    }
    Ok(t)
}

/// Prometheus' unix seconds (with milliseconds) as a timestamp.
fn timestamp(at: f64) -> Value {
    let ms = (at * 1000.0).round();
    if !ms.is_finite() || ms.abs() > 8.0e15 {
        return Value::Null;
    }
    DateTime::from_timestamp_millis(ms as i64).map_or(Value::Null, Value::Timestamp)
}

impl SourceDriver for PromConn {
    fn concurrency(&self) -> Concurrency {
        Concurrency::PerSource(PROBE_CONCURRENCY)
    }

    fn read(
        self: Arc<Self>,
        probe: &Probe,
        sink: RowSink,
        cx: &ReadCx,
    ) -> BoxFuture<'static, Result<Output, ReadError>> {
        let Probe::Promql(q) = probe else {
            return crate::not_mine(probe, "a prometheus");
        };
        let (q, now) = (q.clone(), cx.now);
        Box::pin(async move {
            match self.query(&q, now).await {
                Ok(t) => Ok(sink.fill(t)),
                Err(e) => Err(ReadError {
                    message: format!("`{}`: {}", q.source, e.message),
                    down: e.down,
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn ok(body: &str) -> Table {
        match decode(StatusCode::OK, body.as_bytes()) {
            Ok(t) => t,
            Err(Decoded::Refused(m) | Decoded::NoAnswer(m)) => panic!("{m}"),
        }
    }

    fn refused(status: StatusCode, body: &str) -> String {
        match decode(status, body.as_bytes()) {
            Err(Decoded::Refused(m)) => m,
            Err(Decoded::NoAnswer(m)) => panic!("no answer: {m}"),
            Ok(_) => panic!("decoded"),
        }
    }

    #[test]
    fn a_vector_is_one_row_per_series_with_the_union_of_labels() {
        let t = ok(
            r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"api","code":"500"},"value":[1700000000.5,"0.25"]},
            {"metric":{"job":"web"},"value":[1700000000.5,"NaN"]}]}}"#,
        );
        assert_eq!(t.columns, ["code", "job", "value"]);
        assert_eq!(t.rows[0][0], Value::Text("500".into()));
        assert_eq!(t.rows[0][2], Value::Float(0.25));
        assert_eq!(t.rows[1][0], Value::Null);
        assert!(matches!(t.rows[1][2], Value::Float(f) if f.is_nan()));
    }

    #[test]
    fn a_matrix_is_one_row_per_sample_with_its_time() {
        let t = ok(
            r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"value":"x"},"values":[[1700000000,"1"],[1700000060,"+Inf"]]}]}}"#,
        );
        assert_eq!(t.columns, ["value_label", "at", "value"]);
        assert_eq!(t.rows.len(), 2);
        let Value::Timestamp(at) = t.rows[1][1] else {
            panic!("{:?}", t.rows[1][1])
        };
        assert_eq!(at.timestamp(), 1700000060);
        assert_eq!(t.rows[1][2], Value::Float(f64::INFINITY));
    }

    #[test]
    fn a_scalar_is_one_row_and_an_empty_vector_none() {
        let t = ok(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"42"]}}"#);
        assert_eq!(
            (t.columns.as_slice(), t.rows.len()),
            (&["value".to_string()][..], 1)
        );
        let t = ok(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#);
        assert_eq!(
            (t.columns.as_slice(), t.rows.len()),
            (&["value".to_string()][..], 0)
        );
    }

    #[test]
    fn errors_and_warnings_carry_prometheus_words() {
        let m = refused(
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#,
        );
        assert_eq!(m, "prometheus: bad_data: parse error at char 5");
        let m = refused(
            StatusCode::OK,
            r#"{"status":"success","warnings":["partial data"],"data":{"resultType":"vector","result":[]}}"#,
        );
        assert!(m.contains("partial data"), "{m}");
        assert!(matches!(
            decode(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>"),
            Err(Decoded::NoAnswer(_))
        ));
        let m = refused(
            StatusCode::OK,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{}]}]}}"#,
        );
        assert!(m.contains("native histogram"), "{m}");
    }
}
