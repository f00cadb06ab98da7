//! Cancelling a running statement upstream: a CancelRequest with the upstream's own key,
//! on a connection of its own (inside TLS unless the mode is `disable`), within the
//! upstream's timeout. The server answers nothing and closes; waiting for that close
//! means the request was read before the gateway moves on.

use std::io::ErrorKind;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::open;
use super::{bounded, BackendError, Failure, Upstream};
use crate::postgres::messages::backend_key_data::BackendKeyData;
use crate::postgres::messages::startup::Cancel;
use crate::postgres::messages::WireError;

pub async fn cancel(target: &Upstream<'_>, key: &BackendKeyData) -> Result<(), BackendError> {
    bounded(target, async {
        let mut stream = open(target).await?;
        let mut out = BytesMut::new();
        Cancel { pid: key.pid, secret: key.secret.clone() }.encode(&mut out);
        let io = |e| Failure::Protocol(WireError::Io(e));
        stream.write_all(&out).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        // The server sends nothing back; anything it does send is drained with a small
        // buffer until it closes, with or without a TLS close_notify.
        let mut sink = [0u8; 64];
        loop {
            match stream.read(&mut sink).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset) => return Ok(()),
                Err(e) => return Err(io(e)),
            }
        }
    })
    .await
}
