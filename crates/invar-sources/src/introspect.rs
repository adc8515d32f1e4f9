//! Schema reading for `invar init --from URL`: the tables of a PostgreSQL, MySQL/MariaDB or
//! SQLite database with their columns, primary keys, unique indexes, declared foreign keys and
//! a cheap row estimate — read through the same read-only [`SqlPool`] as any probe.
//!
//! What is read, per backend:
//! - PostgreSQL: `pg_class`/`pg_attribute`/`pg_index`/`pg_constraint` of every ordinary or
//!   partitioned table outside the system schemas; the row estimate is `reltuples` (unknown
//!   until the table has been analysed).
//! - MySQL/MariaDB: `information_schema` of the connection's database (`DATABASE()`); the row
//!   estimate is `TABLE_ROWS` (InnoDB's estimate).
//! - SQLite: `sqlite_master` with the `pragma_table_info`, `pragma_index_list`,
//!   `pragma_index_info` and `pragma_foreign_key_list` table functions; the row estimate is
//!   `max(rowid)` (one index seek, never a scan; unknown for `WITHOUT ROWID` tables).
//!
//! Nothing here counts rows or scans data: reading the schema of a 10 GB database is as quick
//! as reading an empty one.

use crate::sql::{Dialect, SqlPool};
use invar_core::{Table, Value};
use std::collections::BTreeMap;

/// The tables of one database, in name order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    pub dialect: Option<Dialect>,
    pub tables: Vec<TableInfo>,
}

/// One table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableInfo {
    /// The schema (Postgres) or database (MySQL) when it is not the connection's default;
    /// `None` for the default one and for SQLite.
    pub schema: Option<String>,
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    /// Primary-key columns in key order (empty when there is none).
    pub primary_key: Vec<String>,
    /// Unique indexes and constraints (the primary key included), partial ones too.
    pub unique: Vec<UniqueIndex>,
    pub foreign_keys: Vec<ForeignKey>,
    /// A cheap estimate of the number of rows, when the database keeps one.
    pub row_estimate: Option<u64>,
}

/// One column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    /// The declared type as the database spells it (`timestamp with time zone`, `varchar(255)`,
    /// `TEXT`; SQLite may have none).
    pub data_type: String,
    pub nullable: bool,
}

/// A unique index or constraint.
#[derive(Debug, Clone, PartialEq)]
pub struct UniqueIndex {
    pub name: String,
    /// Plain columns in index order; empty entries are not kept.
    pub columns: Vec<String>,
    /// The index definition when it has expressions (`lower(email)`), else `None`.
    pub expression: Option<String>,
    /// Unique only for rows matching a `WHERE` (Postgres, SQLite partial indexes).
    pub partial: bool,
}

/// A declared foreign key.
#[derive(Debug, Clone, PartialEq)]
pub struct ForeignKey {
    pub name: Option<String>,
    pub columns: Vec<String>,
    /// The referenced table's schema when it is not the default one.
    pub ref_schema: Option<String>,
    pub ref_table: String,
    /// Referenced columns, pairing with `columns` by position.
    pub ref_columns: Vec<String>,
    /// False for a Postgres constraint created `NOT VALID` and not yet validated.
    pub validated: bool,
}

impl TableInfo {
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether `column` is part of the primary key or of any unique index (a composite or
    /// partial one included: then it is unique within a scope, not on its own), or named in a
    /// unique expression index.
    pub fn has_unique_on(&self, column: &str) -> bool {
        if self.primary_key.iter().any(|c| c == column) {
            return true;
        }
        self.unique.iter().any(|u| {
            u.columns.iter().any(|c| c == column)
                || u.expression
                    .as_deref()
                    .is_some_and(|e| mentions_word(e, column))
        })
    }

    /// Whether some declared foreign key starts with this column.
    pub fn in_foreign_key(&self, column: &str) -> bool {
        self.foreign_keys
            .iter()
            .any(|fk| fk.columns.iter().any(|c| c == column))
    }
}

/// Whether `word` appears in `text` delimited by non-identifier characters.
fn mentions_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Reads the schema behind `pool`.
pub async fn read_schema(pool: &SqlPool) -> Result<Schema, String> {
    let mut schema = match pool.dialect() {
        Dialect::Postgres => postgres(pool).await?,
        Dialect::Mysql => mysql(pool).await?,
        Dialect::Sqlite => sqlite(pool).await?,
    };
    schema.dialect = Some(pool.dialect());
    for t in &mut schema.tables {
        t.foreign_keys.sort_by(|a, b| a.columns.cmp(&b.columns));
    }
    Ok(schema)
}

// ---- reading cells ----------------------------------------------------------------------

struct Rows<'a> {
    table: &'a Table,
}

