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
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Certificates for local development.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify a chain: names the first altered, missing, inserted or reordered record
    /// and checks signed checkpoints. Exit 0 when it holds, 1 when not, 2 on bad input.
    Verify {
        /// Hex Ed25519 public key, or a file holding it (the audit dir's `signing-key.pub`).
        #[arg(long)]
        key: Option<String>,
        /// Segment files in order, or the audit directory.
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
        Command::Audit { command: AuditCommand::Verify { key, files } } => audit_verify(key, &files),
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

fn audit_verify(key: Option<String>, files: &[PathBuf]) -> ExitCode {
    use custos::audit::verify;
    let key = match key {
        None => None,
        Some(k) => {
            let text = if std::path::Path::new(&k).is_file() { std::fs::read_to_string(&k).unwrap_or_default() } else { k };
            let text = text.trim().to_ascii_lowercase();
            if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                eprintln!("custos: --key wants 64 hex digits (an Ed25519 public key) or a file holding them");
                return ExitCode::from(2);
            }
            Some(text)
        }
    };
    let files = verify::expand(files);
    match verify::verify(&files, key.as_deref().map(str::as_bytes)) {
        Ok(r) => {
            println!(
                "ok: {} records, seq {}..{}, instance {}, {} checkpoints{}",
                r.records,
                r.first_seq,
                r.last_seq,
                r.instance,
                r.checkpoints,
                if r.signatures_checked { " (signatures verified)" } else { " (signatures NOT checked: pass --key)" }
            );
            match r.last_checkpoint {
                Some(c) if r.unsigned_tail > 0 => println!(
                    "note: {} records after the last checkpoint (seq {c}); a cut tail after it is detectable only against the checkpoint kept outside this file",
                    r.unsigned_tail
                ),
                None => println!("note: no checkpoint yet; a cut tail is detectable only against the checkpoint kept outside this file"),
                _ => {}
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("custos: audit chain FAILED verification: {f}");
            ExitCode::from(1)
        }
    }
}
