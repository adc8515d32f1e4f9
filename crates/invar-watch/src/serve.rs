//! `invar watch` as a whole: open the store, start the scheduler and the alert outbox worker,
//! serve the HTTP API, and on SIGTERM or Ctrl-C stop taking new work, let the running runs
//! finish and record, and return (exit 0).
//!
//! Reload (`SIGHUP`, `POST /-/reload`): the new config is loaded and validated first; on any
//! error the running config stays and the log says why. Otherwise a new *generation* — a
//! watcher, its schedulers, outbox worker and dead-man's switch, and its API router — starts
//! beside the old one, the server switches to the new router, and only then the old
//! generation stops and its running runs finish. Ticks are claimed once in the store, so a
//! tick both generations see runs once, and none falls between them. The listen address and
//! the store are kept (changing them needs a restart, and the log says so).
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

/// Loads and validates the config again (from the same file and environment), or says why it
/// cannot: the CLI's loader, so this crate needs no config parser.
pub type Loader = Arc<dyn Fn() -> Result<Config, String> + Send + Sync>;

pub struct WatchOptions {
    /// Overrides `server.listen`.
    pub listen: Option<String>,
    /// Shown on the status page and in `invar_build_info`.
    pub version: String,
    pub clock: Clock,
    /// For `SIGHUP` and `POST /-/reload`; without it a reload is refused.
    pub loader: Option<Loader>,
}

/// A reload request from the API, answered with what changed or why nothing did.
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

/// How the API asks the main loop for a reload.
#[derive(Clone)]
pub struct Reloader(pub tokio::sync::mpsc::Sender<ReloadRequest>);

/// The router the server hands each new connection: replaced whole on reload.
#[derive(Clone)]
pub struct RouterCell(Arc<std::sync::RwLock<axum::Router>>);

impl RouterCell {
    pub fn new(router: axum::Router) -> RouterCell {
        RouterCell(Arc::new(std::sync::RwLock::new(router)))
    }
    fn get(&self) -> axum::Router {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set(&self, router: axum::Router) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = router;
    }
}

/// Each request goes to the router of the moment it arrives, so a keep-alive connection
/// opened before a reload sees the new config too.
#[derive(Clone)]
struct Current(RouterCell);

impl<B> tower_service::Service<axum::http::Request<B>> for Current
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = <axum::Router as tower_service::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        tower_service::Service::call(&mut self.0.get(), req)
    }
}

impl From<axum::Router> for RouterCell {
    fn from(router: axum::Router) -> RouterCell {
        RouterCell::new(router)
    }
}

/// One config's running parts.
struct Generation {
    watcher: Arc<Watcher>,
    stop: watch::Sender<bool>,
    schedulers: Vec<tokio::task::JoinHandle<()>>,
    loops: Vec<tokio::task::JoinHandle<()>>,
    router: axum::Router,
}

impl Generation {
    /// Stops taking ticks, lets running runs finish and record, and ends its loops.
    async fn stop(self) {
        let _ = self.stop.send(true);
        for h in self.schedulers {
            let _ = h.await;
        }
        // Holding every suite's lock means no run is in progress and none can start.
        let _guards = self.watcher.drain().await;
        for h in self.loops {
            let _ = h.await;
        }
    }
}

/// Starts a config's watcher, schedulers, outbox worker and dead-man's switch.
fn start(
    cfg: Arc<Config>,
    store: Arc<dyn invar_store::Store>,
    opts: &WatchOptions,
    reloader: Reloader,
) -> Result<Generation> {
    let watcher = Arc::new(Watcher::new(
        cfg.clone(),
        store.clone(),
        opts.clock.clone(),
        opts.version.clone(),
    )?);
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
    let (router, _) = crate::api::router(watcher.clone(), workers);
    let router = router.layer(axum::Extension(reloader));
    Ok(Generation {
        watcher,
        stop: stop_tx,
        schedulers,
        loops: vec![outbox, watchdog],
        router,
    })
}

fn scheduled(w: &Watcher) -> Vec<String> {
    w.slots()
        .iter()
        .filter(|s| s.schedule.is_some())
        .map(|s| s.suite.name.clone())
        .collect()
}

/// What a reload changes, in one line (`+suite nightly, -suite gate, 12 invariants`).
fn changes(old: &Config, new: &Config) -> String {
    let names = |c: &Config| -> std::collections::BTreeSet<String> {
        c.suites.iter().map(|s| s.name.clone()).collect()
    };
    let (before, after) = (names(old), names(new));
    let mut parts: Vec<String> = after
        .difference(&before)
        .map(|s| format!("+suite {s}"))
        .chain(before.difference(&after).map(|s| format!("-suite {s}")))
        .collect();
    parts.push(format!(
        "{} suites, {} invariants, {} sinks",
        new.suites.len(),
        new.invariants.len(),
        new.alerts.len()
    ));
    parts.join(", ")
}

