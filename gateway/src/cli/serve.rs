//! `custos serve` and `custos check`: load and validate the config, then run or report.

use super::CliError;
use crate::config::Config;
use std::path::Path;

/// How many too-open audit paths `check` names before it only counts the rest.
const SHOWN_OPEN_PATHS: usize = 5;

/// The config, validated, with its policy files loaded and their cases run.
fn load(path: &Path) -> Result<Config, CliError> {
    Ok(Config::load_with(path, crate::policy::PolicyFiles::check_config)?)
}

pub(super) fn check(path: &Path) -> Result<(), CliError> {
    let cfg = load(path)?;
    // Not an error (serve makes them private), but said: until then others can read who
    // did what.
    let audit_dir = if cfg.audit.enabled { Some(cfg.audit.dir.as_path()) } else { None };
    let open = audit_dir.map(crate::audit::private::too_open).unwrap_or_default();
    for (path, mode) in open.iter().take(SHOWN_OPEN_PATHS) {
        eprintln!(
            "custos: warning: {} is mode {mode:o}, readable by others (the audit trail names people and addresses); `custos serve` makes the audit directory 0700 and its files 0600",
            path.display()
        );
    }
    if open.len() > SHOWN_OPEN_PATHS {
        eprintln!("custos: warning: and {} more paths in the audit directory", open.len() - SHOWN_OPEN_PATHS);
    }
    println!("{}: ok ({} routes)", path.display(), cfg.routes.len());
    Ok(())
}

pub(super) fn serve(path: &Path) -> Result<(), CliError> {
    let mut cfg = load(path)?;
    cfg.resolve_upstreams()?;
    crate::telemetry::init(&cfg.log);
    Ok(crate::server::run(cfg)?)
}
