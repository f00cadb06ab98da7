//! redis-server for the tests: the one shared by the run, and servers of a test's own
//! (TLS, ACL users, persistence), killed with the thread that started them.

use super::{free_port, tool, wait_for_port};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// A redis-server on `port`, killed when the thread that started it ends (setpriv
/// --pdeathsig fires on the parent *thread*).
pub fn start_redis(port: u16) -> RedisServer {
    start_redis_with(port, &["--port".into(), port.to_string(), "--protected-mode".into(), "no".into()])
}
/// A running redis-server, stopped when dropped.
pub struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Redis shared by the tests of this run; tests keep apart by key prefixes.
pub fn redis_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        // A missing program fails here, in the test, rather than in the thread below.
        tool("setpriv", "util-linux");
        tool("redis-server", "redis-server");
        // Started from a thread that lives as long as the test process.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let port = free_port();
            let _child = start_redis(port);
            tx.send(port).unwrap();
            loop {
                std::thread::park();
            }
        });
        let port = rx.recv().unwrap_or_else(|_| panic!("the shared redis-server did not start (see above)"));
        format!("redis://127.0.0.1:{port}/")
    })
}

/// Every entry of a stream: (id field, record field).
pub fn stream_entries(url: &str, stream: &str) -> Vec<(String, String)> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let reply: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query(&mut c).unwrap();
    reply
        .ids
        .into_iter()
        .map(|e| {
            let get = |k: &str| match e.map.get(k) {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                other => panic!("field {k}: {other:?}"),
            };
            (get("id"), get("record"))
        })
        .collect()
}
/// A redis-server with `args` (port, TLS, ACL users…) after in-memory defaults;
/// `ready_port` is where it accepts.
pub fn start_redis_with(ready_port: u16, args: &[String]) -> RedisServer {
    let child = Command::new(tool("setpriv", "util-linux"))
        .args(["--pdeathsig", "KILL", "--"])
        .arg(tool("redis-server", "redis-server"))
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting redis-server: {e}"));
    wait_for_port(ready_port, "redis-server", Duration::from_secs(30));
    RedisServer(child)
}

/// A redis-server on `port` that keeps its data in `dir` (append-only file, fsync per
/// write), so a restart finds the sessions it had.
pub fn start_redis_persistent(port: u16, dir: &Path) -> RedisServer {
    let args =
        ["--port", &port.to_string(), "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--dir".to_string(), dir.display().to_string()])
            .collect::<Vec<_>>();
    start_redis_with(port, &args)
}
