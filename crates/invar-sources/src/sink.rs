//! Where a probe's rows go as they are read: into a [`Table`], or — for a probe read only by
//! set checks — straight into the key sets those checks compare (no table is ever held, so a
//! million-row side costs its keys, not its rows).

use invar_core::eval::{KeySet, KeySetBuilder, KeySpec};
use invar_core::{KeyedProbe, Table, Value};
use std::collections::HashMap;

/// A probe's rows, as they arrive.
#[derive(Debug)]
pub enum Sink {
    Table(Table),
    Keys {
        builders: Vec<(KeySpec, KeySetBuilder)>,
        columns: Option<Vec<String>>,
    },
}

/// What a [`Sink`] holds once the probe is read.
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

impl Sink {
    pub fn table() -> Sink {
        Sink::Table(Table::default())
    }

    /// Key sets for these sides (one per distinct key spec).
    pub fn keys(sides: &[KeyedProbe]) -> Sink {
        let mut builders: Vec<(KeySpec, KeySetBuilder)> = Vec::new();
        for kp in sides {
            let spec = KeySpec::of(kp);
            if !builders.iter().any(|(s, _)| *s == spec) {
                builders.push((spec, KeySetBuilder::new(kp)));
            }
        }
        Sink::Keys {
            builders,
            columns: None,
        }
    }

    /// A result with these columns starts; rows pushed before are dropped.
    pub fn begin(&mut self, cols: Vec<String>) {
        match self {
            Sink::Table(t) => *t = Table::new(cols),
            Sink::Keys { builders, columns } => {
                for (_, b) in builders.iter_mut() {
                    b.begin(&cols);
                }
                *columns = Some(cols);
            }
        }
    }

    pub fn push(&mut self, row: Vec<Value>) {
        match self {
            Sink::Table(t) => t.rows.push(row),
            Sink::Keys { builders, .. } => {
                for (_, b) in builders.iter_mut() {
                    b.push(&row);
                }
            }
        }
    }

    /// [`Sink::push`] for a row the caller reuses.
    pub fn push_ref(&mut self, row: &[Value]) {
        match self {
            Sink::Table(t) => t.rows.push(row.to_vec()),
            Sink::Keys { builders, .. } => {
                for (_, b) in builders.iter_mut() {
                    b.push(row);
                }
            }
        }
    }

    /// The table of a table sink.
    pub fn into_table(self) -> Option<Table> {
        match self {
            Sink::Table(t) => Some(t),
            Sink::Keys { .. } => None,
        }
    }

    /// A whole table at once (sources that are not streamed).
    pub fn fill(mut self, t: Table) -> Output {
        if let Sink::Table(_) = self {
            return Output::Table(t);
        }
        self.begin(t.columns);
        for row in t.rows {
            self.push(row);
        }
        self.finish()
    }

    /// [`Sink::finish`] off the runtime's threads (a million keys take a moment to sort).
    pub async fn finish_blocking(self) -> Result<Output, String> {
        match self {
            Sink::Table(t) => Ok(Output::Table(t)),
            keys => tokio::task::spawn_blocking(move || keys.finish())
                .await
                .map_err(|e| format!("key set task failed: {e}")),
        }
    }

    /// The table, or each key set (sorted and deduplicated here).
    pub fn finish(self) -> Output {
        match self {
            Sink::Table(t) => Output::Table(t),
            Sink::Keys { builders, .. } => Output::Keys(
                builders
                    .into_iter()
                    .map(|(spec, b)| (spec, b.finish()))
                    .collect(),
            ),
        }
    }
}