impl<'a> Rows<'a> {
    fn new(table: &'a Table) -> Self {
        Rows { table }
    }
    fn iter(&self) -> impl Iterator<Item = Row<'a>> + '_ {
        self.table.rows.iter().map(|r| Row {
            table: self.table,
            row: r,
        })
    }
}

#[derive(Clone, Copy)]
struct Row<'a> {
    table: &'a Table,
    row: &'a [Value],
}

impl Row<'_> {
    fn get(&self, col: &str) -> &Value {
        self.table
            .column(col)
            .and_then(|i| self.row.get(i))
            .unwrap_or(&Value::Null)
    }
    fn text(&self, col: &str) -> Option<String> {
        match self.get(col) {
            Value::Null => None,
            Value::Text(s) => Some(s.clone()),
            other => Some(other.key_text()),
        }
    }
    fn text_or_empty(&self, col: &str) -> String {
        self.text(col).unwrap_or_default()
    }
    fn bool(&self, col: &str) -> bool {
        match self.get(col) {
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Text(s) => matches!(s.as_str(), "t" | "true" | "1" | "YES" | "yes"),
            _ => false,
        }
    }
    fn number(&self, col: &str) -> Option<f64> {
        match self.get(col) {
            Value::Text(s) => s.trim().parse().ok(),
            v => v.as_f64(),
        }
    }
    fn list(&self, col: &str) -> Vec<String> {
        match self.get(col) {
            Value::List(items) => items
                .iter()
                .filter(|v| !v.is_null())
                .map(|v| match v {
                    Value::Text(s) => s.clone(),
                    other => other.key_text(),
                })
                .collect(),
            Value::Null => Vec::new(),
            Value::Text(s) => s
                .trim_matches(|c| c == '{' || c == '}')
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.trim_matches('"').to_string())
                .collect(),
            other => vec![other.key_text()],
        }
    }
}

/// Tables keyed by (schema, name), in name order.
type TableMap = BTreeMap<(Option<String>, String), TableInfo>;

fn table_entry<'m>(map: &'m mut TableMap, schema: Option<String>, name: &str) -> &'m mut TableInfo {
    map.entry((schema.clone(), name.to_string()))
        .or_insert_with(|| TableInfo {
            schema,
            name: name.to_string(),
            ..TableInfo::default()
        })
}

fn estimate(n: Option<f64>) -> Option<u64> {
    n.filter(|n| *n >= 0.0).map(|n| n as u64)
}

// ---- PostgreSQL -------------------------------------------------------------------------

const PG_USER_TABLES: &str = "c.relkind IN ('r', 'p') AND NOT c.relispartition \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// `NULL` for the connection's default schema, else the schema's name.
const PG_SCHEMA: &str = "CASE WHEN n.nspname = current_schema() THEN NULL ELSE n.nspname::text END";

