//! The upstreams the gateway is tested in front of: the demo ePHI service (in-process,
//! recording every request it receives), a silent recorder of raw connections and a
//! WebSocket echo; and the repository's example policies.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn demo() -> demo_ephi::Demo {
    demo_ephi::start("127.0.0.1:0".parse().unwrap(), true, None).await.expect("start the demo upstream")
}

pub fn policies() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

#[derive(Default)]
struct Conn {
    bytes: Vec<u8>,
    closed: bool,
}

/// A silent upstream that records its connections: a raw TCP listener that never
/// answers and keeps, per connection, every byte it received and whether the gateway
/// closed it.
pub struct Recorder {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<Mutex<Conn>>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<Mutex<Conn>>>>> = Arc::default();
        let all = conns.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let conn = Arc::new(Mutex::new(Conn::default()));
                all.lock().unwrap().push(conn.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 16384];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => conn.lock().unwrap().bytes.extend_from_slice(&buf[..n]),
                        }
                    }
                    conn.lock().unwrap().closed = true;
                });
            }
        });
        Recorder { addr, conns, task }
    }

    /// What the connection whose request line names `path` received so far, and whether
    /// the gateway closed it.
    pub fn conn(&self, path: &str) -> Option<(Vec<u8>, bool)> {
        let line = format!("POST {path} HTTP/1.1\r");
        self.conns.lock().unwrap().iter().find_map(|c| {
            let c = c.lock().unwrap();
            let head = c.bytes.split(|&b| b == b'\n').next().unwrap_or(b"");
            (head == line.as_bytes()).then(|| (c.bytes.clone(), c.closed))
        })
    }

    /// The connection whose request line names `path`, once the gateway has closed it
    /// (panics after 10 s): what it received.
    pub async fn closed_conn(&self, path: &str) -> Vec<u8> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.conn(path) {
                Some((bytes, true)) => return bytes,
                state => assert!(
                    Instant::now() < deadline,
                    "{path}: the upstream connection was not closed: {:?}",
                    state.map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the `n`th connection (from 0) received so far; nothing if it is not open yet.
    pub fn received(&self, n: usize) -> Vec<u8> {
        self.conns.lock().unwrap().get(n).map(|c| c.lock().unwrap().bytes.clone()).unwrap_or_default()
    }

    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap().len()
    }
}

/// A WebSocket upstream stand-in: answers the handshake with `101`, then echoes raw bytes
/// (the gateway does not read frames, so bytes are enough). It keeps the request heads it
/// received and how many tunnels it saw closed.
#[derive(Clone, Default)]
pub struct Echo {
    pub heads: Arc<Mutex<Vec<String>>>,
    pub closed: Arc<std::sync::atomic::AtomicUsize>,
}

pub async fn echo_upstream() -> (SocketAddr, Echo) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let echo = Echo::default();
    let e = echo.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let e = e.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                e.heads.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                    .await;
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                e.closed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
    });
    (addr, echo)
}
