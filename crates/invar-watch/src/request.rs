//! What the API's routes decode from a request: the JSON body of `POST /api/v1/runs` and the
//! query strings of the list routes. Plain serde types, kept apart from the router so the
//! fuzz target `api_request` (under `fuzz/`) decodes exactly what the routes decode.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunRequest {
    /// The suite to run (default: the implicit `all`).
    pub(crate) suite: Option<String>,
    /// Run only these invariant ids.
    #[serde(default)]
    pub(crate) only: Vec<String>,
}

/// The body of `POST /runs`: blank is `{}`; anything else must be a JSON object (serde would
/// also take a struct from an array, so `[null]` would run the suite `all`).
pub(crate) fn run_request(body: &[u8]) -> Result<RunRequest, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RunRequest::default());
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if !v.is_object() {
        return Err("the body must be a JSON object".into());
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunsParams {
    /// Only runs of this suite.
    pub(crate) suite: Option<String>,
    /// Only runs started at or after this time (RFC 3339).
    pub(crate) since: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
    /// Page size (default 50, at most 1000).
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ViolationsParams {
    /// Only violations of this invariant.
    pub(crate) invariant: Option<String>,
    /// Only violations of invariants of this severity.
    pub(crate) severity: Option<String>,
    /// Only violations recorded at or after this time (RFC 3339).
    pub(crate) since: Option<DateTime<Utc>>,
    /// Page size (default 50, at most 1000).
    pub(crate) limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsParams {
    /// Only violations recorded at or after this time (RFC 3339).
    pub(crate) since: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct IncidentsParams {
    /// Only open incidents.
    pub(crate) open: Option<bool>,
    /// Only incidents of this invariant (or `source:NAME`).
    pub(crate) subject: Option<String>,
    /// Only incidents opened at or after this time (RFC 3339).
    pub(crate) since: Option<DateTime<Utc>>,
    /// At most this many (default 50, at most 1000).
    pub(crate) limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct MeasurementsParams {
    /// Only results of runs started at or after this time (RFC 3339).
    pub(crate) since: Option<DateTime<Utc>>,
    /// Page size (default 50, at most 1000).
    pub(crate) limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// Decodes `body` as `POST /runs` does (blank = `{}`), then `query` as each list route does;
/// the error is the message a 4xx answer would carry. For the fuzz target: it must never
/// panic, whatever the bytes.
pub fn decode_request(query: &str, body: &[u8]) -> Vec<Result<(), String>> {
    fn q<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<(), String> {
        axum::extract::Query::<T>::try_from_uri(uri)
            .map(|_| ())
            .map_err(|e| e.body_text())
    }
    let mut out = Vec::new();
    out.push(run_request(body).map(|_| ()));
    match format!("/api/v1/x?{query}").parse::<axum::http::Uri>() {
        // hyper answers 400 to a request line that is not a URI, before any route.
        Err(e) => out.push(Err(e.to_string())),
        Ok(uri) => {
            out.push(q::<RunsParams>(&uri));
            out.push(q::<ViolationsParams>(&uri));
            out.push(q::<StatsParams>(&uri));
            out.push(q::<IncidentsParams>(&uri));
            out.push(q::<MeasurementsParams>(&uri));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_the_routes() {
        let r = decode_request(
            "limit=5&since=2026-01-01T00:00:00Z&open=true",
            b" {\"suite\": \"a\"} ",
        );
        assert!(r.iter().all(Result::is_ok), "{r:?}");
        let r = decode_request("limit=-1", b"{\"nope\": 1}");
        assert!(
            r[0].as_ref().unwrap_err().contains("unknown field"),
            "{r:?}"
        );
        assert!(r[1].is_err() && r[3].is_ok(), "{r:?}");
        // An array is not a run request, though serde would read a struct from one.
        let r = decode_request("", b"[null]");
        assert!(r[0].as_ref().unwrap_err().contains("JSON object"), "{r:?}");
        assert!(decode_request("", b"[\"all\", []]")[0].is_err());
    }
}
