//! `invar demo`: a small SQLite shop with seeded defects and its commented invar.yaml, so a
//! newcomer sees failing and passing invariants of every kind without any server.

use super::Ctx;
use super::run::{Record, run_suite};
use crate::cli::{DemoArgs, Format};
use crate::exit::Exit;
use anyhow::{Context, Result, bail};
use sqlx::ConnectOptions;
use std::path::{Path, PathBuf};

const CONFIG: &str = include_str!("../../../../examples/demo/invar.yaml");
const MARKER: &str = "# invar demo";

/// `invar demo [--dir DIR]`: creates the demo, then runs it as `invar run` would (recorded,
/// exit 1 for its seeded defects).
pub fn execute(args: &DemoArgs, cx: &Ctx) -> Result<Exit> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let path = create(&dir, cx).context("creating the demo")?;
    let Some(cfg) = super::load(&path) else {
        return Ok(Exit::Usage);
    };
    let record = Record {
        dry_run: false,
        artifacts: None,
    };
    let exit = run_suite(cfg, None, vec![], &args.render, &record, None, cx)?;
    print_next_steps(
        &path,
        args.render.output.is_some() || args.render.format != Format::Table,
    );
    Ok(exit)
}

/// Writes `demo.db`, `logs/boot.log` and `invar.yaml` into `dir`; returns the config path.
fn create(dir: &Path, cx: &Ctx) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("invar.yaml");
    if let Ok(existing) = std::fs::read_to_string(&config)
        && !existing.starts_with(MARKER)
    {
        bail!(
            "{} exists and is not the demo's; run `invar demo --dir SOMEWHERE_ELSE`",
            config.display()
        );
    }
    std::fs::write(&config, CONFIG)?;
    std::fs::write(
        dir.join("logs/boot.log"),
        "2026-11-20 04:00:01 boot started\n2026-11-20 04:00:02 schema_guard ok (3 migrations)\n2026-11-20 04:00:03 boot done\n",
    )?;
    let db = dir.join("demo.db");
    let _ = std::fs::remove_file(&db);
    cx.block_on(seed(&db))?.context("seeding demo.db")?;
    Ok(config)
}

async fn seed(db: &Path) -> Result<()> {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(true)
        // SQLite does not enforce foreign keys by default; the demo's orphan order relies on that.
        .foreign_keys(false)
        .log_statements(log::LevelFilter::Off)
        .log_slow_statements(log::LevelFilter::Off, std::time::Duration::from_secs(60))
        .connect()
        .await?;
    let mut sql = String::from(
        "BEGIN;
         CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT, name TEXT NOT NULL, created_at TEXT NOT NULL);
         CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, price_cents INTEGER NOT NULL, active INTEGER NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), status TEXT NOT NULL,
                              total_cents INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
         CREATE TABLE payments (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, amount_cents INTEGER NOT NULL, paid_at TEXT NOT NULL);
         CREATE TABLE schema_migrations (version TEXT PRIMARY KEY);
         INSERT INTO schema_migrations VALUES ('001_init.sql'), ('002_payments.sql'), ('003_email_index.sql');
         INSERT INTO products (sku, price_cents, active) VALUES ('TEA-01', 1200, 1), ('MUG-02', 1800, 1), ('PEN-03', 0, 1), ('OLD-04', 0, 0);\n",
    );
    // 120 customers; one without an email (a warning, under 1%), two sharing one (a defect).
    for i in 1..=120 {
        let email = match i {
            7 => "NULL".to_string(),
            42 => "'dana@example.org'".to_string(),
            43 => "'Dana@example.org'".to_string(),
            _ => format!("'customer{i}@example.org'"),
        };
        sql.push_str(&format!(
            "INSERT INTO customers VALUES ({i}, {email}, 'Customer {i}', datetime('now', '-{} days'));\n",
            200 - i
        ));
    }
    // 60 orders over the last month, all paid with one payment each.
    for i in 1..=60 {
        let c = (i * 7) % 120 + 1;
        sql.push_str(&format!(
            "INSERT INTO orders VALUES ({i}, {c}, 'paid', {}, datetime('now', '-{i} hours'), datetime('now', '-{i} hours'));
             INSERT INTO payments (order_id, amount_cents, paid_at) VALUES ({i}, {}, datetime('now', '-{i} hours'));\n",
            1000 + i * 10,
            1000 + i * 10
        ));
    }
    sql.push_str(
        // Defects: an order whose customer was deleted; a negative total; a paid order without
        // its payment (old: a violation); one paid a minute ago (within the grace: not yet).
        "INSERT INTO orders VALUES (1042, 999, 'pending', 2500, datetime('now', '-2 days'), datetime('now', '-2 days'));
         INSERT INTO orders VALUES (1043, 12, 'pending', -500, datetime('now', '-1 days'), datetime('now', '-1 days'));
         INSERT INTO orders VALUES (1044, 13, 'paid', 4100, datetime('now', '-3 days'), datetime('now', '-3 days'));
         INSERT INTO orders VALUES (1045, 14, 'paid', 990, datetime('now', '-1 minutes'), datetime('now', '-1 minutes'));
         COMMIT;\n",
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?;
    Ok(())
}

fn print_next_steps(config: &Path, quiet: bool) {
    if quiet {
        return;
    }
    let c = config.display();
    eprintln!(
        "\nThe demo found the defects seeded in demo.db. Try next:\n  \
         invar run --config {c} --suite gate          # only what blocks a deploy\n  \
         invar run --config {c} --only SHOP-05 --format json\n  \
         invar run --config {c} --format junit --output report.xml\n  \
         invar validate --config {c}                  # then break the file and see every mistake reported\n  \
         invar history --config {c}                   # every run is recorded (.invar/history.db beside the config)\n  \
         invar incidents --config {c}                 # one incident per red invariant, one alert each\n\
         Read {c}: each invariant is commented with the check kind it shows."
    );
}
