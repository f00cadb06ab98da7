//! PostgreSQL for the tests: one server for the whole run ([`pg`]), Debian's own binaries
//! from `/usr/lib/postgresql/<version>/bin`, `initdb` into a temporary folder and run as
//! the `postgres` system user when the tests run as root (PostgreSQL refuses root), on a
//! free 127.0.0.1 port with TLS by a CA of its own; and fresh databases with their own
//! roles, one per test ([`PgServer::database`]), plus the real `psql` to talk to them.
//!
//! Authentication, by role name (`pg_hba.conf`): the harness's own superuser `postgres`
//! over the Unix socket in the server's private folder (`trust`: only its owner and root
//! can reach it); over TCP, roles in group `custos_md5` (the `*_md5` roles) by MD5, in
//! `custos_pw` (the `*_pw` roles) by cleartext password, and every other role by
//! SCRAM-SHA-256. TCP accepts TLS and plaintext alike, so a test chooses `sslmode`.

use super::{free_port, tool, CUSTOS};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Seconds a `psql` may run before it is killed (the machine may be loaded).
const PSQL_TIMEOUT_SECS: u64 = 120;
/// Seconds the server has to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const TEMP_PREFIX: &str = "custos-e2e-pg-";

/// The PostgreSQL server shared by every test of this run.
pub struct PgServer {
    port: u16,
    /// The server's folder: `data/`, the socket, `tls/`, `postgres.log`.
    dir: PathBuf,
}

/// One role of a [`TestDb`]: the login a client gives.
#[derive(Debug, Clone)]
pub struct PgLogin {
    pub user: String,
    pub password: String,
}

/// A database of one test's own, with its roles (cluster-wide, so prefixed): `ro`
/// (SCRAM, `SELECT` only), `admin` (SCRAM, the owner), `md5` (MD5) and `pw` (cleartext),
/// the last two `SELECT` only too. It holds `patients(id, name, mrn, dob)` with
/// [`PATIENTS`] rows of fake data. Password files for a gateway's config live as long as
/// it does.
pub struct TestDb {
    pub name: String,
    pub ro: PgLogin,
    pub admin: PgLogin,
    pub md5: PgLogin,
    pub pw: PgLogin,
    port: u16,
    ca: PathBuf,
    secrets: tempfile::TempDir,
}

/// How many rows [`PgServer::database`] puts in `patients`.
pub const PATIENTS: usize = 3;

/// The shared server, started (and its group roles made) on first use. Its processes die
/// with the test binary (`setpriv --pdeathsig`).
pub fn pg() -> &'static PgServer {
    static PG: OnceLock<PgServer> = OnceLock::new();
    PG.get_or_init(|| {
        // A missing program fails here, in the test, rather than in the thread below.
        for (name, package) in [("initdb", "postgresql"), ("postgres", "postgresql"), ("psql", "postgresql-client")] {
            tool(name, package);
        }
        tool("setpriv", "util-linux");
        tool("timeout", "coreutils");
        remove_stale_folders();
        let dir = std::env::temp_dir().join(format!("{TEMP_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the PostgreSQL folder");
        // Private: its socket lets in anyone who reaches it as the superuser.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod 0700");
        let server = PgServer { port: free_port(), dir };
        server.init();
        // Started from a thread that lives as long as the test process: the parent
        // death signal fires when the thread that spawned the server ends.
        let (tx, rx) = std::sync::mpsc::channel();
        let (dir, port) = (server.dir.clone(), server.port);
        std::thread::spawn(move || {
            let child = PgServer { port, dir }.spawn();
            tx.send(()).expect("the test thread waits");
            let _child = child;
            loop {
                std::thread::park();
            }
        });
        rx.recv().unwrap_or_else(|_| panic!("the shared PostgreSQL did not start (see above)"));
        server.wait_ready();
        server.admin_sql("postgres", "CREATE ROLE custos_md5 NOLOGIN;\nCREATE ROLE custos_pw NOLOGIN;\n");
        server
    })
}

/// Folders of earlier runs whose test process is gone (a killed run cannot clean up).
fn remove_stale_folders() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The `postgres` system user's (uid, gid) when the tests run as root; `None` otherwise
/// (the server then runs as the current user).
fn run_as() -> Option<(u32, u32)> {
    static IDS: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *IDS.get_or_init(|| {
        if std::fs::metadata("/proc/self").expect("/proc/self").uid() != 0 {
            return None;
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, "postgres"]).output().expect("run id");
            assert!(
                out.status.success(),
                "tests run as root need the `postgres` system user (Debian package postgresql)"
            );
            String::from_utf8_lossy(&out.stdout).trim().parse().expect("a numeric id")
        };
        Some((id("-u"), id("-g")))
    })
}

/// `program` as the server's user: through `setpriv` when root, with `pdeathsig` (set
/// after the user change, so it holds).
fn as_server_user(program: &Path, pdeathsig: bool) -> Command {
    let mut c = Command::new(tool("setpriv", "util-linux"));
    if pdeathsig {
        c.args(["--pdeathsig", "KILL"]);
    }
    if run_as().is_some() {
        c.args(["--reuid", "postgres", "--regid", "postgres", "--init-groups"]);
    }
    c.arg("--").arg(program);
    c
}

