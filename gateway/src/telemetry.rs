//! Logs through `tracing`, JSON or pretty by config; pingora's own `log` records are
//! routed into the same subscriber. `RUST_LOG` overrides `log.level`.

use crate::config::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

pub fn init(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log that cannot be written (a full disk) must not take the gateway down:
    // tracing-subscriber would otherwise report the failed write with `eprintln!`,
    // which panics when stderr itself is the file that cannot be written.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false);
    let result = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    if let Err(e) = result {
        eprintln!("custos: logging was already initialised: {e}");
    }
}
