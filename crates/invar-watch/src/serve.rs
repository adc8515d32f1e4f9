//! `invar watch` as a whole: open the store, start the scheduler and the alert outbox worker,
//! serve the HTTP API, and on SIGTERM or Ctrl-C stop taking new work, let the running runs
//! finish and record, and return (exit 0).
//!
//! The API is served by its own accept loop over hyper (not `axum::serve`), because only
//! hyper's connection builder with a timer can cut a client that never finishes its request
//! headers (slowloris).

use crate::clock::Clock;
use crate::watcher::Watcher;
use anyhow::{Context, Result};
use invar_core::Config;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// How often the outbox worker looks for due deliveries.
const OUTBOX_POLL: Duration = Duration::from_secs(2);
/// How often the dead-man's switch looks for overdue suites (on the watcher's clock).
const WATCHDOG_EVERY: Duration = Duration::from_secs(30);
/// A connection that has not sent a whole request head within this is closed: it bounds
/// slowloris clients and idle keep-alive connections alike.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The background loops `/readyz` checks: a watcher whose scheduler, outbox or dead-man's
/// switch loop has ended (a panic, an early return) is not ready, though it still serves.
#[derive(Clone, Default)]
pub struct Workers(Arc<Mutex<Vec<(String, AbortHandle)>>>);

impl Workers {
    pub fn add(&self, name: impl Into<String>, task: AbortHandle) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.into(), task));
    }

    /// The names of the loops that have ended.
    pub fn ended(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, t)| t.is_finished())
            .map(|(n, _)| n.clone())
            .collect()
    }
}

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
    let workers = Workers::default();
    let schedulers = crate::scheduler::start(watcher.clone(), stop_rx.clone());
    for (h, slot) in schedulers
        .iter()
        .zip(watcher.slots().iter().filter(|s| s.schedule.is_some()))
    {
        workers.add(format!("scheduler `{}`", slot.suite.name), h.abort_handle());
    }
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
    workers.add("alert outbox", outbox.abort_handle());
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
                    tracing::error!(error = %invar_core::error_chain(e.as_ref()), "dead-man's switch check failed");
                }
            }
        })
    };
    workers.add("dead-man's switch", watchdog.abort_handle());
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

    let (router, _) = crate::api::router(watcher.clone(), workers);
    let server = tokio::spawn(serve_http(listener, router, stop_rx.clone()));

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

/// Serves `router` on `listener` until `stop` turns true, then lets the open connections finish
/// their requests and returns. Each connection is HTTP/1 with [`HEADER_READ_TIMEOUT`].
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        while conns.try_join_next().is_some() {}
        let io = match accepted {
            Ok((io, _)) => io,
            Err(e) => {
                // Out of file descriptors, or a connection reset before accept: the listener
                // itself is fine; pause so a full fd table is not a busy loop.
                tracing::warn!(error = %e, "api: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut stop = stop.clone();
        conns.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = stop.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
            }
            // A request in progress finishes; an idle connection closes now.
            let _ = conn.await;
        });
    }
    while conns.join_next().await.is_some() {}
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
