//! Diagnostics: every config mistake with its file, line:col, key path and a hint.

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use std::fmt;
use std::path::PathBuf;
use std::sync::LazyLock;

/// One config mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given (includes are joined onto the including file's directory).
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    /// Where in the document, e.g. `invariants[2].probe.sql`.
    pub key_path: String,
    /// Lower-case; values in backticks. Never holds a secret's value.
    pub message: String,
    /// What to do about it, e.g. `expected one of: id, title, …`.
    pub hint: Option<String>,
    /// Caret width in characters (at least 1).
    pub len: usize,
    /// The source line the caret points into, with URL passwords masked; None when unknown.
    pub source_line: Option<String>,
}

/// Every mistake found while loading a config (all files, all at once).
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render(false))]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Renders every diagnostic like rustc does, then a count line (`2 errors`).
    pub fn render(&self, color: bool) -> String {
        let renderer = if color {
            Renderer::styled().hyperlink(false)
        } else {
            Renderer::plain()
        };
        let mut out = String::new();
        for d in &self.items {
            out.push_str(&d.render_with(&renderer));
            out.push_str("\n\n");
        }
        let n = self.items.len();
        out.push_str(&format!("{n} error{}\n", if n == 1 { "" } else { "s" }));
        out
    }
}

impl Diagnostic {
    /// Renders this diagnostic alone (no trailing newline).
    pub fn render(&self, color: bool) -> String {
        let renderer = if color {
            Renderer::styled().hyperlink(false)
        } else {
            Renderer::plain()
        };
        self.render_with(&renderer)
    }

    fn render_with(&self, renderer: &Renderer) -> String {
        let path = self.file.display().to_string();
        let mut group = Group::with_title(Level::ERROR.primary_title(self.message.as_str()));
        match &self.source_line {
            Some(text) => {
                let (start, end) = byte_range(text, self.col.saturating_sub(1), self.len.max(1));
                group = group.element(
                    Snippet::source(text.as_str())
                        .line_start(self.line)
                        .path(path)
                        .annotation(AnnotationKind::Primary.span(start..end)),
                );
            }
            None => {
                group = group.element(
                    annotate_snippets::Origin::path(path)
                        .line(self.line)
                        .char_column(self.col),
                );
            }
        }
        if !self.key_path.is_empty() {
            group = group.element(Level::NOTE.with_name("at").message(self.key_path.as_str()));
        }
        if let Some(h) = &self.hint {
            group = group.element(Level::HELP.message(h.as_str()));
        }
        renderer.render(&[group])
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

/// The byte range of `len` characters starting at character `col` (clamped to the text; an
/// empty range past the end points just after the last character).
fn byte_range(text: &str, col: usize, len: usize) -> (usize, usize) {
    let idx = |c: usize| {
        text.char_indices()
            .nth(c)
            .map(|(i, _)| i)
            .unwrap_or(text.len())
    };
    let start = idx(col);
    let end = idx(col + len).max(start);
    if start == end && start == text.len() {
        // Point at the end of the line.
        return (start, start);
    }
    (start, end)
}

// Constant patterns, compiled by every test of this module: they cannot fail at run time.
#[allow(clippy::expect_used)]
static URL_PASSWORD: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)@")
        .expect("valid regex")
});

#[allow(clippy::expect_used)]
static URL_TOKEN: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r#"[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+"#).expect("valid regex")
});

/// Masks the password and secret query values (`?token=`, `sslpassword=`, …) of any URL in a
/// source line, keeping their length so columns stay true. Passwords holding `@`, `:`, `/`
/// or `%` escapes are found as `invar_core::secret::url_secrets` finds them.
pub(crate) fn mask_secrets(line: &str) -> String {
    if !line.contains("://") {
        return line.to_string();
    }
    let mut out = URL_PASSWORD
        .replace_all(line, |c: &regex::Captures| {
            format!("{}{}@", &c["head"], "*".repeat(c["pw"].chars().count()))
        })
        .into_owned();
    for m in URL_TOKEN.find_iter(line) {
        for secret in invar_core::secret::url_secrets(m.as_str()) {
            if out.contains(&secret) {
                out = out.replace(&secret, &"*".repeat(secret.chars().count()));
            }
        }
    }
    out
}

/// The candidate closest to `word` within edit distance 2, for "did you mean" hints.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2 && *d < c.chars().count().max(word.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A hint: "did you mean `x`? expected one of: a, b, c" (either part when it applies).
pub(crate) fn one_of_hint(word: &str, candidates: &[&str]) -> String {
    let list = format!("expected one of: {}", candidates.join(", "));
    match did_you_mean(word, candidates.iter().copied()) {
        Some(m) => format!("did you mean `{m}`? {list}"),
        None => list,
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(edit_distance("tittle", "title"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            did_you_mean("tittle", ["id", "title", "tags"]),
            Some("title")
        );
        assert_eq!(did_you_mean("zzzzzz", ["id", "title"]), None);
        assert_eq!(did_you_mean("x", ["id"]), None);
        assert_eq!(
            one_of_hint("sevrity", &["id", "severity"]),
            "did you mean `severity`? expected one of: id, severity"
        );
    }

    #[test]
    fn masks_awkward_url_secrets_keeping_columns() {
        let line =
            r#"  db: { url: "postgres://app:p@ss:w/rd@[::1]:5432/app?sslpassword=k3y&token=t0k" }"#;
        let m = mask_secrets(line);
        for s in ["p@ss:w/rd", "k3y", "t0k"] {
            assert!(!m.contains(s), "{m}");
        }
        assert_eq!(m.chars().count(), line.chars().count());
    }

    #[test]
    fn masks_url_passwords_keeping_columns() {
        let line = r#"  app: { type: postgres, url: "postgres://app:hunter2@db/app" }"#;
        let masked = mask_secrets(line);
        assert!(!masked.contains("hunter2"));
        assert_eq!(masked.len(), line.len());
        assert!(masked.contains("postgres://app:*******@db/app"));
        assert_eq!(mask_secrets("url: ${X}"), "url: ${X}");
    }

    #[test]
    fn renders_plain() {
        let d = Diagnostics {
            items: vec![Diagnostic {
                file: "invar.yaml".into(),
                line: 3,
                col: 5,
                key_path: "invariants[0].tittle".into(),
                message: "unknown key `tittle`".into(),
                hint: Some("did you mean `title`?".into()),
                len: 6,
                source_line: Some("    tittle: x".into()),
            }],
        };
        let out = d.render(false);
        assert!(out.contains("error: unknown key `tittle`"), "{out}");
        assert!(out.contains("--> invar.yaml:3:5"), "{out}");
        assert!(out.contains("^^^^^^"), "{out}");
        assert!(out.contains("= at: invariants[0].tittle"), "{out}");
        assert!(out.contains("= help: did you mean `title`?"), "{out}");
        assert!(out.ends_with("1 error\n"), "{out}");
        assert!(!out.contains('\x1b'));
        assert!(d.render(true).contains('\x1b'));
    }
}
