//! Small typed extractors over the positioned tree. Each one pushes a diagnostic and returns
//! `None` on a mistake, so the walk carries on and every mistake is reported.

use crate::diag::{Diagnostic, did_you_mean, mask_secrets, one_of_hint};
use crate::interp::interpolate;
use crate::yaml::{Entry, Kind, Node, Pos, Style};
use invar_core::{Condition, Scope};
use std::path::PathBuf;
use std::time::Duration;

/// Ceilings of the config's counts, stated in their range errors. Each is far past any real
/// use and small enough that nothing downstream overflows or allocates absurdly.
/// `fire_after` / `resolve_after`: consecutive runs.
pub(crate) const MAX_STREAK: u32 = 10_000;
/// `tail`: lines read from the end of a file.
pub(crate) const MAX_TAIL: u64 = 10_000_000;
/// `max_keys`: keys a Redis pattern may match.
pub(crate) const MAX_KEYS: u64 = 100_000_000;
/// `max_connections`: a SQL source's pool.
pub(crate) const MAX_CONNECTIONS: u32 = 1_000;

/// One loaded config file.
pub(crate) struct File {
    /// As given (includes are joined onto the including file's directory): shown in messages.
    pub display: PathBuf,
    /// The file's directory, absolute: relative paths inside the file resolve against it.
    pub dir: PathBuf,
    pub lines: Vec<String>,
    pub root: Option<Node>,
}

/// The walk's state for one file.
pub(crate) struct Cx<'a> {
    pub file: &'a File,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub diags: &'a mut Vec<Diagnostic>,
}

/// A map's entries, after its keys were checked.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'n> {
    pub entries: &'n [Entry],
    pub pos: Pos,
}

