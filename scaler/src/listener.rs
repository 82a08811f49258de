//! Accepting connections without letting callers exhaust the process: at
//! most `max_connections` open at once per listener (the next caller waits
//! in the kernel's backlog until one closes), a connection that sends
//! nothing within FIRST_BYTE_TIMEOUT is closed, and a pause after a failed
//! accept (no file descriptors left) instead of a busy loop that would
//! starve the samplers.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Pause after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);

/// A caller that has sent nothing this long after connecting is dropped:
/// KEDA and Prometheus speak at once.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted connection holding its place under the cap until dropped.
pub struct Connection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Until the first byte arrives: when the caller's time is up.
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Connection {
    pub fn peer(&self) -> io::Result<std::net::SocketAddr> {
        self.stream.peer_addr()
    }
}

/// Connections of `listener`, at most `max_connections` open at once, with
/// Nagle off (an answer is one small frame, sent at once).
pub fn incoming(
    listener: TcpListener,
    max_connections: usize,
) -> impl Stream<Item = io::Result<Connection>> + Send + 'static {
    let cap = Arc::new(Semaphore::new(max_connections.max(1)));
    futures::stream::unfold((listener, cap), |(listener, cap)| async move {
        let permit = cap.clone().acquire_owned().await.ok()?;
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let connection = Connection {
                        stream,
                        _permit: permit,
                        first_byte: Some(Box::pin(tokio::time::sleep(FIRST_BYTE_TIMEOUT))),
                    };
                    return Some((Ok(connection), (listener, cap)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, addr = ?listener.local_addr().ok(), "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    })
}

/// For axum: the same cap and back-off on the HTTP listener.
pub struct Limited {
    connections: Pin<Box<dyn Stream<Item = io::Result<Connection>> + Send>>,
    local: std::net::SocketAddr,
}

impl Limited {
    pub fn new(listener: TcpListener, max_connections: usize) -> io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(Limited {
            connections: Box::pin(incoming(listener, max_connections)),
            local,
        })
    }
}

impl axum::serve::Listener for Limited {
    type Io = Connection;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use futures::StreamExt;
        loop {
            match self.connections.next().await {
                Some(Ok(connection)) => {
                    let peer = connection.peer().unwrap_or(self.local);
                    return (connection, peer);
                }
                // `incoming` retries failed accepts itself and never ends.
                Some(Err(_)) | None => tokio::time::sleep(ACCEPT_BACKOFF).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let filled = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if self.first_byte.is_none() {
            return read;
        }
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > filled => {
                self.first_byte = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match self.first_byte.as_mut().map(|t| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the caller sent nothing after connecting",
                ))),
                _ => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
