//! CEL conditions, compiled when the config is loaded and evaluated against a snapshot.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// Which variables a condition may use; an unknown variable is a config error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `skip_when` / `fail_when` / `warn_when`: `rows`, `row`, `count`, `now`, and `hist`
    /// (only with `history:`, checked by the config reader).
    Probe,
    /// `every_row`: `r`, `now`.
    EveryRow,
    /// `skip_if`: `source`, `now`.
    SkipIf,
    /// a suite's `select`: `id`, `severity`, `tags`.
    Select,
    /// a silence's `match`: `id`, `severity`, `tags`, `suite`.
    Silence,
}

impl Scope {
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Scope::Probe => &["rows", "row", "count", "now", "hist"],
            Scope::EveryRow => &["r", "now"],
            Scope::SkipIf => &["source", "now"],
            Scope::Select => &["id", "severity", "tags"],
            Scope::Silence => &["id", "severity", "tags", "suite"],
        }
    }
}

/// A compile error, positioned inside the expression (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// A compiled CEL condition and the text it came from.
#[derive(Clone)]
pub struct Condition {
    pub source: String,
    program: Arc<cel::Program>,
    /// Every field name the expression selects (`row.hi` → `hi`): a NaN there is an error.
    fields: Arc<HashSet<String>>,
    /// Whether it names `rows` (the whole table), not only `row` (the first).
    all_rows: bool,
    /// Each place it reads `hist` (for the config reader's checks).
    hist: Arc<Vec<HistRef>>,
}

