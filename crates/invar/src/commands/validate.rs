//! `invar validate`: every mistake of the config at once (exit 3), else a one-line summary.

use super::{Ctx, empty_selection};
use crate::exit::Exit;

pub fn execute(cx: &Ctx) -> Exit {
    let path = &cx.config;
    let Some(cfg) = cx.load() else {
        return Exit::Usage;
    };
    if cfg.invariants.is_empty() {
        eprintln!(
            "warning: {}: no invariants: `invar run` would check nothing",
            path.display()
        );
    }
    for suite in cfg.suites.iter().filter(|_| !cfg.invariants.is_empty()) {
        if let Some(why) = empty_selection(&cfg, Some(&suite.name), &[]) {
            eprintln!("warning: {}: {why}", path.display());
        }
    }
    println!(
        "{}: ok — {} sources, {} invariants, {} suites",
        path.display(),
        cfg.sources.len(),
        cfg.invariants.len(),
        cfg.suites.len()
    );
    Exit::Ok
}
