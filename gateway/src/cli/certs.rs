//! `custos certs dev`: development certificates (the work is in `crate::certs`).

use super::CliError;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum CertsCommand {
    /// Make a local CA and server and client certificates signed by it.
    Dev {
        #[arg(long)]
        out: PathBuf,
        /// Extra DNS name or IP for the server certificate (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

pub(super) fn run(command: CertsCommand) -> Result<(), CliError> {
    match command {
        CertsCommand::Dev { out, hosts } => {
            crate::certs::dev(&out, &hosts)?;
            println!("wrote ca.pem, server.pem, server-key.pem, client.pem, client-key.pem to {}", out.display());
            Ok(())
        }
    }
}