/// Loads the config again and, when it is valid, replaces the running generation with one
/// built from it. The running config is kept on any error.
async fn reload(
    current: &mut Generation,
    store: &Arc<dyn invar_store::Store>,
    opts: &WatchOptions,
    reloader: &Reloader,
    cell: &RouterCell,
) -> Result<String, String> {
    let Some(loader) = &opts.loader else {
        return Err("this watcher has no config file to reload".into());
    };
    let loader = loader.clone();
    let cfg = tokio::task::spawn_blocking(move || loader())
        .await
        .map_err(|e| format!("loading the config failed: {e}"))??;
    let old = current.watcher.cfg.clone();
    if cfg.server.listen != old.server.listen && opts.listen.is_none() {
        tracing::warn!(
            "server.listen changed; the watcher keeps listening where it is until it is restarted"
        );
    }
    if cfg.store != old.store {
        return Err("`store` changed: restart the watcher to move to another history store".into());
    }
    let summary = changes(&old, &cfg);
    let next = start(Arc::new(cfg), store.clone(), opts, reloader.clone())
        .map_err(|e| invar_core::error_chain(e.as_ref()))?;
    cell.set(next.router.clone());
    let prev = std::mem::replace(current, next);
    prev.stop().await;
    Ok(summary)
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
    if cfg.server.admin_token.is_none() && cfg.server.read_token.is_none() {
        tracing::warn!("no server.admin_token or server.read_token: the /api/v1 API answers 401");
    }
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
    let reloader = Reloader(reload_tx);
    let mut current = start(cfg, store.clone(), &opts, reloader.clone())?;
    let scheduled_now = scheduled(&current.watcher);
    tracing::info!(%addr, store = store.backend(), scheduled = ?scheduled_now, owner = %current.watcher.owner, "invar watch started");
    eprintln!(
        "invar watch: listening on http://{addr} ({} scheduled suite{})",
        scheduled_now.len(),
        if scheduled_now.len() == 1 { "" } else { "s" }
    );

    let cell = RouterCell::new(current.router.clone());
    let (server_stop, server_rx) = watch::channel(false);
    let server = tokio::spawn(serve_http(listener, cell.clone(), server_rx));

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut hangup = hangup_signal();
    loop {
        let reply = tokio::select! {
            _ = &mut shutdown => break,
            _ = hangup.recv() => None,
            Some(reply) = reload_rx.recv() => Some(reply),
        };
        let how = if reply.is_some() {
            "POST /-/reload"
        } else {
            "SIGHUP"
        };
        let outcome = reload(&mut current, &store, &opts, &reloader, &cell).await;
        match &outcome {
            Ok(summary) => {
                tracing::info!(trigger = how, changes = %summary, scheduled = ?scheduled(&current.watcher), "config reloaded");
                eprintln!("invar watch: config reloaded ({how}): {summary}");
            }
            Err(why) => {
                tracing::error!(trigger = how, reason = %why, "config reload refused; keeping the running config");
                eprintln!(
                    "invar watch: config reload refused ({how}); keeping the running config:\n{why}"
                );
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
    eprintln!("invar watch: stopping; waiting for running runs to finish");
    tracing::info!("shutdown requested: draining");
    // No new tick or run from here; ticks in flight and running runs finish and record.
    let _ = server_stop.send(true);
    current.stop().await;
    let _ = server.await;
    eprintln!("invar watch: stopped");
    Ok(())
}

/// Serves `router` on `listener` until `stop` turns true, then lets the open connections finish
/// their requests and returns. Each connection is HTTP/1 with [`HEADER_READ_TIMEOUT`].
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: impl Into<RouterCell>,
    mut stop: watch::Receiver<bool>,
) {
    let router: RouterCell = router.into();
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
        let service = hyper_util::service::TowerToHyperService::new(Current(router.clone()));
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

/// `SIGHUP`s, as a stream; one that never yields where they cannot be received.
struct Hangup(Option<tokio::signal::unix::Signal>);

impl Hangup {
    async fn recv(&mut self) {
        match &mut self.0 {
            Some(s) => {
                if s.recv().await.is_none() {
                    self.0 = None;
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

fn hangup_signal() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Hangup(Some(s)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload");
            Hangup(None)
        }
    }
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
