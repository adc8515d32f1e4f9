//! CEL conditions: compile in every scope, then evaluate over a random row set, bound as the
//! evaluator binds them (`rows`, `row`, `count`, `now`; `r`; `source`; `id`/`severity`/`tags`).
#![no_main]
use invar_core::{Condition, Scope, Table, Value};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::Arc;

const COLUMNS: [&str; 4] = ["n", "s", "t", "x"];

/// Cells from bytes, 9 at a time: a tag byte, then 8 bytes of payload.
fn cells(bytes: &[u8]) -> Vec<Value> {
    bytes
        .chunks(9)
        .map(|c| {
            let mut p = [0u8; 8];
            for (d, s) in p.iter_mut().zip(c.iter().skip(1)) {
                *d = *s;
            }
            let n = i64::from_le_bytes(p);
            match c[0] % 7 {
                0 => Value::Null,
                1 => Value::Bool(n & 1 == 1),
                2 => Value::Int(n),
                3 => Value::Float(f64::from_bits(n as u64)),
                4 => Value::Text(String::from_utf8_lossy(&c[1..]).into_owned()),
                5 => chrono::DateTime::from_timestamp(n % 400_000_000_000, 0)
                    .map(Value::Timestamp)
                    .unwrap_or(Value::Null),
                _ => Value::List(vec![Value::Int(n), Value::Text("a".into())]),
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let (expr, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(expr) = std::str::from_utf8(expr) else {
        return;
    };
    let mut table = Table::new(COLUMNS.iter().map(|c| c.to_string()).collect());
    for row in cells(rest).chunks(COLUMNS.len()) {
        let mut row = row.to_vec();
        row.resize(COLUMNS.len(), Value::Null);
        table.rows.push(row);
    }
    let rows: Vec<cel::Value> = (0..table.len()).map(|i| table.row_cel(i)).collect();
    let row = rows
        .first()
        .cloned()
        .unwrap_or_else(|| Value::Map(BTreeMap::new()).to_cel());
    let now = chrono::DateTime::from_timestamp(1_764_700_000, 0).unwrap_or_default();
    for scope in [
        Scope::Probe,
        Scope::EveryRow,
        Scope::SkipIf,
        Scope::Select,
        Scope::Silence,
    ] {
        let Ok(cond) = Condition::compile(expr, scope) else {
            continue;
        };
        let mut ctx = cel::Context::default();
        ctx.add_variable_from_value("now", Value::Timestamp(now).to_cel());
        match scope {
            Scope::Probe => {
                ctx.add_variable_from_value("rows", cel::Value::List(Arc::new(rows.clone())));
                ctx.add_variable_from_value("row", row.clone());
                ctx.add_variable_from_value("count", cel::Value::Float(table.len() as f64));
            }
            Scope::EveryRow => ctx.add_variable_from_value("r", row.clone()),
            Scope::SkipIf => {
                let mut f = BTreeMap::new();
                f.insert("name".to_string(), Value::Text("db".into()));
                f.insert("size_bytes".to_string(), Value::Int(5_000_000));
                ctx.add_variable_from_value("source", Value::Map(f).to_cel());
            }
            Scope::Select | Scope::Silence => {
                ctx.add_variable_from_value("id", Value::Text("A-1".into()).to_cel());
                ctx.add_variable_from_value("severity", Value::Text("major".into()).to_cel());
                let tags = Value::List(vec![Value::Text("nightly".into())]);
                ctx.add_variable_from_value("tags", tags.to_cel());
                if scope == Scope::Silence {
                    ctx.add_variable_from_value("suite", Value::Text("gate".into()).to_cel());
                }
            }
        }
        // An outcome either way; only a panic is a bug.
        let _ = cond.eval_bool(&ctx);
    }
});
