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
        if let Some(pw) = url_password(&self.0)
            && pw.len() >= 3
        {
            out = out.replace(pw, "***");
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

fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let at = authority.rfind('@')?;
    let userinfo = &authority[..at];
    let colon = userinfo.find(':')?;
    Some(&userinfo[colon + 1..])
}

/// Whether a connection to `host` may skip TLS: a loopback host or a Unix socket path, and the
/// URL does not ask for a TLS mode itself (`sslmode=` / `ssl-mode=`). TLS on loopback protects
/// nothing and costs handshake round trips (and Nagle delays) on every new connection.
pub fn loopback_without_tls_request(host: &str, url: &str) -> bool {
    let loopback =
        matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") || host.starts_with('/');
    loopback && !url.contains("sslmode=") && !url.contains("ssl-mode=")
}

/// `postgres://app:s3cret@db/app?password=x` → `postgres://app:***@db/app?password=***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(pw) = url_password(url) {
        let start = url.find("://").unwrap_or(0) + 3;
        let rest = &url[start..];
        let at = rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())]
            .rfind('@')
            .unwrap_or(0);
        let user_end = rest[..at].find(':').unwrap_or(at);
        out = format!("{}{}:***{}", &url[..start], &rest[..user_end], &rest[at..]);
        let _ = pw;
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let parts: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if ["password", "pass", "pwd", "token", "secret", "sslpassword"]
                        .contains(&k.to_ascii_lowercase().as_str()) =>
                {
                    format!("{k}=***")
                }
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", parts.join("&"));
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
    fn debug_and_display_never_show_the_password() {
        let s = Secret::new("postgres://app:hunter22@db/app");
        assert!(!format!("{s:?}").contains("hunter22"));
        assert!(!format!("{s}").contains("hunter22"));
        assert_eq!(s.scrub("failed: hunter22 at db"), "failed: *** at db");
    }
}
