//! A static check of a parsed CEL condition, run when the config is validated: what can be
//! seen wrong without data is a config error, not a run-time surprise.
//!
//! - every function and method must be one the runtime registers ([`GLOBALS`], [`MEMBERS`]:
//!   the `cel` crate's standard library as `Env::stdlib` declares it, read from its source;
//!   invar adds none) with an arity it accepts, and the macros (`has`, `all`, `exists`,
//!   `exists_one`, `map`, `filter`) must have expanded (a wrong arity leaves them calls);
//! - obvious type mismatches between literals and variables of known type: `&&`, `||`, `!`
//!   and `?:` on a number/string/null/list/map, arithmetic on a bool/null/map, a string with
//!   `-`, `*`, `/`, `%`, a string added to a number, and a whole condition that cannot be a
//!   bool. Anything whose type depends on the data (`row.n`) is left to the run.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};

use crate::Scope;

/// Global functions and the argument counts they accept.
pub const GLOBALS: &[(&str, &[usize])] = &[
    ("bool", &[1]),
    ("bytes", &[1]),
    ("double", &[1]),
    ("duration", &[1]),
    ("dyn", &[1]),
    ("int", &[1]),
    ("matches", &[2]),
    ("size", &[1]),
    ("string", &[1]),
    ("timestamp", &[1]),
    ("type", &[1]),
    ("uint", &[1]),
    ("optional.none", &[0]),
    ("optional.of", &[1]),
    ("optional.ofNonZeroValue", &[1]),
];

/// Methods (`x.name(…)`) and the argument counts they accept, the receiver not counted.
pub const MEMBERS: &[(&str, &[usize])] = &[
    ("contains", &[1]),
    ("endsWith", &[1]),
    ("startsWith", &[1]),
    ("matches", &[1]),
    ("size", &[0]),
    ("getDate", &[0, 1]),
    ("getDayOfMonth", &[0, 1]),
    ("getDayOfWeek", &[0, 1]),
    ("getDayOfYear", &[0, 1]),
    ("getFullYear", &[0, 1]),
    ("getHours", &[0, 1]),
    ("getMilliseconds", &[0, 1]),
    ("getMinutes", &[0, 1]),
    ("getMonth", &[0, 1]),
    ("getSeconds", &[0, 1]),
    ("hasValue", &[0]),
    ("or", &[1]),
    ("orValue", &[1]),
    ("value", &[0]),
];

const MACROS: &[(&str, &str)] = &[
    ("has", "`has(x.field)`"),
    ("all", "`list.all(x, predicate)`"),
    ("exists", "`list.exists(x, predicate)`"),
    ("exists_one", "`list.exists_one(x, predicate)`"),
    ("map", "`list.map(x, expr)`"),
    ("filter", "`list.filter(x, predicate)`"),
];

/// A static type: known, or `Dyn` when it depends on the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    List,
    Map,
    Timestamp,
    Duration,
    Dyn,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::Bool => "a bool",
            Ty::Int => "an int",
            Ty::Uint => "a uint",
            Ty::Double => "a double",
            Ty::String => "a string",
            Ty::Bytes => "bytes",
            Ty::Null => "null",
            Ty::List => "a list",
            Ty::Map => "a map",
            Ty::Timestamp => "a timestamp",
            Ty::Duration => "a duration",
            Ty::Dyn => "a value",
        }
    }
    fn numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Uint | Ty::Double)
    }
    /// Known, and not a bool: `&&` on it can only fail.
    fn not_bool(self) -> bool {
        !matches!(self, Ty::Bool | Ty::Dyn)
    }
}

/// One problem, at the node it is about.
pub struct Problem {
    pub id: u64,
    pub message: String,
}

/// Checks `expr` (a condition of `scope`); the problems come in source order of discovery.
pub fn check(expr: &IdedExpr, scope: Scope) -> Vec<Problem> {
    let mut c = Checker {
        scope,
        problems: Vec::new(),
    };
    let t = c.ty(expr);
    if t.not_bool() && c.problems.is_empty() {
        c.problems.push(Problem {
            id: expr.id,
            message: format!(
                "a condition must be true or false, but this is always {}",
                t.name()
            ),
        });
    }
    c.problems
}

