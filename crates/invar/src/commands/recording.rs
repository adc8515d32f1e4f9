//! What `invar run` leaves behind besides its output: the run recorded in the history store
//! (through invar-record, as the watcher does), its alerts delivered within a bounded wait,
//! and the JSON artifact of `--artifacts DIR`.

use anyhow::{Context, Result};
use invar_core::{Check, Config, Remembered, RunReport, StoreSpec};
use invar_store::Store;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a one-shot command waits for pending alerts before leaving them queued.
const FLUSH_WAIT: Duration = Duration::from_secs(10);

pub async fn open(cfg: &Config) -> Result<Arc<dyn Store>> {
    // Every StoreError of an open says "history store" itself.
    let store = invar_store::open(&cfg.store).await?;
    Ok(Arc::from(store))
}

/// Opens the store only to read what `transitions` invariants remember and what `history:`
/// invariants see (`--dry-run`): None when the config has neither or the SQLite store was
/// never created (nothing recorded; a dry run does not create it).
pub async fn open_for_memory(cfg: &Config) -> Result<Option<Arc<dyn Store>>> {
    let any = cfg.invariants.iter().any(|i| {
        matches!(i.check, Check::Transitions(_)) || i.history.is_some() || i.vacuous_after.is_some()
    }) || cfg.suites.iter().any(|s| s.vacuous_after.is_some());
    if !any {
        return Ok(None);
    }
    if let StoreSpec::Sqlite { path } = &cfg.store
        && !path.exists()
    {
        return Ok(None);
    }
    open(cfg).await.map(Some)
}

/// Records one run (see [`invar_record::record`]), then tries every pending delivery
/// within a bounded wait; what fails stays queued for the next run.
pub async fn record(
    store: &Arc<dyn Store>,
    cfg: &Config,
    report: &mut RunReport,
    remembered: HashMap<String, Vec<Remembered>>,
) -> Result<()> {
    invar_record::record(store.as_ref(), cfg, report, remembered).await?;
    let outbox = invar_alerts::Outbox::new(store.clone(), &cfg.alerts);
    let flushed = outbox
        .flush(FLUSH_WAIT)
        .await
        .context("delivering alerts")?;
    if flushed.delivered > 0 {
        eprintln!("alerts: {} delivered", flushed.delivered);
    }
    if flushed.pending > 0 {
        eprintln!(
            "alerts: {} still queued after {} failed attempts; they are retried on the next run",
            flushed.pending, flushed.failed_attempts
        );
    }
    Ok(())
}

/// `--artifacts DIR`: the run report at `DIR/YYYY-MM-DD/<run_id>.json` (UTC date).
pub fn write_artifact(dir: &Path, report: &RunReport) -> Result<std::path::PathBuf> {
    let folder = dir.join(report.started_at.format("%Y-%m-%d").to_string());
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let path = folder.join(format!("{}.json", report.run_id));
    std::fs::write(&path, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
