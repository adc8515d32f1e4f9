//! Secrets in awkward URLs: passwords holding `@`, `:`, `/`, `%` escapes, IPv6 hosts and
//! query-string secrets are always found and hidden — in the redacted URL, in text scrubbed
//! by the secret, and in its Display and Debug.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use invar_core::{Secret, redact_url};
use proptest::prelude::*;

/// Passwords from an alphabet users and hosts never use (upper case, digits, punctuation),
/// at least 6 characters with a character URLs treat specially, so "absent" is meaningful.
fn password() -> impl Strategy<Value = String> {
    (
        "[A-Z0-9]{3,10}",
        prop::collection::vec(
            prop::sample::select(vec![
                '@', ':', '/', '%', '!', '$', '&', '+', ',', ';', '=', '~', '*', '(',
            ]),
            1..4,
        ),
        "[A-Z0-9]{2,6}",
    )
        .prop_map(|(a, specials, b)| format!("{a}{}{b}", specials.into_iter().collect::<String>()))
}

fn encode(pw: &str, all: bool) -> String {
    pw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || (!all && !matches!(c, '@' | '/' | '%' | '?' | '#')) {
                c.to_string()
            } else {
                format!("%{:02X}", c as u32)
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn passwords_and_query_secrets_never_show(
        pw in password(),
        token in "[A-Z0-9]{8,16}",
        scheme in prop::sample::select(vec!["postgres", "mysql", "redis", "https"]),
        host in prop::sample::select(vec!["db", "127.0.0.1", "[::1]", "[2001:db8::7]", "db.internal"]),
        param in prop::sample::select(vec!["password", "token", "sslpassword", "key", "secret", "api_key"]),
        how in 0u8..3,
    ) {
        let written = match how {
            0 => pw.clone(),          // as typed, `@` and `/` included
            1 => encode(&pw, false),  // the awkward characters escaped
            _ => encode(&pw, true),   // everything escaped
        };
        let url = format!("{scheme}://app:{written}@{host}:5432/app?sslmode=require&{param}={token}");
        let secret = Secret::new(url.clone());
        let r = redact_url(&url);
        let shown = [
            r.clone(),
            format!("{secret}"),
            format!("{secret:?}"),
            secret.scrub(&format!("connect {url}: password {pw} rejected ({written}); {param}={token}")),
        ];
        for s in &shown {
            prop_assert!(!s.contains(&pw), "password {pw:?} in {s:?} (url {url})");
            prop_assert!(!s.contains(&written), "written {written:?} in {s:?}");
            prop_assert!(!s.contains(&token), "token in {s:?}");
        }
        prop_assert!(r.contains(host.trim_start_matches('[').trim_end_matches(']')), "{r}");
    }
}
