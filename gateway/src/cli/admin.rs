//! `custos session …`, `custos breakglass …` (calls to a gateway's admin listener with an
//! administrator token) and `custos admin-token` (makes one).

use super::{block_on, failed, CliError};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

/// Where the admin listener is and how to prove you are an administrator.
#[derive(Args)]
pub(super) struct AdminArgs {
    /// The admin listener's base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:9090")]
    admin: String,
    /// A file holding your administrator token (default: $CUSTOS_ADMIN_TOKEN).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(super) enum SessionCommand {
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
pub(super) enum BreakglassCommand {
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
        #[arg(long, value_enum)]
        verdict: Verdict,
        #[arg(long)]
        note: String,
    },
}

/// A review's verdict, as the admin listener takes it.
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum Verdict {
    Justified,
    Unjustified,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Justified => "justified",
            Verdict::Unjustified => "unjustified",
        }
    }
}

fn enc(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

pub(super) fn session(command: SessionCommand, admin: &AdminArgs) -> Result<(), CliError> {
    let base = admin.admin.trim_end_matches('/');
    let (method, url) = match &command {
        SessionCommand::List { user } => (reqwest::Method::GET, format!("{base}/sessions?user={}", enc(user))),
        SessionCommand::Revoke { user: Some(u), .. } => {
            (reqwest::Method::POST, format!("{base}/sessions/revoke?user={}", enc(u)))
        }
        SessionCommand::Revoke { session: Some(h), .. } => {
            (reqwest::Method::POST, format!("{base}/sessions/revoke?session={}", enc(h)))
        }
        SessionCommand::Revoke { .. } => return Err(CliError::Usage("give --user or --session".into())),
    };
    call(admin, method, &url, String::new())
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

pub(super) fn breakglass(command: BreakglassCommand, admin: &AdminArgs) -> Result<(), CliError> {
    let base = admin.admin.trim_end_matches('/');
    let (method, url, body) = match command {
        BreakglassCommand::Issue { user, route, path, whole_route, ttl, totp } => {
            let Some(secs) = duration_secs(&ttl) else {
                return Err(CliError::Usage(format!("--ttl is a duration like 90s, 30m, 4h, not `{ttl}`")));
            };
            let url = format!(
                "{base}/breakglass/links?user={}&route={}&ttl_secs={secs}{}{}{}",
                enc(&user),
                enc(&route),
                path.as_deref().map(|p| format!("&path={}", enc(p))).unwrap_or_default(),
                if whole_route { "&scope=route" } else { "" },
                if totp { "&totp=1" } else { "" }
            );
            (reqwest::Method::POST, url, String::new())
        }
        BreakglassCommand::List { unreviewed } => (
            reqwest::Method::GET,
            format!("{base}/breakglass{}", if unreviewed { "?unreviewed=1" } else { "" }),
            String::new(),
        ),
        BreakglassCommand::Review { id, verdict, note } => (
            reqwest::Method::POST,
            format!("{base}/breakglass/review?id={}&verdict={}", enc(&id), verdict.as_str()),
            note,
        ),
    };
    call(admin, method, &url, body)
}

/// The administrator's token, from `--token-file` or `$CUSTOS_ADMIN_TOKEN`.
fn token(token_file: Option<&Path>) -> Result<String, CliError> {
    let token = match token_file {
        Some(f) => {
            std::fs::read_to_string(f).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", f.display())))?
        }
        None => std::env::var("CUSTOS_ADMIN_TOKEN")
            .map_err(|_| CliError::Usage("give --token-file FILE or set CUSTOS_ADMIN_TOKEN".into()))?,
    };
    Ok(token.trim().to_string())
}

/// One call to the admin listener with the administrator's token; prints the answer.
fn call(admin: &AdminArgs, method: reqwest::Method, url: &str, body: String) -> Result<(), CliError> {
    let token = token(admin.token_file.as_deref())?;
    let (status, body) = block_on(async {
        let c = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().map_err(failed)?;
        let r = c
            .request(method, url)
            .bearer_auth(&token)
            .body(body)
            .send()
            .await
            .map_err(|e| CliError::Failed(format!("{}: {e}", admin.admin)))?;
        let status = r.status();
        let body = r.text().await.map_err(failed)?;
        Ok::<_, CliError>((status, body))
    })??;
    if !status.is_success() {
        return Err(CliError::Failed(format!("{status}: {}", body.trim())));
    }
    print!("{body}");
    Ok(())
}

pub(super) fn admin_token(name: &str) -> Result<(), CliError> {
    if name.is_empty() || name.chars().any(char::is_whitespace) {
        return Err(CliError::Usage("the name must be one word".into()));
    }
    let id = crate::session::SessionId::generate()
        .map_err(|_| CliError::Failed("the system random source failed".into()))?;
    let token = id.cookie_value();
    println!("token (give it to {name}; it is shown once): {token}");
    println!("line for the [admin] tokens file:           {name} {}", crate::session::sha256_hex(token.as_bytes()));
    Ok(())
}