async fn postgres(pool: &SqlPool) -> Result<Schema, String> {
    let tables = pool
        .query(&format!(
            "SELECT {PG_SCHEMA} AS schema_name, c.relname::text AS table_name, \
                    c.reltuples::float8 AS row_estimate \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE {PG_USER_TABLES} ORDER BY n.nspname, c.relname"
        ))
        .await?;
    let columns = pool
        .query(&format!(
            "SELECT {PG_SCHEMA} AS schema_name, c.relname::text AS table_name, \
                    a.attname::text AS column_name, \
                    format_type(a.atttypid, a.atttypmod) AS data_type, \
                    NOT a.attnotnull AS nullable \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE a.attnum > 0 AND NOT a.attisdropped AND {PG_USER_TABLES} \
             ORDER BY n.nspname, c.relname, a.attnum"
        ))
        .await?;
    let indexes = pool
        .query(&format!(
            "SELECT {PG_SCHEMA} AS schema_name, c.relname::text AS table_name, \
                    i.relname::text AS index_name, x.indisprimary AS is_primary, \
                    x.indpred IS NOT NULL AS partial, \
                    (x.indexprs IS NOT NULL) AS has_expression, \
                    pg_get_indexdef(x.indexrelid) AS definition, \
                    ARRAY(SELECT a.attname::text \
                          FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum \
                          WHERE k.ord <= x.indnkeyatts ORDER BY k.ord) AS columns \
             FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid \
             JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE x.indisunique AND {PG_USER_TABLES} \
             ORDER BY n.nspname, c.relname, i.relname"
        ))
        .await?;
    let fks = pool
        .query(&format!(
            "SELECT {PG_SCHEMA} AS schema_name, c.relname::text AS table_name, \
                    con.conname::text AS name, con.convalidated AS validated, \
                    CASE WHEN fn.nspname = current_schema() THEN NULL ELSE fn.nspname::text END \
                      AS ref_schema, \
                    fc.relname::text AS ref_table, \
                    ARRAY(SELECT a.attname::text \
                          FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum \
                          ORDER BY k.ord) AS columns, \
                    ARRAY(SELECT a.attname::text \
                          FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum \
                          ORDER BY k.ord) AS ref_columns \
             FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_class fc ON fc.oid = con.confrelid \
             JOIN pg_namespace fn ON fn.oid = fc.relnamespace \
             WHERE con.contype = 'f' AND {PG_USER_TABLES} \
             ORDER BY n.nspname, c.relname, con.conname"
        ))
        .await?;

    let mut map = TableMap::new();
    for r in Rows::new(&tables).iter() {
        let t = table_entry(
            &mut map,
            r.text("schema_name"),
            &r.text_or_empty("table_name"),
        );
        // reltuples is -1 (PG 14+) or 0 (older) before the first ANALYZE: unknown.
        t.row_estimate = estimate(r.number("row_estimate").filter(|n| *n > 0.0));
    }
    for r in Rows::new(&columns).iter() {
        let t = table_entry(
            &mut map,
            r.text("schema_name"),
            &r.text_or_empty("table_name"),
        );
        t.columns.push(ColumnInfo {
            name: r.text_or_empty("column_name"),
            data_type: r.text_or_empty("data_type"),
            nullable: r.bool("nullable"),
        });
    }
    for r in Rows::new(&indexes).iter() {
        let t = table_entry(
            &mut map,
            r.text("schema_name"),
            &r.text_or_empty("table_name"),
        );
        let columns = r.list("columns");
        if r.bool("is_primary") {
            t.primary_key = columns.clone();
        }
        t.unique.push(UniqueIndex {
            name: r.text_or_empty("index_name"),
            columns,
            expression: r
                .bool("has_expression")
                .then(|| r.text_or_empty("definition")),
            partial: r.bool("partial"),
        });
    }
    for r in Rows::new(&fks).iter() {
        let t = table_entry(
            &mut map,
            r.text("schema_name"),
            &r.text_or_empty("table_name"),
        );
        t.foreign_keys.push(ForeignKey {
            name: r.text("name"),
            columns: r.list("columns"),
            ref_schema: r.text("ref_schema"),
            ref_table: r.text_or_empty("ref_table"),
            ref_columns: r.list("ref_columns"),
            validated: r.bool("validated"),
        });
    }
    Ok(Schema {
        dialect: None,
        tables: map.into_values().collect(),
    })
}

// ---- MySQL / MariaDB --------------------------------------------------------------------

