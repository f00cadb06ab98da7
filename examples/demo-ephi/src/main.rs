//! `demo-ephi --listen 127.0.0.1:9000 [--jwks http://127.0.0.1:8080/.custos/jwks.json]`:
//! the demo ePHI service on its own; with `--jwks`, `/whoami` verifies the gateway's
//! identity assertion.

use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = "127.0.0.1:9000".parse().expect("static address");
    let mut jwks = None;
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(addr) => listen = addr,
                Err(_) => {
                    eprintln!("demo-ephi: --listen wants IP:PORT, got {v}");
                    std::process::exit(2);
                }
            },
            ("--jwks", Some(v)) => jwks = Some(v),
            _ => {
                eprintln!("usage: demo-ephi [--listen IP:PORT] [--jwks URL of the gateway's /.custos/jwks.json]");
                std::process::exit(2);
            }
        }
    }
    match demo_ephi::start_verifying(listen, false, None, jwks).await {
        Ok(demo) => {
            eprintln!("demo-ephi listening on http://{}", demo.addr);
            std::future::pending::<()>().await;
        }
        Err(e) => {
            eprintln!("demo-ephi: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    }
}
