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
    /// Sessions, through a gateway's admin listener (needs an administrator token).
    Session {
        #[command(subcommand)]
        command: SessionCommand,
        /// The admin listener's base URL.
        #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// A file holding your administrator token (default: $CUSTOS_ADMIN_TOKEN).
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
    },
    /// Emergency access, through a gateway's admin listener (needs an administrator
    /// token): sealed links for when the identity provider is down, and the review queue.
    Breakglass {
        #[command(subcommand)]
        command: BreakglassCommand,
        /// The admin listener's base URL.
        #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// A file holding your administrator token (default: $CUSTOS_ADMIN_TOKEN).
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
    },
    /// casbin policies: test them like code.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Make an administrator token: prints the token (keep it) and the line for the
    /// `[admin] tokens` file (which holds only its hash).
    AdminToken {
        /// The administrator's name, as audit records will show it.
        name: String,
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
        /// Also compare with the latest checkpoint kept in Redis (detects a cut tail).
        #[arg(long)]
        redis: Option<String>,
        /// Allow a chain that starts after seq 1 (a spool whose delivered segments were
        /// collected); otherwise a missing start is a removed head.
        #[arg(long)]
        partial: bool,
        /// The stream key the Redis sink writes (`audit.redis.stream`).
        #[arg(long, default_value = "custos:audit")]
        stream: String,
        /// Segment files in order, or the audit directory.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print records as they arrive, from the Redis stream or from an audit directory.
    Tail {
        #[arg(long, conflicts_with = "dir")]
        redis: Option<String>,
        #[arg(long, default_value = "custos:audit")]
        stream: String,
        /// An audit directory (the spool) to follow instead of Redis.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Start from the oldest record instead of new ones only.
        #[arg(long)]
        from_start: bool,
    },
    /// Send dead letters again (records a receiver refused for good, kept in
    /// DIR/dead-letters/SINK/): queues them for the running gateway's sink, which
    /// delivers them like any batch and records `audit.redelivered` (or the next start
    /// does). Fix the receiver first.
    Redeliver {
        /// The audit directory (`audit.dir`).
        #[arg(long)]
        dir: PathBuf,
        /// Only this sink's (`webhook`, `otlp`, `redis`, `file`, `alert-…`); default: all.
        #[arg(long)]
        sink: Option<String>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run a cases file against a model and policy: prints each mismatch with the rule
    /// that decided it; exit 0 when all pass, 1 on a mismatch, 2 on bad input.
    Test {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        cases: PathBuf,
        /// An IdP group decided as a role, as `[policy.group_roles]` does: GROUP=ROLE
        /// (repeatable).
        #[arg(long = "group-role")]
        group_roles: Vec<String>,
        /// The engine that decides: `auto` (the one the gateway would use), `fast` (the
        /// indexed evaluator) or `casbin` (the `casbin` crate).
        #[arg(long, default_value = "auto")]
        engine: String,
    },
    /// Check a model and policy: syntax errors with file:line (exit 1), and warnings for
    /// roles nobody holds, roles without permissions, repeated rules, rules that can never
    /// match, allow rules shadowed by a deny.
    Lint {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        policy: PathBuf,
    },
}

#[derive(Subcommand)]
enum BreakglassCommand {
    /// Print a single-use emergency URL for USER on ROUTE (and, with --totp, a TOTP
    /// secret shown only now that the user must also answer with).
    Issue {
        #[arg(long)]
        user: String,
        #[arg(long)]
        route: String,
        /// The page the user lands on, the object the policy is asked about, and the
        /// record the access covers (with what is below it); default the route's path.
        #[arg(long)]
        path: Option<String>,
        /// The access covers the whole route, not only --path.
        #[arg(long)]
        whole_route: bool,
        /// How long from now the link and the access it gives last, however late it is
        /// used: 90s, 30m, 4h. The end is printed (`expires`, `access_ends`).
        #[arg(long, default_value = "1h")]
        ttl: String,
        #[arg(long)]
        totp: bool,
    },
    /// Emergency grants with their justifications (JSON).
    List {
        #[arg(long)]
        unreviewed: bool,
    },
    /// Review a grant (you may not review your own).
    Review {
        id: String,
        #[arg(long)]
        verdict: String,
        #[arg(long)]
        note: String,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// A user's live sessions (their hashes, times, client, sign-in methods).
    List {
        /// The user, as `oidc.subject_claim` names them.
        #[arg(long)]
        user: String,
    },
    /// End sessions at once, on every gateway sharing the Redis.
    Revoke {
        /// All sessions of this user.
        #[arg(long, conflicts_with = "session", required_unless_present = "session")]
        user: Option<String>,
        /// One session, by the hash `list` shows.
        #[arg(long)]
        session: Option<String>,
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
    Config::load_with(path, custos::policy::PolicyFiles::check_config).map_err(|e| {
        eprintln!("custos: invalid config: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok(cfg) => {
                // Not an error (serve makes them private), but said: until then others
                // can read who did what.
                let audit_dir = if cfg.audit.enabled { Some(cfg.audit.dir.as_path()) } else { None };
                let open = audit_dir.map(custos::audit::private::too_open).unwrap_or_default();
                for (path, mode) in open.iter().take(5) {
                    eprintln!(
                        "custos: warning: {} is mode {mode:o}, readable by others (the audit trail names people and addresses); `custos serve` makes the audit directory 0700 and its files 0600",
                        path.display()
                    );
                }
                if open.len() > 5 {
                    eprintln!("custos: warning: and {} more paths in the audit directory", open.len() - 5);
                }
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
        Command::Audit { command: AuditCommand::Verify { key, redis, partial, stream, files } } => {
            audit_verify(key, redis.as_deref(), &stream, partial, &files)
        }
        Command::Audit { command: AuditCommand::Tail { redis, stream, dir, from_start } } => {
            audit_tail(redis.as_deref(), &stream, dir.as_deref(), from_start)
        }
        Command::Audit { command: AuditCommand::Redeliver { dir, sink } } => audit_redeliver(&dir, sink.as_deref()),
        Command::AdminToken { name } => admin_token(&name),
        Command::Policy { command: PolicyCommand::Test { model, policy, cases, group_roles, engine } } => {
            policy_test(&model, &policy, &cases, &group_roles, &engine)
        }
        Command::Policy { command: PolicyCommand::Lint { model, policy } } => policy_lint(&model, &policy),
        Command::Session { command, admin, token_file } => session_command(command, &admin, token_file.as_deref()),
        Command::Breakglass { command, admin, token_file } => {
            breakglass_command(command, &admin, token_file.as_deref())
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

fn policy_test(
    model: &std::path::Path,
    policy: &std::path::Path,
    cases: &std::path::Path,
    group_roles: &[String],
    engine: &str,
) -> ExitCode {
    let mut roles = std::collections::BTreeMap::new();
    for g in group_roles {
        match g.split_once('=') {
            Some((group, role)) if !group.is_empty() && !role.is_empty() => {
                roles.insert(group.to_string(), role.to_string());
            }
            _ => {
                eprintln!("custos: --group-role wants GROUP=ROLE, got `{g}`");
                return ExitCode::from(2);
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custos: {e}");
            return ExitCode::from(1);
        }
    };
    let set = match rt.block_on(custos::policy::PolicySet::load(model, policy)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("custos: {e}");
            return ExitCode::from(2);
        }
    };
    let engine = match engine {
        "auto" => set.engine(),
        "fast" => custos::policy::Engine::Fast,
        "casbin" => custos::policy::Engine::Casbin,
        other => {
            eprintln!("custos: --engine is auto, fast or casbin, not `{other}`");
            return ExitCode::from(2);
        }
    };
    if engine == custos::policy::Engine::Fast {
        if let Some(why) = &set.fallback {
            eprintln!("custos: the fast evaluator does not cover this model: {why}");
            return ExitCode::from(2);
        }
    }
    let list = match custos::policy::cases::load(cases) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("custos: {e}");
            return ExitCode::from(2);
        }
    };
    let mismatches = custos::policy::cases::run_with(&set, &list, &roles, engine);
    for m in &mismatches {
        println!("FAIL {m}");
    }
    if mismatches.is_empty() {
        println!("ok: {} cases pass ({}, {}; {engine} engine)", list.len(), policy.display(), cases.display());
        ExitCode::SUCCESS
    } else {
        println!("{} of {} cases fail", mismatches.len(), list.len());
        ExitCode::from(1)
    }
}

fn policy_lint(model: &std::path::Path, policy: &std::path::Path) -> ExitCode {
    use custos::policy::lint::Severity;
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else { return ExitCode::from(1) };
    let findings = rt.block_on(custos::policy::lint::lint(model, policy));
    let mut errors = 0;
    for (file, f) in &findings {
        let level = if f.severity == Severity::Error {
            errors += 1;
            "error"
        } else {
            "warning"
        };
        match f.line {
            Some(l) => println!("{file}:{l}: {level}: {}", f.message),
            None => println!("{file}: {level}: {}", f.message),
        }
    }
    println!("{} errors, {} warnings", errors, findings.len() - errors);
    if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn admin_token(name: &str) -> ExitCode {
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        eprintln!("custos: the name must be one word");
        return ExitCode::from(2);
    }
    let Ok(id) = custos::session::SessionId::generate() else {
        eprintln!("custos: the system random source failed");
        return ExitCode::from(1);
    };
    let token = id.cookie_value();
    println!("token (give it to {name}; it is shown once): {token}");
    println!("line for the [admin] tokens file:           {name} {}", custos::session::sha256_hex(token.as_bytes()));
    ExitCode::SUCCESS
}

fn session_command(command: SessionCommand, admin: &str, token_file: Option<&std::path::Path>) -> ExitCode {
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let base = admin.trim_end_matches('/');
    let (method, url) = match &command {
        SessionCommand::List { user } => (reqwest::Method::GET, format!("{base}/sessions?user={}", enc(user))),
        SessionCommand::Revoke { user: Some(u), .. } => {
            (reqwest::Method::POST, format!("{base}/sessions/revoke?user={}", enc(u)))
        }
        SessionCommand::Revoke { session: Some(h), .. } => {
            (reqwest::Method::POST, format!("{base}/sessions/revoke?session={}", enc(h)))
        }
        SessionCommand::Revoke { .. } => {
            eprintln!("custos: give --user or --session");
            return ExitCode::from(2);
        }
    };
    admin_call(admin, token_file, method, &url, String::new())
}

/// `90s`, `30m`, `4h`, `1d` → seconds.
fn duration_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().ok()?;
    let mul = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mul).filter(|v| *v > 0)
}

fn breakglass_command(command: BreakglassCommand, admin: &str, token_file: Option<&std::path::Path>) -> ExitCode {
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let base = admin.trim_end_matches('/');
    let (method, url, body) = match &command {
        BreakglassCommand::Issue { user, route, path, whole_route, ttl, totp } => {
            let Some(secs) = duration_secs(ttl) else {
                eprintln!("custos: --ttl is a duration like 90s, 30m, 4h, not `{ttl}`");
                return ExitCode::from(2);
            };
            let url = format!(
                "{base}/breakglass/links?user={}&route={}&ttl_secs={secs}{}{}{}",
                enc(user),
                enc(route),
                path.as_deref().map(|p| format!("&path={}", enc(p))).unwrap_or_default(),
                if *whole_route { "&scope=route" } else { "" },
                if *totp { "&totp=1" } else { "" }
            );
            (reqwest::Method::POST, url, String::new())
        }
        BreakglassCommand::List { unreviewed } => (
            reqwest::Method::GET,
            format!("{base}/breakglass{}", if *unreviewed { "?unreviewed=1" } else { "" }),
            String::new(),
        ),
        BreakglassCommand::Review { id, verdict, note } => (
            reqwest::Method::POST,
            format!("{base}/breakglass/review?id={}&verdict={}", enc(id), enc(verdict)),
            note.clone(),
        ),
    };
    admin_call(admin, token_file, method, &url, body)
}

/// One call to the admin listener with the administrator's token; prints the answer.
fn admin_call(
    admin: &str,
    token_file: Option<&std::path::Path>,
    method: reqwest::Method,
    url: &str,
    body: String,
) -> ExitCode {
    let token = match token_file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display())),
        None => std::env::var("CUSTOS_ADMIN_TOKEN")
            .map_err(|_| "give --token-file FILE or set CUSTOS_ADMIN_TOKEN".to_string()),
    };
    let token = match token {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            eprintln!("custos: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custos: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let c = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let r =
            c.request(method, url).bearer_auth(&token).body(body).send().await.map_err(|e| format!("{admin}: {e}"))?;
        let status = r.status();
        let body = r.text().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, body))
    });
    match result {
        Ok((status, body)) if status.is_success() => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("custos: {status}: {}", body.trim());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("custos: {e}");
            ExitCode::from(1)
        }
    }
}

