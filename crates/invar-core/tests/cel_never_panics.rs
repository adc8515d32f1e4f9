//! CEL evaluation errors (division by zero, overflow, type mismatches, missing fields) are
//! outcomes with reasons, never panics: random expressions over random rows, bound as the
//! evaluator binds them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test: failing loudly is its job

use invar_core::{Condition, Scope, Table, Value};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

fn atom() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "row.n",
        "row.s",
        "row.x",
        "row.missing",
        "count",
        "0",
        "1",
        "-1",
        "0.0",
        "1.5",
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615u",
        "'a'",
        "''",
        "null",
        "true",
        "now",
        "[1, 2]",
        "[]",
        "{'a': 1}",
        "b'x'",
        "rows",
        "duration('1h')",
    ])
    .prop_map(str::to_string)
}

fn expr() -> impl Strategy<Value = String> {
    atom().prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "*", "/", "%", "==", "!=", "<", ">=", "&&", "||", "in"
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            inner.clone().prop_map(|a| format!("!{a}")),
            inner.clone().prop_map(|a| format!("-{a}")),
            (
                prop::sample::select(vec![
                    "size",
                    "int",
                    "double",
                    "string",
                    "uint",
                    "timestamp",
                    "duration",
                    "type"
                ]),
                inner.clone()
            )
                .prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}[{b}]")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("({a} ? {b} : {c})")),
            inner.clone().prop_map(|a| format!("rows.all(r, {a})")),
            inner
                .clone()
                .prop_map(|a| format!("rows.map(r, {a}).exists(v, v == 1)")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("string({a}).matches(string({b}))")),
        ]
    })
}

fn cell() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![0i64, 1, -1, i64::MAX, i64::MIN]).prop_map(Value::Int),
        any::<i64>().prop_map(Value::Int),
        prop::sample::select(vec![
            0.0,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e308
        ])
        .prop_map(Value::Float),
        ".{0,8}".prop_map(Value::Text),
        Just(Value::List(vec![Value::Int(1), Value::Null])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn evaluation_never_panics(
        e in expr(),
        rows in prop::collection::vec(prop::collection::vec(cell(), 3), 0..4),
    ) {
        let Ok(cond) = Condition::compile(&e, Scope::Probe) else {
            return Ok(());
        };
        let table = Table { columns: vec!["n".into(), "s".into(), "x".into()], rows };
        let rows: Vec<cel::Value> = (0..table.len()).map(|i| table.row_cel(i)).collect();
        let row = rows.first().cloned().unwrap_or_else(|| Value::Map(BTreeMap::new()).to_cel());
        let mut ctx = cel::Context::default();
        let now = chrono::DateTime::from_timestamp(1_764_700_000, 0).unwrap();
        ctx.add_variable_from_value("now", Value::Timestamp(now).to_cel());
        ctx.add_variable_from_value("rows", cel::Value::List(Arc::new(rows)));
        ctx.add_variable_from_value("row", row);
        ctx.add_variable_from_value("count", cel::Value::Float(table.len() as f64));
        // Ok or Err with a reason; a panic fails the property.
        if let Err(reason) = cond.eval_bool(&ctx) {
            prop_assert!(!reason.is_empty());
        }
    }
}
