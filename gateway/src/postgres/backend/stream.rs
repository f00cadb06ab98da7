//! The upstream byte stream, plain or TLS, as one type that reads and writes (so a front
//! end can `tokio::io::split` it), and how it is opened: TCP with `TCP_NODELAY`, then,
//! unless TLS is disabled, an SSLRequest whose one-byte answer must be `S`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{Failure, Upstream};
use crate::postgres::messages::startup::encode_ssl_request;
use crate::postgres::messages::WireError;

#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

/// TCP to the upstream, then TLS as its mode says.
pub(super) async fn open(target: &Upstream<'_>) -> Result<Stream, Failure> {
    let mut tcp = TcpStream::connect((target.host, target.port)).await.map_err(Failure::Connect)?;
    tcp.set_nodelay(true).map_err(Failure::Connect)?;
    let Some(config) = target.tls.config() else {
        return Ok(Stream::Plain(tcp));
    };
    let mut req = BytesMut::new();
    encode_ssl_request(&mut req);
    tcp.write_all(&req).await.map_err(|e| Failure::Protocol(e.into()))?;
    // Exactly one byte: what follows `S` is the TLS handshake, and nothing the server sent
    // before it may be read as if TLS had protected it (CVE-2021-23222).
    let answer = tcp.read_u8().await.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Failure::Protocol(WireError::Truncated),
        _ => Failure::Protocol(e.into()),
    })?;
    match answer {
        b'S' => {}
        b'N' => return Err(Failure::Tls("the server does not offer TLS".into())),
        _ => return Err(Failure::Protocol(WireError::Malformed("answer to SSLRequest"))),
    }
    let name = ServerName::try_from(target.host.to_owned())
        .map_err(|_| Failure::Tls("the host is neither a DNS name nor an IP address".into()))?;
    let tls = TlsConnector::from(config.clone()).connect(name, tcp).await.map_err(|e| Failure::Tls(e.to_string()))?;
    Ok(Stream::Tls(Box::new(tls)))
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
