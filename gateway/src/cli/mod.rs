//! The `custos` command line: the argument schema (clap derive), one file per command
//! group, and the one place a command's error becomes a message and an exit code.
//!
//! Every command returns `Result<(), CliError>`; [`main`] prints the error once as
//! `custos: …` and maps it to the exit code: 2 for bad input (a config, a flag, a file
//! that is not what it should be), 1 for a command that ran and failed.

mod admin;
mod audit;
mod certs;
mod db;
mod policy;
mod serve;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "custos", version, about = "Identity-aware access gateway for services that hold ePHI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and exit (0 when valid).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Certificates for local development.
    Certs {
        #[command(subcommand)]
        command: certs::CertsCommand,
    },
    /// Sessions, through a gateway's admin listener (needs an administrator token).
    Session {
        #[command(subcommand)]
        command: admin::SessionCommand,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Emergency access, through a gateway's admin listener (needs an administrator
    /// token): sealed links for when the identity provider is down, and the review queue.
    Breakglass {
        #[command(subcommand)]
        command: admin::BreakglassCommand,
        #[command(flatten)]
        admin: admin::AdminArgs,
    },
    /// Databases through the gateway: `custos db login DATABASE` signs you in in the
    /// browser and saves a database token for psql.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// casbin policies: test them like code.
    Policy {
        #[command(subcommand)]
        command: policy::PolicyCommand,
    },
    /// Make an administrator token: prints the token (keep it) and the line for the
    /// `[admin] tokens` file (which holds only its hash).
    AdminToken {
        /// The administrator's name, as audit records will show it.
        name: String,
    },
}

/// Why a command failed. The message is printed after `custos: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config file does not load or validate (exit 2).
    #[error("invalid config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// A model or policy file does not load (exit 2).
    #[error("{0}")]
    Policy(#[from] crate::policy::PolicyError),
    /// A flag, an argument or an input file is not what the command needs (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The gateway could not start or stopped on an error (exit 1).
    #[error("{0}")]
    Server(#[from] crate::server::ServerError),
    /// The development certificates could not be made (exit 1).
    #[error("{0}")]
    Certs(#[from] crate::certs::CertsError),
    /// The audit chain does not hold (exit 1).
    #[error("audit chain FAILED verification: {0}")]
    Unverified(String),
    /// The command ran and failed (exit 1).
    #[error("{0}")]
    Failed(String),
    /// The command has printed why it failed (a test's mismatches, lint errors) (exit 1).
    #[error("")]
    Reported,
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Policy(_) | CliError::Usage(_) => 2,
            CliError::Server(_)
            | CliError::Certs(_)
            | CliError::Unverified(_)
            | CliError::Failed(_)
            | CliError::Reported => 1,
        }
    }
}

/// A command's failure, said as `Failed` (exit 1).
fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

/// Runs a future on a runtime of its own: commands are short and single-threaded.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, CliError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(failed)?;
    Ok(rt.block_on(f))
}

/// Parses the command line, runs the command and maps its outcome to the exit code.
pub fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, CliError::Reported) {
                eprintln!("custos: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Check { config } => serve::check(&config),
        Command::Serve { config } => serve::serve(&config),
        Command::Audit { command } => audit::run(command),
        Command::Certs { command } => certs::run(command),
        Command::Policy { command } => policy::run(command),
        Command::Db { command } => db::run(command),
        Command::Session { command, admin } => admin::session(command, &admin),
        Command::Breakglass { command, admin } => admin::breakglass(command, &admin),
        Command::AdminToken { name } => admin::admin_token(&name),
    }
}