impl PgServer {
    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM CA that signed the server's certificate (for `localhost`, `127.0.0.1`,
    /// `::1`): `sslrootcert` for `sslmode=verify-full`, or a database's `tls.ca`.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("tls/ca.pem")
    }

    /// The server's log, for when a test needs to know what it did.
    pub fn log(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `initdb`, certificates and `pg_hba.conf`, every file owned by the server's user.
    fn init(&self) {
        let tls = self.dir.join("tls");
        let out =
            Command::new(CUSTOS).args(["certs", "dev", "--out"]).arg(&tls).output().expect("run custos certs dev");
        assert!(out.status.success(), "certs dev failed: {}", String::from_utf8_lossy(&out.stderr));
        if let Some((uid, gid)) = run_as() {
            for p in [self.dir.clone(), tls.clone(), tls.join("server.pem"), tls.join("server-key.pem")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let out = as_server_user(&tool("initdb", "postgresql"), false)
            .arg("-D")
            .arg(self.data())
            .args(["--username=postgres", "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let hba = "local all all trust\n\
                   host all +custos_md5 127.0.0.1/32 md5\n\
                   host all +custos_pw 127.0.0.1/32 password\n\
                   host all all 127.0.0.1/32 scram-sha-256\n";
        std::fs::write(self.data().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    /// Starts `postgres` (its settings on the command line), killed when the calling
    /// thread ends.
    fn spawn(&self) -> std::process::Child {
        let log = std::fs::File::create(self.log()).expect("the PostgreSQL log file");
        if let Some((uid, gid)) = run_as() {
            std::os::unix::fs::chown(self.log(), Some(uid), Some(gid)).expect("chown the log");
        }
        let tls = self.dir.join("tls");
        let settings = [
            "listen_addresses=127.0.0.1".to_string(),
            format!("port={}", self.port),
            format!("unix_socket_directories={}", self.dir.display()),
            "ssl=on".into(),
            format!("ssl_cert_file={}", tls.join("server.pem").display()),
            format!("ssl_key_file={}", tls.join("server-key.pem").display()),
            // Speed over durability: the data dies with the run.
            "fsync=off".into(),
            "synchronous_commit=off".into(),
            "full_page_writes=off".into(),
            "max_connections=300".into(),
            // Each login's method in the log (the harness's own test reads it).
            "log_connections=on".into(),
            "shared_buffers=64MB".into(),
        ];
        let mut c = as_server_user(&tool("postgres", "postgresql"), true);
        c.arg("-D").arg(self.data());
        for s in &settings {
            c.arg("-c").arg(s);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting postgres: {e}"))
    }

    /// Until the server answers a query (it accepts connections before it is ready).
    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = self.admin_psql("postgres", "SELECT 1;\n");
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start on port {}: {} (log: {})",
                self.port,
                String::from_utf8_lossy(&out.stderr),
                self.log().display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `psql` with `-X -A`, then `args` (e.g. `-v ON_ERROR_STOP=1`, `-c …`, `-t`), then
    /// `-d conninfo` (`"host=127.0.0.1 port=… dbname=… user=… password=…
    /// sslmode=…"`, or a URI), to be run by the caller (e.g. with a `HOME` of its own for
    /// `~/.pgpass`). No `PG*` variable of the test's environment leaks in;
    /// `PGCONNECT_TIMEOUT` is 10 s, and the whole run is killed after
    /// [`PSQL_TIMEOUT_SECS`].
    pub fn psql_command(&self, conninfo: &str, args: &[&str]) -> Command {
        let mut c = Command::new(tool("timeout", "coreutils"));
        c.args(["-s", "KILL", &PSQL_TIMEOUT_SECS.to_string()]).arg(tool("psql", "postgresql-client"));
        c.args(["-X", "-A"]).args(args).args(["-d", conninfo]);
        for (k, _) in std::env::vars_os() {
            if k.to_str().is_some_and(|k| k.starts_with("PG")) {
                c.env_remove(k);
            }
        }
        c.env("PGCONNECT_TIMEOUT", "10");
        c
    }

    /// Runs [`PgServer::psql_command`], with `stdin` as its input (else none). Blocking:
    /// call it from a test thread, not from inside a server the test runs.
    pub fn psql(&self, conninfo: &str, args: &[&str], stdin: Option<&str>) -> Output {
        run(self.psql_command(conninfo, args), stdin)
    }

    /// `psql` as the superuser over the server's private socket, `sql` on its input.
    fn admin_psql(&self, db: &str, sql: &str) -> Output {
        let conninfo = format!("host={} port={} user=postgres dbname={db}", self.dir.display(), self.port);
        self.psql(&conninfo, &["-q", "-t", "-v", "ON_ERROR_STOP=1"], Some(sql))
    }

    /// Runs `sql` (statements one by one, so `CREATE DATABASE` works) in database `db` as
    /// the superuser; returns the unaligned, tuples-only output. Fails the test on an
    /// error.
    pub fn admin_sql(&self, db: &str, sql: &str) -> String {
        let out = self.admin_psql(db, sql);
        assert!(
            out.status.success(),
            "admin SQL in {db} failed: {}\n{sql}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A fresh database named `prefix` (lower-case letters, digits, `_`; one test's own)
    /// with roles `<prefix>_ro`, `_admin`, `_md5` and `_pw`, random passwords, and the
    /// synthetic `patients` table. A prefix already used fails the test.
    pub fn database(&self, prefix: &str) -> TestDb {
        assert!(
            prefix.starts_with(|c: char| c.is_ascii_lowercase())
                && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "database prefix `{prefix}`: lower-case letters, digits and `_`, a letter first"
        );
        let login = |role: &str| PgLogin {
            user: format!("{prefix}_{role}"),
            password: uuid::Uuid::new_v4().simple().to_string(),
        };
        let (ro, admin, md5, pw) = (login("ro"), login("admin"), login("md5"), login("pw"));
        let create =
            |l: &PgLogin, extra: &str| format!("CREATE ROLE {} LOGIN PASSWORD '{}'{extra};\n", l.user, l.password);
        let roles = [
            create(&admin, ""),
            create(&ro, ""),
            // Stored as MD5, else the `md5` method quietly does SCRAM.
            "SET password_encryption = 'md5';\n".into(),
            create(&md5, " IN ROLE custos_md5"),
            "RESET password_encryption;\n".into(),
            create(&pw, " IN ROLE custos_pw"),
            format!("CREATE DATABASE {prefix} OWNER {};\n", admin.user),
            format!("REVOKE CONNECT ON DATABASE {prefix} FROM PUBLIC;\n"),
            format!("GRANT CONNECT ON DATABASE {prefix} TO {}, {}, {}, {};\n", admin.user, ro.user, md5.user, pw.user),
        ];
        self.admin_sql("postgres", &roles.concat());
        let table = format!(
            "SET ROLE {admin};\n\
             CREATE TABLE patients (id int PRIMARY KEY, name text, mrn text, dob date);\n\
             INSERT INTO patients VALUES (1, 'Test Patient One', 'MRN-TEST-0001', '1970-01-01'),\n\
             (2, 'Test Patient Two', 'MRN-TEST-0002', '1980-02-02'), (3, 'Test Patient Three', 'MRN-TEST-0003', '1990-03-03');\n\
             GRANT SELECT ON patients TO {ro}, {md5}, {pw};\n\
             RESET ROLE;\n",
            admin = admin.user,
            ro = ro.user,
            md5 = md5.user,
            pw = pw.user,
        );
        self.admin_sql(prefix, &table);
        let secrets = tempfile::tempdir().expect("a folder for password files");
        for l in [&ro, &admin, &md5, &pw] {
            std::fs::write(secrets.path().join(&l.user), &l.password).expect("a password file");
        }
        TestDb { name: prefix.to_string(), ro, admin, md5, pw, port: self.port, ca: self.ca_pem(), secrets }
    }
}

impl TestDb {
    /// [`TestDb::toml`] with upstream TLS `verify-full` against the harness CA.
    pub fn toml_verify_full(&self, gateway_db_name: &str) -> String {
        self.toml(gateway_db_name)
            .replace("mode = \"disable\"\n", &format!("mode = \"verify-full\"\nca = \"{}\"\n", self.ca.display()))
    }

    /// A libpq conninfo for `login` straight to the server (not through a gateway), with
    /// `sslmode` (`disable`, `require`, `verify-full` with the harness CA…).
    pub fn conninfo(&self, login: &PgLogin, sslmode: &str) -> String {
        let root =
            if sslmode.starts_with("verify") { format!(" sslrootcert={}", self.ca.display()) } else { String::new() };
        format!(
            "host=127.0.0.1 port={} dbname={} user={} password={} sslmode={sslmode}{root}",
            self.port, self.name, login.user, login.password
        )
    }

    /// A `[[databases]]` block named `gateway_db_name` for this database: upstream TLS
    /// off, roles `readers` → `<prefix>_ro` and `dba` → `<prefix>_admin`, their passwords
    /// from files (absolute paths) that live as long as this value.
    pub fn toml(&self, gateway_db_name: &str) -> String {
        let pw = |l: &PgLogin| self.secrets.path().join(&l.user).display().to_string();
        format!(
            "[[databases]]\nname = \"{gateway_db_name}\"\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"{}\"\n\
             [databases.tls]\nmode = \"disable\"\n\
             [databases.roles]\n\
             readers = {{ user = \"{}\", password = {{ file = \"{}\" }} }}\n\
             dba = {{ user = \"{}\", password = {{ file = \"{}\" }} }}\n",
            self.port,
            self.name,
            self.ro.user,
            pw(&self.ro),
            self.admin.user,
            pw(&self.admin),
        )
    }
}

/// Runs `c` to the end with `stdin` written to it (and closed).
fn run(mut c: Command, stdin: Option<&str>) -> Output {
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().unwrap_or_else(|e| panic!("starting psql: {e}"));
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let text = text.to_string();
        // A thread, so a large input cannot deadlock against unread output.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    child.wait_with_output().expect("wait for psql")
}
