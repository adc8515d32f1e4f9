//! Where a probe's rows go as they are read: into a [`Table`], or — for a probe read only by
//! set checks — straight into the key sets those checks compare (no table is ever held, so a
//! million-row side costs its keys, not its rows).

use invar_core::eval::{KeySet, KeySetBuilder, KeySpec};
use invar_core::{KeyedProbe, Table, Value};
use std::collections::HashMap;

/// A probe's rows, as they arrive.
#[derive(Debug)]
pub enum RowSink {
    Table(Table),
    Keys {
        builders: Vec<(KeySpec, KeySetBuilder)>,
        columns: Option<Vec<String>>,
    },
}

/// What a [`RowSink`] holds once the probe is read.
#[derive(Debug)]
pub enum Output {
    Table(Table),
    Keys(HashMap<KeySpec, Result<KeySet, String>>),
}

impl Output {
    pub fn into_table(self) -> Option<Table> {
        match self {
            Output::Table(t) => Some(t),
            Output::Keys(_) => None,
        }
    }
}

impl RowSink {
    pub fn table() -> RowSink {
        RowSink::Table(Table::default())
    }

    /// Key sets for these sides (one per distinct key spec).
    pub fn keys(sides: &[KeyedProbe]) -> RowSink {
        let mut builders: Vec<(KeySpec, KeySetBuilder)> = Vec::new();
        for kp in sides {
            let spec = KeySpec::of(kp);
            if !builders.iter().any(|(s, _)| *s == spec) {
                builders.push((spec, KeySetBuilder::new(kp)));
            }
        }
        RowSink::Keys {
            builders,
            columns: None,
        }
    }

    /// A result with these columns starts; rows pushed before are dropped.
    pub fn begin(&mut self, cols: Vec<String>) {
        match self {
            RowSink::Table(t) => *t = Table::new(cols),
            RowSink::Keys { builders, columns } => {
                for (_, b) in builders.iter_mut() {
                    b.begin(&cols);
                }
                *columns = Some(cols);
            }
        }
    }

    pub fn push(&mut self, row: Vec<Value>) {
        match self {
            RowSink::Table(t) => t.rows.push(row),
            RowSink::Keys { builders, .. } => {
                for (_, b) in builders.iter_mut() {
                    b.push(&row);
                }
            }
        }
    }

    /// [`RowSink::push`] for a row the caller reuses.
    pub fn push_ref(&mut self, row: &[Value]) {
        match self {
            RowSink::Table(t) => t.rows.push(row.to_vec()),
            RowSink::Keys { builders, .. } => {
                for (_, b) in builders.iter_mut() {
                    b.push(row);
                }
            }
        }
    }

    /// The table of a table sink.
    pub fn into_table(self) -> Option<Table> {
        match self {
            RowSink::Table(t) => Some(t),
            RowSink::Keys { .. } => None,
        }
    }

    /// A whole table at once (sources that are not streamed).
    pub fn fill(mut self, t: Table) -> Output {
        if let RowSink::Table(_) = self {
            return Output::Table(t);
        }
        self.begin(t.columns);
        for row in t.rows {
            self.push(row);
        }
        self.finish()
    }

    /// [`RowSink::finish`] off the runtime's threads (a million keys take a moment to sort).
    pub async fn finish_blocking(self) -> Result<Output, String> {
        match self {
            RowSink::Table(t) => Ok(Output::Table(t)),
            keys => tokio::task::spawn_blocking(move || keys.finish())
                .await
                .map_err(|e| format!("key set task failed: {e}")),
        }
    }

    /// The table, or each key set (sorted and deduplicated here).
    pub fn finish(self) -> Output {
        match self {
            RowSink::Table(t) => Output::Table(t),
            RowSink::Keys { builders, .. } => Output::Keys(
                builders
                    .into_iter()
                    .map(|(spec, b)| (spec, b.finish()))
                    .collect(),
            ),
        }
    }
}

/// `values` probes: the literal list, one row each in column `value`.
#[derive(Debug)]
pub struct ValuesDriver;

impl crate::SourceDriver for ValuesDriver {
    fn concurrency(&self) -> crate::Concurrency {
        crate::Concurrency::Inline
    }

    fn read(
        self: std::sync::Arc<Self>,
        probe: &invar_core::Probe,
        sink: RowSink,
        _cx: &crate::ReadCx,
    ) -> futures::future::BoxFuture<'static, Result<Output, crate::ReadError>> {
        let invar_core::Probe::Values(vals) = probe else {
            return crate::fail(format!("{} is not a list of values", probe.describe()));
        };
        let t = Table {
            columns: vec!["value".into()],
            rows: vals.iter().map(|v| vec![Value::Text(v.clone())]).collect(),
        };
        Box::pin(async move { Ok(sink.fill(t)) })
    }
}
