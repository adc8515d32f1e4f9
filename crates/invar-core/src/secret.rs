//! Secrets are a type: their `Debug` and `Display` never show the value.

use std::fmt;

/// A secret string (connection URL, token). Printing it shows a redacted form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The raw value, for the one place that must use it (a driver).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The value with any password replaced by `***`, safe for messages.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
    /// Removes every occurrence of this secret (and its password) from `text`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        if !self.0.is_empty() {
            out = out.replace(&self.0, &self.redacted());
        }
        // Any form of the password or a secret query value, wherever it appears. Shorter
        // ones would hit ordinary words; the redacted URL above already hides them.
        for s in url_secrets(&self.0) {
            if s.chars().count() >= 3 {
                out = out.replace(&s, "***");
            }
        }
        out
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.redacted())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Whether a connection to `host` may skip TLS: a loopback host or a Unix socket path, and the
/// URL does not ask for a TLS mode itself (`sslmode=` / `ssl-mode=`). TLS on loopback protects
/// nothing and costs handshake round trips (and Nagle delays) on every new connection.
pub fn loopback_without_tls_request(host: &str, url: &str) -> bool {
    let loopback =
        matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") || host.starts_with('/');
    loopback && !url.contains("sslmode=") && !url.contains("ssl-mode=")
}

/// Query parameters whose values are secrets (compared without case).
const SECRET_PARAMS: &[&str] = &[
    "password",
    "pass",
    "pwd",
    "passwd",
    "token",
    "access_token",
    "auth_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "client_secret",
    "sslpassword",
    "sig",
    "signature",
];

/// Where the userinfo password of `url` is, as written: the span between the first `:` of the
/// userinfo and the last `@` before the query. By hand, because a password holding `/` (or a
/// `@` the writer did not escape) makes the URL unparsable or parsed with no password at all.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let query = rest.find(['?', '#']).unwrap_or(rest.len());
    let at = rest[..query].rfind('@')?;
    let colon = rest[..at].find(':')?;
    Some((start + colon + 1, start + at))
}

/// The query of `url` as written (after the first `?` past the userinfo), if any.
fn query_span(url: &str) -> Option<usize> {
    let from = password_span(url).map_or(0, |(_, at)| at);
    url[from..].find('?').map(|q| from + q + 1)
}

/// Every form in which `url`'s secrets may show up in text: the password as written, as the
/// `url` crate serializes it, and percent-decoded; each secret query value likewise. Empty
/// strings are left out.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        let decoded = percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned();
        for form in [s.to_string(), decoded] {
            if !form.is_empty() && !out.contains(&form) {
                out.push(form);
            }
        }
    };
    if let Some((a, b)) = password_span(url) {
        add(&url[a..b]);
    }
    if let Ok(parsed) = url::Url::parse(url) {
        if let Some(pw) = parsed.password() {
            add(pw);
        }
        for (k, v) in parsed.query_pairs() {
            if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) {
                add(&v);
            }
        }
    }
    if let Some(q) = query_span(url) {
        for kv in url[q..].split(['&', ';', '#']) {
            if let Some((k, v)) = kv.split_once('=')
                && SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str())
            {
                add(v);
            }
        }
    }
    out
}

/// `postgres://app:s3cret@db/app?password=x` → `postgres://app:***@db/app?password=***`.
/// The password and every secret query value are replaced where they stand; any other
/// occurrence of a secret (of 3 characters or more) is replaced too.
pub fn redact_url(url: &str) -> String {
    let mut out = match password_span(url) {
        Some((a, b)) => format!("{}***{}", &url[..a], &url[b..]),
        None => url.to_string(),
    };
    if let Some(q) = query_span(&out) {
        let (head, query) = out.split_at(q);
        let parts: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", parts.join("&"));
    }
    for s in url_secrets(url) {
        if s.chars().count() >= 3 && s != "***" {
            out = out.replace(&s, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_and_query_secrets() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db/app"),
            "postgres://app:***@db/app"
        );
        assert_eq!(
            redact_url("mysql://root:pw@127.0.0.1:3306/test?password=x&ssl=true"),
            "mysql://root:***@127.0.0.1:3306/test?password=***&ssl=true"
        );
        assert_eq!(redact_url("postgres://db/app"), "postgres://db/app");
        assert_eq!(redact_url("redis://:pw@h:6379"), "redis://:***@h:6379");
    }

    #[test]
    fn tls_is_skipped_only_on_loopback_without_an_explicit_mode() {
        assert!(loopback_without_tls_request(
            "127.0.0.1",
            "postgres://u@127.0.0.1/db"
        ));
        assert!(loopback_without_tls_request(
            "/run/postgresql",
            "postgres:///db"
        ));
        assert!(!loopback_without_tls_request(
            "127.0.0.1",
            "postgres://u@127.0.0.1/db?sslmode=require"
        ));
        assert!(!loopback_without_tls_request(
            "db.internal",
            "postgres://u@db.internal/db"
        ));
    }

    #[test]
    fn awkward_urls_are_redacted() {
        for (url, pw) in [
            ("postgres://app:p@ss:w/rd@db:5432/app", "p@ss:w/rd"),
            ("postgres://app:p%40ss%2Fw@db/app", "p%40ss%2Fw"),
            ("postgres://app:secr3t@[::1]:5432/app", "secr3t"),
            (
                "postgres://app@db/app?sslmode=require&sslpassword=k3yp4ss",
                "k3yp4ss",
            ),
            ("https://hooks.example.com/x?token=t0k3n&a=1", "t0k3n"),
            (
                "https://api.example.com/v1?key=AbC123&secret=ZyX987",
                "AbC123",
            ),
            ("mysql://root:1/23@h/db", "1/23"),
        ] {
            let r = redact_url(url);
            assert!(!r.contains(pw), "{url} -> {r}");
            assert!(r.contains("***"), "{url} -> {r}");
        }
        assert!(!redact_url("postgres://app:p%40ss@db/app").contains("p@ss"));
        let s = Secret::new("postgres://app:p%40ss%2Fw0rd@db/app");
        assert_eq!(s.scrub("auth failed for p@ss/w0rd"), "auth failed for ***");
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        let s = Secret::new("postgres://app:hunter22@db/app");
        assert!(!format!("{s:?}").contains("hunter22"));
        assert!(!format!("{s}").contains("hunter22"));
        assert_eq!(s.scrub("failed: hunter22 at db"), "failed: *** at db");
    }
}
