//! `demo-ephi --listen 127.0.0.1:9000`: the demo ePHI service on its own.

use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = "127.0.0.1:9000".parse().expect("static address");
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(addr) => listen = addr,
                Err(_) => {
                    eprintln!("demo-ephi: --listen wants IP:PORT, got {v}");
                    std::process::exit(2);
                }
            },
            _ => {
                eprintln!("usage: demo-ephi [--listen IP:PORT]");
                std::process::exit(2);
            }
        }
    }
    match demo_ephi::start(listen, false, None).await {
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
