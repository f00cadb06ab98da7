//! The upstream connection of a signed-in client: opened as the person's database role
//! with the credentials in `[databases.roles]`, `application_name` naming the person
//! (their client's own name after it), the database's `statement_timeout`, and the
//! client's display settings; plus what it takes to cancel its running statement.

use crate::config::{Database, DbRole, DbTlsMode};
use crate::postgres::backend::{self, BackendError, ClientCert, TlsMode, UpstreamTls};
use crate::postgres::messages::backend_key_data::BackendKeyData;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// A database's TLS side, built once at start-up.
pub fn tls_of(db: &Database) -> Result<Arc<UpstreamTls>, String> {
    let mode = match db.tls.mode {
        DbTlsMode::Disable => TlsMode::Disable,
        DbTlsMode::Require => TlsMode::Require,
        DbTlsMode::VerifyFull => TlsMode::VerifyFull,
    };
    let client = db.tls.client.as_ref().map(|(chain, key)| ClientCert { chain: chain.clone(), key: key.clone_key() });
    UpstreamTls::new(mode, db.tls.ca.clone(), client)
        .map(Arc::new)
        .map_err(|e| format!("databases.{}.tls: {e}", db.name))
}

/// An open upstream connection, ready for statements.
pub struct Upstream {
    pub stream: backend::Stream,
    /// Bytes the upstream sent after its first ReadyForQuery (none, normally).
    pub buffered: BytesMut,
    params: Vec<Bytes>,
    pub cancel: Arc<CancelHandle>,
}

impl Upstream {
    /// The upstream's ParameterStatus messages, as it sent them.
    pub fn parameter_messages(&self) -> impl Iterator<Item = &Bytes> {
        self.params.iter()
    }

    pub fn cancel_target(&self) -> Arc<CancelHandle> {
        self.cancel.clone()
    }
}

/// Cancels the running statement of one upstream connection.
pub struct CancelHandle {
    host: String,
    port: u16,
    dbname: String,
    tls: Arc<UpstreamTls>,
    timeout: std::time::Duration,
    key: Option<BackendKeyData>,
}

impl CancelHandle {
    pub async fn cancel(&self) {
        let Some(key) = &self.key else { return };
        let target = backend::Upstream {
            host: &self.host,
            port: self.port,
            dbname: &self.dbname,
            user: "",
            password: "",
            tls: &self.tls,
            params: &[],
            timeout: self.timeout,
        };
        if let Err(e) = backend::cancel(&target, key).await {
            tracing::warn!(error = %e, "could not send a cancel request to the database");
        }
    }
}

/// Why the upstream connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Backend(BackendError),
    #[error("the password of the database role is not UTF-8")]
    Password,
}

impl OpenError {
    /// The database refused (authentication, startup) rather than being unreachable.
    pub fn refused(&self) -> bool {
        match self {
            OpenError::Backend(e) => matches!(
                e.kind,
                backend::Failure::Refused { .. }
                    | backend::Failure::AuthMethod(_)
                    | backend::Failure::BadServerSignature
            ),
            OpenError::Password => true,
        }
    }
}

/// The `application_name` upstream: `custos:<person>`, then the client's own name.
/// Printable ASCII only (PostgreSQL would turn the rest into `?`), within its 63 bytes.
pub fn application_name(subject: &str, client_app: Option<&str>) -> String {
    let mut name = format!("custos:{subject}");
    if let Some(app) = client_app {
        name.push('/');
        name.push_str(app);
    }
    name.retain(|c| c.is_ascii_graphic() || c == ' ');
    name.truncate(63);
    name
}

/// Opens the upstream connection for `subject` as `role`.
pub async fn open(
    db: &Database,
    tls: &Arc<UpstreamTls>,
    role: &DbRole,
    subject: &str,
    client_app: Option<&str>,
    passed: &[(String, String)],
) -> Result<Upstream, OpenError> {
    let password = std::str::from_utf8(role.password.expose()).map_err(|_| OpenError::Password)?;
    let mut params = vec![
        ("application_name".to_string(), application_name(subject, client_app)),
        ("client_encoding".to_string(), "UTF8".to_string()),
    ];
    if let Some(t) = db.limits.statement_timeout {
        params.push(("options".to_string(), format!("-c statement_timeout={}", t.as_millis())));
    }
    params.extend(passed.iter().cloned());
    let target = backend::Upstream {
        host: &db.host,
        port: db.port,
        dbname: &db.dbname,
        user: &role.user,
        password,
        tls,
        params: &params,
        timeout: db.limits.connect_timeout,
    };
    let b = backend::connect(&target).await.map_err(OpenError::Backend)?;
    let cancel = Arc::new(CancelHandle {
        host: db.host.clone(),
        port: db.port,
        dbname: db.dbname.clone(),
        tls: tls.clone(),
        timeout: db.limits.connect_timeout,
        key: b.key,
    });
    Ok(Upstream {
        stream: b.stream,
        buffered: b.buffered,
        params: b.params.into_iter().map(|p| p.raw).collect(),
        cancel,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_application_name_names_the_person_first() {
        assert_eq!(super::application_name("alice", Some("psql")), "custos:alice/psql");
        assert_eq!(super::application_name("alice", None), "custos:alice");
        assert_eq!(super::application_name("alice", Some("évil\napp")), "custos:alice/vilapp");
        assert_eq!(super::application_name(&"a".repeat(100), None).len(), 63);
    }
}
