//! The `custos` command line.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use custos::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Certificates for local development.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make a local CA and server and client certificates signed by it.
    Dev {
        #[arg(long)]
        out: PathBuf,
        /// Extra DNS name or IP for the server certificate (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("custos: invalid config: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok(cfg) => {
                println!("{}: ok ({} routes)", config.display(), cfg.routes.len());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve { config } => {
            let mut cfg = match load(&config) {
                Ok(cfg) => cfg,
                Err(code) => return code,
            };
            if let Err(e) = cfg.resolve_upstreams() {
                eprintln!("custos: invalid config: {e}");
                return ExitCode::from(2);
            }
            custos::telemetry::init(&cfg.log);
            match custos::server::run(cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("custos: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Certs { command: CertsCommand::Dev { out, hosts } } => match custos::certs::dev(&out, &hosts) {
            Ok(()) => {
                println!("wrote ca.pem, server.pem, server-key.pem, client.pem, client-key.pem to {}", out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("custos: {e}");
                ExitCode::from(1)
            }
        },
    }
}
