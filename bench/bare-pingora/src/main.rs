//! `bare-pingora LISTEN UPSTREAM`: a pingora proxy that forwards everything to one
//! upstream and does nothing else, built and configured like Custos (fat LTO, mimalloc,
//! one thread, no work stealing, pool 256). The benchmark's floor for Custos.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare(SocketAddr);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (listen, upstream) = match (args.get(1), args.get(2).and_then(|u| u.parse().ok())) {
        (Some(l), Some(u)) => (l.clone(), u),
        _ => {
            eprintln!("usage: bare-pingora LISTEN UPSTREAM_IP:PORT");
            std::process::exit(2);
        }
    };
    let conf = ServerConf { threads: 1, work_stealing: false, upstream_keepalive_pool_size: 256, ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora::proxy::http_proxy_service(&server.configuration, Bare(upstream));
    svc.add_tcp(&listen);
    server.add_service(svc);
    server.run_forever();
}