/// A use of `hist` in a condition: `hist.<measure>.<stat>` as far as it is spelled out, and
/// where (1-based line and column in the condition's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistRef {
    pub measure: Option<String>,
    pub stat: Option<String>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.source)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Condition {
    /// Compiles `source`, checking that it only names variables of `scope`.
    pub fn compile(source: &str, scope: Scope) -> Result<Condition, Vec<ConditionError>> {
        let expanded = expand_size_literals(source);
        let program = match cel::Program::compile(&expanded) {
            Ok(p) => p,
            Err(errs) => {
                return Err(errs
                    .errors
                    .iter()
                    .map(|e| ConditionError {
                        line: e.pos.0.max(1) as usize,
                        col: (e.pos.1.max(0) as usize) + 1,
                        message: format!("invalid CEL: {}", e.msg),
                    })
                    .collect());
            }
        };
        let mut bound = HashSet::new();
        collect_bound(program.expression(), &mut bound);
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        let mut idents = Vec::new();
        collect_idents(program.expression(), &mut idents);
        for (id, name) in idents {
            if name.starts_with('@')
                || bound.contains(name.as_str())
                || scope.variables().contains(&name.as_str())
            {
                continue;
            }
            if !seen.insert(name.clone()) {
                continue;
            }
            let offset = program
                .source_info()
                .offset_for(id)
                .map(|(s, _)| s as usize)
                .unwrap_or(0);
            let (line, col) = line_col(source, offset);
            errors.push(ConditionError {
                line,
                col,
                message: format!(
                    "unknown variable `{name}`: expected one of {}",
                    scope
                        .variables()
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if errors.is_empty() {
            // Unknown functions and type errors visible without data (cel_check.rs).
            for p in crate::cel_check::check(program.expression(), scope) {
                let offset = program
                    .source_info()
                    .offset_for(p.id)
                    .map_or(0, |(s, _)| s as usize);
                let (line, col) = line_col(source, offset);
                errors.push(ConditionError {
                    line,
                    col,
                    message: p.message,
                });
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut fields = HashSet::new();
        let mut all_rows = false;
        walk(program.expression(), &mut |x| match &x.expr {
            Expr::Select(sel) => {
                fields.insert(sel.field.clone());
            }
            Expr::Ident(n) if n == "rows" => all_rows = true,
            _ => {}
        });
        let hist = hist_refs(&program, source);
        Ok(Condition {
            source: source.to_string(),
            program: Arc::new(program),
            fields: Arc::new(fields),
            all_rows,
            hist: Arc::new(hist),
        })
    }

    /// The first of `rows` of `table` in which a field this condition reads holds NaN, with
    /// the error reason: CEL has no answer for `NaN > 0.5`, and a silent pass would hide it.
    pub fn nan_read(
        &self,
        table: &crate::Table,
        rows: impl IntoIterator<Item = usize>,
    ) -> Option<(usize, String)> {
        let cols: Vec<(usize, &String)> = table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| self.fields.contains(c.as_str()))
            .collect();
        if cols.is_empty() {
            return None;
        }
        for r in rows {
            for &(i, c) in &cols {
                if let Some(crate::Value::Float(f)) = table.rows.get(r).and_then(|row| row.get(i))
                    && f.is_nan()
                {
                    return Some((
                        r,
                        format!(
                            "`{c}` is NaN (condition `{}`); test for it in the probe, e.g. `WHERE {c} = 'NaN'`",
                            self.source
                        ),
                    ));
                }
            }
        }
        None
    }

    /// Whether the condition reads the whole table (`rows`), not only the first row.
    pub fn reads_all_rows(&self) -> bool {
        self.all_rows
    }

    /// Evaluates to a bool; anything else (or a runtime error) is an error message.
    pub fn eval_bool(&self, ctx: &cel::Context) -> Result<bool, String> {
        self.eval_bool_over(ctx, false)
    }

    /// [`Condition::eval_bool`] over a probe's result; `empty` when it returned no rows. Then
    /// a condition about the first row (`row.ratio > 0.005`) that fails only because `row`
    /// has no such field has nothing to hold of: it is not held, and the check is a vacuous
    /// pass (reported as such; `skip_when: count == 0` makes it a skip). Conditions over
    /// `rows`/`count`, and every other error, stay errors.
    pub fn eval_bool_over(&self, ctx: &cel::Context, empty: bool) -> Result<bool, String> {
        match self.program.execute(ctx) {
            Err(cel::ExecutionError::NoSuchKey(_))
                if empty && !self.all_rows && !self.fields.is_empty() =>
            {
                Ok(false)
            }
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "condition `{}` gave {:?}, expected a bool",
                self.source,
                other.type_of()
            )),
            Err(e) => Err(format!("condition `{}` failed: {e}", self.source)),
        }
    }
}

/// The context every condition is evaluated in: CEL's standard library, with `matches()`
/// under RE2's rules.
pub fn context<'a>() -> cel::Context<'a, 'a> {
    let mut ctx = cel::Context::default();
    // `cel`'s own `matches` is not compiled in (its `regex` feature is off), so the name is free.
    let _ = ctx.add_function("matches", matches);
    ctx
}

fn matches(
    cel::extractors::This(this): cel::extractors::This<Arc<String>>,
    pattern: Arc<String>,
) -> cel::ResolveResult {
    let re = cached_regex(&pattern).map_err(|message| cel::ExecutionError::FunctionError {
        function: "matches".into(),
        message,
    })?;
    Ok(cel::Value::Bool(re.is_match(&this)))
}

thread_local! {
    /// Compiled patterns: an `every_row` over 100k rows compiles its pattern once.
    static REGEXES: RefCell<HashMap<String, Result<Arc<regex::Regex>, String>>> =
        RefCell::new(HashMap::new());
}

/// At most this many distinct patterns are kept per thread (patterns built from row data
/// could otherwise grow the cache without bound).
const REGEX_CACHE: usize = 256;

fn cached_regex(pattern: &str) -> Result<Arc<regex::Regex>, String> {
    REGEXES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(r) = cache.get(pattern) {
            return r.clone();
        }
        let compiled = regex::RegexBuilder::new(&re2_classes(pattern))
            .size_limit(1 << 20)
            .build()
            .map(Arc::new)
            .map_err(|e| format!("`{pattern}` is not a valid regex: {e}"));
        if cache.len() >= REGEX_CACHE {
            cache.clear();
        }
        cache.insert(pattern.to_string(), compiled.clone());
        compiled
    })
}