struct Checker {
    scope: Scope,
    problems: Vec<Problem>,
}

/// `; did you mean `x`?` for a known name within two edits, else nothing.
fn did_you_mean(name: &str, known: &[&str]) -> String {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let sub = prev[j] + usize::from(ca != *cb);
                cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .iter()
        .map(|k| (distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_default()
}

fn is_operator(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('@') || name == "!_" || name == "-_"
}

fn arity_text(arities: &[usize]) -> String {
    let words: Vec<String> = arities
        .iter()
        .map(|n| match n {
            1 => "1 argument".to_string(),
            n => format!("{n} arguments"),
        })
        .collect();
    words.join(" or ")
}

impl Checker {
    fn problem(&mut self, id: u64, message: String) {
        self.problems.push(Problem { id, message });
    }

    fn ty(&mut self, e: &IdedExpr) -> Ty {
        match &e.expr {
            Expr::Literal(l) => match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            },
            Expr::Ident(name) => match (self.scope, name.as_str()) {
                (Scope::Probe, "count") => Ty::Double,
                (Scope::Probe | Scope::EveryRow | Scope::SkipIf, "now") => Ty::Timestamp,
                (Scope::Probe, "rows") | (Scope::Select | Scope::Silence, "tags") => Ty::List,
                (Scope::Select, "id" | "severity") => Ty::String,
                (Scope::Silence, "id" | "severity" | "suite") => Ty::String,
                _ => Ty::Dyn,
            },
            Expr::List(l) => {
                for x in &l.elements {
                    self.ty(x);
                }
                Ty::List
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    self.entry(&entry.expr);
                }
                Ty::Map
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    self.entry(&entry.expr);
                }
                Ty::Dyn
            }
            Expr::Select(s) => {
                self.ty(&s.operand);
                if s.test { Ty::Bool } else { Ty::Dyn }
            }
            Expr::Comprehension(c) => {
                for x in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step] {
                    self.ty(x);
                }
                self.ty(&c.result)
            }
            Expr::Call(call) => self.call(e.id, call),
            Expr::Unspecified => Ty::Dyn,
        }
    }

    fn entry(&mut self, e: &EntryExpr) {
        match e {
            EntryExpr::StructField(f) => {
                self.ty(&f.value);
            }
            EntryExpr::MapEntry(m) => {
                self.ty(&m.key);
                self.ty(&m.value);
            }
        }
    }

    fn call(&mut self, id: u64, call: &cel::common::ast::CallExpr) -> Ty {
        let name = call.func_name.as_str();
        let target = call.target.as_deref().map(|t| self.ty(t));
        let args: Vec<Ty> = call.args.iter().map(|a| self.ty(a)).collect();
        if is_operator(name) {
            return self.operator(id, name, &args);
        }
        if let Some((_, shape)) = MACROS.iter().find(|(m, _)| *m == name) {
            self.problem(
                id,
                format!("`{name}` is a macro written {shape}; these arguments do not fit it"),
            );
            return Ty::Dyn;
        }
        let n = call.args.len();
        let (table, what, full) = match &call.target {
            // `optional.of(x)`: a qualified global, not a method of `optional`.
            Some(t) if matches!(&t.expr, Expr::Ident(ns) if GLOBALS.iter().any(|(g, _)| *g == format!("{ns}.{name}"))) =>
            {
                let Expr::Ident(ns) = &t.expr else {
                    return Ty::Dyn;
                };
                (GLOBALS, "function", format!("{ns}.{name}"))
            }
            Some(_) => (MEMBERS, "method", name.to_string()),
            None => (GLOBALS, "function", name.to_string()),
        };
        match table.iter().find(|(f, _)| *f == full) {
            None => {
                let known: Vec<&str> = table.iter().map(|(f, _)| *f).collect();
                let hint = did_you_mean(&full, &known);
                self.problem(id, format!("unknown {what} `{full}`{hint}"));
                return Ty::Dyn;
            }
            Some((_, arities)) if !arities.contains(&n) => {
                self.problem(
                    id,
                    format!("`{full}` takes {}, found {n}", arity_text(arities)),
                );
                return Ty::Dyn;
            }
            Some(_) => {}
        }
        let _ = target;
        match full.as_str() {
            "size" | "int" | "getDate" | "getDayOfMonth" | "getDayOfWeek" | "getDayOfYear"
            | "getFullYear" | "getHours" | "getMilliseconds" | "getMinutes" | "getMonth"
            | "getSeconds" => Ty::Int,
            "uint" => Ty::Uint,
            "double" => Ty::Double,
            "string" => Ty::String,
            "bytes" => Ty::Bytes,
            "bool" | "contains" | "endsWith" | "startsWith" | "matches" | "hasValue" => Ty::Bool,
            "timestamp" => Ty::Timestamp,
            "duration" => Ty::Duration,
            _ => Ty::Dyn,
        }
    }

    fn operator(&mut self, id: u64, name: &str, args: &[Ty]) -> Ty {
        use cel::common::ast::operators as op;
        let sym = match name {
            op::LOGICAL_AND => "&&",
            op::LOGICAL_OR => "||",
            op::LOGICAL_NOT => "!",
            op::ADD => "+",
            op::SUBSTRACT => "-",
            op::MULTIPLY => "*",
            op::DIVIDE => "/",
            op::MODULO => "%",
            op::NEGATE => "-",
            _ => "",
        };
        match name {
            op::LOGICAL_AND | op::LOGICAL_OR | op::LOGICAL_NOT => {
                if let Some(t) = args.iter().find(|t| t.not_bool()) {
                    self.problem(
                        id,
                        format!(
                            "`{sym}` needs true or false on each side, found {}",
                            t.name()
                        ),
                    );
                }
                Ty::Bool
            }
            op::CONDITIONAL => {
                if let Some(t) = args.first().filter(|t| t.not_bool()) {
                    self.problem(
                        id,
                        format!(
                            "the condition of `? :` must be true or false, found {}",
                            t.name()
                        ),
                    );
                }
                match (args.get(1), args.get(2)) {
                    (Some(a), Some(b)) if a == b => *a,
                    _ => Ty::Dyn,
                }
            }
            op::EQUALS
            | op::NOT_EQUALS
            | op::LESS
            | op::LESS_EQUALS
            | op::GREATER
            | op::GREATER_EQUALS
            | op::IN
            | op::NOT_STRICTLY_FALSE => Ty::Bool,
            op::ADD | op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO | op::NEGATE => {
                self.arithmetic(id, name, sym, args)
            }
            _ => Ty::Dyn,
        }
    }

    fn arithmetic(&mut self, id: u64, name: &str, sym: &str, args: &[Ty]) -> Ty {
        use cel::common::ast::operators as op;
        if let Some(t) = args
            .iter()
            .find(|t| matches!(t, Ty::Bool | Ty::Null | Ty::Map))
        {
            self.problem(id, format!("`{sym}` cannot apply to {}", t.name()));
            return Ty::Dyn;
        }
        if name != op::ADD
            && let Some(t) = args
                .iter()
                .find(|t| matches!(t, Ty::String | Ty::Bytes | Ty::List))
        {
            self.problem(id, format!("`{sym}` cannot apply to {}", t.name()));
            return Ty::Dyn;
        }
        let (Some(&a), Some(&b)) = (args.first(), args.get(1)) else {
            return args.first().copied().unwrap_or(Ty::Dyn);
        };
        let seq = |t: Ty| matches!(t, Ty::String | Ty::Bytes | Ty::List);
        if (seq(a)
            && (b.numeric() || b == Ty::Timestamp || b == Ty::Duration || (seq(b) && a != b)))
            || (seq(b) && (a.numeric() || a == Ty::Timestamp || a == Ty::Duration))
        {
            self.problem(
                id,
                format!("`{sym}` cannot combine {} and {}", a.name(), b.name()),
            );
            return Ty::Dyn;
        }
        if a == b && a != Ty::Timestamp {
            a
        } else {
            Ty::Dyn
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(src: &str, scope: Scope) -> Vec<String> {
        let p = cel::Program::compile(src).expect("parses");
        check(p.expression(), scope)
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn the_issues_two_conditions_are_errors() {
        let p = problems("frobnicate(row.n)", Scope::Probe);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("unknown function `frobnicate`"), "{p:?}");
        let p = problems("row.n + 'a' && 3", Scope::Probe);
        assert_eq!(p, ["`&&` needs true or false on each side, found an int"]);
    }

    #[test]
    fn mismatches_seen_without_data() {
        for (src, want) in [
            (
                "count + 'a' > 1",
                "`+` cannot combine a double and a string",
            ),
            ("row.s - 'x' == 1", "`-` cannot apply to a string"),
            ("true + 1 > 0", "`+` cannot apply to a bool"),
            ("!'yes'", "`!` needs true or false"),
            (
                "1 ? true : false",
                "the condition of `? :` must be true or false",
            ),
            ("row.n + 1", ""),
            ("'abc'", "always a string"),
            ("row.s.frob()", "unknown method `frob`"),
            ("size(row.s, 2) > 1", "`size` takes 1 argument, found 2"),
            ("rows.all(x) ", "`all` is a macro"),
            (
                "now.getHours('UTC', 1) > 2",
                "`getHours` takes 0 arguments or 1 argument",
            ),
        ] {
            let p = problems(src, Scope::Probe);
            if want.is_empty() {
                assert!(p.is_empty(), "{src}: {p:?}");
            } else {
                assert!(p.iter().any(|m| m.contains(want)), "{src}: {p:?}");
            }
        }
    }

    #[test]
    fn valid_conditions_pass() {
        for src in [
            "row.missing / row.sample > 0.01",
            "rows.all(x, x.ok) && rows.exists(y, y.n > 1)",
            "size(row.s) > 3 && row.s.startsWith('a') && row.s.endsWith('z')",
            "row.s.matches('^a') || matches(row.s, 'b') || row.s.contains('c')",
            "row.t < now - duration('1h') && timestamp(row.u) > now",
            "has(row.x) ? row.x > 1 : count == 0",
            "int(row.n) % 2 == 1 && double(row.m) * 2.0 < 10.0 && string(row.k) + 'x' != 'y'",
            "rows.map(r, r.n).filter(n, n > 1).size() == 0",
            "row.s + 'a' == 'ba'",
            "now.getHours('Europe/Paris') > 3 && now.getDayOfWeek() < 6",
            "type(row.n) == int || optional.of(1).hasValue()",
            "'nightly' in tags",
            "row.n in [1, 2, 3] && {'a': 1}['a'] == 1",
        ] {
            let scope = if src.contains("tags") {
                Scope::Select
            } else {
                Scope::Probe
            };
            assert!(
                problems(src, scope).is_empty(),
                "{src}: {:?}",
                problems(src, scope)
            );
        }
    }

    /// The tables name what the runtime registers: each function, called with nulls, is
    /// found (an overload error), and a name not in them is an undeclared reference.
    #[test]
    fn tables_match_the_runtime() {
        // The context conditions really run in (it adds invar's own `matches`).
        let ctx = crate::condition::context();
        let undeclared = |src: &str| {
            let p = cel::Program::compile(src).expect("parses");
            match p.execute(&ctx) {
                Err(e) => format!("{e:?}").contains("UndeclaredReference"),
                Ok(_) => false,
            }
        };
        for (name, arities) in GLOBALS {
            for n in *arities {
                let src = format!("{name}({})", vec!["null"; *n].join(", "));
                assert!(!undeclared(&src), "{src} is not registered");
            }
        }
        for (name, arities) in MEMBERS {
            for n in *arities {
                let src = format!("null.{name}({})", vec!["null"; *n].join(", "));
                assert!(!undeclared(&src), "{src} is not registered");
            }
        }
        assert!(undeclared("frobnicate(null)"));
        assert!(undeclared("null.frobnicate()"));
    }
}