impl<'n> Fields<'n> {
    pub fn get(&self, key: &str) -> Option<&'n Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// `path.key` (or `key` at the top).
pub(crate) fn sub(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The last segment of a key path, for messages: `invariants[2].probe` → `probe`.
pub(crate) fn name_of(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

impl<'a> Cx<'a> {
    /// Pushes a diagnostic at `line` (1-based) and `col` (0-based).
    pub fn error_at(
        &mut self,
        line: usize,
        col: usize,
        len: usize,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let source_line = line
            .checked_sub(1)
            .and_then(|i| self.file.lines.get(i))
            .map(|l| mask_secrets(l));
        self.diags.push(Diagnostic {
            file: self.file.display.clone(),
            line,
            col: col + 1,
            key_path: path.to_string(),
            message: message.into(),
            hint,
            len: len.max(1),
            source_line,
        });
    }

    pub fn err(&mut self, pos: Pos, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.error_at(pos.line, pos.col, pos.len(), path, message, hint);
    }

    /// How many diagnostics exist so far (to tell whether a part had mistakes).
    pub fn count(&self) -> usize {
        self.diags.len()
    }

    /// Checks that `node` is a map whose keys are all in `allowed`. Keys in `later`
    /// (key, noun, hint) are reported as "not supported yet".
    pub fn map<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&str],
        later: &[(&str, &str, &str)],
    ) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.err(
                node.pos,
                path,
                format!(
                    "`{}` must be a map, found {}",
                    name_of(path),
                    node.describe()
                ),
                None,
            );
            return None;
        };
        for e in entries {
            if allowed.contains(&e.key.as_str()) {
                continue;
            }
            let at = sub(path, &e.key);
            if let Some((_, noun, hint)) = later.iter().find(|(k, ..)| *k == e.key) {
                let hint = (!hint.is_empty()).then(|| hint.to_string());
                self.err(
                    e.key_pos,
                    &at,
                    format!("{noun} `{}` is not supported yet", e.key),
                    hint,
                );
            } else {
                self.err(
                    e.key_pos,
                    &at,
                    format!("unknown key `{}`", e.key),
                    Some(one_of_hint(&e.key, allowed)),
                );
            }
        }
        Some(Fields {
            entries,
            pos: node.pos,
        })
    }

    /// A map with free-form keys (e.g. `env:`).
    pub fn any_map<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Entry]> {
        match &node.kind {
            Kind::Map(entries) => Some(entries),
            _ => {
                self.err(
                    node.pos,
                    path,
                    format!(
                        "`{}` must be a map, found {}",
                        name_of(path),
                        node.describe()
                    ),
                    None,
                );
                None
            }
        }
    }

    /// The entry for `key`, or a "missing required key" diagnostic at the map.
    pub fn required<'n>(
        &mut self,
        fields: &Fields<'n>,
        key: &str,
        path: &str,
    ) -> Option<&'n Entry> {
        let e = fields.get(key);
        // A misspelt key (`tittle`) is already reported with "did you mean"; one error is enough.
        let misspelt = fields
            .entries
            .iter()
            .any(|x| x.key != key && did_you_mean(&x.key, [key]).is_some());
        if e.is_none() && !misspelt {
            let msg = format!("`{}` is missing required key `{key}`", name_of(path));
            self.err(fields.pos, path, msg, None);
        }
        e
    }

    /// A scalar's text after `${VAR}` interpolation, and its style. A quoted scalar holding a
    /// `${VAR}` counts as plain, so `"${RO:-false}"` (quotes needed in a flow map) is a bool.
    fn scalar(&mut self, node: &Node, path: &str, expected: &str) -> Option<(String, Style)> {
        match &node.kind {
            Kind::Scalar(s, style) => {
                let style = if s.contains("${") {
                    Style::Plain
                } else {
                    *style
                };
                self.interpolate(node, s, path).map(|v| (v, style))
            }
            _ => {
                let msg = format!(
                    "`{}` must be {expected}, found {}",
                    name_of(path),
                    node.describe()
                );
                self.err(node.pos, path, msg, None);
                None
            }
        }
    }

    /// Replaces `${VAR}`s in a scalar's text; unset variables are positioned inside it.
    pub fn interpolate(&mut self, node: &Node, text: &str, path: &str) -> Option<String> {
        match interpolate(text, self.env) {
            Ok(v) => Some(v),
            Err(errs) => {
                for e in errs {
                    let (line, col) = self.offset_pos(node, e.offset);
                    let same_line = self.offset_pos(node, e.offset + e.len).0 == line;
                    let len = if same_line { e.len } else { 1 };
                    self.error_at(line, col, len, path, e.message, e.hint);
                }
                None
            }
        }
    }

    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        self.scalar(node, path, "a string").map(|(s, _)| s)
    }

    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        let (v, style) = self.scalar(node, path, "`true` or `false`")?;
        if style == Style::Plain {
            match v.as_str() {
                "true" | "True" | "TRUE" => return Some(true),
                "false" | "False" | "FALSE" => return Some(false),
                _ => {}
            }
        }
        let hint = (style != Style::Plain).then(|| "write it without quotes".to_string());
        self.err(
            node.pos,
            path,
            format!("`{}` must be `true` or `false`, found `{v}`", name_of(path)),
            hint,
        );
        None
    }

    /// A whole number from `min` to `max`: every count has a ceiling, so no typo reaches an
    /// allocation or a cast downstream.
    pub fn uint(&mut self, node: &Node, path: &str, min: u64, max: u64) -> Option<u64> {
        let expected = format!("a whole number from {min} to {max}");
        let (v, style) = self.scalar(node, path, &expected)?;
        let n = v.parse::<u64>().ok().filter(|_| style == Style::Plain);
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) if n > max => {
                self.err(
                    node.pos,
                    path,
                    format!(
                        "`{}` is too large: at most {max}, found `{v}`",
                        name_of(path)
                    ),
                    None,
                );
                None
            }
            _ => {
                // Digits past u64 are "too large" as well, not "not a number".
                let too_large = n.is_none()
                    && style == Style::Plain
                    && !v.is_empty()
                    && v.bytes().all(|b| b.is_ascii_digit());
                let msg = if too_large {
                    format!(
                        "`{}` is too large: at most {max}, found `{v}`",
                        name_of(path)
                    )
                } else {
                    format!("`{}` must be {expected}, found `{v}`", name_of(path))
                };
                self.err(node.pos, path, msg, None);
                None
            }
        }
    }

    pub fn u32(&mut self, node: &Node, path: &str, min: u32, max: u32) -> Option<u32> {
        let n = self.uint(node, path, u64::from(min), u64::from(max))?;
        // `uint` kept `n` within `max`, a u32.
        u32::try_from(n).ok()
    }

    /// A duration of at most [`invar_core::units::MAX_DURATION`] (10 years).
    pub fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let v = self
            .scalar(node, path, "a duration like `30s`")
            .map(|(s, _)| s)?;
        match invar_core::units::parse_duration(&v) {
            Ok(d) => Some(d),
            Err(e) if e.contains("at most 10 years") => {
                self.err(
                    node.pos,
                    path,
                    format!(
                        "`{}` is too long: at most 10 years (`3650d`), found `{v}`",
                        name_of(path)
                    ),
                    None,
                );
                None
            }
            Err(e) => {
                self.err(
                    node.pos,
                    path,
                    format!("invalid duration `{v}` for `{}`", name_of(path)),
                    Some(e),
                );
                None
            }
        }
    }

    /// One of `options`; `what` names the setting in the message (`unknown severity `high``).
    pub fn choice(
        &mut self,
        node: &Node,
        path: &str,
        what: &str,
        options: &[&'static str],
    ) -> Option<&'static str> {
        let v = self
            .scalar(node, path, &format!("one of: {}", options.join(", ")))?
            .0;
        match options.iter().find(|o| **o == v) {
            Some(o) => Some(o),
            None => {
                self.err(
                    node.pos,
                    path,
                    format!("unknown {what} `{v}`"),
                    Some(one_of_hint(&v, options)),
                );
                None
            }
        }
    }

    pub fn string_list(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        let Kind::Seq(items) = &node.kind else {
            let hint = matches!(node.kind, Kind::Scalar(..))
                .then(|| "write a list, e.g. `[a, b]`".to_string());
            let msg = format!(
                "`{}` must be a list of strings, found {}",
                name_of(path),
                node.describe()
            );
            self.err(node.pos, path, msg, hint);
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.scalar(item, &format!("{path}[{i}]"), "a string") {
                Some((s, _)) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Compiles a CEL condition, positioning its errors inside the file.
    pub fn condition(&mut self, node: &Node, path: &str, scope: Scope) -> Option<Condition> {
        let src = self.string(node, path)?;
        match Condition::compile(&src, scope) {
            Ok(c) => Some(c),
            Err(errs) => {
                for e in errs {
                    let offset = char_offset(&src, e.line, e.col);
                    let (line, col) = self.offset_pos(node, offset);
                    let mut len = 1;
                    let hint = unknown_name(&e.message).and_then(|name| {
                        len = name.chars().count();
                        did_you_mean(name, scope.variables().iter().copied())
                            .map(|m| format!("did you mean `{m}`?"))
                    });
                    self.error_at(line, col, len, path, tidy_cel_message(&e.message), hint);
                }
                None
            }
        }
    }

    /// The file position (line, 0-based col) of character `offset` of a scalar's value.
    /// Exact for single-line and `|` block scalars; close for folded multi-line ones.
    pub fn offset_pos(&self, node: &Node, offset: usize) -> (usize, usize) {
        let mut rest = offset;
        let segments = self.segments(node);
        for (i, &(line, col, len)) in segments.iter().enumerate() {
            if rest <= len || i + 1 == segments.len() {
                return (line, col + rest.min(len));
            }
            rest -= len + 1;
        }
        (node.pos.line, node.pos.col)
    }

    /// The pieces of file text a scalar's value comes from: (line, start col, length).
    fn segments(&self, node: &Node) -> Vec<(usize, usize, usize)> {
        let Kind::Scalar(value, style) = &node.kind else {
            return vec![(node.pos.line, node.pos.col, 0)];
        };
        let line_text = |l: usize| self.file.lines.get(l.wrapping_sub(1)).map(String::as_str);
        let indent_of = |s: &str| s.chars().take_while(|c| *c == ' ' || *c == '\t').count();
        let width = |s: &str| s.chars().count();
        match style {
            Style::Block => {
                // The span starts at the first content line, at the block's indentation.
                let indent = node.pos.col;
                let mut segs = Vec::new();
                for l in node.pos.line..=node.pos.end_line.max(node.pos.line) {
                    let Some(text) = line_text(l) else { break };
                    if text.trim().is_empty() {
                        segs.push((l, 0, 0));
                    } else if indent_of(text) < indent && l > node.pos.line {
                        break;
                    } else {
                        segs.push((l, indent, width(text).saturating_sub(indent)));
                    }
                }
                while segs.len() > 1 && segs.last().is_some_and(|s| s.2 == 0) {
                    segs.pop();
                }
                if segs.is_empty() {
                    segs.push((node.pos.line, node.pos.col, 0));
                }
                segs
            }
            _ => {
                let q = usize::from(*style != Style::Plain);
                let start = node.pos.col + q;
                if node.pos.end_line <= node.pos.line {
                    return vec![(node.pos.line, start, width(value))];
                }
                let mut segs = Vec::new();
                for l in node.pos.line..=node.pos.end_line {
                    let Some(text) = line_text(l) else { break };
                    if l == node.pos.line {
                        segs.push((l, start, width(text.trim_end()).saturating_sub(start)));
                    } else {
                        let ind = indent_of(text);
                        segs.push((l, ind, width(text.trim()).min(width(text) - ind)));
                    }
                }
                segs
            }
        }
    }
}

/// The character offset of 1-based (`line`, `col`) in `text`.
pub(crate) fn char_offset(text: &str, line: usize, col: usize) -> usize {
    let before: usize = text
        .split('\n')
        .take(line.saturating_sub(1))
        .map(|l| l.chars().count() + 1)
        .sum();
    before + col.saturating_sub(1)
}

/// Shortens the CEL parser's messages: drops the long "expecting {…}" token lists.
fn tidy_cel_message(message: &str) -> String {
    let Some(rest) = message.strip_prefix("invalid CEL: ") else {
        return message.to_string();
    };
    let rest = rest.strip_prefix("Syntax error: ").unwrap_or(rest);
    for prefix in [
        "mismatched input '",
        "extraneous input '",
        "no viable alternative at input '",
    ] {
        if let Some(tail) = rest.strip_prefix(prefix)
            && let Some(end) = tail.find("' ").or_else(|| tail.rfind('\''))
        {
            let token = &tail[..end];
            return if token == "<EOF>" || token.is_empty() {
                "invalid CEL: the expression ends too early".to_string()
            } else {
                format!("invalid CEL: unexpected `{token}`")
            };
        }
    }
    format!("invalid CEL: {rest}")
}

/// `unknown variable `x`: …` → `x`.
fn unknown_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown variable `")?;
    Some(&rest[..rest.find('`')?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_offsets() {
        assert_eq!(char_offset("abc", 1, 1), 0);
        assert_eq!(char_offset("abc\ndef", 2, 2), 5);
        assert_eq!(
            unknown_name("unknown variable `rowz`: expected"),
            Some("rowz")
        );
    }

    #[test]
    fn cel_messages_are_tidied() {
        let eof = "invalid CEL: Syntax error: mismatched input '<EOF>' expecting {'[', '{'}";
        assert_eq!(
            tidy_cel_message(eof),
            "invalid CEL: the expression ends too early"
        );
        let tok = "invalid CEL: Syntax error: extraneous input ')' expecting {'[', '{'}";
        assert_eq!(tidy_cel_message(tok), "invalid CEL: unexpected `)`");
        assert_eq!(
            tidy_cel_message("unknown variable `x`"),
            "unknown variable `x`"
        );
    }
}