/// RE2 (CEL's regex dialect, and Postgres') has ASCII Perl classes: `\d` is `[0-9]`, `\w` is
/// `[0-9A-Za-z_]`, `\s` is `[\t\n\f\r ]`, `\b` an ASCII word boundary. The `regex` crate's are
/// Unicode; this rewrites them, inside and outside brackets, leaving everything else alone.
pub fn re2_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    let mut depth = 0usize; // bracket nesting: inside a class, a class is written as a range
    let mut class_start = false; // just after `[` or `[^`: a `]` here is a literal
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let (set, negated) = match e {
                    'd' => ("0-9", false),
                    'D' => ("0-9", true),
                    'w' => ("0-9A-Za-z_", false),
                    'W' => ("0-9A-Za-z_", true),
                    's' => ("\\t\\n\\x0C\\r ", false),
                    'S' => ("\\t\\n\\x0C\\r ", true),
                    'b' if depth == 0 => {
                        out.push_str("(?-u:\\b)");
                        class_start = false;
                        continue;
                    }
                    'B' if depth == 0 => {
                        out.push_str("(?-u:\\B)");
                        class_start = false;
                        continue;
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                        class_start = false; // `continue` skips the reset below
                        continue;
                    }
                };
                match (depth, negated) {
                    (0, false) => out.push_str(&format!("[{set}]")),
                    (0, true) => out.push_str(&format!("[^{set}]")),
                    (_, false) => out.push_str(set),
                    (_, true) => out.push_str(&format!("[^{set}]")),
                }
            }
            '[' => {
                out.push(c);
                // `[[:alpha:]]` keeps its POSIX form; a nested `[` opens a nested class.
                depth += 1;
                class_start = true;
                continue;
            }
            ']' if depth > 0 && !class_start => {
                out.push(c);
                depth -= 1;
            }
            '^' if class_start => {
                out.push(c);
                continue;
            }
            _ => out.push(c),
        }
        class_start = false;
    }
    out
}

