//! `invar watch` as a whole: open the store, start the scheduler and the alert outbox worker,
//! serve the HTTP API, and on SIGTERM or Ctrl-C stop taking new work, let the running runs
//! finish and record, and return (exit 0).

use crate::clock::Clock;
use crate::watcher::Watcher;
use anyhow::{Context, Result};
use invar_core::Config;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the outbox worker looks for due deliveries.
const OUTBOX_POLL: Duration = Duration::from_secs(2);
/// How often the dead-man's switch looks for overdue suites (on the watcher's clock).
const WATCHDOG_EVERY: Duration = Duration::from_secs(30);

pub struct WatchOptions {
    /// Overrides `server.listen`.
    pub listen: Option<String>,
    /// Shown on the status page and in `invar_build_info`.
    pub version: String,
    pub clock: Clock,
}

/// Runs the watcher until SIGTERM/SIGINT. Errors only for what stops it from starting (the
/// store cannot be opened, the address cannot be bound).
pub async fn watch(cfg: Arc<Config>, opts: WatchOptions) -> Result<()> {
    let store: Arc<dyn invar_store::Store> = Arc::from(
        invar_store::open(&cfg.store)
            .await
            .context("opening the history store")?,
    );
    let listen = opts
        .listen
        .clone()
        .unwrap_or_else(|| cfg.server.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let watcher = Arc::new(Watcher::new(
        cfg.clone(),
        store.clone(),
        opts.clock,
        opts.version,
    )?);
    if cfg.server.admin_token.is_none() && cfg.server.read_token.is_none() {
        tracing::warn!("no server.admin_token or server.read_token: the /api/v1 API answers 401");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let schedulers = crate::scheduler::start(watcher.clone(), stop_rx.clone());
    let outbox = {
        let mut stop = stop_rx.clone();
        let outbox = invar_alerts::Outbox::new(store.clone(), &cfg.alerts);
        tokio::spawn(async move {
            outbox
                .run(OUTBOX_POLL, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    };
    let watchdog = {
        let w = watcher.clone();
        let mut stop = stop_rx.clone();
        let every = w.clock.real(WATCHDOG_EVERY);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = w.watchdog().await {
                    tracing::error!(error = %format!("{e:#}"), "dead-man's switch check failed");
                }
            }
        })
    };
    let scheduled: Vec<String> = watcher
        .slots()
        .iter()
        .filter(|s| s.schedule.is_some())
        .map(|s| s.suite.name.clone())
        .collect();
    tracing::info!(%addr, store = store.backend(), scheduled = ?scheduled, owner = %watcher.owner, "invar watch started");
    eprintln!(
        "invar watch: listening on http://{addr} ({} scheduled suite{})",
        scheduled.len(),
        if scheduled.len() == 1 { "" } else { "s" }
    );

    let (router, _) = crate::api::router(watcher.clone());
    let mut stop_server = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_server.wait_for(|s| *s).await;
            })
            .await
    });

    shutdown_signal().await;
    eprintln!("invar watch: stopping; waiting for running runs to finish");
    tracing::info!("shutdown requested: draining");
    let _ = stop_tx.send(true);
    for h in schedulers {
        let _ = h.await;
    }
    // No new tick or run from here; ticks in flight and running runs finish and record.
    // Holding every suite's lock means no run is in progress and none can start.
    let _guards = watcher.drain().await;
    let _ = server.await;
    let _ = outbox.await;
    let _ = watchdog.await;
    eprintln!("invar watch: stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still stops");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