fn audit_verify(
    key: Option<String>,
    redis_url: Option<&str>,
    stream: &str,
    partial: bool,
    files: &[PathBuf],
) -> ExitCode {
    use custos::audit::verify;
    let key = match key {
        None => None,
        Some(k) => {
            let text =
                if std::path::Path::new(&k).is_file() { std::fs::read_to_string(&k).unwrap_or_default() } else { k };
            let text = text.trim().to_ascii_lowercase();
            if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                eprintln!("custos: --key wants 64 hex digits (an Ed25519 public key) or a file holding them");
                return ExitCode::from(2);
            }
            Some(text)
        }
    };
    let files = verify::expand(files);
    let key_hex = key.clone();
    match verify::verify_from(&files, key.as_deref().map(str::as_bytes), partial) {
        Ok(r) => {
            if let Some(url) = redis_url {
                let key = custos::audit::sinks::redis::checkpoint_key(stream, &r.instance);
                let stored: Result<std::collections::HashMap<String, String>, String> = redis::Client::open(url)
                    .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(3)))
                    .and_then(|mut c| redis::cmd("HGETALL").arg(&key).query(&mut c))
                    .map_err(|e| e.to_string());
                match stored {
                    Err(e) => {
                        eprintln!("custos: cannot read the checkpoint from Redis: {e}");
                        return ExitCode::from(2);
                    }
                    Ok(m) if m.is_empty() => {
                        eprintln!(
                            "custos: audit chain FAILED verification: Redis holds no checkpoint for instance {} under {key}",
                            r.instance
                        );
                        return ExitCode::from(1);
                    }
                    Ok(m) => {
                        let (Some(seq), Some(hash)) =
                            (m.get("seq").and_then(|s| s.parse::<u64>().ok()), m.get("hash").cloned())
                        else {
                            eprintln!("custos: audit chain FAILED verification: the checkpoint in Redis is malformed");
                            return ExitCode::from(1);
                        };
                        if let Some(k) = key_hex.as_deref() {
                            let signed = m.get("key").is_some_and(|mk| mk == k)
                                && m.get("sig").and_then(|s| hex::decode(s).ok()).is_some_and(|sig| {
                                    let msg = custos::audit::event::Checkpoint::message(&r.instance, seq, &hash);
                                    hex::decode(k).is_ok_and(|pk| {
                                        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, pk)
                                            .verify(msg.as_bytes(), &sig)
                                            .is_ok()
                                    })
                                });
                            if !signed {
                                eprintln!("custos: audit chain FAILED verification: the checkpoint in Redis is not signed by the given key");
                                return ExitCode::from(1);
                            }
                        }
                        if let Err(why) = verify::check_against_checkpoint(&r, seq, &hash) {
                            eprintln!("custos: audit chain FAILED verification: {why}");
                            return ExitCode::from(1);
                        }
                        println!("ok: matches the checkpoint kept in Redis (seq {seq})");
                    }
                }
            }
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

