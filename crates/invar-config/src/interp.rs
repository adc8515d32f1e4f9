//! `${NAME}` and `${NAME:-default}` in strings, replaced from the environment; `$$` is a `$`.

/// A problem inside one string, at a character offset of the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterpError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Replaces every `${NAME}` / `${NAME:-default}` in `text`. Reports every unset variable.
pub(crate) fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<InterpError>> {
    if !text.contains('$') {
        return Ok(text.to_string());
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let Some(close) = chars[i + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .map(|p| p + i + 2)
                else {
                    errors.push(InterpError {
                        offset: i,
                        len: chars.len() - i,
                        message: "unterminated `${` in string".into(),
                        hint: Some("close it with `}`, or write `$$` for a literal `$`".into()),
                    });
                    break;
                };
                let inner: String = chars[i + 2..close].iter().collect();
                let (name, default) = match inner.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (inner.as_str(), None),
                };
                let len = close + 1 - i;
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    errors.push(InterpError {
                        offset: i,
                        len,
                        message: format!("`${{{inner}}}` is not a valid variable reference"),
                        hint: Some(
                            "write `${NAME}` or `${NAME:-default}` (letters, digits and `_`)"
                                .into(),
                        ),
                    });
                } else {
                    match (env(name), default) {
                        // Like the shell's `:-`: an empty value takes the default too.
                        (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                        (Some(v), _) => out.push_str(&v),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => errors.push(InterpError {
                            offset: i,
                            len,
                            message: format!("environment variable `{name}` is not set"),
                            hint: Some(format!(
                                "set `{name}`, or give a default: `${{{name}:-default}}`"
                            )),
                        }),
                    }
                }
                i = close + 1;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_variables_and_defaults() {
        assert_eq!(
            interpolate("postgres://${HOST}/app", &env).unwrap(),
            "postgres://db.local/app"
        );
        assert_eq!(interpolate("${PORT:-5432}", &env).unwrap(), "5432");
        assert_eq!(interpolate("${HOST:-x}", &env).unwrap(), "db.local");
        assert_eq!(interpolate("${EMPTY:-fallback}", &env).unwrap(), "fallback");
        assert_eq!(interpolate("${EMPTY}", &env).unwrap(), "");
        assert_eq!(interpolate("${NOPE:-}", &env).unwrap(), "");
        assert_eq!(interpolate("plain text", &env).unwrap(), "plain text");
    }

    #[test]
    fn dollar_escapes() {
        assert_eq!(interpolate("cost $$5", &env).unwrap(), "cost $5");
        assert_eq!(interpolate("$${HOST}", &env).unwrap(), "${HOST}");
        assert_eq!(interpolate("a $ b $x", &env).unwrap(), "a $ b $x");
    }

    #[test]
    fn unset_variables_are_errors_with_offsets() {
        let errs = interpolate("x ${A} y ${B} ${HOST}", &env).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!((errs[0].offset, errs[0].len), (2, 4));
        assert_eq!(errs[0].message, "environment variable `A` is not set");
        assert_eq!(errs[1].offset, 9);
    }

    #[test]
    fn malformed_references() {
        assert!(
            interpolate("${", &env).unwrap_err()[0]
                .message
                .contains("unterminated")
        );
        assert!(
            interpolate("${}", &env).unwrap_err()[0]
                .message
                .contains("not a valid")
        );
        assert!(
            interpolate("${A B}", &env).unwrap_err()[0]
                .message
                .contains("not a valid")
        );
    }
}