/// `5GB` → `5000000000.0` (outside string literals), so cost guards read naturally.
fn expand_size_literals(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            let q = c;
            out.push(c);
            i += 1;
            while i < chars.len() {
                out.push(chars[i]);
                if chars[i] == '\\' && i + 1 < chars.len() {
                    out.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                if chars[i] == q {
                    i += 1;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let starts_number = c.is_ascii_digit()
            && (i == 0
                || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == '.'));
        if starts_number {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '.') {
                j += 1;
            }
            let mut k = j;
            while k < chars.len() && chars[k].is_ascii_alphabetic() {
                k += 1;
            }
            let word: String = chars[i..k].iter().collect();
            let unit: String = chars[j..k].iter().collect();
            let boundary = k >= chars.len() || !(chars[k].is_alphanumeric() || chars[k] == '_');
            if !unit.is_empty()
                && boundary
                && !unit.eq_ignore_ascii_case("U")
                && unit != "e"
                && let Ok(n) = crate::units::parse_size(&word)
            {
                out.push_str(&format!("{n}.0"));
                i = k;
                continue;
            }
            out.extend(&chars[i..j]);
            i = j;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

fn line_col(source: &str, char_offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for (i, c) in source.chars().enumerate() {
        if i == char_offset {
            break;
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

impl Condition {
    /// Where it reads `hist`, outermost spelling first.
    pub fn hist_refs(&self) -> &[HistRef] {
        &self.hist
    }
}

/// Every `hist`, `hist.m` and `hist.m.stat` in the expression, each once (the longest).
fn hist_refs(program: &cel::Program, source: &str) -> Vec<HistRef> {
    let mut out = Vec::new();
    let mut inner = HashSet::new();
    walk(program.expression(), &mut |x| {
        // hist.m.stat
        if let Expr::Select(outer) = &x.expr
            && let Expr::Select(mid) = &outer.operand.expr
            && matches!(&mid.operand.expr, Expr::Ident(n) if n == "hist")
        {
            inner.insert(outer.operand.id);
            inner.insert(mid.operand.id);
            out.push((
                mid.operand.id,
                Some(mid.field.clone()),
                Some(outer.field.clone()),
            ));
        } else if let Expr::Select(mid) = &x.expr
            && matches!(&mid.operand.expr, Expr::Ident(n) if n == "hist")
            && !inner.contains(&x.id)
        {
            inner.insert(mid.operand.id);
            out.push((mid.operand.id, Some(mid.field.clone()), None));
        } else if matches!(&x.expr, Expr::Ident(n) if n == "hist") && !inner.contains(&x.id) {
            out.push((x.id, None, None));
        }
    });
    out.into_iter()
        .map(|(id, measure, stat)| {
            let offset = program
                .source_info()
                .offset_for(id)
                .map_or(0, |(s, _)| s as usize);
            let (line, col) = line_col(source, offset);
            HistRef {
                measure,
                stat,
                line,
                col,
            }
        })
        .collect()
}

fn collect_bound(e: &IdedExpr, out: &mut HashSet<String>) {
    walk(e, &mut |x| {
        if let Expr::Comprehension(c) = &x.expr {
            out.insert(c.iter_var.clone());
            out.insert(c.accu_var.clone());
            if let Some(v) = &c.iter_var2 {
                out.insert(v.clone());
            }
        }
    });
}

fn collect_idents(e: &IdedExpr, out: &mut Vec<(u64, String)>) {
    walk(e, &mut |x| {
        if let Expr::Ident(name) = &x.expr {
            out.push((x.id, name.clone()));
        }
    });
}

fn walk(e: &IdedExpr, f: &mut dyn FnMut(&IdedExpr)) {
    f(e);
    match &e.expr {
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                walk(t, f);
            }
            for a in &call.args {
                walk(a, f);
            }
        }
        Expr::Comprehension(c) => {
            walk(&c.iter_range, f);
            walk(&c.accu_init, f);
            walk(&c.loop_cond, f);
            walk(&c.loop_step, f);
            walk(&c.result, f);
        }
        Expr::List(l) => {
            for x in &l.elements {
                walk(x, f);
            }
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                match &entry.expr {
                    EntryExpr::StructField(sf) => walk(&sf.value, f),
                    EntryExpr::MapEntry(me) => {
                        walk(&me.key, f);
                        walk(&me.value, f);
                    }
                }
            }
        }
        Expr::Select(s) => walk(&s.operand, f),
        Expr::Struct(s) => {
            for entry in &s.entries {
                match &entry.expr {
                    EntryExpr::StructField(sf) => walk(&sf.value, f),
                    EntryExpr::MapEntry(me) => {
                        walk(&me.key, f);
                        walk(&me.value, f);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hist_references_are_found_with_their_positions() {
        let c = Condition::compile(
            "row.n < 0.5 * hist.n.median ||\n  hist.errors.p90 > 3.0 || 'x' in hist",
            Scope::Probe,
        )
        .unwrap();
        let refs: Vec<(Option<&str>, Option<&str>, usize)> = c
            .hist_refs()
            .iter()
            .map(|r| (r.measure.as_deref(), r.stat.as_deref(), r.line))
            .collect();
        assert_eq!(
            refs,
            vec![
                (Some("n"), Some("median"), 1),
                (Some("errors"), Some("p90"), 2),
                (None, None, 2)
            ]
        );
        assert!(
            Condition::compile("row.n > 1.0", Scope::Probe)
                .unwrap()
                .hist_refs()
                .is_empty()
        );
    }

    #[test]
    fn compiles_and_evaluates() {
        let c = Condition::compile("row.missing / row.sample > 0.01", Scope::Probe).unwrap();
        let mut ctx = context();
        let t = crate::Table {
            columns: vec!["missing".into(), "sample".into()],
            rows: vec![vec![crate::Value::Int(5), crate::Value::Int(100)]],
        };
        ctx.add_variable_from_value("row", t.row_cel(0));
        assert!(c.eval_bool(&ctx).unwrap());
    }

    #[test]
    fn unknown_variable_is_positioned() {
        let errs = Condition::compile("count > 0 &&\n  rowz.x > 1", Scope::Probe).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].line, errs[0].col), (2, 3));
        assert!(errs[0].message.contains("`rowz`"), "{}", errs[0].message);
    }

    #[test]
    fn comprehension_variables_are_not_unknown() {
        Condition::compile("rows.all(x, x.ok) && rows.exists(y, y.n > 1)", Scope::Probe).unwrap();
    }

    #[test]
    fn size_literals_expand_outside_strings() {
        assert_eq!(
            expand_size_literals("source.size_bytes > 5GB"),
            "source.size_bytes > 5000000000.0"
        );
        assert_eq!(
            expand_size_literals("x == '5GB' && y > 2KiB"),
            "x == '5GB' && y > 2048.0"
        );
        assert_eq!(
            expand_size_literals("a1GB > 1u && b > 3"),
            "a1GB > 1u && b > 3"
        );
        Condition::compile("source.size_bytes > 5GB", Scope::SkipIf).unwrap();
    }

    fn eval(src: &str) -> Result<bool, String> {
        Condition::compile(src, Scope::Probe)
            .map_err(|e| format!("{e:?}"))?
            .eval_bool(&context())
    }

    #[test]
    fn matches_uses_re2_ascii_classes() {
        // Arabic-Indic digits are not `\d` in RE2, Postgres or Soda.
        assert_eq!(eval(r#"'١٢٣'.matches('^\\d+$')"#), Ok(false));
        assert_eq!(eval(r#"'123'.matches('^\\d+$')"#), Ok(true));
        assert_eq!(eval(r#"matches('123', '^\\d+$')"#), Ok(true));
        assert_eq!(eval(r#"'é'.matches('^\\w$')"#), Ok(false));
        assert_eq!(eval(r#"'a_1'.matches('^\\w+$')"#), Ok(true));
        assert_eq!(eval(r#"'\u00a0'.matches('\\s')"#), Ok(false));
        assert_eq!(eval(r#"'a b'.matches('a\\sb')"#), Ok(true));
        assert_eq!(eval(r#"'éa'.matches('\\ba')"#), Ok(true));
        assert_eq!(eval(r#"'x9'.matches('^[a-z\\d]+$')"#), Ok(true));
        assert_eq!(eval(r#"'x٩'.matches('^[a-z\\d]+$')"#), Ok(false));
        assert_eq!(eval(r#"'٩'.matches('^[\\D]$')"#), Ok(true));
        assert_eq!(eval(r#"']'.matches('^[]a]$')"#), Ok(true));
        // Non-ASCII text still matches itself; other escapes are untouched.
        assert_eq!(eval(r#"'né'.matches('^n.$')"#), Ok(true));
        assert_eq!(eval(r#"'a.b'.matches('^a\\.b$')"#), Ok(true));
        assert!(
            eval(r#"'x'.matches('(')"#)
                .unwrap_err()
                .contains("not a valid regex")
        );
    }

    #[test]
    fn a_read_nan_is_named() {
        let c = Condition::compile("row.hi > 0.5", Scope::Probe).unwrap();
        let t = crate::Table {
            columns: vec!["hi".into(), "lo".into()],
            rows: vec![vec![
                crate::Value::Float(f64::NAN),
                crate::Value::Float(1.0),
            ]],
        };
        assert!(c.nan_read(&t, [0]).unwrap().1.starts_with("`hi` is NaN"));
        let c = Condition::compile("row.lo > 0.5", Scope::Probe).unwrap();
        assert_eq!(c.nan_read(&t, [0]), None);
    }

    #[test]
    fn syntax_error_is_reported() {
        let errs = Condition::compile("row.x >", Scope::Probe).unwrap_err();
        assert!(!errs.is_empty());
        assert!(errs[0].message.starts_with("invalid CEL"));
    }
}