async fn mysql(pool: &SqlPool) -> Result<Schema, String> {
    let tables = pool
        .query(
            "SELECT TABLE_NAME AS table_name, TABLE_ROWS AS row_estimate \
             FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        )
        .await?;
    if tables.is_empty() {
        let db = pool.query("SELECT DATABASE() AS db").await?;
        if db
            .rows
            .first()
            .and_then(|r| r.first())
            .is_none_or(Value::is_null)
        {
            return Err(
                "no database selected: put the database name in the URL (mysql://user@host/DB)"
                    .into(),
            );
        }
    }
    let columns = pool
        .query(
            "SELECT TABLE_NAME AS table_name, COLUMN_NAME AS column_name, \
                    COLUMN_TYPE AS data_type, IS_NULLABLE AS nullable \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
             ORDER BY TABLE_NAME, ORDINAL_POSITION",
        )
        .await?;
    let indexes = pool
        .query(
            "SELECT TABLE_NAME AS table_name, INDEX_NAME AS index_name, \
                    COLUMN_NAME AS column_name, SEQ_IN_INDEX AS seq \
             FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND NON_UNIQUE = 0 \
             ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        )
        .await?;
    let fks = pool
        .query(
            "SELECT TABLE_NAME AS table_name, CONSTRAINT_NAME AS name, COLUMN_NAME AS column_name, \
                    CASE WHEN REFERENCED_TABLE_SCHEMA = DATABASE() THEN NULL \
                         ELSE REFERENCED_TABLE_SCHEMA END AS ref_schema, \
                    REFERENCED_TABLE_NAME AS ref_table, REFERENCED_COLUMN_NAME AS ref_column \
             FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL \
             ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION",
        )
        .await?;

    let mut map = TableMap::new();
    for r in Rows::new(&tables).iter() {
        let t = table_entry(&mut map, None, &r.text_or_empty("table_name"));
        t.row_estimate = estimate(r.number("row_estimate"));
    }
    for r in Rows::new(&columns).iter() {
        let name = r.text_or_empty("table_name");
        if !map.contains_key(&(None, name.clone())) {
            continue; // a view
        }
        let t = table_entry(&mut map, None, &name);
        t.columns.push(ColumnInfo {
            name: r.text_or_empty("column_name"),
            data_type: r.text_or_empty("data_type"),
            nullable: r.text("nullable").as_deref() == Some("YES"),
        });
    }
    for r in Rows::new(&indexes).iter() {
        let Some(t) = map.get_mut(&(None, r.text_or_empty("table_name"))) else {
            continue;
        };
        let index = r.text_or_empty("index_name");
        let column = r.text("column_name");
        if index == "PRIMARY"
            && let Some(c) = &column
        {
            t.primary_key.push(c.clone());
        }
        let u = last_or_push(
            &mut t.unique,
            |u| u.name == index,
            || UniqueIndex {
                name: index.clone(),
                columns: Vec::new(),
                expression: None,
                partial: false,
            },
        );
        match column {
            Some(c) => u.columns.push(c),
            // A functional key part (MySQL 8): we cannot name its columns, so keep its name.
            None => u.expression = Some(index),
        }
    }
    for r in Rows::new(&fks).iter() {
        let Some(t) = map.get_mut(&(None, r.text_or_empty("table_name"))) else {
            continue;
        };
        let name = r.text("name");
        let fk = last_or_push(
            &mut t.foreign_keys,
            |fk| fk.name == name && name.is_some(),
            || ForeignKey {
                name: name.clone(),
                columns: Vec::new(),
                ref_schema: r.text("ref_schema"),
                ref_table: r.text_or_empty("ref_table"),
                ref_columns: Vec::new(),
                validated: true,
            },
        );
        fk.columns.push(r.text_or_empty("column_name"));
        fk.ref_columns.push(r.text_or_empty("ref_column"));
    }
    Ok(Schema {
        dialect: None,
        tables: map.into_values().collect(),
    })
}

// ---- SQLite -----------------------------------------------------------------------------

const SQLITE_TABLES: &str = "m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'";

async fn sqlite(pool: &SqlPool) -> Result<Schema, String> {
    let columns = pool
        .query(&format!(
            "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type, \
                    p.\"notnull\" AS not_null, p.pk AS pk \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE {SQLITE_TABLES} ORDER BY m.name, p.cid"
        ))
        .await?;
    let indexes = pool
        .query(&format!(
            "SELECT m.name AS table_name, il.name AS index_name, il.partial AS partial, \
                    ii.seqno AS seq, ii.name AS column_name, ix.sql AS definition \
             FROM sqlite_master m JOIN pragma_index_list(m.name) il \
             JOIN pragma_index_info(il.name) ii \
             LEFT JOIN sqlite_master ix ON ix.type = 'index' AND ix.name = il.name \
             WHERE {SQLITE_TABLES} AND il.\"unique\" = 1 \
             ORDER BY m.name, il.name, ii.seqno"
        ))
        .await?;
    let fks = pool
        .query(&format!(
            "SELECT m.name AS table_name, f.id AS fk_id, f.seq AS seq, f.\"table\" AS ref_table, \
                    f.\"from\" AS column_name, f.\"to\" AS ref_column \
             FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
             WHERE {SQLITE_TABLES} ORDER BY m.name, f.id, f.seq"
        ))
        .await?;

    let mut map = TableMap::new();
    let mut pk_order: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for r in Rows::new(&columns).iter() {
        let tname = r.text_or_empty("table_name");
        let t = table_entry(&mut map, None, &tname);
        let name = r.text_or_empty("column_name");
        let pk = r.number("pk").unwrap_or(0.0) as i64;
        if pk > 0 {
            pk_order.entry(tname).or_default().push((pk, name.clone()));
        }
        t.columns.push(ColumnInfo {
            name,
            data_type: r.text_or_empty("data_type"),
            // SQLite lets a non-INTEGER primary key hold NULLs, but every other engine does
            // not and applications treat it as required.
            nullable: !r.bool("not_null") && pk == 0,
        });
    }
    for (tname, mut cols) in pk_order {
        cols.sort();
        if let Some(t) = map.get_mut(&(None, tname)) {
            t.primary_key = cols.into_iter().map(|(_, c)| c).collect();
        }
    }
    for r in Rows::new(&indexes).iter() {
        let Some(t) = map.get_mut(&(None, r.text_or_empty("table_name"))) else {
            continue;
        };
        let index = r.text_or_empty("index_name");
        let u = last_or_push(
            &mut t.unique,
            |u| u.name == index,
            || UniqueIndex {
                name: index.clone(),
                columns: Vec::new(),
                expression: None,
                partial: r.bool("partial"),
            },
        );
        match r.text("column_name") {
            Some(c) => u.columns.push(c),
            None => u.expression = Some(r.text("definition").unwrap_or(index)),
        }
    }
    let mut current: Option<(String, String)> = None;
    for r in Rows::new(&fks).iter() {
        let tname = r.text_or_empty("table_name");
        let id = r.text_or_empty("fk_id");
        let Some(t) = map.get_mut(&(None, tname.clone())) else {
            continue;
        };
        let same = current.as_ref() == Some(&(tname.clone(), id.clone()));
        if !same {
            current = Some((tname, id));
        }
        let fk = last_or_push(
            &mut t.foreign_keys,
            |_| same,
            || ForeignKey {
                name: None,
                columns: Vec::new(),
                ref_schema: None,
                ref_table: r.text_or_empty("ref_table"),
                ref_columns: Vec::new(),
                validated: true,
            },
        );
        fk.columns.push(r.text_or_empty("column_name"));
        // `to` is NULL when the key references the parent's primary key implicitly.
        fk.ref_columns
            .push(r.text("ref_column").unwrap_or_default());
    }
    // Implicit references: fill in the parent's primary key.
    let pks: BTreeMap<String, Vec<String>> = map
        .values()
        .map(|t| (t.name.clone(), t.primary_key.clone()))
        .collect();
    for t in map.values_mut() {
        for fk in &mut t.foreign_keys {
            if fk.ref_columns.iter().any(String::is_empty)
                && let Some(pk) = pks.get(&fk.ref_table)
                && pk.len() == fk.columns.len()
            {
                fk.ref_columns = pk.clone();
            }
        }
    }
    // Row estimates: max(rowid) is one seek; WITHOUT ROWID tables have none (unknown).
    for t in map.values_mut() {
        let sql = format!(
            "SELECT max(rowid) AS n FROM \"{}\"",
            t.name.replace('"', "\"\"")
        );
        if let Ok(tab) = pool.query(&sql).await {
            t.row_estimate = tab
                .rows
                .first()
                .and_then(|r| r.first())
                .and_then(Value::as_f64)
                .map(|n| n.max(0.0) as u64)
                .or(Some(0));
        }
    }
    Ok(Schema {
        dialect: None,
        tables: map.into_values().collect(),
    })
}

/// The last element of `v`, after pushing `new()` unless that element `continues` (catalog
/// rows come one per column, ordered, so a key spans consecutive rows).
fn last_or_push<T>(
    v: &mut Vec<T>,
    continues: impl FnOnce(&T) -> bool,
    new: impl FnOnce() -> T,
) -> &mut T {
    if !v.last().is_some_and(continues) {
        v.push(new());
    }
    let last = v.len() - 1;
    &mut v[last]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_mentions() {
        assert!(mentions_word(
            "CREATE UNIQUE INDEX u ON t (lower(email))",
            "email"
        ));
        assert!(!mentions_word(
            "CREATE UNIQUE INDEX u ON t (lower(email_2))",
            "email"
        ));
        assert!(!mentions_word("x_email", "email"));
    }
}