fn audit_redeliver(dir: &std::path::Path, sink: Option<&str>) -> ExitCode {
    if sink.is_some_and(|s| s.is_empty() || s.contains(['/', '\\']) || s.starts_with('.')) {
        eprintln!("custos: --sink is a sink's name, e.g. webhook");
        return ExitCode::from(2);
    }
    if !dir.join("instance").exists() {
        eprintln!("custos: {} is not an audit directory", dir.display());
        return ExitCode::from(2);
    }
    match custos::audit::sinks::queue_redelivery(dir, sink) {
        Ok(list) => {
            let mut any = false;
            for (sink, batches, records) in list {
                any |= batches > 0;
                println!("{sink}: {records} records in {batches} dead letters queued for redelivery");
            }
            if any {
                println!("the running gateway delivers them within seconds (else the next start does) and records audit.redelivered");
            } else {
                println!("no dead letters");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("custos: {e}");
            ExitCode::from(1)
        }
    }
}

fn audit_tail(redis_url: Option<&str>, stream: &str, dir: Option<&std::path::Path>, from_start: bool) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Some(dir) = dir {
        let start = if from_start {
            1
        } else {
            custos::audit::verify::verify_from(&custos::audit::verify::expand(&[dir.to_path_buf()]), None, true)
                .map_or(1, |r| r.last_seq.saturating_add(1))
        };
        let mut reader = custos::audit::sinks::SpoolReader::new(dir, start);
        loop {
            match reader.read(u64::MAX, 256) {
                Ok(lines) if lines.is_empty() => std::thread::sleep(std::time::Duration::from_millis(200)),
                Ok(lines) => {
                    for l in lines {
                        if out.write_all(&l.bytes).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush()).is_err()
                        {
                            return ExitCode::SUCCESS;
                        }
                    }
                }
                Err(e) => {
                    eprintln!("custos: {e}");
                    return ExitCode::from(1);
                }
            }
        }
    }
    let Some(url) = redis_url else {
        eprintln!("custos: audit tail needs --redis URL or --dir DIR");
        return ExitCode::from(2);
    };
    let mut conn = match redis::Client::open(url).and_then(|c| c.get_connection()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("custos: cannot connect to Redis: {e}");
            return ExitCode::from(2);
        }
    };
    let mut last = if from_start { "0".to_string() } else { "$".to_string() };
    loop {
        let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(5000)
            .arg("COUNT")
            .arg(256)
            .arg("STREAMS")
            .arg(stream)
            .arg(&last)
            .query(&mut conn);
        match reply {
            Ok(None) => continue,
            Ok(Some(r)) => {
                for key in r.keys {
                    for entry in key.ids {
                        if let Some(redis::Value::BulkString(b)) = entry.map.get("record") {
                            if out.write_all(b).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush()).is_err() {
                                return ExitCode::SUCCESS;
                            }
                        }
                        last = entry.id;
                    }
                }
            }
            Err(e) if e.is_timeout() => continue,
            Err(e) => {
                eprintln!("custos: {e}");
                return ExitCode::from(1);
            }
        }
    }
}
