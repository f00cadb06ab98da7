//! `/.custos/healthz` (the process answers) and `/.custos/readyz` (its dependencies
//! answer). Neither is recorded in the audit trail.

use super::{Denial, Reply};
use crate::http::Gateway;

impl Gateway {
    /// `/.custos/healthz`.
    pub(in crate::http) fn healthz(&self) -> Result<Reply, Denial> {
        Ok(Reply::text(200, bytes::Bytes::from_static(b"ok\n")))
    }

    /// `/.custos/readyz`: each dependency, and 503 when protected routes cannot be served.
    pub(in crate::http) async fn readyz(&self) -> Result<Reply, Denial> {
        let mut body = String::new();
        let mut ready = true;
        if let Some(auth) = self.auth() {
            let (redis, idp) = tokio::join!(auth.store.ping(), auth.identity.probe());
            match redis {
                Ok(()) => body.push_str("redis: ok\n"),
                Err(_) => {
                    ready = false;
                    body.push_str("redis: down (protected routes answer 503)\n");
                }
            }
            // The provider being down stops new sign-ins only; sessions go on, so the
            // instance stays in its load balancer.
            body.push_str(if idp {
                "idp: ok\n"
            } else {
                "idp: down (new sign-ins fail; existing sessions continue)\n"
            });
        }
        // Each database answers on its port: down stops its connections only.
        let probes = self.databases.iter().map(|(name, host, port)| async move {
            let up = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await;
            (name, matches!(up, Ok(Ok(_))))
        });
        for (name, up) in futures_util::future::join_all(probes).await {
            body.push_str(&if up {
                format!("database {name}: ok\n")
            } else {
                format!("database {name}: down (connections to it fail)\n")
            });
        }
        body.insert_str(0, if ready { "ready\n" } else { "not ready\n" });
        Ok(Reply::text(if ready { 200 } else { 503 }, body))
    }
}
