//! `invar watch`: hands the loaded config to the daemon (invar-watch) until SIGTERM.

use super::Ctx;
use crate::cli::{VERSION, WatchArgs};
use crate::exit::Exit;
use anyhow::Result;
use std::sync::Arc;

pub fn execute(args: &WatchArgs, cx: &Ctx) -> Result<Exit> {
    let Some(cfg) = cx.load() else {
        return Ok(Exit::Usage);
    };
    // SIGHUP and POST /-/reload read the same file again, with the environment of now.
    let path = cx.config.clone();
    let loader: invar_watch::serve::Loader = Arc::new(move || {
        invar_config::load(&path).map_err(|d| {
            format!(
                "{} error{} in the config:\n{}",
                d.len(),
                if d.len() == 1 { "" } else { "s" },
                d.render(false)
            )
        })
    });
    let opts = invar_watch::serve::WatchOptions {
        listen: args.listen.clone(),
        version: VERSION.to_string(),
        clock: invar_watch::clock::Clock::from_env(),
        loader: Some(loader),
    };
    cx.block_on(invar_watch::serve::watch(Arc::new(cfg), opts))??;
    Ok(Exit::Ok)
}
