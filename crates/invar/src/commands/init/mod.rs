//! `invar init [--from URL]`: writes the starter config ([`starter`]); never overwrites
//! without `--force`, never writes the URL.

mod starter;

use super::{Ctx, stderr_color};
use crate::cli::InitArgs;
use crate::exit::{Exit, usage};
use anyhow::{Context, Result};
use std::path::Path;

/// `invar init`'s flags once they are known to make sense (no I/O but `--from`'s file test).
struct InitPlan {
    from: Option<starter::Target>,
}

impl InitPlan {
    fn new(args: &InitArgs) -> Result<InitPlan, String> {
        let from = match &args.from {
            None => None,
            Some(url) => Some(starter::Target::parse(url).map_err(|e| format!("--from: {e}"))?),
        };
        let var_ok = !args.url_env.is_empty()
            && args
                .url_env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !var_ok {
            return Err(format!(
                "--url-env `{}` is not an environment variable name",
                args.url_env
            ));
        }
        Ok(InitPlan { from })
    }
}

pub fn execute(args: &InitArgs, cx: &Ctx) -> Result<Exit> {
    let plan = match InitPlan::new(args) {
        Ok(p) => p,
        Err(e) => return Ok(usage(e)),
    };
    let path = &args.output;
    if path.exists() && !args.force {
        return Ok(usage(format!(
            "`{}` already exists: choose another --output FILE, or --force to overwrite it",
            path.display()
        )));
    }
    let Some(target) = plan.from else {
        write_config(path, starter::SKELETON, args.force)?;
        eprintln!(
            "wrote {}: a commented skeleton (one invariant of each common kind).\n\
             Next: point `app` at your database, edit the invariants, then `invar validate` and `invar run`.\n\
             Or start from your schema: invar init --from postgres://… --output {} --force",
            path.display(),
            path.display()
        );
        return Ok(Exit::Ok);
    };
    let schema = match cx.block_on(target.read_schema())? {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: cannot read the schema of {}: {e}",
                target.redacted()
            );
            return Ok(Exit::Automation);
        }
    };
    let spec = starter::source_spec(&target, path, &args.url_env);
    let generated = starter::generate(&schema, &spec);
    write_config(path, &generated.yaml, args.force)?;
    if !loads(path, &target, &args.url_env) {
        return Ok(Exit::Automation);
    }
    eprintln!("wrote {}: {}", path.display(), generated.summary.describe());
    print_next(path, &spec, &target);
    Ok(Exit::Ok)
}

/// The written file must load: checked with the URL's variable set, as a run would have it.
fn loads(path: &Path, target: &starter::Target, url_env: &str) -> bool {
    let url = match target {
        starter::Target::Postgres(u) | starter::Target::Mysql(u) => Some(u.clone()),
        starter::Target::Sqlite(_) => None,
    };
    let env = |name: &str| {
        if name == url_env {
            url.clone()
        } else {
            std::env::var(name).ok()
        }
    };
    match invar_config::load_with_env(path, &env) {
        Ok(_) => true,
        Err(d) => {
            eprint!("{}", d.render(stderr_color()));
            eprintln!(
                "error: `invar init` wrote a config that does not load (a bug: please report it with the schema)"
            );
            false
        }
    }
}

fn print_next(path: &Path, spec: &starter::SourceSpec, target: &starter::Target) {
    let cfg = if path == Path::new("invar.yaml") {
        String::new()
    } else {
        format!(" --config {}", path.display())
    };
    eprintln!("Next:");
    if let Some(var) = &spec.url_env {
        eprintln!(
            "  export {var}='{}'   # with the real password; never in the file",
            target.redacted()
        );
    }
    eprintln!("  invar validate{cfg}");
    eprintln!("  invar run{cfg}                 # then tune or delete what is not true");
}

/// Writes `text` to `path`: a new file unless `force` (no race with a file appearing meanwhile).
fn write_config(path: &Path, text: &str, force: bool) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn init_args(args: &[&str]) -> InitArgs {
        let argv = ["invar", "init"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Init(a) => a,
            _ => unreachable!("parsed `init`"),
        }
    }

    #[test]
    fn flags_are_checked_before_any_connection() {
        let err = InitPlan::new(&init_args(&["--from", "redis://127.0.0.1:6379"]))
            .err()
            .unwrap();
        assert!(
            err.starts_with("--from: unsupported database URL scheme `redis`"),
            "{err}"
        );
        let err = InitPlan::new(&init_args(&["--url-env", "DB-URL"]))
            .err()
            .unwrap();
        assert_eq!(
            err,
            "--url-env `DB-URL` is not an environment variable name"
        );
        assert!(
            InitPlan::new(&init_args(&["--url-env", ""]))
                .err()
                .is_some()
        );
        let plan = InitPlan::new(&init_args(&["--from", "postgres://u:pw@h/db"])).unwrap();
        assert!(matches!(plan.from, Some(starter::Target::Postgres(_))));
        assert!(InitPlan::new(&init_args(&[])).unwrap().from.is_none());
    }
}
